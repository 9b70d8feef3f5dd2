"""Synthetic clips with out-of-plane head turns (3-D Face Mesh), smiles, brow raises and teeth."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from talkingface.data import synthetic as S
from talkingface.data.synthetic import Motion, MotionSpec
from talkingface.errors import ConfigError
from talkingface.landmarks.scheme import get_scheme
from talkingface.preprocess.portrait import detect_landmarks

FACES = Path(__file__).resolve().parent / "data" / "faces"
SIZE = 256
NOSE_TIP = 1
OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176,
        149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]
CORNERS = [61, 291]  # mouth corners, image-left first
BROWS = [105, 334]  # upper brow, middle


@pytest.fixture(scope="module")
def scheme():
    return get_scheme("mediapipe478")


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    crop = cv2.resize(data.astronaut()[0:300, 90:390], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return crop, S.detect_mesh(crop)


@pytest.fixture(scope="module")
def obama():
    from talkingface.recipes.synth import crop_mesh

    image = np.asarray(Image.open(FACES / "obama.jpg").convert("RGB"))
    return crop_mesh(image, S.detect_mesh(image), SIZE)


def still(scheme, portrait, spec: MotionSpec | None = None, **values) -> S.SyntheticClip:
    """A one-frame clip of `portrait` at the given pose / expression (nothing else moves)."""
    image, mesh = portrait
    return S.synthesize_clip(image, mesh[:, :2], scheme, spec or MotionSpec(num_frames=1), mesh,
                             Motion.fixed(1, **values))


def face_width(points: np.ndarray) -> float:
    return float(np.ptp(points[OVAL, 0]) * SIZE)


def nose_offset(points: np.ndarray) -> np.ndarray:
    """Nose tip relative to the face outline's centre, px."""
    return (points[NOSE_TIP] - points[OVAL].mean(0)) * SIZE


# --------------------------------------------------------------------------- spec and motion
def test_new_spec_fields_are_validated_and_leave_old_curves_alone():
    for field, bad in (("max_yaw_deg", 40), ("max_pitch_deg", -1), ("smile_max", 0.5), ("brow_max", 0.2),
                       ("teeth", 1.5)):
        with pytest.raises(ConfigError, match=field):
            MotionSpec(**{field: bad})
    base = S.generate_motion(MotionSpec(num_frames=50, seed=3))
    more = S.generate_motion(MotionSpec(num_frames=50, seed=3, max_yaw_deg=20, max_pitch_deg=15, smile_max=0.15,
                                        brow_max=0.03))
    for name in ("shift", "scale", "rotation_deg", "mouth_open", "eye_closure"):
        np.testing.assert_array_equal(getattr(base, name), getattr(more, name))
    assert not base.turns_head and np.all(base.smile == 0) and np.all(base.brow == 0)
    assert 0.3 * 20 < np.abs(more.yaw_deg).max() <= 20 and np.abs(more.pitch_deg).max() <= 15
    assert 0 <= more.smile.min() and 0.05 < more.smile.max() <= 0.15 and 0 <= more.brow.min() <= more.brow.max() <= 0.03
    with pytest.raises(ConfigError, match="unknown"):
        Motion.fixed(1, roll=3)


def test_zero_angles_reproduce_todays_frames(scheme, astronaut):
    """A clip whose turn is zero renders exactly as without turns (no mesh needed or used)."""
    image, mesh = astronaut
    spec = MotionSpec(num_frames=6, seed=4, blink_every=8, mouth_open_max=0.15)
    plain = S.synthesize_clip(image, mesh[:, :2], scheme, spec)
    motion = S.generate_motion(dataclasses.replace(spec, max_yaw_deg=20, max_pitch_deg=10))
    motion.yaw_deg[:3] = 0
    motion.pitch_deg[:3] = 0
    turned = S.synthesize_clip(image, mesh[:, :2], scheme, spec, mesh, motion)
    for t in range(3):
        np.testing.assert_array_equal(turned.frames[t], plain.frames[t])
        np.testing.assert_array_equal(turned.landmarks[t], plain.landmarks[t])
    assert not np.array_equal(turned.frames[4], plain.frames[4])


