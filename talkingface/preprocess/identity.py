"""Identity embedding: dlib's ResNet face descriptor, 128-d, L2-normalised.

Weights come from the `face-recognition-models` wheel. That package's __init__ imports
pkg_resources (gone from recent setuptools), so it is located with
`importlib.util.find_spec`, which finds the installed folder without running it.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from talkingface.errors import TalkingFaceError

IDENTITY_DIM = 128
RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
SHAPE_5_MODEL = "shape_predictor_5_face_landmarks.dat"
SHAPE_68_MODEL = "shape_predictor_68_face_landmarks.dat"


def model_file(name: str) -> Path:
    """Path of a weight file shipped by face-recognition-models."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise TalkingFaceError("the identity model needs the face-recognition-models package: "
                               "pip install face-recognition-models")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise TalkingFaceError("face-recognition-models is installed but lacks this file; reinstall it", path)
    return path


@functools.cache
def _dlib_models():
    """Loaded once per process (the ResNet file is 22 MB)."""
    import dlib

    return (dlib.get_frontal_face_detector(), dlib.shape_predictor(str(model_file(SHAPE_5_MODEL))),
            dlib.face_recognition_model_v1(str(model_file(RECOGNITION_MODEL))))


def _face_rect(image: np.ndarray, points01: np.ndarray | None):
    """dlib's own detection (what its shape model was trained on), the one overlapping
    the landmarks most; without one, a box built from the landmarks."""
    import dlib

    detector, _, _ = _dlib_models()
    h, w = image.shape[:2]
    rects = list(detector(image, 1 if max(h, w) < 400 else 0))
    if points01 is None:
        if not rects:
            return None
        return max(rects, key=lambda r: r.area())
    pts = np.asarray(points01, dtype=np.float64) * (w, h)
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if rects:
        def overlap(r) -> float:
            ix = max(0.0, min(r.right(), x1) - max(r.left(), x0))
            iy = max(0.0, min(r.bottom(), y1) - max(r.top(), y0))
            return ix * iy

        best = max(rects, key=overlap)
        if overlap(best) > 0:
            return best
    # dlib boxes span roughly brows to chin: about 0.85 of the mesh box, centred a bit lower
    half = 0.85 * max(x1 - x0, y1 - y0) / 2
    cy += 0.1 * (y1 - y0)
    return dlib.rectangle(int(cx - half), int(cy - half), int(cx + half), int(cy + half))


def _pad(image: np.ndarray, points01: np.ndarray | None, fraction: float = 0.25):
    """Add a black border: dlib's detector misses faces that touch the image edge, as
    they do in tight crops. Landmarks are moved into the padded image."""
    h, w = image.shape[:2]
    py, px = int(h * fraction), int(w * fraction)
    padded = np.zeros((h + 2 * py, w + 2 * px, 3), dtype=np.uint8)
    padded[py:py + h, px:px + w] = image
    if points01 is not None:
        points01 = (np.asarray(points01, dtype=np.float64) * (w, h) + (px, py)) / (w + 2 * px, h + 2 * py)
    return padded, points01


def identity_embedding(image: np.ndarray, points01: np.ndarray | None = None) -> np.ndarray:
    """128-d unit-length descriptor of the face in `image` (RGB uint8).

    `points01`: the face's landmarks (0..1), to pick the right face and to place the
    box when dlib's detector misses it. Raises TalkingFaceError when no face is found.
    """
    descriptor = dlib_descriptor(image, points01)
    return (descriptor / np.linalg.norm(descriptor)).astype(np.float32)


def dlib_descriptor(image: np.ndarray, points01: np.ndarray | None = None) -> np.ndarray:
    """dlib's own 128-d descriptor (not normalised: dlib's "same person" rule, distance
    below 0.6, is on these) of the face in `image`; as `identity_embedding`."""
    _, shape_model, recognizer = _dlib_models()
    image, points01 = _pad(np.ascontiguousarray(image, dtype=np.uint8), points01)
    rect = _face_rect(image, points01)
    if rect is None:
        raise TalkingFaceError("dlib found no face for the identity embedding")
    shape = shape_model(image, rect)
    descriptor = np.asarray(recognizer.compute_face_descriptor(image, shape), dtype=np.float64)
    norm = np.linalg.norm(descriptor)
    if not np.isfinite(norm) or norm == 0:
        raise TalkingFaceError("dlib returned an empty face descriptor")
    return descriptor


@functools.cache
def _shape_68():
    import dlib

    return dlib.shape_predictor(str(model_file(SHAPE_68_MODEL)))


def dlib_landmarks_68(image: np.ndarray) -> np.ndarray | None:
    """dlib's 68-point landmarks (68 x 2 pixels) of the largest face, or None.

    An independent detector, used to check the Face Mesh subset roles.
    """
    padded, _ = _pad(np.ascontiguousarray(image, dtype=np.uint8), None)
    rect = _face_rect(padded, None)
    if rect is None:
        return None
    shape = _shape_68()(padded, rect)
    offset = ((padded.shape[1] - image.shape[1]) // 2, (padded.shape[0] - image.shape[0]) // 2)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64) - offset
