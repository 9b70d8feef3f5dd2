"""Inference-only rewrites of the generator's normalisation layers and SPADE blocks: the
same function with far fewer passes over memory, in either memory layout.

On a 2-core CPU one element-wise pass over a batch of 256x256 feature maps costs as
much as a small conv, and the reference SPADE block makes about fifty. The rewrite:

- computes instance norms in two cheap passes and folds the AdaIN modulation into the
  last one (torch.var_mean is slower on CPU than F.instance_norm, which is slower than
  a mean and a vector norm; F.instance_norm also copies channels_last inputs);
- normalises x once for norm_0 and norm_skip (they see the same input) and reuses that
  normalisation for the identity AdaIN branch (it is the same instance norm);
- runs each norm's gamma and beta convs as one conv, and the attention convs of norm_0
  and norm_skip as one conv (same FLOPs, fewer and larger calls);
- blends SPADE and AdaIN algebraically:
      att * (n * (1 + gamma) + beta) + (1 - att) * (g * n + b)
    = n * (g + att * (1 + gamma - g)) + b + att * (beta - b)
  in three passes instead of about fifteen;
- with low-precision convolutions (talkingface.inference.precision), keeps in the low
  precision only tensors whose next use is a convolution, which would round them
  anyway (the condition maps, the SPADE hidden maps). All arithmetic stays float32.

Only the order of floating-point operations changes (float32 results agree to ~1e-6).
Blocks whose plain norm is batch norm (use_IN false) are left as they are.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from talkingface.inference.precision import conv_low
from talkingface.models.layers import AdaIN, ConvNormReLU, DownBlock, LayerNorm2d, UpBlock
from talkingface.models.refinement import IdentitySPADE, IdentitySPADEDecoder, SPADEResBlock

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


def _addcmul_into(target: torch.Tensor, base: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """base + a * b written over `target` (one pass, no allocation) in eager mode; out of
    place under torch.compile, which cannot trace out= into channels_last tensors and
    fuses the ops anyway."""
    if torch.compiler.is_compiling():
        return torch.addcmul(base, a, b)
    return torch.addcmul(base, a, b, out=target)


def instance_norm(x: torch.Tensor) -> torch.Tensor:
    """F.instance_norm(x) without affine parameters."""
    d, rstd = centred(x)
    return d.mul_(rstd)


def _layout_of(x: torch.Tensor) -> torch.memory_format:
    channels_last = x.dim() == 4 and x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if channels_last else torch.contiguous_format


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
        return _addcmul_into(d, beta, d, rstd * (1 + gamma))


class FusedLayerNorm2d(nn.Module):
    """layers.LayerNorm2d (each sample normalised over C x H x W, then a per-channel
    affine) for any memory layout: F.layer_norm copies channels_last inputs."""

    def __init__(self, norm: LayerNorm2d):
        super().__init__()
        self.weight, self.bias = norm.weight, norm.bias  # C x 1 x 1 each

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: B x C x H x W
        mean = x.mean(dim=(1, 2, 3), keepdim=True)  # B x 1 x 1 x 1
        d = x - mean
        var = (d * d).mean(dim=(1, 2, 3), keepdim=True)
        scale = torch.rsqrt(var.add_(_EPS)) * self.weight  # B x C x 1 x 1
        return _addcmul_into(d, self.bias, d, scale)


def nearest_up_conv(conv: nn.Conv2d) -> nn.ConvTranspose2d:
    """conv(F.interpolate(x, scale_factor=2)) as one stride-2 transposed conv on x.

    Each output pixel of a 3x3 conv over a nearest-upsampled map reads only 2x2 distinct
    input pixels, so the 3x3 taps collapse to a 4-tap transposed kernel per axis,
    [w2, w1 + w2, w0 + w1, w0] (padding 1): 16 instead of 36 multiply-adds per input
    pixel and output pair, and the upsampled map is never built."""
    collapse = torch.tensor([[0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=conv.weight.dtype,
                            device=conv.weight.device)
    kernel = torch.einsum("ay,oiyx,bx->oiab", collapse, conv.weight.detach(), collapse)  # C_out x C_in x 4 x 4
    with torch.device("meta"):  # no random init of weights that are replaced next
        up = nn.ConvTranspose2d(conv.in_channels, conv.out_channels, 4, stride=2, padding=1,
                                bias=conv.bias is not None)
    up.weight = nn.Parameter(kernel.transpose(0, 1).contiguous(), requires_grad=False)  # stored C_in x C_out
    if conv.bias is not None:
        up.bias = nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
    return up


def _plain_3x3(conv: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros")


class FusedConvNormReLU(nn.Module):
    """layers.ConvNormReLU / DownBlock / UpBlock for inference: the ReLU in place, and an
    UpBlock's nearest upsampling folded into its conv (`nearest_up_conv`)."""

    def __init__(self, block: ConvNormReLU):
        super().__init__()
        self.kind = "up" if type(block) is UpBlock else "down" if type(block) is DownBlock else "plain"
        self.conv = nearest_up_conv(block.conv) if self.kind == "up" else block.conv
        self.norm, self.conditioned = block.norm, block.conditioned
        self.extra = getattr(block, "extra", None)

    @staticmethod
    def supports(block: nn.Module) -> bool:
        return type(block) in (ConvNormReLU, DownBlock, UpBlock) and (type(block) is not UpBlock
                                                                      or _plain_3x3(block.conv))

    def forward(self, x: torch.Tensor, code: torch.Tensor | None = None) -> torch.Tensor:
        # x: B x C_in x H x W -> B x C_out x H' x W' (H' = H/2 down, 2H up, H plain)
        x = self.conv(x)
        x = F.relu_(self.norm(x, code) if self.conditioned else self.norm(x))  # the norm's output is new
        if self.kind == "down":
            x = F.avg_pool2d(x, 2)
        return self.extra(x, code) if self.extra is not None else x


