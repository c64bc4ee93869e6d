"""Real cells never seen before: the default ``neo-pinn fit`` on every shared step-protocol recording.

For each current-clamp recording with a step protocol in ``../shared/data/recordings/`` and each model, runs
exactly what a new user runs — ``neo-pinn fit FILE --model M --backend ga --sweep all`` with default options
(in-process, through :func:`neo_pinn.cli.main`) — and prints:

1. sweep quality control: sweeps kept and excluded, with reasons;
2. passive properties (rest, input resistance, time constant, capacitance) against eFEL's own values on the
   same sweeps (:func:`neo_pinn.testing.efel.efel_cell_properties`), within 10 %;
3. spike counts seen by the search (the ``ga`` backend's recorded features, after its smoothing) against
   eFEL's ``Spikecount`` on the raw recording, sweep by sweep;
4. the verdict: does the fitted model fire where the cell fires (rheobase within one step), its rate within
   25 % on every spiking sweep, estimates on a bound — or does the verdict say the fit failed, and why;
5. the wall time per cell;
6. with ``--validate``: the generalisation table of a second fit on every other sweep (``--validate-on
   alternate``).

    python benchmarks/bench_real_cells.py [--files F ...] [--models morris_lecar hodgkin_huxley]
                                          [--validate] [--out DIR] [--tables DIR/rows.json ...]

The recordings are read from their shared folder and never copied; the script says so and stops when the
folder is absent. Rows are written to ``DIR/rows.json`` as each fit finishes; ``--tables`` prints the tables
of rows written by earlier runs (e.g. two runs side by side on the two cores).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

#: the shared recordings beside the repository (override with the environment variable NEO_PINN_RECORDINGS)
RECORDINGS = Path(os.environ.get("NEO_PINN_RECORDINGS",
                                 Path(__file__).resolve().parents[2] / "shared" / "data" / "recordings"))
FILES = ("17o05028_ic_steps.abf", "2019_07_24_0055_fsi.abf", "190619B_0003.abf", "99111002.nwb")
MODELS = ("morris_lecar", "hodgkin_huxley")
PASSIVE = (("rest_mV", "rest (mV)"), ("input_resistance_MOhm", "Rin (MΩ)"), ("tau_ms", "τ (ms)"),
           ("capacitance_pF", "C (pF)"))


def run_fit(path: Path, model: str, extra: list[str], folder: Path) -> dict:
    """One ``neo-pinn fit`` with default options; the result JSON, exit status, wall time and printed text."""
    from neo_pinn.cli import main
    from neo_pinn.result import EstimationResult

    out = folder / f"{path.stem}.{model}{'.validate' if extra else ''}.json"
    argv = ["fit", str(path), "--model", model, "--backend", "ga", "--sweep", "all", "--json", str(out),
            "--quiet", "--overwrite", *extra]
    text = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
        code = main(argv)
    wall = time.perf_counter() - start
    result = EstimationResult.from_json(out) if out.exists() else None
    return {"exit": code, "wall_s": wall, "result": result, "text": text.getvalue(), "argv": argv}


def efel_rows(path: Path, result, model: str) -> tuple[list[dict], list[dict]]:
    """eFEL's passive properties and raw spike counts on the sweeps the fit used."""
    from neo_pinn.api import get_model, load_recording
    from neo_pinn.cell import protocol_steps
    from neo_pinn.testing.efel import efel_cell_properties

    m = get_model(model)
    traces = load_recording(path).traces(sweeps="all")
    cell = result.cell
    used = set(cell.get("fitted_sweeps", [])) | set(cell.get("holdout_sweeps", []))
    kept = [tr for tr in traces if tr.sweep in used]
    steps = protocol_steps(kept)
    ours = cell.get("properties") or {}
    theirs = efel_cell_properties(kept, steps, threshold=m.spike_threshold, passive=ours.get("passive_sweeps"))
    passive = []
    for key, label in PASSIVE:
        a, b = ours.get(key), theirs.get(key)
        err = None if a is None or b in (None, 0) else abs(a - b) / abs(b)
        passive.append({"quantity": label, "ours": a, "efel": b, "rel_diff": err})
    # spike counts: the search's recorded features against eFEL on the same (windowed) raw sweeps
    window = cell.get("window_ms")
    fitted = [tr for tr in kept if tr.sweep in set(cell.get("fitted_sweeps", []))]
    if window:
        fitted = [tr.window(tr.t[0] + window[0], tr.t[0] + window[1]) for tr in fitted]
    levels = cell.get("spike_levels_mV") or [m.spike_threshold, m.spike_rearm]
    raw = efel_spike_counts(fitted, levels[0])  # eFEL at the threshold the search used
    seen = search_counts(result)
    spikes = [{"sweep": tr.sweep, "efel_raw": raw[k], "search": seen.get(tr.sweep)} for k, tr in enumerate(fitted)]
    return passive, spikes


