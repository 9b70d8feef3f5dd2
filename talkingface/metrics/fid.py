"""FID: Fréchet distance between Inception-v3 pool features of predicted and real frames.

The network is built here (no torchvision) and reads either weight file, both in
torchvision's key layout (`Conv2d_1a_3x3.conv.weight`, `Mixed_5b.branch1x1.bn.running_mean`, ...):
  * pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (the TensorFlow FID network,
    1008 classes) - use this one for numbers comparable with papers;
  * torchvision's ImageNet `inception_v3_google-0cc3c7bd.pth` (1000 classes).
The 1008-class file marks the TensorFlow variant, whose average pools ignore padding
and whose last block max-pools; that is detected from the file. Inputs are resized to
299x299 (bilinear) and scaled to [-1, 1], as both networks expect.

Found from `--inception PATH`, then the TALKINGFACE_INCEPTION environment variable,
then the torch hub cache ($TORCH_HOME/hub/checkpoints/ with either file name above).
"""
from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from talkingface.errors import CheckpointError, DataError
from talkingface.metrics.lpips import hub_checkpoint_dir, load_state_dict_file

ENV_INCEPTION = "TALKINGFACE_INCEPTION"
INCEPTION_FILENAMES = ("pt_inception-2015-12-05-6726825d.pth", "inception_v3_google-0cc3c7bd.pth",
                       "inception_v3_google-1a9a5a14.pth")
FID_CLASSES = 1008  # the TensorFlow FID graph's classifier size
INPUT_SIZE = 299
FEATURE_DIM = 2048

HOW_TO_PROVIDE = (f"pass --inception PATH (pytorch-fid's {INCEPTION_FILENAMES[0]} or torchvision's "
                  f"{INCEPTION_FILENAMES[1]}), set {ENV_INCEPTION}, or put either file in "
                  f"$TORCH_HOME/hub/checkpoints/")


def find_inception_weights(path: str | os.PathLike | None = None) -> tuple[Path | None, str]:
    """(weights path, "") or (None, a one-line reason and how to fix it)."""
    value = path if path is not None else os.environ.get(ENV_INCEPTION) or None
    if value is not None:
        p = Path(value).expanduser()
        if not p.is_file():
            raise CheckpointError(f"Inception weight file not found ({HOW_TO_PROVIDE})", p)
        return p, ""
    for name in INCEPTION_FILENAMES:
        cached = hub_checkpoint_dir() / name
        if cached.is_file():
            return cached, ""
    return None, f"FID skipped: no Inception-v3 weights; {HOW_TO_PROVIDE}"


# --------------------------------------------------------------------------- network
class ConvBN(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3), ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: torch.Tensor, tf_pooling: bool) -> torch.Tensor:
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=not tf_pooling)


class BlockA(nn.Module):  # 35x35 grid
    def __init__(self, cin: int, pool_features: int, tf_pooling: bool):
        super().__init__()
        self.tf_pooling = tf_pooling
        self.branch1x1 = ConvBN(cin, 64, 1)
        self.branch5x5_1 = ConvBN(cin, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(cin, pool_features, 1)

    def forward(self, x):
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg3(x, self.tf_pooling)),
        ], 1)


class BlockB(nn.Module):  # 35 -> 17 reduction
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = ConvBN(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class BlockC(nn.Module):  # 17x17 grid, factorised 7x7
    def __init__(self, cin: int, c7: int, tf_pooling: bool):
        super().__init__()
        self.tf_pooling = tf_pooling
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        self.branch1x1 = ConvBN(cin, 192, 1)
        self.branch7x7_1 = ConvBN(cin, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, **row)
        self.branch7x7_3 = ConvBN(c7, 192, **col)
        self.branch7x7dbl_1 = ConvBN(cin, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, **col)
        self.branch7x7dbl_3 = ConvBN(c7, c7, **row)
        self.branch7x7dbl_4 = ConvBN(c7, c7, **col)
        self.branch7x7dbl_5 = ConvBN(c7, 192, **row)
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x):
        d = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            d = layer(d)
        return torch.cat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            d,
            self.branch_pool(_avg3(x, self.tf_pooling)),
        ], 1)


class BlockD(nn.Module):  # 17 -> 8 reduction
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = ConvBN(cin, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(cin, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x):
        return torch.cat([
            self.branch3x3_2(self.branch3x3_1(x)),
            self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x)))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class PoolKind(enum.Enum):
    AVG = "avg"  # torchvision: padding counted in the average
    AVG_TF = "avg_tf"  # TensorFlow: padding not counted
    MAX = "max"


