"""Recorded spikes survive the smoothing before features: narrow, low spikes of a CA1 interneuron.

A real interneuron recorded at 10 kHz fires spikes that peak at only +8…+15 mV and last a few samples;
the GA's 0.5 ms box filter flattened all of them, so the search fitted a silent cell. These tests build
such a recording (seeded, 1 mV noise, one silent sweep) and check that
:func:`neo_pinn.toolkit.spike_preserving_width` shrinks the filter until every spike survives, that the
GA's recorded features count exactly the raw spikes (which eFEL counts too), and that tall, wide spikes
keep the default smoothing (so the synthetic GA benchmarks do not change).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from neo_pinn import EstimationProblem
from neo_pinn.api import get_backend, get_model, synthetic_trace
from neo_pinn.features import spike_times
from neo_pinn.toolkit import SmoothingCheck, box_smooth, spike_preserving_width
from neo_pinn.trace import Trace

DT = 0.1                         # ms: 10 kHz
SPIKES = (0, 6, 11, 17)          # spikes per sweep; the first sweep is silent
THRESHOLD, REARM = 0.0, -10.0    # Morris–Lecar's spike_threshold and spike_rearm
SMOOTH_SAMPLES = 5               # the GA's default smooth_ms = 0.5 ms at 10 kHz


def recording(peak=(8.0, 15.0), half_width_ms=(0.2, 0.4), counts=SPIKES, duration=400.0, seed=0):
    """Sweeps (t, v, i_ext, spike centres) at 10 kHz: −65 mV, 1 mV white noise, Gaussian spikes.

    Spikes peak at ``peak`` mV (uniform range) with a full width at half height in ``half_width_ms``;
    their centres sit within a quarter sample of a sample time, so the raw trace always crosses 0 mV.
    """
    rng = np.random.default_rng(seed)
    t = DT * np.arange(int(round(duration / DT)))
    sweeps = []
    for q, n in enumerate(counts):
        v = np.full(t.size, -65.0)
        centres = np.linspace(40.0, duration - 40.0, n) if n else np.empty(0)
        centres = np.round(centres / DT) * DT + rng.uniform(-0.25, 0.25, n) * DT
        for c in centres:
            sigma = rng.uniform(*half_width_ms) / (2 * math.sqrt(2 * math.log(2)))
            v += (rng.uniform(*peak) + 65.0) * np.exp(-0.5 * ((t - c) / sigma) ** 2)
        v += rng.normal(0.0, 1.0, t.size)
        i_ext = np.where((t >= 20.0) & (t < duration - 20.0), 20.0 * q, 0.0)
        sweeps.append((t, v, i_ext, centres))
    return sweeps


def problem_of(sweeps):
    traces = [Trace(t=t, v=v, i_ext=i, stimulus_source="user", sweep=q) for q, (t, v, i, _) in enumerate(sweeps)]
    return EstimationProblem.build(get_model("morris_lecar"), traces, ["gCa", "gK"], preset="snlc")


def evaluator_of(problem, **options):
    from neo_pinn_ga.evaluate import PopulationEvaluator

    config = get_backend("ga")(**({"dt": DT} | options)).config
    return PopulationEvaluator(problem, config, torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module")
def narrow():
    return recording()


# ---------------------------------------------------------------------------------------- the check itself
def test_the_default_filter_flattens_narrow_low_spikes(narrow):
    """The failure being fixed: after a 0.5 ms box filter most of these spikes no longer cross 0 mV."""
    for t, v, _, centres in narrow[1:]:
        raw = spike_times(v, t, THRESHOLD, REARM)
        smoothed = spike_times(box_smooth(torch.as_tensor(v)[None], SMOOTH_SAMPLES)[0].numpy(), t, THRESHOLD, REARM)
        assert raw.size == centres.size
        assert smoothed.size < raw.size / 2


def test_spike_preserving_width_keeps_every_spike_and_reports_the_reduced_width(narrow):
    check = spike_preserving_width([s[1] for s in narrow], [s[0] for s in narrow], SMOOTH_SAMPLES, THRESHOLD, REARM)
    assert isinstance(check, SmoothingCheck)
    assert check.raw_counts == SPIKES
    assert check.counts == check.raw_counts
    assert check.adjusted and 1 <= check.width < SMOOTH_SAMPLES == check.requested_width
    assert check.width_ms == pytest.approx(check.width * DT) and check.requested_ms == pytest.approx(0.5)
    assert check.dt_ms == pytest.approx(DT)
    assert all(r > s for r, s in zip(check.raw_counts[1:], check.requested_counts[1:]))
    assert check.requested_counts[0] == 0
    assert all(0.0 <= d <= check.tolerance_ms for d in check.max_shift_ms)
    assert check.merged == (0,) * len(SPIKES)        # deep troughs: nothing is merged
    assert "0 mV" in check.describe() and f"{check.width} samples" in check.describe()
    # the chosen width really keeps every spike; a wider one (if any below the request) does not
    for t, v, _, centres in narrow:
        kept = spike_times(box_smooth(torch.as_tensor(v)[None], check.width)[0].numpy(), t, THRESHOLD, REARM)
        assert kept.size == centres.size
    if check.width + 1 < SMOOTH_SAMPLES:
        wider = spike_preserving_width([s[1] for s in narrow], DT, check.width + 1, THRESHOLD, REARM)
        assert wider.width == check.width


def test_spikes_the_raw_trace_counts_only_by_noise_may_merge():
    """Morris–Lecar's homoclinic troughs sit near the re-arm level: 1 mV of noise re-arms the raw detector
    for spikes the noise-free trace does not count. The filter may merge those (and only those)."""
    model = get_model("morris_lecar")
    trace, states = synthetic_trace(model, preset="homoclinic", duration=1000.0, rate_hz=10000.0,
                                    noise="white:sigma=1mV", seed=3)
    clean = spike_times(states[:, 0], trace.t, THRESHOLD, REARM).size
    check = spike_preserving_width(trace.v, trace.t, SMOOTH_SAMPLES, THRESHOLD, REARM)
    assert check.raw_counts[0] > clean                          # noise made spikes count
    assert not check.adjusted and check.merged[0] > 0
    assert check.counts[0] == check.raw_counts[0] - check.merged[0] == check.requested_counts[0]
    assert check.noise_mv[0] == pytest.approx(1.0, abs=0.1)
    strict = spike_preserving_width(trace.v, trace.t, SMOOTH_SAMPLES, THRESHOLD, REARM, rearm_margin_sd=0.0)
    assert strict.adjusted and strict.counts == strict.raw_counts and strict.merged == (0,)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*smooth_ms.*")
        ev = evaluator_of(EstimationProblem.build(model, trace, ["gCa", "gK"], preset="homoclinic"))
    assert ev.smooth_width == SMOOTH_SAMPLES and ev.search_spike_counts == check.counts
    assert ev.smoothing_diagnostics()["merged_spikes"] == list(check.merged)


def test_spike_preserving_width_accepts_an_interval_a_matrix_or_one_trace(narrow):
    v = np.stack([s[1] for s in narrow])
    by_times = spike_preserving_width(list(v), [s[0] for s in narrow], SMOOTH_SAMPLES, THRESHOLD, REARM)
    assert spike_preserving_width(v, DT, SMOOTH_SAMPLES, THRESHOLD, REARM) == by_times
    one = spike_preserving_width(v[2], DT, SMOOTH_SAMPLES, THRESHOLD, REARM)
    assert one.raw_counts == (SPIKES[2],) and one.counts == one.raw_counts
    # no smoothing asked: nothing to adjust
    none = spike_preserving_width(v, DT, 1, THRESHOLD, REARM)
    assert none.width == 1 and not none.adjusted and none.counts == none.raw_counts == SPIKES


def test_raw_counts_agree_with_efel_spikecount(narrow):
    efel = pytest.importorskip("efel")
    check = spike_preserving_width([s[1] for s in narrow], DT, SMOOTH_SAMPLES, THRESHOLD, REARM)
    efel.reset()
    try:
        efel.set_setting("Threshold", THRESHOLD)
        traces = [{"T": t, "V": v, "stim_start": [float(t[0])], "stim_end": [float(t[-1])]} for t, v, _, _ in narrow]
        values = efel.get_feature_values(traces, ["spike_count"], raise_warnings=False)  # "Spikecount" before 5.7
    finally:
        efel.reset()
    assert tuple(int(fe["spike_count"][0]) for fe in values) == check.raw_counts == SPIKES


# ---------------------------------------------------------------------------------------- the GA
def test_ga_recorded_features_count_exactly_the_raw_spikes(narrow):
    problem = problem_of(narrow)
    with pytest.warns(RuntimeWarning, match="smooth_ms=0.5 ms reduced"):
        ev = evaluator_of(problem, features=["spike_count", "mean_rate_hz", "ap_peak_mv"])
    assert ev.smooth_width < SMOOTH_SAMPLES
    assert tuple(int(sw.features["spike_count"]) for sw in ev.sweeps) == SPIKES
    assert ev.search_spike_counts == SPIKES
    diag = ev.smoothing_diagnostics()
    assert diag["adjusted"] and diag["requested_ms"] == 0.5
    assert diag["used_ms"] == pytest.approx(ev.smooth_width * DT) and diag["used_samples"] == ev.smooth_width
    assert diag["raw_spike_counts"] == diag["search_spike_counts"] == list(SPIKES)
    assert diag["requested_spike_counts"][1:] != list(SPIKES[1:])
    # the model's voltage goes through the same (reduced) filter: the recording scores itself perfectly
    v = torch.as_tensor(np.stack([s[1] for s in narrow]), dtype=torch.float32)[None]
    _, per = ev.objectives_from_voltage(v)
    for sw, d in zip(ev.sweeps, per):
        assert d["values"]["spike_count"][0] == sw.features["spike_count"]
        assert d["errors"]["spike_count"][0] == 0.0


def test_ga_fused_engine_sees_the_raw_spikes_too(narrow):
    """engine="fused" scores the recording's online features: same smoothing rule, same counts (the
    Triton kernel's torch reference stands in for the kernel on CPU)."""
    from neo_pinn_ga.fused_engine import FusedPopulationEvaluator

    config = get_backend("ga")(dt=DT).config
    with pytest.warns(RuntimeWarning, match="smooth_ms"):
        ev = FusedPopulationEvaluator(problem_of(narrow), config, torch.device("cpu"), torch.float32,
                                      kernel_engine="torch")
    assert ev.smooth_width < SMOOTH_SAMPLES
    assert tuple(int(sw.features["spike_count"]) for sw in ev.sweeps) == ev.search_spike_counts == SPIKES


