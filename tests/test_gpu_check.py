"""benchmarks/gpu_check.py cannot rot: its CPU quick mode runs every row on the tiny config.

What must work on any CPU reports ok; the rest (low precisions this CPU may only emulate,
CUDA graphs, torch.compile, the ONNX export) may be skipped, but every row is listed,
in the table and in the JSON.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import REPO

pytestmark = pytest.mark.slow  # full-size or subprocess-heavy: left out of the fast subset (-m "not slow")

ROWS = ["parity fp32, device vs CPU", "seed infer fp32", "seed infer bf16", "seed infer fp16", "seed infer auto",
        *(f"generator {v} b{b}" for v in ("fp32", "bf16", "fp16", "channels_last", "CUDA graphs") for b in (1, 2)),
        "SR fp32", "SR bf16", "SR fp16", "train warp --fp16", "train full --fp16", "reptile outer step", "DDP init",
        "animate demo", "ONNX Runtime", "generator torch.compile b2", "generator torch.compile b1"]
MUST_WORK = ["parity fp32, device vs CPU", "seed infer fp32", "generator fp32 b1", "generator fp32 b2",
             "train warp --fp16", "train full --fp16", "reptile outer step", "DDP init", "animate demo"]


def test_quick_cpu_run_lists_every_row_and_the_cpu_paths_work(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--quick",
                           "--out", str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    report = json.loads(out.read_text())
    rows = {r["name"]: r for r in report["rows"]}
    assert list(rows) == ROWS, proc.stdout[-3000:]
    failed = {name: r["reason"] for name, r in rows.items() if r["status"] == "failed"}
    assert proc.returncode == (1 if failed else 0), proc.stderr[-3000:]
    for name in MUST_WORK:
        assert rows[name]["status"] == "ok", (name, rows[name]["reason"], rows[name]["traceback"][-2000:])
    assert all(r["status"] in ("ok", "skipped", "failed") for r in rows.values())
    assert all(r["reason"] and "\n" not in r["reason"] for r in rows.values() if r["status"] != "ok")
    assert not failed, failed  # nothing in the quick run may fail on a CPU either
    # figures where they belong
    assert rows["generator fp32 b2"]["rate"] > 0 and rows["generator fp32 b2"]["unit"] == "frames/s"
    assert rows["parity fp32, device vs CPU"]["max_abs_diff"] <= 1e-3
    assert rows["seed infer fp32"]["rate"] > 0 and rows["animate demo"]["rate"] > 0
    assert rows["DDP init"]["extra"]["backend"] == "gloo"
    assert rows["generator CUDA graphs b1"]["status"] == "skipped"
    # the machine at the top, the table at the end
    machine = report["machine"]
    assert machine["device"] == "cpu" and machine["torch"] and "cpu_flags" in machine
    head = proc.stdout.splitlines()[:5]
    assert any(line.startswith("CPU: ") for line in head) and any(line.startswith("CPU flags: ") for line in head)
    assert "| check | status |" in proc.stdout and all(f"| {name} |" in proc.stdout for name in ROWS)
    assert report["finished"] is True
