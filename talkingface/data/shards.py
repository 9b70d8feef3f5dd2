"""WebDataset shards of a frame dataset: the training I/O format for large corpora.

A shard set is a folder:

    SHARDS/index.json          format, landmark scheme, resolution, identity size; every shard
                               (file, bytes, frames, identities) and every identity (frames)
    SHARDS/shard-000000.tar    tar files of about `target_bytes` each (default 1 GB)

Inside a shard, WebDataset's convention (members `<key>.<field>`, grouped by key):

- an identity record, once per shard before that identity's first frame there: key
  `identity_<k>`, fields `src.png`, `ldmk.npy`, `id.npy`, `theta.npy` (when the dataset
  has it), `json` (preprocess's per-identity meta.json, when there is one), `cls` (k);
- one sample per frame: key `f<serial, 10 digits>` (the frame's position in the set, the
  index the folder reader gives it), fields `png` (or the frame's own image type),
  `ldmk.npy`, `theta.npy` (when present), `cls` (k) and `name.txt` (its file name).

Members hold the dataset's own bytes (the PNG and .npy files as written), so a shard
decodes to the very pixels and numbers of the folder. Every shard is written to a
temporary file and renamed once complete, and the index is rewritten (atomically) after
each shard, so a killed writer leaves complete shards and an index that lists exactly
them. webdataset (the `scale` extra) writes and reads the tar streams.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from talkingface.errors import DataError, TalkingFaceError
from talkingface.utils.atomic import atomic_path, read_json, write_json

INDEX_FILE = "index.json"
FORMAT = "talkingface-shards"
FORMAT_VERSION = 1
DEFAULT_SHARD_BYTES = 1_000_000_000
SHARD_NAME = "shard-{:06d}.tar"
IDENTITY_KEY = "identity_"
FRAME_KEY = "f"
# Fixed member times make the same frames give the same bytes on every run and machine.
MEMBER_MTIME = 0
INSTALL_HINT = 'pip install -e ".[scale]"'


def import_webdataset():
    try:
        import webdataset
    except ImportError as e:
        raise TalkingFaceError(f"WebDataset shards need webdataset: {INSTALL_HINT}") from e
    return webdataset


def frame_key(serial: int) -> str:
    return f"{FRAME_KEY}{serial:010d}"


def identity_key(k: int) -> str:
    return f"{IDENTITY_KEY}{k}"


@dataclass
class ShardInfo:
    name: str  # file name in the shard folder
    bytes: int  # file size once complete (a shorter file is truncated)
    frames: int
    first_frame: int  # serial of its first frame
    identities: list[list[int]] = field(default_factory=list)  # [k, frames] runs, in shard order
    inputs: list[str] = field(default_factory=list)  # preprocess inputs complete in this shard (resume)


@dataclass
class ShardIndex:
    scheme: str  # landmark scheme of every ldmk.npy
    resolution: int  # side of the frame images
    identity_dim: int  # length of every id.npy
    target_bytes: int = DEFAULT_SHARD_BYTES
    shards: list[ShardInfo] = field(default_factory=list)
    identities: list[dict] = field(default_factory=list)  # {"identity": k, "frames": n, ...}, first seen first
    failed: list[dict] = field(default_factory=list)  # preprocess inputs that failed: {"source", "error"}

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.shards)

    def to_json(self) -> dict:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "scheme": self.scheme,
                "resolution": self.resolution, "identity_dim": self.identity_dim, "target_bytes": self.target_bytes,
                "frames": self.frames, "shards": [asdict(s) for s in self.shards], "identities": self.identities,
                "failed": self.failed}

    def write(self, folder: Path) -> None:
        write_json(folder / INDEX_FILE, self.to_json())

    @classmethod
    def read(cls, path: Path) -> ShardIndex:
        data = read_json(path)
        if data is None:
            raise DataError("missing or unreadable shard index (written by pack-shards or preprocess --format "
                            "shards)", path)
        if data.get("format") != FORMAT:
            raise DataError(f"not a {FORMAT} index", path)
        try:
            return cls(scheme=str(data["scheme"]), resolution=int(data["resolution"]),
                       identity_dim=int(data["identity_dim"]), target_bytes=int(data["target_bytes"]),
                       shards=[ShardInfo(**s) for s in data["shards"]], identities=list(data["identities"]),
                       failed=list(data.get("failed", [])))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"malformed shard index ({type(e).__name__}: {e})", path) from None


# ------------------------------------------------------------------ naming a shard set
def is_shard_set(spec: str | os.PathLike) -> bool:
    """A folder with an index.json, a brace pattern of .tar files, or one .tar file."""
    text = os.fspath(spec)
    return (Path(text) / INDEX_FILE).is_file() or text.endswith(".tar") or ("{" in text and ".tar" in text)


@dataclass(frozen=True)
class ShardSet:
    index: ShardIndex  # restricted to the shards named
    index_path: Path
    paths: list[Path]  # one per index.shards entry


def open_shard_set(spec: str | os.PathLike) -> ShardSet:
    """The shards a folder or a brace pattern (`shards/shard-{000000..000099}.tar`) names, with the
    index beside them (entries of shards the pattern leaves out are dropped)."""
    wds = import_webdataset()
    text = os.fspath(spec)
    if (Path(text) / INDEX_FILE).is_file():
        folder, names = Path(text), None
    else:
        urls = wds.shardlists.expand_urls(text)
        folder = Path(urls[0]).parent
        names = [Path(u).name for u in urls]
        if any(Path(u).parent != folder for u in urls):
            raise DataError("a shard pattern must name files of one folder (where its index.json is)", text)
    index_path = folder / INDEX_FILE
    index = ShardIndex.read(index_path)
    if names is not None:
        known = {s.name: s for s in index.shards}
        missing = [n for n in names if n not in known]
        if missing:
            raise DataError(f"{len(missing)} shards of the pattern are not in the index (first: {missing[0]})",
                            index_path)
        index.shards = [known[n] for n in names]
    if not index.shards:
        raise DataError("the shard set holds no shards", index_path)
    return ShardSet(index, index_path, [folder / s.name for s in index.shards])


def check_shard_files(shards: ShardSet, skip_bad: bool, warn: Callable[[str], None]) -> ShardSet:
    """Shards whose file is missing or not the size the index recorded (truncated, or still being
    copied) are an error naming the shard; with `skip_bad` they are left out with a warning."""
    keep = []
    for info, path in zip(shards.index.shards, shards.paths):
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = None
        if size == info.bytes:
            keep.append((info, path))
            continue
        problem = "missing" if size is None else f"truncated: {size} of {info.bytes} bytes"
        if not skip_bad:
            raise DataError(f"shard {problem} (--skip-bad leaves it out)", path)
        warn(f"skipping bad shard {path}: {problem}")
    if not keep:
        raise DataError("no readable shards left", shards.index_path)
    index = replace(shards.index, shards=[info for info, _ in keep])
    return ShardSet(index, shards.index_path, [path for _, path in keep])


def check_matches_model(shards: ShardSet, scheme: str, identity_dim: int) -> None:
    """A shard set made for another landmark scheme or identity size fails before training starts."""
    index = shards.index
    if index.scheme != scheme:
        raise DataError(f"the shards hold {index.scheme} landmarks, but the config's model.landmark_scheme is "
                        f"{scheme}", shards.index_path)
    if index.identity_dim != identity_dim:
        raise DataError(f"the shards hold {index.identity_dim}-d identities, but the config's "
                        f"model.generator.class_dim is {identity_dim}", shards.index_path)


# ------------------------------------------------------------------ writing
class _Aborted(Exception):
    """Passed to the open shard's context managers to discard it."""


