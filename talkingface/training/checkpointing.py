"""Training checkpoints: the official file layout plus resume state under extra keys."""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

from talkingface.checkpoints.official import read_checkpoint
from talkingface.errors import CheckpointError

NAME = re.compile(r"^ckpt_(\d+)_(\d+)\.pth\.tar$")


def checkpoint_name(epoch: int, iteration: int) -> str:
    return f"ckpt_{epoch}_{iteration}.pth.tar"


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoints in `folder`, oldest to newest by iteration."""
    found = [(int(m[2]), int(m[1]), p) for p in folder.glob("ckpt_*.pth.tar") if (m := NAME.match(p.name))]
    return [p for _, _, p in sorted(found)]


def latest_resumable(folder: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint in `folder` that reads back and carries resume state."""
    for path in reversed(list_checkpoints(folder)):
        try:
            ckpt = read_checkpoint(path)
        except CheckpointError as e:
            warnings.warn(f"skipping unreadable checkpoint: {e}")
            continue
        if "resume" in ckpt:
            return path, ckpt
    return None


def remove_partials(folder: Path) -> None:
    """Temporary files of writes interrupted by a kill (never valid checkpoints)."""
    for p in folder.glob(".*.partial*"):
        p.unlink(missing_ok=True)
