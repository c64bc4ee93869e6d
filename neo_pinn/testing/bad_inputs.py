"""The bad-input corpus: every way a user can hand neo_pinn a wrong input, and what must happen then.

Each :class:`~neo_pinn.testing.bad_input_runner.Case` writes its own inputs (tiny synthetic recordings, garbage
bytes, folders, FIFOs ...) into a fresh folder and runs one ``neo-pinn`` command line or Python call. The correct
outcome is a clear error (exit status 4 for bad input, 2 for argparse usage errors; a typed
:class:`~neo_pinn.errors.NeoPinnError` in Python), a flagged fit or a correct answer — never a traceback, a hang,
lost data or a confident wrong answer (see :mod:`neo_pinn.testing.bad_input_runner`). ``tests/test_bad_inputs.py``
runs every case; ``benchmarks/bench_bad_inputs.py`` prints the table of outcomes.

Examples
--------
>>> import tempfile
>>> from neo_pinn.testing.bad_inputs import case_by_id, run_case
>>> obs = run_case(case_by_id("fit_json_names_input"), tempfile.mkdtemp())   # doctest: +SKIP
>>> obs.outcome, obs.exit_code, obs.passed                                    # doctest: +SKIP
('error', 4, True)

Cases are data: ``cli(id, group, argv, expect, ...)`` and ``py(id, group, callable, expect, ...)`` below append to
:data:`CASES`; the keywords are :class:`~neo_pinn.testing.bad_input_runner.Case`'s.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from .bad_input_data import (DIR, EST, FIFO, FIT, GARBAGE, NON_UTF8, SIM, STEP, Link, before_fit, files, fitted_truth,
                             info_spikes, json_on_stdout, nan_trace, printed, readonly_folder, result_json, returned,
                             with_files, wrote)
from .bad_input_runner import BAD_OUTCOMES, OUTCOMES, Case, Observation, outcome_table, run_case

__all__ = ["CASES", "Case", "Observation", "run_case", "outcome_table", "OUTCOMES", "BAD_OUTCOMES", "case_by_id"]

_CASES: list[Case] = []


def cli(id: str, group: str, argv, expect="error", **kw) -> None:
    """Add a command-line case (``argv`` without the leading ``neo-pinn``)."""
    _CASES.append(Case(id, group, tuple(argv), expect, **kw))


def py(id: str, group: str, action: Callable[[Path], Any], expect="error", **kw) -> None:
    """Add a Python API case; ``action(folder)`` runs in the case's folder."""
    _CASES.append(Case(id, group, action, expect, **kw))


def fit(file: str, *extra: str) -> tuple[str, ...]:
    """``fit FILE`` with the quick two-conductance fit, then ``extra`` options."""
    return ("fit", file, *FIT, *extra)


CELL = files(cell__nwb="cell")
ABF = files(cell__abf="abf")
RESULT = files(result__json=result_json)

# ------------------------------------------------------------------------------------------ outputs
for flag, name in (("--json", "r.json"), ("--report", "r.html"), ("--out", "r.nwb")):
    f = flag[2:]
    for what, argv, build, match in (  # each refused before the fit (check=before_fit)
            ("names_input", fit("cell.nwb", flag, "cell.nwb"), CELL, "input"),
            ("names_input_abs", fit("cell.nwb", flag, "{d}/cell.nwb"), CELL, "input"),
            ("names_input_via_link", fit("cell.nwb", flag, "alias.nwb", "--overwrite"),
             files(cell__nwb="cell", alias__nwb=Link("cell.nwb")), "input"),
            ("exists", fit("cell.nwb", flag, name), files(cell__nwb="cell", **{name.replace(".", "__"): b"precious\n"}),
             "exist|overwrite"),
            ("is_folder", fit("cell.nwb", flag, "sub"), files(cell__nwb="cell", sub=DIR), "folder|directory"),
            ("folder_missing", fit("cell.nwb", flag, f"nowhere/{name}"), CELL, "folder|director|exist"),
            ("readonly_folder", fit("cell.nwb", flag, "{ro}/" + name), with_files({"cell.nwb": "cell"}, readonly_folder),
             "writ|permission|read-only")):
        cli(f"fit_{f}_{what}", "outputs", argv, build=build, match=match, check=before_fit)
