"""The output dataset of `preprocess`: resumable, and never half-written.

Layout: the official one (reference section 1) plus
    ROOT/meta.json       scheme, resolution, identity size, identities, failed inputs
    ROOT/{k}/meta.json   per identity: source video, its shots, fps, crop boxes, per-frame
                         confidence, dropped frames, frame counts (declared by the video's
                         header, decoded, and what decoding lost: `decoding`)
                         (written last: it marks k as done)

Each input is processed into ROOT/.staging/<token>.partial and then moved in with
renames; an input with scene cuts may give several identities k, k+1, ... For each,
the {k} folder moves first carrying an `.incomplete` marker, then the source files,
then meta.json is written and the marker removed. Each meta.json names its input and
how many identities the input gave (`input_identity` of `input_identities`), so the
next run can tell whether an input is all there: a marked folder, or an input with
fewer complete identities than it gave (killed between two of them), is deleted and
the input redone. An input is thus either wholly in ROOT or not at all. The frame ->
identity map and ROOT/meta.json are rebuilt at the end of each run from the
per-identity files (until then the reader still finds new frames through their folder
index). A lock file keeps two runs from writing the same ROOT at once.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from talkingface.data.official import IMAGE_EXTENSIONS, MAP_FILE
from talkingface.data.writer import write_map
from talkingface.errors import DataError
from talkingface.preprocess.pipeline import FRAMES_DIR, SCHEME, SOURCE_FILES, VideoResult
from talkingface.preprocess.sources import InputItem
from talkingface.utils.atomic import read_json, write_json

META_FILE = "meta.json"
FORMAT = "talkingface-preprocess"
FORMAT_VERSION = 1
STAGING_DIR = ".staging"
LOCK_FILE = ".lock"
INCOMPLETE_MARKER = ".incomplete"


def lock_folder(root: Path) -> int | None:
    """Take ROOT/.lock for this run (an open descriptor; closing it releases the lock), or raise
    when another run holds it. None where file locks do not exist (not POSIX): unlocked."""
    try:
        import fcntl
    except ImportError:
        return None
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise DataError("another preprocess run is writing to this folder (give each shard its own --out, "
                        "then merge-data)", root) from None
    return fd


def fresh_staging_dir(root: Path, item: InputItem) -> Path:
    """ROOT/.staging/<token>.partial for one input, emptied (its parent created)."""
    path = root / STAGING_DIR / f"{item.token}.partial"
    shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def identity_folders(root: Path) -> list[tuple[int, Path]]:
    """(k, ROOT/{k}) for every identity folder, by k."""
    found = [(int(p.name), p) for p in root.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(found)


def build_frame_map(root: Path) -> dict[str, int]:
    """Frame file name -> identity, from the files on disk."""
    mapping: dict[str, int] = {}
    for k, folder in identity_folders(root):
        imgs = folder / "imgs"
        if imgs.is_dir():
            for image in sorted(imgs.iterdir()):
                if image.suffix.lower() in IMAGE_EXTENSIONS:
                    mapping.setdefault(image.name, k)
    return mapping


def write_frame_map(root: Path, mapping: dict[str, int]) -> None:
    """Atomically replace ROOT/src_map_dict.pkl."""
    tmp = Path(tempfile.mkdtemp(prefix=".map.", suffix=".partial", dir=root))
    try:
        write_map(tmp, mapping)
        os.replace(tmp / MAP_FILE, root / MAP_FILE)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class LockedStore:
    """What a preprocess output (a dataset folder, a shard set) shares: ROOT locked for one run,
    stale staging cleared, `_open` (the format's own setup) run under the lock, `finalize` on
    exit. Use as a context manager."""

    root: Path
    resolution: int
    identity_dim: int
    done: dict[str, list[int]] = field(default_factory=dict)  # input key -> its identities k
    failed: dict[str, str] = field(default_factory=dict)  # input key -> error
    committed: int = 0
    _created: bool = False
    _lock_fd: int | None = None
    _next_k: int = 0

    def __enter__(self):
        self.root = Path(self.root)
        if self.root.exists() and not self.root.is_dir():
            raise DataError("--out must be a folder", self.root)
        self._created = not self.root.exists()
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_fd = lock_folder(self.root)
        try:
            self._open()
        except BaseException:
            self._unlock()
            if self._created:  # e.g. a full disk: leave no folder holding only our lock behind
                shutil.rmtree(self.root, ignore_errors=True)
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.finalize()
        finally:
            self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def _open(self) -> None:
        raise NotImplementedError

    def _mark_done(self, result: VideoResult, ks: list[int]) -> list[int]:
        """Bookkeeping once an input's identities `ks` are committed: its staging goes, it counts as done."""
        shutil.rmtree(result.staged, ignore_errors=True)
        self.done[result.item.key] = ks
        self.failed.pop(result.item.key, None)
        self.committed += 1
        return ks

    def record_failure(self, item: InputItem, error: str) -> None:
        self.failed[item.key] = error

    def finalize(self) -> None:
        raise NotImplementedError


@dataclass
class DatasetStore(LockedStore):
    """Owns ROOT (the official folder layout) for one preprocess run."""

    def _open(self) -> None:
        self._check_ownership()
        shutil.rmtree(self.root / STAGING_DIR, ignore_errors=True)  # left by a killed run
        self._scan()
        self._write_meta()  # marks ROOT as ours from the start

    # ------------------------------------------------------------------ setup

    def _check_ownership(self) -> None:
        meta = read_json(self.root / META_FILE)
        visible = [p.name for p in self.root.iterdir() if not p.name.startswith(".")]
        if meta is None or meta.get("format") != FORMAT:
            if visible:
                raise DataError("folder is not empty and is not a preprocess output; choose a new --out "
                                "(merge-data joins datasets)", self.root)
            return
        if meta.get("scheme") != SCHEME:
            raise DataError(f"this dataset uses the {meta.get('scheme')} scheme, not {SCHEME}", self.root)
        if meta.get("resolution") != self.resolution:
            raise DataError(f"this dataset holds {meta.get('resolution')}px crops; this run makes {self.resolution}px "
                            "(use another --out)", self.root)
        self.failed = {f["source"]: f["error"] for f in meta.get("failed", []) if isinstance(f, dict)
                       and "source" in f and "error" in f}

    def _delete_identity(self, k: int) -> None:
        shutil.rmtree(self.root / str(k))
        for name in SOURCE_FILES:
            (self.root / _source_name(name, k)).unlink(missing_ok=True)

    def _scan(self) -> None:
        parts: dict[str, list[tuple[int, int, int]]] = {}  # input -> (k, input_identity, input_identities)
        for k, folder in identity_folders(self.root):
            if (folder / INCOMPLETE_MARKER).exists():  # interrupted commit
                self._delete_identity(k)
                continue
            meta = read_json(folder / META_FILE)
            if meta is not None and "source_video" in meta:
                # datasets written before scene splitting have one identity per input
                parts.setdefault(meta["source_video"], []).append(
                    (k, meta.get("input_identity", 0), meta.get("input_identities", 1)))
        for source, rows in parts.items():
            count = rows[0][2]
            if sorted(j for _, j, _ in rows) == list(range(count)) and all(n == count for _, _, n in rows):
                self.done[source] = [k for k, _, _ in rows]
            else:  # a run was killed between two identities of this input: redo the input
                for k, _, _ in rows:
                    self._delete_identity(k)
        self._next_k = max((k + 1 for k, _ in identity_folders(self.root)), default=0)

    # ------------------------------------------------------------------ per input
    def is_done(self, item: InputItem) -> bool:
        return item.key in self.done

    def staging_dir(self, item: InputItem) -> Path:
        return fresh_staging_dir(self.root, item)

    def commit(self, result: VideoResult) -> list[int]:
        """Move a finished input into the dataset as the next identities; returns their k."""
        if not result.ok or result.staged is None or not result.identities:
            raise ValueError("commit needs a successful result")
        ks = list(range(self._next_k, self._next_k + len(result.identities)))
        for k, staged in zip(ks, result.identities):
            frames = staged.folder / FRAMES_DIR
            (frames / INCOMPLETE_MARKER).touch()
            target = self.root / str(k)
            os.replace(frames, target)
            for name in SOURCE_FILES:
                os.replace(staged.folder / name, self.root / _source_name(name, k))
            write_json(target / META_FILE, {"identity": k, **staged.meta, "identities_of_input": ks})
            (target / INCOMPLETE_MARKER).unlink()
            self._next_k = k + 1
        return self._mark_done(result, ks)

    # ------------------------------------------------------------------ end of run
    def _identities(self) -> list[dict]:
        rows = []
        for k, folder in identity_folders(self.root):
            meta = read_json(folder / META_FILE) or {}
            rows.append({"identity": k, "source_video": meta.get("source_video"),
                         "frames": meta.get("frames_kept"), "dropped": (meta.get("dropped") or {}).get("count"),
                         "fps": meta.get("fps")})
        return rows

    def _write_meta(self) -> None:
        write_json(self.root / META_FILE, {
            "format": FORMAT, "format_version": FORMAT_VERSION, "scheme": SCHEME, "resolution": self.resolution,
            "identity_dim": self.identity_dim, "identities": self._identities(),
            "failed": [{"source": key, "error": err} for key, err in sorted(self.failed.items())],
        })

    def finalize(self) -> None:
        shutil.rmtree(self.root / STAGING_DIR, ignore_errors=True)
        if self._created and not identity_folders(self.root):
            # nothing was produced: leave no empty dataset behind
            shutil.rmtree(self.root, ignore_errors=True)
            return
        write_frame_map(self.root, build_frame_map(self.root))
        self._write_meta()


def _source_name(staged_name: str, k: int) -> str:
    """src.png -> src_{k}.png, src_ldmk.npy -> src_{k}_ldmk.npy, ..."""
    return f"src_{k}{staged_name[len('src'):]}"