class BlockE(nn.Module):  # 8x8 grid, expanded filter banks
    def __init__(self, cin: int, pool: PoolKind):
        super().__init__()
        self.pool = pool
        self.branch1x1 = ConvBN(cin, 320, 1)
        self.branch3x3_1 = ConvBN(cin, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(cin, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x):
        s = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        if self.pool is PoolKind.MAX:
            pooled = F.max_pool2d(x, 3, stride=1, padding=1)
        else:
            pooled = _avg3(x, self.pool is PoolKind.AVG_TF)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(s), self.branch3x3_2b(s),
            self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d),
            self.branch_pool(pooled),
        ], 1)


class InceptionV3Features(nn.Module):
    """Inception-v3 up to the 2048-d global average pool (the FID features)."""

    def __init__(self, tf_variant: bool):
        super().__init__()
        tf = tf_variant
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = BlockA(192, 32, tf)
        self.Mixed_5c = BlockA(256, 64, tf)
        self.Mixed_5d = BlockA(288, 64, tf)
        self.Mixed_6a = BlockB(288)
        self.Mixed_6b = BlockC(768, 128, tf)
        self.Mixed_6c = BlockC(768, 160, tf)
        self.Mixed_6d = BlockC(768, 160, tf)
        self.Mixed_6e = BlockC(768, 192, tf)
        self.Mixed_7a = BlockD(768)
        self.Mixed_7b = BlockE(1280, PoolKind.AVG_TF if tf else PoolKind.AVG)
        # The TensorFlow FID graph max-pools in its last block; torchvision's averages.
        self.Mixed_7c = BlockE(2048, PoolKind.MAX if tf else PoolKind.AVG)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: N x 3 x H x W in [0, 1] -> N x 2048."""
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return x.mean((2, 3))


def load_inception(path: str | os.PathLike, device: str | torch.device = "cpu") -> InceptionV3Features:
    """The feature network with the file's weights; the classifier and aux head are ignored."""
    path = Path(path)
    state = load_state_dict_file(path)
    fc = state.get("fc.weight")
    tf_variant = isinstance(fc, torch.Tensor) and fc.shape[0] == FID_CLASSES
    model = InceptionV3Features(tf_variant)
    wanted = model.state_dict()
    missing = [k for k in wanted if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise CheckpointError(f"not an Inception-v3 state dict in torchvision naming: {len(missing)} keys missing, "
                              f"e.g. {missing[0]!r} ({HOW_TO_PROVIDE})", path)
    picked = {}
    for k, v in wanted.items():
        if k not in state:
            picked[k] = v
            continue
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{k} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}", path)
        picked[k] = state[k].to(v.dtype)
    model.load_state_dict(picked)
    return model.eval().to(device)


class InceptionFeatureExtractor:
    """Frames (N x H x W x 3 uint8) -> N x 2048 float64 features."""

    def __init__(self, weights: str | os.PathLike, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.model = load_inception(weights, self.device)
        self.name = f"inception-v3{'-tf' if self.model.Mixed_7c.pool is PoolKind.MAX else ''}:{Path(weights).name}"

    def features(self, frames: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        with torch.inference_mode():
            return self.model(x).cpu().numpy().astype(np.float64)


# --------------------------------------------------------------------------- distance
@dataclass(frozen=True)
class GaussianStats:
    mean: np.ndarray
    cov: np.ndarray
    count: int

    @classmethod
    def of(cls, features: np.ndarray) -> "GaussianStats":
        features = np.asarray(features, np.float64)
        if features.ndim != 2 or features.shape[0] < 2:
            raise DataError(f"FID needs at least 2 feature vectors, got an array of shape {features.shape}")
        return cls(features.mean(0), np.cov(features, rowvar=False), features.shape[0])


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)).

    tr((S_a S_b)^(1/2)) equals tr((A S_b A)^(1/2)) with A = S_a^(1/2), a symmetric PSD
    matrix, so symmetric eigendecompositions suffice: no complex parts to discard and no
    failure when the covariances are singular (fewer frames than dimensions).
    """
    root_a = _sqrt_psd(a.cov)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ b.cov @ root_a), 0, None)).sum()
    diff = a.mean - b.mean
    return float(diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2 * cross)


def fid_from_features(pred_features: np.ndarray, gt_features: np.ndarray) -> float:
    return frechet_distance(GaussianStats.of(pred_features), GaussianStats.of(gt_features))
