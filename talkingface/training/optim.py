"""Optimisers as the reference builds them, and the guarded step every recipe uses."""
from __future__ import annotations

import torch
from torch import nn

from talkingface.models.generator import MetaPortraitGenerator


def generator_param_groups(generator: MetaPortraitGenerator, lr: float, warp_factor: float) -> list[dict]:
    """Two groups: the warp part (motion encoder + motion network) at lr * warp_factor, the rest at lr."""
    warp_ids = {id(p) for p in generator.warp.parameters()}
    rest = [p for p in generator.parameters() if id(p) not in warp_ids]
    return [{"params": list(generator.warp.parameters()), "lr": lr * warp_factor, "name": "warp"},
            {"params": rest, "lr": lr, "name": "refine"}]


def adam(groups_or_params, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    return torch.optim.Adam(groups_or_params, lr=lr, betas=betas)


def sanitize_and_clip(parameters, max_norm: float = 0.3, clamp: float = 1e5) -> float:
    """nan_to_num on every gradient (NaN -> 0, +-inf -> +-clamp), then clip the total norm.

    Returns the pre-clip norm. The reference does this before every optimiser step.
    """
    params = [p for p in parameters if p.grad is not None]
    for p in params:
        torch.nan_to_num_(p.grad, nan=0.0, posinf=clamp, neginf=-clamp)
    if not params:
        return 0.0
    return float(nn.utils.clip_grad_norm_(params, max_norm))
