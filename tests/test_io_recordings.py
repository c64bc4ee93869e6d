"""neo_pinn.io on the ten shared real recordings and on synthetic in-memory Neo trees.

The expected numbers come from ../shared/data/recordings/README.md and were re-measured with this code;
where they differ the test says why (see test_nwb_spike_count_conventions).
"""

from __future__ import annotations

import warnings

import neo
import numpy as np
import pytest
import quantities as pq

from neo_pinn.errors import (
    ConfigurationError,
    NeoPinnError,
    NoVoltageChannelError,
    RecordingFormatError,
    StimulusError,
    StimulusMismatchWarning,
    StimulusNotFoundError,
    UnitsError,
    VoltageClampError,
)
from neo_pinn.features import spike_count
from neo_pinn.io import (
    Recording,
    RecordingNotFoundError,
    block_to_traces,
    load_recording,
    parse_stimulus,
    sha256_of,
    trace_to_signals,
)

pytestmark = pytest.mark.recordings

README_SHA256 = {
    "171116sh_0013.abf": "97cc2ccedcf0fddfff30e887732612467ddc4e1635834ec0f68f371492c72704",
    "17o05027_ic_ramp.abf": "2091b84556502965203c926ee12b38db1e361507d0a062b52b98b3687a9d4955",
    "17o05028_ic_steps.abf": "bdc19f4504963602513d6bdab54a98b5d032ad0140be4583044b007852c92239",
    "18425108.abf": "6ec251d896d05846b46a4adee2b2ac5e3564e069bf41cf7584ce218c7bfe2748",
    "18425108_abf1.abf": "87c9d54e813a7f369cc4ee7f8be7f4d32ec58d3d8dbd7108047a712d3ee678a6",
    "190619B_0003.abf": "2e4720329fd0e48f37c84f7692098f2a4542630a2e3ec5934cbd8e6774dca659",
    "2019_07_24_0055_fsi.abf": "4666e82da3e0cc33b579fea285901a7f48b54a8c0cb8143b9c539d65172709b6",
    "2020_06_16_0000.abf": "666ad70316f372855a5133e34faaefedb7b757c94748f46b6f94393321088cc7",
    "2020_07_29_0062.abf": "eec479744472c5568405ed4fd68b3bbd640a3d923322d6f961f8fb73715fbbba",
    "99111002.nwb": "f4f6b76d251f39f8a716e75a61dc731f406f30c15ff315f2e6b4bf13c71515e5",
}

