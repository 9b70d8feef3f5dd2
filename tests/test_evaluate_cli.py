"""`talkingface evaluate` end to end through `talkingface.cli.main`.

Until the lead merges the verb into talkingface/cli.py, the test registers the
`_add_evaluate` / `_run_evaluate` pair below (the snippet proposed for cli.py) by
monkeypatching `talkingface.cli.VERBS`; once cli.py has `_add_evaluate`, that one is used.
"""
from __future__ import annotations

import argparse
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


# ------------------------------------------------------------ proposed cli.py snippet
def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="Score a predicted video against its ground truth and write a report.")
    p.add_argument("--pred", required=True, help="Predicted frames: a folder of images or a video file.")
    p.add_argument("--gt", required=True, help="Ground-truth (or driving) frames: a folder of images or a video.")
    p.add_argument("--out", required=True, help="Report folder: per_frame.csv, summary.json, metrics.png, "
                                                "side_by_side.mp4.")
    p.add_argument("--source", default=None, help="Source image: CSIM against it (cross-identity runs) and the "
                                                  "first column of the side-by-side video.")
    p.add_argument("--lpips-alexnet", default=None, help="torchvision AlexNet weights (alexnet-owt-7be5be79.pth); "
                   "default $TALKINGFACE_LPIPS_ALEXNET, then $TORCH_HOME/hub/checkpoints/.")
    p.add_argument("--lpips-lin", default=None, help="LPIPS v0.1 linear layers (alex.pth); "
                                                     "default $TALKINGFACE_LPIPS_LIN.")
    p.add_argument("--inception", default=None, help="Inception-v3 weights for FID (pt_inception-2015-12-05 or "
                   "torchvision's); default $TALKINGFACE_INCEPTION, then $TORCH_HOME/hub/checkpoints/.")
    p.add_argument("--arcface", default=None, help="ArcFace ONNX model for CSIM (needs onnxruntime); "
                                                   "default: dlib's face descriptor.")
    p.add_argument("--fps", type=float, default=None, help="Side-by-side video rate; default the inputs' rate.")
    p.add_argument("--no-video", action="store_true", help="Skip the side-by-side video.")
    p.add_argument("--no-face-metrics", action="store_true", help="Skip CSIM and AKD (the slowest part on CPU).")
    p.add_argument("--no-temporal", action="store_true", help="Skip the warping error.")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (LPIPS and FID networks).")
    p.add_argument("--batch-size", type=int, default=8, help="Frames per LPIPS / Inception pass.")
    p.set_defaults(handler=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> None:
    from talkingface.recipes.evaluate import EvaluateOptions, run_evaluate

    run_evaluate(EvaluateOptions(
        pred=args.pred, gt=args.gt, out=args.out, source=args.source, lpips_alexnet=args.lpips_alexnet,
        lpips_lin=args.lpips_lin, inception=args.inception, arcface=args.arcface, fps=args.fps,
        write_video=not args.no_video, face_metrics=not args.no_face_metrics, temporal=not args.no_temporal,
        device=args.device, batch_size=args.batch_size))
# ------------------------------------------------------------------------------------


@pytest.fixture()
def evaluate_cli(monkeypatch, tmp_path):
    """cli.main with the evaluate verb, no LPIPS/FID weights anywhere it looks."""
    if not hasattr(cli, "_add_evaluate"):
        monkeypatch.setattr(cli, "VERBS", [*cli.VERBS, _add_evaluate])
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
