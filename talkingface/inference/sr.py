"""Fast inference for the temporal super-resolution network (talkingface.models.temporal_sr).

The same precision rule as the base engine: convolutions (nearly all of the 840 GFLOP
of a 512 frame) in bf16 / fp16, float32 everywhere else. Here most convolutions are
StyleGAN2 modulated convs calling F.conv2d on per-call weight views, so instead of
swapping modules, a torch-function mode lowers every conv2d / conv_transpose2d called
inside the network's forward. `prepare_sr` installs it on the model itself, so callers
(the enhance recipe's windowing) keep calling `model(clip)` unchanged. It also puts the
conv weights in channels_last (so the activations follow) and, on CPU, keeps freed
memory for reuse, as the base engine does. A fused StyleConv (style applied before the
upsampling, one-pass epilogue) was tried and measured no faster, so it is not here.

Long clips run in overlapping windows (`plan_windows`, `iter_planned`). The network mixes
neighbouring frames in `model.temporal_radius` blocks of one frame each side, so output
frame t depends on input frames t - R .. t + R and on nothing else:

    window = [context | core | context],  context = overlap >= R frames

Only each window's core is kept. At the clip's ends the window simply stops at
the first/last frame, where the network repeats edge frames exactly as a
whole-clip pass does. With overlap >= R the result equals a whole-clip pass up to
float rounding, while memory is bounded by the window length.

`chunking="reference"` reproduces the official test script instead: independent,
non-overlapping 16-frame chunks (so frames near chunk borders see repeated edge
frames rather than their true neighbours).
"""
from __future__ import annotations

import functools
import itertools
import warnings
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Literal

import numpy as np
import torch
from torch import nn

from talkingface.errors import DataError, TalkingFaceError
from talkingface.inference import cpu
from talkingface.inference.precision import LOW_DTYPES, LowPrecisionConvMode, check_precision, psnr_uint8
from talkingface.utils.finite import require_finite
from talkingface.utils.images import to_tensor, to_uint8_round

Chunking = Literal["overlap", "reference"]
REFERENCE_CHUNK = 16  # frames per chunk in the official test script
DEFAULT_CORE = 16  # new frames per window in overlap mode


def _forward_in_mode(forward: Callable, dtype: torch.dtype, *args, **kwargs):
    with LowPrecisionConvMode(dtype):
        return forward(*args, **kwargs)


def prepare_sr(model: nn.Module, device: torch.device | str = "cpu", precision: str = "fp32",
               channels_last: bool = True, keep_freed_memory: bool = True) -> nn.Module:
    """Prepare a loaded TemporalSRNet for inference, in place, and return it.

    The model keeps its type and attributes (temporal_radius, input_size, cfg); its
    forward takes and returns float32 as before. keep_freed_memory: as for the base
    engine (talkingface.inference.cpu, process-wide, CPU only)."""
    check_precision(precision)
    if keep_freed_memory and torch.device(device).type == "cpu":
        cpu.keep_freed_memory()
    model = model.eval().requires_grad_(False).to(device)
    if channels_last:
        _channels_last_weights(model)
    model.__dict__.pop("forward", None)  # preparing twice replaces, not stacks
    if precision != "fp32":
        # An instance attribute shadows the class's forward; nn.Module.__call__ uses it.
        model.forward = functools.partial(_forward_in_mode, type(model).forward.__get__(model),
                                          LOW_DTYPES[precision])
    return model


def _channels_last_weights(model: nn.Module) -> None:
    """Conv weights to channels_last. model.to(memory_format=...) refuses the StyleGAN2
    modulated convs' 1 x O x I x k x k weights: their O x I x k x k slice is converted."""
    with torch.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            if tensor.dim() == 4 and tensor.shape[1] > 1:
                tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
            elif tensor.dim() == 5 and tensor.shape[0] == 1:
                tensor.data = tensor.data[0].contiguous(memory_format=torch.channels_last)[None]


def sr_psnr_check(model: nn.Module, clip: torch.Tensor | Callable[[], torch.Tensor]) -> Callable[[str], float]:
    """A `check` for `choose_precision`: PSNR of the clip (1 x N x 3 x S x S, 0..1)
    super-resolved at a precision against fp32, on the model as given. `clip` may be a
    function that makes it: then nothing runs unless a precision is actually checked."""
    cache: dict[str, object] = {}

    def reference() -> tuple[torch.Tensor, np.ndarray]:
        if not cache:
            x = clip() if callable(clip) else clip
            with torch.inference_mode():
                cache["x"], cache["fp32"] = x, to_uint8_round(model.eval()(x))
        return cache["x"], cache["fp32"]  # type: ignore[return-value]

    def check(precision: str) -> float:
        x, fp32 = reference()
        with torch.inference_mode(), LowPrecisionConvMode(LOW_DTYPES[precision]):
            return psnr_uint8(to_uint8_round(model(x)), fp32)

    return check


# --------------------------------------------------------------------------- windows
class InputResizedWarning(UserWarning):
    """Input frames were not at the network's size and were resized."""


@dataclass(frozen=True)
class WindowPlan:
    """Frames per pass (`window`) and context frames each side (`overlap`)."""

    window: int
    overlap: int

    @property
    def core(self) -> int:
        return self.window - 2 * self.overlap


