"""Synthetic talking clips: determinism, bounds, smoothness, and landmarks that move with the pixels."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from talkingface.data import synthetic as S
from talkingface.data.official import OfficialDataset
from talkingface.errors import ConfigError, DataError
from talkingface.landmarks.scheme import LandmarkScheme, get_scheme
from talkingface.preprocess.portrait import detect_landmarks

from helpers import smooth_image

FACES = Path(__file__).resolve().parent / "data" / "faces"
SIZE = 256
EYE_ROLES = [1, 2, 3, 4, 5, 6, 7, 8, 29, 30, 31, 32, 33, 34, 35, 36]

# A face in a 256 crop, by subset role: eyes 28 px wide, upper lid 6 px above the corner
# line and lower lid 3 px below; mouth 44 px wide, outer lips 16 px apart.
ROLE_XY = {1: (88, 110), 2: (116, 110), 3: (102, 104), 4: (102, 113),
           5: (140, 110), 6: (168, 110), 7: (154, 104), 8: (154, 113),
           14: (106, 170), 15: (150, 170), 56: (128, 163), 57: (128, 179),
           29: (98, 109), 30: (106, 109), 31: (102, 106), 32: (102, 112),
           33: (150, 109), 34: (158, 109), 35: (154, 106), 36: (154, 112)}


def face_layout(scheme: LandmarkScheme, seed: int = 0) -> np.ndarray:
    """Role points at ROLE_XY, the rest scattered over the face away from the lip line."""
    rng = np.random.default_rng(seed)
    points = []
    while len(points) < scheme.num_points:
        p = rng.uniform([60, 60], [196, 220])
        if not (96 < p[0] < 160 and abs(p[1] - 171) < 6):
            points.append(p)
    points = np.array(points)
    for position, xy in ROLE_XY.items():
        points[scheme.subset[position]] = xy
    return points / SIZE


def mediapipe_scheme() -> LandmarkScheme:
    """The mediapipe478 scheme, or a stand-in with its roles where the asset is missing."""
    try:
        return get_scheme("mediapipe478")
    except ConfigError:
        pass
    subset = np.zeros(58, dtype=np.int64)
    for position, index in S.MEDIAPIPE_ROLE_POINTS.items():
        subset[position] = index
    return LandmarkScheme("mediapipe-test", 478, np.array([[0, 1]]), np.array([[255, 255, 255]], np.uint8), subset)


def local_ab(points: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates along p0->p1 and across it (down), for distances measured in a rotated face."""
    axis = (p1 - p0) / np.linalg.norm(p1 - p0)
    normal = np.array([-axis[1], axis[0]])
    d = points - 0.5 * (p0 + p1)
    return d @ axis, d @ normal


def lip_gap(points: np.ndarray, scheme: LandmarkScheme) -> float:
    sub = points[scheme.subset] * SIZE
    _, b = local_ab(sub[[56, 57]], sub[14], sub[15])
    return float(b[1] - b[0])


def lid_gap(points: np.ndarray, scheme: LandmarkScheme, eye=(1, 2, 3, 4)) -> float:
    sub = points[scheme.subset] * SIZE
    _, b = local_ab(sub[[eye[2], eye[3]]], sub[eye[0]], sub[eye[1]])
    return float(b[1] - b[0])


@pytest.fixture(scope="module")
def dense():
    return get_scheme("dense669")