def efel_spike_counts(traces, threshold: float) -> list[int]:
    """eFEL's Spikecount of each whole trace, at the given threshold (mV)."""
    import efel

    efel.reset()
    efel.set_setting("Threshold", float(threshold))
    out = []
    for tr in traces:
        d = {"T": tr.t - tr.t[0], "V": tr.v, "stim_start": [0.0], "stim_end": [float(tr.t[-1] - tr.t[0])]}
        vals = efel.get_feature_values([d], ["Spikecount"], raise_warnings=False)[0]["Spikecount"]
        out.append(int(vals[0]) if vals is not None and len(vals) else 0)
    efel.reset()
    return out


def search_counts(result) -> dict[int, int]:
    """Recorded spike counts per fitted sweep as the ``ga`` search saw them (its ``diagnostics["smoothing"]``)."""
    diag = result.diagnostics.get("smoothing") or {}
    counts = diag.get("search_spike_counts") or []
    sweeps = (result.cell or {}).get("fitted_sweeps") or [f.sweep for f in result.fits]
    return {int(s): int(c) for s, c in zip(sweeps, counts)}


def verdict_row(path: Path, model: str, run: dict) -> dict:
    r = run["result"]
    if r is None:
        return {"file": path.name, "model": model, "exit": run["exit"], "status": "error",
                "message": run["text"].strip().splitlines()[-1:] or [""], "wall_s": run["wall_s"]}
    v = r.verdict
    sweeps = [s for s in v.get("sweeps", []) if s.get("role") == "fit"]
    spiking = [s for s in sweeps if s.get("n_spikes_cell", 0) > 0]
    rate_err = [s.get("rate_error") for s in spiking if s.get("rate_error") is not None]
    on_bound = [c for c in v.get("checks", []) if c["name"] == "bounds" and not c["passed"]]
    return {"file": path.name, "model": model, "exit": run["exit"], "status": r.status,
            "rheobase_cell_pA": v.get("rheobase_cell_pA"), "rheobase_model_pA": v.get("rheobase_model_pA"),
            "spiking_sweeps": len(spiking), "model_fires_on": sum(s.get("n_spikes_model", 0) > 0 for s in spiking),
            "max_rate_error": max(rate_err) if rate_err else None,
            "bounds_flagged": bool(on_bound), "failed_checks": [c["name"] for c in v.get("checks", [])
                                                                if not c["passed"]],
            "wall_s": run["wall_s"], "estimates": {k: p.value for k, p in r.free_parameters.items()},
            "generalisation": v.get("generalisation")}


def qc_row(path: Path, result) -> dict:
    qc = (result.cell or {}).get("qc") or {}
    sweeps = qc.get("sweeps", [])
    return {"file": path.name, "kept": [s["sweep"] for s in sweeps if s.get("kept")],
            "excluded": {s["sweep"]: s.get("details") or s.get("reasons") for s in sweeps if not s.get("kept")}}


def _f(x, d: int = 4) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{d}g}"
    return str(x)


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.0f} %"


