"""Units at the door, time-sliced and unnamed Neo inputs, and attach refusing a result fitted elsewhere."""

from __future__ import annotations

from pathlib import Path

import neo
import numpy as np
import pytest
import quantities as pq

import neo_pinn
from neo_pinn.errors import ConfigurationError, StimulusError, StimulusNotFoundError, UnitsError

SAMPLES = Path(__file__).resolve().parents[1] / "sample_data"
FREE = ["gCa", "gK"]


@pytest.fixture(scope="module")
def ml_block():
    """The sample ML recording (NWB) as neo_pinn's annotated Block: voltage in mV, stimulus in pA, 10 kHz."""
    return neo_pinn.load_recording(SAMPLES / "ml_snlc.nwb").block


def _pair(block):
    seg = block.segments[0]
    v = next(s for s in seg.analogsignals if s.annotations.get("neo_pinn_role") == "voltage")
    i = next(s for s in seg.analogsignals if s.annotations.get("neo_pinn_role") == "stimulus")
    return v, i


@pytest.fixture(scope="module")
def fits(ml_block):
    """The same lsq fit with canonical numbers and with every physical argument in other units."""
    v, i = _pair(ml_block)
    canonical = neo_pinn.estimate(
        v, "morris_lecar", "lsq", FREE, preset="snlc", window=(100.0, 250.0), stimulus=np.asarray(i.magnitude[:, 0]),
        values={"C": 20.0}, init={"gCa": 3.0, "gK": 9.0}, bounds={"gCa": (1.0, 16.0), "gK": (2.0, 32.0)},
        truth={"gCa": 4.0, "gK": 8.0})
    other = neo_pinn.estimate(
        v, "morris_lecar", "lsq", FREE, preset="snlc", window=(0.1 * pq.s, 0.25 * pq.s), stimulus=i.rescale("nA"),
        values={"C": 0.02 * pq.nF}, init={"gCa": 0.003 * pq.uS, "gK": 9000.0 * pq.pS},
        bounds={"gCa": (0.001 * pq.uS, 0.016 * pq.uS), "gK": (2e-9 * pq.S, 32.0 * pq.nS)},
        truth={"gCa": 0.004 * pq.uS, "gK": 8.0 * pq.nS})
    return canonical, other


def test_physical_arguments_in_other_units_give_the_same_fit(fits):
    canonical, other = fits
    assert canonical.status != "failed"
    for name, p in canonical.parameters.items():
        assert other[name].value == pytest.approx(p.value, rel=1e-9, abs=1e-12), name
        if p.true_value is None:
            assert other[name].true_value is None
        else:
            assert other[name].true_value == pytest.approx(p.true_value, rel=1e-12)
    np.testing.assert_allclose(other.fits[0].t, canonical.fits[0].t)
    np.testing.assert_allclose(other.fits[0].i_ext, canonical.fits[0].i_ext, rtol=1e-12)
    np.testing.assert_allclose(other.fits[0].states, canonical.fits[0].states, rtol=1e-7, atol=1e-9)
    assert canonical.fits[0].t[0] == pytest.approx(100.0) and canonical.fits[0].t[-1] <= 250.0
    assert other["C"].value == pytest.approx(20.0, rel=1e-12)  # 0.02 nF is 20 pF, not 0.02 pF


@pytest.mark.parametrize("kwargs, named", [
    ({"window": (100 * pq.mV, 300 * pq.mV)}, "window"),
    ({"values": {"C": 100 * pq.mV}}, "C"),
    ({"init": {"gCa": 4 * pq.mV}}, "gCa"),
    ({"bounds": {"gK": (1 * pq.pA, 9 * pq.pA)}}, "gK"),
    ({"truth": {"gK": 8 * pq.ms}}, "gK"),
    ({"stimulus": np.zeros(10001) * pq.mV}, "current"),
])
def test_a_wrong_dimension_is_refused_naming_the_argument(ml_block, kwargs, named):
    v, _ = _pair(ml_block)
    with pytest.raises(UnitsError, match=named):
        neo_pinn.estimate(v, "morris_lecar", "lsq", FREE, preset="snlc", **{"window": (100.0, 300.0), **kwargs})