cli("fit_json_names_sidecar", "outputs", fit("bare.nwb", "--json", "bare.nwb.json", "--overwrite"),
    build=files(bare__nwb="bare", bare__nwb__json=b'{"model": "morris_lecar", "parameters": {"gCa": 4, "gK": 8}}'),
    match="input|sidecar")
cli("fit_existing_out_checked_before_fit", "outputs",
    fit("cell.nwb", "--json", "new.json", "--report", "new.html", "--out", "old.nwb"),
    build=files(cell__nwb="cell", old__nwb=b"old results\n"), match="old.nwb", check=before_fit)
cli("fit_json_and_report_same_file", "outputs", fit("cell.nwb", "--json", "r.out", "--report", "r.out"),
    build=CELL, match="both|same|own", check=before_fit)
cli("fit_out_wrong_extension", "outputs", fit("cell.nwb", "--out", "r.txt"), build=CELL, match=r"\.nwb|\.nix|extension",
    check=before_fit)
cli("fit_overwrite_replaces_outputs", "outputs", fit("cell.nwb", "--json", "r.json", "--report", "r.html", "--overwrite"),
    "ok", build=files(cell__nwb="cell", r__json=b"old\n", r__html=b"old\n"), may_write=("r.json", "r.html"),
    check=fitted_truth())
cli("report_out_names_input", "outputs", ("report", "result.json", "--out", "result.json"), build=RESULT, match="input")
cli("report_out_exists", "outputs", ("report", "result.json", "--out", "r.html"),
    build=files(result__json=result_json, r__html=b"keep\n"), match="exist|overwrite")
cli("report_out_is_folder", "outputs", ("report", "result.json", "--out", "sub"),
    build=files(result__json=result_json, sub=DIR), match="folder|director")
cli("report_out_readonly_folder", "outputs", ("report", "result.json", "--out", "{ro}/r.html"),
    build=with_files({"result.json": result_json}, readonly_folder), match="writ|permission|read-only")
cli("report_out_names_fit_input", "outputs", ("report", "result.json", "--out", "cell.nwb", "--overwrite"),
    build=files(result__json=result_json, cell__nwb="cell"), match="input")
cli("simulate_out_exists", "outputs", (*SIM, "--out", "sim.nwb"), build=files(sim__nwb=b"precious\n"),
    match="exist|overwrite")
cli("simulate_sidecar_exists", "outputs", (*SIM, "--out", "sim.nwb"), build=files(sim__nwb__json=b"{}\n"),
    match="exist|overwrite|sidecar")
cli("simulate_out_is_folder", "outputs", (*SIM, "--out", "sub.nwb"), build=files(sub__nwb=DIR), match="folder|director")
cli("simulate_out_readonly_folder", "outputs", (*SIM, "--out", "{ro}/sim.nwb"), build=readonly_folder,
    match="writ|permission|read-only")
cli("simulate_out_wrong_extension", "outputs", (*SIM, "--out", "sim.txt"), match=r"\.nwb|\.abf")
cli("simulate_states_exists", "outputs", (*SIM, "--out", "sim.nwb", "--states", "s.json"),
    build=files(s__json=b"keep\n"), match="exist|overwrite")
cli("simulate_states_is_sidecar", "outputs", (*SIM, "--out", "sim.nwb", "--states", "sim.nwb.json"),
    match="both|same|sidecar")
cli("demo_out_is_file", "outputs", ("demo", "--out", "afile", "--sample", "cell.nwb"),
    build=files(afile=b"precious\n", cell__nwb="cell"), match="afile|folder|director|exist")
cli("demo_out_holds_results", "outputs", ("demo", "--out", "out", "--sample", "cell.nwb", "--free", "gCa,gK",
                                          "--init", "gCa=4,gK=8", "--window", "0:150"),
    build=files(cell__nwb="cell", **{"out/result.json": b"my earlier result\n"}), match="exist|overwrite")

# ------------------------------------------------------------------------------------------ silently wrong
cli("fit_volts_labelled_mV", "silently wrong", fit("volts.nwb"), build=files(volts__nwb="volts"),
    match="unphysiological|volt|units?|range")
cli("fit_flat_trace", "silently wrong", fit("flat.nwb"), ("error", "flagged"), build=files(flat__nwb="flat"),
    match="flat|respon|no spike|spike|constant")
cli("fit_window_past_3_samples", "silently wrong", fit("tiny.nwb", "--window", "0:300"),
    build=files(tiny__nwb="tiny"), match="window|sample")
