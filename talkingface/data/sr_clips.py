"""Paired low-quality / ground-truth video clips for training temporal super-resolution.

Layout (what `talkingface make-sr-data` writes; any file names, paired by name):

    root/<clip>/lq/00000000.png    LQ frame, S x S (256 for the official model)
    root/<clip>/gt/00000000.png    its ground truth, 2S x 2S (512)

The reference's layout, separate LQ and GT roots with no sub-folder
(`lq_root/<clip>/<frame>.png`), is the same thing with other roots and no prefixes.

A training item is `num_frame` consecutive frames (one stride from `interval_list`)
of one clip, starting at any of its frames (a start too close to the end slides
back so the clip fits), optionally reversed and horizontally flipped; the flip and
the order are drawn once per item, so LQ and GT frames stay aligned across the clip.
Every problem (a missing partner, a frame of the wrong size, an unreadable file) is
a `DataError` naming the file.
"""
from __future__ import annotations

import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from talkingface.errors import DataError
from talkingface.utils.images import image_size, list_images, natural_key, read_image, to_tensor


@dataclass(frozen=True)
class SRClip:
    """One clip's frames in order; `gt` is None when there is no ground truth."""

    name: str
    lq: tuple[Path, ...]
    gt: tuple[Path, ...] | None
    lq_size: tuple[int, int]  # (width, height)
    gt_size: tuple[int, int] | None

    def __len__(self) -> int:
        return len(self.lq)

    def frame_names(self) -> list[str]:
        return [p.stem for p in (self.gt or self.lq)]

    def read_lq(self, i: int) -> np.ndarray:
        return read_image(self.lq[i], self.lq_size)

    def read_gt(self, i: int) -> np.ndarray:
        if self.gt is None:
            raise DataError(f"clip {self.name} has no ground truth")
        return read_image(self.gt[i], self.gt_size)


def _frame_dir(root: Path, clip: str, prefix: str | None) -> Path:
    return root / clip / prefix if prefix else root / clip


