"""Image files and pixel conversions: the one place each of these is written.

- `IMAGE_EXTENSIONS`, `natural_key`, `list_images`: which files are frames, in which order.
- `read_image`, `image_size`: an image file as RGB uint8 (upright per its EXIF orientation).
- `save_png`: a frame as a PNG, atomically.
- `to_tensor`: H x W x 3 uint8 -> 3 x H x W float 0..1.
- `to_uint8_truncate` / `to_uint8_round`: float 0..1 frames -> uint8, truncating as the
  MetaPortrait reference writes its frames (`infer`, `animate`), or rounding as the
  super-resolution recipes write theirs.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from talkingface.errors import DataError
from talkingface.utils.atomic import atomic_path

IMAGE_EXTENSIONS = frozenset({".bmp", ".jpg", ".jpeg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp"})

# zlib level 1 is the reference's own choice (cv2.imwrite's PNG default): the same
# pixels as PIL's default level 6 at a quarter of the time (4 ms instead of 17 ms for a
# 256x256 frame here), files ~20% larger.
PNG_COMPRESS_LEVEL = 1


# --------------------------------------------------------------------------- files
def natural_key(name: str | os.PathLike) -> list:
    """Sort key for file names with numbers in them: frame_2 before frame_10 (case-insensitive)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", Path(name).name)]


def is_image_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: Path) -> list[Path]:
    """The image files directly in `folder` (hidden files left out), in natural order."""
    return sorted((p for p in Path(folder).iterdir() if p.is_file() and is_image_path(p)
                   and not p.name.startswith(".")), key=natural_key)


# --------------------------------------------------------------------------- read / write
def read_image(path: str | os.PathLike, size: tuple[int, int] | None = None, *,
               error: str = "cannot read image") -> np.ndarray:
    """An image file as H x W x 3 uint8 RGB, upright per its EXIF orientation.

    `size` (width, height), when given, is checked, not resized to. A missing file is
    "no such image file"; an unreadable one is `error` followed by the reason;
    both are DataErrors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError("no such image file", path)
    try:
        with Image.open(path) as im:
            pixels = np.array(ImageOps.exif_transpose(im).convert("RGB"), dtype=np.uint8)
    except UnidentifiedImageError:
        raise DataError(f"{error} (corrupt or not an image)", path) from None
    except (OSError, ValueError) as e:
        raise DataError(f"{error} ({e})", path) from None
    if size is not None and (pixels.shape[1], pixels.shape[0]) != tuple(size):
        raise DataError(f"frame is {pixels.shape[1]}x{pixels.shape[0]}, but this clip's frames are "
                        f"{size[0]}x{size[1]}", path)
    return pixels


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) from the header only."""
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"cannot read image ({e})", path) from None


def save_png(path: Path, pixels: np.ndarray) -> None:
    """An H x W x 3 (or H x W) uint8 frame as a PNG, atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL)


# --------------------------------------------------------------------------- pixels
def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 -> 3 x H x W float 0..1."""
    pixels = np.array(pixels, dtype=np.uint8)  # a writable copy: arrays from PIL are read-only
    return torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0


def to_uint8_truncate(frames: torch.Tensor) -> np.ndarray:
    """... x 3 x H x W float (nominally 0..1) -> ... x H x W x 3 uint8, clipped and truncated
    (`uint8(clip(x * 255, 0, 255))`), as the MetaPortrait reference writes its frames."""
    return np.clip(frames.float().movedim(-3, -1).cpu().numpy() * 255, 0, 255).astype(np.uint8)


def to_uint8_round(frames: torch.Tensor) -> np.ndarray:
    """... x 3 x H x W float (nominally 0..1) -> ... x H x W x 3 uint8, clamped and rounded, as the
    super-resolution recipes (`enhance`, `train-sr`) write their frames."""
    return (frames.float().clamp(0, 1).movedim(-3, -1).cpu().numpy() * 255.0).round().astype(np.uint8)
