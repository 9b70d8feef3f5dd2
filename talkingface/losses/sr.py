"""Temporal super-resolution losses (reference section 5): L1, VGG19 perceptual and style.

Weights come from the config (`train.pixel_opt`, `train.perceptual_opt`); the
reference's are L1 x0.1, perceptual on conv1_2 0.1, conv2_2 0.1, conv3_4 1,
conv4_4 1, conv5_4 1 (conv outputs before their ReLU), and style x50 on the Gram
matrices of the same layers with the same per-layer weights. Clips are scored frame
by frame: B x T frames are one batch of B*T images, as the reference flattens them.
"""
from __future__ import annotations

import torch
from torch import nn

from talkingface.config.sr import PerceptualLossConfig, PixelLossConfig, active_layers
from talkingface.losses.vgg import VGG19Features


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """N x C x H x W -> N x C x C, normalised by C*H*W (in float32: fp16 sums overflow)."""
    n, c, h, w = features.shape
    f = features.float().reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def _distance(a: torch.Tensor, b: torch.Tensor, criterion: str) -> torch.Tensor:
    diff = a.float() - b.float()
    if criterion == "l1":
        return diff.abs().mean()
    if criterion == "l2":
        return diff.pow(2).mean()
    return diff.pow(2).sum().sqrt()  # "fro": the Frobenius norm of the whole difference


class SRLoss(nn.Module):
    """`forward(pred, gt)` on B x T x 3 x H x W (or N x 3 x H x W) in 0..1 -> the weighted terms.

    Keys: `l_pix`, `l_percep`, `l_style` (the reference's log names), each present
    only when its weight is non-zero.
    """

    def __init__(self, pixel: PixelLossConfig | None, perceptual: PerceptualLossConfig | None,
                 vgg: VGG19Features | None):
        super().__init__()
        self.pixel = pixel
        self.perceptual = perceptual
        self.layers = active_layers(perceptual.layer_weights) if perceptual is not None else {}
        if self.needs_vgg and vgg is None:
            raise ValueError("the perceptual/style losses need a VGG19")
        self.vgg = vgg if self.needs_vgg else None

    @property
    def needs_vgg(self) -> bool:
        p = self.perceptual
        return p is not None and bool(p.perceptual_weight or p.style_weight)

    def _features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        p = self.perceptual
        if p.range_norm:
            x = (x + 1) / 2
        return self.vgg.named_features(x, list(self.layers), normalize=p.use_input_norm)

    def forward(self, pred: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ")
        if pred.ndim == 5:
            pred, gt = pred.flatten(0, 1), gt.flatten(0, 1)  # B*T x 3 x H x W
        losses: dict[str, torch.Tensor] = {}
        if self.pixel is not None and self.pixel.loss_weight:
            losses["l_pix"] = self.pixel.loss_weight * (pred.float() - gt.float()).abs().mean()
        if self.needs_vgg:
            p = self.perceptual
            fp = self._features(pred)
            with torch.no_grad():
                fg = self._features(gt)
            if p.perceptual_weight:
                losses["l_percep"] = p.perceptual_weight * sum(
                    w * _distance(fp[k], fg[k], p.criterion) for k, w in self.layers.items())
            if p.style_weight:
                losses["l_style"] = p.style_weight * sum(
                    w * _distance(gram_matrix(fp[k]), gram_matrix(fg[k]), p.criterion) for k, w in self.layers.items())
        return losses
