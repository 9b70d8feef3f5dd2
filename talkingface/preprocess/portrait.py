"""Landmarks of one still portrait: preprocessing's Face Mesh tracker in still-image mode
(used to make synthetic clips, `talkingface synth`, and by tests and benchmarks)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from talkingface.errors import DataError
from talkingface.preprocess.landmarks import FaceMeshTracker


def detect_landmarks(image: np.ndarray, path: str | Path | None = None) -> np.ndarray:
    """MediaPipe Face Mesh (with iris, 478 points) on one RGB uint8 image: 478 x 2 in 0..1.

    The same tracker as preprocessing, in still-image mode. Raises DataError naming
    `path` when no face is found.
    """
    with FaceMeshTracker(static=True) as tracker:
        points = tracker.process(np.ascontiguousarray(image, dtype=np.uint8))
    if points is None:
        raise DataError("no face found in the portrait", path)
    return points