# file -> expected summary. durations in ms, rate in Hz, steps in pA (None: not checked).
EXPECTED = {
    "17o05028_ic_steps.abf": dict(
        format="ABF 2.6", mode="current_clamp", n=16, channel="IN 0", units="mV", rate=20000, durations=[3000.0],
        spikes_total=375, per_sweep=None, source="abf2-protocol",
        steps=[-50.0 + 10 * k for k in range(16)], window=(146.85, 646.85)),
    "2019_07_24_0055_fsi.abf": dict(
        format="ABF 2.6", mode="current_clamp", n=17, channel="IN 0", units="mV", rate=20000, durations=[3000.0],
        spikes_total=948, per_sweep=None, source="abf2-protocol",
        steps=[-100.0 + 25 * k for k in range(17)], window=(146.85, 646.85)),
    "17o05027_ic_ramp.abf": dict(
        format="ABF 2.6", mode="current_clamp", n=2, channel="IN 0", units="mV", rate=20000, durations=[1000.0],
        spikes_total=15, per_sweep=[6, 9], source="abf2-protocol", steps=None, window=None),
    "190619B_0003.abf": dict(
        format="ABF 1.83", mode="current_clamp", n=10, channel="IN 0", units="mV", rate=10000, durations=[3064.0],
        spikes_total=40, per_sweep=[0, 0, 0, 0, 3, 6, 8, 12, 9, 2], source="abf1-command",
        steps=[-120.0 + 60 * k for k in range(10)], window=(1047.8, 2047.8)),
    "18425108_abf1.abf": dict(
        format="ABF 1.84", mode="current_clamp", n=1, channel="10_Vm", units="mV", rate=25000, durations=[10000.0],
        spikes_total=20, per_sweep=[20], source="recorded-channel", steps=None, window=None),
    "18425108.abf": dict(
        format="ABF 2.9", mode="current_clamp", n=1, channel="10_Vm", units="mV", rate=25000, durations=[10000.0],
        spikes_total=20, per_sweep=[20], source="recorded-channel", steps=None, window=None),
    "2020_07_29_0062.abf": dict(
        format="ABF 2.9", mode="current_clamp", n=1, channel="Potential", units="mV", rate=10000,
        durations=[18432.0], spikes_total=0, per_sweep=[0], source="recorded-channel", steps=None, window=None),
    "171116sh_0013.abf": dict(
        format="ABF 2.6", mode="voltage_clamp", n=13, channel="IN 0", units="pA", rate=20000, durations=[1000.0],
        spikes_total=None, per_sweep=None, source=None, steps=None, window=None),
    "2020_06_16_0000.abf": dict(
        format="ABF 2.3", mode="voltage_clamp", n=3, channel="IN 0", units="pA", rate=10000,
        durations=[354.0, 7004.0, 1604.0], spikes_total=None, per_sweep=None, source=None, steps=None, window=None),
    "99111002.nwb": dict(
        format="NWB", mode="current_clamp", n=16, channel="ic__Step__{k}", units="mV", rate=10000, durations=[716.8],
        # Sweeps 9 and 13 start above 0 mV: the counter starts disarmed there (see
        # test_nwb_spike_count_conventions), as the README's does.
        spikes_total=10, per_sweep=[0, 3, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1, 0, 1, 1], source="nwb-stimulus",
        steps=[-2000.0 + 200 * k for k in range(16)], window=(31.2, 431.2)),
}


@pytest.fixture(scope="module")
def hashes_before(recordings_dir):
    return {name: sha256_of(recordings_dir / name) for name in EXPECTED}


@pytest.fixture(scope="module")
def loaded(recordings_dir, hashes_before):
    """Load each file once (mode='any'), keeping the warnings each load raised."""
    cache: dict[str, tuple[Recording, list]] = {}

    def get(name: str) -> tuple[Recording, list]:
        if name not in cache:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                rec = load_recording(recordings_dir / name, mode="any")
            cache[name] = (rec, [w for w in caught if issubclass(w.category, (StimulusMismatchWarning, UserWarning))
                                 and "plugin" not in str(w.message)])
        return cache[name]

    return get


@pytest.fixture(scope="module")
def described(loaded):
    cache: dict[str, dict] = {}

    def get(name: str) -> dict:
        if name not in cache:
            cache[name] = loaded(name)[0].describe()
        return cache[name]

    return get


# ---------------------------------------------------------------------- the ten files
@pytest.mark.parametrize("name", list(EXPECTED))
def test_file_summary(name, loaded, described):
    exp = EXPECTED[name]
    rec, _ = loaded(name)
    d = described(name)
    assert rec.format == d["format"] == exp["format"]
    assert rec.recording_mode == d["recording_mode"] == exp["mode"]
    assert len(rec.sweeps) == d["n_sweeps"] == exp["n"]
    for k, s in enumerate(rec.sweeps):
        assert s.sweep == k
        assert s.channel == exp["channel"].format(k=k + 1)
        assert s.units == exp["units"]
        assert s.sampling_rate_hz == pytest.approx(exp["rate"], rel=1e-9)
        assert s.stimulus_source == exp["source"]
    durations = [s.duration_ms for s in rec.sweeps]
    if len(exp["durations"]) == 1:
        assert durations == pytest.approx(exp["durations"] * exp["n"])
    else:
        assert durations == pytest.approx(exp["durations"])
    assert d["total_spikes"] == exp["spikes_total"]
    if exp["per_sweep"] is not None:
        assert [s["spike_count"] for s in d["sweeps"]] == exp["per_sweep"]
    if exp["steps"] is not None:
        assert d["stimulus_steps"] == pytest.approx(exp["steps"], abs=1e-3)
    if exp["window"] is not None:
        assert d["stimulus_step_window_ms"] == pytest.approx(list(exp["window"]), abs=0.01)
    assert rec.sha256 == d["sha256"] == README_SHA256[name]
    import json

    json.dumps(d)  # JSON-ready


