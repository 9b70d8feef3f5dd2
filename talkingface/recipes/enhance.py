"""`talkingface enhance`: temporal super-resolution of a clip (frames folder or video) with
bounded memory, in overlapping windows (talkingface.inference.sr has the window plan), written
as PNGs or a video.
"""
from __future__ import annotations

import itertools
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from talkingface.checkpoints.sr import load_temporal_sr
from talkingface.errors import DataError, TalkingFaceError
from talkingface.inference import resolve_precision
from talkingface.inference.sr import (Chunking, InputResizedWarning, iter_planned, plan_windows, prepare_sr,
                                      sample_clip, sr_psnr_check)
from talkingface.utils.device import resolve_device
from talkingface.utils.images import image_size, list_images, read_image, save_png, to_tensor, to_uint8_round
from talkingface.utils.options import device_option, force_option, option, precision_option
from talkingface.utils.paths import refuse_overwrite
from talkingface.utils.video import VIDEO_EXTENSIONS, iter_frames, probe_video, write_video


def list_frame_files(folder: Path) -> list[Path]:
    files = list_images(folder)
    if not files:
        raise DataError("no frames (.png/.jpg) in the input folder", folder)
    return files


def _resize(pixels: np.ndarray, size: int) -> np.ndarray:
    import cv2

    shrinking = pixels.shape[0] > size
    return cv2.resize(pixels, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


@dataclass
class InputClip:
    """A checked input, not yet decoded: a frames folder or a video."""

    path: Path
    files: list[Path]  # frames folder: the frames in natural order; empty for a video
    sizes: list[tuple[int, int]]  # distinct (width, height) of the frames, all square
    count: int | None  # frames; None when a video does not say
    fps: float | None  # None for a frames folder

    @property
    def is_video(self) -> bool:
        return not self.files

    def output_names(self) -> Iterator[str]:
        """PNG names of the output frames: the input's names, else (videos, a.jpg beside a.png) numbers."""
        names = [f.with_suffix(".png").name for f in self.files]
        if len(set(names)) != len(names):
            names = []
        yield from names
        for i in itertools.count(len(names)):
            yield f"{i:08d}.png"


def inspect_input(path: str | Path) -> InputClip:
    """Check an input before any work: it exists, has frames, and they are square."""
    path = Path(path)
    if path.is_dir():
        files = list_frame_files(path)
        sizes = {image_size(f) for f in files}
        clip = InputClip(path, files, sorted(sizes), len(files), None)
    elif path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS:
        info = probe_video(path)
        clip = InputClip(path, [], [(info.width, info.height)], info.num_frames or None, info.fps)
    elif path.exists():
        raise DataError(f"input must be a folder of frames or a video ({', '.join(sorted(VIDEO_EXTENSIONS))})",
                        path)
    else:
        raise DataError("input not found", path)
    for w, h in clip.sizes:
        if w != h:
            raise DataError(f"frames are {w}x{h}; the network needs square face crops; crop them first", path)
    return clip


def read_frames(clip: InputClip, size: int) -> Iterator[np.ndarray]:
    """Decode the frames (H x W x 3 uint8 RGB), resized to size x size with a warning when needed."""
    others = [w for w, _ in clip.sizes if w != size]
    if others:
        shown = ", ".join(f"{w}x{w}" for w in others)
        warnings.warn(f"{clip.path}: frames are {shown}; resizing them to {size}x{size}, the size the network "
                      "was trained on", InputResizedWarning, stacklevel=2)
    frames = iter_frames(clip.path) if clip.is_video else map(read_image, clip.files)
    count = 0
    for px in frames:
        count += 1
        if px.shape[0] != size or px.shape[1] != size:
            if px.shape[0] != px.shape[1]:  # a video whose frames change size midway
                raise DataError(f"frame {count - 1} is {px.shape[1]}x{px.shape[0]}, not square", clip.path)
            px = _resize(px, size)
        yield px
    if count == 0:
        raise DataError("the input has no frames", clip.path)


# --------------------------------------------------------------------------- recipe
@dataclass
class EnhanceOptions:
    input: str = option(help="Folder of .png/.jpg frames (square face crops) or a video file.")
    ckpt: str = option(help="temporal_gfpgan.pth (official) or a checkpoint of ours.")
    out: str = option(help="Output: a folder of PNGs, or a video file (.mp4) that keeps the input video's fps and "
                           "audio.")
    window: int | None = option(None, "Frames per forward pass (default: 16 new frames + the context; 16 with "
                                      "reference chunking).")
    overlap: int | None = option(None, "Context frames each side (default: the network's temporal radius, 14; "
                                       "exact).")
    batch_size: int = option(1, "Windows per forward pass.")
    chunking: Chunking = option("overlap", "overlap: windows with context, equal to a whole-clip pass; reference: "
                                           "independent 16-frame chunks like the official test script.")
    device: str = device_option()
    weights: str = option("auto", "Which weights of a BasicSR checkpoint (auto: params_ema when present).",
                          choices=("auto", "params_ema", "params"))
    fps: float = option(25.0, "Frame rate when a frames folder is written as video.")
    precision: str = precision_option("auto", "Default auto")  # measured: docs/performance.md
    force: bool = force_option()


@dataclass
class EnhanceResult:
    frames: int
    out: Path
    seconds: float


def run_enhance(opts: EnhanceOptions) -> EnhanceResult:
    """Load the checkpoint, super-resolve the input, write PNGs or a video (fps and audio kept)."""
    began = time.perf_counter()
    if opts.batch_size < 1:
        raise TalkingFaceError(f"batch size must be >= 1, got {opts.batch_size}")
    out = Path(opts.out)
    refuse_overwrite(out, opts.input, opts.ckpt)
    to_video = out.suffix.lower() in VIDEO_EXTENSIONS
    if out.exists() and (out.is_dir() == to_video):
        raise DataError("output exists and is " + ("a folder" if to_video else "a file") +
                        f"; give a {'video file' if to_video else 'folder'} path", out)
    clip = inspect_input(opts.input)  # input errors before the (slow) checkpoint load
    device = resolve_device(opts.device)
    model = load_temporal_sr(opts.ckpt, which=opts.weights).eval().to(device)  # type: ignore[arg-type]
    # auto: checked on this checkpoint and the input's first frames (only where a low precision is native)
    choice = resolve_precision(opts.precision, device, sr_psnr_check(model, lambda: sample_clip(
        read_frames(clip, model.input_size), 2 * model.temporal_radius + 1, device)), force=opts.force)
    model = prepare_sr(model, device, choice.precision)
    plan = plan_windows(model, opts.window, opts.overlap, opts.chunking)
    print(f"Super-resolving {clip.path} ({clip.count or 'unknown number of'} frames) on {device}: "
          f"windows of {plan.window} frames, {plan.overlap} context frames each side; precision {choice.reason}")

    inputs = (to_tensor(px) for px in read_frames(clip, model.input_size))
    results = iter_planned(model, inputs, plan, opts.batch_size)
    count = 0
    with tqdm(total=clip.count, unit="frame", desc="enhance", dynamic_ncols=True) as bar:
        def pixels() -> Iterator[np.ndarray]:
            nonlocal count
            for frame in results:
                count += 1
                bar.update(1)
                yield to_uint8_round(frame)

        if to_video:
            write_video(out, pixels(), clip.fps or opts.fps, audio_from=clip.path if clip.is_video else None)
        else:
            out.mkdir(parents=True, exist_ok=True)
            for name, px in zip(clip.output_names(), pixels()):
                save_png(out / name, px)
    result = EnhanceResult(count, out, time.perf_counter() - began)
    print(f"Wrote {count} frames to {out} in {result.seconds:.1f} s")
    return result