cli("fit_estimate_on_bound", "silently wrong", fit("cell.nwb", "--bounds", "gCa=1:2", "--init", "gCa=1.5,gK=8"),
    "flagged", build=CELL, match="bound")
cli("fit_set_negative_capacitance", "silently wrong", fit("cell.nwb", "--set", "C=-20"), build=CELL, match=r"\bC\b")
cli("fit_set_free_parameter", "silently wrong", fit("cell.nwb", "--set", "gCa=4"), build=CELL, match="gCa")
cli("fit_sweep_repeated", "silently wrong", fit("cell.nwb", "--sweep", "0,0"), build=CELL, match="sweep")
cli("fit_sweep_negative", "numbers", fit("cell.nwb", "--sweep=-1"), ("error", "ok"), build=CELL)  # -1: the last sweep
cli("fit_step_without_start_stop", "silently wrong", fit("cell.abf", "--stimulus", "step:amp=60pA"), build=ABF,
    match="start|stop")
cli("simulate_step_without_start_stop", "silently wrong", (*SIM, "--out", "s.nwb", "--stimulus", "step:amp=60pA"),
    match="start|stop")
cli("fit_step_after_sweep_end", "silently wrong",
    fit("cell.abf", "--stimulus", "step:amp=60pA,start=500ms,stop=600ms"), build=ABF, match="after|end|sweep|beyond|outside")
cli("simulate_step_after_end", "silently wrong",
    (*SIM, "--out", "s.nwb", "--stimulus", "step:amp=60pA,start=500ms,stop=600ms"), match="after|end|duration|beyond|outside")
cli("info_inf_sample_is_no_spike", "silently wrong", ("info", "inf.nwb", "--json"), "ok", build=files(inf__nwb="inf"),
    check=info_spikes(0))
cli("fit_nan_outside_window", "silently wrong", fit("nan.nwb", "--window", "0:130", "--json", "r.json"), "ok",
    build=files(nan__nwb="nan_late"), may_write=("r.json",), check=fitted_truth())
cli("fit_nan_inside_window", "silently wrong", fit("nan.nwb", "--window", "0:130"), build=files(nan__nwb="nan_mid"),
    match="nan")
cli("fit_inf_inside_window", "silently wrong", fit("inf.nwb", "--window", "0:130"), build=files(inf__nwb="inf_mid"),
    match="inf|finite")
cli("fit_malformed_sidecar_ignored", "silently wrong", fit("bare.nwb"), "ok",
    build=files(bare__nwb="bare", bare__nwb__json=b'{"model": "morris_lecar", "param'), check=printed("verdict: passed"))
cli("fit_sidecar_not_an_object", "silently wrong", fit("bare.nwb"), "ok",
    build=files(bare__nwb="bare", bare__nwb__json=b"[1, 2, 3]"), check=printed("verdict: passed"))
cli("fit_sidecar_bad_values", "silently wrong", fit("bare.nwb"), "ok",
    build=files(bare__nwb="bare", bare__nwb__json=b'{"model": "morris_lecar", "parameters": {"gCa": "four"}}'),
    check=printed("verdict: passed"))

# ------------------------------------------------------------------------------------------ bad paths
PATHS = {  # case name → (path given, files written)
    "missing": ("missing.nwb", {}),
    "folder": ("adir.nwb", {"adir.nwb": DIR}),
    "empty_nwb": ("empty.nwb", {"empty.nwb": b""}),
    "empty_abf": ("empty.abf", {"empty.abf": b""}),
    "garbage_abf": ("garbage.abf", {"garbage.abf": GARBAGE}),
    "garbage_nwb": ("garbage.nwb", {"garbage.nwb": GARBAGE}),
    "garbage_no_extension": ("garbage", {"garbage": GARBAGE}),
    "garbage_dat": ("garbage.dat", {"garbage.dat": GARBAGE}),
    "truncated_abf": ("trunc.abf", {"trunc.abf": ("abf", 600)}),
    "truncated_nwb": ("trunc.nwb", {"trunc.nwb": ("cell", 4096)}),
    "nwb_named_abf": ("cell.abf", {"cell.abf": "cell"}),
    "abf_named_nwb": ("cell.nwb", {"cell.nwb": "abf"}),
    "nwb_named_txt": ("cell.txt", {"cell.txt": "cell"}),
    "csv_named_nwb": ("table.nwb", {"table.nwb": b"t_ms,v_mV\n0,-65\n0.1,-65\n"}),
    "broken_link": ("link.nwb", {"link.nwb": Link("nowhere.nwb")}),
    "non_utf8_missing": (NON_UTF8.replace(".nwb", "-missing.nwb"), {}),
}
for what, (path, spec) in PATHS.items():
    build = with_files(spec)
    cli(f"info_{what}", "paths", ("info", path), build=build)
    cli(f"fit_{what}", "paths", fit(path), build=build)