@pytest.fixture(scope="module")
def grey_face(dense):
    return smooth_image(np.random.default_rng(0), SIZE), face_layout(dense)


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    crop = cv2.resize(data.astronaut()[0:300, 90:390], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return crop, detect_landmarks(crop)


@pytest.fixture(scope="module")
def obama():
    image = np.asarray(Image.open(FACES / "obama.jpg").convert("RGB"))
    return image, detect_landmarks(image)


STRONG = S.MotionSpec(num_frames=40, seed=1, blink_every=12, mouth_open_max=0.1, max_rotation_deg=8,
                      max_shift=0.05, max_scale=0.08, smoothness=10)
STILL = dict(max_shift=0.0, max_scale=0.0, max_rotation_deg=0.0)


# --------------------------------------------------------------------------- basics
def test_spec_is_validated():
    with pytest.raises(ConfigError, match="max_shift"):
        S.MotionSpec(max_shift=-0.1)
    with pytest.raises(ConfigError, match="num_frames"):
        S.MotionSpec(num_frames=0)
    with pytest.raises(ConfigError, match="blink_every"):
        S.MotionSpec(blink_every=3, blink_frames=7)


def test_bad_inputs_are_data_errors(grey_face, dense):
    image, points = grey_face
    with pytest.raises(DataError, match="669 x 2"):
        S.synthesize_clip(image, points[:100], dense, S.MotionSpec(num_frames=2))
    with pytest.raises(DataError, match="uint8"):
        S.synthesize_clip(image.astype(np.float32), points, dense, S.MotionSpec(num_frames=2))


def test_shapes_and_lazy_frames(grey_face, dense):
    image, points = grey_face
    clip = S.synthesize_clip(image, points, dense, S.MotionSpec(num_frames=5, seed=0))
    assert clip.num_frames == len(clip.frames) == 5
    assert clip.landmarks.shape == (5, 669, 2) and clip.landmarks.dtype == np.float32
    assert clip.affines.shape == clip.affines_px.shape == (5, 2, 3)
    assert clip.mouth_open.shape == clip.eye_closure.shape == (5,)
    frames = list(clip.frames)
    assert len(frames) == 5 and all(f.shape == image.shape and f.dtype == np.uint8 for f in frames)
    np.testing.assert_array_equal(clip.frames[-1], frames[4])
    assert len(clip.frames[1:3]) == 2
    with pytest.raises(IndexError):
        clip.frames[5]


def test_same_seed_same_clip_other_seed_other_clip(grey_face, dense):
    image, points = grey_face
    spec = S.MotionSpec(num_frames=6, seed=7)
    a, b = (S.synthesize_clip(image, points, dense, spec) for _ in range(2))
    c = S.synthesize_clip(image, points, dense, dataclasses.replace(spec, seed=8))
    np.testing.assert_array_equal(a.landmarks, b.landmarks)
    np.testing.assert_array_equal(a.affines, b.affines)
    for t in (0, 5):
        np.testing.assert_array_equal(a.frames[t], b.frames[t])
    assert not np.allclose(a.affines, c.affines)
    assert not np.array_equal(a.frames[5], c.frames[5])


# --------------------------------------------------------------------------- motion
def test_global_motion_is_bounded_smooth_and_matches_the_affines():
    spec = S.MotionSpec(num_frames=400, seed=3, max_shift=0.05, max_scale=0.06, max_rotation_deg=7, smoothness=30)
    m = S.generate_motion(spec)
    assert np.abs(m.shift).max() <= spec.max_shift + 1e-12
    assert np.abs(m.scale - 1).max() <= spec.max_scale + 1e-12
    assert np.abs(m.rotation_deg).max() <= spec.max_rotation_deg + 1e-12
    # It moves: each parameter covers a fair part of its range.
    assert np.abs(m.shift).max(0).min() > 0.3 * spec.max_shift
    assert np.abs(m.scale - 1).max() > 0.3 * spec.max_scale
    assert np.abs(m.rotation_deg).max() > 0.3 * spec.max_rotation_deg
    # Smooth: per-frame change <= 2*pi/smoothness of each bound.
    step = 2 * np.pi / spec.smoothness
    assert np.abs(np.diff(m.shift, axis=0)).max() <= step * spec.max_shift + 1e-12
    assert np.abs(np.diff(m.scale)).max() <= step * spec.max_scale + 1e-12
    assert np.abs(np.diff(m.rotation_deg)).max() <= step * spec.max_rotation_deg + 1e-12
    # Mouth and blinks stay in range and change gradually too.
    assert 0 <= m.mouth_open.min() and m.mouth_open.max() <= spec.mouth_open_max + 1e-12
    assert m.mouth_open.max() > 0.5 * spec.mouth_open_max
    assert np.abs(np.diff(m.mouth_open)).max() <= 0.7 * spec.mouth_open_max
    assert 0 <= m.eye_closure.min() and m.eye_closure.max() == pytest.approx(1.0)
    blinks = np.sum((m.eye_closure[1:] > 0) & (m.eye_closure[:-1] == 0))
    assert 2 <= blinks <= 8  # one per ~90 frames


def test_affines_are_the_reported_shift_scale_rotation(grey_face, dense):
    image, points = grey_face
    clip = S.synthesize_clip(image, points, dense, S.MotionSpec(num_frames=12, seed=4, mouth_open_max=0, blink_every=0))
    lin = clip.affines[:, :, :2]  # square image: normalised = pixel linear part
    np.testing.assert_allclose(np.sqrt(np.linalg.det(lin)), clip.motion.scale, atol=1e-9)
    np.testing.assert_allclose(np.degrees(np.arctan2(lin[:, 1, 0], lin[:, 0, 0])), clip.motion.rotation_deg, atol=1e-9)
    centre = clip.geometry.centre / SIZE  # the pivot moves by exactly the shift
    moved = np.einsum("tij,j->ti", lin, centre) + clip.affines[:, :, 2]
    np.testing.assert_allclose(moved - centre, clip.motion.shift, atol=1e-9)
    # Without local motion, every landmark follows the affine.
    expected = np.einsum("tij,nj->tni", lin, points) + clip.affines[:, None, :, 2]
    np.testing.assert_allclose(clip.landmarks, expected, atol=1e-6)


# --------------------------------------------------------------------------- landmarks follow pixels
def test_landmarks_and_pixels_share_one_map_exactly(grey_face, dense):
    """Landmarks move by the exact inverse of the map the pixels are sampled with."""
    image, points = grey_face
    clip = S.synthesize_clip(image, points, dense, STRONG)
    assert clip.eye_closure.max() == 1.0 and clip.mouth_open.max() > 0.08
    ys, xs = np.mgrid[0:SIZE:4, 0:SIZE:4] + 0.5  # pixel centres, continuous coordinates
    grid = np.stack([xs.ravel(), ys.ravel()], axis=1) / SIZE
    for t in range(clip.num_frames):
        moved = clip.move_points(t, points)
        np.testing.assert_allclose(moved, clip.landmarks[t], atol=1e-6)
        if clip.eye_closure[t] < 1:  # a shut eye folds its opening onto a line: no way back
            assert np.abs(clip.source_points(t, moved) - points).max() * SIZE < 1e-6
        # Every frame pixel, sampled from the source, moves back onto itself (except
        # inside the mouth gap, which shows no source point).
        map_x, map_y, gap = (m[::4, ::4].ravel() for m in clip.sampling_map(t))
        src = np.stack([map_x + 0.5, map_y + 0.5], axis=1) / SIZE  # cv2 centres -> continuous
        np.testing.assert_allclose(src, clip.source_points(t, grid), atol=1e-12)
        keep = gap == 0
        assert np.abs(clip.move_points(t, src[keep]) - grid[keep]).max() * SIZE < 1e-6


def _dot_image(points_px: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    ys, xs = np.mgrid[0:SIZE, 0:SIZE] + 0.5  # continuous coordinates of pixel centres
    img = np.zeros((SIZE, SIZE))
    for x, y in points_px:
        img += np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma ** 2))
    return np.repeat(np.clip(img * 255, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def _centroid(frame: np.ndarray, at: np.ndarray, radius: int = 4) -> np.ndarray:
    cx, cy = int(round(at[0] - 0.5)), int(round(at[1] - 0.5))
    win = frame[cy - radius:cy + radius + 1, cx - radius:cx + radius + 1, 1].astype(np.float64)
    ys, xs = np.mgrid[cy - radius:cy + radius + 1, cx - radius:cx + radius + 1] + 0.5
    return np.array([(win * xs).sum(), (win * ys).sum()]) / win.sum()


def _peak(frame: np.ndarray, at: np.ndarray, radius: int = 3, up: int = 8) -> np.ndarray:
    cx, cy = int(round(at[0] - 0.5)), int(round(at[1] - 0.5))
    win = frame[cy - radius:cy + radius + 1, cx - radius:cx + radius + 1, 1].astype(np.float64)
    big = cv2.resize(win, None, fx=up, fy=up, interpolation=cv2.INTER_CUBIC)
    iy, ix = np.unravel_index(np.argmax(big), big.shape)
    return np.array([cx - radius + (ix + 0.5) / up, cy - radius + (iy + 0.5) / up])


def test_rendered_dots_land_on_the_moved_landmarks(dense):
    """Gaussian dots drawn at the landmarks end up at the moved landmarks in every frame."""
    points = face_layout(dense)
    px = points * SIZE
    chosen: list[int] = []
    for i in [dense.subset[p] for p in ROLE_XY] + list(range(dense.num_points)):
        if all(np.hypot(*(px[i] - px[j])) >= 12 for j in chosen):
            chosen.append(i)
    assert len(chosen) > 60
    clip = S.synthesize_clip(_dot_image(px[chosen]), points, dense, STRONG)
    eye_points = set(dense.subset[EYE_ROLES].tolist())
    errors, lid_errors = [], []
    for t in range(clip.num_frames):
        frame = clip.frames[t]
        for i in chosen:
            q = clip.landmarks[t, i].astype(np.float64) * SIZE
            if clip.eye_closure[t] > 0 and i in eye_points:
                # The lid margin is a crease of the map (squeezed inside, not outside), which
                # shifts a blob's centroid; its peak still lands on the point.
                lid_errors.append(np.hypot(*(_peak(frame, q) - q)))
            else:
                errors.append(np.hypot(*(_centroid(frame, q) - q)))
    assert max(errors) < 0.75, max(errors)
    assert np.mean(errors) < 0.1
    assert len(lid_errors) > 20 and max(lid_errors) < 1.0, max(lid_errors)


# --------------------------------------------------------------------------- mouth and eyes
def test_mouth_opening_adds_the_requested_lip_gap(grey_face, dense):
    image, points = grey_face
    spec = S.MotionSpec(num_frames=30, seed=2, mouth_open_max=0.1, blink_every=0, **STILL)
    clip = S.synthesize_clip(image, points, dense, spec)
    base = lip_gap(points, dense)
    added = np.array([lip_gap(clip.landmarks[t], dense) for t in range(clip.num_frames)]) - base
    np.testing.assert_allclose(added, clip.mouth_open * clip.geometry.face_height, atol=1e-3)
    assert added.max() > 0.05 * clip.geometry.face_height
    # The mouth corners stay put; the gap between the lips is dark.
    corners = dense.subset[[14, 15]]
    np.testing.assert_allclose(clip.landmarks[:, corners], np.broadcast_to(points[corners], (30, 2, 2)), atol=1e-6)
    t = int(np.argmax(clip.mouth_open))
    top, bottom = clip.landmarks[t, dense.subset[[56, 57]]] * SIZE
    _, parting_y = ((top + bottom) / 2).astype(int)
    centre_row = clip.frames[t][parting_y, 124:133].astype(float).mean()
    assert centre_row < 0.6 * image[160:180, 110:146].astype(float).mean()


def test_blinks_close_the_eyes(grey_face, dense):
    image, points = grey_face
    spec = S.MotionSpec(num_frames=40, seed=5, blink_every=15, mouth_open_max=0, **STILL)
    clip = S.synthesize_clip(image, points, dense, spec)
    for eye in ((1, 2, 3, 4), (5, 6, 7, 8)):
        base = lid_gap(points, dense, eye)
        gaps = np.array([lid_gap(clip.landmarks[t], dense, eye) for t in range(clip.num_frames)])
        np.testing.assert_allclose(gaps, (1 - clip.eye_closure) * base, atol=1e-4)
        assert gaps.min() < 0.05 * base
        corners = dense.subset[list(eye[:2])]
        np.testing.assert_allclose(clip.landmarks[:, corners], np.broadcast_to(points[corners], (40, 2, 2)), atol=1e-6)
    # Far from the face nothing moves.
    t = int(np.argmax(clip.eye_closure))
    np.testing.assert_array_equal(clip.frames[t][:40], image[:40])


# --------------------------------------------------------------------------- real portraits
def _redetect_error(clip: S.SyntheticClip, t: int, scheme_points: np.ndarray | None = None) -> np.ndarray:
    found = detect_landmarks(clip.frames[t])
    expected = clip.landmarks[t] if scheme_points is None else scheme_points
    return np.hypot(*((found - expected) * SIZE).T)


def test_astronaut_head_motion_matches_mediapipe(astronaut):
    """MediaPipe, run again on synthetic frames, finds the face where the moved landmarks say."""
    image, points = astronaut
    scheme = mediapipe_scheme()
    spec = S.MotionSpec(num_frames=21, seed=2, mouth_open_max=0, blink_every=0, max_shift=0.05,
                        max_rotation_deg=8, max_scale=0.08, smoothness=12)
    clip = S.synthesize_clip(image, points, scheme, spec)
    for t in (5, 20):
        moved = np.hypot(*((clip.landmarks[t] - points) * SIZE).T).mean()
        err = _redetect_error(clip, t)
        assert moved > 3 and err.mean() < 1.0, (moved, err.mean())


def test_astronaut_mouth_and_blink_are_seen_by_mediapipe(astronaut):
    image, points = astronaut
    scheme = mediapipe_scheme()
    spec = S.MotionSpec(num_frames=12, seed=2, mouth_open_max=0.1, blink_every=10, **STILL)
    clip = S.synthesize_clip(image, points, scheme, spec)
    tm, tb = int(np.argmax(clip.mouth_open)), int(np.argmax(clip.eye_closure))
    assert clip.eye_closure[tb] == 1.0
    requested = clip.mouth_open[tm] * clip.geometry.face_height
    predicted = lip_gap(clip.landmarks[tm], scheme) - lip_gap(points, scheme)
    assert predicted == pytest.approx(requested, rel=0.02)
    found = detect_landmarks(clip.frames[tm])
    assert lip_gap(found, scheme) - lip_gap(points, scheme) > 0.7 * requested
    found = detect_landmarks(clip.frames[tb])
    assert lid_gap(found, scheme) < 0.6 * lid_gap(points, scheme)


def test_obama_with_dense669_stand_in(obama, dense):
    image, mp_points = obama
    points = S.landmarks_for_scheme(mp_points, dense)
    assert points.shape == (669, 2)
    for position, index in S.MEDIAPIPE_ROLE_POINTS.items():
        np.testing.assert_array_equal(points[dense.subset[position]], mp_points[index])
    spec = S.MotionSpec(num_frames=16, seed=6, blink_every=8)
    clip = S.synthesize_clip(image, points, dense, spec)
    assert np.abs(clip.landmarks - points).max() > 0.01
    t = int(np.argmax(clip.eye_closure))
    assert lid_gap(clip.landmarks[t], dense) < 0.05 * lid_gap(points, dense)
    # Role points agree with MediaPipe on a frame with head motion.
    t = int(np.argmin(clip.eye_closure + clip.mouth_open))
    found = S.landmarks_for_scheme(detect_landmarks(clip.frames[t]), dense)
    roles = dense.subset[[1, 2, 5, 6, 14, 15]]  # eye and mouth corners
    assert np.hypot(*((found[roles] - clip.landmarks[t, roles]) * SIZE).T).mean() < 2.0


def test_role_points_match_the_mediapipe478_scheme():
    try:
        scheme = get_scheme("mediapipe478")
    except ConfigError:
        pytest.skip("mediapipe478 scheme asset not installed")
    for position, index in S.MEDIAPIPE_ROLE_POINTS.items():
        assert scheme.subset[position] == index, position


def test_face_crop_keeps_landmarks_on_the_pixels(obama):
    from talkingface.recipes.synth import crop_face

    image, points = obama
    crop, moved = crop_face(image, points, size=128)
    assert crop.shape == (128, 128, 3)
    found = detect_landmarks(crop)
    assert np.hypot(*((found - moved) * 128).T).mean() < 1.0


def test_no_face_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no face") as err:
        detect_landmarks(np.full((128, 128, 3), 127, np.uint8), tmp_path / "blank.png")
    assert err.value.path == str(tmp_path / "blank.png")


# --------------------------------------------------------------------------- datasets and the recipe
def test_dataset_reads_back_in_the_official_layout(tmp_path, grey_face, dense):
    image, points = grey_face
    small = cv2.resize(image, (64, 64), interpolation=cv2.INTER_AREA)
    spec = S.MotionSpec(num_frames=3, seed=9)
    root, clips = S.write_synthetic_dataset(tmp_path / "synth", [(small, points), (small[::-1].copy(), points)],
                                            spec, identity_dim=16, scheme=dense)
    ds = OfficialDataset(root, dense, 64, 16)
    assert len(ds) == 6 and ds.identities == [0, 1]
    item = ds[4]
    assert item["driving"].shape == (3, 64, 64) and item["identity"].shape == (16,)
    assert abs(float(item["identity"].norm()) - 1) < 1e-5
    np.testing.assert_allclose(np.load(root / "1" / "ldmks" / "00000001_ldmk.npy"), clips[1].landmarks[1])
    np.testing.assert_array_equal(np.asarray(Image.open(root / "0" / "imgs" / "00000002.png")), clips[0].frames[2])
    with np.load(root / "1" / S.MOTION_FILE) as gt:
        np.testing.assert_array_equal(gt["affines"], clips[1].affines)
        np.testing.assert_array_equal(gt["eye_closure"], clips[1].eye_closure)
    # Clip k has its own seed, so the two identities move differently.
    assert not np.allclose(clips[0].affines, clips[1].affines)
    again, _ = S.write_synthetic_dataset(tmp_path / "again", [(small, points)], spec, identity_dim=16, scheme=dense)
    np.testing.assert_array_equal(np.load(again / "src_0_id.npy"), np.load(root / "src_0_id.npy"))


def test_run_synth_writes_dataset_and_video(tmp_path, dense):
    from talkingface.recipes.synth import SynthOptions, run_synth
    from talkingface.utils.video import probe_video

    result = run_synth(SynthOptions(portraits=[str(FACES / "obama.jpg")], out=str(tmp_path / "ds"), frames=4,
                                    seed=1, scheme="dense669", size=64, identity_dim=16,
                                    video=str(tmp_path / "preview.mp4")))
    assert result.identities == 1 and result.frames == 4
    ds = OfficialDataset(result.root, dense, 64, 16, with_theta=True)
    assert len(ds) == 4
    # Thetas align the moved face: the ArcFace fit of the frame's points, not the identity.
    thetas = np.stack([ds[t]["driving_theta"].numpy() for t in range(4)])
    assert np.abs(thetas - thetas[0]).max() > 1e-3
    gt = np.load(result.root / "0" / S.MOTION_FILE)
    assert gt["affines"].shape == (4, 2, 3)
    assert np.load(result.root / "src_0_ldmk.npy").shape == (669, 2)
    assert not np.allclose(np.load(result.root / "src_0_theta.npy"), [[1, 0, 0], [0, 1, 0]])
    info = probe_video(result.video)
    assert (info.width, info.height) == (64, 64) and info.num_frames in (0, 4)


def test_run_synth_dlib_identity(tmp_path):
    from talkingface.recipes.synth import SynthOptions, run_synth

    with pytest.raises(ConfigError, match="128"):
        run_synth(SynthOptions(portraits=[str(FACES / "obama.jpg")], out=str(tmp_path / "x"), frames=2,
                               identity="dlib", identity_dim=256))
    result = run_synth(SynthOptions(portraits=[str(FACES / "biden.jpg")], out=str(tmp_path / "ds"), frames=2,
                                    size=128, identity="dlib"))
    ident = np.load(result.root / "src_0_id.npy")
    assert ident.shape == (1, 128) and abs(np.linalg.norm(ident) - 1) < 1e-5


def test_run_synth_reports_bad_portraits(tmp_path):
    from talkingface.recipes.synth import SynthOptions, run_synth

    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((96, 96, 3), 200, np.uint8)).save(blank)
    with pytest.raises(DataError, match="no face") as err:
        run_synth(SynthOptions(portraits=[str(blank)], out=str(tmp_path / "ds"), frames=2, scheme="dense669"))
    assert err.value.path == str(blank)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot read image"):
        run_synth(SynthOptions(portraits=[str(junk)], out=str(tmp_path / "ds"), frames=2, scheme="dense669"))
    assert not (tmp_path / "ds").exists()