def _stack_convs(convs: list[nn.Conv2d], groups: int = 1) -> nn.Conv2d:
    """One conv computing the outputs of `convs` one after another (channel-concatenated).

    groups=1: all read the same input. groups=len(convs): conv i reads the i-th slice of
    the input channels (a grouped conv)."""
    first = convs[0]
    with torch.device("meta"):  # no random init of weights that are replaced next
        stacked = nn.Conv2d(first.in_channels * groups, sum(c.out_channels for c in convs), first.kernel_size,
                            first.stride, first.padding, first.dilation, groups=groups,
                            bias=first.bias is not None)
    stacked.weight = nn.Parameter(torch.cat([c.weight.detach() for c in convs]), requires_grad=False)
    if first.bias is not None:
        stacked.bias = nn.Parameter(torch.cat([c.bias.detach() for c in convs]), requires_grad=False)
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
        # Separate `shared` convs: measured faster than one stacked conv feeding a grouped one.
        self.shared = nn.ModuleList(n.shared for n in norms)
        self.gamma_beta = nn.ModuleList(_stack_convs([n.to_gamma, n.to_beta]) for n in norms)
        self.attention = _stack_convs([n.attention for n in norms])
        self.styles = nn.ModuleList(n.id_adain.style for n in norms)

    def forward(self, x: torch.Tensor, condition: torch.Tensor, identity: torch.Tensor) -> list[torch.Tensor]:
        # x: B x C x h x w (float32); condition: B x K x h x w; identity: B x D -> k maps B x C x h x w
        c = self.channels
        normalised = instance_norm(x)
        attention = torch.sigmoid(self.attention(x))  # B x k x h x w
        out = []
        for i, (shared, gamma_beta, style) in enumerate(zip(self.shared, self.gamma_beta, self.styles)):
            hidden = F.relu_(conv_low(shared, condition))  # only read by the next conv: left in its precision
            # [gamma, beta] -> [scale, shift] in place on one contiguous B x 2C x h x w tensor:
            #   scale = g + att * (1 + gamma - g),  shift = b + att * (beta - b)
            modulation = gamma_beta(hidden)  # float32
            g, b = style(identity)[:, :, None, None].chunk(2, dim=1)  # B x C x 1 x 1 each
            modulation.add_(torch.cat([1 - g, -b], dim=1))
            modulation = _addcmul_into(modulation, torch.cat([g, b], dim=1), attention[:, i:i + 1], modulation)
            out.append(torch.addcmul(modulation[:, c:], normalised, modulation[:, :c]))
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
        # Read by two or three convs: cast once, into x's layout (a conv would reorder it each time).
        condition = condition.to(dtype=self.conv_0.weight.dtype, memory_format=_layout_of(x))
        modulated = self.first(x, condition, identity)
        skip = self.conv_skip(modulated[0]) if self.has_skip else x
        dx = self.conv_0(F.leaky_relu_(modulated[-1], 0.2))  # float32: normalised next
        (modulated,) = self.second(dx, condition, identity)
        dx = conv_low(self.conv_1, F.leaky_relu_(modulated, 0.2))
        return skip + dx  # float32 (a low-precision dx is promoted)


