"""PSNR, SSIM and L1: known answers, and agreement with scikit-image on real photos."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import skimage.data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from talkingface.errors import DataError
from talkingface.metrics import l1, psnr, ssim


def _degraded(image: np.ndarray, kind: str, seed: int = 0) -> np.ndarray:
    if kind == "noise":
        rng = np.random.default_rng(seed)
        return np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
    return cv2.GaussianBlur(image, (7, 7), 1.8)


PHOTOS = {"astronaut": skimage.data.astronaut, "chelsea": skimage.data.chelsea, "coffee": skimage.data.coffee}


def test_identical_frames():
    image = skimage.data.astronaut()
    assert psnr(image, image) == math.inf
    assert ssim(image, image) == pytest.approx(1.0, abs=1e-12)
    assert l1(image, image) == 0.0


@pytest.mark.parametrize("photo", sorted(PHOTOS))
@pytest.mark.parametrize("kind", ["noise", "blur"])
def test_agrees_with_scikit_image(photo, kind):
    gt = PHOTOS[photo]()
    pred = _degraded(gt, kind)
    assert psnr(pred, gt) == pytest.approx(peak_signal_noise_ratio(gt, pred, data_range=255), rel=1e-12)
    expected = structural_similarity(gt, pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                     data_range=255, channel_axis=-1)
    assert ssim(pred, gt) == pytest.approx(expected, abs=1e-9)
    assert 0.3 < ssim(pred, gt) < 1.0


def test_grayscale_and_known_l1():
    gt = skimage.data.camera()
    expected = structural_similarity(gt, _degraded(gt, "blur"), gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=255)
    assert ssim(_degraded(gt, "blur"), gt) == pytest.approx(expected, abs=1e-9)
    flat = np.full((32, 32, 3), 100, np.uint8)
    assert l1(flat + 51, flat) == pytest.approx(0.2)
    assert psnr(flat + 1, flat) == pytest.approx(20 * math.log10(255))


def test_size_mismatch_is_a_data_error():
    a = np.zeros((64, 64, 3), np.uint8)
    b = np.zeros((64, 48, 3), np.uint8)
    for fn in (psnr, ssim, l1):
        with pytest.raises(DataError, match="differ in size"):
            fn(a, b)
    with pytest.raises(DataError, match="too small"):
        ssim(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8))
