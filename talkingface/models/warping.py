"""The warping network: from the source image and two line images to a dense motion field.

motion encoder (ladder): 9-channel input -> L2-normalised motion code
motion network (hourglass with AdaIN on the code) -> flow (64x64) + occlusion map
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from talkingface.models.layers import Hourglass, LayerNorm2d, coordinate_grid, maybe_spectral_norm, warp


@dataclass(frozen=True)
class WarpingSpec:
    """Architecture of the warping network (built from the config by `build_generator`)."""

    in_channels: int = 9  # source RGB + source line image + driving line image
    encoder_input_size: int = 256  # the ladder always sees this size
    encoder_base: int = 64
    encoder_layers: int = 6
    code_dim: int = 512
    spectral_norm: bool = True
    motion_base: int = 64
    motion_max: int = 1024
    motion_blocks: int = 5
    motion_skip_levels: int = 2  # flow at 1/4 resolution
    motion_extra_blocks: bool = True
    occlusion: bool = True


class MotionEncoder(nn.Module):
    """Stride-2 convs (spectral norm, instance norm, LeakyReLU 0.2) and an FC to a unit-norm code."""

    def __init__(self, spec: WarpingSpec):
        super().__init__()
        self.input_size = spec.encoder_input_size
        widths = [spec.in_channels] + [spec.encoder_base * min(2 ** i, 8) for i in range(spec.encoder_layers)]
        self.convs = nn.ModuleList(
            nn.Sequential(
                maybe_spectral_norm(nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1, bias=False),
                                    spec.spectral_norm),
                nn.InstanceNorm2d(widths[i + 1], affine=False),
            )
            for i in range(spec.encoder_layers))
        final = spec.encoder_input_size // 2 ** spec.encoder_layers
        self.fc = nn.Linear(widths[-1] * final * final, spec.code_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: B x 9 x H x W
        if x.shape[2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear")
        for i, conv in enumerate(self.convs):
            x = conv(x if i == 0 else F.leaky_relu(x, 0.2))
        x = self.fc(F.leaky_relu(x, 0.2).flatten(1))  # B x code_dim
        return x / (x.norm(dim=-1, keepdim=True) + 1e-5)


class MotionHead(nn.Module):
    """LayerNorm2d -> LeakyReLU 0.1 -> 7x7 conv."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.norm = LayerNorm2d(in_ch)
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size=7, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.leaky_relu(self.norm(x), 0.1))


class MotionNetwork(nn.Module):
    """Code-conditioned hourglass predicting pixel flow and an occlusion map."""

    def __init__(self, spec: WarpingSpec):
        super().__init__()
        self.hourglass = Hourglass(spec.in_channels, spec.motion_base, spec.motion_max, spec.motion_blocks,
                                   norm="adain", code_dim=spec.code_dim, extra_blocks=spec.motion_extra_blocks,
                                   skip_levels=spec.motion_skip_levels)
        ch = self.hourglass.out_channels
        self.flow_head = MotionHead(ch, 2)
        self.occlusion_head = MotionHead(ch, 1) if spec.occlusion else None

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> dict[str, torch.Tensor]:
        # x: B x 9 x H x W, code: B x code_dim
        features = self.hourglass(x, code)  # B x C x h x w (h = H / 4)
        flow = self.flow_head(features)  # B x 2 x h x w, in pixels of the h x w grid
        _, _, h, w = flow.shape
        flow = 2 * torch.cat([flow[:, :1] / (w - 1), flow[:, 1:] / (h - 1)], dim=1)  # grid units
        grid = coordinate_grid(h, w, flow.device, flow.dtype)
        out = {"flow": flow, "deformation": grid + flow.permute(0, 2, 3, 1)}  # B x h x w x 2
        if self.occlusion_head is not None:
            occlusion = torch.sigmoid(self.occlusion_head(features))  # B x 1 x h x w
            if occlusion.shape[2:] != x.shape[2:]:
                occlusion = F.interpolate(occlusion, size=x.shape[2:], mode="bilinear", align_corners=False)
            out["occlusion_map"] = occlusion  # B x 1 x H x W
        return out


class WarpingNetwork(nn.Module):
    def __init__(self, spec: WarpingSpec):
        super().__init__()
        self.spec = spec
        self.motion_encoder = MotionEncoder(spec)
        self.motion_net = MotionNetwork(spec)

    def forward(self, source: torch.Tensor, line_images: torch.Tensor) -> dict[str, torch.Tensor]:
        # source: B x 3 x H x W (0..1); line_images: B x 6 x H x W (source lines, driving lines)
        x = torch.cat([source, line_images], dim=1)  # B x 9 x H x W
        code = self.motion_encoder(x)  # B x code_dim
        out = self.motion_net(x, code)
        out["deformed"] = warp(source, out["deformation"])  # B x 3 x H x W
        return out