def test_input_files_unchanged(recordings_dir, loaded, described, hashes_before):
    for name in EXPECTED:
        rec = loaded(name)[0]
        if rec.recording_mode == "current_clamp":
            rec.traces()
        described(name)
    for name, digest in hashes_before.items():
        assert sha256_of(recordings_dir / name) == digest == README_SHA256[name]


def test_steps_protocol_family_summary(described):
    assert described("17o05028_ic_steps.abf")["stimulus_summary"] == "steps -50 to +100 pA (+10 pA per sweep)"
    assert described("2019_07_24_0055_fsi.abf")["stimulus_summary"] == "steps -100 to +300 pA (+25 pA per sweep)"
    assert described("190619B_0003.abf")["stimulus_summary"] == "steps -120 to +420 pA (+60 pA per sweep)"
    assert described("99111002.nwb")["stimulus_summary"] == "steps -2 to +1 nA (+0.2 nA per sweep)"
    first = described("17o05028_ic_steps.abf")["sweeps"][0]
    starts = [round(e["start_ms"]) for e in first["stimulus_epochs"]]
    amps = [round(e["amplitude_pA"]) for e in first["stimulus_epochs"]]
    # 0.147-0.647 s at -50 pA, then the -50 pA middle step joined with the sweep's own -50 pA step
    assert starts == [0, 147, 647, 1147, 2147] and amps == [0, -50, 0, -50, 0]
    sweep5 = described("17o05028_ic_steps.abf")["sweeps"][5]["stimulus_epochs"]
    assert [round(e["amplitude_pA"]) for e in sweep5] == [0, -50, 0]  # the 0 pA step is invisible per sweep
    assert described("17o05028_ic_steps.abf")["stimulus_steps"][5] == 0.0  # ... but the family finds it


def test_traces_units_times_and_stimulus(loaded):
    rec, _ = loaded("17o05028_ic_steps.abf")
    traces = rec.traces()
    assert len(traces) == 16
    tr = traces[3]
    assert tr.sweep == 3 and tr.stimulus_source == "abf2-protocol"
    assert tr.t[0] == pytest.approx(9000.0) and tr.dt == pytest.approx(0.05)  # absolute ms
    rel = tr.t - tr.t[0]
    assert tr.i_ext[np.searchsorted(rel, 400.0)] == pytest.approx(-20.0)  # sweep 3's step
    assert tr.i_ext.min() == pytest.approx(-50.0) and tr.i_ext.max() == pytest.approx(0.0)
    assert tr.source["file_name"] == "17o05028_ic_steps.abf" and tr.source["sha256"] == rec.sha256
    assert spike_count(tr.v, tr.t) == rec.describe()["sweeps"][3]["spike_count"]
    win = rec.traces([0, -1], window=(100.0, 200.0))
    assert [w.sweep for w in win] == [0, 15]
    assert win[1].t[0] == pytest.approx(45100.0) and win[1].t[-1] == pytest.approx(45200.0)
    assert rec.traces(2)[0].sweep == 2
    with pytest.raises(ConfigurationError):
        rec.traces(16)