def test_ga_fit_reports_the_adjustment_in_its_diagnostics(narrow):
    sweeps = [(t[:1500], v[:1500], i[:1500], c[c < 150.0]) for t, v, i, c in narrow[:3]]
    problem = problem_of(sweeps)
    est = get_backend("ga")(dt=DT, pop_size=8, n_gen=1, screen=0, refine="none")
    with pytest.warns(RuntimeWarning, match="smooth_ms"):
        result = est.fit(problem, seed=0, device="cpu")
    smoothing = result.diagnostics["smoothing"]
    assert smoothing["adjusted"] and smoothing["requested_ms"] == 0.5 and smoothing["used_ms"] < 0.5
    raw = [int(spike_times(v, t, THRESHOLD, REARM).size) for t, v, _, _ in sweeps]
    assert smoothing["raw_spike_counts"] == smoothing["search_spike_counts"] == raw and sum(raw) > 0


def test_ga_keeps_the_default_smoothing_on_tall_wide_spikes():
    """Spikes peaking at +30…+40 mV over ~1.5 ms survive the 0.5 ms filter: nothing changes, no warning."""
    wide = recording(peak=(30.0, 40.0), half_width_ms=(1.2, 1.8), seed=1)
    check = spike_preserving_width([s[1] for s in wide], DT, SMOOTH_SAMPLES, THRESHOLD, REARM)
    assert not check.adjusted and check.width == SMOOTH_SAMPLES and check.requested_counts == SPIKES
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*smooth_ms.*")
        ev = evaluator_of(problem_of(wide))
    assert ev.smooth_width == SMOOTH_SAMPLES and not ev.smoothing_diagnostics()["adjusted"]
    assert ev.search_spike_counts == SPIKES


