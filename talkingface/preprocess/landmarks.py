"""MediaPipe Face Mesh with iris refinement (478 points), temporal smoothing, head pose.

Face Mesh 0.10.21 ships its model files inside the wheel, so nothing is downloaded.
Points are (x, y) in 0..1 of the image the mesh ran on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NUM_POINTS = 478

# Face Mesh indices used for the pose proxies: nose tip, face-oval sides, iris centres.
NOSE_TIP = 1
OVAL_IMAGE_LEFT, OVAL_IMAGE_RIGHT = 234, 454
IRIS_IMAGE_LEFT, IRIS_IMAGE_RIGHT = 468, 473


class FaceMeshTracker:
    """Face Mesh on a stream of images. In video mode it tracks the face from the
    previous frame's landmarks and re-detects only when the track is lost (faster and
    steadier than detecting every frame); `static=True` treats every image alone."""

    def __init__(self, static: bool = False, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5):
        import mediapipe as mp

        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=static, max_num_faces=1, refine_landmarks=True,
            min_detection_confidence=min_detection_confidence, min_tracking_confidence=min_tracking_confidence)

    def process(self, image: np.ndarray) -> np.ndarray | None:
        """478 x 2 float32 in 0..1 of `image` (RGB uint8), or None when no face is found."""
        result = self._mesh.process(np.ascontiguousarray(image))
        if not result.multi_face_landmarks:
            return None
        marks = result.multi_face_landmarks[0].landmark
        if len(marks) != NUM_POINTS:  # cannot happen with refine_landmarks=True; guard the scheme
            return None
        return np.array([(p.x, p.y) for p in marks], dtype=np.float32)

    def reset(self) -> None:
        """Forget the track (a new shot): the next image is searched from scratch."""
        self._mesh.reset()

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> FaceMeshTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class BilateralSettings:
    """Centred temporal bilateral filter for landmarks. Symmetric in time, so steady
    motion is not delayed (a causal filter such as one-euro lags behind head motion);
    the range term keeps fast moves (the lips) from being averaged away. Units: frames
    and crop widths. On a moving test face it halves frame-to-frame jitter and leaves
    the error to the true positions unchanged."""

    radius: int = 2  # frames on each side (also the look-ahead)
    sigma_time: float = 1.5  # frames
    sigma_range: float = 0.007  # crop widths (1.8 px at 256): larger moves are kept as they are


class TemporalBilateralSmoother:
    """Streams (index, points, payload) in frame order and returns them smoothed, each
    once `radius` later frames are known. A gap in the indices (dropped frames) ends a
    segment: frames are never smoothed across it. Windows shrink symmetrically at
    segment ends, so no frame is pulled toward one side."""

    def __init__(self, settings: BilateralSettings = BilateralSettings()):
        self.settings = settings
        self._segment: list[tuple[int, np.ndarray, object]] = []
        self._offset = 0  # frames of the segment already dropped from the front
        self._next = 0  # segment position of the next frame to emit

    def _smooth_at(self, position: int) -> np.ndarray:
        s = self.settings
        local = position - self._offset
        r = min(s.radius, local, len(self._segment) - 1 - local)
        centre = self._segment[local][1]
        if r <= 0:
            return centre.copy()
        window = np.stack([self._segment[j][1] for j in range(local - r, local + r + 1)])
        steps = np.arange(-r, r + 1, dtype=np.float64)
        weights = np.exp(-0.5 * (steps / s.sigma_time) ** 2)[:, None, None] * \
            np.exp(-0.5 * ((window - centre) / s.sigma_range) ** 2)
        return (weights * window).sum(0) / weights.sum(0)

    def _emit(self, upto: int) -> list[tuple[int, np.ndarray, object]]:
        out = []
        while self._next < upto:
            index, _, payload = self._segment[self._next - self._offset]
            out.append((index, self._smooth_at(self._next), payload))
            self._next += 1
        keep_from = max(0, self._next - self._offset - self.settings.radius)
        if keep_from:
            del self._segment[:keep_from]
            self._offset += keep_from
        return out

    def push(self, index: int, points: np.ndarray, payload: object = None) -> list[tuple[int, np.ndarray, object]]:
        out = []
        if self._segment and index != self._segment[-1][0] + 1:
            out = self.flush()
        self._segment.append((index, np.asarray(points, dtype=np.float64), payload))
        total = self._offset + len(self._segment)
        return out + self._emit(total - self.settings.radius)

    def flush(self) -> list[tuple[int, np.ndarray, object]]:
        """Emit everything still held (end of stream or before a gap)."""
        out = self._emit(self._offset + len(self._segment))
        self._segment, self._offset, self._next = [], 0, 0
        return out


@dataclass(frozen=True)
class OneEuroSettings:
    """One-euro filter: the cutoff rises with speed, so a still signal loses its jitter
    while fast motion is followed. Used causally for the moving crop box."""

    min_cutoff: float = 0.5  # Hz, cutoff when still
    beta: float = 2.0  # cutoff increase per unit/s of speed
    derivative_cutoff: float = 1.0  # Hz, smoothing of the speed estimate


class OneEuroFilter:
    """Element-wise one-euro filter over arrays of a fixed shape (Casiez et al., CHI 2012)."""

    def __init__(self, settings: OneEuroSettings = OneEuroSettings()):
        self.settings = settings
        self._value: np.ndarray | None = None
        self._speed: np.ndarray | None = None

    @staticmethod
    def _alpha(cutoff, dt: float):
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def reset(self) -> None:
        self._value = None
        self._speed = None

    def __call__(self, value: np.ndarray, dt: float) -> np.ndarray:
        value = np.asarray(value, dtype=np.float64)
        if self._value is None:
            self._value, self._speed = value.copy(), np.zeros_like(value)
            return value.copy()
        s = self.settings
        speed = (value - self._value) / dt
        self._speed = self._speed + self._alpha(s.derivative_cutoff, dt) * (speed - self._speed)
        cutoff = s.min_cutoff + s.beta * np.abs(self._speed)
        self._value = self._value + self._alpha(cutoff, dt) * (value - self._value)
        return self._value.copy()


def yaw_proxy(points: np.ndarray) -> float:
    """-1..1: 0 when the nose tip sits midway between the face-oval sides (frontal)."""
    left = points[NOSE_TIP, 0] - points[OVAL_IMAGE_LEFT, 0]
    right = points[OVAL_IMAGE_RIGHT, 0] - points[NOSE_TIP, 0]
    total = left + right
    return float((left - right) / total) if total > 0 else 1.0


def roll_degrees(points: np.ndarray) -> float:
    """In-plane rotation of the line through the iris centres."""
    dx, dy = points[IRIS_IMAGE_RIGHT] - points[IRIS_IMAGE_LEFT]
    return float(math.degrees(math.atan2(dy, dx)))


def frontal_error(points: np.ndarray) -> float:
    """How far from a frontal, upright face: 0 is frontal. Combines yaw and roll."""
    return abs(yaw_proxy(points)) + abs(roll_degrees(points)) / 90.0


def is_near_frontal(points: np.ndarray, max_yaw: float = 0.15, max_roll: float = 12.0) -> bool:
    return abs(yaw_proxy(points)) <= max_yaw and abs(roll_degrees(points)) <= max_roll
