"""Motion transfer for `animate`: relative motion, absolute motion, best reference frame.

Landmarks are a real face's (MediaPipe on tests/data/faces/biden.jpg), so the stable
points are checked against a real layout; the motions are exact, so the expected
results are known in closed form.
"""
from __future__ import annotations

import numpy as np
import pytest

from talkingface.animate.motion import (STABLE_POINTS, AbsoluteMotion, HeadLimits, RelativeMotion, apply_affine,
                                        face_size, find_best_frame, invert_affine, shape_distance, soft_limit)
from talkingface.preprocess.align import fit_similarity
from talkingface.preprocess.detect import box_around_points

from helpers import photo

LOWER_LIP = [17, 84, 181, 91, 146, 314, 405, 321, 375, 14, 87, 178, 88, 95, 317, 402, 318, 324]


@pytest.fixture(scope="module")
def faces():
    """478 x 2 landmarks in pixels of two different people's 256 x 256 photos."""
    from talkingface.preprocess.portrait import detect_landmarks

    return {name: detect_landmarks(photo(name)).astype(np.float64) * 256 for name in ("biden", "obama")}


def similarity(scale: float, degrees: float, shift=(0.0, 0.0)) -> np.ndarray:
    a = np.deg2rad(degrees)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), shift[0]],
                     [scale * np.sin(a), scale * np.cos(a), shift[1]]])


def open_mouth(points: np.ndarray, pixels: float) -> np.ndarray:
    moved = points.copy()
    moved[LOWER_LIP, 1] += pixels
    return moved


def driving_sequence(reference: np.ndarray, count: int = 6, seed: int = 0) -> list[np.ndarray]:
    """Head moves (shift, scale, tilt about the face centre) and the mouth opens."""
    rng = np.random.default_rng(seed)
    centre = reference.mean(0)
    frames = []
    for _ in range(count):
        head = similarity(rng.uniform(0.9, 1.1), rng.uniform(-8, 8))
        head[:, 2] = centre - head[:, :2] @ centre + rng.uniform(-12, 12, 2)
        frames.append(apply_affine(head, open_mouth(reference, rng.uniform(0, 10))))
    return frames


def test_zero_displacement_gives_the_source_landmarks(faces):
    source = faces["obama"] / 256  # 0..1 of the source crop
    reference = apply_affine(similarity(1.7, 12, (40, -25)), faces["biden"])  # another person, elsewhere
    motion = RelativeMotion(source, reference)
    assert np.abs(motion(reference) - source).max() < 1e-9
    assert np.abs(motion(reference.copy()) - source).max() < 1e-9


def test_a_similarity_applied_to_the_whole_driving_video_is_normalised_away(faces):
    """The driving face's size, position and tilt in its frame do not matter: only its motion."""
    source = faces["obama"] / 256
    reference = faces["biden"]
    frames = driving_sequence(reference)
    whole_video = similarity(0.45, -20, (300, 140))  # smaller, rotated, moved
    plain = RelativeMotion(source, reference)
    moved = RelativeMotion(source, apply_affine(whole_video, reference))
    for frame in frames:
        np.testing.assert_allclose(moved(apply_affine(whole_video, frame)), plain(frame), atol=1e-9)


def test_head_motion_moves_the_source_by_the_same_amount_relative_to_its_size(faces):
    reference = faces["biden"]
    to_source = similarity(0.5 / 256, 0, (0.25, 0.25))  # the source is the same face, half size, in 0..1
    source = apply_affine(to_source, reference)
    motion = RelativeMotion(source, reference)
    # 20 px to the right in the driving frame = 20 * 0.5 / 256 of the source crop
    np.testing.assert_allclose(motion(reference + (20.0, 0.0)), source + (20 * 0.5 / 256, 0), atol=1e-12)
    # any head similarity: the source follows it exactly
    head = similarity(1.08, 6, (-7, 11))
    np.testing.assert_allclose(motion(apply_affine(head, reference)),
                               apply_affine(to_source, apply_affine(head, reference)), atol=1e-12)


def test_expression_moves_scale_to_the_source_face(faces):
    """Another person's face: the stable points stay, the lower lip moves by the driving
    lip motion times the size ratio of the two faces."""
    reference, source = faces["biden"], faces["obama"] / 256 * 0.6 + 0.2
    motion = RelativeMotion(source, reference)
    out = motion(open_mouth(reference, 8.0))
    ratio = motion.to_source[0, 0] ** 2 + motion.to_source[1, 0] ** 2  # squared scale of B
    assert ratio == pytest.approx((face_size(source[list(STABLE_POINTS)]) /
                                   face_size(reference[list(STABLE_POINTS)])) ** 2, rel=0.15)
    displacement = out - source
    others = np.setdiff1d(np.arange(len(source)), LOWER_LIP)
    assert np.abs(displacement[others]).max() < 1e-9
    expected = motion.to_source[:, :2] @ np.array([0.0, 8.0])  # the driving lip motion in source units
    np.testing.assert_allclose(displacement[LOWER_LIP], np.broadcast_to(expected, (len(LOWER_LIP), 2)), atol=1e-9)


