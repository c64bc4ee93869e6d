"""pluggy hook specifications of the project ``neo_pinn``.

Built-in models and backends register through exactly these hooks, as a third party's would. Hooks are
called with keyword arguments only; their signatures only ever grow.
"""

from __future__ import annotations

import pluggy

PROJECT = "neo_pinn"
#: Version of the hook specifications; the minor number grows when a hook or an argument is added.
#: 1.1: ``BackendRegistry.register(cls)`` keys a backend by its class's ``name``.
HOOKSPEC_VERSION = "1.1"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["PROJECT", "HOOKSPEC_VERSION", "hookspec", "hookimpl", "NeoPinnSpec"]


class NeoPinnSpec:
    """The hooks a neo_pinn plugin may implement."""

    @hookspec
    def neo_pinn_register_models(self, registry):
        """Register neuron models: call ``registry.register(model_instance)``.

        Parameters
        ----------
        registry : neo_pinn.registry.ModelRegistry
        """

    @hookspec
    def neo_pinn_register_backends(self, registry):
        """Register estimator backends: call ``registry.register(EstimatorSubclass)`` (keyed by its ``name``).

        Parameters
        ----------
        registry : neo_pinn.registry.BackendRegistry
        """

    @hookspec(firstresult=True)
    def neo_pinn_find_stimulus(self, signal, segment):
        """Recover the injected current of one sweep.

        Parameters
        ----------
        signal : neo.AnalogSignal
            The membrane-voltage signal of the sweep.
        segment : neo.Segment
            Its segment.

        Returns
        -------
        tuple (numpy.ndarray, str) or None
            The current in pA sampled at the signal's times and a short name of the source; None to
            let the next finder try. The first non-None result wins.
        """

    @hookspec
    def neo_pinn_after_fit(self, problem, result):
        """Called after every successful fit with the problem and its :class:`EstimationResult`."""
