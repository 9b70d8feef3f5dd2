"""What an emulated low precision costs: one convolution, and a training step of the tiny
config, in fp32, bf16 and fp16 on one CPU thread, on this CPU as it is and with its
kernels capped at AVX2 (a stand-in for an AVX2-only CPU: oneDNN and ATen then use no
AVX-512 code, so bf16/fp16 take the emulated path they take on such a CPU).

    python benchmarks/bench_emulated.py [--out FILE]

The fallback warnings (talkingface.inference.engine) and docs/performance.md's
"Emulated precisions" table quote this file (benchmarks/results/bench_emulated.json).
Each row is the median of several timed runs after a warm-up. A couple of minutes.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import REPO, load_average, machine_info, result_header, result_path, write_result  # noqa: E402

AVX2_CAP = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
DTYPES = ("fp32", "bf16", "fp16")
TINY = REPO / "talkingface" / "properties" / "model" / "meta_portrait_base_config" / "meta_portrait_64_tiny.yaml"


def _median_seconds(fn, repeat: int) -> float:
    fn()  # warm-up: kernel selection, memory
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def conv_seconds(dtype: str, repeat: int) -> float:
    """One 3x3 convolution, 64 -> 64 channels on a 64x64 map, batch 1, in `dtype`."""
    import torch

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1)
    x = torch.randn(1, 64, 64, 64)
    if dtype != "fp32":
        t = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
        conv, x = conv.to(t), x.to(t)

    def run():
        with torch.inference_mode():
            conv(x)
    return _median_seconds(run, repeat)


def train_step_seconds(dtype: str, repeat: int) -> float:
    """Forward and backward of the tiny config's generator (an L1 loss), with
    bf16 autocast for "bf16" (what `--fp16` means on a CPU); fp16 is not a CPU training mode."""
    import torch

    from talkingface.config import load_config
    from talkingface.inference.onnx import example_inputs  # random inputs of the config's shapes
    from talkingface.models.build import build_generator

    cfg = load_config(TINY)
    torch.manual_seed(0)
    model = build_generator(cfg).train()
    x = example_inputs(cfg, batch=2)

    def run():
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
            out = model(x)["prediction"]
        torch.nn.functional.l1_loss(out.float(), x.source).backward()  # any target: only the cost counts
    return _median_seconds(run, repeat)


def measure_here(repeat: int) -> dict[str, dict[str, float]]:
    """Every row in this process (one thread)."""
    import torch

    torch.set_num_threads(1)
    rows = {"conv_ms": {d: 1e3 * conv_seconds(d, repeat) for d in DTYPES},
            "train_step_ms": {d: 1e3 * train_step_seconds(d, max(1, repeat // 4)) for d in ("fp32", "bf16")}}
    return rows


def measure(cap: dict[str, str] | None, repeat: int) -> dict[str, object]:
    """The rows in a fresh process (environment variables cap the kernels only at start-up)."""
    env = {**os.environ, **(cap or {})}
    proc = subprocess.run([sys.executable, __file__, "--child", str(repeat)], env=env, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"measurement failed: {proc.stderr.strip()[-800:]}")
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    slowdown = {table: {d: ms / values["fp32"] for d, ms in values.items() if d != "fp32"}
                for table, values in rows.items()}
    return {"kernels_capped": cap or {}, **rows, "slower_than_fp32": slowdown}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench_emulated", description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=8, help="timed runs per convolution row (training: a quarter)")
    p.add_argument("--out", type=Path, default=None, help="result JSON (default benchmarks/results/bench_emulated.json)")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)  # internal: measure, print JSON
    args = p.parse_args(argv)
    if args.child is not None:
        print(json.dumps(measure_here(args.child)))
        return 0
    print("\n".join(machine_info().lines()))
    header = result_header()
    runs = {}
    for name, cap in (("as_is", None), ("avx2_cap", AVX2_CAP)):
        runs[name] = measure(cap, args.repeat)
        r = runs[name]
        print(f"{name}: conv fp32 {r['conv_ms']['fp32']:.1f} ms, bf16 {r['conv_ms']['bf16']:.1f} ms "
              f"({r['slower_than_fp32']['conv_ms']['bf16']:.2g}x), fp16 {r['conv_ms']['fp16']:.1f} ms "
              f"({r['slower_than_fp32']['conv_ms']['fp16']:.0f}x); tiny training step fp32 "
              f"{r['train_step_ms']['fp32']:.0f} ms, bf16 autocast {r['train_step_ms']['bf16']:.0f} ms "
              f"({r['slower_than_fp32']['train_step_ms']['bf16']:.1f}x)", flush=True)
    out = write_result(args.out or result_path(__file__), {"threads": 1, "runs": runs,
                                                           "load_average_after": load_average()}, header)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
