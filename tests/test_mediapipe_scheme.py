"""The mediapipe478 landmark scheme: its asset, and its subset roles on real photos
checked against an independent detector (dlib's 68-point model)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from talkingface.landmarks.encoding import draw_line_image, eye_mask, mouth_mask, normalized_subset
from talkingface.landmarks.scheme import ROLES, get_scheme

from helpers import photo

REPO = Path(__file__).resolve().parents[1]
FACES = REPO / "tests" / "data" / "faces"

# dlib 68-point indices (image left/right): eye corners, eyelids (two points each), mouth.
DLIB_LEFT_EYE = range(36, 42)
DLIB_RIGHT_EYE = range(42, 48)


def _load_script():
    script = REPO / "scripts" / "make_mediapipe_scheme.py"
    spec = importlib.util.spec_from_file_location("make_mediapipe_scheme", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def landmarks_on_photos():
    """{name: (image, 478 Face Mesh points in 0..1, dlib 68 points in pixels)}."""
    from talkingface.preprocess.identity import dlib_landmarks_68
    from talkingface.preprocess.landmarks import FaceMeshTracker

    out = {}
    with FaceMeshTracker(static=True) as mesh:
        for name in ("astronaut", "obama", "obama2", "biden"):
            image = photo(name)
            points = mesh.process(image)
            dlib68 = dlib_landmarks_68(image)
            assert points is not None and dlib68 is not None, name
            out[name] = (image, points, dlib68)
    return out


def test_asset_is_what_the_script_builds():
    scheme = get_scheme("mediapipe478")
    built = _load_script().build()
    assert scheme.num_points == int(built["num_points"]) == 478
    np.testing.assert_array_equal(scheme.edges, built["edges"])
    np.testing.assert_array_equal(scheme.edge_colors, built["edge_colors"])
    np.testing.assert_array_equal(scheme.subset, built["subset"])


def test_edges_are_the_face_mesh_contours_with_distinct_colours():
    from mediapipe.python.solutions import face_mesh_connections as c

    scheme = get_scheme("mediapipe478")
    expected = set()
    for part in (c.FACEMESH_LIPS, c.FACEMESH_LEFT_EYE, c.FACEMESH_RIGHT_EYE, c.FACEMESH_LEFT_EYEBROW,
                 c.FACEMESH_RIGHT_EYEBROW, c.FACEMESH_LEFT_IRIS, c.FACEMESH_RIGHT_IRIS, c.FACEMESH_FACE_OVAL,
                 c.FACEMESH_NOSE):
        expected |= {(min(a, b), max(a, b)) for a, b in part}
    assert {tuple(e) for e in scheme.edges.tolist()} == expected
    assert len({tuple(col) for col in scheme.edge_colors.tolist()}) == len(scheme.edges)
    assert scheme.edge_colors.max(axis=1).min() > 0  # nothing drawn in the background colour
    assert len(set(scheme.subset.tolist())) == 58
    assert set(scheme.subset[list(ROLES.gaze)].tolist()) == set(range(469, 473)) | set(range(474, 478))


@pytest.mark.parametrize("name", ["astronaut", "obama", "obama2", "biden"])
def test_subset_roles_match_dlib_68(landmarks_on_photos, name):
    image, points, d = landmarks_on_photos[name]
    h, w = image.shape[:2]
    scheme = get_scheme("mediapipe478")
    sub = points[scheme.subset] * (w, h)  # 58 x 2 pixels
    iod = np.linalg.norm(d[DLIB_LEFT_EYE].mean(0) - d[DLIB_RIGHT_EYE].mean(0))
    r = ROLES
    pairs = {
        "left eye, left corner": (r.left_eye[0], d[36]), "left eye, right corner": (r.left_eye[1], d[39]),
        "left eye, top lid": (r.left_eye[2], (d[37] + d[38]) / 2),
        "left eye, bottom lid": (r.left_eye[3], (d[40] + d[41]) / 2),
        "right eye, left corner": (r.right_eye[0], d[42]), "right eye, right corner": (r.right_eye[1], d[45]),
        "right eye, top lid": (r.right_eye[2], (d[43] + d[44]) / 2),
        "right eye, bottom lid": (r.right_eye[3], (d[46] + d[47]) / 2),
        "mouth left corner": (r.mouth_corners[0], d[48]), "mouth right corner": (r.mouth_corners[1], d[54]),
        "mouth top": (r.mouth_lips[0], d[51]), "mouth bottom": (r.mouth_lips[1], d[57]),
    }
    for what, (position, reference) in pairs.items():
        error = np.linalg.norm(sub[position] - reference) / iod
        assert error < 0.1, f"{name}: {what} is {error:.3f} inter-ocular distances from dlib's"
    # gaze points: four per eye, on the iris, inside dlib's eye box
    for gaze, eye in ((r.gaze[:4], DLIB_LEFT_EYE), (r.gaze[4:], DLIB_RIGHT_EYE)):
        centre = sub[list(gaze)].mean(0)
        lo, hi = d[eye].min(0) - 2, d[eye].max(0) + 2
        assert np.all(centre >= lo) and np.all(centre <= hi), f"{name}: iris {centre} outside eye box {lo}-{hi}"
        spread = np.ptp(sub[list(gaze)], axis=0)
        assert 0.05 * iod < spread[0] < 0.5 * iod  # a ring around the pupil, not one point


def test_encoding_masks_cover_dlib_eyes_and_mouth(landmarks_on_photos):
    image, points, d = landmarks_on_photos["obama"]
    h, w = image.shape[:2]
    scheme = get_scheme("mediapipe478")
    subset = normalized_subset(points, scheme)
    eyes, mouth = eye_mask(subset, scheme, h, w)[0], mouth_mask(subset, scheme, h, w)[0]
    for x, y in np.round(d[36:48]).astype(int):
        assert eyes[y, x] == 1
    for x, y in np.round(d[[48, 51, 54, 57]]).astype(int):
        assert mouth[y, x] == 1
    assert eyes.mean() < 0.1 and mouth.mean() < 0.1
    import cv2

    line = draw_line_image(points, scheme, h, w)
    bright = line.reshape(-1, 3)[line.reshape(-1, 3).max(1) > 120]
    hues = cv2.cvtColor(bright[None], cv2.COLOR_RGB2HSV)[0, :, 0].astype(int)  # 0..179
    assert len(np.unique(hues // 10)) >= 6  # the facial parts are drawn in different hues
