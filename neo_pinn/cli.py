"""The ``neo-pinn`` command line: info, simulate, fit, plugins, report, bench, demo.

The flags are a stable contract (scripts and benchmarks call them). Every error a user can cause ends
with a one-line ``error: ...`` message saying what to do, and exit status 2. ``fit`` exits with status 3
(:data:`EXIT_FIT_FAILED`) when the fit ran but failed its verdict (the fitted model does not behave like the
cell, or an estimate sits on a bound); its outputs (JSON, report, NWB) are still written and say so.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

from .errors import ConfigurationError, NeoPinnError

__all__ = ["main", "build_parser", "EXIT_FIT_FAILED"]

#: exit status of ``neo-pinn fit`` when the fit ran but its verdict says it failed
EXIT_FIT_FAILED = 3


# ---------------------------------------------------------------------- small parsers
def _kv_list(items: Sequence[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        for part in filter(None, (p.strip() for p in item.split(","))):
            if "=" not in part:
                raise ConfigurationError(f"{what} takes name=value pairs; got {part!r}.")
            k, v = (x.strip() for x in part.split("=", 1))
            out[k] = v
    return out


def _float_values(d: dict[str, str], what: str) -> dict[str, float]:
    from .units import parse_quantity

    out = {}
    for k, v in d.items():
        try:
            out[k] = float(v)
        except ValueError:
            try:
                out[k] = parse_quantity(v)
            except NeoPinnError as exc:
                raise ConfigurationError(f"{what} {k}={v!r} is not a number.") from exc
    return out


def _bounds(items: Sequence[str] | None) -> dict[str, tuple[float, float]]:
    out = {}
    for k, v in _kv_list(items, "--bounds").items():
        try:
            lo, hi = (float(x) for x in v.split(":"))
        except ValueError:
            raise ConfigurationError(f"--bounds {k}={v!r}: write low:high, e.g. gCa=1:16.") from None
        out[k] = (lo, hi)
    return out


def _window(text: str | None) -> tuple[float, float] | None:
    if not text:
        return None
    from .units import parse_quantity

    try:
        a, b = text.split(":")
        return parse_quantity(a, "time"), parse_quantity(b, "time")
    except (ValueError, NeoPinnError):
        raise ConfigurationError(f"--window {text!r}: write T0:T1 in ms, e.g. 100:600.") from None


def _sweeps(text: str | None):
    if text is None or text == "all":
        return "all"
    try:
        vals = [int(x) for x in text.split(",")]
    except ValueError:
        raise ConfigurationError(f"--sweep {text!r}: write a sweep index, a list 0,2,5, or all.") from None
    return vals[0] if len(vals) == 1 else vals


def _sweep_list(text: str | None, flag: str) -> tuple[int, ...]:
    """``"3,5"`` → (3, 5)."""
    if not text:
        return ()
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise ConfigurationError(f"{flag} takes sweep numbers separated by commas, e.g. 3,5; got {text!r}.") from exc


def _validate_on(text: str | None):
    """``--validate-on``: sweep numbers, a fraction (0.5) or ``alternate``."""
    if not text:
        return None
    if text == "alternate":
        return text
    if "," not in text and "." in text:
        try:
            return float(text)
        except ValueError:
            pass
    return _sweep_list(text, "--validate-on")


def _options(items: Sequence[str] | None) -> dict[str, Any]:
    """Backend options from ``--option K=V`` items; V is JSON where it parses, else a string.

    A whole item whose value is JSON is one option, so a dict or list value may contain commas
    (``refine_options={"max_iter":8,"n_starts":2}``); otherwise an item may hold several comma-separated
    pairs (``pop_size=32,n_gen=10``).
    """
    def json_or_text(v: str) -> Any:
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return v

    out: dict[str, Any] = {}
    for item in items or []:
        k, sep, v = item.partition("=")
        whole = json_or_text(v) if sep and k.strip() and "," in v else v
        if whole is not v:                      # the whole value parsed as JSON (a dict or list with commas)
            out[k.strip()] = whole
            continue
        out.update({k: json_or_text(v) for k, v in _kv_list([item], "--option").items()})
    return out


def sidecar_path(path: Path) -> Path:
    """The JSON sidecar beside a data file: ``cell.nwb`` → ``cell.nwb.json``."""
    return path.with_name(path.name + ".json")


def _truth_for(path: Path, model_name: str) -> dict[str, float]:
    """Ground truth from a file made by ``neo-pinn simulate`` (NWB metadata or JSON sidecar)."""
    meta = None
    if path.suffix.lower() == ".nwb":
        try:
            from .io.synthetic_nwb import read_icephys_metadata

            meta = read_icephys_metadata(path)
        except (NeoPinnError, OSError, KeyError, ValueError):
            meta = None
    side = sidecar_path(path)
    if not meta and side.exists():
        try:
            meta = json.loads(side.read_text())
        except (OSError, json.JSONDecodeError):
            meta = None
    if meta and meta.get("model") == model_name and isinstance(meta.get("parameters"), dict):
        return {k: float(v) for k, v in meta["parameters"].items()}
    return {}


# ---------------------------------------------------------------------- commands
def cmd_info(args) -> int:
    from .api import load_recording

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = load_recording(args.file, mode="any", voltage_channel=args.voltage_channel,
                             stimulus=args.stimulus or "auto")
    d = rec.describe()
    d["load_warnings"] = sorted({str(w.message) for w in caught if "neo_pinn" in (w.filename or "") or True})[:20]
    qc, props = _cell_summary(rec) if d["recording_mode"] == "current_clamp" else (None, None)
    d["qc"] = None if qc is None else qc.to_dict()
    d["cell"] = None if props is None else props.to_dict()
    if args.json:
        print(json.dumps(d, indent=1, default=str))
        return 0
    print(f"{d['file'] or 'recording'}: {d['format']}, {d['recording_mode'].replace('_', ' ')}, "
          f"{d['n_sweeps']} sweep(s)")
    for ch in d.get("channels", []):
        print(f"  channel {ch.get('name')!s:>12}  {ch.get('units')!s:>4}  {ch.get('dimension', '')}")
    chan = d.get("voltage_channel") or d.get("recorded_channel")
    print(f"  voltage channel: {chan}" if d["recording_mode"] == "current_clamp" else f"  recorded current: {chan}")
    if d.get("stimulus_summary"):
        print(f"  stimulus: {d['stimulus_summary']}")
    if d.get("total_spikes") is not None:
        print(f"  spikes (0 mV): {d['total_spikes']}")
    print(f"  {'sweep':>5} {'rate Hz':>9} {'dur ms':>9} {'spikes':>6}  stimulus")
    for s in d["sweeps"]:
        spikes = "" if s.get("spike_count") is None else s["spike_count"]
        src = s.get("stimulus_source") or "none"
        text = s.get("stimulus_text") or ""
        print(f"  {s['sweep']:>5} {s['sampling_rate_hz']:>9.1f} {s['duration_ms']:>9.1f} {spikes!s:>6}  {src}: {text}")
    for w in d.get("warnings", []):
        print(f"  warning: {w}")
    if qc is not None:
        print("sweep quality control:")
        print(_indent(qc.table()))
    if props is not None:
        print("cell (from the kept sweeps):")
        print(_indent(props.table()))
    return 0


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _cell_summary(rec):
    """Sweep quality control and the cell's properties of a current-clamp recording (None where not measurable),
    with the spike levels a fit would use (from 0 / −10 mV)."""
    from .cellfit import survey_recording

    try:
        traces = rec.traces(sweeps="all")
    except NeoPinnError:
        return None, None
    survey = survey_recording(traces, 0.0, -10.0)
    return survey.qc, survey.properties


def cmd_simulate(args) -> int:
    import numpy as np

    from .api import get_model, synthetic_trace
    from .storage import atomic_path, atomic_write_text
    from .noise import parse_noise

    model = get_model(args.model)
    values = _float_values(_kv_list(args.set, "--set"), "--set")
    preset = args.preset or model.default_preset
    noise = parse_noise(args.noise, "dimensionless" if model.state_units[0] != "mV" else "voltage")
    stimuli = args.stimulus or [None]
    traces = []
    out = Path(args.out)
    for k, spec in enumerate(stimuli):
        tr, states = synthetic_trace(model, preset=preset, values=values, stimulus=spec, duration=args.duration,
                                     rate_hz=args.rate, noise=noise, seed=args.seed + k)
        from dataclasses import replace

        traces.append((replace(tr, sweep=k, stimulus_source="protocol"), states))
    all_values = model.param_values(preset, **values)
    meta = {
        "generator": "neo-pinn simulate",
        "model": model.name,
        "preset": preset,
        "parameters": all_values,
        "parameter_units": {p.name: p.unit for p in model.parameters},
        "stimulus": [s if s is not None else f"const:amp={model.preset(preset).i_ext:g}pA" for s in stimuli],
        "noise": None if noise is None else noise.to_dict(),
        "seed": args.seed,
        "duration_ms": args.duration,
        "rate_hz": args.rate,
        "initial_state": dict(zip(model.state_names, map(float, model.initial_state(preset)))),
        "command": "neo-pinn " + " ".join(shlex.quote(a) for a in args.argv),
    }
    suffix = out.suffix.lower()
    if suffix == ".nwb":
        from .io.synthetic_nwb import write_icephys_nwb

        write_icephys_nwb(out, [t for t, _ in traces], metadata=meta, overwrite=args.overwrite)
    elif suffix == ".abf":
        import pyabf.abfWriter

        n = traces[0][0].t.size
        if n < 1536:
            raise ConfigurationError("An ABF1 file needs at least 1536 samples (Neo cannot read smaller ones); "
                                     "raise --duration or --rate.")
        if out.exists() and not args.overwrite:
            raise ConfigurationError(f"{out} exists; choose a new path or pass --overwrite.")
        data = np.stack([t.v for t, _ in traces])
        with atomic_path(out) as tmp:
            pyabf.abfWriter.writeABF1(data, str(tmp), sampleRateHz=float(args.rate), units="mV")
        meta["note"] = ("ABF1 written with pyabf holds one voltage channel and no protocol: pass the stimulus "
                        "to `neo-pinn fit` with --stimulus (see 'stimulus' above).")
    else:
        raise ConfigurationError(f"--out must end in .nwb or .abf, got {out.name!r}.")
    atomic_write_text(sidecar_path(out), json.dumps(meta, indent=1))
    if args.states:
        hidden = {f"{name}": traces[0][1][:, j].tolist() for j, name in enumerate(model.state_names)}
        atomic_write_text(Path(args.states), json.dumps({"t_ms": traces[0][0].t.tolist(), **hidden}))
    print(f"wrote {out} ({len(traces)} sweep(s), {traces[0][0].t.size} samples each) and {sidecar_path(out).name}")
    return 0


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


def cmd_fit(args) -> int:
    from .storage import check_outputs

    # every output is checked before anything is read or fitted: nothing is lost, no fit is wasted
    check_outputs({"--json": args.json, "--report": args.report, "--out": args.out}, [args.file],
                  overwrite=args.overwrite)

    import torch

    from .api import estimate, get_backend, get_model, load_recording

    model = get_model(args.model)
    free = free_parameters(args.free, model, quiet=args.quiet)
    values = _float_values(_kv_list(args.set, "--set"), "--set")
    init = {} if args.init in (None, "", "random") else _float_values(_kv_list([args.init], "--init"), "--init")
    backend_cls = get_backend(args.backend)
    options = _options(args.option)
    if args.refine is not None:
        if "refine" not in backend_cls.default_config:
            raise ConfigurationError(f"--refine needs a backend with a local refinement stage (e.g. ga); "
                                     f"{args.backend!r} has none.")
        options["refine"] = args.refine
    if args.init == "random" and "random_starts" in backend_cls.default_config:
        options.setdefault("random_starts", "bounds")
    backend_cls(**options)  # bad options fail before the recording is read
    rec = load_recording(args.file, stimulus=args.stimulus if args.stimulus else "auto",
                         voltage_channel=args.voltage_channel)
    result = estimate(rec, model, args.backend, free, preset=args.preset, values=values, init=init,
                      bounds=_bounds(args.bounds), sweeps=_sweeps(args.sweep), window=_window(args.window),
                      noise=args.noise, truth=_truth_for(Path(args.file), model.name), seed=args.seed,
                      device=args.device, dtype=torch.float32 if args.float32 else torch.float64,
                      progress=not args.quiet, backend_options=options, qc=not args.no_qc,
                      keep_sweeps=_sweep_list(args.keep_sweeps, "--keep-sweeps"),
                      exclude_sweeps=_sweep_list(args.exclude_sweeps, "--exclude-sweeps"),
                      scale_to_cell=not args.textbook_ranges, staged="auto" if args.staged else False,
                      validate_on=_validate_on(args.validate_on))
    print(result.summary())
    if args.json:
        result.to_json(args.json)
        print(f"wrote {args.json}")
    if args.report:
        from .report import write_report

        write_report(result, args.report)
        print(f"wrote {args.report}")
    if args.out:
        from .io.attach import attach
        from .io.neo_writers import write_block

        attach(result, rec.block)  # rec.block is neo_pinn's annotated copy, never the user's objects
        write_block(rec.block, args.out, overwrite=args.overwrite)
        print(f"wrote {args.out}")
    if result.failed:
        print(f"error: the fit failed its verdict (exit status {EXIT_FIT_FAILED}); see the checks above.",
              file=sys.stderr)
        return EXIT_FIT_FAILED
    return 0


def cmd_plugins(args) -> int:
    from .plugins import get_state

    state = get_state()
    rows = {"models": {n: state.models.origin(n) for n in state.models.names()},
            "backends": {n: state.backends.origin(n) for n in state.backends.names()},
            "failed": dict(state.failed)}
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print("models:")
    for n, o in rows["models"].items():
        m = state.models.get(n)
        print(f"  {n:<22} from {o:<14} presets: {', '.join(m.presets)}")
    print("backends:")
    for n, o in rows["backends"].items():
        print(f"  {n:<22} from {o:<14} {state.backends.get(n).description}")
    for n, why in rows["failed"].items():
        print(f"  failed plugin {n}: {why}")
    return 0


def cmd_report(args) -> int:
    from .report import write_report
    from .result import EstimationResult
    from .storage import check_outputs

    check_outputs({"--out": args.out}, [args.result], overwrite=args.overwrite)
    result = EstimationResult.from_json(Path(args.result))
    write_report(result, args.out)
    print(f"wrote {args.out}")
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
    sample = Path(args.sample) if args.sample else _repo_root() / "sample_data" / "ml_snlc.nwb"
    if not sample.exists():
        raise ConfigurationError(f"Sample recording {sample} not found; pass --sample FILE.")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    side = json.loads(sidecar_path(sample).read_text()) if sidecar_path(sample).exists() else {}
    print(f"neo-pinn demo: {sample.name} ({side.get('model', 'morris_lecar')}, made by: {side.get('command', '?')})")
    rc = main(["info", str(sample)])
    if rc:
        return rc
    fit_args = ["fit", str(sample), "--model", side.get("model", "morris_lecar"), "--preset", side.get("preset", "snlc"),
                "--backend", args.backend, "--free", args.free, "--init", args.init, "--window", args.window,
                "--seed", "0", "--json", str(out / "result.json"), "--report", str(out / "report.html"),
                "--out", str(out / "fitted.nwb"), "--overwrite"]
    print("$ neo-pinn " + " ".join(shlex.quote(a) for a in fit_args))
    return main(fit_args)


# ---------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="neo-pinn", description="Estimate neuron-model parameters, hidden states and "
                                "noise from Neo recordings.")
    p.add_argument("--version", action="version", version=f"neo-pinn {__import__('neo_pinn').__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("info", help="describe a recording: sweeps, channels, units, spikes, stimulus")
    s.add_argument("file")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument("--voltage-channel", default=None, help="force the voltage channel (name or index)")
    s.add_argument("--stimulus", default=None, help="stimulus spec to use instead of the recording's")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("simulate", help="write a synthetic recording (NWB or ABF) with known ground truth")
    s.add_argument("--model", required=True)
    s.add_argument("--preset", default=None)
    s.add_argument("--set", action="append", metavar="K=V", help="parameter values (canonical units)")
    s.add_argument("--stimulus", action="append", metavar="SPEC",
                   help="e.g. step:amp=48pA,start=100ms,stop=900ms; repeat for several sweeps")
    s.add_argument("--duration", type=float, required=True, help="ms")
    s.add_argument("--rate", type=float, default=20000.0, help="sampling rate, Hz")
    s.add_argument("--noise", default=None, help="white:sigma=1mV or ar1:sigma=1mV,rho=0.8")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--states", default=None, help="also write the noise-free states of sweep 0 to this JSON")
    s.add_argument("--out", required=True, help="FILE.nwb or FILE.abf (a FILE.json sidecar is written too)")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=cmd_simulate)

    s = sub.add_parser("fit", help="estimate parameters and hidden states of a recording",
                       epilog="exit status: 0 fit passed its verdict (or with warnings), 2 error, "
                              f"{EXIT_FIT_FAILED} the fit ran but failed its verdict")
    s.add_argument("file")
    s.add_argument("--model", required=True)
    s.add_argument("--preset", default=None, help="preset for the fixed parameters")
    s.add_argument("--backend", required=True)
    s.add_argument("--free", default=None,
                   help="comma-separated parameters to estimate (default: the model's default_free set)")
    s.add_argument("--set", action="append", metavar="K=V", help="fixed parameter values")
    s.add_argument("--init", default=None, help="p=v,... initial guesses, or 'random'")
    s.add_argument("--bounds", action="append", metavar="P=LO:HI")
    s.add_argument("--sweep", default="all", help="N, N,M,... or all")
    s.add_argument("--window", default=None, help="T0:T1 in ms from each sweep's start")
    s.add_argument("--stimulus", default="auto", help="auto or a spec (step:amp=..,start=..,stop=..), CSV path")
    s.add_argument("--voltage-channel", default=None)
    s.add_argument("--noise", choices=["white", "ar1"], default=None, help="assumed observation-noise model")
    s.add_argument("--option", action="append", metavar="K=V", help="backend option (JSON value)")
    s.add_argument("--refine", choices=["none", "lsq", "cmaes", "cmaes+lsq"], default=None,
                   help="local refinement of a global backend's best solutions (ga): lsq (gradient trajectory "
                        "fit), cmaes (CMA-ES on the same objectives) or cmaes+lsq (one, then the other)")
    s.add_argument("--device", default="auto", help="auto, cpu or cuda")
    s.add_argument("--float32", action="store_true", help="single precision (faster on GPU)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--json", default=None, metavar="OUT.json")
    s.add_argument("--report", default=None, metavar="OUT.html")
    s.add_argument("--out", default=None, metavar="OUT.nwb|OUT.nix", help="the recording with the fit attached")
    s.add_argument("--overwrite", action="store_true", help="replace existing --json, --report and --out files")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--validate-on", default=None, metavar="SWEEPS",
                   help="hold these sweeps out of the fit and report the model's errors on them: N,M,..., a "
                        "fraction (0.5) or 'alternate' (every other kept sweep)")
    s.add_argument("--no-qc", action="store_true", help="fit every requested sweep, even those quality control rejects")
    s.add_argument("--keep-sweeps", default=None, metavar="N,M", help="keep these sweeps whatever quality control says")
    s.add_argument("--exclude-sweeps", default=None, metavar="N,M", help="leave these sweeps out")
    s.add_argument("--textbook-ranges", action="store_true",
                   help="search the model's textbook ranges instead of ranges scaled to the measured cell")
    s.add_argument("--no-stages", dest="staged", action="store_false",
                   help="fit passive and active parameters together (default: passive first on step protocols)")
    s.set_defaults(func=cmd_fit)

    s = sub.add_parser("plugins", help="list registered models and backends and their plugins")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_plugins)

    s = sub.add_parser("report", help="write the HTML report of a result JSON")
    s.add_argument("result", help="a result JSON written by fit --json")
    s.add_argument("--out", required=True, help="the HTML report to write (a new file)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("bench", help="run a benchmark script of benchmarks/ (source checkout)")
    s.add_argument("name", help="e.g. simulate, lsq")
    s.add_argument("rest", nargs=argparse.REMAINDER)
    s.set_defaults(func=cmd_bench)

    s = sub.add_parser("demo", help="fit the bundled sample recording and write result, report and NWB")
    s.add_argument("--out", default="neo_pinn_demo")
    s.add_argument("--sample", default=None)
    s.add_argument("--backend", default="lsq")
    s.add_argument("--free", default="gCa,gK,phi")
    s.add_argument("--init", default="gCa=2,gK=16,phi=0.0333")
    s.add_argument("--window", default="0:600")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``neo-pinn`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        return int(args.func(args) or 0)
    except NeoPinnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
