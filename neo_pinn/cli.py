"""The ``neo-pinn`` command line: info, simulate, fit, plugins, report, bench, demo, and the plugins' commands.

The flags are a stable contract (scripts and benchmarks call them). Every subcommand takes ``-q/--quiet``;
``fit --json -`` writes the result JSON to stdout and everything else to stderr. Building the parser imports
no torch, scipy or Neo, and of the plugins only their light entry-point modules, for the subcommands they add
(:mod:`neo_pinn.cli_plugins`; ``--help`` is instant). Every output is checked before any work, locked against
a second process and written with the run's other outputs, all or none (:class:`neo_pinn.storage.RunOutputs`).

Exit status (``EXIT_*``): 0 success; 1 internal error, a bug (one line; ``NEO_PINN_DEBUG=1`` adds the traceback);
2 usage error (argparse); 3 ``fit`` ran but failed its verdict (its outputs are written and say so); 4 bad input
or environment (any :class:`~neo_pinn.errors.NeoPinnError`, OS errors about files); 130 interrupted (SIGINT),
143 terminated (SIGTERM): one line on stderr, no output of the run written, temporary files removed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import shlex
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Sequence

from .cli_args import (DEVICE_PATTERN, MAX_SEED, backend_options as _options, bounds as _bounds,  # noqa: F401
                       check_device as _check_device, check_seed as _check_seed, float_values as _float_values,
                       forecast_option, kv_list as _kv_list, positive as _positive, sweep_list as _sweep_list,
                       sweeps as _sweeps, validate_on as _validate_on, window as _window)
from .cli_plugins import add_plugin_commands, cmd_plugins, init_argument
from .errors import ConfigurationError, NeoPinnError, OutputPathError

__all__ = ["main", "build_parser", "free_parameters", "sidecar_path", "read_sidecar", "EXIT_OK", "EXIT_INTERNAL",
           "EXIT_USAGE", "EXIT_FIT_FAILED", "EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "EXIT_TERMINATED"]

# success, internal error (a bug), usage error, fit failed its verdict, bad input or environment, SIGINT, SIGTERM
EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_FIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_TERMINATED = \
    0, 1, 2, 3, 4, 130, 143
EXIT_STATUS_HELP = f"""exit status:
  {EXIT_OK}    success
  {EXIT_INTERNAL}    internal error: a bug (NEO_PINN_DEBUG=1 prints the traceback)
  {EXIT_USAGE}    usage error: unknown flag, missing or malformed argument
  {EXIT_FIT_FAILED}    fit: the fit ran but failed its verdict (its outputs are written and say so)
  {EXIT_BAD_INPUT}    bad input or environment: wrong value or file, output refused, no CUDA, ...
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C): no output of the run is written, temporary files removed
  {EXIT_TERMINATED}  terminated (SIGTERM): the same"""

QUIET_HELP = "no progress bar and no informational lines (the result itself is still printed)"



def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _warn(text: str) -> None:  # shown even with --quiet
    print(f"warning: {_one_line(text)}", file=sys.stderr)


def _note(args, text: str) -> None:  # informational (``wrote …``): dropped with --quiet
    if not args.quiet:
        print(text)


def sidecar_path(path: Path) -> Path:
    """The JSON sidecar beside a data file: ``cell.nwb`` → ``cell.nwb.json``."""
    return path.with_name(path.name + ".json")


def read_sidecar(path: Path) -> dict:
    """The JSON sidecar of a data file (``neo-pinn simulate`` writes it); {} when absent.

    The user never named this file: a malformed one is ignored with a one-line warning on stderr, never an error.
    """
    from .storage import read_json_object

    side = sidecar_path(Path(path))
    if not side.exists():
        return {}
    try:
        return read_json_object(side, "The sidecar")
    except NeoPinnError as exc:
        _warn(f"ignoring the sidecar beside {Path(path).name}: {exc}")
        return {}


def _truth_for(path: Path, model_name: str) -> dict[str, float]:
    """Ground truth from a file made by ``neo-pinn simulate`` (NWB metadata or JSON sidecar); {} when none."""
    meta = None
    if path.suffix.lower() == ".nwb":
        from .io.synthetic_nwb import read_icephys_metadata

        with contextlib.suppress(NeoPinnError, OSError, KeyError, ValueError):
            meta = read_icephys_metadata(path)
    meta = meta if isinstance(meta, dict) and meta else read_sidecar(path)
    params = meta.get("parameters")
    if meta.get("model") != model_name or not isinstance(params, dict):
        return {}
    try:
        truth = {str(k): float(v) for k, v in params.items()}
    except (TypeError, ValueError):
        truth = {}
    if not truth or not all(map(math.isfinite, truth.values())):
        _warn(f"ignoring the ground truth beside {path.name}: its parameters are not all finite numbers.")
        return {}
    return truth


# ---------------------------------------------------------------------- info
def cmd_info(args) -> int:
    import warnings

    from .api import load_recording
    from .cell.info_text import info_lines, recount_spikes
    from .io.convert import ROLE_VOLTAGE, signal_times_ms, signal_to_canonical
    from .storage import check_input_file

    path = check_input_file(args.file, "Recording file")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = load_recording(path, mode="any", voltage_channel=args.voltage_channel, stimulus=args.stimulus or "auto")
    d = rec.describe()
    d["load_warnings"] = sorted({str(w.message) for w in caught})[:20]
    # an inf sample (a recorder's overflow) is no spike: sweeps holding one are counted on their finite samples
    voltages = rec.block.filter(neo_pinn_role=ROLE_VOLTAGE, objects="AnalogSignal")
    recount_spikes(d, [(int(v.annotations["neo_pinn_sweep"]), signal_to_canonical(v, "voltage"), signal_times_ms(v))
                       for v in voltages])
    qc, props = _cell_summary(rec) if d["recording_mode"] == "current_clamp" else (None, None)
    d["qc"] = None if qc is None else qc.to_dict()
    d["cell"] = None if props is None else props.to_dict()
    if args.json:
        print(json.dumps(d, indent=1, default=str))
        return 0
    tables = [(title, t.table()) for title, t in (("sweep quality control:", qc),
                                                  ("cell (from the kept sweeps):", props)) if t is not None]
    print("\n".join(info_lines(d, tables)))
    return 0


def _cell_summary(rec):
    """Sweep QC and the properties of a current-clamp recording at a fit's spike levels (None: not measurable)."""
    from .cellfit import survey_recording

    try:
        traces = rec.traces(sweeps="all")
    except NeoPinnError:
        return None, None
    survey = survey_recording(traces, 0.0, -10.0)
    return survey.qc, survey.properties


