"""How landmarks become model inputs: line images, the normalised subset, loss masks.

These follow the official encoding exactly (reference section 2), so an official
checkpoint sees the inputs it was trained on. Landmarks are x, y in 0..1 of the crop.
"""
from __future__ import annotations

import numpy as np

from talkingface.landmarks.scheme import LandmarkScheme


def draw_line_image(points: np.ndarray, scheme: LandmarkScheme, height: int, width: int) -> np.ndarray:
    """Draw every scheme edge as a 1-px anti-aliased line in its colour on black.

    points: N x 2 (x, y) in 0..1. Returns H x W x 3 uint8.
    Pixel positions are truncated (not rounded) to integers, as the official data
    pipeline does; rounding would move lines by a pixel and change the output.
    """
    import cv2

    points = np.asarray(points, dtype=np.float32)
    pixel = np.empty(points.shape, dtype=np.int64)
    pixel[:, 0] = (points[:, 0] * width).astype(np.int64)
    pixel[:, 1] = (points[:, 1] * height).astype(np.int64)
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for (i, j), color in zip(scheme.edges, scheme.edge_colors):
        cv2.line(canvas, (int(pixel[i, 0]), int(pixel[i, 1])), (int(pixel[j, 0]), int(pixel[j, 1])),
                 tuple(int(c) for c in color), 1, cv2.LINE_AA)
    return canvas


def normalized_subset(points: np.ndarray, scheme: LandmarkScheme) -> np.ndarray:
    """The 58-point semantic subset in -1..1 (grid_sample coordinates). Returns 58 x 2 float32."""
    points = np.asarray(points, dtype=np.float32)
    return (points * 2 - 1)[scheme.subset]


def _box_mask(subset: np.ndarray, height: int, width: int, boxes, pad: int) -> np.ndarray:
    """1 x H x W float32 mask, ones inside each (left, right, top, bottom) subset box plus `pad`."""
    mask = np.zeros((1, height, width), dtype=np.float32)
    for left, right, top, bottom in boxes:
        # int() truncates toward zero like the reference; keep the float32 arithmetic too.
        x0 = int((subset[left, 0] + 1) * width / 2)
        x1 = int((subset[right, 0] + 1) * width / 2)
        y0 = int((subset[top, 1] + 1) * height / 2)
        y1 = int((subset[bottom, 1] + 1) * height / 2)
        mask[0, max(0, y0 - pad):min(height, y1 + pad + 1), max(0, x0 - pad):min(width, x1 + pad + 1)] = 1
    return mask


def eye_mask(subset: np.ndarray, scheme: LandmarkScheme, height: int, width: int, pad: int = 3) -> np.ndarray:
    """Both eye boxes from the normalised subset, padded by `pad` pixels. 1 x H x W float32."""
    return _box_mask(subset, height, width, [scheme.roles.left_eye, scheme.roles.right_eye], pad)


def mouth_mask(subset: np.ndarray, scheme: LandmarkScheme, height: int, width: int, pad: int = 5) -> np.ndarray:
    """The mouth box (corners x lips) from the normalised subset. 1 x H x W float32."""
    (left, right), (top, bottom) = scheme.roles.mouth_corners, scheme.roles.mouth_lips
    return _box_mask(subset, height, width, [(left, right, top, bottom)], pad)
