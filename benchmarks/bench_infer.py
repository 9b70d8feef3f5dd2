"""Base-model inference speed: the reference's straightforward path against the optimised
one, side by side in one process, on the official 256 architecture.

    python benchmarks/bench_infer.py [--frames 8] [--batch-size 4] [--precision auto]
                                     [--ablation] [--compile] [--command] [--onnx]

- reference implementation's forward: fp32, one frame at a time, the source
  re-encoded for every frame, spectral norm applied at run time (eval mode, stored u
  and v), plus the warp-stage perceptual loss that the reference's inference computes
  and throws away (its GeneratorFullModel runs forward_warp with cal_loss left on:
  an anti-aliased 4-scale pyramid and VGG19 up to relu5_1 on the deformed source and
  the driving frame, about 136 GFLOP a frame). This is what its inference.py runs.
- reference path, generator only: the same without that loss (the issue's
  "straightforward path"); both ratios are printed.
- optimised: `InferenceEngine` (source encoded once per video, spectral norm folded,
  fused layers, batching, channels_last, freed memory kept, bf16 convolutions where the
  CPU has native bf16), and the exact fp32 variant of it.

Weights: the parity weights (../shared/parity, the official checkpoint's layout filled
deterministically) when present, else random init. Inputs: the bundled sample dataset
(8 frames, cycled for more). Each path prints frames/s, peak memory, the speed-up over
the reference and the PSNR of its uint8 frames against the reference's.

--ablation adds one row per optimisation, applied cumulatively. --command also times
the whole seed command (`run_talkingface.py --model=metaportraitbaseinference`) in a
subprocess, start to finish, against the reference's model forward alone. --onnx adds
a row for the ONNX export run in ONNX Runtime (fp32, batch --batch-size).

Writes benchmarks/results/bench_infer[_<variant>].json (the variant from --ablation, --compile,
--command, --onnx and a non-CPU device; `--out` names another file).
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]
# Measure the tree this script lives in, not whichever talkingface is installed.
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402 - after the path set-up
import torch  # noqa: E402

from bench_common import PARITY, PathResult, PeakMemory, format_table, load_average, machine_info, timed  # noqa: E402
from talkingface.inference.engine import (InferenceEngine, SourceCache, choose_precision,  # noqa: E402
                                          generator_psnr_check, psnr_uint8)
CONFIG = REPO / "talkingface" / "properties" / "model" / "meta_portrait_base_config" / "meta_portrait_256_eval.yaml"


@dataclass
class BenchOptions:
    frames: int = 8
    batch_size: int = 4
    precision: str = "auto"  # auto: choose_precision for the device
    channels_last: bool = True
    compile: bool = False
    ablation: bool = False
    command: bool = False
    onnx: bool = False  # also an ONNX Runtime row (talkingface.inference.onnx)
    roofline: bool = False  # also the fp32 engine against the measured convolution peak (roofline.py)
    weights: str = "auto"  # auto (parity if present), parity, random
    repeat: int = 1  # timed passes per path; the fastest counts (a shared machine is noisy)
    parity_dir: Path = PARITY
    config: Path = CONFIG
    device: str = "cpu"


# --------------------------------------------------------------------------- model and inputs
def parity_state_dict(parity_dir: Path) -> dict[str, torch.Tensor]:
    """The parity weights in the official checkpoint's key layout."""
    spec = importlib.util.spec_from_file_location("_parity_weights", parity_dir / "weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    manifest = json.loads((parity_dir / "base_manifest.json").read_text())
    return module.fill_state_dict(manifest["generator"])


class ModelFactory:
    """Fresh generators (spectral norm attached, as a checkpoint loads) with fixed weights."""

    def __init__(self, opts: BenchOptions):
        from talkingface.checkpoints.official import to_official
        from talkingface.config import load_config
        from talkingface.models.build import build_generator

        self.cfg = load_config(opts.config)
        self.blocks = self.cfg.model.generator.spade_num_blocks
        use_parity = opts.weights == "parity" or (opts.weights == "auto" and (opts.parity_dir / "weights.py").is_file())
        if use_parity:
            self.official_sd = parity_state_dict(opts.parity_dir)
            self.weights = f"parity weights ({opts.parity_dir})"
        else:
            torch.manual_seed(0)
            self.official_sd = to_official(build_generator(self.cfg).state_dict(), self.blocks)
            self.weights = "random init (seed 0)"

    def __call__(self) -> torch.nn.Module:
        from talkingface.checkpoints.official import load_official_state
        from talkingface.models.build import build_generator

        model = build_generator(self.cfg)
        load_official_state(model, self.official_sd, self.blocks, "bench", "generator")
        return model.eval()


def sample_batches(cfg, frames: int, batch_size: int, device: torch.device):
    """`frames` driving frames of the bundled sample (cycled), as GeneratorInputs batches."""
    from talkingface.data.sample import install_sample_data
    from talkingface.data.official import open_dataset
    from talkingface.models.generator import batch_inputs

    with tempfile.TemporaryDirectory() as tmp:
        root, _ = install_sample_data(Path(tmp) / "data")
        dataset = open_dataset(cfg, root)
        items = [dataset[i % len(dataset)] for i in range(frames)]
    batches = []
    for start in range(0, frames, batch_size):
        batch = torch.utils.data.default_collate(items[start:start + batch_size])
        batches.append(batch_inputs(batch, device))
    return batches


def _concat(batches, field: str) -> torch.Tensor:
    return torch.cat([getattr(b, field) for b in batches])


def rebatch(batches, size: int):
    from talkingface.models.generator import GeneratorInputs

    fields = list(vars(batches[0]))
    whole = {f: _concat(batches, f) for f in fields}
    count = whole["source"].shape[0]
    return [GeneratorInputs(**{f: t[i:i + size] for f, t in whole.items()}) for i in range(0, count, size)]


# --------------------------------------------------------------------------- paths
@dataclass(frozen=True)
class Step:
    name: str
    source_once: bool = True
    engine: bool = True  # InferenceEngine (spectral norm folded); else the raw model
    fuse: bool = False
    batch: int = 1
    channels_last: bool = False
    keep_freed_memory: bool = False
    precision: str = "fp32"
    autocast: bool = False  # torch.autocast around an fp32 engine (for the ablation only)
    compile: bool = False
    # Also compute the warp perceptual loss the reference's inference computes (raw model only).
    warp_loss: bool = False


def run_step(step: Step, factory: ModelFactory, batches, device: torch.device,
             repeat: int = 1) -> tuple[PathResult, torch.Tensor]:
    """Time one path over all frames (after one untimed warm-up batch), `repeat` times,
    keeping the fastest. The source encoding is timed: once per video for the optimised
    paths, per frame otherwise."""
    from talkingface.utils.images import to_uint8_truncate

    memory = PeakMemory(device)
    gc.collect()
    memory.reset()
    model = factory().to(device)
    batches = rebatch(batches, step.batch)
    extra: dict[str, float] = {}
    with torch.inference_mode():
        if not step.engine:
            if step.source_once:
                cache: dict[str, list[torch.Tensor]] = {}

                def render(x):
                    if "f" not in cache:
                        cache["f"] = model.refine.encode_source(x.source[:1])
                    feats = [f.expand(x.source.shape[0], *f.shape[1:]) for f in cache["f"]]
                    return model.forward_refine(x, model.forward_warp(x), source_features=feats)
            elif step.warp_loss:
                loss = reference_warp_loss(factory.cfg).to(device)

                def render(x):
                    out = model(x)
                    # The driving frame's pixels do not change the cost: the source stands in.
                    loss.warp(out["deformed"], x.source)
                    return out["prediction"]
            else:
                def render(x):
                    return model(x)["prediction"]
            reset = (lambda: cache.clear()) if step.source_once else (lambda: None)
        else:
            engine = InferenceEngine.prepare(model, device, step.precision, step.channels_last, step.compile,
                                             fuse=step.fuse, keep_freed_memory=step.keep_freed_memory)
            sources = SourceCache(engine)

            def render(x):
                if step.autocast:
                    with torch.autocast(device.type, dtype=torch.bfloat16):
                        return engine.render(x, sources.features([0] * x.source.shape[0], x.source))
                return engine.render(x, sources.features([0] * x.source.shape[0], x.source))
            reset = sources.clear
        # Warm-up: oneDNN builds its kernels on first use; torch.compile compiles here.
        _, warm = timed(lambda: render(batches[0]), device)
        if step.compile:
            extra["compile_s"] = warm
        seconds = float("inf")
        for _ in range(max(1, repeat)):
            reset()
            outputs, took = timed(lambda: [render(x) for x in batches], device)
            seconds = min(seconds, took)
    frames = sum(x.source.shape[0] for x in batches)
    result = PathResult(step.name, frames, seconds, memory.peak_mib(), memory.start_mib, extra=extra)
    pixels = to_uint8_truncate(torch.cat(outputs))
    return result, pixels


def reference_warp_loss(cfg):
    """The warp-stage loss the reference implementation's inference evaluates per frame:
    the config's perceptual weights and pyramid scales, on a VGG19 with random weights
    (the benchmark needs its cost, not its value, and ships no ImageNet weights)."""
    from talkingface.losses.metaportrait import MetaPortraitLoss
    from talkingface.losses.vgg import VGG19Features

    return MetaPortraitLoss(cfg.train.loss_weights, cfg.train.scales, VGG19Features())


REFERENCE_IMPLEMENTATION = Step("reference implementation's forward: fp32, per frame, source re-encoded, spectral "
                                "norm at run time, + the warp loss its inference computes", source_once=False,
                                engine=False, warp_loss=True)
REFERENCE_GENERATOR = Step("reference path, generator only (no warp loss)", source_once=False, engine=False)


def ablation_steps(batch: int, precision: str, compile: bool) -> list[Step]:
    """Cumulative steps after the two reference rows. The allocator setting is
    process-wide, so every step after the one that turns it on runs with it."""
    steps = [
        REFERENCE_IMPLEMENTATION,
        REFERENCE_GENERATOR,
        Step("+ source encoded once per video", engine=False),
        Step("+ spectral norm folded at load"),
        Step("+ fused layers (SPADE blocks, norms, up-convs)", fuse=True),
        Step(f"+ batch {batch}", fuse=True, batch=batch),
        Step("+ channels_last", fuse=True, batch=batch, channels_last=True),
        Step("+ freed memory kept for reuse (glibc)", fuse=True, batch=batch, channels_last=True,
             keep_freed_memory=True),
    ]
    if precision != "fp32":
        steps.append(Step(f"{precision} autocast everywhere (rejected: PSNR)", fuse=True, batch=batch,
                          channels_last=True, keep_freed_memory=True, autocast=True))
        steps.append(Step(f"+ {precision} convolutions, fp32 elsewhere", fuse=True, batch=batch, channels_last=True,
                          keep_freed_memory=True, precision=precision))
    if compile:
        steps.append(Step("+ torch.compile", fuse=True, batch=batch, channels_last=True, keep_freed_memory=True,
                          precision=precision, compile=True))
    return steps


def command_path_step(batch: int) -> Step:
    """What the fp32 seed command computes (talkingface.inference.reconstruct without an engine):
    spectral norm folded, the source encoded once, NCHW, no fused layers, freed memory kept."""
    return Step(f"the fp32 command's own path, model only (spectral norm folded, source once, batch {batch}, NCHW)",
                batch=batch, keep_freed_memory=True)


def optimised_step(batch: int, precision: str, channels_last: bool, compile: bool) -> Step:
    name = (f"optimised: {precision}, batch {batch}" + (", channels_last" if channels_last else ", NCHW")
            + (", compiled" if compile else ""))
    return Step(name, fuse=True, batch=batch, channels_last=channels_last, keep_freed_memory=True,
                precision=precision, compile=compile)


# --------------------------------------------------------------------------- ONNX Runtime (--onnx)
def run_onnx_step(factory: ModelFactory, batches, batch: int, device: torch.device,
                  repeat: int = 1) -> tuple[PathResult, np.ndarray]:
    """The generator exported to ONNX (fused layers, fp32; talkingface.inference.onnx) and
    run in ONNX Runtime with torch's thread count, timed like `run_step`: source encoded
    once per video, one untimed warm-up batch, the fastest of `repeat` passes. The export
    is not timed."""
    from talkingface.inference.onnx import OnnxRenderer, export_onnx
    from talkingface.utils.images import to_uint8_truncate

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        # Unverified: the row's PSNR against the reference checks the same on the real frames.
        export_onnx(factory(), factory.cfg, Path(tmp) / "generator.onnx", verify=False)
        export_s = time.perf_counter() - start
        memory = PeakMemory(device)
        gc.collect()
        memory.reset()
        renderer = OnnxRenderer(Path(tmp) / "generator.onnx", device=device)
        sources = SourceCache(renderer)  # duck-typed: the renderer has the engine's encode_source

        def render(x):
            return renderer.render(x, sources.features([0] * x.source.shape[0], x.source))

        batches = rebatch(batches, batch)
        timed(lambda: render(batches[0]), device)  # warm-up: ORT plans its memory on the first run
        seconds = float("inf")
        for _ in range(max(1, repeat)):
            sources.clear()
            outputs, took = timed(lambda: [render(x) for x in batches], device)
            seconds = min(seconds, took)
    frames = sum(x.source.shape[0] for x in batches)
    result = PathResult(f"ONNX Runtime, fp32, batch {batch}", frames, seconds, memory.peak_mib(), memory.start_mib,
                        note=f"export {export_s:.0f} s, not counted")
    return result, to_uint8_truncate(torch.cat(outputs))


# --------------------------------------------------------------------------- whole command
def _make_dataset(dest: Path, frames: int) -> None:
    """The bundled sample with its driving frames cycled to `frames`."""
    from talkingface.data.sample import install_sample_data

    root, _ = install_sample_data(dest)
    folder = root / "0"
    originals = sorted((folder / "imgs").glob("*.png"))
    stems = [p.stem for p in originals]
    for i in range(len(originals), frames):
        src = stems[i % len(stems)]
        name = f"{i:08d}"
        shutil.copy(folder / "imgs" / f"{src}.png", folder / "imgs" / f"{name}.png")
        shutil.copy(folder / "ldmks" / f"{src}_ldmk.npy", folder / "ldmks" / f"{name}_ldmk.npy")
        if (folder / "thetas").is_dir():
            shutil.copy(folder / "thetas" / f"{src}_theta.npy", folder / "thetas" / f"{name}_theta.npy")
    for p in originals[frames:]:
        p.unlink()


def seed_command_supports_precision() -> bool:
    from talkingface.seed_cli import build_parser

    return any("--precision" in a.option_strings for a in build_parser()._actions)


def time_seed_command(factory: ModelFactory, config: Path, frames: int, batch: int, precision: str,
                      repeat: int = 1) -> PathResult:
    """Wall time of the whole seed inference command in a fresh process (the fastest of
    `repeat` runs)."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ckpt = work / "ckpt_base.pth.tar"
        torch.save({"generator": factory.official_sd, "epoch": 0}, ckpt)
        _make_dataset(work / "dataset" / "meta_portrait_base_data", frames)
        cmd = [sys.executable, str(REPO / "run_talkingface.py"), "--model=metaportraitbaseinference",
               f"--config={config}", f"--ckpt={ckpt}", f"--save_dir={work / 'saved'}", f"--batch_size={batch}"]
        if seed_command_supports_precision():
            cmd.append(f"--precision={precision}")
        seconds, run_s = float("inf"), float("nan")
        for _ in range(max(1, repeat)):
            shutil.rmtree(work / "saved", ignore_errors=True)
            start = time.perf_counter()
            proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, check=False)
            took = time.perf_counter() - start
            if proc.returncode != 0:
                raise RuntimeError(f"seed command failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
            if took < seconds:
                seconds, run_s = took, _recipe_seconds(proc.stdout)
    # run_s: the recipe's own time (checkpoint load, data, model, PNGs, video); the rest of the
    # process is the interpreter's start-up and the imports.
    return PathResult(f"seed command, {precision}, batch {batch} (whole process: start-up, load, data, PNGs, video)",
                      frames, seconds, extra={"recipe_s": run_s, "startup_s": seconds - run_s})


def _recipe_seconds(stdout: str) -> float:
    """The time the infer recipe reports on its last line ("Wrote N frames ... in X s")."""
    found = re.findall(r"^Wrote .* in ([0-9.]+) s$", stdout, flags=re.MULTILINE)
    return float(found[-1]) if found else float("nan")


# --------------------------------------------------------------------------- roofline (--roofline)
def roofline_of_fp32_engine(factory: ModelFactory, batches, opts: BenchOptions, rows: list[PathResult]) -> str:
    """The optimised fp32 engine's convolutions timed one by one against the measured peak
    (benchmarks/roofline.py), its achieved rate from its row's frames/s; kept in the row's extra."""
    from roofline import format_roofline, roofline

    step = optimised_step(opts.batch_size, "fp32", opts.channels_last, False)
    row = next(r for r in rows if r.name == step.name)
    engine = InferenceEngine.prepare(factory(), torch.device(opts.device), "fp32", opts.channels_last, False,
                                     fuse=True, keep_freed_memory=True)
    x = rebatch(batches, opts.batch_size)[0]
    features = SourceCache(engine).features([0] * x.source.shape[0], x.source)
    result = roofline(lambda: engine.render(x, features), x.source.shape[0], row.fps)
    row.extra["roofline"] = result
    return format_roofline(result)


# --------------------------------------------------------------------------- main
def _score(row: PathResult, pixels: np.ndarray, reference: np.ndarray) -> None:
    """The row's PSNR and largest grey-level difference against the reference frames."""
    row.psnr_db = psnr_uint8(pixels, reference)
    row.max_diff = int(np.abs(pixels.astype(np.int16) - reference.astype(np.int16)).max())


def run(opts: BenchOptions) -> list[PathResult]:
    device = torch.device(opts.device)
    info = machine_info(device)
    print("\n".join(info.lines()))
    print(f"load average at start: {load_average()}")
    factory = ModelFactory(opts)
    print(f"model: official 256 architecture ({opts.config.name}), {factory.weights}; {opts.frames} frames, "
          f"fastest of {opts.repeat} timed pass(es) per path")
    batches = sample_batches(factory.cfg, opts.frames, opts.batch_size, device)
    precision = opts.precision
    if precision == "auto":  # measured on these weights and the first batch (only where a low precision is native)
        precision = choose_precision(device, generator_psnr_check(factory().to(device), batches[0], device)).precision

    if opts.ablation:
        steps = ablation_steps(opts.batch_size, precision, opts.compile)
    else:
        steps = [REFERENCE_IMPLEMENTATION, REFERENCE_GENERATOR]
        if precision != "fp32":  # the exact path too (also the roofline's subject)
            steps.append(optimised_step(opts.batch_size, "fp32", opts.channels_last, False))
        steps.append(optimised_step(opts.batch_size, precision, opts.channels_last, opts.compile))
    if opts.command:  # the whole command's model-only counterpart at fp32 (at low precision: the optimised row)
        steps.insert(2, command_path_step(opts.batch_size))
    rows: list[PathResult] = []
    reference_pixels = None
    for step in steps:
        row, pixels = run_step(step, factory, batches, device, opts.repeat)
        if reference_pixels is None:
            reference_pixels = pixels
        _score(row, pixels, reference_pixels)
        if "compile_s" in row.extra:
            row.note = f"compile {row.extra['compile_s']:.0f} s, not counted"
        rows.append(row)
        print(f"  {row.name}: {row.fps:.3f} frames/s, PSNR {row.psnr_db:.1f} dB", flush=True)
    if opts.onnx:  # ONNX Runtime row (--onnx)
        row, pixels = run_onnx_step(factory, batches, opts.batch_size, device, opts.repeat)
        _score(row, pixels, reference_pixels)
        rows.append(row)
        print(f"  {row.name}: {row.fps:.3f} frames/s, PSNR {row.psnr_db:.1f} dB", flush=True)
    if opts.command:
        for p in dict.fromkeys(["fp32", precision]):
            if p != "fp32" and not seed_command_supports_precision():
                print(f"  (seed command has no --precision yet: {p} not timed)")
                continue
            row = time_seed_command(factory, opts.config, opts.frames, opts.batch_size, p, opts.repeat)
            model_only = next(r for r in rows if r.name == (command_path_step(opts.batch_size).name if p == "fp32"
                                                            else optimised_step(opts.batch_size, p, opts.channels_last,
                                                                                opts.compile).name))
            row.extra["over_model_only"] = row.seconds / model_only.seconds - 1
            row.note = (f"{100 * row.extra['over_model_only']:+.0f}% over its model-only row; start-up and imports "
                        f"{row.extra['startup_s']:.1f} s")
            rows.append(row)
            print(f"  {row.name}: {row.fps:.3f} frames/s, {row.note}", flush=True)
    if opts.roofline:
        print(roofline_of_fp32_engine(factory, batches, opts, rows))
    print(f"load average at end: {load_average()}\n")
    print(format_table(rows, {"reference implementation": rows[0], "generator only": rows[1]}))
    return rows


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_infer", description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=8, help="driving frames per path (the 8 sample frames, cycled)")
    p.add_argument("--batch-size", type=int, default=4, help="frames per forward in the optimised path")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="optimised path's precision (auto: the fastest that keeps 40 dB on this device)")
    p.add_argument("--nchw", action="store_true", help="NCHW memory format instead of channels_last")
    p.add_argument("--compile", action="store_true", help="torch.compile the optimised path")
    p.add_argument("--ablation", action="store_true", help="one row per optimisation, cumulatively")
    p.add_argument("--command", action="store_true", help="also time the whole seed inference command")
    p.add_argument("--roofline", action="store_true", help="also time the fp32 engine's convolutions one by one "
                   "against the machine's measured fp32 convolution peak (benchmarks/roofline.py)")
    p.add_argument("--onnx", action="store_true",
                   help='also an ONNX Runtime row, fp32, batch --batch-size (needs pip install -e ".[onnx]")')
    p.add_argument("--weights", default="auto", choices=["auto", "parity", "random"])
    p.add_argument("--repeat", type=int, default=1, help="timed passes per path; the fastest is reported")
    p.add_argument("--parity-dir", type=Path, default=PARITY, help="folder with weights.py and base_manifest.json")
    p.add_argument("--config", type=Path, default=CONFIG, help="model config (default: the official 256 eval)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--out", type=Path, default=None, help="JSON result file (default benchmarks/results/"
                   "bench_infer[_<variant>].json)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from dataclasses import asdict

    from bench_common import path_rows, result_header, result_path, variant_name, write_result

    args = build_parser().parse_args(argv)
    opts = BenchOptions(frames=args.frames, batch_size=args.batch_size, precision=args.precision,
                        channels_last=not args.nchw, compile=args.compile, ablation=args.ablation,
                        command=args.command, weights=args.weights, repeat=args.repeat, parity_dir=args.parity_dir,
                        config=args.config, onnx=args.onnx, roofline=args.roofline,
                        device=args.device)
    header = result_header(args.device)
    rows = run(opts)
    variant = variant_name({"ablation": args.ablation, "compile": args.compile, "command": args.command,
                            "onnx": args.onnx, "roofline": args.roofline}, args.device)
    out = write_result(args.out or result_path(__file__, variant),
                       {"options": asdict(opts), "rows": path_rows(rows), "load_average_after": load_average()},
                       header)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
