"""Validating (and testing) temporal super-resolution: each clip super-resolved in windows,
streamed, scored against its ground truth with the config's metrics (`val.metrics`)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from talkingface.config.sr import METRIC_TYPES, ValConfig
from talkingface.data.sr_clips import SRClip, iter_clip_frames
from talkingface.inference.sr import iter_planned, plan_windows
from talkingface.metrics.image import PSNR_CAP_DB, psnr, ssim
from talkingface.metrics.lpips import LpipsMetric, find_lpips_weights
from talkingface.metrics.temporal import consistent_flow, pair_warping_error
from talkingface.models.temporal_sr import TemporalSRNet
from talkingface.utils.images import save_png, to_tensor, to_uint8_round


@dataclass
class ClipScorer:
    """Streams (prediction, ground truth) frame pairs of one clip into the configured metrics."""

    metrics: dict[str, object]  # name -> MetricConfig
    lpips: object | None = None  # a loaded LpipsMetric, or None (LPIPS skipped)
    values: dict[str, list[float]] = field(default_factory=dict)
    _prev: tuple[np.ndarray, np.ndarray] | None = None
    _count: int = 0

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        for name, m in self.metrics.items():
            kind = METRIC_TYPES[m.type]
            b = m.crop_border
            p, g = (pred[b:-b, b:-b], gt[b:-b, b:-b]) if b else (pred, gt)
            if kind == "psnr":
                value = min(psnr(p, g), PSNR_CAP_DB)
            elif kind == "ssim":
                value = ssim(p, g)
            elif kind == "lpips":
                if self.lpips is None:
                    continue
                value = float(self.lpips.distances(p[None], g[None])[0])
            else:  # warp_error, from the previous frame (none for the first)
                if self._prev is None or (m.frame_limit is not None and self._count >= m.frame_limit):
                    continue
                pp, gp = self._prev
                pp, gp = (pp[b:-b, b:-b], gp[b:-b, b:-b]) if b else (pp, gp)
                value = pair_warping_error(pp, p, consistent_flow(gp, g))
            self.values.setdefault(name, []).append(value)
        self._prev = (pred, gt)
        self._count += 1

    def means(self) -> dict[str, float]:
        return {name: float(np.nanmean(v)) if np.isfinite(v).any() else math.nan for name, v in self.values.items()}


def load_lpips(metrics: dict, alexnet: str | None, lin: str | None, device: torch.device):
    """The LPIPS network when a metric asks for it and its weights are found; else None, said once."""
    if not any(METRIC_TYPES[m.type] == "lpips" for m in metrics.values()):
        return None
    weights, why = find_lpips_weights(alexnet, lin)
    if weights is None:
        print(why)
        return None
    return LpipsMetric(weights, device)


def evaluate_clips(model: TemporalSRNet, clips: list[SRClip], val: ValConfig, limit: int | None,
                   lpips=None, save_dir: Path | None = None, batch_size: int = 1, desc: str = "validate",
                   show_progress: bool = True) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Super-resolve each clip (windowed, streaming) and score it; (means over clips, per-clip means).

    Output frames are rounded to uint8, as BasicSR's tensor2img does, before scoring and saving.
    """
    if val.chunking == "reference":
        plan = plan_windows(model, window=val.temp_psz, chunking="reference")
    else:
        plan = plan_windows(model, window=2 * model.temporal_radius + val.temp_psz)
    was_training = model.training
    model.eval()
    per_clip: dict[str, dict[str, float]] = {}
    total = sum(len(c) if limit is None else min(limit, len(c)) for c in clips)
    with tqdm(total=total, unit="frame", desc=desc, dynamic_ncols=True, disable=not show_progress) as bar:
        for clip in clips:
            scorer = ClipScorer(val.metrics if clip.gt is not None else {}, lpips)
            names = clip.frame_names()
            frames = (to_tensor(px) for px in iter_clip_frames(clip, limit))
            for i, out in enumerate(iter_planned(model, frames, plan, batch_size)):
                pred = to_uint8_round(out)
                if clip.gt is not None and val.metrics:
                    scorer.add(pred, clip.read_gt(i))
                if save_dir is not None:
                    save_png(save_dir / clip.name / f"{names[i]}.png", pred)
                bar.update(1)
            per_clip[clip.name] = scorer.means()
    model.train(was_training)
    names = [n for n in val.metrics if any(n in s for s in per_clip.values())]
    means = {n: float(np.nanmean([s[n] for s in per_clip.values() if n in s])) for n in names}
    return means, per_clip
