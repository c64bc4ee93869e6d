"""NWB-native results (neo_pinn.io.nwb_results): the recording's icephys structure kept or converted, the fit in
processing/icephys, read back exactly, clean for nwbinspector, readable with plain pynwb."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pynwb
import pytest

import neo_pinn
from neo_pinn.errors import ConfigurationError, InputFormatError, OutputPathError, UnknownNameError
from neo_pinn.io.nwb_results import PROCESSING_MODULE, read_result_nwb, write_result_nwb
from neo_pinn.storage import sha256_of

REPO = Path(__file__).resolve().parents[1]
NWB_IN = REPO / "sample_data" / "ml_snlc.nwb"
ABF_IN = REPO / "sample_data" / "ml_snlc.abf"
ABF_STIMULUS = "step:amp=60pA,start=100ms,stop=900ms"  # the ABF holds no protocol (sample_data/README.md)
EXAMPLE = REPO / "examples" / "nwb_results_pynwb.py"


def _fit(rec):
    return neo_pinn.estimate(rec, "morris_lecar", "lsq", ["gCa", "gK"], preset="snlc", window=(100, 400), seed=0,
                             progress=False)


@pytest.fixture(scope="module")
def sums():
    """The inputs' checksums before anything here ran."""
    return {p: sha256_of(p) for p in (NWB_IN, ABF_IN)}


@pytest.fixture(scope="module")
def nwb_fit(sums):
    rec = neo_pinn.load_recording(NWB_IN)
    return rec, _fit(rec)


@pytest.fixture(scope="module")
def abf_fit(sums):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyabf's notes on the header of an ABF1 written by pyabf
        rec = neo_pinn.load_recording(ABF_IN, stimulus=ABF_STIMULUS)
    return rec, _fit(rec)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, nwb_fit, abf_fit):
    """One output per kind of source (the CLI's way: source= the Recording the fit was made on)."""
    folder = tmp_path_factory.mktemp("nwb_results")
    return {"nwb": write_result_nwb(nwb_fit[1], folder / "nwb_fit.nwb", source=nwb_fit[0]),
            "abf": write_result_nwb(abf_fit[1], folder / "abf_fit.nwb", source=abf_fit[0])}


def _module(nwbfile):
    return nwbfile.processing[PROCESSING_MODULE]


