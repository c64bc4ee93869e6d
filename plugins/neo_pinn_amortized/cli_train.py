"""``neo-pinn train``: simulate a model from priors, train an amortized estimator and save it to a folder.

The command the plugin contributes to ``neo-pinn`` (hook ``neo_pinn_register_commands``)::

    neo-pinn train --model M [--preset P] --free p1,p2 [--prior NAME=uniform:LO:HI ...]
                   [--noise none|white|ar1] [--noise-prior NAME=KIND:... ...] [--no-estimate-noise]
                   [--protocol SPEC --duration MS --rate HZ | --protocol FILE [--sweep K] [--window T0:T1]]
                   --n N [--arch paper_dense|paper_cnn|rescnn] [--arch-option K=V ...] [--epochs E]
                   [--batch-size B] [--lr LR] [--renoise] [--seed S] [--device auto|cpu|cuda] [--threads T]
                   --out ESTIMATOR_DIR [--overwrite]

Every flag maps onto an option of :class:`~.train.TrainConfig`, which checks them all when it is made; the
command then calls :func:`~.train.train_estimator` and :meth:`AmortizedEstimator.save` (a temporary folder renamed
onto ``--out``: the estimator appears whole or not at all). ``--out`` is checked before any simulation (an existing
folder needs ``--overwrite`` and must be an estimator folder; its parent must exist and be writable) and locked
against a second ``neo-pinn`` writing it. With ``--protocol FILE`` the estimator is trained for the protocol of one
sweep of that recording (:func:`.recorded_protocol.protocol_of_recording`): its sampling interval, its length
(optionally cut by ``--window``, ms from the sweep's start) and its injected current as one stimulus spec.

Values are in the model's canonical units (ms, mV, pA, pF, nS; priors of the noise in the voltage's unit). Only
:mod:`argparse` is imported with this module: the command line imports it to build its parser (``--help`` stays
instant); torch and the training modules are imported by :func:`run`.
"""

from __future__ import annotations

import argparse
import json
import re
from typing import Any, Sequence

__all__ = ["HELP", "add_arguments", "run", "parse_prior", "PRIOR_FORMS"]

HELP = "train an amortized estimator on simulations (for fit --backend amortized and fit --init amortized:DIR)"
#: the prior forms of --prior and --noise-prior
PRIOR_FORMS = ("NAME=uniform:LO:HI, NAME=loguniform:LO:HI, NAME=truncnormal:MU:SD:LO:HI or NAME=file:PATH[:log] "
               "(draws: one value per line, or a CSV column named NAME)")
#: prior kind as written → (kind of .priors.PRIORS, the numbers it takes)
_KINDS = {"uniform": ("uniform", ("LO", "HI")), "loguniform": ("log_uniform", ("LO", "HI")),
          "log_uniform": ("log_uniform", ("LO", "HI")), "log-uniform": ("log_uniform", ("LO", "HI")),
          "truncnormal": ("truncated_normal", ("MU", "SD", "LO", "HI")),
          "truncated_normal": ("truncated_normal", ("MU", "SD", "LO", "HI"))}
