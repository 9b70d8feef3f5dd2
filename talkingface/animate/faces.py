"""Faces in full frames: every face found, the largest chosen, then followed.

The face detector (BlazeFace, full range, whole frame) runs until a face is found and
again whenever the track is lost. In between, Face Mesh (478 points) follows the face
in a box around its last landmarks; the box moves only when the face has moved
noticeably, so the mesh's own frame-to-frame tracking sees a steady image. As in
preprocessing, a second detector checks each tracked face, because the mesh tracker
can hold on to a face that has gone.

Landmarks come out in frame pixels (continuous convention, as talkingface.preprocess.detect).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from talkingface.preprocess.detect import (CropBox, Detection, FaceDetector, box_around_points, crop_frame,
                                           detection_region)
from talkingface.preprocess.landmarks import FaceMeshTracker
from talkingface.preprocess.pipeline import CONTEXT_SIZE, context_box


class SeveralFacesWarning(UserWarning):
    """More than one face was found; the largest is used."""


@dataclass(frozen=True)
class TrackerSettings:
    min_confidence: float = 0.5  # detector and mesh thresholds: below them a frame has no face
    mesh_size: int = 256  # Face Mesh runs on a crop of this size
    region_expand: float = 1.6  # mesh crop side / landmark box side
    recentre: float = 0.15  # move the mesh crop once the face centre or size changes by this fraction of it
    # the second-opinion crop: framed like a preprocessing crop (reference crop settings)
    check_expand: float = 1.3
    check_offset_y: float = 0.2


class FaceTracker:
    """Landmarks of one face per frame, the largest when there are several.

    `still=True` treats every image alone (photos, or a video's frames scanned out of
    order); otherwise consecutive frames are tracked. `label` names the input in warnings.
    """

    def __init__(self, settings: TrackerSettings = TrackerSettings(), still: bool = False, label: str = "input"):
        import mediapipe as mp

        self.s = settings
        self.label = label
        self._detector = mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=settings.min_confidence)
        self._mesh = FaceMeshTracker(static=still, min_detection_confidence=settings.min_confidence,
                                     min_tracking_confidence=settings.min_confidence)
        self._checker = FaceDetector(full_range=False, min_confidence=0.1)
        self._region: CropBox | None = None
        self.frames = 0
        self.several_faces = 0  # detections that found more than one face

    def detect_all(self, frame: np.ndarray) -> list[Detection]:
        """Every face in an RGB uint8 frame, largest first."""
        h, w = frame.shape[:2]
        result = self._detector.process(np.ascontiguousarray(frame))
        found = []
        for d in result.detections or ():
            box = d.location_data.relative_bounding_box
            found.append(Detection(float(d.score[0]), box.xmin * w, box.ymin * h, box.width * w, box.height * h))
        return sorted(found, key=lambda d: d.width * d.height, reverse=True)

    def _choose(self, frame: np.ndarray) -> CropBox | None:
        faces = self.detect_all(frame)
        if not faces:
            return None
        if len(faces) > 1:
            if self.several_faces == 0:
                warnings.warn(f"{self.label}: {len(faces)} faces in frame {self.frames - 1}; using the largest",
                              SeveralFacesWarning, stacklevel=3)
            self.several_faces += 1
        return detection_region(faces[0])

    def process(self, frame: np.ndarray) -> np.ndarray | None:
        """N x 2 landmarks (frame pixels, float64) of the chosen face, or None."""
        self.frames += 1
        if self._region is None:
            self._region = self._choose(frame)
            if self._region is None:
                return None
        points01 = self._mesh.process(crop_frame(frame, self._region, self.s.mesh_size))
        if points01 is None:
            self._region = None  # lost: search the whole frame next time
            return None
        points = self._region.to_frame(points01)
        check = context_box(box_around_points(points, self.s.check_expand, self.s.check_offset_y))
        if self._checker.score(crop_frame(frame, check, CONTEXT_SIZE)) < self.s.min_confidence:
            self._region = None
            return None
        self._follow(points)
        return points

    def _follow(self, points: np.ndarray) -> None:
        target = box_around_points(points, self.s.region_expand, 0.0)
        region = self._region
        shift = np.hypot(target.x0 + target.side / 2 - region.x0 - region.side / 2,
                         target.y0 + target.side / 2 - region.y0 - region.side / 2)
        if shift > self.s.recentre * region.side or abs(target.side / region.side - 1) > self.s.recentre:
            self._region = target

    def reset(self) -> None:
        """A new shot: forget the followed region and the mesh's track, so the next frame is
        searched whole (a region carried over a cut fits the mesh to part of another face)."""
        self._region = None
        self._mesh.reset()

    def close(self) -> None:
        self._detector.close()
        self._mesh.close()
        self._checker.close()

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