def test_ga_keeps_the_default_smoothing_on_the_synthetic_benchmark_recordings():
    """Morris–Lecar spikes with 1 mV noise, as in tests/test_ga.py and benchmarks/bench_ga.py."""
    model = get_model("morris_lecar")
    for rate, seed in ((5000.0, 2), (20000.0, 0)):
        trace, _ = synthetic_trace(model, preset="snlc", duration=250.0, rate_hz=rate, noise="white:sigma=1mV",
                                   seed=seed)
        problem = EstimationProblem.build(model, trace, ["gCa", "gK"], preset="snlc")
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*smooth_ms.*")
            ev = evaluator_of(problem, dt=1000.0 / rate)
        requested = max(1, int(round(0.5 / trace.dt)))
        assert ev.smooth_width == requested
        assert ev.search_spike_counts == ev.smoothing.raw_counts
        assert ev.search_spike_counts[0] == spike_times(trace.v, trace.t, THRESHOLD, REARM).size > 0


def test_the_ga_uses_the_toolkit_filter():
    import neo_pinn_ga.evaluate as ev

    assert ev.box_smooth is box_smooth
    x = torch.arange(10.0)[None]
    assert torch.equal(box_smooth(x, 1), x)
    assert torch.allclose(box_smooth(x, 3)[0, 1:-1], x[0, 1:-1])     # a ramp is kept away from the edges
