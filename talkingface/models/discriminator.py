"""Multi-scale PatchGAN discriminator (LSGAN), one patch network per image-pyramid scale."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from talkingface.models.layers import maybe_spectral_norm


@dataclass(frozen=True)
class DiscriminatorSpec:
    scales: tuple[float, ...] = (1,)
    image_channels: int = 3
    base: int = 32
    max_channels: int = 512
    num_blocks: int = 4
    spectral_norm: bool = False


def scale_key(scale: float) -> str:
    """'1', '0-5', ... : a module-dict key for a pyramid scale (dots are not allowed).
    Whole numbers print without a decimal, as the official YAML's `scales: [1]` does."""
    scale = float(scale)
    return str(int(scale)) if scale.is_integer() else str(scale).replace(".", "-")


class PatchBlock(nn.Module):
    """4x4 conv (no padding) -> optional affine instance norm -> LeakyReLU 0.2 -> optional 2x pool."""

    def __init__(self, in_ch: int, out_ch: int, norm: bool, pool: bool, spectral_norm: bool):
        super().__init__()
        self.conv = maybe_spectral_norm(nn.Conv2d(in_ch, out_ch, kernel_size=4), spectral_norm)
        self.norm = nn.InstanceNorm2d(out_ch, affine=True) if norm else None
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        x = F.leaky_relu(x, 0.2)
        return F.avg_pool2d(x, 2) if self.pool else x


class PatchDiscriminator(nn.Module):
    def __init__(self, spec: DiscriminatorSpec):
        super().__init__()
        n = spec.num_blocks
        widths = [spec.image_channels] + [min(spec.max_channels, spec.base * 2 ** (i + 1)) for i in range(n)]
        self.blocks = nn.ModuleList(
            PatchBlock(widths[i], widths[i + 1], norm=i != 0, pool=i != n - 1, spectral_norm=spec.spectral_norm)
            for i in range(n))
        self.to_logits = maybe_spectral_norm(nn.Conv2d(widths[-1], 1, kernel_size=1), spec.spectral_norm)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        # x: B x 3 x H x W -> (per-block feature maps, B x 1 x h x w patch scores)
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features, self.to_logits(x)


class MultiScaleDiscriminator(nn.Module):
    def __init__(self, spec: DiscriminatorSpec):
        super().__init__()
        self.spec = spec
        self.patch_discs = nn.ModuleDict({scale_key(s): PatchDiscriminator(spec) for s in spec.scales})

    def forward(self, pyramid: dict[float, torch.Tensor]) -> dict[float, tuple[list[torch.Tensor], torch.Tensor]]:
        """pyramid: scale -> B x 3 x h x w image. Returns scale -> (feature maps, patch scores)."""
        return {s: self.patch_discs[scale_key(s)](pyramid[s]) for s in self.spec.scales}
