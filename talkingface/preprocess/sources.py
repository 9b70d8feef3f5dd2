"""Inputs: video files and folders of images, expanded, ordered, sharded and streamed.

Frames are RGB uint8 arrays, decoded one at a time (memory stays flat on long videos).
"""
from __future__ import annotations

import enum
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from talkingface.data.official import IMAGE_EXTENSIONS
from talkingface.errors import DataError
from talkingface.utils.images import read_image
from talkingface.utils.decoding import DecodeStats
from talkingface.utils.video import VIDEO_EXTENSIONS, first_video_frame, iter_frames, probe_video


class InputKind(enum.Enum):
    VIDEO = "video"
    IMAGES = "images"  # a folder of frames, in file-name order


@dataclass(frozen=True)
class InputItem:
    path: Path  # absolute
    kind: InputKind

    @property
    def key(self) -> str:
        """Identifies the input across runs (for resuming)."""
        return str(self.path)

    @property
    def token(self) -> str:
        """Short stable id from the path; frame names start with it, so names from
        different inputs never collide. The leading letter keeps names clear of the
        reference reader's `[!src_]*` glob (which skips names starting with s, r, c, _)."""
        return "v" + hashlib.sha1(self.key.encode("utf-8")).hexdigest()[:8]


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _absolute(path: Path) -> Path:
    # absolute without resolving symlinks: a corpus of links keeps its own names
    return Path(os.path.abspath(path))


def expand_inputs(paths: list[str | os.PathLike]) -> list[InputItem]:
    """Expand INPUT arguments into work items, sorted by path and de-duplicated.

    A file is a video (whatever its extension; decoding decides). A folder with images
    directly inside is one image sequence; any other folder is searched recursively for
    videos and image-sequence folders (a corpus tree). A path that does not exist stays
    an item, so it is reported as a failed input while the others run.
    """
    items: dict[str, InputItem] = {}

    def add(item: InputItem) -> None:
        items.setdefault(item.key, item)

    for raw in paths:
        path = _absolute(Path(raw))
        if not path.is_dir():
            add(InputItem(path, InputKind.VIDEO))
            continue
        if _image_files(path):
            add(InputItem(path, InputKind.IMAGES))
            continue
        found = False
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            folder = Path(dirpath)
            if folder != path and any(Path(f).suffix.lower() in IMAGE_EXTENSIONS for f in filenames):
                add(InputItem(folder, InputKind.IMAGES))
                found = True
            for name in filenames:
                if Path(name).suffix.lower() in VIDEO_EXTENSIONS and not name.startswith("."):
                    add(InputItem(folder / name, InputKind.VIDEO))
                    found = True
        if not found:
            raise DataError("folder holds no images and no videos (" + ", ".join(sorted(VIDEO_EXTENSIONS)) + ")",
                            path)
    return [items[k] for k in sorted(items)]


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0-based, as Slurm array and Kubernetes indexed-job
    indices usually are): every count-th item, starting at index."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            k, n = (int(part) for part in text.split("/"))
        except ValueError:
            raise DataError(f"--shard expects K/N with integers, e.g. 0/4; got {text!r}") from None
        if n < 1 or not 0 <= k < n:
            raise DataError(f"--shard {text}: need N >= 1 and 0 <= K < N (K is 0-based)")
        return cls(k, n)

    def select(self, items: list[InputItem]) -> list[InputItem]:
        return items[self.index::self.count]


@dataclass(frozen=True)
class FrameStream:
    fps: float
    width: int  # of the frames as yielded (after rotation)
    height: int
    num_frames: int  # 0 when unknown
    frames: Iterator[np.ndarray]
    rotation: int = 0  # degrees counter-clockwise applied to upright the frames (phone videos)
    decode: DecodeStats | None = None  # a video's decoding counts, filled in as `frames` ends (not for images)


def display_rotation(path: Path) -> int:
    """The video's display rotation (degrees counter-clockwise, a multiple of 90), from
    the first frame's display matrix. Phones store portrait video sideways plus this.
    The first frame that decodes counts (damaged packets before it are skipped)."""
    try:
        frame = first_video_frame(path)
    except DataError:
        return 0  # the real decode reports the problem with the file's name
    if frame is None:
        return 0
    return int(round(float(getattr(frame, "rotation", 0) or 0) / 90.0)) * 90 % 360


def _rotated(frames: Iterator[np.ndarray], quarter_turns: int) -> Iterator[np.ndarray]:
    for frame in frames:
        yield np.ascontiguousarray(np.rot90(frame, quarter_turns))


def open_stream(item: InputItem, image_fps: float = 25.0) -> FrameStream:
    """Open an input for streaming. Raises DataError naming the file when it is
    missing, unreadable or empty."""
    if item.kind is InputKind.IMAGES:
        files = _image_files(item.path)
        if not files:
            raise DataError("folder holds no images", item.path)
        first = read_image(files[0], error="cannot read this image")
        h, w = first.shape[:2]

        def frames() -> Iterator[np.ndarray]:
            yield first
            for path in files[1:]:
                yield read_image(path, error="cannot read this image")

        return FrameStream(image_fps, w, h, len(files), frames())
    if item.path.is_dir():
        raise DataError("not a video file", item.path)
    info = probe_video(item.path)
    if info.width <= 0 or info.height <= 0:
        raise DataError("video stream has no frame size (corrupt file?)", item.path)
    rotation, stats = display_rotation(item.path), DecodeStats()
    if rotation == 0:
        return FrameStream(info.fps, info.width, info.height, info.num_frames, iter_frames(item.path, stats),
                           decode=stats)
    turns = rotation // 90
    width, height = (info.height, info.width) if turns % 2 else (info.width, info.height)
    return FrameStream(info.fps, width, height, info.num_frames, _rotated(iter_frames(item.path, stats), turns),
                       rotation, stats)
