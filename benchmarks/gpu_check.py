"""One command that runs every CUDA path of talkingface once and prints one table (also
written as JSON), a row per check. A check that fails is reported in its row with a
one-line reason (exception type and message) and the next one runs. At most 8 minutes
on one GPU: no row starts after --budget seconds (default 420).

    python benchmarks/gpu_check.py                       # CUDA when present: the official 256 model
    python benchmarks/gpu_check.py --device cpu --quick  # the same rows on the tiny config (CI; < 1 min)

Rows (docs/performance.md, "GPU check", says what each one measures):
  parity fp32, device vs CPU   the official architecture, parity weights (../shared/parity)
  seed infer fp32|bf16|fp16|auto  the seed inference command, whole; PSNR against fp32
  generator V bB               frames/s and peak memory of the inference engine, variant V
                               (fp32, bf16, fp16, channels_last, CUDA graphs, torch.compile), batch B
  SR fp32|bf16|fp16            temporal super-resolution at 512, 8-frame clips
  train warp|full --fp16       training steps/s (fp16 autocast + GradScaler on CUDA)
  reptile outer step           one meta-training outer step
  DDP init                     a one-process NCCL (gloo on CPU) process group with DDP
  animate demo                 `talkingface demo` on the device
  ONNX Runtime                 the exported generator on ORT's CUDA provider (CPU provider on CPU)

Exit status: 0 when no row failed, 1 otherwise (skipped rows do not count).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

BENCHMARKS = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[Any], Any]  # Context -> Result


@dataclass
class Row:
    name: str
    status: str  # ok | failed | skipped
    seconds: float
    reason: str = ""  # why it failed or was skipped, one line
    result: Any = None  # gpu_check_setup.Result
    traceback: str = field(default="", repr=False)


def plan(batches: Sequence[int]) -> list[Check]:
    """Every row, in the order they run: torch.compile last (it takes what budget is left,
    the middle batch size first)."""
    from gpu_check_infer import (COMPILED, EAGER_VARIANTS, animate_demo, generator, onnx_runtime, parity,
                                 seed_infer, super_resolution)
    from gpu_check_train import ddp, reptile, training

    checks = [Check("parity fp32, device vs CPU", parity)]
    checks += [Check(f"seed infer {p}", partial(seed_infer, precision=p)) for p in ("fp32", "bf16", "fp16", "auto")]
    checks += [Check(f"generator {v.label} b{b}", partial(generator, variant=v, batch=b))
               for v in EAGER_VARIANTS for b in batches]
    checks += [Check(f"SR {p}", partial(super_resolution, precision=p)) for p in ("fp32", "bf16", "fp16")]
    checks += [Check(f"train {stage} --fp16", partial(training, stage=stage)) for stage in ("warp", "full")]
    checks += [Check("reptile outer step", reptile), Check("DDP init", ddp), Check("animate demo", animate_demo),
               Check("ONNX Runtime", onnx_runtime)]
    middle = batches[len(batches) // 2]
    checks += [Check(f"generator {COMPILED.label} b{b}", partial(generator, variant=COMPILED, batch=b))
               for b in sorted(batches, key=lambda b: (b != middle, b))]
    return checks


def one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


@contextlib.contextmanager
def captured_output(path: Path) -> Iterator[None]:
    """Everything written to stdout and stderr inside the block, by Python and by C
    libraries alike (file descriptors 1 and 2), goes to `path`."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(path, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                sink.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])


def run_check(ctx, check: Check, log: Path) -> Row:
    """Run one row, its output in `log` (on the terminal with --verbose); never raises an Exception."""
    from gpu_check_setup import Skipped

    opts = ctx.opts
    start = time.perf_counter()
    try:
        if opts.only and not any(part in check.name for part in opts.only):
            raise Skipped("not selected (--only)")
        if ctx.remaining() <= 0:
            raise Skipped(f"the time budget ({opts.budget_s:.0f} s) was spent before this row")
        with contextlib.nullcontext() if opts.verbose else captured_output(log):
            result = check.run(ctx)
        reason = result.note if result.status == "failed" else ""
        row = Row(check.name, result.status, 0.0, reason, result)
    except Skipped as e:
        row = Row(check.name, "skipped", 0.0, str(e))
    except Exception as e:  # any failure is this row's, reported in it; the next row runs
        ctx.drop_engine()
        output = log.read_text(errors="replace").strip().splitlines()[-20:] if log.is_file() else []
        row = Row(check.name, "failed", 0.0, one_line(e), traceback="\n".join([traceback.format_exc(), *output]))
    ctx.release()
    row.seconds = time.perf_counter() - start
    return row


