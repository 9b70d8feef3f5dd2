"""The MetaPortrait training losses (reference section 4), by name.

All image terms compare the generator's output (tanh range, but trained towards the
0..1 targets, as the reference does) with the 0..1 driving frame on an
anti-aliased pyramid.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from talkingface.config import LossWeights
from talkingface.losses.pyramid import ImagePyramid
from talkingface.losses.vgg import VGG19Features


def perceptual(vgg: VGG19Features, pred: dict[float, torch.Tensor], real: dict[float, torch.Tensor],
               weights: list[float]) -> torch.Tensor:
    """sum over scales and VGG taps of weight * mean |vgg(pred) - vgg(real)|."""
    used = max((i + 1 for i, w in enumerate(weights) if w), default=0)
    total = 0
    if not used:
        return total
    for scale in pred:
        for w, a, b in zip(weights, vgg(pred[scale], used), vgg(real[scale], used)):
            total = total + w * (a - b.detach()).abs().mean()
    return total


def masked_mse(pred: dict[float, torch.Tensor], real: dict[float, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """sum over scales of the mean squared error inside the (nearest-resized) mask."""
    total = 0
    for scale in pred:
        m = F.interpolate(mask, size=pred[scale].shape[2:], mode="nearest")
        total = total + ((pred[scale] - real[scale]) ** 2 * m).sum() / (m.sum() + 1e-6)
    return total


def lsgan_generator(scores: dict[float, tuple[list, torch.Tensor]]) -> torch.Tensor:
    return sum(((1 - s) ** 2).mean() for _, s in scores.values())


def lsgan_discriminator(real: dict, fake: dict) -> torch.Tensor:
    return sum(((1 - real[k][1]) ** 2 + fake[k][1] ** 2).mean() for k in real)


def feature_matching(real: dict, fake: dict, weights: list[float]) -> torch.Tensor:
    total = 0
    for k in real:
        for w, a, b in zip(weights, real[k][0], fake[k][0]):
            if w:
                total = total + w * (a - b).abs().mean()
    return total


class MetaPortraitLoss(nn.Module):
    """Named loss terms for the warp stage, the full stage's generator and its discriminator."""

    def __init__(self, weights: LossWeights, scales: list[float], vgg: VGG19Features | None, channels: int = 3,
                 disc_scales: tuple[float, ...] = (1.0,)):
        super().__init__()
        self.w = weights
        self.disc_scales = tuple(float(s) for s in disc_scales)  # a subset of `scales`
        self.pyramid = ImagePyramid(scales, channels)
        if vgg is None and sum(weights.perceptual):
            raise ValueError("the perceptual loss needs a VGG19")
        self.vgg = vgg.eval() if vgg is not None else None

    def warp(self, deformed: torch.Tensor, driving: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        if sum(self.w.perceptual):
            out["warp_perceptual"] = perceptual(self.vgg, self.pyramid(deformed), self.pyramid(driving),
                                                self.w.perceptual)
        if self.w.l1:  # extension: the reference's warp stage has the perceptual term only
            out["warp_l1"] = self.w.l1 * (deformed - driving).abs().mean()
        return out

    def generator(self, prediction: torch.Tensor, driving: torch.Tensor, eye_mask: torch.Tensor | None,
                  mouth_mask: torch.Tensor | None, disc: nn.Module | None) -> dict[str, torch.Tensor]:
        pred, real = self.pyramid(prediction), self.pyramid(driving)
        out: dict[str, torch.Tensor] = {}
        if sum(self.w.perceptual):
            out["perceptual"] = perceptual(self.vgg, pred, real, self.w.perceptual)
        if self.w.eye_enhance and eye_mask is not None:
            out["eye"] = self.w.eye_enhance * masked_mse(pred, real, eye_mask)
        if self.w.mouth_enhance and mouth_mask is not None:
            out["mouth"] = self.w.mouth_enhance * masked_mse(pred, real, mouth_mask)
        if self.w.l1:
            out["l1"] = self.w.l1 * (prediction - driving).abs().mean()
        if self.w.generator_gan and disc is not None:
            fake_scores = disc({s: pred[s] for s in self.disc_scales})
            out["gen_gan"] = self.w.generator_gan * lsgan_generator(fake_scores)
            if sum(self.w.feature_matching):
                real_scores = disc({s: real[s] for s in self.disc_scales})
                out["feature_matching"] = feature_matching(real_scores, fake_scores, self.w.feature_matching)
        return out

    def discriminator(self, prediction: torch.Tensor, driving: torch.Tensor,
                      disc: nn.Module) -> dict[str, torch.Tensor]:
        """`disc` may be DDP-wrapped."""
        pred, real = self.pyramid(prediction.detach()), self.pyramid(driving)
        scales = self.disc_scales
        value = lsgan_discriminator(disc({s: real[s] for s in scales}), disc({s: pred[s] for s in scales}))
        return {"disc_gan": self.w.discriminator_gan * value}