def test_stable_points_follow_the_skull_in_a_synthetic_talking_clip():
    """In synthetic clips the mouth opens and the eyes blink by local warps; the stable
    points must move by the head's similarity alone (so relative motion sees it exactly)."""
    from talkingface.data.synthetic import MotionSpec, synthesize_clip
    from talkingface.landmarks.scheme import get_scheme
    from talkingface.preprocess.portrait import detect_landmarks

    image = photo("biden")
    clip = synthesize_clip(image, detect_landmarks(image), get_scheme("mediapipe478"),
                           MotionSpec(num_frames=24, mouth_open_max=0.15, blink_every=8, blink_frames=4, seed=3))
    assert clip.mouth_open.max() > 0.05 and clip.eye_closure.max() > 0.5  # there is expression to ignore
    stable = list(STABLE_POINTS)
    moved = 0
    for t in range(clip.num_frames):
        # undo the head motion (affines[t] maps the locally warped portrait's 0..1 points to frame t's)
        local = apply_affine(invert_affine(clip.affines[t]), clip.landmarks[t])
        np.testing.assert_allclose(local[stable], clip.source_landmarks[stable], atol=1e-6)
        moved = max(moved, np.abs(local - clip.source_landmarks).max())
        head = fit_similarity(clip.source_landmarks[stable], clip.landmarks[t][stable])
        np.testing.assert_allclose(head, clip.affines[t], atol=1e-6)
    assert moved > 0.01  # other points (lips, lids) did move locally


def test_absolute_motion_is_the_driving_face_in_its_preprocessing_crop(faces):
    reference = faces["biden"]
    motion = AbsoluteMotion(reference, 1.3, 0.2)
    box = box_around_points(reference, 1.3, 0.2)
    frame = reference + (5.0, -3.0)
    np.testing.assert_allclose(motion(frame), box.to_crop(frame), atol=1e-6)
    in_crop = motion(reference)
    extent = in_crop.max(0) - in_crop.min(0)
    assert extent.max() == pytest.approx(1 / 1.3, abs=0.01)  # the face box fills 1/1.3 of the crop


def test_find_best_frame_matches_shape_not_place_or_size(faces):
    source = faces["biden"] / 256
    reference = faces["biden"]
    frames = [
        (0, open_mouth(reference, 12.0)),
        (1, None),  # no face
        (2, apply_affine(similarity(2.3, 15, (-80, 40)), reference)),  # the source's shape, bigger, tilted, moved
        (3, open_mouth(reference, 4.0)),
        (4, faces["obama"]),
    ]
    index, distance = find_best_frame(source, iter(frames))
    assert index == 2 and distance < 1e-9
    assert shape_distance(open_mouth(reference, 4.0), source) < shape_distance(open_mouth(reference, 12.0), source)
    assert find_best_frame(source, iter([(0, None), (1, None)])) is None


def test_soft_limit_passes_small_values_and_bends_large_ones_below_the_limit():
    values = np.linspace(-5, 5, 2001)
    out = np.array([soft_limit(v, 2.0, 0.5) for v in values])
    small = np.abs(values) <= 1.0
    np.testing.assert_array_equal(out[small], values[small])  # up to the knee: unchanged
    assert np.abs(out).max() < 2.0 and np.abs(out).max() > 1.95  # approaches the limit, never passes it
    assert np.all(np.diff(out) > 0)  # monotonic: a correlation with the driving motion survives
    slopes = np.diff(out) / np.diff(values)
    assert np.abs(np.diff(slopes)).max() < 0.01  # no kink at the knee (steps of 0.005)


def test_head_limits_keep_small_head_motion_exact_and_bound_large_motion(faces):
    reference = faces["biden"]
    to_source = similarity(0.5 / 256, 0, (0.25, 0.25))  # the source: the same face, half size, in 0..1
    source = apply_affine(to_source, reference)
    limits = HeadLimits(shift=0.2, log_scale=0.1, rotation_deg=8.0, knee=0.5)
    motion = RelativeMotion(source, reference, limits=limits)
    centre = source[list(STABLE_POINTS)].mean(0)
    driving_centre = reference[list(STABLE_POINTS)].mean(0)

    def head(scale, degrees, shift):  # about the driving face's centre
        m = similarity(scale, degrees)
        m[:, 2] = driving_centre - m[:, :2] @ driving_centre + shift
        return m

    small = head(1.04, 3.0, (30.0, -20.0))  # 0.07 of the crop, ln 1.04 = 0.039, 3 degrees: under every knee
    np.testing.assert_allclose(motion(apply_affine(small, reference)),
                               apply_affine(to_source, apply_affine(small, reference)), atol=1e-12)
    shifts = []
    for pixels in (100.0, 200.0, 400.0, 800.0):  # 0.2 .. 1.6 of the crop
        out = motion(apply_affine(head(1.0, 0.0, (pixels, 0.0)), reference))
        shifts.append(out[list(STABLE_POINTS)].mean(0)[0] - centre[0])
    assert all(0.1 < s < 0.2 for s in shifts) and np.all(np.diff(shifts) > 0), shifts
    big = motion(apply_affine(head(1.6, 30.0, (0.0, 0.0)), reference))
    fit = fit_similarity(source[list(STABLE_POINTS)], big[list(STABLE_POINTS)])
    scale, angle = np.hypot(fit[0, 0], fit[1, 0]), np.degrees(np.arctan2(fit[1, 0], fit[0, 0]))
    assert np.exp(0.05) < scale < np.exp(0.1) and 4.0 < angle < 8.0, (scale, angle)
    # the expression still moves in full: an open mouth opens the source's as without limits
    free = RelativeMotion(source, reference)
    np.testing.assert_allclose(motion(open_mouth(reference, 8.0)), free(open_mouth(reference, 8.0)), atol=1e-12)
