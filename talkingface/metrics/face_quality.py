"""How real does a rendered face look next to its photo? Sharpness and identity distance.

- Face sharpness: the variance of the Laplacian of the grey image inside the face
  (MediaPipe's face outline, shrunk a little so the face's own border with the
  background does not count). A render is compared with its photo as a ratio: 1.0 is
  as sharp as the photo, a face upsampled from 64 px scores about 0.1.
- Identity distance: the Euclidean distance between dlib's 128-d face descriptors
  (dlib calls < 0.6 the same person; photos of one person typically sit at 0.3-0.45).

Both find the face themselves (MediaPipe Face Mesh in still-image mode; dlib's HOG
detector and 68 points), so they apply to any frame of any video.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from talkingface.landmarks.regions import mediapipe_regions
from talkingface.metrics.identity import default_identity_encoder
from talkingface.metrics.landmarks import default_landmarker
from talkingface.preprocess.landmarks import FaceMeshTracker

SHRINK = 0.9  # the face outline is scaled about its centre by this before measuring


def face_points(image: np.ndarray, tracker=None) -> np.ndarray | None:
    """MediaPipe's 478 landmarks of the largest face, in pixels (N x 2), or None. Pass a
    still-image FaceMeshTracker to reuse it over many images (else one is made for this one)."""
    if tracker is None:
        with FaceMeshTracker(static=True) as own:
            return face_points(image, own)
    points = tracker.process(np.ascontiguousarray(image, dtype=np.uint8))
    if points is None:
        return None
    return np.asarray(points, dtype=np.float64) * (image.shape[1], image.shape[0])


def sharpness(image: np.ndarray, points_px: np.ndarray) -> float:
    """Variance of the Laplacian (grey, 0..255) inside the face outline of `points_px`."""
    import cv2

    oval = np.asarray(points_px, dtype=np.float64)[mediapipe_regions().face_oval]
    centre = oval.mean(axis=0)
    polygon = np.round(centre + (oval - centre) * SHRINK).astype(np.int32)
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [polygon], 1)
    grey = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float64)
    laplacian = cv2.Laplacian(grey, cv2.CV_64F, ksize=3)
    inside = laplacian[mask > 0]
    return float(inside.var()) if inside.size > 16 else math.nan


def face_sharpness(image: np.ndarray, tracker=None) -> float:
    """`sharpness` of the largest face MediaPipe finds; NaN without a face."""
    points = face_points(image, tracker)
    return math.nan if points is None else sharpness(image, points)


class IdentityDistance:
    """dlib descriptor distance to one reference face (the photo), computed once. Frames are
    searched where the photo's face is (dlib.DlibLandmarker.detect's `near`): a video made
    from the photo keeps the face near its place, and a false detection elsewhere (a badge)
    would score a stranger."""

    def __init__(self, reference: np.ndarray):
        self.landmarker = default_landmarker()
        self.encoder = default_identity_encoder()
        reference = np.ascontiguousarray(reference, dtype=np.uint8)
        face = self.landmarker.detect(reference)
        self.box = None if face is None else face.box  # where frames are searched for the face
        self.reference = None if face is None else self.encoder.embed(reference, face)

    def descriptor(self, image: np.ndarray) -> np.ndarray | None:
        image = np.ascontiguousarray(image, dtype=np.uint8)
        face = self.landmarker.detect(image, near=self.box)
        return None if face is None else self.encoder.embed(image, face)

    def __call__(self, image: np.ndarray) -> float:
        """Distance of the largest face in `image` to the reference; NaN when either has no face."""
        if self.reference is None:
            return math.nan
        other = self.descriptor(image)
        return math.nan if other is None else float(np.linalg.norm(other - self.reference))


@dataclass
class FaceQuality:
    sharpness_ratio: float  # mean face sharpness of the frames / the photo's
    identity_distance: float  # mean dlib distance of the frames to the photo
    frames_without_face: int


def face_quality(photo: np.ndarray, frames, every: int = 1) -> FaceQuality:
    """Sharpness ratio and identity distance of video frames against their photo, over
    every `every`-th frame (frames without a detectable face are counted, not scored)."""
    with FaceMeshTracker(static=True) as tracker:
        return _face_quality(photo, frames, every, tracker)


def _face_quality(photo: np.ndarray, frames, every: int, tracker) -> FaceQuality:
    reference = face_sharpness(photo, tracker)
    distance = IdentityDistance(photo)
    ratios, distances, missing = [], [], 0
    for index, frame in enumerate(frames):
        if index % every:
            continue
        value = face_sharpness(frame, tracker)
        d = distance(frame)
        if math.isnan(value) or math.isnan(d):
            missing += 1
            continue
        ratios.append(value / reference)
        distances.append(d)
    nan = math.nan
    return FaceQuality(float(np.mean(ratios)) if ratios else nan, float(np.mean(distances)) if distances else nan,
                       missing)
