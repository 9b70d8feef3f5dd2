"""Face detection (MediaPipe BlazeFace) and the square crop boxes around faces.

Coordinates: frame pixels in the continuous convention (pixel i covers [i, i+1)), the
one MediaPipe's normalised outputs use. A crop box is integer (x0, y0, side), so the
crop is an exact pixel window (zero-padded where it leaves the frame) resized to the
output size, and crop coordinates are exactly (p - (x0, y0)) / side.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CropBox:
    x0: int
    y0: int
    side: int

    def as_list(self) -> list[int]:
        return [self.x0, self.y0, self.side]

    def to_crop(self, points_px: np.ndarray) -> np.ndarray:
        """Frame pixel coordinates -> 0..1 of this crop."""
        return ((np.asarray(points_px, dtype=np.float64) - (self.x0, self.y0)) / self.side).astype(np.float32)

    def to_frame(self, points01: np.ndarray) -> np.ndarray:
        """0..1 of this crop -> frame pixel coordinates."""
        return np.asarray(points01, dtype=np.float64) * self.side + (self.x0, self.y0)


@dataclass(frozen=True)
class Detection:
    score: float
    x: float  # box left, frame pixels
    y: float
    width: float
    height: float


def box_around_points(points_px: np.ndarray, expand: float, offset_y: float) -> CropBox:
    """The square crop around a face given its landmarks in frame pixels.

    The face box is the landmarks' bounding box (top of the forehead to chin, cheek to
    cheek for Face Mesh). The crop side is `expand` x its longer side, and the crop
    centre moves down by `offset_y` x the box height: with the reference values (1.3,
    0.2) the crop keeps the chin, jaw and some neck, which move when talking, with a
    margin, and trims the top of the head.
    """
    points_px = np.asarray(points_px, dtype=np.float64)
    (x_min, y_min), (x_max, y_max) = points_px.min(0), points_px.max(0)
    width, height = x_max - x_min, y_max - y_min
    side = max(2, int(round(expand * max(width, height))))
    cx = (x_min + x_max) / 2
    cy = (y_min + y_max) / 2 + offset_y * height
    return CropBox(int(round(cx - side / 2)), int(round(cy - side / 2)), side)


def box_from_center(cx: float, cy: float, side: float) -> CropBox:
    side_px = max(2, int(round(side)))
    return CropBox(int(round(cx - side_px / 2)), int(round(cy - side_px / 2)), side_px)


def crop_frame(frame: np.ndarray, box: CropBox, size: int, replicate: bool = False) -> np.ndarray:
    """The box's pixels resized to size x size, uint8 RGB. Outside the frame: black, or with
    `replicate` the frame's edge pixels repeated (so a warp that reaches past the border
    samples plausible colours)."""
    import cv2

    h, w = frame.shape[:2]
    x0, y0, side = box.x0, box.y0, box.side
    x1, y1 = x0 + side, y0 + side
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if sx0 >= sx1 or sy0 >= sy1:
        return np.zeros((size, size, 3), dtype=np.uint8)
    window = frame[sy0:sy1, sx0:sx1]
    if (sx0, sy0, sx1, sy1) != (x0, y0, x1, y1):
        border = cv2.BORDER_REPLICATE if replicate else cv2.BORDER_CONSTANT
        window = cv2.copyMakeBorder(window, sy0 - y0, y1 - sy1, sx0 - x0, x1 - sx1, border, value=0)
    # INTER_AREA averages when shrinking (no aliasing); it equals bilinear when enlarging.
    interpolation = cv2.INTER_AREA if side >= size else cv2.INTER_LINEAR
    return cv2.resize(window, (size, size), interpolation=interpolation)


class FaceDetector:
    """MediaPipe BlazeFace; `full_range=True` for whole frames (small, far faces),
    False for crops where the face fills most of the image."""

    def __init__(self, full_range: bool, min_confidence: float = 0.3):
        import mediapipe as mp

        self._detector = mp.solutions.face_detection.FaceDetection(
            model_selection=1 if full_range else 0, min_detection_confidence=min_confidence)

    def detect_all(self, image: np.ndarray) -> list[Detection]:
        """Every face in an RGB uint8 image, the highest-scoring first."""
        h, w = image.shape[:2]
        found = []
        for d in self._detector.process(np.ascontiguousarray(image)).detections or ():
            rel = d.location_data.relative_bounding_box
            found.append(Detection(float(d.score[0]), rel.xmin * w, rel.ymin * h, rel.width * w, rel.height * h))
        return sorted(found, key=lambda d: d.score, reverse=True)

    def detect(self, image: np.ndarray) -> Detection | None:
        """The highest-scoring face in an RGB uint8 image, or None."""
        faces = self.detect_all(image)
        return faces[0] if faces else None

    def score(self, image: np.ndarray) -> float:
        """Face confidence of an image (0 when nothing is found)."""
        det = self.detect(image)
        return 0.0 if det is None else det.score

    def count(self, image: np.ndarray) -> int:
        """How many faces an RGB uint8 image holds."""
        return len(self._detector.process(np.ascontiguousarray(image)).detections or ())

    def close(self) -> None:
        self._detector.close()

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def detection_region(det: Detection, scale: float = 2.0) -> CropBox:
    """A generous square around a detection, for running the landmark model on it."""
    side = scale * max(det.width, det.height)
    return box_from_center(det.x + det.width / 2, det.y + det.height / 2, side)