for what in ("missing", "garbage_nwb", "folder"):
    path, spec = PATHS[what]
    cli(f"demo_sample_{what}", "paths", ("demo", "--sample", path, "--out", "out"), build=with_files(spec))
cli("info_fifo", "hangs", ("info", "pipe.nwb"), build=files(pipe__nwb=FIFO), isolate=True, timeout_s=30)
cli("fit_fifo", "hangs", fit("pipe.abf", "--stimulus", STEP), build=files(pipe__abf=FIFO), isolate=True, timeout_s=30)
cli("info_non_utf8_name", "paths", ("info", NON_UTF8), "ok", build=with_files({NON_UTF8: "cell"}),
    check=printed(r"1 sweep"))
cli("info_path_with_spaces", "paths", ("info", "my cell.nwb"), "ok", build=with_files({"my cell.nwb": "cell"}),
    check=printed(r"1 sweep"))
REPORT_INPUTS = {
    "missing": ("missing.json", {}),
    "folder": ("adir", {"adir": DIR}),
    "empty": ("empty.json", {"empty.json": b""}),
    "garbage": ("garbage.json", {"garbage.json": GARBAGE}),
    "truncated": ("trunc.json", {"trunc.json": lambda: result_json()[:300]}),
    "not_a_result": ("other.json", {"other.json": b'{"hello": "world"}'}),
    "a_list": ("list.json", {"list.json": b"[1, 2, 3]"}),
    "wrong_types": ("types.json", {"types.json": b'{"model": 1, "backend": 2, "parameters": [], "fits": 3}'}),
    "non_utf8": ("latin.json", {"latin.json": b'{"model": "caf\xe9"}'}),
    "nwb_given": ("cell.nwb", {"cell.nwb": "cell"}),
}
for what, (path, spec) in REPORT_INPUTS.items():
    cli(f"report_on_{what}", "paths", ("report", path, "--out", "r.html"), build=with_files(spec))
LATIN = NON_UTF8.replace(".nwb", "")  # a file name stem that is not UTF-8
cli("report_non_utf8_names_ok", "paths", ("report", LATIN + ".json", "--out", LATIN + ".html"), "ok",
    build=with_files({LATIN + ".json": result_json}), may_write=(LATIN + ".html",), check=wrote(LATIN + ".html"))
cli("simulate_non_utf8_out_ok", "paths", (*SIM, "--out", NON_UTF8), "ok", may_write=(NON_UTF8, NON_UTF8 + ".json"),
    check=wrote(NON_UTF8))
cli("simulate_garbage_csv_stimulus", "specs", (*SIM, "--out", "s.nwb", "--stimulus", "csv:garbage.csv"),
    build=files(garbage__csv=GARBAGE), match="csv")
cli("report_ok", "paths", ("report", "result.json", "--out", "r.html"), "ok", build=RESULT, may_write=("r.html",),
    check=wrote("r.html"))

# ------------------------------------------------------------------------------------------ simulate: numbers, specs
BAD_SIMULATE = {  # option → bad values (2: argparse rejects the text)
    "--rate": ("0", "-1", "nan", "inf", "1e-3", ("abc", 2)),
    "--duration": ("0", "-5", "nan", ("abc", 2)),
    "--seed": ("-1", ("abc", 2), ("1.5", 2)),
    "--set": ("C=-20", "C=0", "gCa=nan", "gCa=inf", "gCa=abc", "nope=1", "gCa", "=4", "phi=-1"),
    "--noise": ("white:sigma=-1mV", "white:sigma=nan", "ar1:sigma=1mV,rho=1.5", "pink:sigma=1mV", "white:sigma=1pA",
                "white:sigma=1mV,rho=0.5"),
    "--stimulus": ("step:amp=60mV,start=10ms,stop=40ms", "foo:amp=1", "step:amp=nan,start=10ms,stop=40ms",
                   "step:amp=60pA,start=30ms,stop=10ms", "step:amp=1e12pA,start=10ms,stop=40ms", "csv:missing.csv"),
    "--model": ("nope",),
    "--preset": ("nope",),
}
for opt, values in BAD_SIMULATE.items():
    for k, value in enumerate(values):
        value, code = value if isinstance(value, tuple) else (value, 4)
        base = list(SIM)
        if opt in base:  # replace the value of an option SIM already gives
            base[base.index(opt) + 1] = value
        else:
            base += [opt, value]
        cli(f"simulate_{opt[2:]}_{k}_{value}", "numbers", (*base, "--out", "s.nwb"), exit_code=code)
