"""Temporal super-resolution of a clip (frames folder or video) with bounded memory.

The network mixes neighbouring frames in `model.temporal_radius` blocks of one frame
each side, so output frame t depends on input frames t - R .. t + R and on nothing
else. Long clips therefore run in overlapping windows:

    window = [context | core | context],  context = overlap >= R frames

Only each window's core is kept. At the clip's ends the window simply stops at
the first/last frame, where the network repeats edge frames exactly as a
whole-clip pass does. With overlap >= R the result equals a whole-clip pass up to
float rounding, while memory is bounded by the window length.

`chunking="reference"` reproduces the official test script instead: independent,
non-overlapping 16-frame chunks (so frames near chunk borders see repeated edge
frames rather than their true neighbours).
"""
from __future__ import annotations

import itertools
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Literal

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from talkingface.errors import DataError, TalkingFaceError
from talkingface.utils.finite import require_finite
from talkingface.utils.paths import refuse_overwrite
from talkingface.utils.png import save_png

Chunking = Literal["overlap", "reference"]
REFERENCE_CHUNK = 16  # frames per chunk in the official test script
DEFAULT_CORE = 16  # new frames per window in overlap mode
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg"}


class InputResizedWarning(UserWarning):
    """Input frames were not at the network's size and were resized."""


# --------------------------------------------------------------------------- windows
@dataclass(frozen=True)
class WindowPlan:
    """Frames per pass (`window`) and context frames each side (`overlap`)."""

    window: int
    overlap: int

    @property
    def core(self) -> int:
        return self.window - 2 * self.overlap


def plan_windows(model, window: int | None = None, overlap: int | None = None,
                 chunking: Chunking = "overlap") -> WindowPlan:
    """Resolve defaults and check the numbers. Overlap below the radius only warns: it is allowed
    (less compute) but the output then differs from a whole-clip pass near window borders."""
    if chunking == "reference":
        if overlap not in (None, 0):
            raise TalkingFaceError("--chunking reference uses non-overlapping chunks; drop --overlap")
        window = REFERENCE_CHUNK if window is None else window
        if window < 1:
            raise TalkingFaceError(f"window must be >= 1 frame, got {window}")
        return WindowPlan(window=window, overlap=0)
    if chunking != "overlap":
        raise TalkingFaceError(f"unknown chunking {chunking!r} (use overlap or reference)")
    radius = model.temporal_radius
    overlap = radius if overlap is None else overlap
    if overlap < 0:
        raise TalkingFaceError(f"overlap must be >= 0, got {overlap}")
    window = 2 * overlap + DEFAULT_CORE if window is None else window
    if window - 2 * overlap < 1:
        raise TalkingFaceError(f"window {window} leaves no new frames after {overlap} context frames each side; "
                               f"use a window of at least {2 * overlap + 1}")
    if overlap < radius:
        warnings.warn(f"overlap {overlap} is below the network's temporal radius {radius}: frames near window "
                      "borders will differ from a whole-clip pass", stacklevel=2)
    return WindowPlan(window=window, overlap=overlap)


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def iter_enhance(model, frames: Iterable[torch.Tensor], window: int | None = None, overlap: int | None = None,
                 batch_size: int = 1, chunking: Chunking = "overlap") -> Iterator[torch.Tensor]:
    """Stream 3 x H x W frames (0..1) in, 3 x 2H x 2W frames (CPU, float, unclamped) out, in order.

    Holds at most `batch_size` windows of input frames; `batch_size` windows of equal
    length go through the network together (as a batch of clips).
    """
    return iter_planned(model, frames, plan_windows(model, window, overlap, chunking), batch_size)


def iter_planned(model, frames: Iterable[torch.Tensor], plan: WindowPlan, batch_size: int = 1
                 ) -> Iterator[torch.Tensor]:
    """`iter_enhance` with the window plan already resolved."""
    if batch_size < 1:
        raise TalkingFaceError(f"batch size must be >= 1, got {batch_size}")
    device = _model_device(model)
    source = iter(frames)
    buffer: list[torch.Tensor] = []  # input frames base .. base + len(buffer) - 1
    base = 0
    exhausted = False

    def read_until(count: int) -> int:
        """Read frames until `count` have been read or the input ends; return how many have been."""
        nonlocal exhausted
        while not exhausted and base + len(buffer) < count:
            try:
                buffer.append(next(source))
            except StopIteration:
                exhausted = True
        return base + len(buffer)

    def run(group: list[tuple[int, int, int, int]]) -> Iterator[torch.Tensor]:
        clips = torch.stack([torch.stack(buffer[lo - base:hi - base]) for lo, _, _, hi in group])  # G x T x 3 x H x W
        with torch.inference_mode():
            out = model(clips.to(device, torch.float32)).cpu()  # G x T x 3 x 2H x 2W
        require_finite(out, "the super-resolution output", "; the weights or the inputs are damaged, or a "
                                                          "low --precision overflowed")
        for g, (lo, start, stop, _) in enumerate(group):
            yield from out[g, start - lo:stop - lo]

    group: list[tuple[int, int, int, int]] = []  # (lo, start, stop, hi) per window
    start = 0
    while True:
        available = read_until(start + plan.core + plan.overlap)
        if start >= available:
            break
        stop = min(start + plan.core, available)
        lo, hi = max(0, start - plan.overlap), min(available, stop + plan.overlap)
        if group and (len(group) == batch_size or group[0][3] - group[0][0] != hi - lo):
            yield from run(group)
            group = []
            del buffer[:lo - base]  # nothing before this window's context is needed again
            base = lo
        group.append((lo, start, stop, hi))
        start = stop
    if group:
        yield from run(group)


