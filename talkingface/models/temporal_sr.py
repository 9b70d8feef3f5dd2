"""Temporal face super-resolution (MetaPortrait's `GFPGANv1Clean_UnetWindow`), x2.

A GFPGAN-style U-Net predicts StyleGAN2 latents and spatial (SFT) scale/shift maps;
a frozen StyleGAN2 generator renders the 512x512 face under those modulations. To
keep frames consistent, every U-Net level has a *temporal window* block that mixes
each frame's features with those of its two neighbours.

Module and attribute names follow the official state-dict keys of
`temporal_gfpgan.pth` (`conv_body_down.3.skip.weight`, `stylegan_decoder.noises.noise7`,
...), so official checkpoints load without renaming. Pure PyTorch: no compiled ops.

Frames are independent everywhere except in the temporal window blocks, each of
which sees one frame either side (the clip's first and last frames are repeated
there). `TemporalSRNet.temporal_radius` counts those blocks: output frame t depends
on input frames t - radius .. t + radius, which is what windowed inference needs.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from talkingface.config.convert import convert_fields
from talkingface.errors import ConfigError

OFFICIAL_ARCH_NAME = "GFPGANv1Clean_UnetWindow"
# Official `network_g` options that say where to load weights from, not what to build;
# the training recipe reads them, the architecture config accepts and ignores them.
LOAD_PATH_OPTIONS = ("decoder_load_path", "GFPGANv1_load_path")


@dataclass(frozen=True)
class TemporalSRConfig:
    """Architecture hyper-parameters; field names are the official `network_g` options.

    The defaults are the official configuration (`sr_manifest.json["config"]`).
    """

    out_size: int = 512  # output side; inputs are out_size/2 (upscaled x2) or out_size
    num_style_feat: int = 512  # StyleGAN2 latent width
    channel_multiplier: int = 2  # StyleGAN2 width multiplier for resolutions >= 64
    fix_decoder: bool = True  # the StyleGAN2 decoder is frozen (requires_grad=False)
    num_mlp: int = 8  # StyleGAN2 mapping-network depth (unused when input_is_latent)
    input_is_latent: bool = True  # the U-Net predicts W latents directly, skipping the mapping MLP
    different_w: bool = True  # one latent per decoder layer (2*log2(out_size) - 2 of them)
    narrow: float = 1.0  # width ratio of everything; the U-Net is half as wide as the decoder
    sft_half: bool = True  # SFT modulates only the second half of the decoder channels
    return_rgb: bool = False  # official option for training-time intermediate RGBs; inference ignores it
    randomize_noise: str | bool = "zero"  # "zero" (official), "stored" / False, "random" / True
    zero_out_init: bool = True  # temporal blocks start as identity (their last conv is zero)
    temp_type: str = "unet_window"  # only the released variant is implemented

    def __post_init__(self) -> None:
        if self.out_size < 8 or self.out_size & (self.out_size - 1):
            raise ConfigError(f"out_size must be a power of two >= 8, got {self.out_size}")
        if self.temp_type != "unet_window":
            raise ConfigError(f"temp_type {self.temp_type!r} is not supported (only 'unet_window', "
                              "the variant of the released temporal_gfpgan.pth)")
        _ = self.noise_mode  # raises on an unknown randomize_noise
        for name, ch in {**self.unet_channels(), **self.decoder_channels()}.items():
            if ch < 1:
                raise ConfigError(f"narrow={self.narrow} leaves no channels at resolution {name}")

    @property
    def noise_mode(self) -> str:
        """Normalise the official spellings: 'zero', True (random) or False (stored buffers)."""
        value = self.randomize_noise
        if value is True or value == "random":
            return "random"
        if value is False or value == "stored":
            return "stored"
        if value == "zero":
            return "zero"
        raise ConfigError(f"randomize_noise must be 'zero', 'stored', 'random', true or false; got {value!r}")

    @property
    def log_size(self) -> int:
        return int(math.log2(self.out_size))

    @property
    def num_latents(self) -> int:
        """Latents the decoder consumes: 2 per resolution from 8 up, plus 2 at 4x4."""
        return 2 * self.log_size - 2

    def _full_width(self) -> dict[int, int]:
        """StyleGAN2's channel table at narrow = 1, for resolutions 4 .. out_size."""
        if self.out_size > 1024:
            raise ConfigError(f"out_size {self.out_size} is larger than the 1024 the channel table covers")
        m = self.channel_multiplier
        table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * m, 128: 128 * m, 256: 64 * m, 512: 32 * m,
                 1024: 16 * m}
        return {r: table[r] for r in (2 ** i for i in range(2, self.log_size + 1))}

    def decoder_channels(self) -> dict[int, int]:
        """StyleGAN2 channels per resolution (4 .. out_size)."""
        return {r: int(c * self.narrow) for r, c in self._full_width().items()}

    def unet_channels(self) -> dict[int, int]:
        """U-Net channels per resolution: half the decoder's, so sft_half maps match it."""
        return {r: int(c * self.narrow * 0.5) for r, c in self._full_width().items()}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str | None = None) -> "TemporalSRConfig":
        """Parse an official `network_g` block (or our saved config); unknown keys are errors."""
        values = {k: v for k, v in values.items() if k not in LOAD_PATH_OPTIONS}
        arch = values.pop("type", OFFICIAL_ARCH_NAME)
        where = f" in {source}" if source else ""
        if arch != OFFICIAL_ARCH_NAME:
            raise ConfigError(f"network type {arch!r}{where} is not {OFFICIAL_ARCH_NAME}")
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown temporal SR option(s){where}: {', '.join(unknown)}")
        try:  # the config converter's type rules (talkingface.config.convert): e.g. an int is not 2.0
            typed = convert_fields(cls, values, "network_g")
        except ConfigError as e:
            raise ConfigError(e.message + (f" (in {source})" if source and source != "network_g" else "")) from None
        return cls(**typed)