# ---------------------------------------------------------------------- simulate
def _check_simulation(args, model, n_sweeps: int) -> int:
    """The samples per sweep; an error for a simulation that cannot run or fit in memory, before any allocation."""
    from .simulation import check_simulation_size, check_simulation_work, choose_dt

    sample_dt = 1000.0 / args.rate
    n_samples = math.floor(args.duration / sample_dt + 1e-9) + 1
    if n_samples < 2:
        raise ConfigurationError(f"--duration {args.duration:g} ms at --rate {args.rate:g} Hz gives fewer than 2 "
                                 "samples; raise --duration or --rate.")
    steps = (n_samples - 1) * choose_dt(sample_dt, None, 0.025)[1]
    # the stimulus on the half-step grid (~8 numbers per step), every sweep's states and signals twice (copies)
    n_values = 8.0 * steps + 2.0 * n_sweeps * n_samples * (len(model.state_names) + 3)
    check_simulation_size(n_values, what=f"a {args.duration:g} ms simulation at {args.rate:g} Hz "
                          f"({n_sweeps} sweep(s))", itemsize=8, hint="shorten --duration or lower --rate")
    check_simulation_work(args.rate, steps * n_sweeps, what=f"a {args.duration:g} ms simulation at {args.rate:g} Hz "
                          f"({n_sweeps} sweep(s))", hint="shorten --duration or lower --rate")
    return n_samples


