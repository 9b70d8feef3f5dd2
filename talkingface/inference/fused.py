"""Inference-only rewrites of the generator's normalisation layers and SPADE blocks: the
same function with far fewer passes over memory, in either memory layout.

On a 2-core CPU one element-wise pass over a batch of 256x256 feature maps costs as
much as a small conv, and the reference SPADE block makes about fifty. The rewrite:

- computes instance norms in two cheap passes and folds the AdaIN modulation into the
  last one (torch.var_mean is slower on CPU than F.instance_norm, which is slower than
  a mean and a vector norm; F.instance_norm also copies channels_last inputs);
- normalises x once for norm_0 and norm_skip (they see the same input) and reuses that
  normalisation for the identity AdaIN branch (it is the same instance norm);
- runs the `shared` convs of norm_0 and norm_skip as one conv, their gamma/beta convs
  as one grouped conv and their attention convs as one conv (same FLOPs, fewer calls);
- blends SPADE and AdaIN algebraically:
      att * (n * (1 + gamma) + beta) + (1 - att) * (g * n + b)
    = n * (g + att * (1 + gamma - g)) + b + att * (beta - b)
  in four fused (addcmul) passes instead of about fifteen;
- with low-precision convolutions (talkingface.inference.precision), keeps in the low
  precision only the tensors whose next use is a convolution, which would round them
  anyway: the condition maps, the SPADE hidden maps, the modulated block inputs. All
  arithmetic stays float32.

Only the order of floating-point operations changes (float32 results agree to ~1e-6).
Blocks whose plain norm is batch norm (use_IN false) are left as they are.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from talkingface.inference.precision import conv_low
from talkingface.models.layers import AdaIN
from talkingface.models.refinement import IdentitySPADE, SPADEResBlock

_EPS = 1e-5  # F.instance_norm's


def centred(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x minus its per-sample, per-channel mean, and 1/std: B x C x H x W, B x C x 1 x 1.

    Two passes (the mean, then the spread of the centred values): as exact as
    F.instance_norm and on CPU faster than it and than torch.var_mean, in both layouts.
    """
    b, c, h, w = x.shape
    if c > 1 and x.is_contiguous(memory_format=torch.channels_last):
        # Reduce over the pixels of a B x HW x C view: vectorised along the channels.
        mean = x.permute(0, 2, 3, 1).reshape(b, h * w, c).mean(1)[:, :, None, None]
        d = x - mean  # stays channels_last
        flat = d.permute(0, 2, 3, 1).reshape(b, h * w, c)
        var = (flat * flat).mean(1)[:, :, None, None]
    else:
        mean = x.mean(dim=(2, 3), keepdim=True)
        d = x - mean
        var = torch.linalg.vector_norm(d, dim=(2, 3), keepdim=True).square_().div_(h * w)
    return d, torch.rsqrt(var.add_(_EPS))


def instance_norm(x: torch.Tensor) -> torch.Tensor:
    """F.instance_norm(x) without affine parameters."""
    d, rstd = centred(x)
    return d.mul_(rstd)


