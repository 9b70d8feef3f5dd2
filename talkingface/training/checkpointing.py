"""Training checkpoints: the official file layout plus resume state under extra keys.

Base-model runs write `ckpt_<epoch>_<iteration>.pth.tar`, super-resolution runs BasicSR's
`net_g_<iteration>.pth`; both keep their resume state under "resume", and both resume
through `find_resume`.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Callable

from talkingface.checkpoints.official import read_checkpoint
from talkingface.errors import CheckpointError

NAME = re.compile(r"^ckpt_(\d+)_(\d+)\.pth\.tar$")
SR_NAME = re.compile(r"^net_g_(\d+)\.pth$")


def checkpoint_name(epoch: int, iteration: int) -> str:
    return f"ckpt_{epoch}_{iteration}.pth.tar"


def list_checkpoints(folder: Path) -> list[Path]:
    """Base-model checkpoints in `folder`, oldest to newest by iteration."""
    found = [(int(m[2]), int(m[1]), p) for p in folder.glob("ckpt_*.pth.tar") if (m := NAME.match(p.name))]
    return [p for _, _, p in sorted(found)]


def list_sr_checkpoints(folder: Path) -> list[Path]:
    """Super-resolution checkpoints in `folder`, oldest to newest by iteration."""
    found = [(int(m[1]), p) for p in folder.glob("net_g_*.pth") if (m := SR_NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_resumable(folder: Path, listing: Callable[[Path], list[Path]] = list_checkpoints
                     ) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint in `folder` (as `listing` finds them) that reads back and carries resume state."""
    for path in reversed(listing(folder)):
        try:
            ckpt = read_checkpoint(path)
        except CheckpointError as e:
            warnings.warn(f"skipping unreadable checkpoint: {e}")
            continue
        if "resume" in ckpt:
            return path, ckpt
    return None


def find_resume(resume: str | None, out_dir: Path, listing: Callable[[Path], list[Path]] = list_checkpoints,
                written_by: str = "training") -> tuple[Path, dict[str, Any]] | None:
    """None, or (path, checkpoint) for `resume` = a path or 'auto' (the newest resumable in out_dir).

    A named file without resume state is an error saying which command writes resumable ones."""
    if resume is None:
        return None
    if resume == "auto":
        return latest_resumable(out_dir, listing) if out_dir.is_dir() else None
    ckpt = read_checkpoint(resume)
    if not isinstance(ckpt.get("resume"), dict):
        raise CheckpointError(f"has no resume state (only checkpoints written by {written_by} can be resumed)",
                              resume)
    return Path(resume), ckpt


def remove_partials(folder: Path) -> None:
    """Temporary files of writes interrupted by a kill (never valid checkpoints)."""
    for p in folder.glob(".*.partial*"):
        p.unlink(missing_ok=True)