def cmd_simulate(args) -> int:
    _positive(args.duration, "--duration", "ms", "1000")  # before anything is imported: instant
    _positive(args.rate, "--rate", "Hz", "20000")
    _check_seed(args.seed)
    from dataclasses import replace

    import numpy as np
    from .api import get_model, synthetic_trace
    from .noise import parse_noise
    from .storage import RunOutputs

    model = get_model(args.model)
    values = _float_values(_kv_list(args.set, "--set"), "--set")
    preset = args.preset or model.default_preset
    noise = parse_noise(args.noise, "dimensionless" if model.state_units[0] != "mV" else "voltage")
    stimuli = args.stimulus or [None]
    n_samples = _check_simulation(args, model, len(stimuli))
    out = Path(args.out)
    suffix = out.suffix.lower()
    if suffix not in (".nwb", ".abf"):
        raise ConfigurationError(f"--out must end in .nwb or .abf, got {out.name!r}.")
    if suffix == ".abf" and n_samples < 1536:
        raise ConfigurationError("An ABF1 file needs at least 1536 samples (Neo cannot read smaller ones); "
                                 "raise --duration or --rate.")
    inputs = [s for s in stimuli if s and Path(s).is_file()]  # a CSV stimulus is read, never written
    outputs = {"--out": out, "--out's sidecar": sidecar_path(out), "--states": args.states}
    with RunOutputs(outputs, inputs, overwrite=args.overwrite) as run:
        traces = []
        for k, spec in enumerate(stimuli):
            tr, states = synthetic_trace(model, preset=preset, values=values, stimulus=spec, duration=args.duration,
                                         rate_hz=args.rate, noise=noise, seed=args.seed + k)
            traces.append((replace(tr, sweep=k, stimulus_source="protocol"), states))
        meta = {"generator": "neo-pinn simulate", "model": model.name, "preset": preset,
                "parameters": model.param_values(preset, **values),
                "parameter_units": {p.name: p.unit for p in model.parameters},
                "stimulus": [s or f"const:amp={model.preset(preset).i_ext:g}pA" for s in stimuli],
                "noise": None if noise is None else noise.to_dict(), "seed": args.seed,
                "duration_ms": args.duration, "rate_hz": args.rate,
                "initial_state": dict(zip(model.state_names, map(float, model.initial_state(preset)))),
                "command": "neo-pinn " + " ".join(shlex.quote(a) for a in args.argv)}
        if suffix == ".nwb":
            from .io.synthetic_nwb import write_icephys_nwb

            write_icephys_nwb(run.temp("--out"), [t for t, _ in traces], metadata=meta)
        else:
            import pyabf.abfWriter

            data = np.stack([t.v for t, _ in traces])
            pyabf.abfWriter.writeABF1(data, str(run.temp("--out")), sampleRateHz=float(args.rate), units="mV")
            meta["note"] = ("ABF1 written with pyabf holds one voltage channel and no protocol: pass the stimulus "
                            "to `neo-pinn fit` with --stimulus (see 'stimulus' above).")
        run.temp("--out's sidecar").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        if args.states:
            hidden = {f"{name}": traces[0][1][:, j].tolist() for j, name in enumerate(model.state_names)}
            run.temp("--states").write_text(json.dumps({"t_ms": traces[0][0].t.tolist(), **hidden}), encoding="utf-8")
    _note(args, f"wrote {out} ({len(traces)} sweep(s), {traces[0][0].t.size} samples each) and "
                f"{sidecar_path(out).name}")
    return 0


# ---------------------------------------------------------------------- fit
def free_parameters(spec: str | None, model, quiet: bool = False) -> list[str]:
    """The parameters a ``fit`` estimates: ``--free`` as given, else the model's ``default_free`` set.

    Parameters
    ----------
    spec : str or None
        The ``--free`` value, comma-separated parameter names; None when the flag was not given.
    model : NeuronModel
    quiet : bool
        Do not say on stderr that the default set is used.

    Returns
    -------
    list of str
    """
    free = [x.strip() for x in (spec or "").split(",") if x.strip()]
    if spec is None and model.default_free:
        # No --free: the model's own choice of the parameters that differ between real cells.
        free = list(model.default_free)
        if not quiet:
            print(f"--free not given: estimating {model.name}'s default set {','.join(free)}", file=sys.stderr)
    if not free:
        raise ConfigurationError(f"Name the parameters to estimate with --free, e.g. --free gCa,gK,phi "
                                 f"({model.name} has {', '.join(model.param_names)}).")
    return free


