"""The inference rows of `benchmarks/gpu_check.py`: parity, the seed inference command,
generator throughput, super-resolution, ONNX Runtime and `animate` on the demo.

Each row function takes the run's `Context` and returns a `Result`, raises `Skipped`
when it does not apply here, or raises anything else when it fails.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import itertools
import re
import time
import warnings
from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterator

import numpy as np
import torch

from gpu_check_setup import Context, Result, Skipped, compared, scored
from bench_common import PeakMemory, synchronize
from talkingface.inference.engine import EmulatedPrecisionWarning, InferenceEngine, RenderGraph
from talkingface.inference.onnx import RENDER_INPUTS

PARITY_TOL = 1e-3  # device fp32 against CPU fp32, largest absolute difference of the -1..1 output
MAX_TIMED_S = 10.0  # timed calls stop after this long even short of min_iters


# --------------------------------------------------------------------------- timing
def time_calls(ctx: Context, call: Callable[[], torch.Tensor], frames_per_call: int) -> tuple[float, torch.Tensor]:
    """(frames/s, last output): `warmup` untimed calls, then at least `min_iters` calls and
    `min_seconds`, synchronised with the device at both ends (not between calls, so the
    host queues the next call while the device runs one). A slow device (a CPU running
    the full-size model) stops after one warm-up call and MAX_TIMED_S of timed calls."""
    sizes = ctx.sizes
    for _ in range(sizes.warmup):
        start = time.perf_counter()
        call()
        synchronize(ctx.device)
        if time.perf_counter() - start > MAX_TIMED_S / 4:
            break
    calls, start = 0, time.perf_counter()
    while True:
        out = call()
        calls += 1
        if calls >= sizes.min_iters or time.perf_counter() - start > MAX_TIMED_S:
            synchronize(ctx.device)
            elapsed = time.perf_counter() - start
            if elapsed >= sizes.min_seconds or elapsed > MAX_TIMED_S:
                return calls * frames_per_call / elapsed, out


@contextlib.contextmanager
def strict_fp32() -> Iterator[None]:
    """IEEE fp32 convolutions and matmuls on CUDA (cuDNN convolutions default to TF32)."""
    conv, matmul = torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision
    torch.backends.cudnn.conv.fp32_precision = torch.backends.cuda.matmul.fp32_precision = "ieee"
    try:
        yield
    finally:
        torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision = conv, matmul


@contextlib.contextmanager
def printed_precision(found: list[str]) -> Iterator[None]:
    """Collect the "precision ..." lines a recipe prints (and pass all its output on)."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        text = buffer.getvalue()
        print(text, end="")
        found.extend(m[1] for m in re.finditer(r"^(?:super-resolution )?precision (\S+?):", text, re.M))


# --------------------------------------------------------------------------- parity
def parity(ctx: Context) -> Result:
    """The official architecture with the parity weights, fp32 on the device against fp32 on
    the CPU (two frames of the sample). On CUDA also with its default TF32 convolutions."""
    factory = ctx.factory
    if not ctx.opts.quick and not factory.weights.startswith("parity"):
        raise FileNotFoundError(f"{ctx.opts.parity_dir / 'weights.py'} is missing (the parity weights live in "
                                "../shared/parity beside the repo)")
    x = ctx.inputs(2).to("cpu")
    with torch.inference_mode():
        cpu = factory()(x)["prediction"]
        model = factory().to(ctx.device)
        with strict_fp32():
            device = model(x.to(ctx.device))["prediction"].float().cpu()
        extra: dict[str, float | int | str | None] = {"weights": factory.weights}
        if ctx.device.type == "cuda":
            extra["tf32_max_abs_diff"] = float((model(x.to(ctx.device))["prediction"].float().cpu() - cpu).abs().max())
    psnr, diff = compared(device, cpu)
    note = f"{factory.weights.split(' (')[0]}, 2 frames, IEEE fp32 on both"
    if diff > PARITY_TOL:
        return Result(psnr_db=psnr, max_abs_diff=diff, precision="fp32", status="failed", extra=extra,
                      note=f"max abs diff {diff:.2e} above {PARITY_TOL:g}; {note}")
    return Result(psnr_db=psnr, max_abs_diff=diff, precision="fp32", note=note, extra=extra)


