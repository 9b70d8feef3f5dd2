"""Write datasets in the official layout (see talkingface.data.official), atomically.

Used by preprocessing, the sample data and tests. The folder appears only when
complete: it is built in a temporary sibling and renamed.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from talkingface.errors import DataError
from talkingface.utils.atomic import atomic_dir

IDENTITY_THETA = np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32)


@dataclass
class DrivingFrame:
    name: str  # file name, e.g. 00000000.png
    image: np.ndarray  # H x W x 3 uint8 RGB
    landmarks: np.ndarray  # N x 2 float, 0..1
    theta: np.ndarray = field(default_factory=lambda: IDENTITY_THETA.copy())  # 2 x 3


@dataclass
class IdentityRecord:
    source_image: np.ndarray  # H x W x 3 uint8
    source_landmarks: np.ndarray  # N x 2
    identity: np.ndarray  # D
    frames: list[DrivingFrame]
    source_theta: np.ndarray = field(default_factory=lambda: IDENTITY_THETA.copy())


def _save_npy(path: Path, arr: np.ndarray) -> None:
    np.save(path, np.asarray(arr, dtype=np.float32))


def write_identity(root: Path, k: int, record: IdentityRecord) -> dict[str, int]:
    """Write identity k's files under root; returns its frame-name -> k entries."""
    Image.fromarray(record.source_image).save(root / f"src_{k}.png")
    _save_npy(root / f"src_{k}_ldmk.npy", record.source_landmarks)
    _save_npy(root / f"src_{k}_theta.npy", record.source_theta)
    _save_npy(root / f"src_{k}_id.npy", np.asarray(record.identity, dtype=np.float32).reshape(1, -1))
    for sub in ("imgs", "ldmks", "thetas"):
        (root / str(k) / sub).mkdir(parents=True, exist_ok=True)
    entries = {}
    for frame in record.frames:
        stem = Path(frame.name).stem
        Image.fromarray(frame.image).save(root / str(k) / "imgs" / frame.name)
        _save_npy(root / str(k) / "ldmks" / f"{stem}_ldmk.npy", frame.landmarks)
        _save_npy(root / str(k) / "thetas" / f"{stem}_theta.npy", frame.theta)
        entries[frame.name] = k
    return entries


def write_map(root: Path, mapping: dict[str, int]) -> None:
    with open(root / "src_map_dict.pkl", "wb") as f:
        pickle.dump({str(k): int(v) for k, v in mapping.items()}, f, protocol=4)


def write_official_dataset(root: str | Path, identities: list[IdentityRecord]) -> Path:
    """Write a complete dataset; identity k is `identities[k]`."""
    if not identities:
        raise DataError("nothing to write: no identities", root)
    root = Path(root)
    with atomic_dir(root) as tmp:
        mapping: dict[str, int] = {}
        for k, record in enumerate(identities):
            mapping.update(write_identity(tmp, k, record))
        write_map(tmp, mapping)
    return root