def _run_fit(args):
    """Read the recording and fit it as the flags say; (recording, result)."""
    import torch
    from .api import estimate, get_backend, get_model, load_recording

    model = get_model(args.model)
    free = free_parameters(args.free, model, quiet=args.quiet)
    values = _float_values(_kv_list(args.set, "--set"), "--set")
    init = init_argument(args.init, lambda text: _float_values(_kv_list([text], "--init"), "--init"))
    backend_cls = get_backend(args.backend)
    options = _options(args.option)
    if args.refine is not None:
        if "refine" not in backend_cls.default_config:
            raise ConfigurationError(f"--refine needs a backend with a local refinement stage (e.g. ga); "
                                     f"{args.backend!r} has none.")
        options["refine"] = args.refine
    options |= forecast_option(args.forecast, args.backend, backend_cls.default_config)
    if args.init == "random" and "random_starts" in backend_cls.default_config:
        options.setdefault("random_starts", "bounds")
    backend_cls(**options)  # bad options fail before the recording is read
    _check_device(args.device, available=True)
    rec = load_recording(args.file, stimulus=args.stimulus or "auto", voltage_channel=args.voltage_channel)
    extra = {"allow_unphysiological": True} if args.allow_unphysiological else {}  # only when given
    result = estimate(rec, model, args.backend, free, preset=args.preset, values=values, init=init,
                      bounds=_bounds(args.bounds), sweeps=_sweeps(args.sweep), window=_window(args.window),
                      noise=args.noise, truth=_truth_for(Path(args.file), model.name), seed=args.seed,
                      device=args.device, dtype=torch.float32 if args.float32 else torch.float64,
                      progress=not args.quiet, backend_options=options, qc=not args.no_qc,
                      keep_sweeps=_sweep_list(args.keep_sweeps, "--keep-sweeps"),
                      exclude_sweeps=_sweep_list(args.exclude_sweeps, "--exclude-sweeps"),
                      scale_to_cell=not args.textbook_ranges, staged="auto" if args.staged else False,
                      validate_on=_validate_on(args.validate_on), **extra)
    return rec, result


def cmd_fit(args) -> int:
    from .storage import RunOutputs, check_input_file

    to_stdout = args.json == "-"
    path = check_input_file(args.file, "Recording file")
    _check_device(args.device)
    _check_seed(args.seed)
    outputs = {"--json": None if to_stdout else args.json, "--report": args.report, "--out": args.out}
    inputs = [path, sidecar_path(path)]  # the sidecar beside the recording is read too (ground truth)
    real_stdout = sys.stdout  # with --json -, stdout carries the JSON only: everything else goes to stderr
    with RunOutputs(outputs, inputs, overwrite=args.overwrite) as run, \
            (contextlib.redirect_stdout(sys.stderr) if to_stdout else contextlib.nullcontext()):
        if args.out:  # an unknown --out format fails now, not after the fit
            from .io.neo_files_reader import neo_file_format

            neo_file_format(Path(args.out), None)
        rec, result = _run_fit(args)
        if not (args.quiet and to_stdout):  # the summary is the result, unless the JSON on stdout is
            print(result.summary())
        if args.json and not to_stdout:
            result.to_json(run.temp("--json"))
        if args.report:
            from .report import write_report

            write_report(result, run.temp("--report"))
        if args.out:  # .nwb: write_result_nwb(source=rec); .nix: attach + write_block of rec.block (neo_pinn's copy)
            from .io.nwb_results import write_fit_output

            write_fit_output(result, rec, run.temp("--out"))
    if to_stdout:
        print(result.to_json(), file=real_stdout, flush=True)
    for written in filter(None, () if args.quiet else outputs.values()):
        print(f"wrote {written}", file=sys.stderr if to_stdout else sys.stdout)
    if result.failed:
        if args.quiet and to_stdout:  # the summary was not printed: the failed checks are the reason
            print("\n".join(f"  {line}" for line in result.verdict.get("lines", [])), file=sys.stderr)
        print(f"error: the fit failed its verdict (exit status {EXIT_FIT_FAILED}); see the checks above.",
              file=sys.stderr)
        return EXIT_FIT_FAILED
    return 0


# ---------------------------------------------------------------------- report, bench, demo (plugins: cli_plugins)
def cmd_report(args) -> int:
    from .report import write_report
    from .storage import RunOutputs

    from .report import input_files
    from .result import EstimationResult
    from .storage import check_outputs

    path = Path(args.result)
    with RunOutputs({"--out": args.out}, [path], overwrite=args.overwrite) as run:
        result = EstimationResult.from_json(path)  # a typed error for garbage, truncated or other JSON
        # nor may the report replace the recording the fit read (its existence was checked above)
        check_outputs({"--out": args.out}, [Path(f) for f, _ in input_files(result)], overwrite=True)
        write_report(result, run.temp("--out"))
    _note(args, f"wrote {args.out}")
    return 0


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def cmd_bench(args) -> int:
    script = _repo_root() / "benchmarks" / f"bench_{args.name}.py"
    if not script.exists():
        available = sorted(p.stem[6:] for p in (_repo_root() / "benchmarks").glob("bench_*.py"))
        raise ConfigurationError(f"No benchmark {args.name!r} (benchmarks/ of a source checkout holds: "
                                 f"{', '.join(available) or 'none'}).")
    return subprocess.call([sys.executable, str(script), *args.rest])