def print_tables(rows: list[dict]) -> None:
    print("\n## Sweep quality control\n")
    print("| file | sweeps kept | excluded (reason) |\n|---|---|---|")
    seen = set()
    for r in rows:
        if r["kind"] != "fit" or r["file"] in seen or "qc" not in r:
            continue
        seen.add(r["file"])
        exc = "; ".join(f"{s}: {' '.join(v)}" for s, v in r["qc"]["excluded"].items()) or "none"
        print(f"| {r['file']} | {len(r['qc']['kept'])} ({', '.join(map(str, r['qc']['kept']))}) | {exc} |")
    print("\n## Passive properties: ours vs eFEL on the same sweeps\n")
    print("| file | quantity | ours | eFEL | difference | within 10 % |\n|---|---|---|---|---|---|")
    seen = set()
    for r in rows:
        if r["kind"] != "fit" or r["file"] in seen or "passive" not in r:
            continue
        seen.add(r["file"])
        for p in r["passive"]:
            d = p["rel_diff"]
            print(f"| {r['file']} | {p['quantity']} | {_f(p['ours'])} | {_f(p['efel'])} | "
                  f"{'—' if d is None else f'{100 * d:.1f} %'} | {'—' if d is None else ('yes' if d <= 0.10 else 'NO')} |")
    print("\n## Spike counts: the search's view vs eFEL on the raw recording\n")
    print("| file | model | sweeps | identical | per sweep (eFEL/search) |\n|---|---|---|---|---|")
    for r in rows:
        if r["kind"] != "fit" or "spikes" not in r:
            continue
        same = sum(s["efel_raw"] == s["search"] for s in r["spikes"])
        per = ", ".join(f"{s['sweep']}:{s['efel_raw']}/{_f(s['search'])}" for s in r["spikes"])
        print(f"| {r['file']} | {r['model']} | {len(r['spikes'])} | {same}/{len(r['spikes'])} | {per} |")
    print("\n## Verdict of the default fit\n")
    print("| file | model | status (exit) | rheobase cell / model (pA) | model fires on spiking sweeps | "
          "max rate error | bound flagged | failed checks | time (s) |\n|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["kind"] != "fit":
            continue
        v = r["verdict"]
        print(f"| {r['file']} | {r['model']} | {v['status']} ({v['exit']}) | {_f(v.get('rheobase_cell_pA'))} / "
              f"{_f(v.get('rheobase_model_pA'))} | {v.get('model_fires_on', '—')}/{v.get('spiking_sweeps', '—')} | "
              f"{_pct(v.get('max_rate_error'))} | "
              f"{v.get('bounds_flagged', '—')} | {', '.join(v.get('failed_checks', [])) or 'none'} | {v['wall_s']:.0f} |")
    val = [r for r in rows if r["kind"] == "validate"]
    if val:
        print("\n## Generalisation: fitted on every other sweep, judged on the others\n")
        print("| file | model | status | sweeps | RMSE (mV) | spike-count error | rate error |\n|---|---|---|---|---|---|---|")
        for r in val:
            v = r["verdict"]
            for role, g in (v.get("generalisation") or {}).items():
                print(f"| {r['file']} | {r['model']} | {v['status']} | {role} | {_f(g.get('rmse_mV'))} | "
                      f"{_f(g.get('spike_count_error'))} | {_f(g.get('rate_error'))} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", nargs="+", default=list(FILES))
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--validate", action="store_true", help="also fit on every other sweep (generalisation)")
    ap.add_argument("--out", default=None, help="folder for result JSON files and rows.json")
    ap.add_argument("--tables", nargs="+", default=None, help="print the tables of earlier rows.json files")
    args = ap.parse_args()
    if args.tables:
        rows = [r for f in args.tables for r in json.loads(Path(f).read_text())]
        print_tables(rows)
        return 0
    if not RECORDINGS.is_dir():
        print(f"The shared recordings folder ({RECORDINGS.name}) is absent: nothing to benchmark.")
        return 0
    folder = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_real_cells_"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"# bench_real_cells — {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}", flush=True)
    rows: list[dict] = []
    for name in args.files:
        path = RECORDINGS / name
        for model in args.models:
            for extra, kind in [([], "fit")] + ([(["--validate-on", "alternate"], "validate")] if args.validate else []):
                run = run_fit(path, model, extra, folder)
                row = {"kind": kind, "file": name, "model": model, "verdict": verdict_row(path, model, run)}
                if run["result"] is not None and kind == "fit":
                    row["qc"] = qc_row(path, run["result"])
                    row["passive"], row["spikes"] = efel_rows(path, run["result"], model)
                rows.append(row)
                (folder / "rows.json").write_text(json.dumps(rows, indent=1, default=str))
                print(f"{name} {model} {kind}: {row['verdict']['status']} in {run['wall_s']:.0f} s", flush=True)
    print_tables(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
