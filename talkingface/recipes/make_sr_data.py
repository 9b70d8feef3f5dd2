"""`talkingface make-sr-data`: LQ/GT clip pairs for temporal super-resolution training.

Input: a preprocessed dataset in the official layout at the ground-truth size (512 for
the official model; `talkingface preprocess --size 512`). Output, one clip per
identity folder:

    out/<k>/gt/<frame>.png   the dataset's frame (512)
    out/<k>/lq/<frame>.png   its low-quality partner (256)

LQ frames come from one of two sources:
  * base model (a checkpoint and its config): the base model reconstructs every
    driving frame from its identity's source at the model's resolution (the frames,
    downscaled to 256, and their landmarks), so LQ frames carry the base model's own
    artefacts, as in the reference's training data;
  * degradation (`--degrade`, or no checkpoint given): the GT frame is blurred,
    downscaled to half size, noised and JPEG-compressed. The blur, resampling filter,
    noise level and JPEG quality are drawn once per clip (so the LQ clip does not
    flicker more than real footage); the noise itself per frame. Everything is
    seeded by --seed, clip and frame, so reruns reproduce the same files.
Every PNG is written atomically; a rerun skips the pairs already there (resume).
"""
from __future__ import annotations

import json
import shutil
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from talkingface.checkpoints.official import OFFICIAL_CKPT_HINT, load_generator
from talkingface.config import load_config
from talkingface.data.official import Frame, open_dataset, read_source_map, scan_frames
from talkingface.errors import CheckpointError, DataError, TalkingFaceError
from talkingface.inference.reconstruct import reconstruct
from talkingface.models.layers import fold_spectral_norm
from talkingface.utils.atomic import atomic_path
from talkingface.utils.device import resolve_device
from talkingface.utils.options import device_option, option
from talkingface.utils.paths import refuse_overwrite
from talkingface.utils.images import image_size, read_image, save_png

MANIFEST = "sr_data.json"


@dataclass(frozen=True)
class DegradationSettings:
    """Ranges the per-clip degradation is drawn from (uniformly)."""

    blur_sigma: tuple[float, float] = (0.2, 1.5)  # Gaussian blur of the GT, in GT pixels
    noise_sigma: tuple[float, float] = (0.0, 4.0)  # Gaussian noise on the LQ frame, in 0..255 levels
    jpeg_quality: tuple[int, int] = (60, 95)
    resample: tuple[str, ...] = ("area", "bilinear", "bicubic")  # downscaling filters, one per clip


@dataclass
class MakeSRDataOptions:
    data: str = option(help="Official-layout dataset at the GT size (preprocess --size 512).")
    out: str = option(help="Output folder: <clip>/lq/*.png and <clip>/gt/*.png; reruns resume.")
    ckpt: str | None = option(None, "Base-model checkpoint: LQ = its self-reconstruction at 256.")
    config: str | None = option(None, "The base model's config (with --ckpt).")
    degrade: bool = option(False, "LQ by blur, x0.5, noise and JPEG instead (the default when no --ckpt is given).")
    seed: int = option(0, "Degradation seed: the same seed gives the same files.")
    batch_size: int = option(1, "Frames per base-model forward pass.")
    device: str = device_option()
    degradation: DegradationSettings = field(default_factory=DegradationSettings)


@dataclass
class MakeSRDataResult:
    out: Path
    mode: str  # "base-model" or "degrade"
    clips: int
    pairs: int
    written: int  # pairs written by this run (the rest were already there)
    lq_size: int
    gt_size: int
    seconds: float


def _clip_name(frame: Frame) -> str:
    return frame.image.parent.parent.name


def _targets(out: Path, frame: Frame) -> tuple[Path, Path]:
    clip = out / _clip_name(frame)
    name = f"{frame.image.stem}.png"
    return clip / "lq" / name, clip / "gt" / name


def _write_gt(frame: Frame, target: Path, side: int) -> None:
    """The GT frame as PNG: a byte copy when it already is one (after checking its size)."""
    w, h = image_size(frame.image)
    if (w, h) != (side, side):
        raise DataError(f"frame is {w}x{h}, but the dataset's frames are {side}x{side}", frame.image)
    if frame.image.suffix.lower() == ".png":
        with atomic_path(target) as tmp:
            shutil.copyfile(frame.image, tmp)
    else:
        save_png(target, read_image(frame.image))


