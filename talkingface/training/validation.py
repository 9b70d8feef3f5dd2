"""Validation during training: the same metric functions as `talkingface evaluate`."""
from __future__ import annotations

import numpy as np
import torch

from talkingface.data.official import OfficialDataset
from talkingface.metrics import l1, psnr, ssim
from talkingface.models.generator import batch_inputs
from talkingface.utils.images import to_uint8_truncate


def pick_frames(dataset: OfficialDataset, count: int) -> list[int]:
    """Evenly spaced frames, so validation sees every part of the set."""
    count = min(count, len(dataset))
    return sorted({int(i) for i in np.linspace(0, len(dataset) - 1, count)})


@torch.no_grad()
def validate(generator, dataset: OfficialDataset, indices: list[int], device: torch.device) -> dict[str, float]:
    """Self-reconstruction PSNR / SSIM / L1 on uint8 frames, as written by inference."""
    was_training = generator.training
    generator.eval()
    scores: dict[str, list[float]] = {"psnr": [], "ssim": [], "l1": []}
    for i in indices:
        batch = torch.utils.data.default_collate([dataset[i]])
        pred = to_uint8_truncate(generator(batch_inputs(batch, device), stage="full")["prediction"])[0]
        gt = (batch["driving"][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        scores["psnr"].append(min(psnr(pred, gt), 100.0))
        scores["ssim"].append(ssim(pred, gt))
        scores["l1"].append(l1(pred, gt))
    generator.train(was_training)
    return {k: float(np.mean(v)) for k, v in scores.items()}