def scan_sr_clips(lq_root: str | Path, gt_root: str | Path | None = None, lq_prefix: str | None = "lq",
                  gt_prefix: str | None = "gt", scale: int = 2, gt_side: int | None = None) -> list[SRClip]:
    """Every clip under the roots, checked: partners exist, sizes are square and GT = scale x LQ.

    Clips are the sub-folders of the GT root (the LQ root without ground truth), in
    natural order. Sizes are checked on each clip's first frame here and on every
    frame when it is read. `gt_side` additionally requires that GT side.
    """
    lq_root = Path(lq_root)
    gt_root = Path(gt_root) if gt_root is not None else None
    base = gt_root if gt_root is not None else lq_root
    if not base.is_dir():
        raise DataError("super-resolution dataset folder not found", base)
    names = sorted((p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")), key=natural_key)
    if not names:
        raise DataError("no clip folders (expected <clip>/" + (f"{gt_prefix}/" if gt_prefix else "") +
                        "<frame>.png)", base)
    clips = []
    for name in names:
        lq_dir = _frame_dir(lq_root, name, lq_prefix)
        if not lq_dir.is_dir():
            raise DataError("missing the clip's LQ frame folder", lq_dir)
        lq_files = list_images(lq_dir)
        gt_files = None
        if gt_root is not None:
            gt_dir = _frame_dir(gt_root, name, gt_prefix)
            if not gt_dir.is_dir():
                raise DataError("missing the clip's ground-truth frame folder", gt_dir)
            gt_files = list_images(gt_dir)
            if not gt_files:
                raise DataError("no ground-truth frames (.png/.jpg) in this folder", gt_dir)
            lq_by_stem = {p.stem: p for p in lq_files}
            if len(lq_by_stem) != len(lq_files) or len({p.stem for p in gt_files}) != len(gt_files):
                raise DataError("two frames share a name with different extensions", lq_dir)
            missing = [p for p in gt_files if p.stem not in lq_by_stem]
            if missing:
                raise DataError(f"ground-truth frame {missing[0].name} has no LQ partner "
                                f"({len(missing)} missing in all)", lq_dir / f"{missing[0].stem}.png")
            extra = sorted(set(lq_by_stem) - {p.stem for p in gt_files}, key=natural_key)
            if extra:
                raise DataError(f"LQ frame has no ground truth ({len(extra)} such frames in this clip)",
                                lq_by_stem[extra[0]])
            lq_files = [lq_by_stem[p.stem] for p in gt_files]
        if not lq_files:
            raise DataError("no LQ frames (.png/.jpg) in this folder", lq_dir)
        lq_size = image_size(lq_files[0])
        gt_size = image_size(gt_files[0]) if gt_files else None
        if lq_size[0] != lq_size[1]:
            raise DataError(f"LQ frames must be square face crops, this one is {lq_size[0]}x{lq_size[1]}",
                            lq_files[0])
        if gt_files:
            want = (lq_size[0] * scale, lq_size[1] * scale)
            if gt_size != want:
                raise DataError(f"ground truth is {gt_size[0]}x{gt_size[1]}, expected {want[0]}x{want[1]} "
                                f"({scale} x its {lq_size[0]}x{lq_size[1]} LQ frame)", gt_files[0])
            if gt_side is not None and gt_size[0] != gt_side:
                raise DataError(f"ground truth is {gt_size[0]}x{gt_size[1]}; the network makes "
                                f"{gt_side}x{gt_side} frames from {gt_side // scale}x{gt_side // scale}", gt_files[0])
        elif gt_side is not None and lq_size[0] != gt_side // scale:
            raise DataError(f"LQ frame is {lq_size[0]}x{lq_size[1]}; the network expects "
                            f"{gt_side // scale}x{gt_side // scale}", lq_files[0])
        clips.append(SRClip(name, tuple(lq_files), tuple(gt_files) if gt_files else None, lq_size, gt_size))
    return clips


class SRClipDataset(torch.utils.data.Dataset):
    """Training clips: {"lq": T x 3 x S x S, "gt": T x 3 x 2S x 2S (0..1), "clip": name, "frames": T indices}.

    Length: every frame of every usable clip, `repeats` times (the reference's
    dataset_enlarge_ratio). Clips shorter than `num_frame` are left out with a warning.
    Randomness comes from Python's `random` (seeded by the trainer, per worker by the
    DataLoader), so resuming restores it.
    """

    def __init__(self, clips: Sequence[SRClip], num_frame: int = 6, use_hflip: bool = True,
                 interval_list: Sequence[int] = (1,), random_reverse: bool = False, repeats: int = 1):
        if num_frame < 1 or repeats < 1 or not interval_list or min(interval_list) < 1:
            raise ValueError("num_frame and repeats must be >= 1 and interval_list must list positive strides")
        self.num_frame = num_frame
        self.use_hflip = use_hflip
        self.intervals = tuple(sorted(set(interval_list)))
        self.random_reverse = random_reverse
        self.repeats = repeats
        self.clips: list[SRClip] = []
        for clip in clips:
            if clip.gt is None:
                raise DataError(f"clip {clip.name} has no ground truth; training needs it")
            if len(clip) < num_frame:
                folder = clip.gt[0].parent
                warnings.warn(f"{folder}: {len(clip)} frames, fewer than the {num_frame} of a training clip; "
                              "left out", stacklevel=2)
                continue
            self.clips.append(clip)
        if not self.clips:
            raise DataError(f"no clip has the {num_frame} frames a training item needs")
        self.keys = [(c, f) for c in range(len(self.clips)) for f in range(len(self.clips[c]))]

    def __len__(self) -> int:
        return len(self.keys) * self.repeats

    def frame_indices(self, index: int) -> tuple[int, list[int]]:
        """(clip index, frame indices) of an item; draws the stride and the direction."""
        c, start = self.keys[index % len(self.keys)]
        length = len(self.clips[c])
        fitting = [s for s in self.intervals if (self.num_frame - 1) * s + 1 <= length] or [1]
        stride = random.choice(fitting)
        span = (self.num_frame - 1) * stride + 1
        start = min(start, length - span)  # near the end: slide back so the clip fits
        frames = list(range(start, start + span, stride))
        if self.random_reverse and random.random() < 0.5:
            frames.reverse()
        return c, frames

    def __getitem__(self, index: int) -> dict:
        c, frames = self.frame_indices(index)
        flip = self.use_hflip and random.random() < 0.5
        clip = self.clips[c]
        lq = torch.stack([to_tensor(clip.read_lq(i)) for i in frames])  # T x 3 x S x S
        gt = torch.stack([to_tensor(clip.read_gt(i)) for i in frames])  # T x 3 x 2S x 2S
        if flip:
            lq, gt = lq.flip(-1), gt.flip(-1)
        return {"lq": lq, "gt": gt, "clip": clip.name, "frames": torch.tensor(frames)}


def iter_clip_frames(clip: SRClip, limit: int | None = None, gt: bool = False) -> Iterator[np.ndarray]:
    """A clip's LQ (or GT) frames in order, H x W x 3 uint8, read one at a time."""
    count = len(clip) if limit is None else min(limit, len(clip))
    for i in range(count):
        yield clip.read_gt(i) if gt else clip.read_lq(i)
