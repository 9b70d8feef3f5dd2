"""How close a generator path comes to the machine's measured convolution peak (bench_infer --roofline).

1. Every convolution one render makes is recorded (a dispatch mode on aten.convolution:
   shapes, stride, padding, groups, transposed, memory format) with its FLOPs
   (2 x multiply-adds; a transposed conv counted on its input positions).
2. Each distinct convolution is timed alone, on fresh tensors of the same shapes, layout
   and dtype: its GFLOP/s. The measured peak is the best of those and of one large 3x3
   conv (256 -> 256 channels, 64x64, batch 4), i.e. what oneDNN reaches on this CPU,
   not a datasheet figure.
3. The path's achieved rate is its total FLOPs per frame x its frames/s (bench_infer's
   row). The per-layer table shows where the time goes and which layers run far below
   the peak; the convolutions' summed standalone time against the frame time shows the
   share left to everything else (norms, sampling, element-wise).
"""
from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode


@dataclass(frozen=True)
class Conv:
    input: tuple[int, ...]
    weight: tuple[int, ...]
    bias: bool
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    transposed: bool
    output_padding: tuple[int, ...]
    groups: int
    channels_last: bool
    dtype: torch.dtype
    output: tuple[int, ...]

    @property
    def flops(self) -> int:
        """2 x multiply-adds: each output position (input position when transposed) of each
        batch item takes one weight tensor's worth (per group)."""
        positions = self.input if self.transposed else self.output
        return 2 * positions[0] * math.prod(positions[2:]) * math.prod(self.weight)

    def label(self) -> str:
        kind = "convT" if self.transposed else "conv"
        k = "x".join(map(str, self.weight[2:]))
        cin = self.input[1]
        cout = self.output[1]
        return (f"{kind} {k} {cin}->{cout} @ {self.input[2]}x{self.input[3]}"
                + (f" s{self.stride[0]}" if max(self.stride) > 1 else "") + (f" g{self.groups}" if self.groups > 1 else ""))


class _RecordConvs(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls: list[Conv] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        spec = _conv_args(func, args, kwargs or {})
        if spec is not None:
            x, w, b, stride, padding, dilation, transposed, output_padding, groups = spec
            pair = (lambda v: tuple(v) if isinstance(v, (list, tuple)) else (int(v),) * (x.dim() - 2))
            self.calls.append(Conv(tuple(x.shape), tuple(w.shape), b is not None, pair(stride), pair(padding),
                                   pair(dilation), bool(transposed), pair(output_padding), int(groups),
                                   x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last), x.dtype,
                                   tuple(out.shape)))
        return out


def _conv_args(func, args, kwargs) -> tuple | None:
    """aten.convolution's arguments for a convolution call, or None. Under inference mode the
    dispatcher sees conv2d / conv_transpose2d themselves (not decomposed), with defaults left out."""
    named = {a.name: v for a, v in zip(func._schema.arguments, args)} | kwargs
    if func is torch.ops.aten.convolution.default:
        return tuple(named[k] for k in ("input", "weight", "bias", "stride", "padding", "dilation", "transposed",
                                        "output_padding", "groups"))
    if func is torch.ops.aten.conv2d.default:
        return (named["input"], named["weight"], named.get("bias"), named.get("stride", 1), named.get("padding", 0),
                named.get("dilation", 1), False, 0, named.get("groups", 1))
    if func is torch.ops.aten.conv_transpose2d.input:
        return (named["input"], named["weight"], named.get("bias"), named.get("stride", 1), named.get("padding", 0),
                named.get("dilation", 1), True, named.get("output_padding", 0), named.get("groups", 1))
    return None


def record_convs(render: Callable[[], object]) -> list[Conv]:
    """The convolutions one call of `render` makes, in order."""
    mode = _RecordConvs()
    with torch.inference_mode(), mode:
        render()
    return mode.calls


def time_conv(conv: Conv, min_seconds: float = 0.3) -> float:
    """Seconds per call of `conv` alone (after one warm-up call; repeated for at least `min_seconds`)."""
    fmt = torch.channels_last if conv.channels_last else torch.contiguous_format
    x = torch.randn(conv.input, dtype=conv.dtype).contiguous(memory_format=fmt)
    w = torch.randn(conv.weight, dtype=conv.dtype).contiguous(memory_format=fmt)
    b = torch.randn(conv.weight[1] * conv.groups if conv.transposed else conv.weight[0], dtype=conv.dtype) \
        if conv.bias else None

    def call():
        torch.ops.aten.convolution(x, w, b, conv.stride, conv.padding, conv.dilation, conv.transposed,
                                   conv.output_padding, conv.groups)

    with torch.inference_mode():
        call()
        calls, start = 0, time.perf_counter()
        while calls < 2 or time.perf_counter() - start < min_seconds:
            call()
            calls += 1
        return (time.perf_counter() - start) / calls