def list_frames(root: Path) -> list[Frame]:
    if not root.is_dir():
        raise DataError("dataset folder not found", root)
    frames = scan_frames(root, read_source_map(root))
    if not frames:
        raise DataError("dataset has no driving frames (expected <k>/imgs/<frame>.png)", root)
    seen: dict[Path, Path] = {}
    for f in frames:  # a.jpg and a.png in one folder would both become a.png
        lq, _ = _targets(Path("."), f)
        if lq in seen:
            raise DataError(f"two frames would both be written as {lq.name} ({seen[lq].name} and {f.image.name})",
                            f.image)
        seen[lq] = f.image
    return frames


def _gt_side(frames: list[Frame]) -> int:
    w, h = image_size(frames[0].image)
    if w != h:
        raise DataError(f"frames must be square face crops; this one is {w}x{h}", frames[0].image)
    return w


# --------------------------------------------------------------------------- degradations
def _rng(seed: int, *keys: str | int) -> np.random.Generator:
    return np.random.default_rng([seed, *(zlib.crc32(str(k).encode()) for k in keys)])


@dataclass(frozen=True)
class ClipDegradation:
    blur_sigma: float
    noise_sigma: float
    jpeg_quality: int
    resample: str

    @classmethod
    def draw(cls, settings: DegradationSettings, rng: np.random.Generator) -> "ClipDegradation":
        return cls(float(rng.uniform(*settings.blur_sigma)), float(rng.uniform(*settings.noise_sigma)),
                   int(rng.integers(settings.jpeg_quality[0], settings.jpeg_quality[1] + 1)),
                   str(settings.resample[int(rng.integers(len(settings.resample)))]))


def degrade(gt: np.ndarray, size: int, clip: ClipDegradation, rng: np.random.Generator) -> np.ndarray:
    """H x W x 3 uint8 -> size x size x 3 uint8: blur, downscale, noise, JPEG."""
    import cv2

    filters = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}
    x = gt
    if clip.blur_sigma > 0:
        k = 2 * int(np.ceil(3 * clip.blur_sigma)) + 1
        x = cv2.GaussianBlur(x, (k, k), clip.blur_sigma, borderType=cv2.BORDER_REFLECT)
    x = cv2.resize(x, (size, size), interpolation=filters[clip.resample]).astype(np.float32)
    if clip.noise_sigma > 0:
        x = x + rng.normal(0.0, clip.noise_sigma, x.shape).astype(np.float32)
    x = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(x, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, clip.jpeg_quality])
    if not ok:
        raise TalkingFaceError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# --------------------------------------------------------------------------- recipe
