"""How long the test suite takes on this machine: the fast subset (`-m "not slow"`) and,
with --full, the whole suite, each run once in a fresh pytest process from the checkout.

    python benchmarks/bench_suite.py [--full] [--out FILE]

Records pytest's own summary (passed / skipped / failed counts and its duration) and the
process's wall time, with the machine. The README's test-time figures come from this
file (benchmarks/results/bench_suite.json). Run it on a quiet machine: the suite is
CPU-bound and torch's threads slow down sharply when anything else runs.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import REPO, load_average, machine_info, result_header, result_path, write_result  # noqa: E402

# pytest -q ends with e.g. "809 passed, 26 skipped, 3 deselected in 421.23s (0:07:01)"
_SUMMARY = re.compile(r"^(?:=+ )?(?P<counts>\d+ \w+(?:, \d+ \w+)*) in (?P<seconds>[0-9.]+)s", re.MULTILINE)

SUITES = {"fast": ["-m", "not slow"], "full": []}  # name -> extra pytest arguments


def parse_summary(output: str) -> dict[str, object]:
    """pytest's last summary line as {"passed": n, "skipped": n, ..., "pytest_seconds": s}."""
    found = list(_SUMMARY.finditer(output))
    if not found:
        raise ValueError("no pytest summary line in the output")
    last = found[-1]
    counts: dict[str, object] = {}
    for part in last["counts"].split(", "):
        n, what = part.split(" ", 1)
        counts[what] = int(n)
    counts["pytest_seconds"] = float(last["seconds"])
    return counts


def run_pytest(args: list[str]) -> dict[str, object]:
    """`python -m pytest -q ARGS` in the checkout, in a fresh process: its summary counts,
    pytest's and the process's seconds, the exit status and ("output") what it printed."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False, env=dict(os.environ))
    wall = time.perf_counter() - start
    return {"pytest_args": cmd[3:], "returncode": proc.returncode, "wall_seconds": wall,
            **parse_summary(proc.stdout), "output": proc.stdout}


def run_suite(name: str) -> dict[str, object]:
    result = run_pytest(SUITES[name])
    del result["output"]
    print(f"{name}: {result}", flush=True)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench_suite", description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="also time the whole suite (minutes)")
    p.add_argument("--out", type=Path, default=None, help="result JSON (default benchmarks/results/bench_suite.json)")
    args = p.parse_args(argv)
    print("\n".join(machine_info().lines()))
    header = result_header()
    suites = {name: run_suite(name) for name in (["fast", "full"] if args.full else ["fast"])}
    out = write_result(args.out or result_path(__file__), {"suites": suites, "load_average_after": load_average()},
                       header)
    print(f"wrote {out}")
    return 0 if all(s["returncode"] == 0 for s in suites.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