for opt, value in (("--duration", "1e8"), ("--rate", "1e9"), ("--duration", "inf")):
    base = list(SIM)
    base[base.index(opt) + 1] = value
    cli(f"simulate_huge_{opt[2:]}_{value}", "hangs", (*base, "--out", "s.nwb"), isolate=True, timeout_s=30,
        match="duration|rate|sample|large|long|finite")
cli("simulate_no_out", "usage", SIM, exit_code=2)
cli("simulate_no_model", "usage", ("simulate", "--duration", "50", "--out", "s.nwb"), exit_code=2)
cli("simulate_abf_too_short", "numbers", (*SIM, "--out", "s.abf"), match="1536|samples|duration")

# ------------------------------------------------------------------------------------------ fit: numbers, names, specs
BAD_FIT = {  # option → bad values; each case is a quick fit of cell.nwb (cell.abf for --stimulus) with it
    "--seed": ("-1", str(2**70), ("abc", 2)),
    "--device": ("tpu", "mps", "gpu", "cuda:x"),
    "--window": ("nan:100", "0:inf", "100:50", "0:0", "-100:-50", "abc", "0:100:200", "1e6:2e6", "100"),
    "--bounds": ("gCa=5:1", "gCa=1:1", "gCa=nan:5", "gCa=0:inf", "gCa=a:b", "gCa=1", "nope=1:2", "gL=1:2", "gCa=-5:5"),
    "--init": ("gCa=nan", "gCa=inf", "gCa=-1", "gCa=abc", "nope=1", "gCa", "gL=2"),
    "--set": ("C=0", "C=nan", "C=inf", "nope=1", "gCa", "phi=-1", "V2=0"),
    "--sweep": ("5", "a", "", "1.5"),
    "--free": ("nope", "", "gCa,gCa", "V"),
    "--option": ("n_starts=0", "n_starts=-1", "n_starts=abc", "n_starts=1.5", "max_iter=nan", "bogus=1", "n_starts",
                 "tol=-1"),
    "--validate-on": ("5", "2.0", "abc", "0"),
    "--keep-sweeps": ("abc", "7"),
    "--exclude-sweeps": ("0", "x"),
    "--voltage-channel": ("nope", "99"),
    "--model": ("nope",),
    "--backend": ("nope",),
    "--preset": ("nope",),
    "--noise": (("pink", 2),),
    "--refine": (("foo", 2), "lsq"),
    "--stimulus": ("foo:amp=1", "step:amp=abc,start=20ms,stop=130ms", "step:amp=60mV,start=20ms,stop=130ms",
                   "missing.csv", "garbage.csv", "step:amp=60pA,start=130ms,stop=20ms"),
}
for opt, values in BAD_FIT.items():
    for k, value in enumerate(values):
        value, code = value if isinstance(value, tuple) else (value, 4)
        base = list(fit("cell.abf" if opt == "--stimulus" else "cell.nwb"))
        if opt == "--free":  # the quick fit's --init names gCa and gK: leave it out
            del base[base.index("--init"):base.index("--init") + 2]
        if opt in base and opt != "--option":
            base[base.index(opt) + 1] = value
        else:  # a value starting with "-" must be glued to its flag, or argparse reads it as a flag
            base += [f"{opt}={value}"] if value.startswith("-") else [opt, value]
        build = files(cell__abf="abf", garbage__csv=GARBAGE) if opt == "--stimulus" else CELL
        cli(f"fit_{opt[2:]}_{k}_{value or 'empty'}", "numbers" if opt in ("--seed", "--window", "--bounds", "--init",
                                                                           "--set", "--option") else "names",
            base, build=build, exit_code=code)
cli("fit_init_outside_given_bounds", "numbers", fit("cell.nwb", "--init", "gCa=100,gK=8", "--bounds", "gCa=1:16"),
    build=CELL, match="gCa")
