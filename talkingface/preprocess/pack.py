"""`pack-shards`: an official-layout dataset (either landmark scheme) -> WebDataset shards.

Frames go into the shards in the folder reader's order, so frame i of the shard set is
frame i of the folder (same source, same encoded sample, same meta-learning tasks). A
shard ends with an identity once it reached the target size (mid-identity at twice
that). The files' bytes are copied as they are; landmarks and identities are checked
against the dataset's scheme and identity size on the way. The shard folder appears only when
complete (format: talkingface/data/shards.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from talkingface.data.official import load_npy, read_landmarks, read_source_map, scan_frames
from talkingface.data.shards import DEFAULT_SHARD_BYTES, IdentityRecord, ShardIndex, ShardSetWriter
from talkingface.errors import DataError
from talkingface.landmarks.scheme import get_scheme
from talkingface.preprocess.merge import dataset_facts
from talkingface.utils.atomic import atomic_dir, read_json
from talkingface.utils.paths import refuse_overwrite


@dataclass
class PackResult:
    out: Path
    shards: int
    frames: int
    identities: int
    bytes: int


def identity_record(root: Path, k: int, scheme_name: str, identity_dim: int) -> IdentityRecord:
    """Identity k's source files as shard fields (checked: landmarks of the scheme, a D-d identity)."""
    scheme = get_scheme(scheme_name)
    paths = {"src.png": root / f"src_{k}.png", "ldmk.npy": root / f"src_{k}_ldmk.npy",
             "id.npy": root / f"src_{k}_id.npy"}
    for path in paths.values():
        if not path.is_file():
            raise DataError(f"missing source file for identity {k}", path)
    read_landmarks(paths["ldmk.npy"], scheme)
    load_npy(paths["id.npy"], [(1, identity_dim), (identity_dim,)], "identity embedding")
    record = {field: path.read_bytes() for field, path in paths.items()}
    if (root / f"src_{k}_theta.npy").is_file():
        record["theta.npy"] = (root / f"src_{k}_theta.npy").read_bytes()
    if (root / str(k) / "meta.json").is_file():
        record["json"] = (root / str(k) / "meta.json").read_bytes()
    return record


def pack_dataset(root: str | Path, out: str | Path, target_bytes: int = DEFAULT_SHARD_BYTES,
                 progress: Callable[[int], None] | None = None) -> PackResult:
    root, out = Path(root), Path(out)
    refuse_overwrite(out, root, nested=True)
    if not root.is_dir():
        raise DataError("dataset folder not found", root)
    if out.exists():
        raise DataError("already exists; choose a new folder for the shards", out)
    if target_bytes < 1:
        raise DataError("the shard size must be positive")
    frames = scan_frames(root, read_source_map(root))
    if not frames:
        raise DataError("dataset has no driving frames (expected <k>/imgs/<frame>.png)", root)
    scheme_name, identity_dim, size = dataset_facts(root)
    if scheme_name is None or identity_dim is None or size is None:
        raise DataError("cannot tell the dataset's landmark scheme, identity size or image size (no meta.json and "
                        "no readable src_<k> files)", root)
    scheme = get_scheme(scheme_name)
    with atomic_dir(out) as tmp:
        writer = ShardSetWriter(tmp, ShardIndex(scheme_name, size, identity_dim, target_bytes),
                                lambda k: identity_record(root, k, scheme_name, identity_dim))
        try:
            for n, frame in enumerate(frames):
                if not writer.has_identity(frame.identity):
                    meta = read_json(root / str(frame.identity) / "meta.json") or {}
                    writer.identity_row(frame.identity, **({"source_video": meta["source_video"]}
                                                           if "source_video" in meta else {}))
                read_landmarks(frame.landmarks, scheme)
                theta = frame.theta.read_bytes() if frame.theta.is_file() else None
                writer.add_frame(frame.identity, frame.image.name, frame.image.read_bytes(),
                                 frame.image.suffix.lower().lstrip("."), frame.landmarks.read_bytes(), theta)
                writer.rotate(boundary=n + 1 == len(frames) or frames[n + 1].identity != frame.identity)
                if progress is not None:
                    progress(1)
            writer.close()
        except BaseException:
            writer.abort()  # (a shard half-written on a full disk: closed now, not at garbage collection)
            raise
        index = writer.index
    return PackResult(out, len(index.shards), index.frames, len(index.identities), sum(s.bytes for s in index.shards))