IdentityRecord = dict[str, bytes]  # fields of an identity record (src.png, ldmk.npy, id.npy, [theta.npy], [json])


class ShardSetWriter:
    """Appends frames to a shard set; identities' records come from `identity_record(k)` when a
    shard first needs them. Callers call `rotate` where a shard may end: a shard ends at the
    end of an input or an identity once it reached the target size."""

    def __init__(self, folder: Path, index: ShardIndex, identity_record: Callable[[int], IdentityRecord]):
        self.wds = import_webdataset()
        self.folder = Path(folder)
        self.index = index
        self.identity_record = identity_record
        self._rows = {row["identity"]: row for row in index.identities}
        self._stack: contextlib.ExitStack | None = None
        self._file = None
        self._tar = None
        self._info: ShardInfo | None = None
        self._present: set[int] = set()
        self._last: tuple[int, IdentityRecord] | None = None

    @property
    def next_serial(self) -> int:
        return self.index.frames + (self._info.frames if self._info else 0)

    def _open(self) -> None:
        name = SHARD_NAME.format(len(self.index.shards))
        self._stack = contextlib.ExitStack()
        tmp = self._stack.enter_context(atomic_path(self.folder / name))
        self._file = self._stack.enter_context(open(tmp, "wb"))
        self._tar = self.wds.TarWriter(self._file, encoder=False, mtime=MEMBER_MTIME)
        self._info = ShardInfo(name=name, bytes=0, frames=0, first_frame=self.index.frames)
        self._present = set()

    def _record(self, k: int) -> IdentityRecord:
        if self._last is None or self._last[0] != k:
            self._last = (k, self.identity_record(k))
        return self._last[1]

    def has_identity(self, k: int) -> bool:
        return k in self._rows

    def identity_row(self, k: int, **facts) -> None:
        """Facts about identity k for the index (e.g. its source video)."""
        self._rows.setdefault(k, {"identity": k, "frames": 0})
        self._rows[k].update(facts)

    def add_frame(self, k: int, name: str, image: bytes, image_type: str, landmarks: bytes,
                  theta: bytes | None) -> None:
        if self._tar is None:
            self._open()
        if k not in self._present:
            self._tar.write({"__key__": identity_key(k), **self._record(k), "cls": str(k).encode("ascii")})
            self._present.add(k)
        sample = {"__key__": frame_key(self.next_serial), image_type: image, "ldmk.npy": landmarks,
                  "cls": str(k).encode("ascii"), "name.txt": name.encode("utf-8")}
        if theta is not None:
            sample["theta.npy"] = theta
        self._tar.write(sample)
        runs = self._info.identities
        if runs and runs[-1][0] == k:
            runs[-1][1] += 1
        else:
            runs.append([k, 1])
        self._info.frames += 1
        self.identity_row(k)
        self._rows[k]["frames"] += 1

    def finish_input(self, key: str) -> None:
        """Everything of input `key` is written (preprocess): listed with the shard, for resuming."""
        if self._info is not None:
            self._info.inputs.append(key)

    def rotate(self, boundary: bool) -> None:
        """Close the shard at a `boundary` (the end of an input or identity) once it reached the target
        size, or anywhere once it reached twice that (an identity larger than a shard)."""
        if self._info is not None and self._file.tell() >= self.index.target_bytes * (1 if boundary else 2):
            self._close_shard()

    def _close_shard(self) -> None:
        self._tar.close()  # the two end-of-archive blocks
        self._info.bytes = self._file.tell()
        self._stack.close()  # closes the file, then fsync and rename into place
        self.index.shards.append(self._info)
        self.index.identities = list(self._rows.values())
        self.index.write(self.folder)
        self._stack = self._file = self._tar = self._info = None

    def close(self) -> None:
        """Finish the current shard (however small) and write the index."""
        if self._info is not None and self._info.frames:
            self._close_shard()
        else:
            self.abort()
            self.index.identities = list(self._rows.values())
            self.index.write(self.folder)

    def abort(self) -> None:
        """Drop the shard being written (its temporary file is removed)."""
        if self._tar is not None:
            # end the tar stream now: left open, it flushes its buffer when garbage-collected, and on a
            # full disk that prints "Exception ignored in ... _Stream.__del__" and a traceback at exit
            with contextlib.suppress(OSError, ValueError):
                self._tar.close()
        if self._stack is not None:
            self._stack.__exit__(_Aborted, _Aborted(), None)  # atomic_path removes the temporary file
        self._stack = self._file = self._tar = self._info = None