def test_annotated_block_roles(loaded):
    rec, _ = loaded("190619B_0003.abf")
    volts = rec.block.filter(neo_pinn_role="voltage")
    stims = rec.block.filter(neo_pinn_role="stimulus")
    assert len(volts) == len(stims) == 10
    assert sorted(s.annotations["neo_pinn_sweep"] for s in volts) == list(range(10))
    for seg in rec.block.segments:
        v = [s for s in seg.analogsignals if s.annotations.get("neo_pinn_role") == "voltage"]
        i = [s for s in seg.analogsignals if s.annotations.get("neo_pinn_role") == "stimulus"]
        assert len(v) == len(i) == 1
        assert v[0].name == "IN 0" and v[0].shape[1] == 1
        assert v[0].annotations["neo_pinn_stimulus_source"] == "abf1-command"
        assert i[0].name == "IN 0.stimulus" and i[0].units == pq.pA
        assert i[0].annotations["neo_pinn_sweep"] == v[0].annotations["neo_pinn_sweep"]
        names = [s.name for s in seg.analogsignals]
        assert names == ["IN 0", "IN 2", "IN 0.stimulus"]  # the 2-D (IN 0, IN 2) signal split per channel
    assert any("IN 2" in w for w in rec.warnings)
    # the tree converts on its own, the one Neo -> array path
    assert len(block_to_traces(rec.block, sweeps=[4])) == 1


def test_abf1_step_protocol_from_pyabf(loaded):
    rec, _ = loaded("190619B_0003.abf")
    tr = rec.traces(9)[0]
    assert tr.i_ext.max() == pytest.approx(420.0)
    on = (tr.t - tr.t[0] >= 1048.0) & (tr.t - tr.t[0] < 2047.0)
    assert np.all(tr.i_ext[on] == 420.0) and np.all(tr.i_ext[~on & (tr.t - tr.t[0] < 1047)] == 0.0)


def test_18425108_abf1_and_abf2_agree(loaded):
    (a, wa), (b, wb) = loaded("18425108.abf"), loaded("18425108_abf1.abf")
    ta, tb = a.traces()[0], b.traces()[0]
    assert ta.stimulus_source == tb.stimulus_source == "recorded-channel"
    assert "Imemb" in ta.source["stimulus_detail"]
    assert np.array_equal(ta.t, tb.t)  # the ABF1 rate 25000.000000000004 Hz is snapped to 25 kHz
    assert np.array_equal(ta.i_ext, tb.i_ext)
    # Neo's Vm arrays of the two files differ by at most one ADC step (0.0305 mV), not 0 as the README says.
    assert np.max(np.abs(ta.v - tb.v)) <= 0.031
    assert spike_count(ta.v, ta.t) == spike_count(tb.v, tb.t) == 20
    assert ta.i_ext.max() > 2500.0  # the 2.5 nA pulses, in pA
    # 20 pulses at 1.0-1.2 s (README: "15"), seen in the recorded current
    rising = np.flatnonzero(np.diff((ta.i_ext > 1000.0).astype(int)) == 1)
    assert rising.size == 20 and ta.t[rising[0]] == pytest.approx(1000.0, abs=0.1)
    # ABF2: the protocol (pulse train drawn by pyabf) agrees with Imemb; ABF1: pyabf can't draw ABF1 pulse
    # trains, so its command disagrees and a warning says so.
    assert not [w for w in wa if issubclass(w.category, StimulusMismatchWarning)]
    mism = [str(w.message) for w in wb if issubclass(w.category, StimulusMismatchWarning)]
    assert len(mism) == 1 and "abf1-command" in mism[0] and "recorded-channel" in mism[0]
    text = a.describe()["sweeps"][0]["stimulus_text"]
    assert "1–1.192 s: 20 pulses of 2.5696 nA (2 ms every 10 ms)" in text
    stim = a.block.filter(neo_pinn_role="stimulus")
    assert len(stim) == 1 and stim[0].name == "Imemb" and stim[0].units == pq.nA


def test_gap_free_stimulus_from_i_com(loaded):
    rec, _ = loaded("2020_07_29_0062.abf")
    (tr,) = rec.traces()
    assert tr.duration == pytest.approx(18432.0 - 0.1)
    assert tr.stimulus_source == "recorded-channel" and "I_Com" in tr.source["stimulus_detail"]
    assert -30.0 < tr.i_ext.min() and tr.i_ext.max() < 30.0 and np.median(tr.i_ext) == pytest.approx(-2.136, abs=0.01)
    assert -60.0 < np.median(tr.v) < -25.0
    assert rec.block.filter(neo_pinn_role="stimulus")[0].name == "I_Com"
    assert len(rec.block.segments) == 1 and len(rec.block.segments[0].events) == 1  # the ABF tag


