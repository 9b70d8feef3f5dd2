"""The ID-preserving refinement network.

A source feature pyramid is warped by the motion field and, with the occlusion map,
gaze heatmaps and line images, conditions an identity-driven SPADE decoder that
renders the output frame (tanh, -1..1).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from talkingface.landmarks.scheme import ROLES
from talkingface.models.layers import EqualLinear, Hourglass, gaussian_heatmaps, maybe_spectral_norm, warp


@dataclass(frozen=True)
class RefinementSpec:
    image_channels: int = 3
    source_base: int = 64
    source_max: int = 512
    source_blocks: int = 3
    instance_norm: bool = True  # False: batch norm (the official default when use_IN is unset)
    identity_dim: int = 256
    decoder_channels: int = 32  # the official `conv_dim`; widest block is 16x this
    decoder_start_size: int = 4
    decoder_blocks: int = 7
    spade_hidden: int = 128  # width of each SPADE's shared conv (hard-coded 128 in the reference)
    spectral_norm: bool = True
    gaze_heatmaps: bool = True
    num_gaze: int = 8
    gaze_variance: float = 0.005
    line_images: bool = True  # 6 channels: source + driving lines
    mouth_line: bool = True  # 3 channels: driving lines inside the mouth box

    @property
    def condition_extra_channels(self) -> int:
        """Channels added to each warped feature scale: occlusion (1) + gaze + lines + mouth lines."""
        return (1 + self.num_gaze * self.gaze_heatmaps + 6 * self.line_images
                + 3 * self.mouth_line)

    @property
    def source_scale_channels(self) -> list[int]:
        """Channels of the source feature pyramid, coarse to fine."""
        b, n = self.source_base, self.source_blocks
        return [min(self.source_max, b * 2 ** n)] + [min(self.source_max, b * 2 ** lv) for lv in range(n - 1, 0, -1)] + [b]


class IdentityAdaIN(nn.Module):
    """Instance norm with scale and shift from the identity embedding (gamma bias starts at 1)."""

    def __init__(self, channels: int, identity_dim: int):
        super().__init__()
        self.style = EqualLinear(identity_dim, 2 * channels)
        with torch.no_grad():
            self.style.bias[:channels] = 1

    def forward(self, x: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.style(identity)[:, :, None, None].chunk(2, dim=1)  # B x C x 1 x 1 each
        return gamma * F.instance_norm(x) + beta


class IdentitySPADE(nn.Module):
    """Blend of a SPADE modulation (from the condition maps) and an identity AdaIN,
    weighted per pixel by a learned attention map computed from the input."""

    def __init__(self, channels: int, condition_channels: int, identity_dim: int, instance_norm: bool,
                 hidden: int = 128):
        super().__init__()
        self.plain_norm = (nn.InstanceNorm2d(channels, affine=False) if instance_norm
                           else nn.BatchNorm2d(channels, affine=False))
        self.shared = nn.Conv2d(condition_channels, hidden, 3, padding=1)
        self.to_gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.to_beta = nn.Conv2d(hidden, channels, 3, padding=1)
        self.attention = nn.Conv2d(channels, 1, 3, padding=1)
        self.id_adain = IdentityAdaIN(channels, identity_dim)

    def forward(self, x: torch.Tensor, condition: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        # x: B x C x h x w; condition: B x K x h x w; identity: B x D
        hidden = F.relu(self.shared(condition))
        spade = self.plain_norm(x) * (1 + self.to_gamma(hidden)) + self.to_beta(hidden)
        attention = torch.sigmoid(self.attention(x))  # B x 1 x h x w
        return attention * spade + (1 - attention) * self.id_adain(x, identity)


class SPADEResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, condition_channels: int, identity_dim: int,
                 instance_norm: bool, spectral_norm: bool, hidden: int = 128):
        super().__init__()
        mid = min(in_ch, out_ch)
        self.conv_0 = maybe_spectral_norm(nn.Conv2d(in_ch, mid, 3, padding=1), spectral_norm)
        self.conv_1 = maybe_spectral_norm(nn.Conv2d(mid, out_ch, 3, padding=1), spectral_norm)
        self.norm_0 = IdentitySPADE(in_ch, condition_channels, identity_dim, instance_norm, hidden)
        self.norm_1 = IdentitySPADE(mid, condition_channels, identity_dim, instance_norm, hidden)
        if in_ch != out_ch:
            self.conv_skip = maybe_spectral_norm(nn.Conv2d(in_ch, out_ch, 1, bias=False), spectral_norm)
            self.norm_skip = IdentitySPADE(in_ch, condition_channels, identity_dim, instance_norm, hidden)
        else:
            self.conv_skip = self.norm_skip = None

    def forward(self, x: torch.Tensor, condition: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        skip = x if self.conv_skip is None else self.conv_skip(self.norm_skip(x, condition, identity))
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, condition, identity), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, condition, identity), 0.2))
        return skip + dx


class IdentitySPADEDecoder(nn.Module):
    """Identity embedding -> 4x4 (transposed conv) -> SPADE res blocks, 2x upsampling between them."""

    def __init__(self, spec: RefinementSpec):
        super().__init__()
        n, nf = spec.decoder_blocks, spec.decoder_channels
        scales = spec.source_scale_channels
        # The last len(scales) blocks each take the next finer feature scale; earlier
        # blocks all take the coarsest one (resized to their resolution).
        self.scale_of_block = [max(0, i - (n - len(scales))) for i in range(n)]
        # Widths: 16*nf for the early blocks, then halving over the last four.
        mult = [16 >> max(0, i - (n - 5)) for i in range(n)]
        in_mult = [16] + mult[:-1]
        self.stem = maybe_spectral_norm(
            nn.ConvTranspose2d(spec.identity_dim, 16 * nf, spec.decoder_start_size), spec.spectral_norm)
        self.blocks = nn.ModuleList(
            SPADEResBlock(in_mult[i] * nf, mult[i] * nf, scales[self.scale_of_block[i]] + spec.condition_extra_channels,
                          spec.identity_dim, spec.instance_norm, spec.spectral_norm, spec.spade_hidden)
            for i in range(n))
        self.to_rgb = nn.Conv2d(mult[-1] * nf, spec.image_channels, 3, padding=1)

    def forward(self, conditions: list[torch.Tensor], identity: torch.Tensor) -> torch.Tensor:
        # conditions: coarse-to-fine B x K_s x h_s x w_s; identity: B x D
        x = self.stem(identity[:, :, None, None])  # B x 16nf x 4 x 4
        for i, block in enumerate(self.blocks):
            condition = F.interpolate(conditions[self.scale_of_block[i]], size=x.shape[2:], mode="bilinear")
            x = block(x, condition, identity)
            if i < len(self.blocks) - 1:
                x = F.interpolate(x, scale_factor=2, mode="bilinear")
        return torch.tanh(self.to_rgb(F.leaky_relu(x, 0.2)))  # B x 3 x H x W


class RefinementNetwork(nn.Module):
    def __init__(self, spec: RefinementSpec):
        super().__init__()
        self.spec = spec
        self.source_encoder = Hourglass(spec.image_channels, spec.source_base, spec.source_max, spec.source_blocks,
                                        norm="instance" if spec.instance_norm else "batch")
        self.fuse_finest = nn.Conv2d(self.source_encoder.out_channels, spec.source_base, 3, padding=1)
        self.decoder = IdentitySPADEDecoder(spec)

    def encode_source(self, source: torch.Tensor) -> list[torch.Tensor]:
        """Source feature pyramid, coarse to fine. Independent of the driving frame."""
        _, scales = self.source_encoder(source, return_scales=True)
        scales[-1] = self.fuse_finest(scales[-1])
        return scales

    def forward(self, source_features: list[torch.Tensor], deformation: torch.Tensor, occlusion: torch.Tensor,
                identity: torch.Tensor, driving_subset: torch.Tensor | None = None,
                line_images: torch.Tensor | None = None, mouth_line: torch.Tensor | None = None) -> torch.Tensor:
        # source_features: coarse-to-fine; deformation: B x h x w x 2; occlusion: B x 1 x H x W
        # identity: B x D; driving_subset: B x 58 x 2 (-1..1); line_images: B x 6 x H x W; mouth_line: B x 3 x H x W
        spec = self.spec
        gaze_points = driving_subset[:, list(ROLES.gaze)] if spec.gaze_heatmaps else None  # B x 8 x 2
        conditions = []
        for feature in source_features:
            size = feature.shape[2:]
            parts = [warp(feature, deformation)]
            parts.append(occlusion if occlusion.shape[2:] == size
                         else F.interpolate(occlusion, size=size, mode="bilinear"))
            if spec.gaze_heatmaps:
                parts.append(gaussian_heatmaps(gaze_points, size[0], size[1], spec.gaze_variance))
            # Lines are resized cumulatively (each scale from the previous scale's map),
            # as the official model does; resizing from the original changes the output.
            if spec.line_images:
                line_images = F.interpolate(line_images, size=size, mode="bilinear")
                parts.append(line_images)
            if spec.mouth_line:
                mouth_line = F.interpolate(mouth_line, size=size, mode="bilinear")
                parts.append(mouth_line)
            conditions.append(torch.cat(parts, dim=1))
        return self.decoder(conditions, identity)