class InstanceNorm(nn.Module):
    """nn.InstanceNorm2d(affine=False, track_running_stats=False) for inference."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return instance_norm(x)


class FusedAdaIN(nn.Module):
    """layers.AdaIN: IN(x) * (1 + gamma(code)) + beta(code) as one pass, x * s + t."""

    def __init__(self, adain: AdaIN):
        super().__init__()
        self.shared, self.to_gamma, self.to_beta = adain.shared, adain.to_gamma, adain.to_beta

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        # x: B x C x H x W, code: B x D
        hidden = F.relu(self.shared(code.flatten(1)))
        gamma = self.to_gamma(hidden)[:, :, None, None]  # B x C x 1 x 1
        beta = self.to_beta(hidden)[:, :, None, None]
        d, rstd = centred(x)
        return torch.addcmul(beta, d, rstd * (1 + gamma), out=d)


def _stack_convs(convs: list[nn.Conv2d], groups: int = 1) -> nn.Conv2d:
    """One conv computing the outputs of `convs` one after another (channel-concatenated).

    groups=1: all read the same input. groups=len(convs): conv i reads the i-th slice of
    the input channels (a grouped conv)."""
    first = convs[0]
    stacked = nn.Conv2d(first.in_channels * groups, sum(c.out_channels for c in convs), first.kernel_size,
                        first.stride, first.padding, first.dilation, groups=groups,
                        bias=first.bias is not None).to(first.weight.device)
    with torch.no_grad():
        stacked.weight.copy_(torch.cat([c.weight for c in convs]))
        if first.bias is not None:
            stacked.bias.copy_(torch.cat([c.bias for c in convs]))
    return stacked


def _same_conv(a: nn.Module, b: nn.Module) -> bool:
    return (type(a) is type(b) is nn.Conv2d and a.in_channels == b.in_channels and a.kernel_size == b.kernel_size
            and a.stride == b.stride and a.padding == b.padding and a.dilation == b.dilation
            and a.groups == b.groups == 1 and (a.bias is None) == (b.bias is None) and a.padding_mode == "zeros")


class _FusedSPADEGroup(nn.Module):
    """k IdentitySPADE modules (k = 1 or 2) applied to the same x, condition and identity."""

    def __init__(self, norms: list[IdentitySPADE]):
        super().__init__()
        self.channels = norms[0].to_gamma.out_channels
        self.shared = _stack_convs([n.shared for n in norms])
        # Per norm: [gamma, beta] from its own slice of the hidden maps.
        self.gamma_beta = _stack_convs([_stack_convs([n.to_gamma, n.to_beta]) for n in norms], groups=len(norms))
        self.attention = _stack_convs([n.attention for n in norms])
        self.styles = nn.ModuleList(n.id_adain.style for n in norms)

    def forward(self, x: torch.Tensor, condition: torch.Tensor, identity: torch.Tensor,
                out_dtype: torch.dtype) -> list[torch.Tensor]:
        # x: B x C x h x w (float32); condition: B x K x h x w; identity: B x D -> k maps B x C x h x w
        c = self.channels
        normalised = instance_norm(x)
        hidden = F.relu_(conv_low(self.shared, condition))  # B x k*hidden x h x w, only read by a conv
        gamma_beta = conv_low(self.gamma_beta, hidden)  # B x 2kC x h x w: [gamma_1, beta_1, gamma_2, beta_2]
        attention = torch.sigmoid(self.attention(x))  # B x k x h x w
        out = []
        for i, style in enumerate(self.styles):
            g, b = style(identity)[:, :, None, None].chunk(2, dim=1)  # B x C x 1 x 1 each
            gamma = gamma_beta[:, 2 * i * c:(2 * i + 1) * c]
            beta = gamma_beta[:, (2 * i + 1) * c:(2 * i + 2) * c]
            att = attention[:, i:i + 1]
            # Out of place: a low-precision gamma / beta is promoted to float32 as it is read.
            scale = torch.addcmul(g, att, gamma + (1 - g))  # g + att * (1 + gamma - g)
            shift = torch.addcmul(b, att, beta - b)  # b + att * (beta - b)
            result = torch.empty_like(shift, dtype=out_dtype)
            out.append(torch.addcmul(shift, normalised, scale, out=result))
        return out


class FusedSPADEResBlock(nn.Module):
    """`SPADEResBlock` for inference, built from a loaded one (its weights are copied)."""

    def __init__(self, block: SPADEResBlock):
        super().__init__()
        self.has_skip = block.conv_skip is not None
        first = [block.norm_skip, block.norm_0] if self.has_skip else [block.norm_0]
        self.first = _FusedSPADEGroup(first)
        self.second = _FusedSPADEGroup([block.norm_1])
        self.conv_0, self.conv_1, self.conv_skip = block.conv_0, block.conv_1, block.conv_skip

    @staticmethod
    def supports(block: nn.Module) -> bool:
        if type(block) is not SPADEResBlock:
            return False
        norms = [block.norm_0, block.norm_1] + ([block.norm_skip] if block.conv_skip is not None else [])
        if any(type(n) is not IdentitySPADE or type(n.plain_norm) is not nn.InstanceNorm2d
               or n.plain_norm.affine or n.plain_norm.track_running_stats
               or not all(type(m) is nn.Conv2d and m.padding_mode == "zeros"
                          for m in (n.shared, n.to_gamma, n.to_beta, n.attention)) for n in norms):
            return False
        if block.conv_skip is not None:
            a, b = block.norm_skip, block.norm_0
            if not (_same_conv(a.shared, b.shared) and _same_conv(a.to_gamma, b.to_gamma)
                    and _same_conv(a.attention, b.attention)):
                return False
        return True

    def forward(self, x: torch.Tensor, condition: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        # x: B x C_in x h x w; condition: B x K x h x w; identity: B x D -> B x C_out x h x w (float32)
        low = self.conv_0.weight.dtype  # float32 unless the convs were lowered
        condition = condition.to(low)  # read by two or three convs: cast once
        modulated = self.first(x, condition, identity, low)
        skip = self.conv_skip(modulated[0]) if self.has_skip else x
        dx = self.conv_0(F.leaky_relu_(modulated[-1], 0.2))  # float32: normalised next
        (modulated,) = self.second(dx, condition, identity, low)
        dx = conv_low(self.conv_1, F.leaky_relu_(modulated, 0.2))
        return skip + dx  # float32 (a low-precision dx is promoted)


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def fuse_for_inference(model: nn.Module) -> dict[str, int]:
    """In place: supported SPADE blocks -> FusedSPADEResBlock, AdaIN -> FusedAdaIN,
    plain InstanceNorm2d -> InstanceNorm. Returns how many of each were replaced."""
    counts = {"spade_blocks": 0, "adain": 0, "instance_norm": 0}
    for name, m in list(model.named_modules()):
        if FusedSPADEResBlock.supports(m):
            _replace(model, name, FusedSPADEResBlock(m))
            counts["spade_blocks"] += 1
    for name, m in list(model.named_modules()):
        if type(m) is AdaIN:
            _replace(model, name, FusedAdaIN(m))
            counts["adain"] += 1
        elif type(m) is nn.InstanceNorm2d and not m.affine and not m.track_running_stats:
            _replace(model, name, InstanceNorm())
            counts["instance_norm"] += 1
    return counts


def fuse_spade_blocks(model: nn.Module) -> int:
    """Only the SPADE blocks of `fuse_for_inference`. Returns how many were replaced."""
    targets = [(name, m) for name, m in model.named_modules() if FusedSPADEResBlock.supports(m)]
    for name, block in targets:
        _replace(model, name, FusedSPADEResBlock(block))
    return len(targets)
