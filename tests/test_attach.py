"""attach(): results into the user's Neo tree, NIX/NWB round trips, and the way back (result_from_block)."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import warnings

import neo
import numpy as np
import pytest
import quantities as pq

from neo_pinn.errors import ConfigurationError
from neo_pinn.io.attach import attach, attach_copy, parameters_of, read_attached, result_from_block
from neo_pinn.io.neo_files_reader import decode_nwb_payload, read_block
from neo_pinn.io.neo_writers import write_block
from neo_pinn.result import EstimationResult, ParameterEstimate, SweepFit
from neo_pinn.storage import sha256_of

DT = 0.1  # ms
N_REC = 400  # samples of each recorded sweep (0 .. 39.9 ms)
FIT0 = 50  # the fit window starts at sample 50 (5 ms) ...
N_FIT = 200  # ... and spans 200 samples
STATE_NAMES = ("V", "n", "Ca")
STATE_UNITS = ("mV", "dimensionless", "uM")


def recorded(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Voltage (mV) and current (pA) of recorded sweep k, deterministic."""
    t = np.arange(N_REC) * DT
    v = -65.0 + 10.0 * np.sin(0.3 * t + k) + 0.1 * np.cos(7.0 * t)
    i = np.where((t >= 10.0) & (t < 30.0), 40.0 + 20.0 * k, 0.0)
    return v, i


def make_result(run_id: str = "r42", sweeps=(0, 1)) -> EstimationResult:
    fits = []
    for k in sweeps:
        v, i = recorded(k)
        sl = slice(FIT0, FIT0 + N_FIT)
        t = np.arange(N_REC)[sl] * DT
        v_fit = v[sl] + 0.05 * np.sin(t)
        states = np.column_stack([v_fit, 0.3 + 0.1 * np.tanh(t / 10 - k), 1e-3 * (1 + np.cos(t / 5))])
        fits.append(SweepFit(sweep=k, t=t, v_observed=v[sl].copy(), i_ext=i[sl].copy(), states=states,
                             stimulus_source="recorded-channel", source={"file": "cell.abf", "sha256": "ab" * 32,
                                                                         "segment": k, "signal": "Vm"}))
    params = {
        "g_Na": ParameterEstimate("g_Na", 120.5, "nS", std=1.25, free=True, init=100.0, true_value=120.0),
        "C": ParameterEstimate("C", 1.02, "pF", std=None, free=True, init=1.5, true_value=1.0),
        "E_L": ParameterEstimate("E_L", -54.4, "mV", std=None, free=False),
    }
    return EstimationResult(
        model="toy_ca", backend="lsq", parameters=params, state_names=STATE_NAMES, state_units=STATE_UNITS,
        fits=tuple(fits), noise={"sigma": 0.48, "rho": 0.2},
        metrics={"rmse_mV": 0.05, "loss": 1.5e-3, "n_starts": 4},
        history={"loss": [1.0, 0.3, 0.05, 0.01, 0.0015]},
        provenance={"run_id": run_id, "seed": 7, "device": "cpu", "wall_time_s": 1.25,
                    "versions": {"neo_pinn": "0.1.0", "neo": neo.__version__}, "input_file": "cell.abf",
                    "input_sha256": "ab" * 32},
        config={"max_nfev": 200, "method": "trf", "bounds": {"C": [0.5, 2.0]}},
    )


def make_block(annotated: bool = True) -> neo.Block:
    blk = neo.Block(name="cell", description="user's recording", experimenter="someone")
    for k in range(2):
        seg = neo.Segment(name=f"sweep {k}", sweep_label=f"S{k}")
        v, i = recorded(k)
        extra = {"neo_pinn_role": "voltage", "neo_pinn_sweep": k} if annotated else {}
        vm = neo.AnalogSignal(v.reshape(-1, 1), units="mV", sampling_rate=10 * pq.kHz, t_start=0 * pq.s, name="Vm",
                              array_annotations={"channel_names": np.array(["Vm"])}, cell="c1", **extra)
        extra = {"neo_pinn_role": "stimulus", "neo_pinn_sweep": k} if annotated else {}
        # the current in nA, to check that reading back converts to pA
        im = neo.AnalogSignal((i / 1000.0).reshape(-1, 1), units="nA", sampling_rate=10 * pq.kHz, t_start=0 * pq.s,
                              name="Im", **extra)
        seg.analogsignals.append(vm)
        seg.analogsignals.append(im)
        blk.segments.append(seg)
    return blk


