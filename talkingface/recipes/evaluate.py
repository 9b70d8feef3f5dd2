"""`talkingface evaluate`: the field's metrics on any predicted video against its ground truth.

Inputs are folders of frames (sorted by name, numbers in names compared as numbers) or
video files. The report folder receives:
  per_frame.csv      one row per frame (PSNR, SSIM, L1, LPIPS, CSIM, AKD, warping error)
  summary.json       means, FID, face-detection misses, skipped metrics and why, settings
  metrics.png        per-frame curves
  side_by_side.mp4   source | ground truth (or driving) | prediction
LPIPS and FID need weight files the user provides (see talkingface.metrics.lpips / .fid);
without them they are skipped with a message that says how to provide them.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from talkingface.errors import DataError
from talkingface.metrics.fid import find_inception_weights
from talkingface.metrics.lpips import find_lpips_weights
from talkingface.metrics.report import (format_summary, plot_frame_metrics, side_by_side, write_frame_csv,
                                        write_summary_json)
from talkingface.metrics.suite import EvaluationSummary, FrameEvaluator, MetricOptions, paired_frames
from talkingface.utils.device import resolve_device
from talkingface.utils import images
from talkingface.utils.images import IMAGE_EXTENSIONS, list_images
from talkingface.utils.atomic import check_writable
from talkingface.utils.options import device_option, option
from talkingface.utils.paths import refuse_overwrite
from talkingface.utils.video import VIDEO_EXTENSIONS, iter_frames, probe_video, write_video

FRAMES_CSV = "per_frame.csv"
SUMMARY_JSON = "summary.json"
PLOT_PNG = "metrics.png"
SIDE_BY_SIDE = "side_by_side.mp4"
DEFAULT_FPS = 25.0


@dataclass
class EvaluateOptions:
    pred: str = option(help="Predicted frames: a folder of images or a video file.")
    gt: str = option(help="Ground-truth (or driving) frames: a folder of images or a video.")
    out: str = option(help="Report folder: per_frame.csv, summary.json, metrics.png, side_by_side.mp4.")
    source: str | None = option(None, "Source image: CSIM against it (cross-identity runs) and the first column of "
                                      "the side-by-side video.")
    lpips_alexnet: str | None = option(None, "torchvision AlexNet weights (alexnet-owt-7be5be79.pth); default "
                                             "$TALKINGFACE_LPIPS_ALEXNET, then $TORCH_HOME/hub/checkpoints/.")
    lpips_lin: str | None = option(None, "LPIPS v0.1 linear layers (alex.pth); default $TALKINGFACE_LPIPS_LIN.")
    inception: str | None = option(None, "Inception-v3 weights for FID (pt_inception-2015-12-05 or torchvision's); "
                                         "default $TALKINGFACE_INCEPTION, then $TORCH_HOME/hub/checkpoints/.")
    arcface: str | None = option(None, "ArcFace ONNX model for CSIM (needs onnxruntime); default: dlib's face "
                                       "descriptor.")
    fps: float | None = option(None, "Side-by-side video rate; default the inputs' rate, else 25.")
    write_video: bool = option(True, "Skip the side-by-side video.", flag="--no-video")
    face_metrics: bool = option(True, "Skip CSIM and AKD (the slowest part on CPU).")
    temporal: bool = option(True, "Skip the warping error.")
    device: str = device_option(" (LPIPS and FID networks)")
    batch_size: int = option(8, "Frames per LPIPS / Inception pass.")


@dataclass
class EvaluateResult:
    report_dir: Path
    summary: EvaluationSummary
    seconds: float


def read_image(path: str | Path) -> np.ndarray:
    """An image file as H x W x 3 uint8 RGB (talkingface.utils.images)."""
    return images.read_image(path, error="cannot read as an image")


@dataclass(frozen=True)
class FrameSequence:
    """A folder of frame images or a video file."""

    path: Path
    files: tuple[Path, ...]  # empty for a video
    count: int | None  # None when a video's container does not say
    fps: float | None  # None for a folder

    @property
    def is_video(self) -> bool:
        return not self.files

    def frames(self) -> Iterator[np.ndarray]:
        if self.is_video:
            yield from iter_frames(self.path)
        else:
            for f in self.files:
                yield read_image(f)


def open_frames(path: str | Path) -> FrameSequence:
    path = Path(path)
    if path.is_dir():
        files = list_images(path)
        if not files:
            raise DataError(f"no frame images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in this folder", path)
        return FrameSequence(path, tuple(files), len(files), None)
    if path.is_file():
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            raise DataError(f"expected a folder of frames or a video file ({', '.join(sorted(VIDEO_EXTENSIONS))})",
                            path)
        info = probe_video(path)
        return FrameSequence(path, (), info.num_frames or None, info.fps)
    raise DataError("no such file or folder", path)


def metric_options(opts: EvaluateOptions) -> tuple[MetricOptions, dict[str, str]]:
    """Resolve weight files; returns the options and why optional metrics are skipped."""
    skipped = {}
    lpips_weights, why = find_lpips_weights(opts.lpips_alexnet, opts.lpips_lin)
    if why:
        skipped["lpips"] = why
    inception, why = find_inception_weights(opts.inception)
    if why:
        skipped["fid"] = why
    device = str(resolve_device(opts.device))
    return MetricOptions(faces=opts.face_metrics, temporal=opts.temporal, lpips=lpips_weights, inception=inception,
                         arcface=Path(opts.arcface) if opts.arcface else None, device=device,
                         batch_size=max(1, opts.batch_size)), skipped


def run_evaluate(opts: EvaluateOptions) -> EvaluateResult:
    start = time.perf_counter()
    inputs = (opts.pred, opts.gt, opts.source, opts.arcface, opts.lpips_alexnet, opts.lpips_lin, opts.inception)
    for written in ("", FRAMES_CSV, SUMMARY_JSON, PLOT_PNG, SIDE_BY_SIDE):  # the folder and each report file
        refuse_overwrite(Path(opts.out) / written, inputs)
    check_writable(Path(opts.out) / SUMMARY_JSON)  # a read-only --out fails before the scoring, not after it
    pred, gt = open_frames(opts.pred), open_frames(opts.gt)
    if pred.count is not None and gt.count is not None and pred.count != gt.count:
        raise DataError(f"frame counts differ: the prediction {pred.path} has {pred.count} frames, "
                        f"the ground truth {gt.path} has {gt.count}")
    source = read_image(opts.source) if opts.source else None
    options, skipped = metric_options(opts)
    for why in skipped.values():
        print(why)
    evaluator = FrameEvaluator(options, source)
    out = Path(opts.out)
    created = None  # the outermost folder this run makes (--out and any missing parents)
    for folder in (out, *out.parents):
        if folder.exists() or folder.is_symlink():
            break
        created = folder
    out.mkdir(parents=True, exist_ok=True)
    try:
        total = gt.count or pred.count

        def composites() -> Iterator[np.ndarray]:
            with tqdm(total=total, unit="frame", desc="evaluate", dynamic_ncols=True) as bar:
                for p, g in paired_frames(pred.frames(), gt.frames()):
                    evaluator.add(p, g)
                    bar.update(1)
                    yield side_by_side(g, p, source)
            if not evaluator.records:
                raise DataError(f"no frames could be read from {pred.path} and {gt.path}")

        if opts.write_video:
            fps = opts.fps or pred.fps or gt.fps or DEFAULT_FPS
            write_video(out / SIDE_BY_SIDE, composites(), fps)
        else:
            for _ in composites():
                pass
        result = evaluator.finish()
        summary = result.summary
        summary.skipped.update(skipped)
        write_frame_csv(out / FRAMES_CSV, result.records)
        inputs = {"pred": str(pred.path), "gt": str(gt.path), "source": opts.source}
        write_summary_json(out / SUMMARY_JSON, summary, inputs)
        plot_frame_metrics(out / PLOT_PNG, result.records, title=f"{pred.path.name} vs {gt.path.name}")
    except BaseException:
        if created is not None:  # a failed run leaves no report folder (only what this run made: all ours)
            shutil.rmtree(created, ignore_errors=True)
        raise
    for line in format_summary(summary):
        print(line)
    seconds = time.perf_counter() - start
    print(f"Report written to {out} in {seconds:.1f} s")
    return EvaluateResult(out, summary, seconds)
