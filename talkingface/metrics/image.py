"""Per-frame pixel metrics: PSNR, SSIM and L1 between a prediction and its ground truth.

Frames are H x W x 3 (or H x W) arrays, uint8 RGB by project convention; float arrays
are accepted with the same 0..255 scale unless `data_range` says otherwise.
"""
from __future__ import annotations

import math

import numpy as np

from talkingface.errors import DataError

# Identical frames have infinite PSNR. Averages over frames (and JSON) need a finite
# number, so per-frame records in evaluation reports are capped at this value.
PSNR_CAP_DB = 100.0

# SSIM as Wang et al. (2004) define it: an 11-tap Gaussian window, sigma 1.5, population
# (co)variances, K1 = 0.01, K2 = 0.03. Equals scikit-image's structural_similarity with
# gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255.
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # int(3.5 * sigma + 0.5): scikit-image's window truncation
SSIM_K1, SSIM_K2 = 0.01, 0.03


def check_same_shape(pred: np.ndarray, gt: np.ndarray, what: str = "frames") -> None:
    if pred.shape != gt.shape:
        raise DataError(f"prediction and ground-truth {what} differ in size: {pred.shape} vs {gt.shape}")


def psnr(pred: np.ndarray, gt: np.ndarray, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB over all pixels and channels; `math.inf` when identical."""
    check_same_shape(pred, gt)
    mse = float(np.mean((np.asarray(pred, np.float64) - np.asarray(gt, np.float64)) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range ** 2 / mse)


def l1(pred: np.ndarray, gt: np.ndarray, data_range: float = 255.0) -> float:
    """Mean absolute error, in units of `data_range` (so 0..1)."""
    check_same_shape(pred, gt)
    return float(np.mean(np.abs(np.asarray(pred, np.float64) - np.asarray(gt, np.float64)))) / data_range


def _gaussian_window() -> np.ndarray:
    x = np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return w / w.sum()


def ssim(pred: np.ndarray, gt: np.ndarray, data_range: float = 255.0) -> float:
    """Mean structural similarity, averaged over channels (see the constants above).

    Window means near the border would need padding; like scikit-image, the border of
    width SSIM_RADIUS is left out of the mean, so the padding mode never matters.
    """
    import cv2

    check_same_shape(pred, gt)
    if min(pred.shape[:2]) <= 2 * SSIM_RADIUS:
        raise DataError(f"frames of {pred.shape[1]}x{pred.shape[0]} are too small for SSIM "
                        f"(need more than {2 * SSIM_RADIUS} pixels a side)")
    x = np.asarray(pred, np.float64)
    y = np.asarray(gt, np.float64)
    w = _gaussian_window()

    def blur(a: np.ndarray) -> np.ndarray:
        return cv2.sepFilter2D(a, cv2.CV_64F, w, w, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    r = SSIM_RADIUS
    return float(s[r:-r, r:-r].mean())