def _same(a, b) -> bool:
    """Equality where NaN equals NaN (JSON has no NaN: a metric NaN comes back NaN)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _issues(path) -> set[tuple]:
    from nwbinspector import inspect_nwbfile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {(m.check_function_name, m.object_type, m.object_name, m.location)
                for m in inspect_nwbfile(nwbfile_path=str(path))}


# ------------------------------------------------------------------------------------------- round trip
def test_round_trip_restores_the_result(outputs, nwb_fit):
    res = nwb_fit[1]
    back = read_result_nwb(outputs["nwb"])
    assert back.parameters == res.parameters  # values, std, units, free, init, truth: exact
    assert (back.model, back.backend, back.status, back.run_id) == (res.model, res.backend, res.status, res.run_id)
    assert back.state_names == res.state_names and back.state_units == res.state_units
    for a, b in zip(back.fits, res.fits):
        for field in ("t", "v_observed", "i_ext", "states"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        assert a.sweep == b.sweep and a.stimulus_source == b.stimulus_source
        assert a.source == {**b.source, "file": Path(b.source["file"]).name}  # no folder of this machine
    for name in ("metrics", "noise", "config", "history", "samples", "verdict", "cell", "diagnostics"):
        assert _same(getattr(back, name), getattr(res, name)), name
    expected = dict(res.provenance, inputs=[{**i, "file": Path(i["file"]).name} for i in res.provenance["inputs"]])
    assert _same(back.provenance, expected)


# ------------------------------------------------------------------------------------------- NWB input
def test_nwb_input_keeps_its_structure_and_stays_unchanged(outputs, sums):
    assert sha256_of(NWB_IN) == sums[NWB_IN]
    with pynwb.NWBHDF5IO(str(NWB_IN), "r") as a, pynwb.NWBHDF5IO(str(outputs["nwb"]), "r") as b:
        src, out = a.read(), b.read()
        assert set(out.acquisition) == set(src.acquisition) == {"ic__sim__0"}
        assert set(out.stimulus) == set(src.stimulus) == {"ics__sim__0"}
        assert set(out.icephys_electrodes) == set(src.icephys_electrodes) and set(out.devices) == set(src.devices)
        np.testing.assert_array_equal(out.acquisition["ic__sim__0"].data[:], src.acquisition["ic__sim__0"].data[:])
        assert out.acquisition["ic__sim__0"].electrode.name == "electrode 0"
        for table in ("intracellular_recordings", "icephys_simultaneous_recordings", "icephys_sequential_recordings"):
            assert len(getattr(out, table)) == len(getattr(src, table)) == 1, table
        assert out.intracellular_recordings.category_tables["responses"]["response"][0].timeseries.name == "ic__sim__0"
        assert (out.session_start_time, out.notes, out.session_description) == \
            (src.session_start_time, src.notes, src.session_description)
        # a derived file: new identifier and object ids (nwbinspector's check_unique_identifiers)
        assert out.identifier != src.identifier and out.object_id != src.object_id
        prov = dict(zip(_module(out)[f"{_run(out)}_fit_provenance"]["field"][:],
                        _module(out)[f"{_run(out)}_fit_provenance"]["value"][:]))
        assert prov["source_nwb_identifier"] == src.identifier
        assert prov["source_file_name"] == "ml_snlc.nwb" and prov["source_sha256"] == sums[NWB_IN]


def _run(nwbfile) -> str:
    runs = [n[: -len("_fit_provenance")] for n in _module(nwbfile).data_interfaces if n.endswith("_fit_provenance")]
    assert len(runs) == 1
    return runs[0]


def test_states_have_their_units_and_the_fits_time_axis(outputs, nwb_fit):
    res = nwb_fit[1]
    fit = res.fits[0]
    with pynwb.NWBHDF5IO(str(outputs["nwb"]), "r") as io:
        module = _module(io.read())
        base = f"morris_lecar_lsq_{res.run_id}_sweep0"
        v, n, resid = module[f"{base}_V"], module[f"{base}_n"], module[f"{base}_residual"]
        assert (v.unit, v.conversion) == ("volts", 1e-3) and (resid.unit, resid.conversion) == ("volts", 1e-3)
        assert (n.unit, n.conversion) == ("dimensionless", 1.0)  # a gating probability: truly dimensionless
        np.testing.assert_array_equal(v.data[:], fit.states[:, 0])  # stored in mV, exactly
        np.testing.assert_allclose(v.get_data_in_units(), fit.states[:, 0] * 1e-3, rtol=1e-15)
        np.testing.assert_array_equal(n.data[:], fit.states[:, 1])
        np.testing.assert_allclose(resid.data[:], fit.v_observed - fit.states[:, 0], rtol=0, atol=1e-12)
        for ts in (v, n, resid):
            assert ts.starting_time == pytest.approx(0.1) and ts.rate == pytest.approx(10_000.0)  # window 100-400 ms
            np.testing.assert_allclose(ts.get_timestamps() * 1000.0, fit.t, rtol=0, atol=1e-9)
            assert ts.comments == f"neo_pinn run {res.run_id}"
        assert "morris_lecar" in n.description and "lsq" in n.description and "hidden state n" in n.description
        assert "sweep 0" in v.description and "'ic__sim__0'" in v.description


def test_parameters_and_provenance_tables(outputs, nwb_fit):
    res = nwb_fit[1]
    with pynwb.NWBHDF5IO(str(outputs["nwb"]), "r") as io:
        module = _module(io.read())
        table = module[f"{res.run_id}_parameters"].to_dataframe()
        assert list(table["parameter"]) == list(res.parameters)
        assert {"value", "unit", "std", "free", "initial", "on_bound", "backend", "model", "run_id"} <= set(table)
        # no ground truth given, no cell-scaled range: those columns would be all NaN, so they are left out
        assert not {"true_value", "relative_error", "lower_bound", "upper_bound"} & set(table)
        rows = table.set_index("parameter")
        for name, p in res.parameters.items():
            assert rows.loc[name, "value"] == p.value and rows.loc[name, "unit"] == p.unit
            assert bool(rows.loc[name, "free"]) == p.free
            assert (math.isnan(rows.loc[name, "std"]) if p.std is None else rows.loc[name, "std"] == p.std)
        assert rows.loc["gCa", "unit"] == "nS" and rows.loc["phi", "unit"] == "1/ms" and not rows["on_bound"].any()
        assert set(table["run_id"]) == {res.run_id} and set(table["backend"]) == {"lsq"}
        prov = module[f"{res.run_id}_fit_provenance"].to_dataframe().set_index("field")
        assert prov.loc["seed", "value"] == "0" and prov.loc["status", "value"] == res.status
        assert float(prov.loc["rmse", "value"]) == res.metrics["rmse_mV"] and prov.loc["rmse", "unit"] == "mV"
        assert json.loads(prov.loc["backend_options", "value"]) == json.loads(json.dumps(res.config))
        here = str(REPO)
        assert not any(here in str(v) for v in prov["value"])  # no path of this machine in the file


def test_truth_and_cell_scaled_bounds_fill_their_columns(tmp_path, nwb_fit):
    res = nwb_fit[1]
    params = {k: dataclasses.replace(p, true_value=4.0 if k == "gCa" else p.true_value)
              for k, p in res.parameters.items()}
    cell = dict(res.cell, scaling={"init": {}, "bounds": {"gCa": [0.5, 40.0]}, "fixed": {}, "area_scale": 1.0,
                                   "notes": []})
    other = dataclasses.replace(res, parameters=params, cell=cell)
    out = write_result_nwb(other, tmp_path / "t.nwb", source=NWB_IN)
    with pynwb.NWBHDF5IO(str(out), "r") as io:
        rows = _module(io.read())[f"{res.run_id}_parameters"].to_dataframe().set_index("parameter")
    assert rows.loc["gCa", "true_value"] == 4.0 and math.isnan(rows.loc["gK", "true_value"])
    assert rows.loc["gCa", "relative_error"] == pytest.approx(abs(res["gCa"].value - 4.0) / 4.0)
    assert (rows.loc["gCa", "lower_bound"], rows.loc["gCa", "upper_bound"]) == (0.5, 40.0)
    assert math.isnan(rows.loc["gK", "lower_bound"]) and rows.loc["gK", "bounds_source"] == "unknown"


# ------------------------------------------------------------------------------------------- ABF input
def test_abf_input_becomes_icephys_nwb(outputs, abf_fit, sums):
    rec, res = abf_fit
    assert sha256_of(ABF_IN) == sums[ABF_IN]
    trace = rec.traces()[0]
    with pynwb.NWBHDF5IO(str(outputs["abf"]), "r") as io:
        f = io.read()
        (resp,), (stim,) = f.acquisition.values(), f.stimulus.values()
        assert isinstance(resp, pynwb.icephys.CurrentClampSeries)
        assert isinstance(stim, pynwb.icephys.CurrentClampStimulusSeries)
        assert (resp.unit, resp.conversion, stim.unit, stim.conversion) == ("volts", 1e-3, "amperes", 1e-12)
        assert resp.sweep_number == stim.sweep_number == 0 and resp.gain is None  # the ABF gives no gain
        assert resp.starting_time == stim.starting_time == 0.0 and resp.rate == stim.rate == 10_000.0
        np.testing.assert_array_equal(resp.data[:], trace.v)  # mV as Neo reads them
        np.testing.assert_allclose(stim.get_data_in_units(), trace.i_ext * 1e-12, rtol=1e-15)
        assert stim.get_data_in_units().max() == pytest.approx(60e-12)  # the 60 pA step in amperes
        assert resp.electrode is stim.electrode and list(f.icephys_electrodes) == ["electrode 0"]
        assert resp.electrode.device.name == "amplifier"
        assert len(f.intracellular_recordings) == 1 and len(f.icephys_sequential_recordings) == 1
        assert f.intracellular_recordings.category_tables["stimuli"]["stimulus"][0].timeseries.name == stim.name
        module = _module(f)
        assert module[f"morris_lecar_lsq_{res.run_id}_sweep0_V"].unit == "volts"
    assert read_result_nwb(outputs["abf"]).parameters == res.parameters


def test_abf_path_without_stimulus_stores_the_fits_current(tmp_path, abf_fit):
    res = abf_fit[1]
    out = write_result_nwb(res, tmp_path / "p.nwb", source=ABF_IN)  # read again: no protocol in the file
    with pynwb.NWBHDF5IO(str(out), "r") as io:
        f = io.read()
        (resp,), (stim,) = f.acquisition.values(), f.stimulus.values()
        assert resp.data.shape == (10001,) and stim.data.shape == (3001,)  # the current only over the fitted window
        assert stim.starting_time == pytest.approx(0.1)
        np.testing.assert_array_equal(stim.data[:], res.fits[0].i_ext)
        assert "fitted window" in stim.description


def test_without_the_file_the_fitted_sweeps_are_written(tmp_path, abf_fit):
    res = abf_fit[1]
    gone = str(tmp_path / "moved_away.abf")  # the recording is no longer where the fit read it
    fits = tuple(dataclasses.replace(f, source=dict(f.source, file=gone)) for f in res.fits)
    res = dataclasses.replace(res, fits=fits)
    out = write_result_nwb(res, tmp_path / "a.nwb")
    with pynwb.NWBHDF5IO(str(out), "r") as io:
        f = io.read()
        (resp,) = f.acquisition.values()
        np.testing.assert_array_equal(resp.data[:], res.fits[0].v_observed)
        assert resp.starting_time == pytest.approx(0.1)
    assert read_result_nwb(out).run_id == res.run_id


# ------------------------------------------------------------------------------------------- refusals, runs
def test_refuses_overwrite_the_input_and_a_foreign_source(tmp_path, outputs, nwb_fit, abf_fit, sums):
    res = nwb_fit[1]
    target = tmp_path / "x.nwb"
    target.write_bytes(b"keep")
    with pytest.raises(OutputPathError, match="overwrite=True"):
        write_result_nwb(res, target, source=NWB_IN)
    assert target.read_bytes() == b"keep"
    write_result_nwb(res, target, source=NWB_IN, overwrite=True)
    assert read_result_nwb(target).run_id == res.run_id
    for src in (NWB_IN, nwb_fit[0]):
        with pytest.raises(OutputPathError, match="input"):
            write_result_nwb(res, NWB_IN, source=src, overwrite=True)
    with pytest.raises(ConfigurationError, match="fitted on ml_snlc.abf"):
        write_result_nwb(abf_fit[1], tmp_path / "y.nwb", source=NWB_IN)
    with pytest.raises(ConfigurationError, match="fitted on ml_snlc.nwb"):
        write_result_nwb(res, tmp_path / "y.nwb", source=ABF_IN)
    assert not (tmp_path / "y.nwb").exists()
    assert {p: sha256_of(p) for p in sums} == sums


def test_a_second_run_is_added_and_chosen_by_id(tmp_path, outputs, nwb_fit):
    res = nwb_fit[1]
    second = dataclasses.replace(res, provenance=dict(res.provenance, run_id="second01"))
    both = write_result_nwb(second, tmp_path / "both.nwb", source=outputs["nwb"])
    with pytest.raises(ConfigurationError, match=f"{res.run_id}, second01|second01, {res.run_id}"):
        read_result_nwb(both)
    assert read_result_nwb(both, run_id="second01").run_id == "second01"
    assert read_result_nwb(both, run_id=res.run_id).parameters == res.parameters
    with pytest.raises(UnknownNameError, match="second01"):
        read_result_nwb(both, run_id="nope")
    with pytest.raises(ConfigurationError, match="already in"):
        write_result_nwb(second, tmp_path / "again.nwb", source=both)
    with pytest.raises(InputFormatError, match="no neo_pinn result"):
        read_result_nwb(NWB_IN)


# ------------------------------------------------------------------------------------------- other readers
def test_nwbinspector_finds_nothing_new(tmp_path, outputs):
    before = _issues(NWB_IN)
    assert ("check_subject_exists", "NWBFile", "root", "/") in before  # the inspector ran and saw the file
    assert _issues(outputs["nwb"]) - before == set()
    # ABF: the same conversion without the results (the processing module removed) is the baseline
    plain = tmp_path / "plain.nwb"
    with pynwb.NWBHDF5IO(str(outputs["abf"]), "r") as io:
        f = io.read()
        f.processing.pop(PROCESSING_MODULE)
        with pynwb.NWBHDF5IO(str(plain), "w") as out:
            out.export(src_io=io, nwbfile=f)
    base = _issues(plain)
    assert ("check_subject_exists", "NWBFile", "root", "/") in base
    assert _issues(outputs["abf"]) - base == set()


def test_neo_nwbio_sees_the_recording_not_the_results(outputs, nwb_fit):
    import neo

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        blocks = [neo.io.NWBIO(str(outputs[k]), mode="r").read_block() for k in ("nwb", "abf")]
    names = [sorted(s.name for seg in b.segments for s in seg.analogsignals) for b in blocks]
    # NWBIO reads acquisition and stimulus only, never processing: the fit's series are not among them
    assert names == [["ic__sim__0", "ics__sim__0"], ["ch0_sweep0", "ch0_sweep0_stimulus"]]
    rec = neo_pinn.load_recording(outputs["nwb"])  # an output can be fitted again like its input
    assert len(rec) == 1 and rec.sweeps[0].stimulus_source == "nwb-stimulus"


def test_example_reads_with_plain_pynwb(tmp_path, outputs, nwb_fit):
    res = nwb_fit[1]
    png = tmp_path / "n.png"
    # neo_pinn made unimportable: the script needs pynwb and matplotlib only
    code = ("import sys, runpy; sys.modules['neo_pinn'] = None; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code, str(EXAMPLE), str(outputs["nwb"]), str(png)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.split()[:1] == ["gCa"])
    assert float(line.split()[1]) == pytest.approx(res["gCa"].value, rel=1e-5) and line.split()[2] == "nS"
    assert "sweep0_n (dimensionless)" in proc.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.filterwarnings("ignore:lsq:RuntimeWarning")  # 3 iterations are not a fit
def test_cli_fit_of_an_abf_writes_icephys_nwb(tmp_path, capsys):
    from neo_pinn.cli import main

    out = tmp_path / "fit.nwb"
    rc = main(["fit", str(ABF_IN), "--model", "morris_lecar", "--preset", "snlc", "--backend", "lsq", "--free",
               "gCa", "--stimulus", ABF_STIMULUS, "--window", "100:150", "--option", "n_starts=1", "--option",
               "max_iter=3", "--out", str(out), "--quiet"])
    res = read_result_nwb(out)
    assert rc == (3 if res.failed else 0), capsys.readouterr().err  # 3 iterations: the verdict may fail it
    with pynwb.NWBHDF5IO(str(out), "r") as io:
        f = io.read()
        assert [type(s).__name__ for s in f.acquisition.values()] == ["CurrentClampSeries"]
        assert [type(s).__name__ for s in f.stimulus.values()] == ["CurrentClampStimulusSeries"]
        assert f"morris_lecar_lsq_{res.run_id}_sweep0_n" in _module(f).data_interfaces


def test_fit_output_keeps_nix_on_neo_attach(tmp_path, nwb_fit):
    from neo_pinn.io.attach import result_from_block
    from neo_pinn.io.neo_files_reader import read_block
    from neo_pinn.io.nwb_results import write_fit_output

    res = nwb_fit[1]
    rec = neo_pinn.load_recording(NWB_IN)  # a fresh tree: attach appends to it
    out = write_fit_output(res, rec, tmp_path / "fit.nix")
    back = result_from_block(read_block(out))
    assert back.run_id == res.run_id and back.parameters["gCa"].value == res.parameters["gCa"].value
    np.testing.assert_allclose(back.fits[0].states, res.fits[0].states, rtol=1e-12)
