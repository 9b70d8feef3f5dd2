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
"""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np
import torch
from torch import nn

from talkingface.inference import cpu
from talkingface.inference.precision import LOW_DTYPES, LowPrecisionConvMode, check_precision, psnr_uint8


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
                cache["x"], cache["fp32"] = x, sr_to_uint8(model.eval()(x))
        return cache["x"], cache["fp32"]  # type: ignore[return-value]

    def check(precision: str) -> float:
        x, fp32 = reference()
        with torch.inference_mode(), LowPrecisionConvMode(LOW_DTYPES[precision]):
            return psnr_uint8(sr_to_uint8(model(x)), fp32)

    return check


def sr_to_uint8(frames: torch.Tensor) -> np.ndarray:
    """... x 3 x H x W in about 0..1 -> ... x H x W x 3 uint8, clamped and rounded as the
    enhance recipe writes its frames."""
    return (frames.float().clamp(0, 1).movedim(-3, -1).cpu().numpy() * 255.0).round().astype(np.uint8)
