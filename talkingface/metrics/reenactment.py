"""Does a generated video move with its driving video? Landmark-trajectory correlation.

Both videos are tracked with MediaPipe Face Mesh (the preprocessing tracker) and reduced
to three per-frame signals: head x and y (the landmarks' centroid, fraction of the
frame) and mouth opening (inner-lip gap over the eye-to-mouth distance, so it does not
depend on face size). For each signal the Pearson correlation over time between the
output and the driving video says whether the output follows the motion; it ignores
scale and offset, which relative motion changes on purpose (another face, another
frame size). A static output (the source repeated) has no motion, and scores 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from talkingface.preprocess.landmarks import FaceMeshTracker

# Face Mesh indices: inner lips (top, bottom), eye outer corners, upper-lip centre.
_INNER_LIP_TOP, _INNER_LIP_BOTTOM = 13, 14
_EYE_CORNERS = (33, 263)
_MOUTH_CENTRE = (13, 14)
SIGNALS = ("head_x", "head_y", "mouth_open")


@dataclass
class MotionTrack:
    """Per-frame motion signals of one video (NaN where no face was found)."""

    head_x: np.ndarray  # T, centroid x / width
    head_y: np.ndarray  # T, centroid y / height
    mouth_open: np.ndarray  # T, inner-lip gap / eye-line-to-mouth distance
    missing: int  # frames without a face

    def signal(self, name: str) -> np.ndarray:
        return getattr(self, name)


def motion_signals(points: np.ndarray) -> tuple[float, float, float]:
    """(head_x, head_y, mouth_open) of one frame's 478 x 2 landmarks in 0..1."""
    centre = points.mean(axis=0)
    gap = np.linalg.norm(points[_INNER_LIP_TOP] - points[_INNER_LIP_BOTTOM])
    eyes = points[list(_EYE_CORNERS)].mean(axis=0)
    mouth = points[list(_MOUTH_CENTRE)].mean(axis=0)
    return float(centre[0]), float(centre[1]), float(gap / max(np.linalg.norm(mouth - eyes), 1e-6))


def track_motion(frames: Iterable[np.ndarray]) -> MotionTrack:
    """Track RGB uint8 frames (video mode: each frame starts from the last one's face)."""
    rows, missing = [], 0
    with FaceMeshTracker(static=False) as tracker:
        for frame in frames:
            points = tracker.process(np.ascontiguousarray(frame, dtype=np.uint8))
            if points is None:
                missing += 1
                rows.append((np.nan, np.nan, np.nan))
            else:
                rows.append(motion_signals(points))
    values = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
    return MotionTrack(values[:, 0], values[:, 1], values[:, 2], missing)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation over the frames where both have a value; 0 when either is
    constant there (no motion follows nothing) or fewer than 3 frames remain."""
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if len(a) < 3 or a.std() < 1e-9 or b.std() < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def follow_scores(output: MotionTrack, driving: MotionTrack) -> dict[str, float]:
    """Correlation of each motion signal between an output video and its driving video."""
    if len(output.head_x) != len(driving.head_x):
        raise ValueError(f"the videos differ in length: {len(output.head_x)} and {len(driving.head_x)} frames")
    return {name: correlation(output.signal(name), driving.signal(name)) for name in SIGNALS}


def follow_table(output: MotionTrack, driving: MotionTrack,
                 baselines: dict[str, MotionTrack]) -> dict[str, dict[str, float]]:
    """follow_scores of the output and of each baseline (e.g. "static source", "similarity
    warp") against the same driving video: {"output": {...}, name: {...}}."""
    table = {"output": follow_scores(output, driving)}
    table.update({name: follow_scores(track, driving) for name, track in baselines.items()})
    return table