cli("fit_refine_without_global_backend", "names", fit("cell.nwb", "--refine", "lsq"), build=CELL, match="refine")
cli("info_unknown_voltage_channel", "names", ("info", "cell.nwb", "--voltage-channel", "nope"), build=CELL)
cli("info_bad_stimulus", "specs", ("info", "cell.nwb", "--stimulus", "foo:amp=1"), build=CELL)
cli("bench_unknown", "names", ("bench", "nope"), match="nope")
cli("usage_no_command", "usage", (), exit_code=2)
cli("usage_unknown_command", "usage", ("frobnicate",), exit_code=2)
cli("usage_unknown_flag", "usage", ("info", "cell.nwb", "--frobnicate"), build=CELL, exit_code=2)
cli("usage_fit_without_model", "usage", ("fit", "cell.nwb", "--backend", "lsq"), build=CELL, exit_code=2)
cli("fit_abf_without_stimulus", "specs", fit("cell.abf"), build=ABF, match="stimulus")
cli("fit_stimulus_channel_as_voltage", "names", fit("cell.nwb", "--voltage-channel", "1"), build=CELL,
    match=r"\bpA\b|\bunits?\b|not a voltage")  # channel 1 (an index, as --help says) records the current
cli("fit_sweep_empty_list", "numbers", fit("cell.nwb", "--sweep", ""), build=CELL, match=r"--sweep|empty")
cli("report_on_result_without_arrays", "paths", ("report", "small.json", "--out", "r.html"),
    build=files(small__json=lambda: result_json(include_arrays=False)), match="array|include_arrays|fits")
cli("fit_json_to_stdout_ok", "control", fit("cell.nwb", "--json", "-"), "ok", build=CELL, check=json_on_stdout)
cli("fit_quiet_ok", "control", fit("cell.nwb", "-q", "--json", "r.json"), "ok", build=CELL, may_write=("r.json",),
    check=fitted_truth())
cli("info_abf_ok", "control", ("info", "cell.abf"), "ok", build=ABF, check=printed(r"1 sweep"))
cli("simulate_nwb_ok", "control", (*SIM, "--out", "s.nwb", "--stimulus", "step:amp=60pA,start=10ms,stop=40ms"), "ok",
    may_write=("s.nwb", "s.nwb.json"), check=wrote("s.nwb", "s.nwb.json"))
cli("simulate_abf_ok", "control", ("simulate", "--model", "morris_lecar", "--duration", "100", "--rate", "20000",
                                   "--out", "s.abf"), "ok", may_write=("s.abf", "s.abf.json"), check=wrote("s.abf"))
cli("plugins_json_ok", "control", ("plugins", "--json"), "ok", check=printed('"lsq"'))
cli("version_ok", "control", ("--version",), "ok", check=printed(r"neo-pinn \d"))
cli("fit_ok", "control", fit("cell.nwb", "--json", "r.json", "--report", "r.html"), "ok", build=CELL,
    may_write=("r.json", "r.html"), check=fitted_truth())


# ------------------------------------------------------------------------------------------ Python API
def _est(data: Any = "cell.nwb", model: str = "morris_lecar", **kw):
    from ..api import estimate

    return lambda folder: estimate(data, model, **(EST | kw))


def _trace(**kw):
    from ..trace import Trace

    import numpy as np

    base = {"t": np.arange(10) * 0.1, "v": np.full(10, -65.0), "i_ext": np.zeros(10)}
    return lambda folder: Trace(**(base | {k: np.asarray(v) if isinstance(v, list) else v for k, v in kw.items()}))


def _q(value: float, unit: str):
    import quantities as pq

    return value * getattr(pq, unit)


def _api(name: str, *args: Any, **kw: Any):
    """Call ``neo_pinn.api.<name>(*args, **kw)`` in the case's folder."""
    def call(folder):
        from .. import api

        return getattr(api, name)(*args, **kw)
    return call


def _result(method: str, arg: str):
    def call(folder):
        from ..result import EstimationResult

        return getattr(EstimationResult, method)(arg)
    return call


def _report_over_input(folder):
    from ..report import write_report
    from ..result import EstimationResult

    return write_report(EstimationResult.from_json(folder / "result.json"), folder / "cell.nwb")