@pytest.mark.parametrize("name", ["171116sh_0013.abf", "2020_06_16_0000.abf"])
def test_voltage_clamp(name, recordings_dir, loaded, described):
    with pytest.raises(VoltageClampError, match="voltage-clamp"):
        load_recording(recordings_dir / name)
    rec, _ = loaded(name)
    with pytest.raises(VoltageClampError, match="current-clamp"):
        rec.traces()
    d = described(name)
    assert d["recording_mode"] == "voltage_clamp" and d["recorded_channel"] == "IN 0"
    assert d["voltage_channel"] is None and d["total_spikes"] is None
    assert all(s["role"] == "clamp_current" for s in d["sweeps"])
    assert len(rec.block.filter(neo_pinn_role="clamp_current")) == d["n_sweeps"]
    assert not rec.block.filter(neo_pinn_role="voltage")
    with pytest.raises(VoltageClampError):
        block_to_traces(rec.block)


def test_variable_length_segments_not_stacked(loaded):
    rec, _ = loaded("2020_06_16_0000.abf")
    assert [s.n_samples for s in rec.sweeps] == [3540, 70040, 16040]
    # the README lists them sorted (0.354, 1.604, 7.004 s); in time order they are 0.354, 7.004, 1.604 s
    assert sorted(s.duration_ms for s in rec.sweeps) == pytest.approx([354.0, 1604.0, 7004.0])
    assert [round(s.t_start_ms, 1) for s in rec.sweeps] == [1447.9, 4497.9, 14747.9]


def test_nwb_sweeps_ordered_by_number(loaded):
    rec, _ = loaded("99111002.nwb")
    assert [s.channel for s in rec.sweeps] == [f"ic__Step__{k}" for k in range(1, 17)]
    assert [s.t_start_ms for s in rec.sweeps] == pytest.approx([2000.0 * k for k in range(16)])
    traces = rec.traces()
    for k, tr in enumerate(traces):
        assert tr.source["stimulus_signal"] == f"ics__Step__{k + 1}"
        assert tr.t[0] == pytest.approx(2000.0 * k)
    assert traces[0].i_ext.min() == pytest.approx(-2000.0, abs=1e-3)  # nA -> pA
    assert traces[15].i_ext.max() == pytest.approx(1000.0, abs=1e-3)
    assert -20.0 < np.median(traces[0].v) < -10.0  # mV (the README's -15 mV offset)


def test_nwb_spike_count_conventions(loaded):
    """README: 10 spikes. Sweeps 9 and 13 (0-based) start above 0 mV and cross 0 mV again in their first
    ~1 ms through noise; a counter armed from the start would find 12. spike_count starts disarmed when
    the first sample is at or above threshold (re-arming below -10 mV), as an independent loop does."""
    rec, _ = loaded("99111002.nwb")
    traces = rec.traces()

    def armed_count(v):
        n, armed = 0, bool(v[0] < 0.0)
        for a, b in zip(v[:-1], v[1:]):
            if a < -10.0:
                armed = True
            if armed and a < 0.0 <= b:
                n, armed = n + 1, False
        return n

    assert sum(spike_count(tr.v, tr.t) for tr in traces) == 10
    assert sum(armed_count(tr.v) for tr in traces) == 10
    assert [tr.v[0] >= 0.0 for tr in traces].count(True) == 2


# ---------------------------------------------------------------------- user objects and options
def _snapshot(block):
    return [(id(seg), [id(s) for s in seg.analogsignals], dict(seg.annotations),
             [(dict(s.annotations), {k: np.array(v) for k, v in s.array_annotations.items()}, s.name, id(s.segment))
              for s in seg.analogsignals], [id(e) for e in seg.events])
            for seg in block.segments] + [dict(block.annotations)]