# --------------------------------------------------------------------------- the seed inference command
def seed_infer(ctx: Context, precision: str) -> Result:
    """`run_talkingface.py --model=metaportraitbaseinference ... --precision P` as the command
    runs it (`run_inference`, whole: checkpoint load, data, the model, PNGs, the video), on
    the sample cycled to `seed_frames` frames; PSNR of its PNGs against the fp32 run's."""
    from PIL import Image

    from talkingface.recipes.infer import InferOptions, run_inference

    data = ctx.dataset(ctx.sizes.eval_config, ctx.sizes.seed_frames)
    memory = PeakMemory(ctx.device)
    memory.reset()
    chosen: list[str] = []
    with warnings.catch_warnings(record=True) as caught, printed_precision(chosen):
        warnings.simplefilter("always", EmulatedPrecisionWarning)
        result = run_inference(InferOptions(config=str(ctx.sizes.eval_config), ckpt=str(ctx.checkpoint),
                                            data_root=str(data), save_dir=str(ctx.work / f"seed_{precision}"),
                                            device=str(ctx.device), precision=precision, force=ctx.opts.force))
    frames = []
    for path in sorted(result.frames_dir.glob("*.png")):
        with Image.open(path) as image:
            frames.append(np.asarray(image.convert("RGB")))
    pixels = np.stack(frames)
    if precision == "fp32":
        ctx.seed_fp32_frames = pixels
    psnr, grey = scored(pixels, ctx.seed_fp32_frames) if precision != "fp32" else (None, None)
    emulated = [str(w.message) for w in caught if issubclass(w.category, EmulatedPrecisionWarning)]
    note = f"whole command, {result.frames} frames"
    if emulated:
        note += f"; {emulated[0].split(':')[0]}: ran fp32"
    return Result(rate=result.frames / result.seconds, unit="frames/s", peak_mib=memory.peak_mib(), psnr_db=psnr,
                  precision=chosen[0] if chosen else precision, note=note, extra={"max_grey_levels": grey})


# --------------------------------------------------------------------------- generator throughput
@dataclass(frozen=True)
class Variant:
    label: str
    precision: str  # fp32, bf16, fp16, or "best": the fastest this device computes natively
    channels_last: bool = False
    compile: bool = False  # InferenceEngine.prepare(compile=True): on CUDA torch.compile "reduce-overhead"
    cuda_graph: bool = False  # the eager engine's render captured on a CUDA graph (no torch.compile)


EAGER_VARIANTS = (Variant("fp32", "fp32"), Variant("bf16", "bf16"), Variant("fp16", "fp16"),
                  Variant("channels_last", "best", channels_last=True),
                  Variant("CUDA graphs", "best", channels_last=True, cuda_graph=True))
COMPILED = Variant("torch.compile", "best", channels_last=True, compile=True)
REFERENCE = EAGER_VARIANTS[0]  # fp32 NCHW: what the other variants' PSNR is measured against


def graphed_render(engine: InferenceEngine, inputs, features: list[torch.Tensor]) -> Callable[[], torch.Tensor]:
    """A replay function for one render of `inputs` captured on a CUDA graph (the eager
    engine's layers, no torch.compile). Replays return the same (overwritten) output tensor."""
    graph_module = RenderGraph(engine.model)
    layout = torch.channels_last if engine.options.channels_last else torch.contiguous_format
    batch = inputs.source.shape[0]

    def laid(t: torch.Tensor) -> torch.Tensor:
        return t.contiguous(memory_format=layout) if t.dim() == 4 else t.contiguous()

    tensors = [laid(getattr(inputs, name).to(engine.device)) for name in RENDER_INPUTS]
    pyramid = [laid(f.expand(batch, *f.shape[1:])) for f in features]
    side = torch.cuda.Stream(engine.device)
    side.wait_stream(torch.cuda.current_stream(engine.device))
    with torch.inference_mode(), torch.cuda.stream(side):
        for _ in range(3):  # cuDNN chooses its algorithms outside the capture
            graph_module(pyramid, *tensors)
    torch.cuda.current_stream(engine.device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph):
        out = graph_module(pyramid, *tensors)

    def replay() -> torch.Tensor:
        graph.replay()
        return out

    return replay


