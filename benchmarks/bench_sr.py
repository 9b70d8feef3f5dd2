"""Temporal super-resolution speed at 512: the reference path against the optimised one,
side by side in one process.

    python benchmarks/bench_sr.py [--frames 4] [--precision auto] [--ablation]

- reference: the network as loaded, fp32, the whole clip in one pass (the official test
  script's 16-frame chunks are one pass each).
- optimised: `prepare_sr` (bf16 convolutions where the CPU has native bf16, float32
  elsewhere; optionally channels_last).

Weights: the parity weights (../shared/parity/sr_manifest.json) when present, else
random init. Input: the parity fixture's 4-frame 256x256 clip, cycled to --frames.

Writes benchmarks/results/bench_sr[_<variant>].json (the variant from --ablation and a non-CPU
device; `--out` names another file).
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]
# Measure the tree this script lives in, not whichever talkingface is installed.
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402 - after the path set-up
import torch  # noqa: E402

from bench_common import PARITY, PathResult, PeakMemory, format_table, load_average, machine_info, timed  # noqa: E402
from talkingface.inference.engine import choose_precision, psnr_uint8  # noqa: E402
from talkingface.inference.sr import prepare_sr, sr_psnr_check  # noqa: E402
from talkingface.utils.images import to_uint8_round  # noqa: E402


@dataclass
class SRBenchOptions:
    frames: int = 4
    precision: str = "auto"
    channels_last: bool = False
    ablation: bool = False
    weights: str = "auto"  # auto (parity if present), parity, random
    parity_dir: Path = PARITY
    device: str = "cpu"
    repeat: int = 1  # timed passes per row, the fastest kept


class SRFactory:
    def __init__(self, opts: SRBenchOptions):
        from talkingface.models.temporal_sr import TemporalSRConfig, TemporalSRNet

        manifest_path = opts.parity_dir / "sr_manifest.json"
        use_parity = opts.weights == "parity" or (opts.weights == "auto" and manifest_path.is_file())
        if use_parity:
            spec = importlib.util.spec_from_file_location("_parity_weights", opts.parity_dir / "weights.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            manifest = json.loads(manifest_path.read_text())
            self.config = TemporalSRConfig.from_dict(manifest["config"], source=str(manifest_path))
            self.state = module.fill_state_dict(manifest["network_g"])
            self.weights = f"parity weights ({opts.parity_dir})"
        else:
            self.config = TemporalSRConfig()
            torch.manual_seed(0)
            self.state = TemporalSRNet(self.config).state_dict()
            self.weights = "random init (seed 0)"

    def __call__(self) -> torch.nn.Module:
        from talkingface.models.temporal_sr import TemporalSRNet

        with torch.device("meta"):
            model = TemporalSRNet(self.config)
        model.load_state_dict(self.state, assign=True)  # shares the tensors: nothing below writes to them
        return model.eval()


def input_clip(opts: SRBenchOptions, size: int) -> torch.Tensor:
    """1 x N x 3 x size x size in 0..1: the parity fixture's frames, else smooth noise."""
    fixture = opts.parity_dir / "sr_fixture_a.npz"
    if fixture.is_file():
        with np.load(fixture) as f:
            frames = torch.from_numpy(f["lq"])
    else:
        g = torch.Generator().manual_seed(0)
        frames = torch.nn.functional.interpolate(torch.rand(4, 3, size // 8, size // 8, generator=g), size=size,
                                                 mode="bilinear", align_corners=False)
    index = [i % frames.shape[0] for i in range(opts.frames)]
    return frames[index][None]


@dataclass(frozen=True)
class SRStep:
    name: str
    precision: str = "fp32"
    channels_last: bool = False
    keep_freed_memory: bool = True
    prepared: bool = True


def run_step(step: SRStep, factory: SRFactory, clip: torch.Tensor, device: torch.device, repeat: int = 1
             ) -> tuple[PathResult, np.ndarray]:
    """One row: an untimed warm-up frame, then the fastest of `repeat` timed passes over the clip."""
    memory = PeakMemory(device)
    gc.collect()
    memory.reset()
    model = factory().to(device)
    if step.prepared:
        model = prepare_sr(model, device, step.precision, step.channels_last, step.keep_freed_memory)
    x = clip.to(device)
    if step.channels_last:
        x = x.contiguous()  # 5-D clip: the network reshapes it; its convs see channels_last weights
    with torch.inference_mode():
        small = x[:, :1]
        timed(lambda: model(small), device)  # warm-up: oneDNN kernel creation
        seconds = float("inf")
        for _ in range(max(1, repeat)):
            out, took = timed(lambda: model(x), device)
            seconds = min(seconds, took)
    result = PathResult(step.name, x.shape[1], seconds, memory.peak_mib(), memory.start_mib)
    pixels = to_uint8_round(out)
    return result, pixels


def run(opts: SRBenchOptions) -> list[PathResult]:
    device = torch.device(opts.device)
    info = machine_info(device)
    print("\n".join(info.lines()))
    print(f"load average at start: {load_average()}")
    factory = SRFactory(opts)
    clip = input_clip(opts, factory.config.out_size // 2)
    precision = opts.precision
    if precision == "auto":  # measured on these weights and this clip (only where a low precision is native)
        precision = choose_precision(device, sr_psnr_check(factory().eval().to(device), clip.to(device))).precision
    print(f"model: temporal SR, official configuration, {factory.weights}; one clip of {opts.frames} frames, "
          f"{clip.shape[-1]} -> {factory.config.out_size}")
    steps = [SRStep("reference: fp32, as loaded", prepared=False)]
    if opts.ablation:  # cumulative; the allocator setting is process-wide from its step on
        steps += [SRStep("+ channels_last", channels_last=True, keep_freed_memory=False),
                  SRStep("+ freed memory kept for reuse (glibc)", channels_last=True)]
        if precision != "fp32":
            steps += [SRStep(f"+ {precision} convolutions, fp32 elsewhere", precision=precision, channels_last=True),
                      SRStep(f"{precision} convolutions, NCHW", precision=precision)]
    else:
        steps.append(SRStep(f"optimised: {precision}" + (", channels_last" if opts.channels_last else ""),
                            precision=precision, channels_last=opts.channels_last))
    rows, reference = [], None
    for step in steps:
        row, pixels = run_step(step, factory, clip, device, opts.repeat)
        reference = pixels if reference is None else reference
        row.psnr_db = psnr_uint8(pixels, reference)
        row.max_diff = int(np.abs(pixels.astype(np.int16) - reference.astype(np.int16)).max())
        rows.append(row)
        print(f"  {row.name}: {row.fps:.3f} frames/s, PSNR {row.psnr_db:.1f} dB", flush=True)
    print(f"load average at end: {load_average()}\n")
    print(format_table(rows, rows[0]))
    return rows


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_sr", description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=4, help="frames in the clip (the fixture's 4, cycled)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--ablation", action="store_true", help="fp32/bf16 x NCHW/channels_last rows")
    p.add_argument("--repeat", type=int, default=1, help="timed passes per row; the fastest is kept")
    p.add_argument("--weights", default="auto", choices=["auto", "parity", "random"])
    p.add_argument("--parity-dir", type=Path, default=PARITY)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=None, help="JSON result file (default benchmarks/results/"
                   "bench_sr[_<variant>].json)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from dataclasses import asdict

    from bench_common import path_rows, result_header, result_path, variant_name, write_result

    args = build_parser().parse_args(argv)
    opts = SRBenchOptions(frames=args.frames, precision=args.precision, channels_last=args.channels_last,
                          ablation=args.ablation, weights=args.weights, parity_dir=args.parity_dir,
                          device=args.device, repeat=args.repeat)
    header = result_header(args.device)
    rows = run(opts)
    out = write_result(args.out or result_path(__file__, variant_name({"ablation": args.ablation}, args.device)),
                       {"options": asdict(opts), "rows": path_rows(rows), "load_average_after": load_average()},
                       header)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