#: TrainConfig option → the flag that sets it (named in its errors)
_FLAGS = {"model": "--model", "preset": "--preset", "free": "--free/--prior", "priors": "--prior",
          "noise": "--noise", "noise_priors": "--noise-prior, e.g. --noise-prior sigma=loguniform:0.1:2 (white) or "
          "--noise-prior rho=uniform:0.66:0.92 --noise-prior s=uniform:0.0377:0.096 (ar1)",
          "duration_ms": "--duration", "sample_dt_ms": "--rate", "stimulus": "--protocol", "n": "--n",
          "arch": "--arch", "arch_options": "--arch-option", "epochs": "--epochs", "batch_size": "--batch-size",
          "lr": "--lr", "renoise": "--renoise/--no-renoise", "seed": "--seed", "device": "--device",
          "num_threads": "--threads", "values": "--set", "settle_ms": "--settle"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``neo-pinn train`` (``-q/--quiet`` is added by the core)."""
    a = parser.add_argument
    a("--model", required=True, help="registered model name, e.g. fitzhugh_nagumo (see `neo-pinn plugins`)")
    a("--preset", default=None, help="preset of the fixed parameters, initial state and default current")
    a("--free", required=True, help="comma-separated parameters the estimator estimates, e.g. theta0,theta1")
    a("--prior", action="append", metavar="NAME=KIND:...", help=f"prior of a free parameter: {PRIOR_FORMS} "
      "(canonical units; repeatable; default: uniform on the model's bounds, log-uniform for log-scale parameters)")
    a("--noise", choices=["none", "white", "ar1"], default="none", help="observation noise of the training traces "
      "(default none)")
    a("--noise-prior", action="append", metavar="NAME=KIND:...", help="prior of a noise parameter, as --prior: "
      "sigma (white, mV) or rho and s (ar1; s the innovation st. dev., mV); repeatable")
    a("--no-estimate-noise", dest="estimate_noise", action="store_false", help="do not estimate the noise parameters "
      "(they are still drawn for the training traces)")
    a("--protocol", default=None, metavar="SPEC|FILE", help="the injected current: a stimulus spec (e.g. step:amp="
      "48pA,start=10ms,stop=90ms; with --duration and --rate) or a recording whose sweep's sampling, length and "
      "step current are taken (default: the preset's constant current)")
    a("--duration", default=None, metavar="MS", help="trace length with a spec protocol, ms (units allowed: 0.2s)")
    a("--rate", default=None, metavar="HZ", help="sampling rate with a spec protocol, Hz (units allowed: 5kHz)")
    a("--sweep", type=int, default=None, help="the recording's sweep whose protocol is taken (default 0)")
    a("--window", default=None, metavar="T0:T1", help="cut the recording's sweep to T0:T1, ms from its start (fit "
      "with the same --window)")
    a("--n", type=int, required=True, help="simulated traces, training and validation together")
    a("--set", action="append", metavar="K=V", help="a fixed parameter's value when it differs from the preset "
      "(canonical units, e.g. C=50; fit with the same --set); repeatable")
    a("--settle", default=None, metavar="MS", help="simulate this long before the protocol so that every training "
      "trace starts at rest, as a recorded sweep does (ms, a whole number of sampling intervals; default 0)")
    a("--arch", default=None, help="network: rescnn (default), paper_cnn or paper_dense")
    a("--arch-option", action="append", metavar="K=V", help="option of the network (JSON value), repeatable")
    a("--epochs", type=int, default=None, help="most training epochs (default 200)")
    a("--batch-size", type=int, default=None, help="mini-batch size (default 32)")
    a("--lr", type=float, default=None, help="AdamW learning rate (default 2e-3)")
    a("--renoise", dest="renoise", action="store_true", default=None, help="a fresh noise draw on the clean "
      "simulations every epoch (default: on whenever there is noise)")
    a("--no-renoise", dest="renoise", action="store_false", help="train on one noise draw per simulation")
    a("--seed", type=int, default=0, help="seed of simulation, split, initialisation and batches (default 0)")
    a("--device", default="auto", help="auto (default: CUDA when present), cpu, cuda or cuda:N")
    a("--threads", type=int, default=None, help="torch CPU threads while training (default: torch's setting)")
    a("--out", required=True, metavar="ESTIMATOR_DIR", help="the estimator folder to write (manifest.json + "
      "weights.npz); its parent folder must exist")
    a("--overwrite", action="store_true", help="replace an existing estimator folder --out")


# ---------------------------------------------------------------------------------------------- parsing the flags
def parse_prior(text: str, flag: str = "--prior", example: str = "gCa=loguniform:2:8"):
    """``NAME=KIND:...`` → (name, prior) (see :data:`PRIOR_FORMS`; numbers in the parameter's canonical unit).

    Raises
    ------
    ConfigurationError
        Malformed text or values the prior refuses; the message names ``flag`` and shows ``example``.
    """
    from neo_pinn.errors import ConfigurationError

    from .priors import PRIORS

    usage = f"write {PRIOR_FORMS} (numbers in the parameter's canonical unit), e.g. {flag} {example}"
    name, eq, rest = (x.strip() for x in str(text).partition("="))
    kind, *args = (x.strip() for x in rest.split(":"))
    if eq and name and kind.lower() in ("file", "draws"):  # draws from a file: the path may itself hold ':'
        from .priors import draws_from_file

        path, log = rest.partition(":")[2], False
        if path.lower().endswith(":log"):
            path, log = path[:-4], True
        try:
            return name, draws_from_file(path, name, log=log)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{flag} {text!r}: {exc}") from None
    if not (eq and name and kind.lower() in _KINDS):
        raise ConfigurationError(f"{flag} {text!r}: {usage}.")
    cls_kind, fields = _KINDS[kind.lower()]
    if len(args) != len(fields):
        raise ConfigurationError(f"{flag} {text!r}: a {kind} prior takes {len(fields)} numbers "
                                 f"({kind}:{':'.join(fields)}); {usage}.")
    try:
        numbers = dict(zip(fields, map(float, args)))
    except ValueError:
        raise ConfigurationError(f"{flag} {text!r}: {':'.join(args)!r} are not all plain numbers; {usage}.") from None
    extra = {"mu": numbers["MU"], "sigma": numbers["SD"]} if "MU" in numbers else {}
    try:
        return name, PRIORS[cls_kind](numbers["LO"], numbers["HI"], **extra)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{flag} {text!r}: {exc} (e.g. {flag} {example})") from None


def _priors(items: Sequence[str] | None, flag: str, example: str) -> dict:
    from neo_pinn.errors import ConfigurationError

    out: dict = {}
    for item in items or []:
        name, prior = parse_prior(item, flag, example)
        if name in out:
            raise ConfigurationError(f"{flag} gives {name} twice; give one prior per parameter.")
        out[name] = prior
    return out


def _arch_options(items: Sequence[str] | None) -> dict[str, Any]:
    from neo_pinn.errors import ConfigurationError

    out: dict[str, Any] = {}
    for item in items or []:
        key, eq, value = (x.strip() for x in item.partition("="))
        if not (eq and key):
            raise ConfigurationError(f"--arch-option {item!r}: write K=V (V a number, list or text), e.g. "
                                     "--arch-option channels=[8,16].")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _quantity(text: str | None, kind: str, flag: str, example: str) -> float | None:
    from neo_pinn.errors import ConfigurationError, NeoPinnError
    from neo_pinn.units import parse_quantity

    if text is None:
        return None
    try:
        return parse_quantity(text, kind)
    except NeoPinnError:
        raise ConfigurationError(f"{flag} {text!r} is not a {kind}; e.g. {flag} {example}.") from None


def _window(text: str | None) -> tuple[float, float] | None:
    from neo_pinn.units import parse_window

    return parse_window(text, example="0:400 (ms from the sweep's start)")


def _protocol_source(args) -> tuple[Any, dict[str, Any]]:
    """(the recording to read the protocol from, or None; the protocol options when it is a spec or the preset's)."""
    from pathlib import Path

    from neo_pinn.errors import ConfigurationError
    from neo_pinn.io.stimulus_specs import STIMULUS_FORMS, parse_stimulus

    text = args.protocol
    path = Path(text).expanduser() if text else None
    if path is not None and path.exists() and path.suffix.lower() != ".csv":  # a CSV file is a spec's table
        if args.duration is not None or args.rate is not None:
            raise ConfigurationError("--duration and --rate go with a spec --protocol; a recording's sampling and "
                                     "length come from the file (cut its sweep with --window T0:T1).")
        return path, {}
    if args.sweep is not None or args.window is not None:
        raise ConfigurationError(f"--sweep and --window pick a recording's sweep; --protocol {text!r} is not a file "
                                 "that exists." if text else "--sweep and --window go with --protocol FILE.")
    if text is not None:
        try:
            parse_stimulus(text)
        except Exception as exc:  # noqa: BLE001 - a StimulusError, said with the flag
            raise ConfigurationError(f"--protocol {text!r} is neither an existing recording file nor a stimulus spec "
                                     f"({STIMULUS_FORMS}): {exc}") from None
    duration = _quantity(args.duration, "time", "--duration", "200 (ms) or 0.2s")
    rate = _quantity(args.rate, "frequency", "--rate", "5000 (Hz) or 5kHz")
    if duration is None or rate is None:
        raise ConfigurationError("Give --duration MS and --rate HZ with a spec --protocol (or the preset's current), "
                                 "e.g. --duration 200 --rate 5000; or --protocol FILE to take them from a recording.")
    if not rate > 0:
        raise ConfigurationError(f"--rate {args.rate}: give a positive sampling rate in Hz, e.g. --rate 5000.")
    return None, {"duration_ms": duration, "sample_dt_ms": 1000.0 / rate, "stimulus": text}


def _check_out(out, inputs: Sequence[Any], overwrite: bool, manifest: str | None = None) -> None:
    """--out before any work: not an input; existing only with --overwrite (and then an estimator folder, when
    ``manifest`` names its file); in an existing, writable folder."""
    import os

    from neo_pinn.errors import OutputPathError
    from neo_pinn.storage import same_file

    for src in inputs:
        if same_file(out, src):
            raise OutputPathError(f"--out {out} is an input of this run; inputs are never changed. Choose a new "
                                  "folder name.")
    if out.exists() and not overwrite:
        raise OutputPathError(f"--out {out} exists; choose a new folder name or pass --overwrite.")
    if out.exists() and manifest is not None and not (out.is_dir() and (out / manifest).is_file()):
        raise OutputPathError(f"--out {out} exists and is not an estimator folder (no {manifest}); it is never "
                              "replaced: choose a new folder name.")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise OutputPathError(f"The folder of --out {out} ({parent}) does not exist; create it first.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"The folder of --out {out} ({parent}) is not writable; choose another place.")


def _set_values(items) -> dict[str, float]:
    """``--set K=V`` flags → name → number (canonical units)."""
    from neo_pinn.errors import ConfigurationError

    out = {}
    for text in items or ():
        name, eq, value = (x.strip() for x in str(text).partition("="))
        try:
            out[name] = float(value)
        except ValueError:
            eq = ""
        if not (eq and name):
            raise ConfigurationError(f"--set {text!r}: write NAME=NUMBER in the parameter's canonical unit, e.g. "
                                     "--set C=50.")
    return out


def _config(args, protocol: dict[str, Any], free: tuple[str, ...], priors: dict, noise_priors: dict,
            arch_options: dict):
    """The :class:`TrainConfig` of the flags (its own checks; an error names the flag of the option it refuses)."""
    from neo_pinn.errors import ConfigurationError

    from .train import TrainConfig, default_priors

    missing = tuple(p for p in free if p not in priors)
    if priors and missing:  # the free parameters without --prior: the default prior
        priors = priors | default_priors(args.model, missing)
    options = dict(model=args.model, preset=args.preset, free=free, priors=priors or None, noise=args.noise,
                   noise_priors=noise_priors or None, estimate_noise=args.estimate_noise, n=args.n,
                   arch_options=arch_options, renoise=args.renoise, seed=args.seed, device=args.device,
                   progress=not args.quiet, num_threads=args.threads, values=_set_values(args.set), **protocol)
    if args.settle is not None:
        options["settle_ms"] = _quantity(args.settle, "time", "--settle", "300 (ms) or 0.3s")
    options |= {k: getattr(args, k) for k in ("arch", "epochs", "batch_size", "lr") if getattr(args, k) is not None}
    try:
        return TrainConfig.from_options(options)
    except ConfigurationError as exc:
        found = re.search(r"option (\w+)=", str(exc))
        flag = _FLAGS.get(found.group(1)) if found else ("--protocol/--duration/--rate/--window"
                                                          if str(exc).startswith("Protocol") else None)
        raise type(exc)(f"{exc}" + (f" (command line: {flag})" if flag else "")) from None


def _table(est) -> str:
    """Validation R² and 50/90 % coverage per target, and how the training went."""
    val = est.metrics.get("validation") or {}
    t = est.training
    lines = [f"trained {t.get('epochs_run', '?')} epochs (best {t.get('best_epoch', '?')}) on {t.get('n_train', '?')} "
             f"traces in {t.get('wall_s', float('nan')):.1f} s ({t.get('device_used', '?')}); validation on "
             f"{val.get('n', '?')} traces:",
             f"  {'target':<16} {'R²':>7} {'50 % cov.':>10} {'90 % cov.':>10}"]
    for name, m in (val.get("targets") or {}).items():
        lines.append(f"  {name:<16} {m.get('r2', float('nan')):>7.3f} {m.get('coverage_50', float('nan')):>10.2f} "
                     f"{m.get('coverage_90', float('nan')):>10.2f}")
    return "\n".join(lines)


def run(args) -> int:
    """Run ``neo-pinn train`` (see the module documentation); returns the exit status."""
    from pathlib import Path

    from neo_pinn.storage import OutputLock

    free = tuple(x.strip() for x in args.free.split(",") if x.strip())
    priors = _priors(args.prior, "--prior", "gCa=loguniform:2:8")
    noise_priors = _priors(args.noise_prior, "--noise-prior", "sigma=loguniform:0.1:2")
    arch_options = _arch_options(args.arch_option)
    window = _window(args.window)
    source, protocol = _protocol_source(args)
    out = Path(args.out).expanduser()
    inputs = [source] if source is not None else []
    _check_out(out, inputs, args.overwrite)  # at once, before torch is imported
    with OutputLock(out, "--out"):
        from .estimator import MANIFEST
        from .recorded_protocol import protocol_of_recording
        from .train import train_estimator

        _check_out(out, inputs, args.overwrite, MANIFEST)  # again: another run may have written it meanwhile
        if source is not None:
            proto = protocol_of_recording(source, 0 if args.sweep is None else args.sweep, window)
            protocol = {"duration_ms": proto.duration_ms, "sample_dt_ms": proto.sample_dt_ms,
                        "stimulus": proto.stimulus}
            if not args.quiet:
                print(f"protocol of {source.name}: {proto.n_samples} samples at {proto.sample_dt_ms:g} ms, "
                      f"stimulus {proto.stimulus}")
        config = _config(args, protocol, free, priors, noise_priors, arch_options)
        est = train_estimator(config)
        est.save(out, overwrite=args.overwrite)
    print(_table(est))
    if not args.quiet:
        print(f"wrote {out}")
    return 0
