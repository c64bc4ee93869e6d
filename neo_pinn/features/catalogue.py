"""The catalogue of batched features: names, units and definitions (and the eFEL feature each matches).

:data:`FEATURES` documents what :func:`~neo_pinn.features.batch_features` returns, so reports, the GA's
objectives and the benchmarks read the same definitions; :data:`SPIKE_FEATURE_NAMES` lists the
per-spike values of :func:`~neo_pinn.features.batch_spike_features`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FeatureSpec", "FEATURES", "FEATURE_NAMES", "SPIKE_FEATURE_NAMES"]


@dataclass(frozen=True)
class FeatureSpec:
    """One scalar feature of :func:`~neo_pinn.features.batch_features`.

    Attributes
    ----------
    name : str
        Key in the returned dict.
    unit : str
        ``"ms"``, ``"mV"``, ``"Hz"``, ``"count"`` or ``"1"`` (dimensionless).
    description : str
        Definition, and the eFEL feature it matches where there is one.
    """

    name: str
    unit: str
    description: str


FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("spike_count", "count",
                "Spikes whose AP peak lies in the analysis window (eFEL Spikecount with strict_stiminterval)."),
    FeatureSpec("mean_rate_hz", "Hz",
                "spike_count / window duration × 1000 (0 without spikes). Not eFEL's mean_frequency, which "
                "divides by the time from stimulus start to the last spike."),
    FeatureSpec("first_spike_latency_ms", "ms",
                "First AP peak time minus the window start (eFEL time_to_first_spike); NaN without spikes."),
    FeatureSpec("isi_mean_ms", "ms",
                "Mean interval between consecutive AP peaks in the window (mean of eFEL all_ISI_values); "
                "NaN with < 2 spikes."),
    FeatureSpec("isi_cv", "1",
                "Standard deviation (ddof = 1) / mean of those intervals (eFEL ISI_CV with ignore_first_ISI "
                "off); NaN with < 3 spikes."),
    FeatureSpec("adaptation_index", "1",
                "eFEL adaptation_index2: drop the first spike, then the mean of (ISIₖ − ISIₖ₋₁)/(ISIₖ + ISIₖ₋₁) "
                "over consecutive intervals; > 0 when firing slows down. NaN with < 4 spikes."),
    FeatureSpec("ap_peak_mv", "mV", "Mean AP peak voltage (eFEL peak_voltage)."),
    FeatureSpec("ap_amplitude_mv", "mV",
                "Mean of peak minus the voltage at AP begin (eFEL AP_amplitude; AP begin as eFEL "
                "AP_begin_indices: where dV/dt rises through the derivative threshold, 10 mV/ms)."),
    FeatureSpec("ap_width_ms", "ms",
                "Mean AP width at half amplitude measured from AP begin (eFEL AP_duration_half_width), "
                "between linearly interpolated crossings of the half level."),
    FeatureSpec("ahp_depth_mv", "mV",
                "Mean over consecutive spike pairs of the minimum voltage between their peaks (the AHP "
                "trough; eFEL min_voltage_between_spikes); absolute, subtract rest_mv for the depth relative "
                "to rest. NaN with < 2 spikes."),
    FeatureSpec("rest_mv", "mV",
                "Median voltage of the baseline: baseline_ms if given, else the part of the trace before "
                "the window, else the whole trace without the samples near spikes. Not eFEL voltage_base "
                "(mean over 90–100 % of the time before stimulus start)."),
    FeatureSpec("burst_period_ms", "ms",
                "Mean time between burst starts; bursts end at the ISIs above the largest jump of the sorted "
                "ISIs beyond max(gap_factor × median ISI, min_gap_ms), as in burst_statistics; NaN unless "
                "there are ≥ 2 bursts."),
    FeatureSpec("spikes_per_burst", "count",
                "Mean spikes per burst over complete bursts (inner ones when there are > 2); NaN unless "
                "bursting."),
    FeatureSpec("duty_cycle", "1",
                "Mean burst duration (first to last spike) over the same bursts / burst_period_ms; NaN unless "
                "bursting."),
)

#: Names of :data:`FEATURES`, in order.
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)

#: Keys of the per-spike tensors returned by :func:`~neo_pinn.features.batch_spike_features`.
SPIKE_FEATURE_NAMES: tuple[str, ...] = (
    "crossing_time_ms", "peak_time_ms", "peak_mv", "ap_begin_time_ms", "ap_begin_mv", "ap_amplitude_mv",
    "ap_width_ms", "half_rise_time_ms", "half_fall_time_ms", "ahp_mv", "isi_ms",
)
