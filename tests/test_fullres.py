"""Full-resolution rendering (talkingface.animate.fullres): the warp at the photo's own
resolution, the generator only where the warp cannot supply pixels, surroundings
untouched; and, end to end with the bundled model on a real photo, a face far sharper
and closer to the person than the upsampled model output."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from talkingface.animate.deformation import (extend_deformation, landmark_correction, sample_grid, smooth_deformation,
                                             still_grid, warp_native)
from talkingface.animate.fullres import FullResComposer, FullResSettings, RenderedCrop
from talkingface.landmarks.regions import eye_openness, mediapipe_regions
from talkingface.models.layers import coordinate_grid, warp
from talkingface.preprocess.detect import CropBox, crop_frame

from helpers import photo


def smooth(rng, size):
    import cv2

    return cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (0, 0), 3)


def test_regions_are_closed_loops_of_the_mesh():
    r = mediapipe_regions()
    assert len(r.face_oval) == 36 and len(r.inner_lips) == 20 and len(r.outer_lips) == 20
    assert 13 in r.inner_lips and 14 in r.inner_lips and 0 in r.outer_lips and 17 in r.outer_lips
    assert 33 in r.eyes[0] and 133 in r.eyes[0] and 263 in r.eyes[1]


def test_native_warp_samples_as_the_model_does():
    """At the model's own size the bicubic native warp matches the model's bilinear warp on a
    smooth image (same grid convention), and an off-centre shift moves the picture."""
    rng = np.random.default_rng(0)
    image = smooth(rng, 64)
    source = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    grid = coordinate_grid(16, 16)[None].clone()
    grid[..., 0] += 0.1  # sample 0.1 grid units (3.2 px) to the right
    model = warp(source, grid)[0].permute(1, 2, 0).numpy()
    native = warp_native(image.astype(np.float32), grid[0].numpy())
    assert np.abs(native - model).mean() < 1.0  # measured 0.27 grey levels
    assert np.abs(native - image).mean() > 3 * np.abs(native - model).mean()


def test_lanczos_sampling_keeps_more_detail_than_bicubic_at_sub_pixel_offsets():
    """A fine texture moved by a third of a pixel: both kernels put it in the same place (the
    bicubic warp is the reference), Lanczos keeps more of its detail."""
    import cv2

    rng = np.random.default_rng(1)
    image = cv2.GaussianBlur(rng.uniform(0, 255, (96, 96, 3)).astype(np.float32), (0, 0), 0.8)
    grid = coordinate_grid(24, 24)[None].clone()
    grid[..., 0] += 2 / 3 / 96  # a third of a pixel
    lanczos, bicubic = (warp_native(image, grid[0].numpy(), sampling=k) for k in ("lanczos", "bicubic"))
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(lanczos - bicubic)[inner].mean() < 2.5  # the same picture, the same place (measured 1.1 grey levels)

    def detail(a):
        return cv2.Laplacian(a[inner].mean(-1), cv2.CV_32F).var()

    assert detail(lanczos) > 1.03 * detail(bicubic)  # measured 1.07 x
    with pytest.raises(ValueError, match="sampling"):
        warp_native(image, grid[0].numpy(), sampling="nearest")


def test_flow_smoothing_keeps_smooth_motion_and_removes_wobble():
    """The low-pass on the displacement leaves the identity grid and a smooth (affine) motion as
    they are, and damps a cell-to-cell wobble of the kind a briefly trained 32x32 grid shows."""
    h = 32
    ident = coordinate_grid(h, h).numpy()  # h x h x 2, align_corners=False centres
    assert np.abs(smooth_deformation(ident, 2.0) - ident).max() < 1e-6  # float rounding of the two grids
    affine = ident @ np.array([[0.95, 0.05], [-0.05, 0.95]], np.float32) + np.float32([0.03, -0.02])
    inner = (slice(6, -6), slice(6, -6))  # away from the replicated edges
    assert np.abs(smooth_deformation(affine, 2.0) - affine)[inner].max() < 1e-5
    wobble = ident + 0.02 * np.where((np.indices((h, h)).sum(0) % 2)[..., None] == 0, 1, -1).astype(np.float32)
    smoothed = smooth_deformation(wobble, 2.0)
    assert np.abs(smoothed - ident)[inner].max() < 0.02 * 0.01  # a checkerboard averages out
    assert smooth_deformation(wobble, 0.0) is wobble  # 0: off


def test_landmark_correction_moves_the_landmarks_exactly_and_fades_away():
    rng = np.random.default_rng(1)
    pose = 0.4 + 0.2 * rng.random((40, 2))
    source = pose + np.array([0.02, -0.01])
    correction = landmark_correction(identity_grid(), pose, source, sigma01=0.03, size=64)
    error = sample_grid(identity_grid(64) + correction, pose) - (2 * source - 1)
    assert np.abs(error).mean() < 0.01  # grid units (measured 0.004); the shift itself is 0.04 / 0.02
    assert np.abs(correction[:4, :4]).max() < 1e-3  # far from every landmark: untouched


def _scene(name: str):
    """A real face in a larger frame, its landmarks, and the crop box preprocessing would use."""
    from talkingface.preprocess.detect import box_around_points
    from talkingface.preprocess.portrait import detect_landmarks

    face = photo(name)  # 256 x 256
    frame = np.full((320, 400, 3), 90, np.uint8)
    frame[32:288, 72:328] = face
    points_px = detect_landmarks(face) * 256 + (72, 32)
    box = box_around_points(points_px, 1.3, 0.2)
    return frame, box, box.to_crop(points_px)


@pytest.fixture(scope="module")
def scene():
    return _scene("obama")  # smiling: the photo shows both rows of teeth (inner-lip gap 5% of the photo)


@pytest.fixture(scope="module")
def closed_scene():
    return _scene("biden")  # a closed mouth (inner-lip gap 0.02% of the photo)


def _open_mouth(points: np.ndarray, amount: float = 0.06) -> np.ndarray:
    """The pose with the lower inner lip moved down by `amount` of the crop."""
    regions = mediapipe_regions()
    pose = points.copy()
    upper = [i for i in regions.inner_lips if points[i, 1] <= points[13, 1] + 1e-6]
    lower = [i for i in regions.inner_lips if i not in upper]
    pose[lower, 1] += amount
    return pose


def identity_grid(size: int = 16) -> np.ndarray:
    """The sampling grid that leaves an image in place (cell centres, align_corners=False)."""
    return still_grid(size)


def _still(box: CropBox, points01, crop):
    return RenderedCrop(crop, points01, identity_grid(), np.ones(crop.shape[:2], np.float32))


def test_surroundings_are_the_source_frames_own_pixels(scene):
    frame, box, points = scene
    composer = FullResComposer(frame, box, points)
    crop = crop_frame(frame, box, 64, replicate=True)
    out = composer(_still(box, points, crop))
    assert out.shape == frame.shape
    area = composer.box  # the rendered area: the model's crop and the whole head region around it
    assert area.side > 1.3 * box.side  # measured 1.9 x (the model's crop trims the top of the head)
    outside = np.ones(frame.shape[:2], bool)
    outside[max(area.y0, 0):area.y0 + area.side, max(area.x0, 0):area.x0 + area.side] = False
    assert np.array_equal(out[outside], frame[outside])
    # beyond the head region (here the frame's lower corners, inside the area): unchanged too
    assert np.array_equal(out[-3:, :3], frame[-3:, :3]) and np.array_equal(out[-3:, -3:], frame[-3:, -3:])
    # a still pose moves nothing: the whole frame is the photo, resampled at whole pixels
    assert np.abs(out.astype(int) - frame).max() <= 1
    # the face itself: the photo's pixels, barely resampled
    inside = out[box.y0 + box.side // 3:box.y0 + 2 * box.side // 3, box.x0 + box.side // 3:box.x0 + 2 * box.side // 3]
    ref = frame[box.y0 + box.side // 3:box.y0 + 2 * box.side // 3, box.x0 + box.side // 3:box.x0 + 2 * box.side // 3]
    assert np.abs(inside.astype(int) - ref).mean() < 3  # measured 0.0x: bicubic at whole-pixel offsets


def test_still_grid_moves_nothing_at_any_size():
    rng = np.random.default_rng(3)
    image = rng.uniform(0, 255, (40, 40, 3)).astype(np.float32)
    for cells in (10, 16, 40):
        inner = slice(40 // cells, 40 - 40 // cells)  # a grid resized up holds its edge over the outer half-cell
        assert np.abs(warp_native(image, still_grid(cells)) - image)[inner, inner].max() < 0.01


def test_the_deformation_is_carried_beyond_the_models_crop_by_the_rigid_head_motion():
    """Inside the model's crop (away from its edge band) the model's deformation; beyond it the
    rigid map; a still model with a still head is still everywhere."""
    model = still_grid(16) + np.float32([0.05, -0.02])  # the model samples a little right and up
    origin, side, size = np.array([30.0, 40.0]), 60.0, 150
    rigid = np.array([[1.0, 0.0, -6.0], [0.0, 1.0, 3.0]])  # the head: output -> source is 6 px left, 3 down
    grid = extend_deformation(model, origin, side, size, rigid, band=0.12)
    g = grid.shape[0]
    assert g == 40  # the model's cell size (16 cells over 60 px) over 150 px
    pixels = (grid + 1) * size / 2  # where each cell samples, area pixels
    centres = (np.arange(g) + 0.5) * size / g
    centre_cell = int(np.argmin(np.abs(centres - (origin[0] + side / 2))))
    middle = int(np.argmin(np.abs(centres - (origin[1] + side / 2))))
    expected = np.array([centres[centre_cell] + 0.05 * side / 2, centres[middle] - 0.02 * side / 2])
    assert np.abs(pixels[middle, centre_cell] - expected).max() < 1e-3
    corner = pixels[-1, -1] - centres[-1]  # far from the crop: the rigid map
    assert np.abs(corner - (-6.0, 3.0)).max() < 1e-3
    still = extend_deformation(still_grid(16), origin, side, size, np.eye(2, 3), band=0.12)
    # measured 3.5e-4 (0.03 px): the model grid's outer half-cell is held, not extrapolated, in the edge band
    assert np.abs(still - still_grid(g)).max() < 1e-3


def test_a_raised_head_takes_its_hair_and_ears_along_beyond_the_models_crop(scene):
    """The model's crop trims the top of the head and reaches barely past the cheeks. Raise the
    head by 4% of the crop (pose, deformation): the forehead's top and the hair above the crop, and
    the sides by the ears, show the photo moved up, not left where they were (a ghost)."""
    frame, box, points = scene
    shift = 0.04
    pose = points - np.float32([0, shift])
    grid = still_grid(16) + np.float32([0, 2 * shift])  # sample further down: the picture moves up
    crop = crop_frame(frame, box, 64, replicate=True)
    out = FullResComposer(frame, box, points)(RenderedCrop(crop, pose, grid, np.ones((64, 64), np.float32)))
    moved = np.roll(frame, -int(round(shift * box.side)), axis=0).astype(int)
    top = np.round(box.to_frame(points[10:11])[0]).astype(int)  # the face outline's top, above the crop
    assert top[1] < box.y0
    for y in (top[1], top[1] - 20):
        patch = (slice(y - 4, y + 5), slice(top[0] - 30, top[0] + 31))
        # measured 0.7 / 0.9 grey levels from the moved photo, 6.8 / 60 from the photo where it was
        assert np.abs(out[patch] - moved[patch]).mean() < 2.5
        assert np.abs(out[patch] - frame[patch].astype(int)).mean() > 5
    for index, side in ((234, -1), (454, 1)):  # beside each cheek's edge, towards the ear
        x, y = np.round(box.to_frame(points[index:index + 1])[0]).astype(int)
        patch = (slice(y - 10, y + 11), slice(x + side * 12 - 6, x + side * 12 + 7))
        # measured 2.5 and 1.6 from the moved photo, 30 and 23 from the photo where it was
        assert np.abs(out[patch] - moved[patch]).mean() < 5
        assert np.abs(out[patch] - frame[patch].astype(int)).mean() > 12


def test_a_face_in_the_frames_corner_and_a_capped_working_size_still_compose():
    """The whole-head area reaches far outside a frame whose face sits in its corner: only the
    visible part is pasted. With max_side below the crop's side the area is worked on shrunk by
    the same factor and resized back."""
    from talkingface.preprocess.detect import box_around_points
    from talkingface.preprocess.portrait import detect_landmarks

    face = photo("obama")
    frame = np.full((300, 300, 3), 90, np.uint8)
    frame[:256, :256] = face
    points_px = detect_landmarks(face) * 256
    box = box_around_points(points_px, 1.3, 0.2)
    points = box.to_crop(points_px)
    crop = crop_frame(frame, box, 64, replicate=True)
    composer = FullResComposer(frame, box, points)
    assert composer.box.x0 < 0 and composer.box.y0 < 0  # measured (-54, -28), side 372
    raised = RenderedCrop(crop, points - np.float32([0, 0.04]), still_grid(16) + np.float32([0, 0.08]),
                          np.ones((64, 64), np.float32))
    out = composer(raised)
    assert out.shape == frame.shape
    assert np.array_equal(out[-3:, -3:], frame[-3:, -3:])  # beyond the head region
    assert np.abs(out[:200, 40:220].astype(int) - frame[:200, 40:220]).mean() > 5  # the head moved
    capped = FullResComposer(frame, box, points, FullResSettings(max_side=64))
    assert capped.size == round(composer.box.side * 64 / box.side) and abs(capped.model_side - 64) < 0.5
    still = capped(RenderedCrop(crop, points, still_grid(16), np.ones((64, 64), np.float32)))
    assert np.abs(still.astype(int) - frame).mean() < 5  # measured 3.0: the shrunk area resized back


def test_the_mouth_opening_comes_from_the_generator_with_the_photos_colours(scene):
    """With the photo-built mouth off: open the pose's mouth; the generator draws a dark mouth
    there and is otherwise the photo. The output's mouth is dark, the rest of the face is the
    sharp photo."""
    import cv2

    frame, box, points = scene
    regions = mediapipe_regions()
    pose = _open_mouth(points)
    size = 64
    crop = crop_frame(frame, box, size, replicate=True)
    generated = crop.copy()
    polygon = np.round(pose[regions.inner_lips] * size).astype(np.int32)
    cv2.fillPoly(generated, [polygon], (20, 10, 15))
    composer = FullResComposer(frame, box, points, FullResSettings(mouth_interior=0.0))
    out_crop, region = composer.compose_crop(RenderedCrop(generated, pose, identity_grid(), None))
    n = composer.size
    centre = np.round(composer.to_area(pose[regions.inner_lips]).mean(0)).astype(int)
    mouth = out_crop[centre[1] - 1:centre[1] + 2, centre[0] - 2:centre[0] + 3].mean()
    assert mouth < 60, mouth  # dark: the generator's mouth (the photo there is lips and skin, > 100)
    assert region[centre[1], centre[0]] > 0.99 and region[2, 2] < 1e-3 and region[n - 3, n - 3] < 1e-3
    # the eyes: the native photo, not the 64 px generator crop
    eye = np.round(composer.to_area(points[list(regions.eyes[0])]).mean(0)).astype(int)
    patch = (slice(eye[1] - 6, eye[1] + 7), slice(eye[0] - 10, eye[0] + 11))
    photo_patch = composer.crop[patch].astype(float)
    assert np.abs(out_crop[patch] - photo_patch).mean() < 8  # measured ~3
    assert out_crop[patch].var() > 0.5 * photo_patch.var()


def test_a_blink_uses_the_generator_over_the_eye(scene):
    frame, box, points = scene
    regions = mediapipe_regions()
    composer = FullResComposer(frame, box, points)
    pose = points.copy()
    for eye in regions.eyes:  # close both eyes: every lid point to the eye's centre line
        centre_y = points[eye, 1].mean()
        pose[eye, 1] = centre_y
    assert (eye_openness(pose) < 0.4 * eye_openness(points)).all()  # measured 0.08 and 0.06 of ~0.3
    weight, occluded = composer.generated_region(composer.to_area(pose), None)
    eye_centre = np.round(composer.to_area(points[regions.eyes[0]]).mean(0)).astype(int)
    assert weight[eye_centre[1], eye_centre[0]] > 0.9
    assert occluded.max() == 0  # no occlusion map: nothing is occlusion-driven (the eye keeps no photo detail)
    # the photo's own pose: nothing generated
    assert composer.generated_region(composer.to_area(points), None)[0].max() < 0.5


def _mouth_profile(composer: FullResComposer, out_crop: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Mean brightness along the mouth's centre line, from the pose's upper inner lip (0) to its lower (1)."""
    top, bottom = composer.to_area(pose[[13, 14]])
    values = []
    for t in np.linspace(0.05, 0.95, 19):
        x, y = np.round(top + t * (bottom - top)).astype(int)
        values.append(out_crop[y - 1:y + 2, x - 2:x + 3].mean())
    return np.asarray(values)