def cmd_demo(args) -> int:
    """Load the bundled sample recording, recover its stimulus, fit it with lsq, write result + report."""
    from .storage import check_input_file, check_outputs

    sample = check_input_file(Path(args.sample) if args.sample else _repo_root() / "sample_data" / "ml_snlc.nwb",
                              "Sample recording")
    out, files = Path(args.out), ("result.json", "report.html", "fitted.nwb")
    if out.exists() and not out.is_dir():  # the folder and the files in it are checked before anything runs
        raise OutputPathError(f"--out {out} is a file; the demo writes a folder ({', '.join(files)}): give a new or "
                              "existing folder name.")
    for target in [out / f for f in files] if out.is_dir() else [out]:
        check_outputs({"--out": target}, [sample], overwrite=args.overwrite)
    out.mkdir(parents=True, exist_ok=True)
    side = read_sidecar(sample)
    model = side.get("model", "morris_lecar")
    fit_args = ["fit", str(sample), "--model", model, "--preset", side.get("preset", "snlc"),
                "--backend", args.backend, "--free", args.free, "--init", args.init, "--window", args.window,
                "--seed", "0", "--json", str(out / "result.json"), "--report", str(out / "report.html"),
                "--out", str(out / "fitted.nwb")] + ["--overwrite"] * args.overwrite + ["--quiet"] * args.quiet
    if not args.quiet:
        print(f"neo-pinn demo: {sample.name} ({model}, made by: {side.get('command', '?')})")
        rc = main(["info", str(sample)])
        if rc:
            return rc
        print("$ neo-pinn " + " ".join(shlex.quote(a) for a in fit_args))
    return main(fit_args)