def _report_into_folder(folder):
    from ..report import write_report
    from ..result import EstimationResult

    (folder / "sub").mkdir()
    return write_report(EstimationResult.from_json(folder / "result.json"), folder / "sub")


def _attach_foreign(folder):
    import neo
    import numpy as np
    import quantities as pq

    from ..io.attach import attach
    from ..result import EstimationResult

    block = neo.Block()
    seg = neo.Segment()
    seg.analogsignals.append(neo.AnalogSignal(np.zeros((50, 1)), units="mV", sampling_rate=1 * pq.kHz))
    block.segments.append(seg)
    return attach(EstimationResult.from_json(folder / "result.json"), block)


NAN, INF = math.nan, math.inf
API = {  # case → (action, builder); every one must raise a NeoPinnError
    "estimate_int_data": (_est(42), None),
    "estimate_none_data": (_est(None), None),
    "estimate_empty_list": (_est([]), None),
    "estimate_missing_file": (_est("missing.nwb"), None),
    "estimate_unknown_model": (_est(model="nope"), CELL),
    "estimate_unknown_backend": (_est(backend="nope"), CELL),
    "estimate_unknown_free": (_est(free=["nope"], init={}), CELL),
    "window_scalar": (_est(window=300), CELL),
    "window_reversed": (_est(window=(100, 50)), CELL),
    "window_strings": (_est(window=("a", "b")), CELL),
    "window_nan": (_est(window=(NAN, 100)), CELL),
    "window_past_end_of_3_samples": (_est("tiny.nwb", window=(0, 300)), files(tiny__nwb="tiny")),
    "window_wrong_dimension": (lambda d: _est(window=(_q(0, "mV"), _q(100, "mV")))(d), CELL),
    "sweeps_float": (_est(sweeps=1.5), CELL),
    "sweeps_true": (_est(sweeps=True), CELL),
    "sweeps_repeated": (_est(sweeps=[0, 0]), CELL),
    "sweeps_out_of_range": (_est(sweeps=[5]), CELL),
    "bounds_infinite": (_est(bounds={"gCa": (0.1, INF)}), CELL),
    "bounds_reversed": (_est(bounds={"gCa": (5, 1)}), CELL),
    "bounds_scalar": (_est(bounds={"gCa": 5}), CELL),
    "bounds_negative_conductance": (_est(bounds={"gCa": (-5, 5)}), CELL),
    "init_nan": (_est(init={"gCa": NAN, "gK": 8}), CELL),
    "init_outside_bounds": (_est(init={"gCa": 100, "gK": 8}, bounds={"gCa": (1, 16)}), CELL),
    "values_negative_capacitance": (_est(values={"C": -20}), CELL),
    "values_on_free_parameter": (_est(values={"gCa": 4}), CELL),
    "values_wrong_dimension": (lambda d: _est(values={"C": _q(20, "mV")})(d), CELL),
    "values_string": (_est(values={"C": "abc"}), CELL),
    "values_unknown": (_est(values={"nope": 1}), CELL),
    "seed_negative": (_est(seed=-1), CELL),
    "seed_string": (_est(seed="x"), CELL),
    "device_tpu": (_est(device="tpu"), CELL),
    "device_mps": (_est(device="mps"), CELL),
    "backend_option_zero_starts": (_est(backend_options={"n_starts": 0}), CELL),
    "backend_option_unknown": (_est(backend_options={"bogus": 1}), CELL),
    "noise_unknown": (_est(noise="pink"), CELL),
    "stimulus_unknown_kind": (_est(stimulus="foo:amp=1"), CELL),
    "trace_empty": (_trace(t=[], v=[], i_ext=[]), None),
    "trace_lengths_differ": (_trace(v=[-65.0] * 9), None),
    "trace_time_not_increasing": (_trace(t=[0, 2, 1, 3, 4, 5, 6, 7, 8, 9]), None),
    "trace_strings": (_trace(t="abc"), None),
    "trace_nan_fitted": (lambda d: _est(nan_trace(slice(600, 610)))(d), None),
    "free_empty": (_est(free=[], init={}), CELL),
    "init_wrong_dimension": (lambda d: _est(init={"gCa": _q(4, "mV"), "gK": 8})(d), CELL),
    "load_unknown_mode": (_api("load_recording", "cell.nwb", mode="bogus"), CELL),
    "get_model_not_a_name": (_api("get_model", 42), None),
    "simulate_unknown_method": (_api("simulate", "morris_lecar", duration=10, method="bogus"), None),
    "simulate_stimulus_text": (_api("simulate", "morris_lecar", duration=10, i_ext="foo"), None),
    "simulate_y0_wrong_length": (_api("simulate", "morris_lecar", duration=10, y0=[1.0, 2.0, 3.0]), None),
    "result_from_missing_file": (_result("from_json", "missing.json"), None),
    "report_into_folder": (_report_into_folder, RESULT),
    "attach_to_foreign_block": (_attach_foreign, RESULT),
    "load_int": (_api("load_recording", 123), None),
    "load_missing": (_api("load_recording", "missing.nwb"), None),
    "load_folder": (_api("load_recording", "."), None),
    "load_garbage": (_api("load_recording", "garbage.nwb"), files(garbage__nwb=GARBAGE)),
    "load_unknown_channel": (_api("load_recording", "cell.nwb", voltage_channel="nope"), CELL),
    "load_bad_stimulus": (_api("load_recording", "cell.nwb", stimulus="foo:amp=1"), CELL),
    "load_current_channel_as_voltage": (_api("load_recording", "cell.nwb", voltage_channel=1), CELL),
    "simulate_negative_duration": (_api("simulate", "morris_lecar", duration=-1), None),
    "simulate_nan_duration": (_api("simulate", "morris_lecar", duration=NAN), None),
    "simulate_zero_dt": (_api("simulate", "morris_lecar", duration=10, dt=0), None),
    "simulate_unknown_model": (_api("simulate", "nope", duration=10), None),
    "simulate_bad_theta": (_api("simulate", "morris_lecar", theta=[1.0, 2.0], duration=10), None),
    "synthetic_rate_zero": (_api("synthetic_trace", "morris_lecar", duration=10, rate_hz=0), None),
    "synthetic_rate_nan": (_api("synthetic_trace", "morris_lecar", duration=10, rate_hz=NAN), None),
    "synthetic_step_without_stop": (_api("synthetic_trace", "morris_lecar", duration=10, stimulus="step:amp=60pA"),
                                    None),
    "synthetic_unknown_preset": (_api("synthetic_trace", "morris_lecar", duration=10, preset="nope"), None),
    "synthetic_unknown_value": (_api("synthetic_trace", "morris_lecar", duration=10, values={"nope": 1}), None),
    "get_model_unknown": (_api("get_model", "nope"), None),
    "get_backend_unknown": (_api("get_backend", "nope"), None),
    "result_from_text_garbage": (_result("from_json", "not json at all"), None),
    "result_from_empty_object": (_result("from_json", "{}"), None),
    "result_from_list": (_result("from_json", "[1, 2]"), None),
    "report_over_input": (_report_over_input, files(result__json=result_json, cell__nwb="cell")),
}
for name, (action, build) in API.items():
    py(f"api_{name}", "api", action, build=build)
