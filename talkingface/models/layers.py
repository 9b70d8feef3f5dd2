"""Building blocks shared by the warping and refinement networks."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm


def maybe_spectral_norm(module: nn.Module, enabled: bool) -> nn.Module:
    """Spectral norm as the official checkpoint stores it (`weight_orig`, `weight_u`, `weight_v`).

    One power iteration per training forward; none in eval mode, where the stored
    u and v are used as they are.
    """
    return spectral_norm(module) if enabled else module


def fold_spectral_norm(model: nn.Module) -> nn.Module:
    """Replace every spectral-normed weight by the plain weight it currently computes
    (stored u and v, no power iteration). Outputs are unchanged; inference gets
    cheaper, and this is what meta-training's --remove_sn does."""
    for module in model.modules():
        if hasattr(module, "weight_u"):
            torch.nn.utils.remove_spectral_norm(module)
    return model


def coordinate_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """H x W x 2 grid of (x, y) in -1..1, corners at pixel centres of the first/last pixel."""
    x = torch.arange(width, device=device, dtype=dtype)
    y = torch.arange(height, device=device, dtype=dtype)
    x = 2 * (x / (width - 1)) - 1
    y = 2 * (y / (height - 1)) - 1
    return torch.stack([x.view(1, -1).expand(height, width), y.view(-1, 1).expand(height, width)], dim=2)


def gaussian_heatmaps(points: torch.Tensor, height: int, width: int, variance: float) -> torch.Tensor:
    """One isotropic Gaussian per point. points: B x K x 2 in -1..1 -> B x K x H x W."""
    grid = coordinate_grid(height, width, points.device, points.dtype)  # H x W x 2
    diff = grid[None, None] - points[:, :, None, None, :]  # B x K x H x W x 2
    return torch.exp(-0.5 * (diff ** 2).sum(-1) / variance)


def warp(image: torch.Tensor, deformation: torch.Tensor) -> torch.Tensor:
    """Backward-warp `image` (B x C x H x W) by a sampling grid (B x h x w x 2, -1..1).

    The grid is bilinearly resized to the image size first, as the official model does
    for every feature scale.
    """
    h, w = image.shape[2:]
    if deformation.shape[1:3] != (h, w):
        deformation = F.interpolate(deformation.permute(0, 3, 1, 2), size=(h, w), mode="bilinear")
        deformation = deformation.permute(0, 2, 3, 1)
    return F.grid_sample(image.to(deformation.dtype), deformation, padding_mode="reflection", align_corners=False)


class LayerNorm2d(nn.Module):
    """Normalise each sample over C x H x W together, then a per-channel affine."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape[1:]
        return F.layer_norm(x, shape, self.weight.expand(shape), self.bias.expand(shape))


class AdaIN(nn.Module):
    """Instance norm modulated by a global code: IN(x) * (1 + gamma(code)) + beta(code)."""

    def __init__(self, channels: int, code_dim: int, hidden: int = 128):
        super().__init__()
        self.shared = nn.Linear(code_dim, hidden)
        self.to_gamma = nn.Linear(hidden, channels)
        self.to_beta = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        # x: B x C x H x W, code: B x D
        hidden = F.relu(self.shared(code.flatten(1)))
        gamma = self.to_gamma(hidden)[:, :, None, None]
        beta = self.to_beta(hidden)[:, :, None, None]
        return F.instance_norm(x) * (1 + gamma) + beta


class EqualLinear(nn.Module):
    """Linear layer with the equalised learning rate: the stored weight is scaled by
    sqrt(2 / fan_in) at run time (the official checkpoint stores it as `weight_orig`)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.scale = math.sqrt(2 / in_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


def make_norm(kind: str, channels: int, code_dim: int = 0) -> nn.Module:
    """'adain' (needs code_dim), 'instance' (affine) or 'batch'."""
    if kind == "adain":
        return AdaIN(channels, code_dim)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=True)
    raise ValueError(f"unknown norm {kind!r}")