def snapshot(blk: neo.Block) -> dict:
    """Everything a user could see of a tree, as plain data."""
    return {
        "block": (blk.name, blk.description, copy.deepcopy(blk.annotations)),
        "segments": [
            (s.name, copy.deepcopy(s.annotations),
             [(a.name, str(a.units), float(a.t_start.rescale("ms")), float(a.sampling_rate.rescale("Hz")),
               a.magnitude.copy(), copy.deepcopy(a.annotations),
               {k: np.asarray(v).copy() for k, v in a.array_annotations.items()}) for a in s.analogsignals])
            for s in blk.segments
        ],
    }


def assert_same(a: dict, b: dict) -> None:
    assert a["block"] == b["block"]
    assert len(a["segments"]) == len(b["segments"])
    for (n1, an1, s1), (n2, an2, s2) in zip(a["segments"], b["segments"]):
        assert n1 == n2 and an1 == an2 and len(s1) == len(s2)
        for x, y in zip(s1, s2):
            assert x[:4] == y[:4]
            np.testing.assert_array_equal(x[4], y[4])
            assert x[5] == y[5]
            assert x[6].keys() == y[6].keys() and all(np.array_equal(x[6][k], y[6][k]) for k in x[6])


WRITER_SAFE = (str, int, float, bool)


# ------------------------------------------------------------------------------------------ attach
def test_attach_appends_exactly_the_new_signals():
    res, blk = make_result(), make_block()
    before = snapshot(blk)
    originals = [list(s.analogsignals) for s in blk.segments]
    out = attach(res, blk)
    assert out is blk
    for k, seg in enumerate(blk.segments):
        assert len(seg.analogsignals) == 5  # V and one signal per hidden state (n, Ca)
        assert all(a is b for a, b in zip(seg.analogsignals[:2], originals[k]))  # same objects, in place
        v, n_sig, ca = seg.analogsignals[2:]
        assert v.name == "Vm.neo_pinn.toy_ca.lsq.r42.V"
        assert n_sig.name == "Vm.neo_pinn.toy_ca.lsq.r42.n" and ca.name == "Vm.neo_pinn.toy_ca.lsq.r42.Ca"
        fit = res.fits[k]
        for sig in (v, n_sig, ca):
            assert sig.segment is seg
            assert sig.t_start.units == pq.s  # the source signal's time units
            assert float(sig.t_start.rescale("ms")) == pytest.approx(fit.t[0])
            assert float(sig.sampling_period.rescale("ms")) == pytest.approx(DT)
            np.testing.assert_allclose(sig.times.rescale("ms").magnitude, fit.t, atol=1e-9)
            assert sig.annotations["neo_pinn_sweep"] == k
            assert sig.annotations["neo_pinn_run_id"] == "r42"
            assert sig.annotations["neo_pinn_source_signal"] == "Vm"
        assert v.units == pq.mV and v.shape == (N_FIT, 1)
        np.testing.assert_array_equal(v.magnitude[:, 0], fit.v_fit)
        assert v.annotations["neo_pinn_role"] == "reconstruction" and v.annotations["neo_pinn_state"] == "V"
        for j, (sig, unit) in enumerate(((n_sig, pq.dimensionless), (ca, pq.uM)), start=1):
            assert sig.annotations["neo_pinn_role"] == "hidden_states"
            assert sig.annotations["neo_pinn_state"] == STATE_NAMES[j]
            assert sig.units == unit and sig.shape == (N_FIT, 1)
            np.testing.assert_array_equal(sig.magnitude[:, 0], fit.states[:, j])
            assert list(sig.array_annotations["state_names"]) == [STATE_NAMES[j]]
            assert list(sig.array_annotations["state_units"]) == [STATE_UNITS[j]]
        # the parameters as a mapping, without zipping lists
        mapping = json.loads(v.annotations["neo_pinn_parameters"])
        assert mapping["g_Na"]["value"] == 120.5 and mapping["g_Na"]["unit"] == "nS" and mapping["g_Na"]["std"] == 1.25
        assert mapping["g_Na"]["interval_95"] == pytest.approx([120.5 - 1.959964 * 1.25, 120.5 + 1.959964 * 1.25])
        assert mapping["C"]["std"] is None and mapping["C"]["interval_95"] is None and mapping["E_L"]["free"] is False
        ann = v.annotations
        assert ann["neo_pinn_param_names"] == ["g_Na", "C", "E_L"]
        assert ann["neo_pinn_param_units"] == ["nS", "pF", "mV"]
        assert ann["neo_pinn_param_values"] == [120.5, 1.02, -54.4]
        assert ann["neo_pinn_param_std"][0] == 1.25 and math.isnan(ann["neo_pinn_param_std"][1])
        assert ann["neo_pinn_param_free"] == [True, True, False]
        assert json.loads(ann["neo_pinn_config"]) == res.config
        assert json.loads(ann["neo_pinn_noise"]) == res.noise
        assert json.loads(ann["neo_pinn_metrics"]) == res.metrics
        assert ann["neo_pinn_seed"] == 7 and ann["neo_pinn_device"] == "cpu" and ann["neo_pinn_version"] == "0.1.0"
    # the user's part of the tree is untouched
    after = snapshot(blk)
    after["segments"] = [(n, a, s[:2]) for n, a, s in after["segments"]]
    assert_same(before, after)