def generator(ctx: Context, variant: Variant, batch: int) -> Result:
    """Frames/s of the inference engine at `batch` frames a call (one source, encoded once),
    peak memory, and PSNR against the fp32 NCHW engine's frames at the same batch."""
    precision = ctx.usable(variant.precision)
    if variant.cuda_graph and ctx.device.type != "cuda":
        raise Skipped("CUDA graphs need a CUDA device")
    if variant.compile and ctx.device.type == "cpu" and not ctx.sizes.compile_on_cpu:
        raise Skipped("torch.compile on a CPU takes minutes of C++ compilation (about 3 min for the tiny model "
                      "on 2 cores): run without --quick")
    if variant.compile and ctx.remaining() < max(120.0, 1.5 * ctx.compile_seconds):
        raise Skipped(f"{ctx.remaining():.0f} s of the time budget left: too little to compile")
    # CUDA graphs capture the channels_last engine's layers: the same engine serves both rows
    key = (precision, variant.channels_last, batch if variant.compile else None)
    engine = ctx.engine(key, lambda: InferenceEngine.prepare(ctx.factory(), ctx.device, precision,
                                                             variant.channels_last, variant.compile))
    x = ctx.inputs(batch)
    features = engine.encode_source(x.source[:1])
    memory = PeakMemory(ctx.device)
    memory.reset()
    start = time.perf_counter()
    if variant.cuda_graph:
        call = graphed_render(engine, x, features)
    else:
        call = partial(engine.render, x, features)
        call()  # first call: torch.compile compiles here
    first = time.perf_counter() - start
    if variant.compile:
        ctx.compile_seconds = max(ctx.compile_seconds, first)
    fps, out = time_calls(ctx, call, batch)
    prediction = out.float().cpu()
    if variant == REFERENCE:
        ctx.fp32_predictions[batch] = prediction
    psnr, diff = compared(prediction, ctx.fp32_predictions.get(batch))
    layout = "channels_last" if variant.channels_last else "NCHW"
    note = f"{layout}, source encoded once"
    if variant.compile:
        note += f", compiled in {first:.0f} s"
    elif variant.cuda_graph:
        note += f", captured in {first:.1f} s"
    return Result(rate=fps, unit="frames/s", peak_mib=memory.peak_mib(), psnr_db=psnr, max_abs_diff=diff,
                  precision=precision, note=note)