def _same(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b


def test_user_block_not_modified(recordings_dir):
    block = neo.io.AxonIO(str(recordings_dir / "190619B_0003.abf")).read_block()
    before = _snapshot(block)
    rec = load_recording(block)
    assert _same(_snapshot(block), before)
    assert rec.path is None and rec.sha256 is None and rec.format == "Neo (in memory)"
    assert rec.original is block
    assert len(rec.block.filter(neo_pinn_role="voltage")) == 10
    assert not block.filter(neo_pinn_role="voltage")
    assert all(s.segment is seg for seg in block.segments for s in seg.analogsignals)
    assert rec.sweeps[0].stimulus_source == "abf1-command"  # found through the block's file_origin
    rec.traces()
    assert _same(_snapshot(block), before)


def test_user_segment_and_signal(recordings_dir):
    block = neo.io.AxonIO(str(recordings_dir / "18425108.abf")).read_block()
    seg = block.segments[0]
    before = _snapshot(block)
    rec = load_recording(seg)
    assert rec.sweeps[0].channel == "10_Vm" and rec.sweeps[0].stimulus_source == "recorded-channel"
    vsig = seg.analogsignals[1]
    rec2 = load_recording(vsig, stimulus="zero")
    assert rec2.sweeps[0].signal_index == 1 and rec2.traces()[0].stimulus_source == "none"
    assert not rec2.traces()[0].i_ext.any()
    assert _same(_snapshot(block), before)


def test_user_stimulus_override_warns_on_mismatch(recordings_dir):
    spec = "step:amp=50pA,start=100ms,stop=900ms"
    with pytest.warns(StimulusMismatchWarning, match="abf2-protocol") as rec_w:
        rec = load_recording(recordings_dir / "17o05027_ic_ramp.abf", stimulus=spec)
    assert any("user" in str(w.message) for w in rec_w)
    tr = rec.traces()[1]
    assert tr.stimulus_source == "user"
    expected = parse_stimulus(spec)(tr.t - tr.t[0])
    assert np.array_equal(tr.i_ext, expected)
    stim = [s for s in rec.block.filter(neo_pinn_role="stimulus") if s.annotations["neo_pinn_sweep"] == 1]
    assert len(stim) == 1 and stim[0].annotations["neo_pinn_stimulus_source"] == "user"


def test_user_stimulus_that_agrees_is_silent(recordings_dir, loaded):
    rec0, _ = loaded("17o05028_ic_steps.abf")
    arrays = np.stack([t.i_ext for t in rec0.traces([0, 1])])
    block = neo.io.AxonIO(str(recordings_dir / "17o05028_ic_steps.abf")).read_block()
    block.segments[:] = block.segments[:2]
    with warnings.catch_warnings():
        warnings.simplefilter("error", StimulusMismatchWarning)
        rec = load_recording(block, stimulus=arrays)
    assert [t.stimulus_source for t in rec.traces()] == ["user", "user"]
    with pytest.raises(StimulusError, match="samples"):
        load_recording(block, stimulus=np.zeros(10))


def test_missing_stimulus_needs_stimulus_argument():
    seg = neo.Segment()
    seg.analogsignals.append(neo.AnalogSignal(-0.065 + 0.001 * np.sin(np.arange(2000) / 50.0), units="V",
                                              sampling_rate=10 * pq.kHz, name="Vm"))
    block = neo.Block()
    block.segments.append(seg)
    with pytest.warns(UserWarning, match="No injected current"):
        rec = load_recording(block)
    assert rec.sweeps[0].stimulus_source == "not-found"
    with pytest.raises(StimulusNotFoundError, match="stimulus="):
        rec.traces()
    rec = load_recording(block, stimulus="step:amp=0.1nA,start=50ms,stop=150ms")
    tr = rec.traces()[0]
    assert tr.i_ext.max() == pytest.approx(100.0) and tr.i_ext[0] == 0.0
    assert tr.v[0] == pytest.approx(-65.0)


def test_synthetic_block_units_and_recorded_current():
    rate = 20 * pq.kHz
    n = 4000
    v = neo.AnalogSignal((-0.070 + 0.010 * (np.arange(n) > 1000)).reshape(-1, 1), units="V", sampling_rate=rate,
                         t_start=0.5 * pq.s, name="Vm")
    i = neo.AnalogSignal((0.05 * (np.arange(n) > 1000)).reshape(-1, 1), units="nA", sampling_rate=rate,
                         t_start=0.5 * pq.s, name="Iinj")
    seg = neo.Segment()
    seg.analogsignals.extend([i, v])  # current first: position must not matter
    block = neo.Block()
    block.segments.append(seg)
    rec = load_recording(block)
    (tr,) = rec.traces()
    assert rec.voltage_channel == "Vm" and tr.stimulus_source == "recorded-channel"
    assert tr.t[0] == pytest.approx(500.0) and tr.dt == pytest.approx(0.05)
    assert tr.v[0] == pytest.approx(-70.0) and tr.v[-1] == pytest.approx(-60.0)
    assert tr.i_ext[0] == pytest.approx(0.0) and tr.i_ext[-1] == pytest.approx(50.0)
    assert rec.describe()["stimulus_steps"] == [50.0]
    vs, cs = trace_to_signals(tr)
    assert vs.units == pq.mV and cs.units == pq.pA
    assert float(vs.t_start.rescale("ms")) == pytest.approx(500.0)
    assert np.allclose(vs.magnitude[:, 0], tr.v) and np.allclose(cs.magnitude[:, 0], tr.i_ext)
    assert vs.annotations["neo_pinn_role"] == "voltage" and cs.annotations["neo_pinn_role"] == "stimulus"


def _vm_and_recorded_current() -> neo.Block:
    rate = 10 * pq.kHz
    n = 2000
    v = neo.AnalogSignal(-0.065 + 0.001 * (np.arange(n) > 500), units="V", sampling_rate=rate, name="Vm")
    i = neo.AnalogSignal(0.04 * (np.arange(n) > 500), units="nA", sampling_rate=rate, name="Iinj")
    seg = neo.Segment()
    seg.analogsignals.extend([v, i])
    block = neo.Block()
    block.segments.append(seg)
    return block


def test_stimulus_finder_is_asked_before_the_builtin_finders():
    block = _vm_and_recorded_current()
    calls = []

    def finder(*, signal, segment):
        calls.append((signal.name, len(segment.analogsignals)))
        return np.full(signal.shape[0], 7.0), "my-rig"

    with pytest.warns(StimulusMismatchWarning, match="my-rig"):  # the recorded Iinj disagrees
        rec = load_recording(block, stimulus_finder=finder)
    (tr,) = rec.traces()
    assert calls and calls[0][0] == "Vm"
    assert tr.stimulus_source == "my-rig" and np.all(tr.i_ext == 7.0)


def test_builtin_finders_without_a_stimulus_finder_or_when_it_finds_nothing():
    block = _vm_and_recorded_current()
    for kwargs in ({}, {"stimulus_finder": None}, {"stimulus_finder": lambda signal, segment: None}):
        (tr,) = load_recording(block, **kwargs).traces()
        assert tr.stimulus_source == "recorded-channel"
        assert tr.i_ext[0] == pytest.approx(0.0) and tr.i_ext[-1] == pytest.approx(40.0)


def test_stimulus_finder_must_sample_the_signal():
    with pytest.raises(StimulusError, match="samples"):
        load_recording(_vm_and_recorded_current(), stimulus_finder=lambda signal, segment: (np.zeros(3), "short"))


def test_voltage_channel_forcing(loaded, recordings_dir):
    path = recordings_dir / "190619B_0003.abf"
    rec = load_recording(path, voltage_channel=1)  # index into describe()["channels"]
    assert rec.voltage_channel == "IN 2"
    assert load_recording(path, voltage_channel="in 0").voltage_channel == "IN 0"
    with pytest.raises(NoVoltageChannelError, match="IN 0"):
        load_recording(path, voltage_channel="Vm")
    with pytest.raises(UnitsError, match="not a voltage"):
        load_recording(recordings_dir / "18425108.abf", voltage_channel="Imemb")
    assert loaded("190619B_0003.abf")[0].describe()["channels"][:2] == [
        {"name": "IN 0", "units": "mV", "dimension": "voltage"},
        {"name": "IN 2", "units": "mV", "dimension": "voltage"}]


def test_bad_sources(tmp_path):
    with pytest.raises(RecordingNotFoundError) as err:
        load_recording(tmp_path / "missing.abf")
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, NeoPinnError)
    junk = tmp_path / "junk.abf"
    junk.write_bytes(b"not an abf file" * 10)
    with pytest.raises(RecordingFormatError, match="junk.abf"):
        load_recording(junk)
    other = tmp_path / "data.xyz"
    other.write_text("1,2,3")
    with pytest.raises(RecordingFormatError, match="Neo"):
        load_recording(other)
    with pytest.raises(RecordingFormatError):
        load_recording(42)
    with pytest.raises(ConfigurationError, match="mode"):
        load_recording(tmp_path / "missing.abf", mode="voltage")


