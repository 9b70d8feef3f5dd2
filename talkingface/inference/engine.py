"""An inference wrapper around a loaded base generator: precision, memory layout, compilation.

What `InferenceEngine.prepare` does to the model, each kept because it was measured to
help (docs/performance.md has the numbers):

- spectral norm folded into plain weights (exact: eval mode uses the stored u, v);
- eval mode, no autograd state;
- inference rewrites of the SPADE blocks, norms and hourglass conv blocks
  (talkingface.inference.fused: the same function, far fewer passes over memory);
- channels_last memory layout (oneDNN's direct layout: no reorders around each conv);
- bf16 / fp16: the convolutions (nearly all the FLOPs) computed in the low precision
  with their weights stored cast once; everything else stays float32
  (talkingface.inference.precision);
- on CPU, freed memory kept for reuse instead of page-faulting fresh maps for every
  op's output (talkingface.inference.cpu; process-wide);
- optional torch.compile (on CUDA with CUDA graphs: mode "reduce-overhead").

The source feature pyramid depends on the source image only: `encode_source` computes
it once and `render` reuses it for every driving frame (`SourceCache` keeps it per
identity). `render` returns float32 predictions whatever the precision.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Hashable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from talkingface.inference import cpu
from talkingface.inference.fused import fuse_for_inference
from talkingface.inference.precision import (LOW_DTYPES, PRECISIONS, LowPrecisionConv, check_precision,
                                             lower_conv_precision, lowered_temporarily, psnr_uint8)
from talkingface.models.generator import GeneratorInputs
from talkingface.models.layers import fold_spectral_norm
from talkingface.utils.finite import precision_hint, require_finite
from talkingface.utils.images import to_uint8_truncate

__all__ = ["PRECISIONS", "EmulatedPrecisionWarning", "EngineOptions", "InferenceEngine", "LowPrecisionConv",
           "PrecisionChoice", "RenderGraph", "SourceCache", "choose_precision", "cpu_flags", "emulation_reason",
           "fit_precision", "generator_psnr_check", "resolve_precision", "lower_conv_precision", "native_precisions",
           "psnr_uint8", "render_batches"]

MIN_PSNR_DB = 40.0


# --------------------------------------------------------------------------- hardware
@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return frozenset()
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def native_precisions(device: torch.device | str) -> tuple[str, ...]:
    """Low precisions the device computes natively (not emulated), fastest first."""
    device = torch.device(device)
    if device.type == "cuda":
        return ("bf16", "fp16") if _cuda_bf16_native(device) else ("fp16",)
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return ()
    flags = cpu_flags()
    out = []
    # oneDNN runs bf16 on any AVX512 CPU, but only these flags make it faster than fp32.
    if flags & {"avx512_bf16", "amx_bf16"}:
        out.append("bf16")
    if flags & {"avx512_fp16", "amx_fp16"} and torch.ops.mkldnn._is_mkldnn_fp16_supported():
        out.append("fp16")
    return tuple(out)


def _cuda_bf16_native(device: torch.device) -> bool:
    """bf16 in hardware (compute capability 8.0 on): torch's query counts emulation unless told not to."""
    with torch.cuda.device(device):
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # an older torch: no such argument, and no emulation counted
            return torch.cuda.is_bf16_supported()


class EmulatedPrecisionWarning(UserWarning):
    """A low precision was asked for on hardware that only emulates it (and runs far slower than fp32)."""


# Rough cost of the emulated precisions, measured with AVX2 kernels (benchmarks/bench_emulated.py,
# result benchmarks/results/bench_emulated.json; docs/performance.md). Keyed by (use, device
# type, precision).
EMULATION_COST: dict[tuple[str, str, str], str] = {
    ("inference", "cpu", "bf16"): "measured about 100x slower than fp32 per convolution with AVX2 kernels",
    ("inference", "cpu", "fp16"): "measured about 100x slower than fp32 per convolution without native fp16",
    ("training", "cpu", "bf16"): "measured about 20x slower than fp32 per training step with AVX2 kernels",
    ("inference", "cuda", "bf16"): "no bf16 units before compute capability 8.0 (cost not measured)",
}


def emulation_reason(precision: str, device: torch.device | str) -> str | None:
    """Why `device` only emulates `precision`; None where it is native, fp32, or a device type
    (neither CPU nor CUDA) this cannot judge."""
    device = torch.device(device)
    if precision == "fp32" or device.type not in ("cpu", "cuda") or precision in native_precisions(device):
        return None
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"{precision} is emulated on this GPU (compute capability {major}.{minor})"
    if not torch.backends.mkldnn.is_available():
        return f"{precision} is emulated on CPU by this PyTorch (built without oneDNN)"
    needed = ("avx512_bf16", "amx_bf16") if precision == "bf16" else ("avx512_fp16", "amx_fp16")
    if cpu_flags() & set(needed):  # the CPU has them, this PyTorch's oneDNN does not use them
        return f"{precision} is emulated on this CPU by this PyTorch's oneDNN"
    return f"{precision} is emulated on this CPU (no {'/'.join(needed)})"


