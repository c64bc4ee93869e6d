"""HTML sections of the report about the cell and the verdict: a banner saying whether the fit passed, the
checks behind it, the per-sweep comparison of model and cell (fitted and held-out sweeps: the generalisation
table), sweep quality control, the measured cell and the stages of a staged fit."""

from __future__ import annotations

import html
import math
from typing import Any, Iterable, Mapping, Sequence

from .result import EstimationResult

__all__ = ["verdict_banner", "verdict_section", "cell_section", "BANNER_CSS"]

#: styles of the banner and the check table (appended to the report's stylesheet)
BANNER_CSS = """
.banner { padding: .8em 1em; border-radius: 6px; margin: 1em 0; font-weight: 600; }
.banner.failed { background: #fde2e1; border: 2px solid #c62828; color: #8e0000; }
.banner.warning { background: #fff4d6; border: 2px solid #d68a00; color: #6b4500; }
.banner.passed { background: #e3f4e4; border: 2px solid #2e7d32; color: #1b5e20; }
.banner.unchecked { background: #eceff1; border: 2px solid #78909c; color: #37474f; }
.banner ul { font-weight: normal; margin: .4em 0 0 0; }
tr.fail td { background: #fde2e1; } tr.warn td { background: #fff4d6; }
"""

_HEADLINES = {
    "failed": "FIT FAILED — the fitted model does not explain this cell. Do not use these estimates as they are.",
    "warning": "Fit passed with warnings — read the checks below before using the estimates.",
    "passed": "Fit passed every check: the fitted model behaves like the cell on every sweep checked.",
    "unchecked": "No verdict was made on this fit (it was run without checks).",
}


def _e(x: Any) -> str:
    return html.escape(str(x))


def _f(x: Any, digits: int = 4) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, float)):
        if isinstance(x, float) and not math.isfinite(x):
            return "—"
        return f"{x:.{digits}g}"
    return str(x)


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], classes: Iterable[str] | None = None) -> str:
    cls = list(classes) if classes is not None else None
    body = []
    for k, row in enumerate(rows):
        c = f' class="{cls[k]}"' if cls and cls[k] else ""
        body.append(f"<tr{c}>" + "".join(f"<td>{_e(_f(v))}</td>" for v in row) + "</tr>")
    return "<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>" + "".join(body) + "</table>"


def verdict_banner(result: EstimationResult) -> str:
    """The banner at the top of the report: the status and each failed or warned check."""
    status = result.status if result.status in _HEADLINES else "unchecked"
    bad = [c for c in result.verdict.get("checks", []) if not c.get("passed", True)]
    items = "".join(f"<li>{_e(c.get('name'))}: {_e(c.get('message'))}</li>" for c in bad)
    return (f'<div class="banner {status}">{_e(_HEADLINES[status])}' + (f"<ul>{items}</ul>" if items else "")
            + "</div>")


def verdict_section(result: EstimationResult) -> str:
    """The checks and the per-sweep comparison of the fitted model with the cell (fitted and held-out sweeps)."""
    v = result.verdict
    if not v:
        return "<h2>Verdict</h2><p>No verdict was made on this fit.</p>"
    checks = v.get("checks", [])
    parts = ["<h2>Verdict</h2>",
             _table(("check", "severity", "passed", "message"),
                    ([c.get("name"), c.get("severity"), c.get("passed"), c.get("message")] for c in checks),
                    ["" if c.get("passed") else ("fail" if c.get("severity") == "fail" else "warn") for c in checks])]
    sweeps = v.get("sweeps", [])
    if sweeps:
        parts += ["<h3>Model against cell, sweep by sweep</h3>",
                  "<p>The fitted model simulated freely on every sweep; held-out sweeps were not fitted.</p>",
                  _table(("sweep", "role", "step (pA)", "spikes cell", "spikes model", "rate cell (Hz)",
                          "rate model (Hz)", "rate error", "RMSE (mV)"),
                         ([s.get("sweep"), s.get("role"), s.get("amplitude_pA"), s.get("n_spikes_cell"),
                           s.get("n_spikes_model"), s.get("rate_cell_hz"), s.get("rate_model_hz"),
                           s.get("rate_error"), s.get("rmse_mV")] for s in sweeps))]
    gen = v.get("generalisation") or {}
    if gen:
        keys = sorted({k for d in gen.values() if isinstance(d, Mapping) for k in d})
        parts += ["<h3>Generalisation: fitted vs held-out sweeps</h3>",
                  _table(["sweeps"] + keys, ([role] + [d.get(k) for k in keys] for role, d in gen.items()
                                             if isinstance(d, Mapping)))]
    return "\n".join(parts)


def _qc_html(qc: Mapping[str, Any]) -> str:
    rows, cls = [], []
    for s in qc.get("sweeps", []):
        step = s.get("step") or {}
        rows.append([s.get("sweep"), "kept" if s.get("kept") else "excluded", step.get("amplitude_pA"),
                     s.get("baseline_mV"), s.get("response_mV"), s.get("n_spikes"),
                     "; ".join(s.get("details") or s.get("reasons") or []) or "—"])
        cls.append("" if s.get("kept") else "warn")
    return "<h2>Sweep quality control</h2>" + _table(
        ("sweep", "decision", "step (pA)", "baseline (mV)", "response (mV)", "spikes", "reasons"), rows, cls)


def cell_section(result: EstimationResult) -> str:
    """Sweep quality control, the cell's measured properties, the cell-scaled search and the fit's stages."""
    cell = result.cell
    if not cell:
        return ""
    parts = []
    if cell.get("qc"):
        parts.append(_qc_html(cell["qc"]))
    props = cell.get("properties")
    if props:
        flat = {k: v for k, v in props.items() if not isinstance(v, (list, tuple, Mapping))}
        parts += ["<h2>The cell, measured before the fit</h2>",
                  _table(("property", "value"), flat.items())]
        fi = props.get("fi") or []
        if fi:
            parts.append(_table(("step (pA)", "rate (Hz)", "spikes"),
                                (list(p.values()) if isinstance(p, Mapping) else list(p) for p in fi)))
    scaling = cell.get("scaling")
    if scaling:
        parts += ["<h2>Search scaled to the cell</h2>",
                  "<ul>" + "".join(f"<li>{_e(n)}</li>" for n in scaling.get("notes", [])) + "</ul>",
                  _table(("parameter", "start", "low", "high"),
                         ([k, scaling["init"].get(k), *scaling["bounds"][k]] for k in scaling.get("bounds", {})))]
    for note in cell.get("notes", []):
        parts.append(f'<p class="note">{_e(note)}</p>')
    stages = cell.get("stages") or []
    if stages:
        parts += ["<h2>Stages</h2>", _table(
            ("stage", "backend", "sweeps", "estimates", "RMSE (mV)", "status", "time (s)"),
            ([s.get("stage"), s.get("backend"), ", ".join(map(str, s.get("sweeps", []))),
              ", ".join(f"{k} = {_f(d.get('value'))} {d.get('unit', '')}" for k, d in s.get("free", {}).items()),
              s.get("rmse_mV"), s.get("status"), s.get("wall_time_s")] for s in stages))]
    return "\n".join(parts)
