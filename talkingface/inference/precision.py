"""Low-precision convolutions with float32 everywhere else, and the output-quality measure.

The rule, for the base model and the SR network alike: only the convolutions (nearly
all of the FLOPs) run in bf16 / fp16; norms, modulations, residual sums and sampling
grids stay float32. Autocast would also run the element-wise ops in the low precision,
which on the base model costs about 10 dB of PSNR against fp32 (33 dB instead of 42;
docs/performance.md).
"""
from __future__ import annotations

import contextlib
import functools
import math
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

PRECISIONS = ("fp32", "bf16", "fp16")
LOW_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_CONV_TYPES = (nn.Conv2d, nn.ConvTranspose2d)


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 arrays over all their pixels (inf when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def _conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, spec: nn.Module,
          transposed: bool) -> torch.Tensor:
    """The conv computed in weight's dtype; the result is left in that dtype."""
    x = x.to(weight.dtype)
    if transposed:
        return F.conv_transpose2d(x, weight, bias, spec.stride, spec.padding, spec.output_padding, spec.groups,
                                  spec.dilation)
    return F.conv2d(x, weight, bias, spec.stride, spec.padding, spec.dilation, spec.groups)


class LowPrecisionConv(nn.Module):
    """A Conv2d / ConvTranspose2d computed in bf16 or fp16, float32 out.

    `forward_low` leaves the result in the low precision, for callers whose next step
    is another conv (which would round it again anyway) or an op that promotes it."""

    def __init__(self, conv: nn.Conv2d | nn.ConvTranspose2d, dtype: torch.dtype):
        super().__init__()
        if conv.padding_mode != "zeros":
            raise ValueError(f"padding_mode {conv.padding_mode!r} is not supported")
        self.transposed = isinstance(conv, nn.ConvTranspose2d)
        # Stored once in the low precision (keeping the conv's memory format): no per-call cast.
        self.weight = nn.Parameter(conv.weight.detach().to(dtype), requires_grad=False)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().to(dtype), requires_grad=False)
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        self.output_padding = conv.output_padding if self.transposed else None

    def forward_low(self, x: torch.Tensor) -> torch.Tensor:
        # x: B x C_in x H x W, any float dtype -> B x C_out x H' x W' in the low precision
        return _conv(x, self.weight, self.bias, self, self.transposed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: B x C_in x H x W -> B x C_out x H' x W' float32
        return self.forward_low(x).float()


def conv_low(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """conv(x), in the conv's own precision (float32 for a plain conv)."""
    return conv.forward_low(x) if isinstance(conv, LowPrecisionConv) else conv(x)


def lower_conv_precision(model: nn.Module, dtype: torch.dtype) -> int:
    """Replace every Conv2d / ConvTranspose2d of `model` by a `LowPrecisionConv`, in
    place (inference only: the state-dict keys stay, the module types change).
    Returns how many were replaced."""
    targets = [(name, m) for name, m in model.named_modules() if type(m) in _CONV_TYPES]
    for name, module in targets:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, LowPrecisionConv(module, dtype))
    return len(targets)


def _conv_cast_per_call(conv: nn.Module, dtype: torch.dtype, x: torch.Tensor) -> torch.Tensor:
    weight = conv.weight.to(dtype)
    bias = None if conv.bias is None else conv.bias.to(dtype)
    return _conv(x, weight, bias, conv, isinstance(conv, nn.ConvTranspose2d)).float()


@contextlib.contextmanager
def lowered_temporarily(model: nn.Module, dtype: torch.dtype) -> Iterator[None]:
    """Run the model's Conv2d / ConvTranspose2d modules in `dtype` inside the block, with
    the weights rounded as `lower_conv_precision` rounds them; nothing is copied."""
    convs = [m for m in model.modules() if type(m) in _CONV_TYPES]
    try:
        for conv in convs:  # an instance attribute shadows the class's forward
            conv.forward = functools.partial(_conv_cast_per_call, conv, dtype)
        yield
    finally:
        for conv in convs:
            conv.__dict__.pop("forward", None)


_CONV_FUNCTIONS = {F.conv2d, torch.conv2d, F.conv_transpose2d, torch.conv_transpose2d}


class LowPrecisionConvMode(TorchFunctionMode):
    """Inside this mode every 2-D convolution (module or functional) whose input is
    float32 or already `dtype` runs in `dtype` and returns float32. Weights are cast
    per call."""

    def __init__(self, dtype: torch.dtype):
        super().__init__()
        self.dtype = dtype

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if (func in _CONV_FUNCTIONS and args and isinstance(args[0], torch.Tensor)
                and args[0].dtype in (torch.float32, self.dtype)):
            low = [a.to(self.dtype) if isinstance(a, torch.Tensor) else a for a in args]
            low_kwargs = {k: v.to(self.dtype) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
            return func(*low, **low_kwargs).float()
        return func(*args, **kwargs)

