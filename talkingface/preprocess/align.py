"""theta: the 2x3 affine that aligns a face crop to a face-recognition crop.

Like the reference's `src_{k}_theta.npy`: a matrix in `torch.nn.functional.affine_grid`
normalised coordinates. For every pixel of the aligned output it gives the position to
sample in the crop, so

    grid = F.affine_grid(theta[None], (1, 3, S, S), align_corners=False)
    aligned = F.grid_sample(crop, grid, align_corners=False)

puts the eye centres, nose tip and mouth corners of the crop on the standard 5-point
ArcFace template, whatever the crop and output sizes (S = 112 is the template's own
size). We use align_corners=False because landmarks in 0..1 of the crop map exactly to
normalised coordinates as 2 * x - 1 in that convention, so one theta serves 256 and
512 crops and any output size.
"""
from __future__ import annotations

import numpy as np

# The standard ArcFace alignment template on a 112 x 112 crop, in pixel coordinates
# (pixel centres at integers): image-left eye centre, image-right eye centre, nose tip,
# image-left and image-right mouth corners.
ARCFACE_TEMPLATE_112 = np.array([
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
], dtype=np.float64)
TEMPLATE_SIZE = 112

# Face Mesh (478, with iris) indices of the same five points; the eye centres are the
# iris centres.
MEDIAPIPE_KEYPOINTS = (468, 473, 1, 61, 291)


def template_normalized(size: int = TEMPLATE_SIZE) -> np.ndarray:
    """The template in affine_grid coordinates (align_corners=False), 5 x 2."""
    return (ARCFACE_TEMPLATE_112 + 0.5) * (2.0 / size) - 1.0


def keypoints5(points: np.ndarray) -> np.ndarray:
    """The five alignment keypoints (5 x 2, 0..1 of the crop) from 478 Face Mesh points."""
    return np.asarray(points, dtype=np.float64)[list(MEDIAPIPE_KEYPOINTS)]


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + shift mapping src onto dst (Umeyama), 2 x 3.

    A similarity, not a full affine, so the aligned face is never sheared: five noisy
    points cannot pin down six affine parameters reliably.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # no reflections
        sign[-1] = -1
    rotation = u @ np.diag(sign) @ vt
    src_var = (src_c ** 2).sum() / len(src)
    scale = (s * sign).sum() / src_var if src_var > 0 else 1.0
    shift = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, shift[:, None]])


def alignment_theta(keypoints: np.ndarray) -> np.ndarray:
    """theta (2 x 3 float32) from the five keypoints in 0..1 of the crop.

    It maps template (output) coordinates to crop (input) coordinates, the direction
    affine_grid needs.
    """
    crop_normalized = np.asarray(keypoints, dtype=np.float64) * 2.0 - 1.0
    return fit_similarity(template_normalized(), crop_normalized).astype(np.float32)


def theta_from_points(points: np.ndarray) -> np.ndarray:
    """theta from 478 Face Mesh points in 0..1 of the crop."""
    return alignment_theta(keypoints5(points))
