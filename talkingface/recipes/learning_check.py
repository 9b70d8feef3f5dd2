"""Does a warping network recover known motion? (issue: training learning check)

On held-out frames with known correspondences (the landmarks of a synthetic or
preprocessed dataset) it reports, in pixels, the mean landmark flow error of the
predicted motion field next to the motion size (how far the landmarks moved), and
the PSNR of the warped source against the driving frame next to the identity warp's
(the unmoved source).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from talkingface.checkpoints.official import load_generator
from talkingface.config import Config
from talkingface.data.official import OfficialDataset
from talkingface.landmarks.scheme import get_scheme
from talkingface.metrics.motion import landmark_flow_error
from talkingface.models.generator import batch_inputs


@dataclass
class MotionCheck:
    frames: int
    flow_error_px: float  # mean over landmarks and frames
    motion_px: float  # mean landmark displacement source -> driving
    psnr_warped: float  # warped source vs driving, dB
    psnr_identity: float  # unmoved source vs driving, dB

    def lines(self) -> list[str]:
        return [f"frames: {self.frames}",
                f"landmark flow error: {self.flow_error_px:.2f} px (motion size {self.motion_px:.2f} px)",
                f"PSNR warped source: {self.psnr_warped:.2f} dB (identity warp {self.psnr_identity:.2f} dB)"]


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.clamp(0, 1) - b) ** 2).mean())
    return 10 * math.log10(1 / max(mse, 1e-10))


@torch.inference_mode()
def check_motion(model, cfg: Config, root: str | Path, indices: list[int] | None = None,
                 device: torch.device = torch.device("cpu")) -> MotionCheck:
    scheme = get_scheme(cfg.model.landmark_scheme)
    ds = OfficialDataset(root, scheme, cfg.resolution[0], cfg.model.generator.class_dim, subset=cfg.dataset.ldmk_idx)
    indices = list(range(len(ds))) if indices is None else indices
    size = cfg.resolution[0]
    errors, motions, warped, identity = [], [], [], []
    model.eval()
    for i in indices:
        frame = ds.frames[i]
        batch = torch.utils.data.default_collate([ds[i]])
        out = model.forward_warp(batch_inputs(batch, device))
        drv = torch.from_numpy(ds._landmarks(frame.landmarks))[None]
        src = torch.from_numpy(ds._landmarks(ds.root / f"src_{frame.identity}_ldmk.npy"))[None]
        errors.append(float(landmark_flow_error(out["deformation"].cpu(), drv, src, size).mean()))
        motions.append(float(((drv - src).norm(dim=-1) * size).mean()))
        warped.append(_psnr(out["deformed"].cpu(), batch["driving"]))
        identity.append(_psnr(batch["source"], batch["driving"]))
    return MotionCheck(len(indices), float(np.mean(errors)), float(np.mean(motions)), float(np.mean(warped)),
                       float(np.mean(identity)))


def check_checkpoint(ckpt: str | Path, cfg: Config, root: str | Path, indices=None) -> MotionCheck:
    return check_motion(load_generator(ckpt, cfg).model, cfg, root, indices)