def test_third_party_stimulus_finder_wins(recordings_dir):
    """Through neo_pinn.load_recording, the plugins' finders are asked before the built-in ones."""
    import neo_pinn
    from neo_pinn.hookspecs import hookimpl
    from neo_pinn.plugins import get_state

    class Finder:
        @hookimpl
        def neo_pinn_find_stimulus(self, signal, segment):
            return np.full(signal.shape[0], 7.0), "lab-finder"

    pm = get_state().manager
    finder = Finder()
    pm.register(finder, name="test-lab-finder")
    try:
        with pytest.warns(StimulusMismatchWarning, match="lab-finder"):
            rec = neo_pinn.load_recording(recordings_dir / "17o05027_ic_ramp.abf")
    finally:
        pm.unregister(finder)
    tr = rec.traces()[0]
    assert tr.stimulus_source == "lab-finder" and np.all(tr.i_ext == 7.0)


def test_protocol_sweep_matched_by_start_time(recordings_dir):
    """A user's new Block holding sweeps 5 and 7 gets their own protocol steps, not sweeps 0 and 1's."""
    source = neo.io.AxonIO(str(recordings_dir / "17o05028_ic_steps.abf")).read_block()
    block = neo.Block()
    for k in (5, 7):
        seg = neo.Segment(file_origin=source.file_origin)
        seg.analogsignals.append(source.segments[k].analogsignals[0].copy())
        block.segments.append(seg)
    rec = load_recording(block, stimulus=None)  # None is "auto"
    assert [s.stimulus_source for s in rec.sweeps] == ["abf2-protocol"] * 2
    assert rec.describe()["stimulus_steps"] == pytest.approx([0.0, 20.0])