# --------------------------------------------------------------------------- machine
def machine(device) -> dict[str, Any]:
    import torch

    from bench_common import machine_info, simd_flags

    info = machine_info(device)
    out: dict[str, Any] = {"cpu": info.cpu, "cores": info.cores, "torch_threads": info.threads,
                           "cpu_flags": list(simd_flags()), "torch": torch.__version__,
                           "python": platform.python_version(), "device": str(device),
                           "native_low_precisions": list(info.native_low_precisions)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        out.update(gpu=props.name, compute_capability=f"{props.major}.{props.minor}",
                   gpu_memory_gib=round(props.total_memory / 2 ** 30, 1), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version())
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        out["onnxruntime"] = importlib.metadata.version("onnxruntime")
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        out["onnxruntime"] = importlib.metadata.version("onnxruntime-gpu")
    return out


def machine_lines(m: dict[str, Any]) -> list[str]:
    lines = []
    if "gpu" in m:
        lines.append(f"GPU: {m['gpu']} (compute capability {m['compute_capability']}, {m['gpu_memory_gib']} GiB), "
                     f"CUDA {m['cuda']}, cuDNN {m['cudnn']}")
    else:
        lines.append(f"GPU: none (device {m['device']})")
    lines.append(f"CPU: {m['cpu']}, {m['cores']} cores, torch threads {m['torch_threads']}")
    lines.append(f"CPU flags: {' '.join(m['cpu_flags']) or 'no avx2/avx512/amx'}")
    lines.append(f"torch {m['torch']}, Python {m['python']}, onnxruntime {m.get('onnxruntime', 'not installed')}; "
                 f"native low precisions on {m['device']}: {', '.join(m['native_low_precisions']) or 'none'}")
    return lines


# --------------------------------------------------------------------------- table and JSON
def _number(value: float | None, spec: str) -> str:
    if value is None:
        return ""
    return "inf" if math.isinf(value) else format(value, spec)


def format_table(rows: list[Row]) -> str:
    out = ["| check | status | precision | rate | peak MiB | PSNR dB | max abs diff | time s | notes |",
           "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        r = row.result
        cells = [row.name, row.status]
        if r is None:
            cells += ["", "", "", "", ""]
        else:
            rate = "" if r.rate is None else f"{_number(r.rate, '.4g')} {r.unit}"
            cells += [r.precision, rate, _number(r.peak_mib, ".0f"), _number(r.psnr_db, ".1f"),
                      _number(r.max_abs_diff, ".2e")]
        cells += [f"{row.seconds:.1f}", row.reason or (r.note if r is not None else "")]
        out.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(out)


def _json_safe(value: Any) -> Any:
    """Non-finite floats as strings ("inf"), so the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_json(path: Path, ctx, machine_info: dict[str, Any], rows: list[Row], finished: bool) -> None:
    from bench_common import result_header, write_result

    header = result_header(ctx.device)
    header["machine"] = {**header["machine"], **machine_info}  # adds compute capability, CUDA, cuDNN, onnxruntime
    opts = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(ctx.opts).items()}
    payload = {"finished": finished, "total_seconds": ctx.elapsed(), "options": opts,
               "rows": [{"name": r.name, "status": r.status, "seconds": r.seconds, "reason": r.reason,
                         **(asdict(r.result) if r.result is not None else {}), "traceback": r.traceback}
                        for r in rows]}
    write_result(path, _json_safe(payload), header)


# --------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gpu_check", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="cuda[:N], cpu, or auto (cuda where present)")
    p.add_argument("--quick", action="store_true", help="the tiny configs, small sizes, few iterations (CI)")
    p.add_argument("--out", type=Path, default=None,
                   help="the JSON (default benchmarks/results/gpu_check.json on CUDA, gpu_check_cpu[_quick].json "
                        "on CPU)")
    p.add_argument("--parity-dir", type=Path, default=None, help="the parity fixtures (default ../shared/parity)")
    p.add_argument("--budget", type=float, default=420.0, help="seconds after which no row starts")
    p.add_argument("--force", action="store_true", help="also time precisions this device only emulates")
    p.add_argument("--only", action="append", default=[], help="run only the rows whose name contains this "
                                                                 "(repeatable); the others are listed as skipped")
    p.add_argument("--verbose", action="store_true", help="show each row's own output")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for path in (BENCHMARKS.parent, BENCHMARKS):  # this tree, not whichever talkingface is installed
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    from gpu_check_setup import PARITY, CheckOptions, Context, default_out
    from talkingface.errors import TalkingFaceError

    opts = CheckOptions(device=args.device, quick=args.quick, out=args.out, parity_dir=args.parity_dir or PARITY,
                        budget_s=args.budget, force=args.force, only=tuple(args.only), verbose=args.verbose)
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as work:
        try:
            ctx = Context(opts, Path(work))
        except TalkingFaceError as e:  # e.g. --device cuda on a machine without one
            print(f"gpu_check: {e}", file=sys.stderr)
            return 2
        out = opts.out or default_out(opts, ctx.device)
        info = machine(ctx.device)
        print("\n".join(machine_lines(info)))
        mode = "quick: tiny configs" if opts.quick else "official 256 architecture"
        if ctx.device.type == "cpu" and not opts.quick:
            mode += "; on a CPU the full-size rows outrun the budget: --quick runs them all in under a minute"
        print(f"gpu_check on {ctx.device} ({mode}), budget {opts.budget_s:.0f} s; JSON: {out}", flush=True)
        checks = plan(ctx.sizes.batches)
        rows: list[Row] = []
        for i, check in enumerate(checks, 1):
            row = run_check(ctx, check, Path(work) / f"row{i:02d}.log")
            rows.append(row)
            print(f"[{i}/{len(checks)}] {row.name}: {row.status} ({row.seconds:.1f} s)"
                  + (f" - {row.reason}" if row.reason else ""), flush=True)
            write_json(out, ctx, info, rows, finished=False)  # a run cut short keeps what it measured
        write_json(out, ctx, info, rows, finished=True)
    print(f"\n{format_table(rows)}\n\n{len(rows)} rows in {ctx.elapsed():.0f} s; written to {out}")
    return 1 if any(r.status == "failed" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