def fit_precision(requested: str, device: torch.device | str, force: bool = False, use: str = "inference",
                  warn: bool = True) -> str:
    """`requested`, or "fp32" where `device` only emulates it, with one `EmulatedPrecisionWarning`
    giving the measured cost (`warn`: False on all but one rank). `force` keeps the requested
    precision (still warned). `use` is "inference" or "training" (which cost to quote)."""
    check_precision(requested)
    reason = emulation_reason(requested, device)
    if reason is None:
        return requested
    cost = EMULATION_COST.get((use, torch.device(device).type, requested), "cost not measured")
    verb = "running" if use == "inference" else "training"
    action = f"keeping {requested} (--force)" if force else f"{verb} in fp32 (--force keeps {requested})"
    if warn:
        warnings.warn(f"{reason}: {cost}; {action}", EmulatedPrecisionWarning, stacklevel=2)
    return requested if force else "fp32"


# --------------------------------------------------------------------------- precision choice
@dataclass(frozen=True)
class PrecisionChoice:
    precision: str
    reason: str
    psnr_db: float | None = None  # of this precision against fp32, where known


def choose_precision(device: torch.device | str, check: Callable[[str], float] | None = None,
                     min_psnr: float = MIN_PSNR_DB) -> PrecisionChoice:
    """The fastest precision the device runs natively whose output stays at `min_psnr` dB or
    more against fp32, measured by `check(precision)` on the user's own model and data (a few
    frames: `generator_psnr_check`, `talkingface.inference.sr.sr_psnr_check`). Nothing is
    assumed: without a check, or with no native low precision, the answer is fp32 (and the
    check never runs)."""
    device = torch.device(device)
    candidates = native_precisions(device)
    if check is None or not candidates:
        why = "no sample to check a lower precision on" if candidates else \
            f"no native low precision on this {device.type}"
        return PrecisionChoice("fp32", f"fp32: {why}")
    measured = []
    for precision in candidates:
        value = float(check(precision))
        measured.append(f"{precision} {value:.1f} dB")
        if value >= min_psnr:
            return PrecisionChoice(precision, f"{precision}: {value:.1f} dB against fp32 on this model and input", value)
    return PrecisionChoice("fp32", f"fp32: measured against fp32 on this model and input, {', '.join(measured)} "
                           f"(below {min_psnr:.0f} dB)")


def resolve_precision(requested: str, device: torch.device | str, check: Callable[[str], float] | None = None,
                      force: bool = False) -> PrecisionChoice:
    """For "auto" the `choose_precision` pick; else `requested` (fp32, bf16, fp16), or fp32 with
    one warning where the device only emulates it (`fit_precision`; `force` keeps it)."""
    if requested == "auto":
        return choose_precision(device, check)
    precision = fit_precision(requested, device, force)
    if precision != requested:
        return PrecisionChoice(precision, f"{precision}: {requested} is emulated on this {torch.device(device).type}")
    return PrecisionChoice(requested, f"{requested}: as requested")


def generator_psnr_check(model: nn.Module, sample: GeneratorInputs | Callable[[], GeneratorInputs],
                         device: torch.device | str = "cpu") -> Callable[[str], float]:
    """A `check` for `choose_precision`: PSNR of the sample rendered at a precision
    against fp32, on the model as given (not copied: its convolutions are lowered only
    while the check runs, with the weights rounded as `lower_conv_precision` rounds them).
    `sample` may be a function that makes it: then nothing (not even the fp32 reference)
    runs unless a precision is actually checked."""
    device = torch.device(device)
    cache: dict[str, object] = {}

    def reference() -> tuple[GeneratorInputs, np.ndarray]:
        if not cache:
            x = (sample() if callable(sample) else sample).to(device)
            with torch.inference_mode():
                cache["x"], cache["fp32"] = x, to_uint8_truncate(model.eval()(x)["prediction"])
        return cache["x"], cache["fp32"]  # type: ignore[return-value]

    def check(precision: str) -> float:
        x, fp32 = reference()
        with torch.inference_mode(), lowered_temporarily(model, LOW_DTYPES[precision]):
            return psnr_uint8(to_uint8_truncate(model(x)["prediction"]), fp32)

    return check


