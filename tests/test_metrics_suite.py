"""evaluate_pairs: every metric over frame sequences, the summary, and the input checks."""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from talkingface.errors import DataError
from talkingface.metrics import PSNR_CAP_DB, MetricOptions, evaluate_pairs
from talkingface.metrics.lpips import LpipsNet, LpipsWeights
from talkingface.metrics.report import _json_safe

FACES = Path(__file__).resolve().parent / "data" / "faces"
FAST = MetricOptions(faces=False)


def face(name: str) -> np.ndarray:
    return np.asarray(Image.open(FACES / f"{name}.jpg").convert("RGB"))


def moving_face(name: str, frames: int) -> list[np.ndarray]:
    image = face(name)
    return [cv2.warpAffine(image, np.float32([[1, 0, 2 * t], [0, 1, t]]), image.shape[1::-1],
                           borderMode=cv2.BORDER_REFLECT) for t in range(frames)]


def test_identical_sequences():
    frames = moving_face("obama", 3)
    result = evaluate_pairs(frames, frames, options=FAST)
    assert [r.frame for r in result.records] == [0, 1, 2]
    for r in result.records:
        assert r.psnr == PSNR_CAP_DB and r.ssim == pytest.approx(1.0) and r.l1 == 0.0
        assert math.isnan(r.csim) and r.face_pred is None
    assert math.isnan(result.records[0].warp_error)
    # Moving frames: what is left is the flow's own error, the same for both.
    assert result.records[1].warp_error == result.records[1].warp_error_gt < 0.005
    s = result.summary
    assert s.frames == 3 and (s.width, s.height) == (256, 256)
    assert s.means["psnr"] == PSNR_CAP_DB and s.means["csim"] is None
    assert set(s.skipped) >= {"lpips", "fid", "csim", "akd"}
    json.dumps(_json_safe(s.as_dict()), allow_nan=False)  # the summary is valid JSON


def test_face_metrics_and_source():
    gt = moving_face("obama2", 2)
    pred = [cv2.GaussianBlur(f, (5, 5), 1.0) for f in gt]
    same = evaluate_pairs(pred, gt, source=face("obama"))
    other = evaluate_pairs(pred, gt, source=face("biden"), options=MetricOptions(temporal=False))
    for r in same.records:
        assert r.face_pred and r.face_gt
        assert r.csim > 0.95 and 0 <= r.akd < 0.05 and r.akd_px < 3
    assert same.summary.means["csim_source"] > other.summary.means["csim_source"]
    assert same.summary.pred_faces_missing == 0 and same.summary.source_face_found is True
    assert other.summary.means["warp_error"] is None and "warp_error" in other.summary.skipped


def test_missing_faces_are_counted():
    blank = [np.full((128, 128, 3), 90, np.uint8)] * 2
    result = evaluate_pairs(blank, blank, source=blank[0], options=MetricOptions(temporal=False))
    assert result.summary.pred_faces_missing == 2 and result.summary.gt_faces_missing == 2
    assert result.summary.source_face_found is False and result.summary.means["csim"] is None


class FakeInception:
    """Stands in for Inception-v3 (about a second an image on a CPU; tested in
    test_metrics_fid.py): 4 colour statistics as the "features"."""

    calls: list[int] = []

    def __init__(self, weights, device="cpu"):
        self.name = f"fake:{Path(weights).name}"

    def features(self, frames: np.ndarray) -> np.ndarray:
        FakeInception.calls.append(len(frames))
        f = frames.reshape(len(frames), -1, 3).astype(np.float64)
        return np.concatenate([f.mean(1), f.std(1)[:, :1]], axis=1)


def test_lpips_and_fid_when_weights_are_given(tmp_path, monkeypatch):
    torch.manual_seed(0)
    net = LpipsNet()
    alex = {k[len("net."):]: v for k, v in net.state_dict().items() if k.startswith("net.")}
    lin = {f"lin{i}.model.1.weight": c.weight.detach().abs() for i, c in enumerate(net.lins)}
    torch.save(alex, tmp_path / "alexnet.pth")
    torch.save(lin, tmp_path / "alex.pth")
    monkeypatch.setattr("talkingface.metrics.fid.InceptionFeatureExtractor", FakeInception)
    gt = [f[::2, ::2].copy() for f in moving_face("obama", 3)]
    pred = [cv2.GaussianBlur(f, (5, 5), 2.0) for f in gt]
    lpips = LpipsWeights(tmp_path / "alexnet.pth", tmp_path / "alex.pth")
    options = MetricOptions(faces=False, temporal=False, batch_size=2, lpips=lpips)
    result = evaluate_pairs(pred, gt, options=options)
    assert all(r.lpips > 0 for r in result.records)  # batches of 2 then 1: every frame filled
    assert evaluate_pairs(gt, gt, options=options).records[0].lpips == pytest.approx(0.0, abs=1e-6)
    assert "lpips" not in result.summary.skipped and result.summary.fid is None
    # FID from features gathered batch by batch (3 frames in batches of 2 and 1, twice).
    FakeInception.calls.clear()
    options = MetricOptions(faces=False, temporal=False, batch_size=2, inception=tmp_path / "inception.pth")
    result = evaluate_pairs(pred, gt, options=options)
    assert FakeInception.calls == [2, 2, 1, 1]
    assert result.summary.fid > 0 and "fid" not in result.summary.skipped
    assert result.summary.settings["inception"] == "fake:inception.pth"
    assert evaluate_pairs(gt, gt, options=options).summary.fid == pytest.approx(0.0, abs=1e-6)


def test_mismatches_are_data_errors():
    frames = moving_face("obama", 3)
    with pytest.raises(DataError, match="prediction has 2 frames, the ground truth has 3"):
        evaluate_pairs(frames[:2], frames, options=FAST)
    with pytest.raises(DataError, match="ground truth has 2 frames, the prediction has 3"):
        evaluate_pairs(frames, frames[:2], options=FAST)
    with pytest.raises(DataError, match="frame 0: prediction is 128x256 but ground truth is 256x256"):
        evaluate_pairs([f[:, :128] for f in frames], frames, options=FAST)
    with pytest.raises(DataError, match="frame 1 is 128x128"):
        evaluate_pairs([frames[0], frames[1][:128, :128]], [frames[0], frames[1][:128, :128]], options=FAST)
    with pytest.raises(DataError, match="uint8"):
        evaluate_pairs([f.astype(np.float32) for f in frames], frames, options=FAST)
    with pytest.raises(DataError, match="no frames"):
        evaluate_pairs([], [], options=FAST)