def reference_conv(batch: int = 4) -> Conv:
    """A large, regular 3x3 convolution: what oneDNN does best, for the measured peak."""
    return Conv((batch, 256, 64, 64), (256, 256, 3, 3), True, (1, 1), (1, 1), (1, 1), False, (0, 0), 1, True,
                torch.float32, (batch, 256, 64, 64))


def roofline(render: Callable[[], object], frames_per_call: int, frames_per_second: float,
             min_seconds: float = 0.3) -> dict[str, object]:
    """Per-layer standalone rates (each timed for at least `min_seconds`), the measured peak and
    the path's achieved share of it."""
    calls = record_convs(render)
    counts = Counter(calls)
    layers = []
    for conv, count in counts.items():
        seconds = time_conv(conv, min_seconds)
        layers.append({"layer": conv.label(), "calls_per_render": count, "gflop_per_call": conv.flops / 1e9,
                       "ms_per_call": seconds * 1e3, "gflops": conv.flops / seconds / 1e9,
                       "layout": "channels_last" if conv.channels_last else "NCHW", "dtype": str(conv.dtype)})
    ref = reference_conv()
    ref_rate = ref.flops / time_conv(ref, 3 * min_seconds) / 1e9
    peak = max([ref_rate] + [layer["gflops"] for layer in layers])
    conv_seconds = sum(layer["ms_per_call"] * layer["calls_per_render"] for layer in layers) / 1e3
    flop_per_frame = sum(c.flops for c in calls) / frames_per_call
    frame_seconds = 1 / frames_per_second
    for layer in layers:
        layer["share_of_peak"] = layer["gflops"] / peak
        layer["share_of_frame_time"] = layer["ms_per_call"] * layer["calls_per_render"] / 1e3 / frames_per_call \
            / frame_seconds
    layers.sort(key=lambda layer: -layer["share_of_frame_time"])
    achieved = flop_per_frame * frames_per_second / 1e9
    return {"peak_gflops": peak, "reference_conv_gflops": ref_rate, "reference_conv": ref.label() + " batch 4",
            "conv_gflop_per_frame": flop_per_frame / 1e9, "achieved_gflops": achieved,
            "achieved_share_of_peak": achieved / peak,
            "convs_alone_share_of_frame_time": conv_seconds / frames_per_call / frame_seconds,
            "convs_alone_gflops": flop_per_frame * frames_per_call / conv_seconds / 1e9,
            "distinct_convs": len(counts), "conv_calls_per_render": len(calls), "layers": layers}


def format_roofline(r: dict[str, object], top: int = 12) -> str:
    lines = [f"measured fp32 convolution peak: {r['peak_gflops']:.1f} GFLOP/s "
             f"({r['reference_conv']}: {r['reference_conv_gflops']:.1f})",
             f"convolution FLOPs per frame: {r['conv_gflop_per_frame']:.1f} GFLOP; the path achieves "
             f"{r['achieved_gflops']:.1f} GFLOP/s = {100 * r['achieved_share_of_peak']:.0f}% of the peak",
             f"its {r['conv_calls_per_render']} convolutions timed alone: {100 * r['convs_alone_share_of_frame_time']:.0f}% "
             f"of the frame time, {r['convs_alone_gflops']:.1f} GFLOP/s; the rest is norms, sampling, element-wise",
             f"{'layer':44s} {'calls':>5s} {'GFLOP':>7s} {'ms':>8s} {'GFLOP/s':>8s} {'of peak':>8s} {'of frame':>8s}"]
    for layer in r["layers"][:top]:
        lines.append(f"{layer['layer']:44s} {layer['calls_per_render']:5d} {layer['gflop_per_call']:7.2f} "
                     f"{layer['ms_per_call']:8.1f} {layer['gflops']:8.1f} {100 * layer['share_of_peak']:7.0f}% "
                     f"{100 * layer['share_of_frame_time']:7.1f}%")
    return "\n".join(lines)
