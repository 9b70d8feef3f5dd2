"""Temporal warping error: how much a predicted video flickers beyond the real motion.

Optical flow is measured on the ground truth (so the prediction is judged against the
true motion), in both directions between consecutive frames. Pixels whose forward and
backward flows disagree are occluded or unreliable and are left out (the
forward-backward check of Sundaram et al. 2010, constants of Lai et al. 2018). The
prediction's frame t is warped onto frame t+1 along that flow, and the error is the
mean absolute difference over the remaining pixels, in 0..1 units.

MetaPortrait (and Lai et al.) measure flow with RAFT, a learned network; here it is
OpenCV's DIS (or Farneback) so that it runs offline on a CPU with no weights. Numbers
are therefore comparable between runs of this toolkit, not with the paper's table.
The super-resolution evaluation uses the same functions.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from talkingface.errors import DataError


class FlowMethod(enum.Enum):
    DIS = "dis"  # fast, robust to large displacements; the default
    FARNEBACK = "farneback"


@dataclass(frozen=True)
class FlowOptions:
    method: FlowMethod = FlowMethod.DIS
    # Occluded where |f_bw + f_fw(warped)|^2 > alpha * (|f_bw|^2 + |f_fw(warped)|^2) + beta.
    alpha: float = 0.01
    beta: float = 0.5


@dataclass(frozen=True)
class ConsistentFlow:
    """Flow from frame t+1 back to frame t, and where it can be trusted (in frame t+1)."""

    backward: np.ndarray  # H x W x 2 float32: frame_next(p) ~ frame_prev(p + backward(p))
    valid: np.ndarray  # H x W bool


def _gray(frame: np.ndarray) -> np.ndarray:
    import cv2

    frame = np.ascontiguousarray(frame, dtype=np.uint8)
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame


def _flow(a: np.ndarray, b: np.ndarray, options: FlowOptions) -> np.ndarray:
    """Flow f with a(p) ~ b(p + f(p)), for grayscale uint8 frames."""
    import cv2

    if options.method is FlowMethod.DIS:
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return dis.calc(a, b, None)
    return cv2.calcOpticalFlowFarneback(a, b, None, pyr_scale=0.5, levels=4, winsize=15, iterations=3,
                                        poly_n=5, poly_sigma=1.2, flags=0)


def _sample(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """image(p + flow(p)) by bilinear sampling; outside the frame reads as border."""
    import cv2

    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(image, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def consistent_flow(gt_prev: np.ndarray, gt_next: np.ndarray, options: FlowOptions | None = None) -> ConsistentFlow:
    """Backward flow next -> prev and its forward-backward consistency mask."""
    options = options or FlowOptions()
    if gt_prev.shape != gt_next.shape:
        raise DataError(f"consecutive frames differ in size: {gt_prev.shape} vs {gt_next.shape}")
    a, b = _gray(gt_prev), _gray(gt_next)
    backward = _flow(b, a, options)
    forward = _flow(a, b, options)
    forward_at = _sample(forward, backward)  # forward flow at the point each pixel came from
    round_trip = backward + forward_at
    mag = (backward ** 2).sum(-1) + (forward_at ** 2).sum(-1)
    valid = (round_trip ** 2).sum(-1) <= options.alpha * mag + options.beta
    h, w = backward.shape[:2]
    gx, gy = np.meshgrid(np.arange(w), np.arange(h))
    sx, sy = gx + backward[..., 0], gy + backward[..., 1]
    valid &= (sx >= 0) & (sx <= w - 1) & (sy >= 0) & (sy <= h - 1)  # came from outside the frame
    return ConsistentFlow(backward, valid)


def warp_previous(frame_prev: np.ndarray, flow: ConsistentFlow) -> np.ndarray:
    """Frame t resampled onto frame t+1's pixel grid (float32)."""
    return _sample(np.asarray(frame_prev, np.float32), flow.backward)


def pair_warping_error(pred_prev: np.ndarray, pred_next: np.ndarray, flow: ConsistentFlow,
                       data_range: float = 255.0) -> float:
    """Mean |pred_next - warp(pred_prev)| over valid pixels, in 0..1 units; NaN if none is valid."""
    if pred_prev.shape != pred_next.shape or pred_next.shape[:2] != flow.valid.shape:
        raise DataError(f"prediction frames of size {pred_next.shape[:2]} do not match the "
                        f"ground-truth flow of size {flow.valid.shape}")
    count = int(flow.valid.sum())
    if count == 0:
        return math.nan
    diff = np.abs(np.asarray(pred_next, np.float32) - warp_previous(pred_prev, flow))
    if diff.ndim == 3:
        diff = diff.mean(-1)
    return float(diff[flow.valid].mean()) / data_range


def warping_error(pred_frames: Iterable[np.ndarray], gt_frames: Iterable[np.ndarray],
                  options: FlowOptions | None = None) -> list[float]:
    """Per-transition warping errors (t -> t+1, so one fewer than the frames).

    Average them (np.nanmean) for the video's score. Frames stream through; two of
    each are held at a time.
    """
    errors: list[float] = []
    prev: tuple[np.ndarray, np.ndarray] | None = None
    pred_it, gt_it = iter(pred_frames), iter(gt_frames)
    count = 0
    while True:
        p, g = next(pred_it, None), next(gt_it, None)
        if p is None or g is None:
            if p is not None or g is not None:
                longer = "prediction" if p is not None else "ground truth"
                raise DataError(f"the {longer} has more frames than the other (the other ended after {count})")
            break
        if p.shape != g.shape:
            raise DataError(f"frame {count}: prediction and ground truth differ in size: {p.shape} vs {g.shape}")
        if prev is not None:
            errors.append(pair_warping_error(prev[0], p, consistent_flow(prev[1], g, options)))
        prev = (p, g)
        count += 1
    return errors
