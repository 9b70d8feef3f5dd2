"""`talkingface evaluate` end to end through `talkingface.cli.main`.

"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from talkingface import cli
from talkingface.recipes.evaluate import EvaluateOptions, run_evaluate
from talkingface.utils.video import iter_frames, probe_video, write_video

FACES = Path(__file__).resolve().parent / "data" / "faces"


@pytest.fixture()
def evaluate_cli(monkeypatch, tmp_path):
    """cli.main with the evaluate verb, no LPIPS/FID weights anywhere it looks."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    for name in ("TALKINGFACE_LPIPS_ALEXNET", "TALKINGFACE_LPIPS_LIN", "TALKINGFACE_INCEPTION"):
        monkeypatch.delenv(name, raising=False)
    return cli.main


def gt_frames(count: int) -> list[np.ndarray]:
    image = np.asarray(Image.open(FACES / "obama2.jpg").convert("RGB"))
    return [cv2.warpAffine(image, np.float32([[1, 0, 2 * t], [0, 1, 0]]), (256, 256),
                           borderMode=cv2.BORDER_REFLECT) for t in range(count)]


def write_folder(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True)
    for i, f in enumerate(frames):  # unpadded numbers: the natural sort must order 2 before 10
        Image.fromarray(f).save(folder / f"frame_{i}.png")
    return folder


@pytest.mark.slow  # 1.9-4.6 s: among the fast subset's slowest (issue 20: under 3 minutes)
def test_report_from_a_video_and_a_folder(evaluate_cli, tmp_path, capsys):
    gt = gt_frames(4)
    gt_dir = write_folder(tmp_path / "gt", gt)
    pred_video = tmp_path / "pred.mp4"
    write_video(pred_video, [cv2.GaussianBlur(f, (5, 5), 1.2) for f in gt], fps=12.5)
    out = tmp_path / "report"
    code = evaluate_cli(["evaluate", "--pred", str(pred_video), "--gt", str(gt_dir), "--out", str(out),
                         "--source", str(FACES / "obama.jpg")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "LPIPS skipped" in captured.out and "--lpips-alexnet PATH" in captured.out
    assert "FID skipped" in captured.out and "--inception PATH" in captured.out

    rows = list(csv.DictReader(open(out / "per_frame.csv")))
    assert [r["frame"] for r in rows] == ["0", "1", "2", "3"]
    assert rows[0]["warp_error"] == "" and float(rows[1]["warp_error"]) < 0.05
    assert all(float(r["csim"]) > 0.95 and float(r["csim_source"]) > 0.9 for r in rows)
    assert all(25 < float(r["psnr"]) < 60 and float(r["akd"]) < 0.05 for r in rows)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 4 and summary["inputs"]["pred"] == str(pred_video)
    assert summary["means"]["lpips"] is None and summary["fid"] is None
    assert "--lpips-lin PATH" in summary["skipped"]["lpips"]
    assert summary["pred_faces_missing"] == 0

    assert (out / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    info = probe_video(out / "side_by_side.mp4")
    assert (info.width, info.height) == (3 * 256, 256) and abs(info.fps - 12.5) < 1e-3
    assert sum(1 for _ in iter_frames(out / "side_by_side.mp4")) == 4
    assert not list(out.glob(".*partial*"))


def test_user_errors_exit_2_with_one_line(evaluate_cli, tmp_path, capsys):
    gt = gt_frames(3)
    gt_dir = write_folder(tmp_path / "gt", gt)
    pred_dir = write_folder(tmp_path / "pred", gt[:2])
    out = tmp_path / "report"

    def run(*args: str) -> str:
        code = evaluate_cli(["evaluate", "--gt", str(gt_dir), "--out", str(out), *args])
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("talkingface:")]
        assert code == cli.EXIT_USER_ERROR and len(errors) == 1 and "Traceback" not in err, err
        return errors[0]

    assert "frame counts differ" in run("--pred", str(pred_dir))
    assert "no such file or folder" in run("--pred", str(tmp_path / "missing"))
    assert "LPIPS weight file not found" in run("--pred", str(gt_dir), "--lpips-alexnet", str(tmp_path / "x.pth"))
    small_dir = write_folder(tmp_path / "small", [f[:128, :128].copy() for f in gt])
    assert "prediction is 128x128 but ground truth is 256x256" in run("--pred", str(small_dir), "--no-video")
    assert not out.exists() or not list(out.iterdir())  # nothing written by failed runs


def test_recipe_without_face_metrics_or_video(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    gt_dir = write_folder(tmp_path / "gt", gt_frames(12))
    result = run_evaluate(EvaluateOptions(pred=str(gt_dir), gt=str(gt_dir), out=str(tmp_path / "r"),
                                          write_video=False, face_metrics=False, device="cpu"))
    assert result.summary.frames == 12 and result.summary.means["ssim"] == pytest.approx(1.0)
    assert result.summary.means["csim"] is None and "csim" in result.summary.skipped
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["metrics.png", "per_frame.csv", "summary.json"]
