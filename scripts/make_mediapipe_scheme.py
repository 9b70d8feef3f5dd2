"""Build talkingface/landmarks/assets/mediapipe478.npz, the MediaPipe Face Mesh scheme.

The 478 points are MediaPipe Face Mesh with iris refinement (468 mesh points plus
5 per iris). The line image draws the face-mesh contour sets that ship inside the
mediapipe package (`mp.solutions.face_mesh_connections`): lips, both eyes, both
brows, both irises, the face oval and the nose. The dense tesselation is left out:
the line image should show facial parts, not the triangle mesh.

Colours: each facial part has its own hue (left and right parts differ, so the
network can tell them apart); within a part each edge gets its own brightness, so
every edge colour in the scheme is distinct and none is black (the background).

The 58-point subset follows `talkingface.landmarks.scheme.SubsetRoles`. "Left" and
"right" are image left and right: the subset's left eye is the subject's right eye,
which MediaPipe calls RIGHT_EYE. See docs/landmarks.md for every index.

Run from the repo root: python scripts/make_mediapipe_scheme.py
"""
from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np

OUT = Path("talkingface/landmarks/assets/mediapipe478.npz")
NUM_POINTS = 478

# (part name, connection-set name in face_mesh_connections, hue in degrees).
# MediaPipe names parts from the subject's point of view: RIGHT_* is on the image left.
PARTS = (
    ("lips", "FACEMESH_LIPS", 350),
    ("image-left eye", "FACEMESH_RIGHT_EYE", 200),
    ("image-left brow", "FACEMESH_RIGHT_EYEBROW", 140),
    ("image-left iris", "FACEMESH_RIGHT_IRIS", 270),
    ("image-right eye", "FACEMESH_LEFT_EYE", 25),
    ("image-right brow", "FACEMESH_LEFT_EYEBROW", 80),
    ("image-right iris", "FACEMESH_LEFT_IRIS", 310),
    ("face oval", "FACEMESH_FACE_OVAL", 175),
    ("nose", "FACEMESH_NOSE", 50),
)

# The 58-point subset, by position. Role positions (SubsetRoles) are marked; the others
# are spread over brows, nose, jaw and lips so the subset outlines the whole face.
SUBSET = (
    1,  # 0: nose tip
    33, 133, 159, 145,  # 1-4 role: image-left eye: left (outer) corner, right (inner) corner, top lid, bottom lid
    362, 263, 386, 374,  # 5-8 role: image-right eye: left (inner) corner, right (outer) corner, top lid, bottom lid
    168, 6, 4, 64, 294,  # 9-13: nose bridge (between the eyes), bridge, above the tip, left and right nostril wings
    61, 291,  # 14-15 role: mouth corners, image left and right
    234, 93, 132, 58, 172, 150, 152, 379, 397, 288, 361, 323, 454,  # 16-28: jaw, image-left ear - chin - right ear
    469, 470, 471, 472,  # 29-32 role (gaze): image-left iris boundary: right, top, left, bottom
    474, 475, 476, 477,  # 33-36 role (gaze): image-right iris boundary: right, top, left, bottom
    70, 63, 105, 66, 107,  # 37-41: image-left brow, outer to inner
    336, 296, 334, 293, 300,  # 42-46: image-right brow, inner to outer
    13, 14, 78, 308,  # 47-50: inner lips: top, bottom, left and right inner corners
    37, 267, 84, 314,  # 51-54: outer lips: upper left and right, lower left and right
    10,  # 55: top of the face oval (forehead)
    0, 17,  # 56-57 role: mouth top (upper lip, outer) and bottom (lower lip, outer)
)


def edge_colors(num_edges: int, hue_degrees: float) -> np.ndarray:
    """One RGB colour per edge: the part's hue, brightness stepping from 255 down to 135."""
    colors = []
    for e in range(num_edges):
        value = 1.0 - 120.0 / 255.0 * e / max(num_edges - 1, 1)
        saturation = 1.0 if e % 2 == 0 else 0.8  # neighbours differ in saturation as well
        r, g, b = colorsys.hsv_to_rgb(hue_degrees / 360.0, saturation, value)
        colors.append((round(r * 255), round(g * 255), round(b * 255)))
    return np.array(colors, dtype=np.uint8)


def build() -> dict[str, np.ndarray]:
    from mediapipe.python.solutions import face_mesh_connections as connections

    edges, colors = [], []
    for _, set_name, hue in PARTS:
        # frozensets have no order: sort so the file is the same on every run
        part = sorted((min(a, b), max(a, b)) for a, b in getattr(connections, set_name))
        edges.extend(part)
        colors.append(edge_colors(len(part), hue))
    edges_arr = np.array(edges, dtype=np.int64)
    colors_arr = np.concatenate(colors)
    subset = np.array(SUBSET, dtype=np.int64)
    assert len(subset) == 58 and len(set(SUBSET)) == 58, "subset must be 58 distinct indices"
    assert len({tuple(e) for e in edges}) == len(edges), "duplicate edge"
    assert len({tuple(c) for c in colors_arr}) == len(colors_arr), "edge colours must be distinct"
    assert colors_arr.max(axis=1).min() > 0, "no edge may be black"
    assert edges_arr.max() < NUM_POINTS and subset.max() < NUM_POINTS
    return {"num_points": np.array(NUM_POINTS), "edges": edges_arr.astype(np.int32), "edge_colors": colors_arr,
            "subset": subset.astype(np.int32)}


def main() -> None:
    arrays = build()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez(OUT, **arrays)
    print(f"wrote {OUT}: {int(arrays['num_points'])} points, {len(arrays['edges'])} edges, "
          f"{len(arrays['subset'])} subset points")


if __name__ == "__main__":
    main()