class FusedDecoder(nn.Module):
    """IdentitySPADEDecoder for inference: each condition scale is cast once (to the
    convs' precision and x's layout) and reused by every block at its size, instead of
    being resized to the same size (an exact copy) and cast again per block."""

    def __init__(self, decoder: IdentitySPADEDecoder):
        super().__init__()
        self.stem, self.blocks, self.to_rgb = decoder.stem, decoder.blocks, decoder.to_rgb
        self.scale_of_block = list(decoder.scale_of_block)

    def forward(self, conditions: list[torch.Tensor], identity: torch.Tensor) -> torch.Tensor:
        # conditions: coarse-to-fine B x K_s x h_s x w_s; identity: B x D -> B x 3 x H x W
        x = self.stem(identity[:, :, None, None])  # B x 16nf x 4 x 4
        low = _conv_dtype(self.blocks[0])
        prepared: dict[int, torch.Tensor] = {}
        for i, block in enumerate(self.blocks):
            scale = self.scale_of_block[i]
            layout = _layout_of(x)
            if conditions[scale].shape[2:] == x.shape[2:]:
                if scale not in prepared:
                    prepared[scale] = conditions[scale].to(dtype=low, memory_format=layout)
                condition = prepared[scale]
            else:
                condition = F.interpolate(conditions[scale], size=x.shape[2:], mode="bilinear")
            x = block(x, condition, identity)
            if i < len(self.blocks) - 1:
                x = F.interpolate(x, scale_factor=2, mode="bilinear")
        return torch.tanh(self.to_rgb(F.leaky_relu(x, 0.2)))  # B x 3 x H x W


def _conv_dtype(block: nn.Module) -> torch.dtype:
    return block.conv_0.weight.dtype if hasattr(block, "conv_0") else torch.float32


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def fuse_for_inference(model: nn.Module) -> dict[str, int]:
    """In place: supported SPADE blocks -> FusedSPADEResBlock (and their decoder ->
    FusedDecoder), hourglass conv blocks -> FusedConvNormReLU, AdaIN -> FusedAdaIN,
    plain InstanceNorm2d -> InstanceNorm, LayerNorm2d -> FusedLayerNorm2d. Returns how
    many of each were replaced."""
    counts = {"spade_blocks": 0, "decoders": 0, "conv_blocks": 0, "adain": 0, "instance_norm": 0,
              "layer_norm": 0}
    for name, m in list(model.named_modules()):
        if FusedSPADEResBlock.supports(m):
            _replace(model, name, FusedSPADEResBlock(m))
            counts["spade_blocks"] += 1
    for name, m in list(model.named_modules()):
        if type(m) is IdentitySPADEDecoder and all(isinstance(b, FusedSPADEResBlock) for b in m.blocks):
            _replace(model, name, FusedDecoder(m))
            counts["decoders"] += 1
    for name, m in list(model.named_modules()):
        if FusedConvNormReLU.supports(m):
            _replace(model, name, FusedConvNormReLU(m))
            counts["conv_blocks"] += 1
    for name, m in list(model.named_modules()):
        if type(m) is AdaIN:
            _replace(model, name, FusedAdaIN(m))
            counts["adain"] += 1
        elif type(m) is nn.InstanceNorm2d and not m.affine and not m.track_running_stats:
            _replace(model, name, InstanceNorm())
            counts["instance_norm"] += 1
        elif type(m) is LayerNorm2d:
            _replace(model, name, FusedLayerNorm2d(m))
            counts["layer_norm"] += 1
    return counts


def fuse_spade_blocks(model: nn.Module) -> int:
    """Only the SPADE blocks of `fuse_for_inference`. Returns how many were replaced."""
    targets = [(name, m) for name, m in model.named_modules() if FusedSPADEResBlock.supports(m)]
    for name, block in targets:
        _replace(model, name, FusedSPADEResBlock(block))
    return len(targets)
