"""The parity figures the README quotes, as a result file: runs the parity tests
(tests/test_base_parity.py, tests/test_sr_parity.py against ../shared/parity) and keeps
every difference they print.

    python benchmarks/parity_report.py [--out FILE]

Each test prints "<what>: max abs diff X, mean Y" (or "max diff N grey levels" for the
line images); they are collected per quantity (the largest over the batch) with pytest's
pass/fail summary. Result: benchmarks/results/parity_report.json. About a minute.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import PARITY, result_header, result_path, write_result  # noqa: E402
from bench_suite import run_pytest  # noqa: E402

TESTS = ["tests/test_base_parity.py", "tests/test_sr_parity.py"]
# a printed line may follow pytest's progress dots on the same line (".full prediction: max ...")
_LINE = re.compile(r"^\.*(?P<what>[A-Za-z][\w ]*?)(?:\[\d+\])?: max (?:abs )?diff (?P<max>[0-9.e+-]+)", re.MULTILINE)


def parse_differences(output: str) -> dict[str, float]:
    """{quantity: largest max-difference printed for it} ("line image source[1]" -> "line image source")."""
    found: dict[str, float] = {}
    for m in _LINE.finditer(output):
        what = m["what"].strip()
        found[what] = max(found.get(what, 0.0), float(m["max"]))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="parity_report", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help="result JSON (default benchmarks/results/parity_report.json)")
    args = p.parse_args(argv)
    if not PARITY.is_dir():
        print(f"parity_report: {PARITY}: the parity fixtures are missing (../shared/parity beside the checkout)",
              file=sys.stderr)
        return 1
    header = result_header()
    run = run_pytest(["-s", *TESTS])
    differences = parse_differences(run.pop("output"))
    for what, value in differences.items():
        print(f"{what}: max abs diff {value:.3g}")
    out = write_result(args.out or result_path(__file__), {"parity_dir": str(PARITY), "tests": run,
                                                           "max_abs_diff": differences}, header)
    print(f"wrote {out}")
    return 0 if run["returncode"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
