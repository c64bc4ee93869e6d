"""Electrophysiology features shared by backends, reports and the CLI.

Two layers:

* **numpy, one trace** (:mod:`~neo_pinn.features.single_trace`) — :func:`spike_times`,
  :func:`spike_count`, :func:`firing_rate`, :func:`burst_statistics`.
* **torch, batched** — :func:`batch_spike_times` and :func:`batch_spike_features`
  (:mod:`~neo_pinn.features.per_spike`) and :func:`batch_features` (:mod:`~neo_pinn.features.batched`)
  take a (B, T) voltage batch (torch tensor on any device, or numpy) and compute every row at once:
  threshold crossings are found with a few dense boolean passes, everything after that works on flat
  per-spike lists (:mod:`~neo_pinn.features.flat_ops`). Spike-train features use the AP peak times, as
  eFEL does; :func:`batch_spike_times` gives the interpolated threshold crossings.

Before features are taken from a smoothed recording, :func:`spike_preserving_width`
(:mod:`~neo_pinn.features.recorded`) says how wide a :func:`box_smooth` filter may be without losing,
adding or moving a recorded spike.

Spike detection follows the convention of ``shared/reference/models.md``: a spike is an upward
crossing of a threshold, and a new crossing only counts after the voltage has fallen below a re-arm
level, which keeps noise from being counted twice.

The batched features are defined to match eFEL (``efel`` 5.x, Blue Brain Project) where eFEL has the
feature; :data:`FEATURES` and :func:`batch_spike_features` say which eFEL feature each one corresponds
to and where, and why, it differs. The spike-by-spike comparison with eFEL is a test oracle and lives
in :mod:`neo_pinn.testing.efel` (``neo_pinn.features.efel_agreement`` is a deprecated alias).
"""

from __future__ import annotations

import warnings

from .batched import batch_features
from .catalogue import FEATURE_NAMES, FEATURES, SPIKE_FEATURE_NAMES, FeatureSpec
from .per_spike import batch_spike_features, batch_spike_times
from .recorded import SmoothingCheck, box_smooth, spike_preserving_width
from .single_trace import burst_statistics, firing_rate, spike_count, spike_times

__all__ = [
    "spike_times",
    "spike_count",
    "firing_rate",
    "burst_statistics",
    "FeatureSpec",
    "FEATURES",
    "FEATURE_NAMES",
    "SPIKE_FEATURE_NAMES",
    "batch_spike_times",
    "batch_spike_features",
    "batch_features",
    "box_smooth",
    "SmoothingCheck",
    "spike_preserving_width",
]

def __getattr__(name: str):
    """Deprecated alias: ``efel_agreement`` moved to :mod:`neo_pinn.testing.efel` (a test oracle).

    Imported on first use only, so that importing the features never imports eFEL or the testing helpers.
    This one upward import is a deprecated alias (allowed by name in tests/architecture.py).
    """
    if name == "efel_agreement":
        warnings.warn("neo_pinn.features.efel_agreement is deprecated and will be removed; import it from "
                      "neo_pinn.testing.efel instead.", DeprecationWarning, stacklevel=2)
        from ..testing.efel import efel_agreement

        return efel_agreement
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