def test_reloading_an_annotated_tree_keeps_its_marked_stimulus(loaded):
    rec, _ = loaded("17o05028_ic_steps.abf")
    before = _snapshot(rec.block)
    again = load_recording(rec.block)
    assert _same(_snapshot(rec.block), before)  # the first recording's tree is an input too: unchanged
    assert [s.stimulus_source for s in again.sweeps] == ["abf2-protocol"] * 16
    assert all(np.array_equal(a.i_ext, b.i_ext) and np.array_equal(a.v, b.v)
               for a, b in zip(rec.traces(), again.traces()))
    # a user replaces sweep 2's stimulus in the annotated tree: the new one is used
    edited = again.block
    seg = edited.segments[2]
    old = next(s for s in seg.analogsignals if s.annotations.get("neo_pinn_role") == "stimulus")
    new = old.duplicate_with_new_data(np.full(old.shape, 25.0) * pq.pA)
    new.annotations.update(neo_pinn_role="stimulus", neo_pinn_sweep=2, neo_pinn_stimulus_source="user")
    old.annotations["neo_pinn_role"] = "replaced"
    seg.analogsignals.append(new)
    assert np.all(block_to_traces(edited, sweeps=2)[0].i_ext == 25.0)
    third = load_recording(edited)
    assert third.sweeps[2].stimulus_source == "user" and np.all(third.traces(2)[0].i_ext == 25.0)
