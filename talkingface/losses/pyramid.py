"""Anti-aliased image pyramids for the multi-scale losses and the discriminator."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AntiAliasDownsample(nn.Module):
    """Gaussian blur (sigma = (1/s - 1)/2) then nearest resampling by `scale`."""

    def __init__(self, channels: int, scale: float):
        super().__init__()
        self.scale = float(scale)
        sigma = (1 / self.scale - 1) / 2
        size = 2 * round(sigma * 4) + 1
        self.pad = size // 2
        coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
        g = torch.exp(-coords ** 2 / (2 * sigma ** 2)) if sigma > 0 else (coords == 0).float()
        kernel = g[:, None] * g[None, :]
        kernel = kernel / kernel.sum()
        self.register_buffer("kernel", kernel.expand(channels, 1, size, size).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1.0:
            return x
        x = F.conv2d(F.pad(x, (self.pad,) * 4), self.kernel.to(x.dtype), groups=x.shape[1])
        return F.interpolate(x, scale_factor=(self.scale, self.scale))


class ImagePyramid(nn.Module):
    def __init__(self, scales, channels: int = 3):
        super().__init__()
        self.scales = tuple(float(s) for s in scales)
        self.downs = nn.ModuleList(AntiAliasDownsample(channels, s) for s in self.scales)

    def forward(self, x: torch.Tensor) -> dict[float, torch.Tensor]:
        return {s: down(x) for s, down in zip(self.scales, self.downs)}