# --------------------------------------------------------------------------- super-resolution
def _sr_model_and_clip(ctx: Context):
    """(a factory of fresh SR networks, the 1 x N x 3 x S x S input clip): the official
    network (parity weights when present) at 512, or the tiny config (--quick)."""
    from bench_sr import SRBenchOptions, SRFactory, input_clip

    if ctx.sizes.sr_config is None:
        factory = SRFactory(SRBenchOptions(parity_dir=ctx.opts.parity_dir))
        return factory, input_clip(SRBenchOptions(frames=ctx.sizes.sr_frames, parity_dir=ctx.opts.parity_dir),
                                   factory.config.out_size // 2)
    from talkingface.models.temporal_sr import TemporalSRNet
    from talkingface.config.sr import load_sr_config

    config = load_sr_config(ctx.sizes.sr_config).network_g

    def factory() -> torch.nn.Module:
        torch.manual_seed(0)
        return TemporalSRNet(config).eval()

    size = config.out_size // 2
    clip = torch.rand(1, ctx.sizes.sr_frames, 3, size, size, generator=torch.Generator().manual_seed(0))
    return factory, clip


def super_resolution(ctx: Context, precision: str) -> Result:
    """Frames/s of the temporal SR network prepared as `enhance` prepares it (`prepare_sr`:
    channels_last, low-precision convolutions), one clip of `sr_frames` frames a call."""
    from talkingface.inference.sr import prepare_sr
    from talkingface.utils.images import to_uint8_round

    precision = ctx.usable(precision)
    if ctx.sr is None:
        ctx.sr = _sr_model_and_clip(ctx)
    factory, clip = ctx.sr
    ctx.drop_engine()
    model = prepare_sr(factory(), ctx.device, precision)
    x = clip.to(ctx.device)
    memory = PeakMemory(ctx.device)
    memory.reset()
    with torch.inference_mode():
        fps, out = time_calls(ctx, lambda: model(x), x.shape[1])
    out = out.float().cpu()
    if precision == "fp32":
        ctx.sr_fp32 = out
    psnr, diff = compared(out, ctx.sr_fp32, to_uint8_round) if precision != "fp32" else (None, None)
    return Result(rate=fps, unit="frames/s", peak_mib=memory.peak_mib(), psnr_db=psnr, max_abs_diff=diff,
                  precision=precision, note=f"{x.shape[1]}-frame clip, {x.shape[-1]} -> {out.shape[-1]}")


# --------------------------------------------------------------------------- ONNX Runtime
def onnx_runtime(ctx: Context) -> Result:
    """The generator exported to ONNX (fp32) and run by ONNX Runtime on the device's provider
    (CUDA: onnxruntime-gpu's), against the fp32 torch engine at the same batch."""
    if importlib.util.find_spec("onnxruntime") is None:
        raise Skipped('onnxruntime is not installed (pip install -e ".[onnx]"; onnxruntime-gpu for CUDA)')
    import onnxruntime

    from talkingface.inference.onnx import OnnxRenderer, export_onnx

    available = onnxruntime.get_available_providers()
    if ctx.device.type == "cuda" and "CUDAExecutionProvider" not in available:
        raise Skipped(f"onnxruntime-gpu is not installed (providers here: {', '.join(available)})")
    if not ctx.sizes.onnx_export:
        raise Skipped(f"onnxruntime {onnxruntime.__version__} is installed, but --quick does not export (about 45 s "
                      "for the tiny model on 2 cores; tests/test_onnx.py covers the CPU provider)")
    ctx.drop_engine()
    path = ctx.work / "onnx" / "generator.onnx"
    start = time.perf_counter()
    export_onnx(ctx.factory(), ctx.cfg, path, verify=False)  # checked below against the torch engine
    export_s = time.perf_counter() - start
    memory = PeakMemory(ctx.device)
    memory.reset()
    renderer = OnnxRenderer(path, device=ctx.device)
    batch = ctx.sizes.onnx_batch
    x = ctx.inputs(batch).to("cpu")
    features = renderer.encode_source(x.source[:1])
    fps, out = time_calls(ctx, partial(renderer.render, x, features), batch)
    psnr, diff = compared(out, ctx.fp32_predictions.get(batch))
    return Result(rate=fps, unit="frames/s", peak_mib=memory.peak_mib(), psnr_db=psnr, max_abs_diff=diff,
                  precision="fp32", extra={"providers": ", ".join(renderer.providers), "export_s": export_s},
                  note=f"batch {batch}, {renderer.providers[0]}, export {export_s:.0f} s not counted")


# --------------------------------------------------------------------------- animate
def animate_demo(ctx: Context) -> Result:
    """`talkingface demo --device D`: the bundled model animating the Grace Hopper portrait
    with the bundled driving video (--quick: its first `animate_frames` frames), whole
    command, precision auto."""
    from talkingface.recipes.demo import DEMO_DRIVING, DemoOptions, run_demo
    from talkingface.utils.video import iter_frames, probe_video, write_video

    ctx.drop_engine()
    driving = DEMO_DRIVING
    if ctx.sizes.animate_frames is not None:
        driving = ctx.work / "driving.mp4"
        write_video(driving, itertools.islice(iter_frames(DEMO_DRIVING), ctx.sizes.animate_frames),
                    probe_video(DEMO_DRIVING).fps)
    memory = PeakMemory(ctx.device)
    memory.reset()
    chosen: list[str] = []
    with printed_precision(chosen):
        result = run_demo(DemoOptions(out=str(ctx.work / "demo.mp4"), driving=str(driving), device=str(ctx.device)))
    return Result(rate=result.frames / result.seconds, unit="frames/s", peak_mib=memory.peak_mib(),
                  precision=chosen[0] if chosen else "auto",
                  note=f"whole command, {result.frames} frames at {result.width}x{result.height}")
