"""The bad-input corpus (issue 16): every case ends in its expected clear error, flag or correct answer — never a
traceback, a hang, lost data or a confident wrong answer.

The cases live in :mod:`neo_pinn.testing.bad_inputs`; each writes its own inputs into ``tmp_path`` and the runner
checks every file's sha256 before and after. ``python benchmarks/bench_bad_inputs.py`` prints the table of counts
by outcome.
"""

from __future__ import annotations

import time
import warnings

import pytest

from neo_pinn.errors import ConfigurationError
from neo_pinn.testing.bad_inputs import BAD_OUTCOMES, CASES, Case, outcome_table, run_case


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the cases' own warnings are part of what they print, not test noise
        obs = run_case(case, tmp_path / "case")
    assert obs.outcome not in BAD_OUTCOMES, f"{case.id}: {obs.outcome}: {obs.detail}"
    assert obs.passed, f"{case.id}: {obs.mismatch}"


def test_corpus_covers_the_issue():
    ids = {c.id for c in CASES}
    assert len(CASES) >= 150 and len(ids) == len(CASES)
    named_in_issue = {
        "fit_json_names_input", "fit_report_names_input", "fit_out_names_input", "fit_json_exists",
        "fit_report_exists", "fit_out_exists", "report_out_names_input", "fit_existing_out_checked_before_fit",
        "fit_json_readonly_folder", "demo_out_is_file", "fit_volts_labelled_mV", "fit_flat_trace",
        "fit_window_past_3_samples", "fit_estimate_on_bound", "fit_set_negative_capacitance", "fit_set_free_parameter",
        "fit_sweep_repeated", "fit_step_without_start_stop", "fit_step_after_sweep_end", "info_inf_sample_is_no_spike",
        "api_sweeps_true", "fit_nan_outside_window", "fit_nan_inside_window", "simulate_rate_0_0",
        "simulate_rate_2_nan", "simulate_huge_duration_inf", "simulate_seed_0_-1", "fit_device_0_tpu",
        "fit_device_1_mps", "report_on_garbage", "report_on_truncated", "report_on_not_a_result", "report_on_folder",
        "fit_malformed_sidecar_ignored", "api_window_scalar", "api_sweeps_float", "api_bounds_infinite",
        "simulate_huge_duration_1e8", "simulate_huge_rate_1e9", "info_fifo"}
    assert named_in_issue <= ids, sorted(named_in_issue - ids)
    assert {c.group for c in CASES} >= {"outputs", "silently wrong", "paths", "numbers", "names", "api", "hangs"}
    for c in CASES:  # 2 is for argparse usage errors only, everything else that is bad input exits with 4
        assert c.exit_code in (None, 2, 4), c.id


# ---------------------------------------------------------------------------------------- the runner can fail
def _fail_with(exc):
    def action(folder):
        raise exc
    return action


def _touch_input(folder):
    (folder / "in.txt").write_text("changed")


def _leave_part(folder):
    (folder / ".out.json.part").write_text("half")
    raise ConfigurationError("gave up")


@pytest.mark.parametrize("action, expect, outcome", [
    (_fail_with(ConfigurationError("Bad value; give a number.")), "error", "error"),
    (_fail_with(ValueError("could not convert")), "error", "traceback"),
    (lambda folder: time.sleep(5), "error", "hang"),
    (_touch_input, "ok", "data loss"),
    (_leave_part, "error", "data loss"),
    (lambda folder: None, "error", "silent-wrong"),
    (lambda folder: 42, "ok", "silent-wrong"),  # an answer the case's check rejects
    (lambda folder: 41, "ok", "ok"),
], ids=["typed-error", "traceback", "hang", "input-changed", "part-left", "no-error", "wrong-answer", "right-answer"])
def test_runner_classifies_each_outcome(action, expect, outcome, tmp_path):
    check = (lambda d, obs: None if obs.value == 41 else f"got {obs.value}") if expect == "ok" else None
    case = Case("probe", "runner", action, expect, build=lambda d: (d / "in.txt").write_text("input"), check=check,
                timeout_s=0.5)
    obs = run_case(case, tmp_path)
    assert obs.outcome == outcome, obs.detail
    assert obs.passed == (outcome == expect)
    assert (tmp_path / "in.txt").exists()


def test_runner_judges_a_command_line_error_by_exit_status_and_message(tmp_path):
    cases = [Case("usage", "runner", ("info",), "error", exit_code=2),       # argparse: file missing
             Case("usage-as-4", "runner", ("info",), "error"),               # the same, expected as bad input
             Case("named", "runner", ("info", "nope.nwb"), "error", match="nope"),
             Case("unnamed", "runner", ("info", "nope.nwb"), "error", match="elsewhere")]
    obs = [run_case(c, tmp_path / c.id) for c in cases]
    assert [o.outcome for o in obs] == ["error"] * 4
    assert [o.passed for o in obs] == [True, False, True, False]
    table = outcome_table(obs)
    assert "error" in table and "usage-as-4" in table and "unnamed" in table and "2 of 4 cases passed" in table