# --------------------------------------------------------------------------- head turns
@pytest.mark.parametrize("pose", [dict(yaw_deg=-20), dict(yaw_deg=20), dict(pitch_deg=15), dict(pitch_deg=-15)])
def test_turned_landmarks_match_mediapipe(scheme, astronaut, obama, pose):
    """MediaPipe, run again on the turned face, finds it where the turned landmarks say.

    Measured (256 px crops, mean error over 478 points, % of the face width):
    astronaut 1.1 / 1.3 / 1.1 / 1.1, Obama 1.6 / 1.4 / 1.1 / 1.5 for yaw -20, +20,
    pitch +15, -15 (unturned frames: 0). The faces move by 5-12% of their width.
    """
    for portrait in (astronaut, obama):
        clip = still(scheme, portrait, **pose)
        found = detect_landmarks(clip.frames[0])
        width = face_width(clip.landmarks[0])
        error = np.hypot(*((found - clip.landmarks[0]) * SIZE).T).mean() / width
        moved = np.hypot(*((clip.landmarks[0] - portrait[1][:, :2]) * SIZE).T).mean() / width
        assert moved > 0.04 and error < 0.025, (moved, error)


def test_turn_direction_agrees_with_mediapipe(scheme, astronaut):
    """Yaw right moves the nose tip right of the outline's centre, pitch up moves it up:
    in the turned landmarks and in MediaPipe's own estimate on the frame."""
    image, mesh = astronaut
    frontal = nose_offset(mesh[:, :2])
    for pose, axis, sign in ((dict(yaw_deg=20), 0, 1), (dict(yaw_deg=-20), 0, -1),
                             (dict(pitch_deg=15), 1, -1), (dict(pitch_deg=-15), 1, 1)):
        clip = still(scheme, astronaut, **pose)
        ours = nose_offset(clip.landmarks[0])[axis] - frontal[axis]
        seen = nose_offset(detect_landmarks(clip.frames[0]))[axis] - frontal[axis]
        assert sign * ours > 3 and sign * seen > 0.5 * sign * ours, (pose, ours, seen)


def test_turned_landmarks_and_pixels_share_one_map(scheme, astronaut):
    """Forward (landmarks) and backward (pixels) maps are exact inverses where a point is visible."""
    image, mesh = astronaut
    spec = MotionSpec(num_frames=8, seed=5, max_yaw_deg=20, max_pitch_deg=15, smile_max=0.2, brow_max=0.04,
                      mouth_open_max=0.12, blink_every=10, max_rotation_deg=8, max_shift=0.05, smoothness=8)
    clip = S.synthesize_clip(image, mesh[:, :2], scheme, spec, mesh)
    assert np.abs(clip.motion.yaw_deg).max() > 6
    points = mesh[:, :2].astype(np.float64)
    for t in (2, 6):
        moved = clip.move_points(t, points)
        np.testing.assert_allclose(moved, clip.landmarks[t], atol=1e-6)
        back = np.hypot(*((clip.source_points(t, moved) - points) * SIZE).T)
        if clip.eye_closure[t] < 1:
            assert np.mean(back < 1e-6) > 0.8 and back[NOSE_TIP] < 1e-6  # the rest is hidden by the turn
        # Whole frames: each pixel's source point moves back onto it (outside the mouth gap).
        map_x, map_y, gap = (m[::3, ::3] for m in clip.sampling_map(t))
        grid = (np.stack(np.meshgrid(np.arange(0, SIZE, 3), np.arange(0, SIZE, 3)), -1).reshape(-1, 2) + 0.5) / SIZE
        src = np.stack([map_x.ravel() + 0.5, map_y.ravel() + 0.5], 1) / SIZE
        keep = gap.ravel() == 0
        err = np.hypot(*((clip.move_points(t, src[keep]) - grid[keep]) * SIZE).T)
        assert err.max() < 1e-6, (np.mean(err < 1e-6), err.max())


def test_whole_frame_is_covered_and_background_stays(scheme, astronaut):
    image, mesh = astronaut
    for pose in (dict(yaw_deg=20), dict(yaw_deg=-20, pitch_deg=-15),
                 dict(yaw_deg=20, pitch_deg=15, rotation_deg=20, scale=0.8, shift=(0.2, -0.2))):
        clip = still(scheme, astronaut, **pose)
        assert (clip.triangle_map(0) >= 0).all()  # every output pixel lies in a drawn triangle
        assert all(np.isfinite(m).all() for m in clip.sampling_map(0))
        if "rotation_deg" not in pose:
            # Far from the face (the image corners: background, shoulders) the frame is the photo.
            frame = clip.frames[0].astype(float)
            for y, x in ((0, 0), (0, SIZE - 32), (SIZE - 32, 0), (SIZE - 32, SIZE - 32)):
                diff = np.abs(frame[y:y + 32, x:x + 32] - image[y:y + 32, x:x + 32])
                assert diff.mean() < 2.0, (pose, (y, x), diff.mean())