# ---------------------------------------------------------------------- parser
_FILE = dict(help="the recording (ABF, NWB or any file Neo reads)")
_MODEL = dict(required=True, help="registered model name, e.g. morris_lecar (see `neo-pinn plugins`)")
_VCHAN = dict(default=None, help="force the voltage channel (name or index)")
_SEED = dict(type=int, default=0, help="random seed, 0 to 2**32-1 (simulate: sweep k uses seed + k)")
#: every subcommand's options: (name, help, function, [(flags, add_argument keywords), ...])
_COMMANDS = [
    ("info", "describe a recording: sweeps, channels, units, spikes, stimulus", cmd_info, [
        ("file", _FILE), ("--json", dict(action="store_true", help="print the description as JSON on stdout")),
        ("--voltage-channel", _VCHAN),
        ("--stimulus", dict(default=None, help="stimulus spec or CSV file to use instead of the recording's"))]),
    ("simulate", "write a synthetic recording (NWB or ABF) with known ground truth", cmd_simulate, [
        ("--model", _MODEL),
        ("--preset", dict(default=None, help="the model's preset for every parameter not set (default: its own)")),
        ("--set", dict(action="append", metavar="K=V", help="parameter values (canonical units)")),
        ("--stimulus", dict(action="append", metavar="SPEC", help="e.g. step:amp=48pA,start=100ms,stop=900ms, or a "
                            "CSV file t_ms,i_pA; repeat for several sweeps (default: the preset's constant current)")),
        ("--duration", dict(type=float, required=True, help="length of each sweep, ms (positive, finite)")),
        ("--rate", dict(type=float, default=20000.0, help="sampling rate, Hz (default 20000)")),
        ("--noise", dict(default=None, help="observation noise: white:sigma=1mV or ar1:sigma=1mV,rho=0.8")),
        ("--seed", _SEED),
        ("--states", dict(default=None, metavar="OUT.json", help="also write sweep 0's noise-free states here")),
        ("--out", dict(required=True, help="FILE.nwb or FILE.abf (a FILE.json sidecar is written beside it)")),
        ("--overwrite", dict(action="store_true", help="replace existing --out, sidecar and --states files"))]),
    ("fit", "estimate parameters and hidden states of a recording", cmd_fit, [
        ("file", _FILE), ("--model", _MODEL),
        ("--preset", dict(default=None, help="preset for the fixed parameters")),
        ("--backend", dict(required=True, help="estimation backend: lsq, ga, pinn, ... (see `neo-pinn plugins`)")),
        ("--free", dict(default=None, help="comma-separated parameters to estimate (default: the model's "
                        "default_free set)")),
        ("--set", dict(action="append", metavar="K=V", help="fixed parameter values (canonical units)")),
        ("--init", dict(default=None, help="p=v,... initial guesses, 'random', or SCHEME:ARG of a plugin's "
                        "initializer, e.g. amortized:DIR (an estimator trained by `neo-pinn train`)")),
        ("--bounds", dict(action="append", metavar="P=LO:HI", help="search bounds of a free parameter")),
        ("--sweep", dict(default="all", help="N, N,M,... or all (default)")),
        ("--window", dict(default=None, help="T0:T1 in ms from each sweep's start")),
        ("--stimulus", dict(default="auto", help="auto (default: from the file), a spec (step:amp=..,start=..,"
                            "stop=..) or a CSV path")),
        ("--voltage-channel", _VCHAN),
        ("--noise", dict(choices=["white", "ar1"], default=None, help="assumed observation-noise model")),
        ("--option", dict(action="append", metavar="K=V", help="backend option (JSON value), repeatable")),
        ("--forecast", dict(type=float, default=None, metavar="MS", help="also forecast every state this many ms "
                            "past the fitted window and compare with the recording where it goes on (backend option "
                            "forecast_ms; e.g. --backend pinode)")),
        ("--refine", dict(choices=["none", "lsq", "cmaes", "cmaes+lsq"], default=None,
                          help="local refinement of ga's best solutions: lsq (trajectory fit), cmaes (CMA-ES on "
                               "ga's objectives), cmaes+lsq (one then the other; the default) or none")),
        ("--device", dict(default="auto", help="auto (default: CUDA when present), cpu, cuda or cuda:N")),
        ("--float32", dict(action="store_true", help="single precision (faster on GPU)")),
        ("--seed", _SEED),
        ("--json", dict(default=None, metavar="OUT.json|-", help="write the result JSON (-: to stdout; then "
                        "everything else goes to stderr)")),
        ("--report", dict(default=None, metavar="OUT.html", help="write the HTML report")),
        ("--out", dict(default=None, metavar="OUT.nwb|OUT.nix", help="the recording with the fit: .nwb as NWB "
                       "icephys (states, tables in processing/icephys), .nix as the Neo tree with the fit attached")),
        ("--overwrite", dict(action="store_true", help="replace existing --json, --report and --out files")),
        ("--validate-on", dict(default=None, metavar="SWEEPS", help="hold these sweeps out of the fit and report the "
                               "model's errors on them: N,M,..., a fraction (0.5) or 'alternate' (every other kept "
                               "sweep)")),
        ("--no-qc", dict(action="store_true", help="fit every requested sweep, even those quality control rejects")),
        ("--keep-sweeps", dict(default=None, metavar="N,M", help="keep these sweeps whatever quality control says")),
        ("--exclude-sweeps", dict(default=None, metavar="N,M", help="leave these sweeps out")),
        ("--textbook-ranges", dict(action="store_true", help="search the model's textbook ranges instead of ranges "
                                   "scaled to the measured cell")),
        ("--no-stages", dict(dest="staged", action="store_false", help="fit passive and active parameters together "
                             "(default: passive first on step protocols)")),
        ("--allow-unphysiological", dict(action="store_true", help="fit a recording whose voltage is outside a "
                                         "physiological range (check its units first)"))]),
    ("plugins", "list registered models, backends, initializers and commands and their plugins", cmd_plugins, [
        ("--json", dict(action="store_true", help="print the list as JSON on stdout"))]),
    ("report", "write the HTML report of a result JSON", cmd_report, [
        ("result", dict(help="a result JSON written by fit --json")),
        ("--out", dict(required=True, help="the HTML report to write (a new file)")),
        ("--overwrite", dict(action="store_true", help="replace an existing --out"))]),
    ("bench", "run a benchmark script of benchmarks/ (source checkout)", cmd_bench, [
        ("name", dict(help="e.g. simulate, lsq")),
        ("rest", dict(nargs=argparse.REMAINDER, help="arguments passed to the benchmark script"))]),
    ("demo", "fit the bundled sample recording and write result, report and NWB", cmd_demo, [
        ("--out", dict(default="neo_pinn_demo", metavar="DIR", help="folder for result.json, report.html and "
                       "fitted.nwb (created when missing)")),
        ("--overwrite", dict(action="store_true", help="replace the demo's files in an existing --out folder")),
        ("--sample", dict(default=None, help="the recording to fit (default: sample_data/ml_snlc.nwb)")),
        ("--backend", dict(default="lsq", help="estimation backend (default lsq)")),
        ("--free", dict(default="gCa,gK,phi", help="parameters to estimate (default gCa,gK,phi)")),
        ("--init", dict(default="gCa=2,gK=16,phi=0.0333", help="initial guesses p=v,...")),
        ("--window", dict(default="0:600", help="T0:T1 in ms (default 0:600)"))]),
]


