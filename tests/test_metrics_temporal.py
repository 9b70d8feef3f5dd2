"""Temporal warping error: known answers on static and moving scenes."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from talkingface.errors import DataError
from talkingface.metrics import warping_error
from talkingface.metrics.temporal import FlowMethod, FlowOptions, consistent_flow

AMPLITUDE = 10  # grey levels


def textured(size: int = 160) -> np.ndarray:
    """A real photo, kept away from 0 and 255 so an added flicker never clips."""
    image = cv2.resize(skimage.data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    return (20 + image.astype(np.float32) * (215 / 255)).astype(np.uint8)


def moving(frames: int = 5, step: int = 3, size: int = 128) -> list[np.ndarray]:
    """A window sliding `step` pixels right per frame across a larger photo."""
    big = textured(size + step * frames)
    top = step * frames // 2
    return [big[top:top + size, step * t:step * t + size].copy() for t in range(frames)]


def flicker(frames: list[np.ndarray]) -> list[np.ndarray]:
    """Every other frame brighter by AMPLITUDE: each transition jumps by exactly that."""
    return [(f.astype(np.int16) + AMPLITUDE * (t % 2)).astype(np.uint8) for t, f in enumerate(frames)]


@pytest.mark.parametrize("method", list(FlowMethod))
def test_static_scene(method):
    options = FlowOptions(method=method)
    static = [textured(128)] * 4
    assert warping_error(static, static, options) == pytest.approx([0.0] * 3, abs=1e-4)
    errors = warping_error(flicker(static), static, options)
    assert errors == pytest.approx([AMPLITUDE / 255] * 3, rel=1e-3)


def test_moving_scene():
    gt = moving()
    still = warping_error(gt, gt)
    assert len(still) == len(gt) - 1
    assert max(still) < 0.01  # flow error only: the prediction follows the true motion
    flickering = warping_error(flicker(gt), gt)
    assert np.mean(flickering) == pytest.approx(AMPLITUDE / 255, abs=0.01)
    # A prediction frozen on its first frame does not follow the motion: a large error.
    frozen = warping_error([gt[0]] * len(gt), gt)
    assert min(frozen) > 3 * max(still)


def test_occlusion_mask_drops_pixels_that_enter_the_frame():
    gt = moving(frames=2, step=4)
    flow = consistent_flow(gt[0], gt[1])
    # The window moved right, so content moved left: frame1(p) = frame0(p + (4, 0)), and
    # the rightmost columns of frame 1 were not in frame 0.
    assert not flow.valid[:, -3:].any()
    assert flow.valid[:, :-8].mean() > 0.9
    np.testing.assert_allclose(np.median(flow.backward[flow.valid], axis=0), [4.0, 0.0], atol=0.2)


def test_mismatched_inputs_are_data_errors():
    gt = moving(frames=3)
    with pytest.raises(DataError, match="more frames"):
        warping_error(gt, gt[:2])
    with pytest.raises(DataError, match="differ in size"):
        warping_error([f[:, :100] for f in gt], gt)