def test_simulation_arguments_accept_quantities():
    tr, states = neo_pinn.synthetic_trace("morris_lecar", preset="snlc", stimulus=60.0, duration=50.0, rate_hz=10000.0)
    tr2, states2 = neo_pinn.synthetic_trace("morris_lecar", preset="snlc", stimulus=0.06 * pq.nA, duration=0.05 * pq.s,
                                            rate_hz=10 * pq.kHz)
    np.testing.assert_allclose(tr.t, tr2.t, rtol=1e-12)  # 0.05 s is 50 ms up to rounding
    np.testing.assert_allclose(states, states2, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(tr.i_ext, tr2.i_ext, rtol=1e-12)
    a = neo_pinn.simulate("morris_lecar", {"gCa": 4.0}, preset="snlc", duration=20.0, dt=0.05).numpy()
    b = neo_pinn.simulate("morris_lecar", {"gCa": 0.004 * pq.uS}, preset="snlc", duration=0.02 * pq.s,
                          dt=50 * pq.us).numpy()
    np.testing.assert_allclose(a[0], b[0], rtol=1e-12)  # 50 µs is 0.05 ms up to rounding
    np.testing.assert_allclose(a[1], b[1], rtol=1e-9, atol=1e-12)
    with pytest.raises(UnitsError, match="duration"):
        neo_pinn.synthetic_trace("morris_lecar", preset="snlc", duration=50 * pq.mV)
    with pytest.raises(UnitsError, match="rate_hz"):
        neo_pinn.synthetic_trace("morris_lecar", preset="snlc", duration=50.0, rate_hz=0.1 * pq.ms)
    with pytest.raises(UnitsError, match="dt"):
        neo_pinn.simulate("morris_lecar", preset="snlc", duration=20.0, dt=0.05 * pq.mV)


# ------------------------------------------------------------------------------ time-sliced and unnamed inputs
def test_a_time_sliced_voltage_with_its_whole_current(ml_block):
    v, i = _pair(ml_block)
    whole = neo_pinn.load_recording(v, stimulus=i).traces()[0]
    part = v.time_slice(0.1 * pq.s, 0.3 * pq.s)
    assert part.segment is None  # what Elephant users get: Neo drops the Segment
    for stim in (i, i.rescale("nA"), i.time_slice(0.1 * pq.s, 0.3 * pq.s)):
        tr = neo_pinn.load_recording(part, stimulus=stim).traces()[0]
        keep = (whole.t >= tr.t[0] - 1e-9) & (whole.t <= tr.t[-1] + 1e-9)
        assert tr.t[0] == pytest.approx(100.0) and keep.sum() == tr.t.size
        np.testing.assert_allclose(tr.v, whole.v[keep])
        np.testing.assert_allclose(tr.i_ext, whole.i_ext[keep], rtol=1e-12)
    with pytest.raises(StimulusError, match="does not cover"):
        neo_pinn.load_recording(part, stimulus=i.time_slice(0.2 * pq.s, 0.3 * pq.s)).traces()
    with pytest.raises(StimulusNotFoundError, match="time_slice"):
        neo_pinn.load_recording(part).traces()
    # a sliced Segment keeps its current beside the voltage: found by itself
    seg = ml_block.segments[0].time_slice(0.1 * pq.s, 0.3 * pq.s)
    tr = neo_pinn.load_recording(seg).traces()[0]
    np.testing.assert_allclose(tr.i_ext, whole.i_ext[(whole.t >= 100.0 - 1e-9) & (whole.t <= tr.t[-1] + 1e-9)])


def test_a_time_sliced_abf_sweep_finds_its_protocol(recordings_dir):
    path = recordings_dir / "17o05028_ic_steps.abf"
    if not path.exists():
        pytest.skip(f"{path.name} is not in the shared recordings folder")
    blk = neo.io.AxonIO(str(path)).read_block()
    for k in (0, 5):
        vm = blk.segments[k].analogsignals[0]
        whole = neo_pinn.load_recording(vm).traces()[0]
        part = vm.time_slice(vm.t_start + 0.1 * pq.s, vm.t_start + 2.0 * pq.s)
        tr = neo_pinn.load_recording(part).traces()[0]
        keep = (whole.t >= tr.t[0] - 1e-9) & (whole.t <= tr.t[-1] + 1e-9)
        assert tr.stimulus_source == whole.stimulus_source == "abf2-protocol"
        assert keep.sum() == tr.t.size and np.ptp(whole.i_ext[keep]) > 0  # the step lies inside the slice
        np.testing.assert_array_equal(tr.i_ext, whole.i_ext[keep])


@pytest.mark.parametrize("current_first", [False, True])
def test_unnamed_signals_are_told_apart_by_their_units(ml_block, current_first):
    """Neo's default name is None: the current must not be taken for a second voltage sweep."""
    v, i = _pair(ml_block)
    named = neo_pinn.load_recording(v, stimulus=i).traces()[0]
    seg = neo.Segment()
    volts = neo.AnalogSignal(v.rescale("V").magnitude, units="V", sampling_rate=v.sampling_rate)
    amps = neo.AnalogSignal(i.rescale("nA").magnitude, units="nA", sampling_rate=i.sampling_rate)
    for sig in ((amps, volts) if current_first else (volts, amps)):
        seg.analogsignals.append(sig)
    blk = neo.Block()
    blk.segments.append(seg)
    rec = neo_pinn.load_recording(blk)
    assert len(rec) == 1 and rec.recording_mode == "current_clamp"
    tr = rec.traces()[0]
    assert tr.stimulus_source == "recorded-channel"
    np.testing.assert_allclose(tr.v, named.v, rtol=1e-12)
    np.testing.assert_allclose(tr.i_ext, named.i_ext, rtol=1e-12)


# ------------------------------------------------------------------------------------------ attach
def test_attach_refuses_a_result_fitted_elsewhere(fits, ml_block):
    res = fits[0]
    hh = neo_pinn.load_recording(SAMPLES / "hh_steps.nwb").block
    with pytest.raises(ConfigurationError, match="belongs elsewhere"):
        neo_pinn.attach(res, hh)
    # the same cell resampled at 20 kHz: another sampling rate
    v, i = _pair(ml_block)
    fine = neo.AnalogSignal(np.repeat(v.magnitude, 2, axis=0), units="mV", sampling_rate=2 * v.sampling_rate,
                            t_start=v.t_start, name=v.name, neo_pinn_role="voltage", neo_pinn_sweep=0)
    seg = neo.Segment()
    seg.analogsignals.append(fine)
    with pytest.raises(ConfigurationError, match="belongs elsewhere"):
        neo_pinn.attach(res, seg)
    # the same samples with other values (another recording with the same layout)
    other = v.copy() + 1.0 * pq.mV
    other.annotations.update(v.annotations)
    seg2 = neo.Segment()
    seg2.analogsignals.append(other)
    with pytest.raises(ConfigurationError, match="belongs elsewhere"):
        neo_pinn.attach(res, seg2)
    assert len(seg.analogsignals) == len(seg2.analogsignals) == 1  # nothing appended
    # the ABF of the same data: its int16 samples are not what the fit read
    abf = neo_pinn.load_recording(SAMPLES / "ml_snlc.abf", stimulus="step:amp=60pA,start=100ms,stop=900ms").block
    with pytest.raises(ConfigurationError, match="belongs elsewhere"):
        neo_pinn.attach(res, abf)
    # and where it was fitted it lands, one signal per state in its own units, on the fit's absolute times
    out = neo_pinn.attach_copy(res, ml_block)
    new = [s for s in out.segments[0].analogsignals if s.annotations.get("neo_pinn_run_id") == res.run_id]
    assert [s.annotations["neo_pinn_state"] for s in new] == ["V", "n"]
    assert new[0].units == pq.mV and new[1].units == pq.dimensionless
    assert float(new[1].t_start.rescale("ms")) == pytest.approx(100.0)
    back = neo_pinn.result_from_block(out)
    np.testing.assert_allclose(back.fits[0].states, res.fits[0].states)
    assert neo_pinn.parameters_of(out)["gCa"].quantity.rescale("nS").magnitude == pytest.approx(res["gCa"].value)


def test_in_memory_provenance_names_the_file_neo_read(ml_block):
    raw = neo.io.NWBIO(str(SAMPLES / "ml_snlc.nwb"), "r").read_block()
    tr = neo_pinn.load_recording(raw).traces()[0]
    assert tr.source["file_name"] == "ml_snlc.nwb" and tr.source["file_origin"] is True


def test_model_parameter_vectors_rescale_quantities():
    m = neo_pinn.get_model("morris_lecar")
    np.testing.assert_allclose(m.theta({"gCa": 0.004 * pq.uS, "C": 0.02 * pq.nF}, preset="snlc"),
                               m.theta({"gCa": 4.0, "C": 20.0}, preset="snlc"), rtol=1e-12)
    with pytest.raises(UnitsError, match="gCa"):
        m.theta({"gCa": 4 * pq.mV})