def run_make_sr_data(opts: MakeSRDataOptions) -> MakeSRDataResult:
    began = time.perf_counter()
    root, out = Path(opts.data), Path(opts.out)
    if opts.degrade and opts.ckpt:
        raise TalkingFaceError("give either --ckpt (LQ = base-model output) or --degrade, not both")
    if opts.ckpt and not opts.config:
        raise TalkingFaceError("--ckpt needs --config, the base model's config")
    if opts.batch_size < 1:
        raise TalkingFaceError(f"batch size must be >= 1, got {opts.batch_size}")
    refuse_overwrite(out, root, opts.ckpt, opts.config)
    frames = list_frames(root)
    gt_side = _gt_side(frames)
    mode = "base-model" if opts.ckpt else "degrade"
    if mode == "base-model":
        cfg = load_config(opts.config)
        lq_side = cfg.resolution[0]
        if gt_side != 2 * lq_side:
            raise DataError(f"frames are {gt_side}x{gt_side}; the ground truth must be twice the base model's "
                            f"{lq_side}x{lq_side} output, {2 * lq_side}x{2 * lq_side} (preprocess with "
                            f"--size {2 * lq_side})", frames[0].image)
        if not Path(opts.ckpt).is_file():
            raise CheckpointError(f"base-model checkpoint not found; {OFFICIAL_CKPT_HINT}", opts.ckpt)
    else:
        if gt_side % 2:
            raise DataError(f"frames are {gt_side}x{gt_side}; the ground truth side must be even", frames[0].image)
        lq_side = gt_side // 2
        print(("--degrade" if opts.degrade else "no base checkpoint given") +
              f": LQ frames by degradation (blur, {gt_side} -> {lq_side}, noise, JPEG), seed {opts.seed}")

    pending = [i for i, f in enumerate(frames) if not all(p.is_file() for p in _targets(out, f))]
    if len(pending) < len(frames):
        print(f"{len(frames) - len(pending)} of {len(frames)} pairs already in {out}; making the other {len(pending)}")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)

    def write_pair(frame: Frame, lq: np.ndarray) -> None:
        lq_path, gt_path = _targets(out, frame)
        if lq.shape[:2] != (lq_side, lq_side):
            raise TalkingFaceError(f"internal: LQ frame of {lq.shape[1]}x{lq.shape[0]} for {frame.image}")
        _write_gt(frame, gt_path, gt_side)  # GT first: a pair counts as done once its LQ exists too
        save_png(lq_path, lq)

    try:
        if pending and mode == "base-model":
            _base_model_pairs(opts, cfg, root, frames, pending, write_pair)
        elif pending:
            _degraded_pairs(opts, frames, pending, lq_side, gt_side, write_pair)
    except BaseException:
        if created and not any(p.is_file() for p in out.rglob("*")):  # failed before the first pair: no folder
            shutil.rmtree(out, ignore_errors=True)
        raise

    clips = sorted({_clip_name(f) for f in frames})
    manifest = {"mode": mode, "source": str(root), "ckpt": opts.ckpt, "config": opts.config, "seed": opts.seed,
                "lq_size": lq_side, "gt_size": gt_side, "clips": len(clips), "pairs": len(frames),
                "degradation": asdict(opts.degradation) if mode == "degrade" else None,
                "layout": "<clip>/lq/<frame>.png, <clip>/gt/<frame>.png"}
    with atomic_path(out / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2))
    result = MakeSRDataResult(out, mode, len(clips), len(frames), len(pending), lq_side, gt_side,
                              time.perf_counter() - began)
    print(f"{out}: {len(frames)} LQ/GT pairs ({lq_side} -> {gt_side}) in {len(clips)} clips; "
          f"{len(pending)} written in {result.seconds:.1f} s")
    return result


def _degraded_pairs(opts: MakeSRDataOptions, frames: list[Frame], pending: list[int], lq_side: int, gt_side: int,
                    write_pair) -> None:
    """LQ = a seeded degradation of each pending GT frame (blur, downscale, noise, JPEG)."""
    clip_params: dict[str, ClipDegradation] = {}
    for i in tqdm(pending, unit="frame", desc="make-sr-data", dynamic_ncols=True):
        frame = frames[i]
        clip = _clip_name(frame)
        if clip not in clip_params:
            clip_params[clip] = ClipDegradation.draw(opts.degradation, _rng(opts.seed, clip))
        gt = read_image(frame.image, (gt_side, gt_side))
        write_pair(frame, degrade(gt, lq_side, clip_params[clip], _rng(opts.seed, clip, frame.image.name)))

def _base_model_pairs(opts: MakeSRDataOptions, cfg, root: Path, frames: list[Frame], pending: list[int],
                      write_pair) -> None:
    """Self-reconstruction of the pending frames by the base model, each paired with its GT."""
    import torch

    device = resolve_device(opts.device)
    model = fold_spectral_norm(load_generator(opts.ckpt, cfg).model).eval().to(device)
    dataset = open_dataset(cfg, root)  # reads every frame at the model's resolution: the 256 downscale
    if [f.image for f in dataset.frames] != [f.image for f in frames]:
        raise DataError("the dataset changed while it was being read", root)
    print(f"Base model {opts.ckpt} on {device}: reconstructing {len(pending)} frames at "
          f"{cfg.resolution[0]}x{cfg.resolution[1]}")

    def on_batch(indices, pixels):
        for i, px in zip(indices, pixels):
            write_pair(frames[i], px)

    reconstruct(model, torch.utils.data.Subset(dataset, pending), opts.batch_size, device, on_batch)