class ConvNormReLU(nn.Module):
    """3x3 conv -> norm (optionally code-conditioned) -> ReLU, same resolution."""

    def __init__(self, in_ch: int, out_ch: int, norm: str, code_dim: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1)
        self.norm = make_norm(norm, out_ch, code_dim)
        self.conditioned = norm == "adain"

    def forward(self, x: torch.Tensor, code: torch.Tensor | None = None) -> torch.Tensor:
        x = self.conv(x)
        x = self.norm(x, code) if self.conditioned else self.norm(x)
        return F.relu(x)


def _extra_block(channels: int, norm: str, code_dim: int) -> ConvNormReLU:
    # The official extra block is either code-conditioned or batch-normed: it never
    # receives the instance-norm switch. Kept so such checkpoints load.
    return ConvNormReLU(channels, channels, norm if norm == "adain" else "batch", code_dim)


class DownBlock(ConvNormReLU):
    """ConvNormReLU, 2x average pooling, then an optional extra same-resolution block."""

    def __init__(self, in_ch: int, out_ch: int, norm: str, code_dim: int = 0, extra: bool = False):
        super().__init__(in_ch, out_ch, norm, code_dim)
        self.extra = _extra_block(out_ch, norm, code_dim) if extra else None

    def forward(self, x: torch.Tensor, code: torch.Tensor | None = None) -> torch.Tensor:
        x = F.avg_pool2d(super().forward(x, code), 2)
        return self.extra(x, code) if self.extra is not None else x


class UpBlock(ConvNormReLU):
    """2x nearest upsampling, ConvNormReLU, then an optional extra same-resolution block."""

    def __init__(self, in_ch: int, out_ch: int, norm: str, code_dim: int = 0, extra: bool = False):
        super().__init__(in_ch, out_ch, norm, code_dim)
        self.extra = _extra_block(out_ch, norm, code_dim) if extra else None

    def forward(self, x: torch.Tensor, code: torch.Tensor | None = None) -> torch.Tensor:
        x = super().forward(F.interpolate(x, scale_factor=2), code)
        return self.extra(x, code) if self.extra is not None else x


class Hourglass(nn.Module):
    """U-Net: `num_blocks` down blocks, then up blocks with skip concatenation.

    `skip_levels` > 0 stops the decoder that many levels early, so the output is at
    1 / 2**skip_levels of the input size (the motion network predicts flow at 64x64
    for a 256 input this way).
    """

    def __init__(self, in_ch: int, base: int, max_ch: int, num_blocks: int, norm: str,
                 code_dim: int = 0, extra_blocks: bool = False, skip_levels: int = 0):
        super().__init__()
        width = [in_ch] + [min(max_ch, base * 2 ** (i + 1)) for i in range(num_blocks)]
        self.down = nn.ModuleList(
            DownBlock(width[i], width[i + 1], norm, code_dim, extra_blocks) for i in range(num_blocks))
        up = []
        for level in reversed(range(skip_levels, num_blocks)):
            in_up = width[level + 1] * (1 if level == num_blocks - 1 else 2)
            up.append(UpBlock(in_up, min(max_ch, base * 2 ** level), norm, code_dim, extra_blocks))
        self.up = nn.ModuleList(up)
        last = min(max_ch, base * 2 ** skip_levels)
        # Channels of the final output: the last up block plus its skip.
        self.out_channels = last + in_ch if skip_levels == 0 else 2 * last

    def forward(self, x: torch.Tensor, code: torch.Tensor | None = None,
                return_scales: bool = False):
        # x: B x in_ch x H x W
        skips = [x]
        for block in self.down:
            skips.append(block(skips[-1], code))
        out = skips.pop()  # B x width[-1] x H/2^n x W/2^n
        scales = [out]
        for block in self.up:
            out = block(out, code)
            scales.append(out)
            out = torch.cat([out, skips.pop()], dim=1)
        if not return_scales:
            return out
        # Coarse-to-fine features: the bottleneck, each up block's output, and at the
        # finest level the output concatenated with its skip.
        scales[-1] = out
        return out, scales
