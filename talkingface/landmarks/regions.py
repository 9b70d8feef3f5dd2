"""Facial regions of the `mediapipe478` scheme as closed polygons (ordered point loops).

MediaPipe ships its mesh's contours as unordered edge sets (face oval, lips, eyes). A
region here is one closed loop through those edges, in drawing order, so it can be
filled (cv2.fillPoly) or measured. The lips' edge set holds two loops: the outer lip
line and the inner one (the mouth opening); they are told apart by their length along
the loop.

Used by full-resolution rendering (talkingface.animate.fullres) to know where the
warped photo cannot supply the pixels (the mouth opening, closing eyes) and which part
of the frame is the head.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

# Eyelid midpoints and eye corners (indices into the 478 points), for eye openness.
# Image-left eye first (the person's right eye): upper lid, lower lid, outer, inner corner.
EYE_LIDS: tuple[tuple[int, int, int, int], ...] = ((159, 145, 33, 133), (386, 374, 263, 362))
INNER_LIP_MIDDLE: tuple[int, int] = (13, 14)  # upper, lower inner lip at the centre
CHIN: int = 152
FOREHEAD: int = 10


@dataclass(frozen=True)
class FaceRegions:
    face_oval: np.ndarray  # K int: the face outline, forehead to chin
    inner_lips: np.ndarray  # the mouth opening
    outer_lips: np.ndarray
    eyes: tuple[np.ndarray, np.ndarray]  # each eye's lid line (image-left eye first)


def _loops(edges: set[tuple[int, int]]) -> list[np.ndarray]:
    """Split an undirected edge set whose vertices all have degree 2 into ordered loops."""
    neighbours: dict[int, list[int]] = {}
    for a, b in edges:
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    if any(len(n) != 2 for n in neighbours.values()):
        raise ValueError("edge set is not a union of simple loops")
    loops, seen = [], set()
    for start in sorted(neighbours):
        if start in seen:
            continue
        loop, previous, current = [start], None, start
        seen.add(start)
        while True:
            a, b = neighbours[current]
            following = b if a == previous else a
            if following == start:
                break
            loop.append(following)
            seen.add(following)
            previous, current = current, following
        loops.append(np.asarray(loop, dtype=np.int64))
    return loops


@functools.cache
def mediapipe_regions() -> FaceRegions:
    """The regions from MediaPipe's own face-mesh connection sets."""
    from mediapipe.python.solutions import face_mesh_connections as mesh

    (oval,) = _loops(set(mesh.FACEMESH_FACE_OVAL))
    lips = _loops(set(mesh.FACEMESH_LIPS))
    if len(lips) != 2:
        raise ValueError(f"expected the outer and inner lip loops, found {len(lips)}")
    inner = next(loop for loop in lips if INNER_LIP_MIDDLE[0] in loop)
    outer = next(loop for loop in lips if INNER_LIP_MIDDLE[0] not in loop)
    (left,) = _loops(set(mesh.FACEMESH_LEFT_EYE))
    (right,) = _loops(set(mesh.FACEMESH_RIGHT_EYE))
    # image-left eye first, as EYE_LIDS: MediaPipe's "right eye" is the person's right, on the image's left
    return FaceRegions(face_oval=oval, inner_lips=inner, outer_lips=outer, eyes=(right, left))


def eye_openness(points: np.ndarray) -> np.ndarray:
    """Each eye's lid gap over its width (2,), for N x 2 points in any units."""
    points = np.asarray(points, dtype=np.float64)
    out = []
    for upper, lower, outer, inner in EYE_LIDS:
        width = np.linalg.norm(points[outer] - points[inner])
        out.append(np.linalg.norm(points[upper] - points[lower]) / max(width, 1e-9))
    return np.asarray(out)


def face_size(points: np.ndarray) -> float:
    """Forehead-to-chin distance, in the points' units."""
    points = np.asarray(points, dtype=np.float64)
    return float(np.linalg.norm(points[FOREHEAD] - points[CHIN]))