def test_an_opened_mouth_shows_the_photos_teeth_on_each_jaw_over_a_dark_cavity(scene):
    """A smiling photo, its mouth opened further: the upper teeth stay under the upper lip and the
    lower teeth ride on the lower lip (the photo's own pixels, whatever the generator drew), with a
    dark gap between them."""
    frame, box, points = scene
    pose = _open_mouth(points)
    grey = crop_frame(frame, box, 64, replicate=True) * 0 + 128  # a generator that drew no mouth at all
    composer = FullResComposer(frame, box, points)
    out_crop, _ = composer.compose_crop(RenderedCrop(grey.astype(np.uint8), pose, identity_grid(), None))
    profile = _mouth_profile(composer, out_crop, pose)
    # measured: upper teeth 175-207 (the photo's 215-228 there), the gap 25 (the tongue's back starts at the
    # opening's middle), lower teeth 165-182
    assert profile[2:4].min() > 170 and profile[15:17].min() > 140, profile
    assert profile[7:10].max() < 50, profile


def test_a_closed_mouth_photo_gets_a_cavity_and_a_hint_of_upper_teeth(closed_scene):
    frame, box, points = closed_scene
    pose = _open_mouth(points, 0.08)
    grey = (crop_frame(frame, box, 64, replicate=True) * 0 + 128).astype(np.uint8)
    composer = FullResComposer(frame, box, points)
    out_crop, _ = composer.compose_crop(RenderedCrop(grey, pose, identity_grid(), None))
    profile = _mouth_profile(composer, out_crop, pose)
    assert profile[7:13].max() < 50, profile  # dark inside (measured 39)
    assert profile[1:4].max() > profile[7:13].max() + 35, profile  # teeth under the upper lip (measured 92)
    none = FullResComposer(frame, box, points, FullResSettings(teeth_hint=(0.0, 0.0)))
    plain, _ = none.compose_crop(RenderedCrop(grey, pose, identity_grid(), None))
    assert _mouth_profile(none, plain, pose)[1:4].max() < profile[1:4].max() - 25  # measured 51 against 92