# --------------------------------------------------------------------------- engine
@dataclass(frozen=True)
class EngineOptions:
    device: str = "cpu"
    precision: str = "fp32"
    channels_last: bool = True  # oneDNN convolves channels_last without reordering every input and output
    compile: bool = False
    fuse: bool = True  # inference rewrites of the SPADE blocks, norms and conv blocks (talkingface.inference.fused)
    keep_freed_memory: bool = True  # CPU: see talkingface.inference.cpu (process-wide)

    def __post_init__(self) -> None:
        check_precision(self.precision)


class RenderGraph(nn.Module):
    """The per-frame part of the generator with plain tensors in and out: what
    torch.compile sees, and what the ONNX export writes (talkingface.inference.onnx).
    With `motion`, it also returns the warp's deformation and occlusion map (what
    full-resolution rendering needs: talkingface.animate.fullres)."""

    def __init__(self, generator: nn.Module, motion: bool = False):
        super().__init__()
        self.generator = generator
        self.motion = motion

    def forward(self, features: list[torch.Tensor], source: torch.Tensor, source_line: torch.Tensor,
                driving_line: torch.Tensor, driving_subset: torch.Tensor, mouth_mask: torch.Tensor,
                identity: torch.Tensor):
        # features: the source pyramid, coarse to fine, B x C_s x h_s x w_s; source, lines: B x 3 x H x W;
        # driving_subset: B x 58 x 2; mouth_mask: B x 1 x H x W; identity: B x D -> B x 3 x H x W
        # (with motion, also the deformation B x h x w x 2 and the occlusion map B x 1 x H x W)
        x = GeneratorInputs(source=source, source_line=source_line, driving_line=driving_line,
                            driving_subset=driving_subset, mouth_mask=mouth_mask, identity=identity)
        warp_out = self.generator.forward_warp(x)
        prediction = self.generator.forward_refine(x, warp_out, source_features=features)
        if not self.motion:
            return prediction
        return prediction, warp_out["deformation"], warp_out["occlusion_map"]


_INPUT_NAMES = ("source", "source_line", "driving_line", "driving_subset", "mouth_mask", "identity")


