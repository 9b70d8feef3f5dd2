"""Preprocessing parts on their own: theta, smoothing, crops, inputs and shards."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from talkingface.errors import DataError
from talkingface.preprocess.align import ARCFACE_TEMPLATE_112, alignment_theta, fit_similarity, keypoints5
from talkingface.preprocess.detect import CropBox, box_around_points, crop_frame
from talkingface.preprocess.landmarks import BilateralSettings, TemporalBilateralSmoother
from talkingface.preprocess.sources import InputKind, Shard, expand_inputs


def _dots_image(points01: np.ndarray, size: int) -> torch.Tensor:
    """1 x 5 x S x S: channel i holds a small Gaussian blob at keypoint i."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5  # pixel centres, continuous coordinates
    sigma = size / 128
    blobs = [np.exp(-((xx - x * size) ** 2 + (yy - y * size) ** 2) / (2 * sigma ** 2)) for x, y in points01]
    return torch.from_numpy(np.stack(blobs)[None]).float()


def _centroids(maps: torch.Tensor) -> np.ndarray:
    """Per channel, the intensity-weighted centre in pixel-index coordinates (centres at integers)."""
    m = maps[0].numpy()
    _, h, w = m.shape
    yy, xx = np.mgrid[0:h, 0:w]
    total = m.sum(axis=(1, 2))
    return np.stack([(m * xx).sum(axis=(1, 2)) / total, (m * yy).sum(axis=(1, 2)) / total], axis=1)


@pytest.mark.parametrize("crop_size, out_size", [(256, 112), (512, 224)])
def test_theta_resamples_keypoints_onto_the_arcface_template(crop_size, out_size):
    rng = np.random.default_rng(0)
    # a plausible face in the crop: the template scaled, rotated 12 degrees, shifted, plus noise
    a = np.deg2rad(12)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    keypoints = ((ARCFACE_TEMPLATE_112 + 0.5) / 112 - 0.5) @ rot.T * 0.55 + (0.52, 0.58)
    keypoints = keypoints + rng.normal(0, 0.002, keypoints.shape)
    theta = alignment_theta(keypoints)
    assert theta.shape == (2, 3) and theta.dtype == np.float32
    grid = F.affine_grid(torch.from_numpy(theta)[None], [1, 5, out_size, out_size], align_corners=False)
    aligned = F.grid_sample(_dots_image(keypoints, crop_size), grid, align_corners=False)
    landed = _centroids(aligned)
    template = (ARCFACE_TEMPLATE_112 + 0.5) * out_size / 112 - 0.5  # the template at this output size
    error = np.linalg.norm(landed - template, axis=1)
    assert error.max() < 0.02 * out_size, (landed, template)  # within ~2 px at 112, noise included


def test_fit_similarity_recovers_an_exact_similarity():
    rng = np.random.default_rng(1)
    src = rng.random((5, 2))
    a, s, t = 0.3, 1.7, np.array([0.2, -0.4])
    m = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    np.testing.assert_allclose(fit_similarity(src, src @ m.T + t), np.hstack([m, t[:, None]]), atol=1e-9)


def test_keypoints5_takes_iris_centres_nose_and_mouth_corners():
    points = np.arange(478 * 2, dtype=np.float64).reshape(478, 2)
    np.testing.assert_array_equal(keypoints5(points)[:, 0], [936, 946, 2, 122, 582])


def _drain(smoother, frames):
    out = []
    for index, points in frames:
        out += smoother.push(index, points, payload=index)
    return out + smoother.flush()


def test_smoother_emits_every_frame_once_in_order_and_breaks_at_gaps():
    smoother = TemporalBilateralSmoother(BilateralSettings(radius=2))
    indices = [0, 1, 2, 3, 4, 5, 9, 10, 12, 13, 14]
    out = _drain(smoother, [(i, np.full((3, 2), float(i))) for i in indices])
    assert [i for i, _, _ in out] == indices and [p for _, _, p in out] == indices
    smoothed = {i: pts for i, pts, _ in out}
    # segment ends and frames next to a gap are never pulled across the gap
    assert smoothed[5][0, 0] == 5 and smoothed[9][0, 0] == 9 and smoothed[12][0, 0] == 12


