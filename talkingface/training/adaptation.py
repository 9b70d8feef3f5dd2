"""Fast adaptation: a few Adam steps of the full-stage losses on one person's frames.

The same loop is Reptile's inner loop (meta-training) and `talkingface personalize`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from talkingface.errors import TrainingError
from talkingface.losses.metaportrait import MetaPortraitLoss
from talkingface.models.discriminator import MultiScaleDiscriminator
from talkingface.models.generator import MetaPortraitGenerator, batch_inputs
from talkingface.training.common import autocast
from talkingface.training.optim import adam, generator_param_groups, sanitize_and_clip


INNER_LOSS_SCALE = 2.0 ** 8  # fp16 loss scale at the start of each adaptation (see `adapt`)
MAX_OVERFLOWS = 16  # fp16 overflows in a row (scale 2^8 -> 2^-8) before `adapt` gives up


@dataclass(frozen=True)
class AdaptSettings:
    lr_generator: float = 2e-4
    lr_discriminator: float = 2e-4
    warp_factor: float = 0.1  # the warp part learns 10x slower, as in the reference
    betas: tuple[float, float] = (0.5, 0.999)
    max_grad_norm: float = 0.3
    autocast_dtype: torch.dtype | None = None  # mixed precision (`mixed_precision_dtype`); None: fp32
    max_bad_steps: int = 3  # non-finite losses in a row (each step skipped) before stopping with an error


def full_stage_losses(generator: MetaPortraitGenerator, criterion: MetaPortraitLoss, batch: dict,
                      device: torch.device, discriminator: MultiScaleDiscriminator | None) -> dict[str, torch.Tensor]:
    x = batch_inputs(batch, device)
    driving = batch["driving"].to(device)
    out = generator(x, stage="full")
    losses = criterion.warp(out["deformed"], driving)
    losses.update(criterion.generator(out["prediction"], driving, batch["eye_mask"].to(device), x.mouth_mask,
                                      discriminator))
    losses["_prediction"] = out["prediction"]
    return losses


def adapt(generator: MetaPortraitGenerator, criterion: MetaPortraitLoss, batches: Iterator[dict], device: torch.device,
          settings: AdaptSettings, steps: int | None = None, seconds: float | None = None,
          discriminator: MultiScaleDiscriminator | None = None,
          on_step: Callable[[int, dict[str, float]], None] | None = None) -> list[dict[str, float]]:
    """Adam on `generator` (and `discriminator` when given, LSGAN) for `steps` steps or `seconds` of wall time.

    Fresh optimisers every call: no state carries over between tasks or people.
    Returns the per-step losses. NaN gradients become 0 and +-inf +-1e3 (1e5 for D),
    then the gradient norm is clipped, as in the reference's inner loop. A step whose loss
    is NaN/inf is skipped; `settings.max_bad_steps` of them in a row raise `TrainingError`.
    """
    if steps is None and seconds is None:
        raise ValueError("give steps or seconds")
    s = settings
    optim_g = adam(generator_param_groups(generator, s.lr_generator, s.warp_factor), s.lr_generator, s.betas)
    optim_d = adam(discriminator.parameters(), s.lr_discriminator, s.betas) if discriminator is not None else None
    # fp16 gradients underflow without loss scaling (`--fp16` on CUDA); bf16 and fp32 need none, and a
    # disabled scaler passes everything through unchanged. Fresh per call, like the optimisers. A
    # batch whose scaled gradients overflow is not a step: the scaler halves the scale and the loop
    # takes the next batch, so `steps` counts steps actually taken; the scale starts moderate (2^8,
    # not torch's 2^16) so that few batches go to backing off.
    scaling = s.autocast_dtype == torch.float16
    scaler_g = torch.amp.GradScaler(device.type, init_scale=INNER_LOSS_SCALE, enabled=scaling)
    scaler_d = torch.amp.GradScaler(device.type, init_scale=INNER_LOSS_SCALE,
                                    enabled=scaling and discriminator is not None)
    generator.train()
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    step = bad_streak = overflows = 0
    while (steps is None or step < steps) and (seconds is None or time.perf_counter() - start < seconds):
        batch = next(batches)
        if discriminator is not None:
            discriminator.requires_grad_(False)
        with autocast(device, s.autocast_dtype):
            losses = full_stage_losses(generator, criterion, batch, device, discriminator)
        prediction = losses.pop("_prediction")
        total = sum(losses.values())
        if not bool(torch.isfinite(total)):  # skipped before the backward pass: NaN must not reach its kernels
            bad_streak += 1
            if bad_streak >= s.max_bad_steps:
                raise TrainingError(f"the loss was NaN/inf for {bad_streak} steps in a row (at step {step + 1}); "
                                    "stopped. The weights or the training frames are damaged")
            continue
        bad_streak = 0
        optim_g.zero_grad(set_to_none=True)
        scaler_g.scale(total).backward()
        scaler_g.unscale_(optim_g)
        sanitize_and_clip(generator.parameters(), s.max_grad_norm, clamp=1e3)
        scale = scaler_g.get_scale()
        scaler_g.step(optim_g)
        scaler_g.update()
        if scaling and scaler_g.get_scale() < scale:  # overflow: step skipped, scale halved
            overflows += 1
            if overflows >= MAX_OVERFLOWS:
                raise TrainingError(f"fp16 gradients overflowed {overflows} times in a row (loss scale down to "
                                    f"{scaler_g.get_scale():g}); stopped. Train without --fp16")
            continue
        overflows = 0
        if discriminator is not None:
            discriminator.requires_grad_(True)
            with autocast(device, s.autocast_dtype):
                d_losses = criterion.discriminator(prediction, batch["driving"].to(device), discriminator)
            optim_d.zero_grad(set_to_none=True)
            scaler_d.scale(sum(d_losses.values())).backward()
            scaler_d.unscale_(optim_d)
            sanitize_and_clip(discriminator.parameters(), s.max_grad_norm, clamp=1e5)
            scaler_d.step(optim_d)
            scaler_d.update()
            losses.update(d_losses)
        step += 1
        record = {k: float(v.detach()) for k, v in losses.items()}
        history.append(record)
        if on_step is not None:
            on_step(step, record)
    return history
