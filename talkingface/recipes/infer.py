"""Inference on an official-layout dataset: reconstruct every driving frame from its source.

Writes <save_dir>/output_<H>/<frame>.png, pixels uint8(clip(pred * 255, 0, 255)) —
truncated, not rounded, as the reference writes them — and <save_dir>/out_<H>.mp4,
encoded from the frames as they come (not read back from the PNGs). Both appear only when
every frame is written: the PNGs go to a hidden temporary folder, renamed at the end (on
failure it is removed, or kept as <save_dir>/output_<H>.partial with keep_partial).
At the default fp32, exact optimisations only: spectral norm folded into the weights,
the source encoded once per identity, frames batched; the PNGs match the reference
implementation's. bf16 / fp16 run through the inference engine (talkingface.inference:
fused blocks, channels_last, low-precision convolutions; docs/performance.md).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from talkingface.checkpoints.official import OFFICIAL_CKPT_HINT, load_generator
from talkingface.config import load_config
from talkingface.data.official import OfficialDataset, open_dataset
from talkingface.errors import CheckpointError, TalkingFaceError
from talkingface.inference import InferenceEngine, generator_psnr_check, resolve_precision
from talkingface.inference.reconstruct import iter_reconstruct
from talkingface.metrics import FrameEvaluator
from talkingface.metrics.report import format_summary, plot_frame_metrics, write_frame_csv, write_summary_json
from talkingface.models.generator import batch_inputs
from talkingface.models.layers import fold_spectral_norm
from talkingface.utils.atomic import atomic_dir, atomic_path
from talkingface.utils.device import resolve_device
from talkingface.utils.images import save_png
from talkingface.utils.options import device_option, force_option, option, precision_option
from talkingface.utils.paths import refuse_overwrite
from talkingface.utils.video import write_video

# Batching changes a few pixels by one grey level (other conv algorithms), so fp32 keeps
# batch 1 unless asked; the low precisions differ from fp32 anyway and gain ~1.3x from it.
LOW_PRECISION_BATCH = 4


@dataclass
class InferOptions:
    config: str = option(help="Model/data YAML (official schema).")
    ckpt: str = option(help="Base-model checkpoint (official format or ours).")
    data_root: str | None = option(None, "Dataset root; defaults to the config's dataset root.", flag="--data")
    save_dir: str = option("./saved", "Output folder: out/output_256/*.png and out/out_256.mp4.", flag="--out")
    fps: float = option(23.98, "Frame rate of the output video.")
    batch_size: int | None = option(None, "Driving frames per forward pass (default: 1 at fp32, pixel-exact; 4 at "
                                          "bf16/fp16).")
    device: str = device_option()
    write_video: bool = option(True, "Write the PNG frames only.", flag="--no-video")
    evaluate: bool = option(False, "Score the self-reconstruction against the driving frames (report in OUT/eval).",
                            flag="--eval")
    precision: str = precision_option("fp32", "fp32 (default) matches the reference implementation pixel for pixel")
    force: bool = force_option()
    keep_partial: bool = option(False, "On failure keep the frames written so far in OUT/output_256.partial (by "
                                       "default a failed run leaves no frames and no video: both appear only when "
                                       "complete).")


@dataclass
class InferResult:
    frames: int
    frames_dir: Path
    video: Path | None
    seconds: float


def run_inference(opts: InferOptions) -> InferResult:
    start = time.perf_counter()
    cfg = load_config(opts.config)
    save_dir, size = Path(opts.save_dir), cfg.resolution[0]
    for written in (save_dir, save_dir / f"output_{size}", save_dir / f"out_{size}.mp4"):
        refuse_overwrite(written, opts.ckpt, opts.config, opts.data_root or cfg.dataset.data_block().root)
    if not Path(opts.ckpt).is_file():
        raise CheckpointError(f"checkpoint not found; {OFFICIAL_CKPT_HINT}", opts.ckpt)
    device = resolve_device(opts.device)
    loaded = load_generator(opts.ckpt, cfg)
    model = fold_spectral_norm(loaded.model).eval().to(device)
    dataset = open_dataset(cfg, opts.data_root or cfg.dataset.data_block().root)
    engine = None
    # auto: checked on this checkpoint and the dataset's first frame (only where a low precision is native)
    check = generator_psnr_check(model, lambda: batch_inputs(torch.utils.data.default_collate([dataset[0]]), device),
                                 device) if len(dataset) else None
    choice = resolve_precision(opts.precision, device, check, force=opts.force)
    if choice.precision != "fp32":
        engine = InferenceEngine.prepare(model, device, choice.precision)
    print(f"precision {choice.reason}")
    frames_dir = save_dir / f"output_{size}"
    print(f"Reconstructing {len(dataset)} frames of {len(dataset.identities)} identities from {dataset.root} "
          f"on {device}")

    batch_size = opts.batch_size or (1 if engine is None else LOW_PRECISION_BATCH)
    count = 0
    video = save_dir / f"out_{size}.mp4" if opts.write_video else None

    def frames(tmp_dir: Path) -> Iterator[np.ndarray]:  # each saved as a PNG, then handed to the video encoder
        nonlocal count
        for indices, pixels in iter_reconstruct(model, dataset, max(1, batch_size), device, engine):
            for i, px in zip(indices, pixels):
                name = dataset.frames[i].output_name
                try:
                    save_png(tmp_dir / name, px)
                except OSError as e:  # a full disk: name the file asked for, not the temporary folder's
                    if e.filename != os.fspath(tmp_dir / name):
                        raise
                    raise OSError(e.errno, e.strerror, os.fspath(frames_dir / name)) from None
                count += 1
                yield px

    # One result: the video (if any) and the PNG folder are renamed into place only once every
    # frame is written, the folder first (the inner context), then the video.
    created = not save_dir.exists()
    try:
        _write_result(opts, frames, video, frames_dir)
    except BaseException:
        if created and save_dir.is_dir() and not any(save_dir.iterdir()):  # a failed run leaves no empty folder
            save_dir.rmdir()
        raise
    if opts.evaluate:
        evaluate_reconstruction(dataset, frames_dir, save_dir / "eval")
    result = InferResult(count, frames_dir, video, time.perf_counter() - start)
    print(f"Wrote {count} frames to {frames_dir}" + (f" and {video}" if video else "")
          + f" in {result.seconds:.1f} s")
    return result


def _write_result(opts: InferOptions, frames: Callable[[Path], Iterator[np.ndarray]], video: Path | None,
                  frames_dir: Path) -> None:
    """The PNG folder and the video, each renamed into place once every frame is written."""
    with contextlib.ExitStack() as stack:
        tmp_video = stack.enter_context(atomic_path(video)) if video is not None else None
        tmp_dir = stack.enter_context(atomic_dir(frames_dir))
        try:
            if tmp_video is not None:
                write_video(tmp_video, frames(tmp_dir), opts.fps)  # the dataset's order, which the loader keeps
            else:
                for _ in frames(tmp_dir):
                    pass
        except BaseException as e:
            if opts.keep_partial:
                _keep_partial(tmp_dir, frames_dir, sum(1 for _ in tmp_dir.glob("*.png")), e)
            raise

def _keep_partial(tmp_dir: Path, frames_dir: Path, count: int, error: BaseException) -> None:
    """Rename the unfinished PNG folder to <frames_dir>.partial and say so in the error's line."""
    partial = frames_dir.with_name(frames_dir.name + ".partial")
    if partial.is_dir() and not partial.is_symlink():
        shutil.rmtree(partial)
    elif partial.exists() or partial.is_symlink():
        partial.unlink()
    os.replace(tmp_dir, partial)
    note = f"the {count} frames written before the failure are kept in {partial}"
    if isinstance(error, TalkingFaceError):
        error.message = f"{error.message}; {note}"
        error.args = (f"{error.path}: {error.message}" if error.path else error.message,)
    else:
        print(f"talkingface: {note}", file=sys.stderr)


def evaluate_reconstruction(dataset: OfficialDataset, frames_dir: Path, report_dir: Path) -> None:
    """Self-reconstruction scores: each output frame against its driving frame (the ground truth)."""
    evaluator = FrameEvaluator()
    for frame in tqdm(dataset.frames, unit="frame", desc="evaluate", dynamic_ncols=True):
        with Image.open(frames_dir / frame.output_name) as im:
            pred = np.asarray(im.convert("RGB"))
        with Image.open(frame.image) as im:
            gt = np.asarray(im.convert("RGB").resize(pred.shape[1::-1], Image.BICUBIC))
        evaluator.add(pred, gt)
    result = evaluator.finish()
    report_dir.mkdir(parents=True, exist_ok=True)
    write_frame_csv(report_dir / "per_frame.csv", result.records)
    write_summary_json(report_dir / "summary.json", result.summary, {"pred": str(frames_dir), "gt": str(dataset.root)})
    plot_frame_metrics(report_dir / "metrics.png", result.records, title="self-reconstruction")
    for line in format_summary(result.summary):
        print(line)