def test_annotations_are_writer_safe():
    res, blk = make_result(), make_block()
    attach(res, blk)
    new = [s for seg in blk.segments for s in seg.analogsignals[2:]]
    for sig in new:
        for key, val in sig.annotations.items():
            assert key.startswith("neo_pinn_")
            assert val is not None
            if isinstance(val, list):
                assert len({type(x) for x in val}) <= 1, key
                assert all(isinstance(x, WRITER_SAFE) for x in val), key
            else:
                assert isinstance(val, WRITER_SAFE), key


def test_attach_copy_leaves_input_unchanged():
    res, blk = make_result(), make_block()
    before = snapshot(blk)
    out = attach_copy(res, blk)
    assert out is not blk
    assert_same(before, snapshot(blk))
    assert [len(s.analogsignals) for s in blk.segments] == [2, 2]
    assert [len(s.analogsignals) for s in out.segments] == [5, 5]
    # and from a signal or segment target, the whole owning block is copied
    out2 = attach_copy(res, [blk.segments[0].analogsignals[0], blk.segments[1].analogsignals[0]])
    assert [len(s.analogsignals) for s in out2.segments] == [5, 5]
    one = attach_copy(make_result(sweeps=(1,)), blk.segments[1])
    assert [len(s.analogsignals) for s in one.segments] == [2, 5]
    assert_same(before, snapshot(blk))


def test_attach_targets_and_fallbacks():
    res = make_result()
    # signals as target
    blk = make_block()
    attach(res, [blk.segments[1].analogsignals[0], blk.segments[0].analogsignals[0]])
    assert blk.segments[1].analogsignals[2].annotations["neo_pinn_sweep"] == 1
    # no annotations: segment index == sweep (from the fit's source segment)
    blk = make_block(annotated=False)
    attach(res, blk)
    assert [s.analogsignals[2].annotations["neo_pinn_sweep"] for s in blk.segments] == [0, 1]
    assert blk.segments[0].analogsignals[2].name.startswith("Vm.neo_pinn")
    # one segment, one fit
    seg = make_block(annotated=False).segments[0]
    attach(make_result(sweeps=(0,)), seg, name_prefix="cellA")
    assert seg.analogsignals[2].name == "cellA.neo_pinn.toy_ca.lsq.r42.V"


def test_attach_errors_change_nothing():
    blk = make_block()
    before = snapshot(blk)
    with pytest.raises(ConfigurationError, match="neo_pinn_sweep=5"):
        attach(make_result(sweeps=(0, 5)), blk)
    assert_same(before, snapshot(blk))  # sweep 0 was matched, but nothing was appended
    attach(make_result(), blk)
    with pytest.raises(ConfigurationError, match="already"):
        attach(make_result(), blk)
    with pytest.raises(ConfigurationError, match="one Segment"):
        attach(make_result(), make_block(annotated=False).segments[0])
    with pytest.raises(ConfigurationError):
        attach(make_result(), "not a tree")