class InferenceEngine:
    """A prepared generator. Build it with `InferenceEngine.prepare`, which takes over the
    model: it folds the spectral norm and may replace the convolutions, in place."""

    def __init__(self, model: nn.Module, options: EngineOptions):
        self.model = model
        self.options = options
        self.device = torch.device(options.device)
        self._render: Callable[..., torch.Tensor] = RenderGraph(model)
        self._render_motion = RenderGraph(model, motion=True)  # never compiled: full-resolution rendering only
        self._compiled_batch: int | None = None
        self._repeat_cache: tuple[list[torch.Tensor], int, list[torch.Tensor]] | None = None
        if options.compile:
            if self.device.type == "cuda":
                # CUDA graphs remove the per-kernel launch cost that dominates small batches.
                self._render = torch.compile(self._render, mode="reduce-overhead", dynamic=False)
            else:
                # Freezing lets inductor pre-pack the conv weights for oneDNN and fold constants.
                self._render = torch.compile(self._render, dynamic=False, options={"freezing": True})

    @classmethod
    def prepare(cls, model: nn.Module, device: torch.device | str = "cpu", precision: str = "fp32",
                channels_last: bool = True, compile: bool = False, fuse: bool = True,
                keep_freed_memory: bool = True) -> "InferenceEngine":
        """Take over a loaded generator (spectral norm attached or not) and prepare it."""
        options = EngineOptions(str(torch.device(device)), precision, channels_last, compile, fuse, keep_freed_memory)
        if keep_freed_memory and options.device == "cpu":
            cpu.keep_freed_memory()
        model = fold_spectral_norm(model).eval().requires_grad_(False).to(options.device)
        if fuse:
            fuse_for_inference(model)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        if precision != "fp32":
            lower_conv_precision(model, LOW_DTYPES[precision])
        return cls(model, options)

    @property
    def precision(self) -> str:
        return self.options.precision

    def _layout(self, t: torch.Tensor) -> torch.Tensor:
        t = t.to(self.device, non_blocking=True)
        if self.options.channels_last and t.dim() == 4:
            return t.contiguous(memory_format=torch.channels_last)
        return t

    @torch.inference_mode()
    def encode_source(self, source: torch.Tensor) -> list[torch.Tensor]:
        """Source feature pyramid (coarse to fine) for a B x 3 x H x W source in 0..1."""
        return self.model.refine.encode_source(self._layout(source))

    @torch.inference_mode()
    def render(self, inputs: GeneratorInputs, source_features: list[torch.Tensor]) -> torch.Tensor:
        """Predictions (B x 3 x H x W, float32, -1..1) for a batch of driving frames.

        `source_features` come from `encode_source`: batch B, or 1 to share one source."""
        return self._run(self._render, inputs, source_features)

    @torch.inference_mode()
    def render_with_motion(self, inputs: GeneratorInputs, source_features: list[torch.Tensor]
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(predictions B x 3 x H x W, deformations B x h x w x 2, occlusion maps B x 1 x H x W),
        all float32: `render` plus the warp's outputs."""
        prediction, deformation, occlusion = self._run(self._render_motion, inputs, source_features)
        return prediction, deformation.float().contiguous(), occlusion.float().contiguous()

    def _run(self, graph, inputs: GeneratorInputs, source_features: list[torch.Tensor]):
        batch = inputs.source.shape[0]
        tensors = [self._layout(getattr(inputs, name)) for name in _INPUT_NAMES]
        pad = self._compiled_pad(batch)
        if pad:  # a compiled graph is specialised to one batch size: fill with copies of the last frame
            tensors = [torch.cat([t, t[-1:].expand(pad, *t.shape[1:])]) for t in tensors]
        total = batch + pad
        if total > 1 and all(f.shape[0] == 1 for f in source_features):
            features = self._repeated(source_features, total)
        elif pad:
            features = [torch.cat([f, f[-1:].expand(pad, *f.shape[1:])]) for f in source_features]
        else:
            features = source_features
        compiled = graph is self._render and self.options.compile
        if compiled and self.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()
        out = graph(features, *tensors)
        require_finite((out[0] if isinstance(out, tuple) else out)[:batch], hint=precision_hint(self.precision))
        if isinstance(out, tuple):
            return tuple(t[:batch] for t in out)
        prediction = out[:batch]
        # A CUDA graph's output buffer is overwritten by its next replay: copy it out.
        if compiled and self.device.type == "cuda":
            prediction = prediction.clone()
        return prediction.contiguous()

    def _repeated(self, features: list[torch.Tensor], batch: int) -> list[torch.Tensor]:
        """One source's pyramid repeated to the batch size, kept for the last (pyramid, size):
        the warps read a materialised batch faster than a broadcast view, and it is made
        once per video instead of once per batch."""
        cached = self._repeat_cache
        if cached is None or cached[0] is not features or cached[1] != batch:
            cached = (features, batch, [_repeat(f, batch) for f in features])  # holds `features`: no id reuse
            self._repeat_cache = cached
        return cached[2]

    def _compiled_pad(self, batch: int) -> int:
        if not self.options.compile:
            return 0
        if self._compiled_batch is None:
            self._compiled_batch = batch
        if batch > self._compiled_batch:
            raise ValueError(f"this compiled engine renders batches of at most {self._compiled_batch} "
                             f"frames, got {batch}")
        return self._compiled_batch - batch


class SourceCache:
    """Source feature pyramids per identity key, encoded once by the engine."""

    def __init__(self, engine: InferenceEngine):
        self.engine = engine
        self._features: dict[Hashable, list[torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self._features)

    def features(self, keys: Sequence[Hashable], sources: torch.Tensor) -> list[torch.Tensor]:
        """Features for a batch whose frame i has identity keys[i] and source sources[i]:
        the identity's own batch-1 pyramid when all frames share it (`render` repeats it)."""
        for i, key in enumerate(keys):
            if key not in self._features:
                self._features[key] = self.engine.encode_source(sources[i:i + 1])
        if len(set(keys)) == 1:
            return self._features[keys[0]]
        scales = len(self._features[keys[0]])
        return [torch.cat([self._features[k][s] for k in keys]) for s in range(scales)]

    def clear(self) -> None:
        self._features.clear()


def _repeat(feature: torch.Tensor, batch: int) -> torch.Tensor:
    """1 x C x H x W -> batch x C x H x W, in the feature's memory layout."""
    layout = (torch.channels_last if feature.shape[1] > 1 and feature.is_contiguous(memory_format=torch.channels_last)
              else torch.contiguous_format)
    return feature.expand(batch, *feature.shape[1:]).contiguous(memory_format=layout)


def render_batches(engine: InferenceEngine, batches: Iterator[tuple[GeneratorInputs, Sequence[Hashable]]],
                   cache: SourceCache | None = None) -> Iterator[torch.Tensor]:
    """Render (inputs, identity keys) batches with the source encoded once per key."""
    cache = cache or SourceCache(engine)
    for inputs, keys in batches:
        yield engine.render(inputs, cache.features(keys, inputs.source))