# --------------------------------------------------------------------------- expressions
def test_smile_raises_the_mouth_corners(scheme, astronaut, obama):
    """Corners go up and out by the requested share of the mouth width; MediaPipe agrees."""
    for portrait in (astronaut, obama):
        points = portrait[1][:, :2].astype(np.float64)
        clip = still(scheme, portrait, smile=0.2)
        width = np.hypot(*((points[CORNERS[1]] - points[CORNERS[0]]) * SIZE))
        lift = (points[CORNERS, 1] - clip.landmarks[0, CORNERS, 1]) * SIZE
        spread = (np.diff(clip.landmarks[0, CORNERS, 0]) - np.diff(points[CORNERS, 0]))[0] * SIZE
        assert np.all(lift > 0.12 * width) and spread > 0.05 * width, (lift, spread, width)
        found = detect_landmarks(clip.frames[0]).astype(np.float64)
        before = detect_landmarks(portrait[0]).astype(np.float64)
        seen = (before[CORNERS, 1] - found[CORNERS, 1]) * SIZE
        assert np.all(seen > 0.4 * lift), (seen, lift)
        # Far from the mouth (the forehead) nothing moves.
        np.testing.assert_allclose(clip.landmarks[0, 10], points[10], atol=1e-9)


def test_brow_raise_lifts_the_brows_not_the_eye_corners(scheme, obama):
    points = obama[1][:, :2].astype(np.float64)
    clip = still(scheme, obama, brow=0.03)
    height = np.ptp(points[:, 1]) * SIZE
    lift = (points[BROWS, 1] - clip.landmarks[0, BROWS, 1]) * SIZE
    assert np.all(lift > 0.02 * height), (lift, height)
    eye_corners = [33, 133, 362, 263]
    assert np.abs((clip.landmarks[0, eye_corners] - points[eye_corners]) * SIZE).max() < 0.5
    seen = (detect_landmarks(obama[0])[BROWS, 1] - detect_landmarks(clip.frames[0])[BROWS, 1]) * SIZE
    assert np.all(seen > 0.4 * lift), (seen, lift)


def test_open_mouth_shows_upper_teeth_over_a_dark_cavity(scheme, astronaut):
    image, mesh = astronaut
    spec = MotionSpec(num_frames=1, teeth=1.0)
    plain = still(scheme, astronaut, mouth_open=0.15)
    teeth = still(scheme, astronaut, spec, mouth_open=0.15)
    _, _, gap = plain.sampling_map(0)
    inside = gap > 0.99
    assert inside.sum() > 60
    rows = np.flatnonzero(inside.any(1))
    upper, lower = inside.copy(), inside.copy()
    upper[rows[len(rows) // 3]:] = False  # the top third of the gap
    lower[:rows[2 * len(rows) // 3]] = False  # the bottom third
    bright = teeth.frames[0].astype(float).mean(-1)
    assert bright[upper].mean() > bright[lower].mean() + 40  # teeth hang from the upper lip
    assert bright[lower].mean() < 90  # the cavity stays dark
    np.testing.assert_array_equal(teeth.landmarks, plain.landmarks)  # teeth are paint, not motion
    assert np.abs(teeth.frames[0].astype(int) - plain.frames[0]).max(-1)[~(gap > 0)].max() == 0


# --------------------------------------------------------------------------- the recipe and the CLI
def test_run_synth_with_turns_and_expressions(tmp_path):
    from talkingface.cli import build_parser
    from talkingface.recipes.synth import SynthOptions, run_synth

    args = build_parser().parse_args(["synth", "--portrait", "x.jpg", "--out", "o", "--max-yaw", "20",
                                      "--max-pitch", "12", "--smile", "0.15", "--brow", "0.03", "--teeth", "0.8"])
    turns = (args.max_yaw_deg, args.max_pitch_deg, args.smile_max, args.brow_max, args.teeth)  # MotionSpec's fields
    assert turns == (20, 12, 0.15, 0.03, 0.8)
    spec = MotionSpec(max_yaw_deg=20, max_pitch_deg=12, smile_max=0.15, smoothness=4)
    result = run_synth(SynthOptions(portraits=[str(FACES / "obama.jpg")], out=str(tmp_path / "ds"), frames=4,
                                    seed=2, size=128, spec=spec))
    with np.load(result.root / "0" / S.MOTION_FILE) as gt:
        assert np.abs(gt["yaw_deg"]).max() > 1 and gt["smile"].shape == (4,)
    landmarks = np.load(result.root / "0" / "ldmks" / "00000003_ldmk.npy")
    frame = np.asarray(Image.open(result.root / "0" / "imgs" / "00000003.png"))
    found = detect_landmarks(frame)
    assert np.hypot(*((found - landmarks) * 128).T).mean() < 0.03 * face_width(landmarks) * 128 / SIZE