# ---------------------------------------------------------------------------------- round trips
def assert_results_equal(got: EstimationResult, want: EstimationResult) -> None:
    assert (got.model, got.backend, got.run_id) == (want.model, want.backend, want.run_id)
    assert list(got.parameters) == list(want.parameters)
    for name, p in want.parameters.items():
        q = got.parameters[name]
        assert (q.value, q.unit, q.std, q.free, q.init, q.true_value) == (p.value, p.unit, p.std, p.free, p.init,
                                                                          p.true_value), name
    assert got.state_names == want.state_names and got.state_units == want.state_units
    assert (got.noise, got.metrics, got.config, got.provenance) == (want.noise, want.metrics, want.config,
                                                                    want.provenance)
    assert [f.sweep for f in got.fits] == [f.sweep for f in want.fits]
    for g, w in zip(got.fits, want.fits):
        np.testing.assert_allclose(g.t, w.t, rtol=0, atol=1e-9)
        np.testing.assert_allclose(g.states, w.states, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(g.v_observed, w.v_observed, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(g.i_ext, w.i_ext, rtol=1e-9, atol=1e-9)
        assert g.stimulus_source == w.stimulus_source and g.source == w.source
        assert g.rmse == pytest.approx(w.rmse)


def test_result_from_block_in_memory():
    res, blk = make_result(), make_block()
    attach(res, blk)
    assert_results_equal(result_from_block(blk), res)


@pytest.mark.parametrize("suffix", [".nix", ".nwb"])
def test_round_trip_through_file(tmp_path, suffix):
    res, blk = make_result(), make_block()
    attach(res, blk)
    attach(make_result(run_id="r43"), blk)  # two runs in one tree
    before = snapshot(blk)
    path = write_block(blk, tmp_path / f"out{suffix}")
    assert_same(before, snapshot(blk))  # the writers' renaming / nix_name never reach the user's tree
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"out{suffix}"]  # no temporary left
    back = read_block(path)
    assert_results_equal(result_from_block(back, run_id="r42"), res)
    assert result_from_block(back, run_id="r43").run_id == "r43"
    with pytest.raises(ConfigurationError, match="run_id"):
        result_from_block(back)
    # the user's own signals and annotations survive too, in order
    assert [s.name for s in back.segments] == ["sweep 0", "sweep 1"]
    assert back.name == "cell" and back.annotations["experimenter"] == "someone"
    for k, seg in enumerate(back.segments):
        assert seg.annotations["sweep_label"] == f"S{k}"
        assert [a.name for a in seg.analogsignals][:2] == ["Vm", "Im"]
        vm = seg.analogsignals[0]
        assert vm.annotations["neo_pinn_role"] == "voltage" and vm.annotations["neo_pinn_sweep"] == k
        assert vm.annotations["cell"] == "c1"
        assert list(vm.array_annotations["channel_names"]) == ["Vm"]
        np.testing.assert_array_equal(vm.rescale("mV").magnitude[:, 0], recorded(k)[0])
        # one signal per state, each with its own units, after the round trip too
        assert [a.annotations["neo_pinn_state"] for a in seg.analogsignals[2:5]] == list(STATE_NAMES)
        assert [a.units for a in seg.analogsignals[2:5]] == [pq.mV, pq.dimensionless, pq.uM]
        assert list(seg.analogsignals[4].array_annotations["state_names"]) == ["Ca"]
        assert parameters_of(seg.analogsignals[4])["g_Na"].quantity == 120.5 * pq.nS  # one run per signal


def test_plain_nwbio_reader_still_finds_parameters(tmp_path):
    """A colleague without neo_pinn's read_block reads the NWB file with Neo alone."""
    res, blk = make_result(), make_block()
    attach(res, blk)
    path = write_block(blk, tmp_path / "plain.nwb")
    io = neo.io.NWBIO(str(path), mode="r")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = io.read_all_blocks()[0]
    finally:
        io.close()
    runs = read_attached(raw)
    assert len(runs) == 1
    params = runs[0]["parameters"]
    assert params["g_Na"] == {"value": 120.5, "unit": "nS", "std": 1.25, "free": True, "init": 100.0,
                              "true_value": 120.0}
    assert params["E_L"]["std"] is None and params["E_L"]["free"] is False
    sweeps = sorted(runs[0]["sweeps"], key=lambda s: s["sweep"])
    for sw, fit in zip(sweeps, res.fits):
        np.testing.assert_allclose(sw["states"]["Ca"], fit.states[:, 2])
        np.testing.assert_allclose(sw["t"], fit.t, atol=1e-9)


def test_nix_writer_sanitizes_values_it_cannot_store(tmp_path):
    blk = make_block()
    sig = blk.segments[0].analogsignals[0]
    sig.annotate(maybe=None, nested={"a": [1, 2]}, mixed=[1, "x"])
    back = read_block(write_block(blk, tmp_path / "odd.nix"))
    got = back.segments[0].analogsignals[0].annotations
    assert json.loads(got["maybe"]) is None
    assert json.loads(got["nested"]) == {"a": [1, 2]}
    assert json.loads(got["mixed"]) == [1, "x"]
    assert sig.annotations["maybe"] is None  # the user's values are untouched


def test_write_block_refuses_input_and_existing_files(tmp_path):
    src = tmp_path / "source.nix"
    blk = make_block()
    write_block(blk, src)
    digest = sha256_of(src)
    loaded = read_block(src)
    assert loaded.file_origin == str(src)
    attach(make_result(), loaded)
    with pytest.raises(ConfigurationError, match="read from"):
        write_block(loaded, src, overwrite=True)
    assert sha256_of(src) == digest
    other = tmp_path / "other.nix"
    write_block(loaded, other)
    with pytest.raises(ConfigurationError, match="exists"):
        write_block(loaded, other)
    write_block(loaded, other, overwrite=True)
    with pytest.raises(ConfigurationError, match="suffix"):
        write_block(loaded, tmp_path / "x.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.nix", "source.nix"]


# ------------------------------------------------------------------------ EstimationResult JSON
def test_result_json_round_trip(tmp_path):
    res = make_result()
    back = EstimationResult.from_json(res.to_json())
    assert_results_equal(back, res)
    for g, w in zip(back.fits, res.fits):
        np.testing.assert_array_equal(g.states, w.states)
        np.testing.assert_array_equal(g.v_observed, w.v_observed)
        np.testing.assert_array_equal(g.i_ext, w.i_ext)
        np.testing.assert_array_equal(g.t, w.t)
    assert back.history == res.history and back.samples == res.samples
    path = tmp_path / "r.json"
    res.to_json(path)
    assert_results_equal(EstimationResult.from_json(path), res)
    with pytest.raises(ConfigurationError):
        EstimationResult.from_dict(json.loads(res.to_json(include_arrays=False)))


def test_result_from_json_short_text():
    with pytest.raises(ConfigurationError):
        EstimationResult.from_json(make_result().to_json(include_arrays=False))  # ~1.5 kB of JSON text


def test_result_json_nan_parameter_value():
    res = make_result()
    params = dict(res.parameters)
    params["C"] = ParameterEstimate("C", math.nan, "pF")
    back = EstimationResult.from_json(EstimationResult(**{**res.__dict__, "parameters": params}).to_json())
    assert math.isnan(back["C"].value)


# ------------------------------------------------------------------------------- a real recording
@pytest.mark.recordings
@pytest.mark.parametrize("suffix", [".nix", ".nwb"])
def test_real_nwb_tree_round_trip(tmp_path, suffix, recordings_dir):
    """A tree read from a real NWB file (patch-clamp series, electrode dicts, NWB file fields) goes out and back."""
    import re

    src = recordings_dir / "99111002.nwb"
    if not src.exists():
        pytest.skip("99111002.nwb is not among the shared recordings")
    digest = sha256_of(src)
    blk = read_block(src)
    seg = blk.segments[0]
    for a in seg.analogsignals:  # mark the signals as the io layer does
        m = re.fullmatch(r"(ics?)__Step__(\d+)", a.name)
        a.annotate(neo_pinn_role="voltage" if m.group(1) == "ic" else "stimulus", neo_pinn_sweep=int(m.group(2)) - 1)
    by_name = {a.name: a for a in seg.analogsignals}
    fits = []
    for k in (0, 3):
        v, i = by_name[f"ic__Step__{k + 1}"], by_name[f"ics__Step__{k + 1}"]
        sl = slice(1000, 1500)
        vv = v.rescale("mV").magnitude[sl, 0].astype(float)
        fits.append(SweepFit(sweep=k, t=v.times.rescale("ms").magnitude[sl], v_observed=vv,
                             i_ext=i.rescale("pA").magnitude[sl, 0].astype(float),
                             states=np.column_stack([vv + 0.1, 0.3 + 0 * vv, 1e-3 + 0 * vv]),
                             stimulus_source="nwb-stimulus"))
    res = dataclasses.replace(make_result(), fits=tuple(fits))
    attach(res, blk)
    assert [a.name for a in seg.analogsignals[-3:]] == ["ic__Step__4.neo_pinn.toy_ca.lsq.r42.V",
                                                        "ic__Step__4.neo_pinn.toy_ca.lsq.r42.n",
                                                        "ic__Step__4.neo_pinn.toy_ca.lsq.r42.Ca"]
    with pytest.raises(ConfigurationError, match="read from"):
        write_block(blk, src, overwrite=True)
    back = read_block(write_block(blk, tmp_path / f"real{suffix}"))
    assert_results_equal(result_from_block(back), res)
    assert sha256_of(src) == digest


@pytest.mark.parametrize("suffix", [".nix", ".nwb"])
def test_one_parameter_one_state_round_trip(tmp_path, suffix):
    """NixIO reads one-element lists back as scalars; the way back must not care."""
    res = make_result(sweeps=(0,))
    fit = dataclasses.replace(res.fits[0], states=res.fits[0].states[:, :1].copy())
    res = dataclasses.replace(res, parameters={"C": res.parameters["C"]}, state_names=("V",), state_units=("mV",),
                              fits=(fit,))
    blk = make_block()
    attach(res, blk)
    back = read_block(write_block(blk, tmp_path / f"one{suffix}"))
    assert_results_equal(result_from_block(back), res)


def test_rewriting_a_plain_nwbio_read_keeps_everything(tmp_path):
    res, blk = make_result(), make_block()
    attach(res, blk)
    first = write_block(blk, tmp_path / "first.nwb")
    io = neo.io.NWBIO(str(first), mode="r")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = io.read_all_blocks()[0]
    finally:
        io.close()
    vm_raw = [a for a in raw.segments[0].analogsignals if decode_nwb_payload(a)["name"] == "Vm"]
    assert len(vm_raw) == 1 and vm_raw[0].name != "Vm"  # plain NWBIO renames
    vm_raw[0].annotate(checked_by="me")
    back = read_block(write_block(raw, tmp_path / "second.nwb"))
    assert_results_equal(result_from_block(back), res)
    vm = back.segments[0].analogsignals[0]
    assert vm.name == "Vm" and vm.annotations["checked_by"] == "me" and vm.annotations["cell"] == "c1"


@pytest.mark.parametrize("split", [False, True])
def test_results_attached_as_one_multichannel_states_signal_still_read_back(split):
    """Earlier versions attached every state as one multi-channel signal; tools that split multi-channel
    signals (load_recording does) leave one signal per channel. Both read back."""
    res, blk = make_result(), make_block()
    attach(res, blk)
    for k, seg in enumerate(blk.segments):
        v, n_sig, ca = seg.analogsignals[2:]
        seg.analogsignals.pop()
        seg.analogsignals.pop()
        fit = res.fits[k]
        ann = {key: val for key, val in n_sig.annotations.items() if key != "neo_pinn_state"}
        names = np.array(STATE_NAMES)
        st = neo.AnalogSignal(fit.states.copy(), units=pq.dimensionless, t_start=v.t_start,
                              sampling_rate=v.sampling_rate, name=v.name[:-2] + ".states",
                              array_annotations={"state_names": names, "state_units": np.array(STATE_UNITS),
                                                 "channel_names": names.copy()}, **ann)
        if not split:
            seg.analogsignals.append(st)
            continue
        for j in range(st.shape[1]):
            part = st[:, j:j + 1]  # keeps annotations, slices array annotations
            part.name = str(names[j])
            seg.analogsignals.append(part)
    runs = read_attached(blk)
    assert len(runs[0]["sweeps"][0]["signals"]["states"]) == (3 if split else 1)
    assert_results_equal(result_from_block(blk), res)


def test_parameters_of_reads_the_mapping_with_units():
    res, blk = make_result(), make_block()
    attach(res, blk)
    for obj in (blk, blk.segments[1], blk.segments[0].analogsignals[3], res):
        params = parameters_of(obj)
        assert list(params) == ["g_Na", "C", "E_L"]
        assert params["g_Na"].quantity.rescale("uS") == 0.1205 * pq.uS
        assert params["g_Na"].std_quantity == 1.25 * pq.nS and params["C"].std_quantity is None
        lo, hi = params["g_Na"].interval(0.95)
        assert lo.units == pq.nS and float(hi - lo) == pytest.approx(2 * 1.959964 * 1.25, rel=1e-6)
        assert params["E_L"].free is False and params["C"].interval() is None
    assert res.quantities["E_L"] == -54.4 * pq.mV
    attach(make_result(run_id="r43"), blk)
    with pytest.raises(ConfigurationError, match="run_id"):
        parameters_of(blk)
    assert parameters_of(blk, run_id="r43")["C"].value == 1.02
    with pytest.raises(ConfigurationError, match="No neo_pinn signal"):
        parameters_of(blk.segments[0].analogsignals[0])
    with pytest.raises(ConfigurationError, match="between 0 and 1"):
        res["g_Na"].interval(95)