def test_a_wide_open_mouth_shows_a_tongue_on_its_floor_and_a_slightly_open_one_none(closed_scene):
    """A closed-mouth photo opened wide (the gap 11% of the face): the cavity's lower part is a tongue
    in the lips' colour, lighter than the dark back of the mouth; opened a little (4%), nothing changes."""
    frame, box, points = closed_scene
    grey = (crop_frame(frame, box, 64, replicate=True) * 0 + 128).astype(np.uint8)

    def render(amount: float, tongue: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        composer = FullResComposer(frame, box, points, FullResSettings(tongue=tongue))
        pose = _open_mouth(points, amount)
        out, _ = composer.compose_crop(RenderedCrop(grey, pose, identity_grid(), None))
        top, bottom = composer.to_area(pose[[13, 14]])
        x, y = np.round(top + 0.85 * (bottom - top)).astype(int)  # the opening's lower part
        return _mouth_profile(composer, out, pose), out[y - 1:y + 2, x - 2:x + 3].reshape(-1, 3).mean(axis=0)

    profile, floor = render(0.08, FullResSettings().tongue)
    plain_profile, plain_floor = render(0.08, (1.0, 1.0))
    # measured: the floor (91, 53, 51) against the cavity's (71, 43, 41); the profile's lower part 47.5 against
    # 36.5; the mouth's middle 32-39 either way
    assert floor.mean() > plain_floor.mean() + 8 and floor[0] > floor[2] + 25, (floor, plain_floor)
    assert profile[12:16].mean() > plain_profile[12:16].mean() + 6, (profile, plain_profile)
    assert np.abs(profile[8:10] - plain_profile[8:10]).max() < 3 and profile[8:10].max() < 50, profile
    little, _ = render(0.03, FullResSettings().tongue)
    assert np.array_equal(little, render(0.03, (1.0, 1.0))[0])


def test_occluded_skin_keeps_the_photos_fine_detail_over_the_generators_colours(scene):
    """An occlusion-driven generated patch (a cheek the model marks occluded) takes the
    generator's colours but keeps the warped photo's detail finer than the model's pixels;
    with occlusion_detail 0 it is the 64 px generator's blur."""
    import cv2

    frame, box, points = scene
    size = 64
    crop = crop_frame(frame, box, size, replicate=True)  # the generator's crop: the photo at 64 px
    cheek = points[205] * size  # a point of the left cheek (MediaPipe 205)
    occlusion = np.ones((size, size), np.float32)
    cv2.circle(occlusion, tuple(int(v) for v in np.round(cheek)), 6, 0.0, -1)
    item = RenderedCrop(crop, points, identity_grid(), occlusion)

    def cheek_patch(settings: FullResSettings) -> tuple[np.ndarray, np.ndarray]:
        composer = FullResComposer(frame, box, points, settings)
        out, _ = composer.compose_crop(item)
        c = np.round(composer.to_area(points[205:206])[0]).astype(int)
        r = int(4 * composer.model_side // size)  # inside the occluded disc (radius 6 of 64 model pixels)
        patch = (slice(c[1] - r, c[1] + r + 1), slice(c[0] - r, c[0] + r + 1))
        return out[patch], composer.crop[patch].astype(np.float32)

    def detail(a: np.ndarray) -> float:
        return float(cv2.Laplacian(a.mean(-1).astype(np.float32), cv2.CV_32F).var())

    kept, photo_patch = cheek_patch(FullResSettings())
    blurred, _ = cheek_patch(FullResSettings(occlusion_detail=0.0))
    assert detail(blurred) < 0.5 * detail(photo_patch)  # the generator alone: its 64 px blur (measured 0.12)
    assert 0.7 < detail(kept) / detail(photo_patch) < 1.6  # the photo's fine detail back (measured 1.26)
    assert abs(kept.mean() - blurred.mean()) < 2  # the same colours: only the detail was added (measured 0.4)