def build_parser() -> argparse.ArgumentParser:
    """The ``neo-pinn`` argument parser (imports nothing heavy: ``--help`` is instant)."""
    from . import __version__

    raw = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(prog="neo-pinn", description="Estimate neuron-model parameters, hidden states and "
                                "noise from Neo recordings.", epilog=EXIT_STATUS_HELP, formatter_class=raw)
    p.add_argument("--version", action="version", version=f"neo-pinn {__version__}", help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text, func, options in _COMMANDS:
        s = sub.add_parser(name, help=text, description=text[:1].upper() + text[1:] + ".", epilog=EXIT_STATUS_HELP,
                           formatter_class=raw)
        s.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
        for flag, kwargs in options:
            s.add_argument(flag, **kwargs)
        s.set_defaults(func=func)
    add_plugin_commands(sub, [c[0] for c in _COMMANDS], quiet_help=QUIET_HELP, epilog=EXIT_STATUS_HELP, formatter=raw)
    return p


# ---------------------------------------------------------------------- entry point
def _os_error_text(exc: OSError) -> str:
    what = exc.strerror or type(exc).__name__
    return f"{what}: {exc.filename}" if exc.filename else _one_line(exc) or what


def _fail(text: str, code: int) -> int:
    print(_one_line(text), file=sys.stderr)
    if os.environ.get("NEO_PINN_DEBUG") == "1":
        traceback.print_exc()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``neo-pinn`` console script; returns the exit status (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):  # a file name that is not valid text prints escaped, never fails
        with contextlib.suppress(AttributeError, ValueError, io.UnsupportedOperation):
            stream.reconfigure(errors="backslashreplace")
    try:
        parser = build_parser()
    except NeoPinnError as exc:  # a plugin's command clashes with another's or a built-in
        return _fail(f"error: {exc}", EXIT_BAD_INPUT)
    args = parser.parse_args(argv)  # a usage error exits here with status 2
    args.argv = argv
    from .storage import Terminated, sigterm_raises

    try:
        with sigterm_raises():  # SIGTERM unwinds like Ctrl-C: temporary files and locks are removed
            return int(args.func(args) or 0)
    except Terminated:
        return _fail("neo-pinn: terminated", EXIT_TERMINATED)
    except KeyboardInterrupt:
        return _fail("neo-pinn: interrupted", EXIT_INTERRUPTED)
    except NeoPinnError as exc:
        return _fail(f"error: {exc}", EXIT_BAD_INPUT)
    except MemoryError:
        return _fail("error: out of memory; shorten the window or the recording, or use fewer sweeps.", EXIT_BAD_INPUT)
    except BrokenPipeError:
        with contextlib.suppress(OSError, ValueError):  # the reader left: no further writes to stdout
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return _fail("error: the output pipe was closed before neo-pinn finished.", EXIT_BAD_INPUT)
    except OSError as exc:
        return _fail(f"error: {_os_error_text(exc)}", EXIT_BAD_INPUT)
    except Exception as exc:  # noqa: BLE001 - anything else is a bug: one line, the traceback on request
        return _fail(f"neo-pinn: internal error (a bug; please report it, run with NEO_PINN_DEBUG=1 for the "
                     f"traceback): {type(exc).__name__}: {exc}", EXIT_INTERNAL)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