def plan_windows(model, window: int | None = None, overlap: int | None = None,
                 chunking: Chunking = "overlap") -> WindowPlan:
    """Resolve defaults and check the numbers. Overlap below the radius only warns: it is allowed
    (less compute) but the output then differs from a whole-clip pass near window borders."""
    if chunking == "reference":
        if overlap not in (None, 0):
            raise TalkingFaceError("--chunking reference uses non-overlapping chunks; drop --overlap")
        window = REFERENCE_CHUNK if window is None else window
        if window < 1:
            raise TalkingFaceError(f"window must be >= 1 frame, got {window}")
        return WindowPlan(window=window, overlap=0)
    if chunking != "overlap":
        raise TalkingFaceError(f"unknown chunking {chunking!r} (use overlap or reference)")
    radius = model.temporal_radius
    overlap = radius if overlap is None else overlap
    if overlap < 0:
        raise TalkingFaceError(f"overlap must be >= 0, got {overlap}")
    window = 2 * overlap + DEFAULT_CORE if window is None else window
    if window - 2 * overlap < 1:
        raise TalkingFaceError(f"window {window} leaves no new frames after {overlap} context frames each side; "
                               f"use a window of at least {2 * overlap + 1}")
    if overlap < radius:
        warnings.warn(f"overlap {overlap} is below the network's temporal radius {radius}: frames near window "
                      "borders will differ from a whole-clip pass", stacklevel=2)
    return WindowPlan(window=window, overlap=overlap)


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def iter_enhance(model, frames: Iterable[torch.Tensor], window: int | None = None, overlap: int | None = None,
                 batch_size: int = 1, chunking: Chunking = "overlap") -> Iterator[torch.Tensor]:
    """Stream 3 x H x W frames (0..1) in, 3 x 2H x 2W frames (CPU, float, unclamped) out, in order.

    Holds at most `batch_size` windows of input frames; `batch_size` windows of equal
    length go through the network together (as a batch of clips).
    """
    return iter_planned(model, frames, plan_windows(model, window, overlap, chunking), batch_size)


def iter_planned(model, frames: Iterable[torch.Tensor], plan: WindowPlan, batch_size: int = 1
                 ) -> Iterator[torch.Tensor]:
    """`iter_enhance` with the window plan already resolved."""
    if batch_size < 1:
        raise TalkingFaceError(f"batch size must be >= 1, got {batch_size}")
    device = _model_device(model)
    source = iter(frames)
    buffer: list[torch.Tensor] = []  # input frames base .. base + len(buffer) - 1
    base = 0
    exhausted = False

    def read_until(count: int) -> int:
        """Read frames until `count` have been read or the input ends; return how many have been."""
        nonlocal exhausted
        while not exhausted and base + len(buffer) < count:
            try:
                buffer.append(next(source))
            except StopIteration:
                exhausted = True
        return base + len(buffer)

    def run(group: list[tuple[int, int, int, int]]) -> Iterator[torch.Tensor]:
        clips = torch.stack([torch.stack(buffer[lo - base:hi - base]) for lo, _, _, hi in group])  # G x T x 3 x H x W
        with torch.inference_mode():
            out = model(clips.to(device, torch.float32)).cpu()  # G x T x 3 x 2H x 2W
        require_finite(out, "the super-resolution output", "; the weights or the inputs are damaged, or a "
                                                          "low --precision overflowed")
        for g, (lo, start, stop, _) in enumerate(group):
            yield from out[g, start - lo:stop - lo]

    group: list[tuple[int, int, int, int]] = []  # (lo, start, stop, hi) per window
    start = 0
    while True:
        available = read_until(start + plan.core + plan.overlap)
        if start >= available:
            break
        stop = min(start + plan.core, available)
        lo, hi = max(0, start - plan.overlap), min(available, stop + plan.overlap)
        if group and (len(group) == batch_size or group[0][3] - group[0][0] != hi - lo):
            yield from run(group)
            group = []
            del buffer[:lo - base]  # nothing before this window's context is needed again
            base = lo
        group.append((lo, start, stop, hi))
        start = stop
    if group:
        yield from run(group)


def enhance_clip(model, frames: torch.Tensor, window: int | None = None, overlap: int | None = None,
                 batch_size: int = 1, chunking: Chunking = "overlap",
                 on_frame: Callable[[], None] | None = None) -> torch.Tensor:
    """N x 3 x H x W (0..1) -> N x 3 x 2H x 2W, in overlapping windows (see the module doc)."""
    if frames.ndim != 4:
        raise ValueError(f"expected N x 3 x H x W frames, got {tuple(frames.shape)}")
    outputs = []
    for frame in iter_enhance(model, frames.unbind(0), window, overlap, batch_size, chunking):
        outputs.append(frame)
        if on_frame is not None:
            on_frame()
    return torch.stack(outputs)


def sample_clip(frames: Iterable[np.ndarray], count: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The first `count` frames (the last one repeated if there are fewer) as a 1 x count x 3 x S x S
    clip: what the precision check super-resolves."""
    first = list(itertools.islice(frames, count))
    if not first:
        raise DataError("no frames to check the precision on")
    first += [first[-1]] * (count - len(first))
    return torch.stack([to_tensor(f) for f in first])[None].to(device)