def enhance_clip(model, frames: torch.Tensor, window: int | None = None, overlap: int | None = None,
                 batch_size: int = 1, chunking: Chunking = "overlap",
                 on_frame: Callable[[], None] | None = None) -> torch.Tensor:
    """N x 3 x H x W (0..1) -> N x 3 x 2H x 2W, in overlapping windows (see the module doc)."""
    if frames.ndim != 4:
        raise ValueError(f"expected N x 3 x H x W frames, got {tuple(frames.shape)}")
    outputs = []
    for frame in iter_enhance(model, frames.unbind(0), window, overlap, batch_size, chunking):
        outputs.append(frame)
        if on_frame is not None:
            on_frame()
    return torch.stack(outputs)


# --------------------------------------------------------------------------- pixels
def to_uint8(frame: torch.Tensor) -> np.ndarray:
    """3 x H x W float (nominally 0..1) -> H x W x 3 uint8, clamped and rounded."""
    return (frame.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 -> 3 x H x W float 0..1."""
    pixels = np.array(pixels, dtype=np.uint8)  # a writable copy: arrays from PIL are read-only
    return torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0


def sample_clip(frames: Iterable[np.ndarray], count: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The first `count` frames (the last one repeated if there are fewer) as a 1 x count x 3 x S x S
    clip: what the precision check super-resolves."""
    first = list(itertools.islice(frames, count))
    if not first:
        raise DataError("no frames to check the precision on")
    first += [first[-1]] * (count - len(first))
    return torch.stack([to_tensor(f) for f in first])[None].to(device)


def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def list_frame_files(folder: Path) -> list[Path]:
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                   key=_natural_key)
    if not files:
        raise DataError("no frames (.png/.jpg) in the input folder", folder)
    return files


def _resize(pixels: np.ndarray, size: int) -> np.ndarray:
    import cv2

    shrinking = pixels.shape[0] > size
    return cv2.resize(pixels, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def _read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read image ({e})", path) from None


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
    from talkingface.utils.video import VIDEO_EXTENSIONS, probe_video

    path = Path(path)
    if path.is_dir():
        files = list_frame_files(path)
        sizes = set()
        for f in files:
            try:
                with Image.open(f) as im:
                    sizes.add(im.size)
            except (OSError, ValueError) as e:
                raise DataError(f"cannot read image ({e})", f) from None
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
    from talkingface.utils.video import iter_frames

    others = [w for w, _ in clip.sizes if w != size]
    if others:
        shown = ", ".join(f"{w}x{w}" for w in others)
        warnings.warn(f"{clip.path}: frames are {shown}; resizing them to {size}x{size}, the size the network "
                      "was trained on", InputResizedWarning, stacklevel=2)
    frames = iter_frames(clip.path) if clip.is_video else map(_read_image, clip.files)
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
    input: str  # frames folder or video
    ckpt: str  # temporal_gfpgan.pth (official) or one of ours
    out: str  # folder of PNGs, or a video file (.mp4, ...)
    window: int | None = None  # frames per pass; default 2 * overlap + 16 (16 in reference mode)
    overlap: int | None = None  # context frames each side; default the network's temporal radius
    batch_size: int = 1  # windows per forward pass
    chunking: Chunking = "overlap"
    device: str = "auto"
    weights: str = "auto"  # params_ema (preferred by auto) or params
    fps: float = 25.0  # output frame rate for a frames-folder input written as video
    precision: str = "auto"  # fp32, bf16, fp16, or auto: the fastest measured to stay >= 40 dB (docs/performance.md)
    force: bool = False  # keep a bf16 / fp16 the device only emulates (else fp32, with a warning)


@dataclass
class EnhanceResult:
    frames: int
    out: Path
    seconds: float


def run_enhance(opts: EnhanceOptions) -> EnhanceResult:
    """Load the checkpoint, super-resolve the input, write PNGs or a video (fps and audio kept)."""
    from talkingface.checkpoints.sr import load_temporal_sr
    from talkingface.inference import resolve_precision
    from talkingface.inference.sr import prepare_sr, sr_psnr_check
    from talkingface.utils.device import resolve_device
    from talkingface.utils.video import VIDEO_EXTENSIONS, write_video

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
                yield to_uint8(frame)

        if to_video:
            write_video(out, pixels(), clip.fps or opts.fps, audio_from=clip.path if clip.is_video else None)
        else:
            out.mkdir(parents=True, exist_ok=True)
            for name, px in zip(clip.output_names(), pixels()):
                save_png(out / name, px)
    result = EnhanceResult(count, out, time.perf_counter() - began)
    print(f"Wrote {count} frames to {out} in {result.seconds:.1f} s")
    return result