py("api_sweeps_negative", "api", _est(sweeps=-1), ("error", "ok"), build=CELL)  # -1: the last sweep
py("api_nan_trace_outside_window_ok", "api", lambda d: _est(nan_trace(slice(1400, 1460)), window=(0, 130))(d), "ok",
   check=returned(lambda r: None if abs(r.values["gCa"] - 4.0) < 0.2 else f"gCa = {r.values['gCa']}"))
py("api_window_in_seconds_ok", "api", lambda d: _est(window=(_q(0, "s"), _q(0.13, "s")))(d), "ok", build=CELL,
   check=returned(lambda r: None if abs(r.values["gCa"] - 4.0) < 0.2 else f"gCa = {r.values['gCa']}"))
py("api_nan_outside_window_ok", "api", _est("nan.nwb", window=(0, 130)), "ok", build=files(nan__nwb="nan_late"),
   check=returned(lambda r: None if abs(r.values["gCa"] - 4.0) < 0.2 else f"gCa = {r.values['gCa']}"))

#: every case of the corpus, in a fixed order
CASES: tuple[Case, ...] = tuple(_CASES)
_ids = [c.id for c in CASES]
if len(set(_ids)) != len(_ids):  # pragma: no cover - a mistake in this table
    raise RuntimeError(f"duplicate case ids: {sorted({i for i in _ids if _ids.count(i) > 1})}")


def case_by_id(case_id: str) -> Case:
    """The case named ``case_id``."""
    return next(c for c in CASES if c.id == case_id)