# --------------------------------------------------------------------------- U-Net parts
def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, negative_slope=0.2)


class ResBlock(nn.Module):
    """conv3x3 -> resample -> conv3x3, plus a resampled 1x1 skip. Resampling is bilinear x2 or x0.5."""

    def __init__(self, in_channels: int, out_channels: int, scale: float):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.scale = scale

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _lrelu(self.conv2(self._resample(_lrelu(self.conv1(x)))))
        return out + self.skip(self._resample(x))


class TemporalWindow(nn.Module):
    """Residual mix of each frame with its neighbours: x_t + conv(lrelu(conv([x_t-1, x_t, x_t+1]))).

    The clip's edge frames stand in for their missing neighbours. With `zero_init`
    the second conv starts at zero, so the block starts as the identity (and a
    GFPGAN initialisation behaves exactly like GFPGAN).
    """

    radius = 1  # frames of context each side

    def __init__(self, channels: int, zero_init: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(3 * channels, 3 * channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(3 * channels, channels, 3, 1, 1)
        if zero_init:
            nn.init.zeros_(self.conv2.weight)
            nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        # x: (B*N) x C x H x W, frames of one clip contiguous
        bn, c, h, w = x.shape
        clip = x.view(bn // num_frames, num_frames, c, h, w)
        padded = torch.cat([clip[:, :1], clip, clip[:, -1:]], dim=1)  # B x (N+2) x C x H x W
        # channel order: previous, current, next (as the official weights expect)
        stacked = torch.cat([padded[:, :-2], padded[:, 1:-1], padded[:, 2:]], dim=2)  # B x N x 3C x H x W
        mixed = self.conv2(_lrelu(self.conv1(stacked.view(bn, 3 * c, h, w))))
        return x + mixed


# --------------------------------------------------------------------------- StyleGAN2 ("clean")
class NormStyleCode(nn.Module):
    """Pixel norm of a style code over its feature dimension (the mapping MLP's first step)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-8)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution, no bias; optional bilinear x2 upsampling of the input first.

    Computed as conv(x * s, w) * d, which equals conv(x, w * s * d) (the textbook
    per-sample-weight form) but runs as one ordinary convolution over the batch.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_style_feat: int,
                 demodulate: bool, upsample: bool, eps: float = 1e-8):
        super().__init__()
        self.modulation = nn.Linear(num_style_feat, in_channels)
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size)
                                   / math.sqrt(in_channels * kernel_size ** 2))
        nn.init.kaiming_normal_(self.modulation.weight, a=0, mode="fan_in", nonlinearity="linear")
        nn.init.ones_(self.modulation.bias)  # styles start near 1: plain convolution
        self.demodulate = demodulate
        self.upsample = upsample
        self.eps = eps
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        # x: b x Cin x H x W; style: b x num_style_feat
        s = self.modulation(style)  # b x Cin
        weight = self.weight[0]  # Cout x Cin x k x k
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        out = F.conv2d(x * s[:, :, None, None], weight, padding=self.padding)  # b x Cout x H' x W'
        if self.demodulate:
            # |w * s| per output channel: sum_{i,k} w[o,i,k]^2 s[i]^2
            energy = (s.pow(2) @ weight.pow(2).sum(dim=(2, 3)).t())  # b x Cout
            out = out * torch.rsqrt(energy + self.eps)[:, :, None, None]
        return out


class StyleConv(nn.Module):
    """Modulated conv (x sqrt(2) gain), optional noise, bias, LeakyReLU(0.2)."""

    def __init__(self, in_channels: int, out_channels: int, num_style_feat: int, upsample: bool):
        super().__init__()
        self.modulated_conv = ModulatedConv2d(in_channels, out_channels, 3, num_style_feat, demodulate=True,
                                              upsample=upsample)
        self.weight = nn.Parameter(torch.zeros(1))  # noise strength
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        out = self.modulated_conv(x, style) * math.sqrt(2)
        if noise is not None:  # None: the 'zero' noise mode, which adds exactly nothing
            out = out + self.weight * noise
        return _lrelu(out + self.bias)


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB (no demodulation), plus the upsampled running image."""

    def __init__(self, in_channels: int, num_style_feat: int, upsample_skip: bool):
        super().__init__()
        self.modulated_conv = ModulatedConv2d(in_channels, 3, 1, num_style_feat, demodulate=False, upsample=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.upsample_skip = upsample_skip

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.modulated_conv(x, style) + self.bias
        if skip is not None:
            if self.upsample_skip:
                skip = F.interpolate(skip, scale_factor=2, mode="bilinear", align_corners=False)
            out = out + skip
        return out


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.weight.expand(batch, -1, -1, -1)


class StyleGAN2DecoderSFT(nn.Module):
    """StyleGAN2 generator (no custom CUDA ops) whose features are modulated by SFT maps.

    After the first (upsampling) conv of each resolution from 8 up, the features
    become `x * scale + shift` (on the second half of the channels with sft_half).
    """

    def __init__(self, cfg: TemporalSRConfig):
        super().__init__()
        ch = cfg.decoder_channels()
        self.sft_half = cfg.sft_half
        layers: list[nn.Module] = [NormStyleCode()]
        for _ in range(cfg.num_mlp):  # keys style_mlp.1, .3, ...: Linear at odd positions
            layers += [nn.Linear(cfg.num_style_feat, cfg.num_style_feat), nn.LeakyReLU(0.2)]
        self.style_mlp = nn.Sequential(*layers)
        self.constant_input = ConstantInput(ch[4], 4)
        self.style_conv1 = StyleConv(ch[4], ch[4], cfg.num_style_feat, upsample=False)
        self.to_rgb1 = ToRGB(ch[4], cfg.num_style_feat, upsample_skip=False)
        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_ch = ch[4]
        for res in [2 ** i for i in range(3, cfg.log_size + 1)]:
            self.style_convs.append(StyleConv(in_ch, ch[res], cfg.num_style_feat, upsample=True))
            self.style_convs.append(StyleConv(ch[res], ch[res], cfg.num_style_feat, upsample=False))
            self.to_rgbs.append(ToRGB(ch[res], cfg.num_style_feat, upsample_skip=True))
            in_ch = ch[res]
        # Per-layer noise images: layer 0 at 4x4, then two per resolution.
        self.num_noise_layers = 2 * (cfg.log_size - 2) + 1
        self.noises = nn.Module()
        for i in range(self.num_noise_layers):
            res = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise{i}", torch.randn(1, 1, res, res))

    def noise_inputs(self, mode: str, batch: int) -> list[torch.Tensor | None]:
        stored = [getattr(self.noises, f"noise{i}") for i in range(self.num_noise_layers)]
        if mode == "zero":
            return [None] * len(stored)
        if mode == "stored":
            return stored
        return [torch.randn(batch, 1, *n.shape[2:], device=n.device, dtype=n.dtype) for n in stored]

    def forward(self, latents: torch.Tensor, conditions: list[tuple[torch.Tensor, torch.Tensor]],
                noise_mode: str) -> torch.Tensor:
        # latents: b x num_latents x num_style_feat (W space); conditions: (scale, shift) per resolution 8..
        b = latents.shape[0]
        noise = self.noise_inputs(noise_mode, b)
        out = self.style_conv1(self.constant_input(b), latents[:, 0], noise[0])  # b x C4 x 4 x 4
        image = self.to_rgb1(out, latents[:, 1])  # b x 3 x 4 x 4
        for level, to_rgb in enumerate(self.to_rgbs):
            k = 2 * level + 1  # latent / noise index of this resolution's first conv
            out = self.style_convs[2 * level](out, latents[:, k], noise[k])  # b x C x 2h x 2w
            if level < len(conditions):
                scale, shift = conditions[level]
                if self.sft_half:
                    kept, modulated = torch.split(out, out.shape[1] // 2, dim=1)
                    out = torch.cat([kept, modulated * scale + shift], dim=1)
                else:
                    out = out * scale + shift
            out = self.style_convs[2 * level + 1](out, latents[:, k + 1], noise[k + 1])
            image = to_rgb(out, latents[:, k + 2], image)  # b x 3 x 2h x 2w
        return image


# --------------------------------------------------------------------------- the network
def _sft_head(channels: int, out_channels: int) -> nn.Sequential:
    """conv3x3, LeakyReLU, conv3x3 (keys .0 and .2)."""
    return nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1), nn.LeakyReLU(0.2),
                         nn.Conv2d(channels, out_channels, 3, 1, 1))


class TemporalSRNet(nn.Module):
    """Clip in, clip out: B x N x 3 x H x W in 0..1 -> B x N x 3 x out_size x out_size, about 0..1.

    H = W = out_size / 2 is upscaled x2 (bilinear) first; H = out_size is used as is.
    The output is not clamped (as in the reference); clamp when converting to pixels.
    """

    def __init__(self, cfg: TemporalSRConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg if cfg is not None else TemporalSRConfig()
        unet = cfg.unet_channels()
        levels = cfg.log_size - 2  # resolution halvings from out_size down to 4
        up_res = [2 ** i for i in range(3, cfg.log_size + 1)]  # 8 .. out_size

        self.conv_body_first = nn.Conv2d(3, unet[cfg.out_size], 1)
        self.conv_body_down = nn.ModuleList()
        self.window_down = nn.ModuleList()
        in_ch = unet[cfg.out_size]
        for res in reversed(up_res):  # block output at res/2
            out_ch = unet[res // 2]
            self.conv_body_down.append(ResBlock(in_ch, out_ch, scale=0.5))
            self.window_down.append(TemporalWindow(out_ch, cfg.zero_out_init))
            in_ch = out_ch
        self.final_conv = nn.Conv2d(in_ch, unet[4], 3, 1, 1)

        self.conv_body_up = nn.ModuleList()
        in_ch = unet[4]
        for res in up_res:
            self.conv_body_up.append(ResBlock(in_ch, unet[res], scale=2.0))
            in_ch = unet[res]
        # Training-time auxiliary RGB heads; kept for checkpoint compatibility, unused at inference.
        self.toRGB = nn.ModuleList(nn.Conv2d(unet[res], 3, 1) for res in up_res)

        latent_width = cfg.num_latents * cfg.num_style_feat if cfg.different_w else cfg.num_style_feat
        self.final_linear = nn.Linear(unet[4] * 4 * 4, latent_width)

        self.stylegan_decoder = StyleGAN2DecoderSFT(cfg)
        if cfg.fix_decoder:
            self.stylegan_decoder.requires_grad_(False)

        self.condition_scale = nn.ModuleList()
        self.condition_shift = nn.ModuleList()
        self.recurrent_forward = nn.ModuleList()  # the decoder-side temporal windows (official name)
        for res in up_res:
            sft_ch = unet[res] if cfg.sft_half else 2 * unet[res]
            self.condition_scale.append(_sft_head(unet[res], sft_ch))
            self.condition_shift.append(_sft_head(unet[res], sft_ch))
            # The window mixes U-Net features (unet[res] channels). The reference sizes it
            # with the SFT width, the same number under sft_half, the only working setting.
            self.recurrent_forward.append(TemporalWindow(unet[res], cfg.zero_out_init))
        assert len(self.conv_body_down) == len(self.conv_body_up) == levels

    @property
    def temporal_radius(self) -> int:
        """Frames of context each side that one output frame depends on."""
        return sum(m.radius for m in self.modules() if isinstance(m, TemporalWindow))

    @property
    def input_size(self) -> int:
        """The frame size the network was trained on (it upscales these x2)."""
        return self.cfg.out_size // 2

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        b, n, c, h, w = clip.shape  # B x N x 3 x H x W, 0..1
        if c != 3 or h != w or h not in (self.cfg.out_size, self.cfg.out_size // 2):
            raise ValueError(f"expected B x N x 3 x S x S frames with S = {self.cfg.out_size // 2} or "
                             f"{self.cfg.out_size}, got {tuple(clip.shape)}")
        x = clip.reshape(b * n, c, h, w) * 2.0 - 1.0  # BN x 3 x S x S, -1..1
        if h != self.cfg.out_size:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)  # BN x 3 x O x O

        # Encoder: O -> 4, a temporal window after every halving.
        feat = _lrelu(self.conv_body_first(x))  # BN x C_O x O x O
        skips = []
        for down, window in zip(self.conv_body_down, self.window_down):
            feat = window(down(feat), n)  # BN x C_r x r x r, r = O/2 .. 4
            skips.append(feat)
        feat = _lrelu(self.final_conv(feat))  # BN x C_4 x 4 x 4

        latents = self.final_linear(feat.flatten(1))  # BN x (L*S) or BN x S
        if self.cfg.different_w:
            latents = latents.view(b * n, self.cfg.num_latents, self.cfg.num_style_feat)  # BN x L x S
        if not self.cfg.input_is_latent:
            latents = self.stylegan_decoder.style_mlp(latents)  # Z -> W (per latent)
        if not self.cfg.different_w:
            latents = latents[:, None].expand(-1, self.cfg.num_latents, -1)  # BN x L x S

        # Decoder: 4 -> O, adding the encoder skips; SFT maps per resolution.
        conditions = []
        for i, up in enumerate(self.conv_body_up):
            feat = up(feat + skips[-1 - i])  # BN x C_r x r x r, r = 8 .. O
            feat = self.recurrent_forward[i](feat, n)
            conditions.append((self.condition_scale[i](feat), self.condition_shift[i](feat)))

        image = self.stylegan_decoder(latents, conditions, self.cfg.noise_mode)  # BN x 3 x O x O, ~-1..1
        return ((image + 1.0) / 2.0).view(b, n, 3, self.cfg.out_size, self.cfg.out_size)