def test_smoother_has_no_lag_on_steady_motion_and_removes_jitter():
    rng = np.random.default_rng(0)
    t = np.arange(60, dtype=np.float64)
    truth = np.stack([0.3 + 0.002 * t, 0.5 - 0.001 * t], axis=1)[:, None, :].repeat(20, axis=1)  # 60 x 20 x 2
    noisy = truth + rng.normal(0, 0.001, truth.shape)
    out = _drain(TemporalBilateralSmoother(), list(enumerate(noisy)))
    smoothed = np.stack([p for _, p, _ in out])
    inner = slice(2, -2)
    assert abs((smoothed - truth)[inner].mean()) < 2e-4  # no lag
    assert np.abs(smoothed - truth)[inner].mean() < 0.75 * np.abs(noisy - truth)[inner].mean()
    # a sudden large move (mouth opening) is kept, not averaged away
    step = np.zeros((10, 1, 2))
    step[5:] = 0.05
    out = _drain(TemporalBilateralSmoother(), list(enumerate(step)))
    np.testing.assert_allclose(np.stack([p for _, p, _ in out]), step, atol=1e-6)


def test_crop_box_and_padding():
    frame = np.full((100, 200, 3), 200, np.uint8)
    box = CropBox(-10, -10, 40)
    crop = crop_frame(frame, box, 20)
    assert crop.shape == (20, 20, 3)
    assert crop[0, 0].max() == 0 and crop[-1, -1].min() == 200  # black outside the frame
    pts = np.array([[-10.0, -10.0], [30.0, 30.0], [10.0, 10.0]])
    np.testing.assert_allclose(box.to_crop(pts), [[0, 0], [1, 1], [0.5, 0.5]])
    np.testing.assert_allclose(box.to_frame(box.to_crop(pts)), pts, atol=1e-5)
    # the face box: expand x the longer side, centre moved down by offset x height
    b = box_around_points(np.array([[100.0, 100.0], [200.0, 300.0]]), expand=1.3, offset_y=0.2)
    assert b.side == 260 and b.x0 == 150 - 130 and b.y0 == 200 + 40 - 130


def test_expand_inputs_sorts_dedupes_and_finds_videos_and_image_folders(tmp_path):
    corpus = tmp_path / "corpus"
    (corpus / "id1" / "clipA").mkdir(parents=True)
    (corpus / "id0").mkdir(parents=True)
    (corpus / "id1" / "b.mp4").write_bytes(b"x")
    (corpus / "id0" / "a.mkv").write_bytes(b"x")
    (corpus / "id1" / "notes.txt").write_text("x")
    for i in range(2):
        (corpus / "id1" / "clipA" / f"{i:03d}.png").write_bytes(b"x")
    items = expand_inputs([corpus, corpus / "id0" / "a.mkv"])
    assert [(i.path.relative_to(corpus).as_posix(), i.kind) for i in items] == [
        ("id0/a.mkv", InputKind.VIDEO), ("id1/b.mp4", InputKind.VIDEO), ("id1/clipA", InputKind.IMAGES)]
    assert expand_inputs([corpus / "id1" / "clipA"])[0].kind is InputKind.IMAGES
    assert len({i.token for i in items}) == 3 and all(i.token[0] not in "src_" for i in items)
    with pytest.raises(DataError, match="no images and no videos"):
        (tmp_path / "empty").mkdir()
        expand_inputs([tmp_path / "empty"])


def test_shards_are_deterministic_disjoint_and_complete(tmp_path):
    for i in range(11):
        (tmp_path / f"v{i:02d}.mp4").write_bytes(b"x")
    items = expand_inputs([tmp_path])
    shards = [Shard.parse(f"{k}/3").select(items) for k in range(3)]
    assert shards == [Shard.parse(f"{k}/3").select(expand_inputs([tmp_path])) for k in range(3)]
    keys = [i.key for s in shards for i in s]
    assert len(keys) == len(set(keys)) == 11 and sorted(keys) == [i.key for i in items]
    assert max(len(s) for s in shards) - min(len(s) for s in shards) <= 1
    for bad in ("3/3", "1", "a/b", "-1/2", "0/0"):
        with pytest.raises(DataError, match="--shard"):
            Shard.parse(bad)


@pytest.mark.parametrize("rotation, corner", [(0, (0, 0)), (90, (-1, 0)), (-90, (0, -1)), (180, (-1, -1))])
def test_phone_videos_are_turned_upright(tmp_path, rotation, corner):
    import av

    from talkingface.preprocess.sources import InputItem, open_stream

    image = np.zeros((64, 96, 3), np.uint8)
    image[:16, :16] = 255  # white block in the stored top-left corner
    path = tmp_path / "phone.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.set_display_rotation(rotation)
        for _ in range(2):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    s = open_stream(InputItem(path, InputKind.VIDEO))
    frame = next(s.frames)
    assert s.rotation == rotation % 360 and frame.shape[:2] == (s.height, s.width)
    assert frame.shape[:2] == ((96, 64) if rotation % 180 else (64, 96))
    y, x = corner
    assert frame[y, x].min() > 200  # the block is where a player shows it (rotated counter-clockwise)
