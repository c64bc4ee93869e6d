#!/usr/bin/env python
"""The bad-input corpus: run every case and print the table of counts by observed outcome.

Each case of :data:`neo_pinn.testing.bad_inputs.CASES` writes its inputs into a temporary folder of its own and
runs one ``neo-pinn`` command line (in this process, or in a memory-limited subprocess for the cases that could
block or exhaust memory) or Python call; the runner classifies what happened as a clear error, a flagged fit, a
correct answer — or one of the four outcomes that must never happen: traceback, hang, data loss, silent-wrong.
The table counts the observed outcomes; below it every case that did not pass (observed outcome, exit status or
message not as expected) is listed with what happened.

Usage::

    python benchmarks/bench_bad_inputs.py                 # all cases
    python benchmarks/bench_bad_inputs.py -k window -v    # the cases whose id contains "window", with details
    python benchmarks/bench_bad_inputs.py --group outputs
    neo-pinn bench bad_inputs --slowest 10

Exit status 1 when any case did not pass.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main(argv: list[str] | None = None) -> int:
    """Run the corpus (or a part of it) and print the outcome table; returns the exit status."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-k", "--filter", default="", help="run only the cases whose id contains this text")
    p.add_argument("--group", default=None, help="run only this group (outputs, paths, numbers, names, api, ...)")
    p.add_argument("-v", "--verbose", action="store_true", help="print each case as it finishes")
    p.add_argument("--slowest", type=int, default=5, help="list the N slowest cases (default 5)")
    args = p.parse_args(argv)

    from neo_pinn.testing.bad_inputs import BAD_OUTCOMES, CASES, outcome_table, run_case

    cases = [c for c in CASES if args.filter in c.id and (args.group is None or c.group == args.group)]
    if not cases:
        print("no case matches", file=sys.stderr)
        return 2
    observations = []
    start = time.perf_counter()
    warnings.simplefilter("ignore")  # the cases' own warnings would drown the table
    with tempfile.TemporaryDirectory(prefix="neo_pinn_bad_inputs_") as tmp:
        for k, case in enumerate(cases):
            obs = run_case(case, Path(tmp) / f"case{k:03d}")
            observations.append(obs)
            if args.verbose or obs.outcome in BAD_OUTCOMES:
                mark = "ok  " if obs.passed else "FAIL"
                print(f"{mark} {obs.seconds:6.2f} s  {case.id:<48} {obs.outcome:<13} {obs.detail[:110]}", flush=True)
    wall = time.perf_counter() - start
    print(f"\n{len(cases)} cases in {wall:.0f} s\n")
    print(outcome_table(observations))
    if args.slowest:
        print(f"\nslowest {args.slowest}:")
        for o in sorted(observations, key=lambda o: -o.seconds)[: args.slowest]:
            print(f"  {o.seconds:6.2f} s  {o.case_id}")
    return 0 if all(o.passed for o in observations) else 1


if __name__ == "__main__":
    sys.exit(main())
