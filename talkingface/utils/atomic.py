"""Atomic writes: write to a temporary sibling, then rename over the target.

A crash or kill at any point leaves either the old file or the new one, never a
half-written file. Temporary names start with '.' and end with '.partial' so that
globbing for results never picks them up.

A write killed with `kill -9` cannot clean up after itself: the next write to the same
target removes such leftovers (`remove_stale_partials`), and only those of our exact
naming that are older than this process.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

from talkingface.errors import TalkingFaceError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Files of this process are all written after this module is imported: anything of our
# naming older than this is a leftover of an earlier, killed run.
_PROCESS_START = time.time()
# tempfile.mkstemp / mkdtemp put 8 of these characters between our prefix and suffix.
_RANDOM = "[a-z0-9_]{8}"
_candidates: dict[str, dict[str, bool]] = {}  # folder -> {old '.*.partial*' name: is a folder}
_candidates_lock = threading.Lock()


def _old_partials(folder: Path) -> dict[str, bool]:
    """Hidden '.partial' entries of `folder` older than this process, listed once per folder
    per process (nothing older can appear later), so a folder of many frames costs one listing."""
    key = os.path.abspath(folder)  # a relative name names another folder after a chdir
    with _candidates_lock:
        found = _candidates.get(key)
        if found is None:
            found = {}
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        if not (entry.name.startswith(".") and ".partial" in entry.name):
                            continue
                        try:
                            if entry.stat(follow_symlinks=False).st_mtime < _PROCESS_START:
                                found[entry.name] = entry.is_dir(follow_symlinks=False)
                        except OSError:  # gone meanwhile
                            continue
            except OSError:  # no such folder (yet), or unreadable: nothing to clean
                pass
            _candidates[key] = found
        return found


def remove_stale_partials(target: str | os.PathLike, suffix: str | None = None, folder: bool = False) -> list[Path]:
    """Remove what a killed write to `target` left beside it; returns the removed paths.

    Only our own temporary names are touched: `.STEM.XXXXXXXX.partialSUFFIX` files
    (atomic_path; `suffix` as given to it, default the target's) or, with `folder`,
    `.NAME.XXXXXXXX.partial` folders (atomic_dir), XXXXXXXX being tempfile's 8 random
    characters; and only those modified before this process started, so never a write
    in progress in this process.
    """
    target = Path(target)
    if folder:
        pattern = re.compile(rf"\.{re.escape(target.name)}\.{_RANDOM}\.partial")
    else:
        suffix = target.suffix if suffix is None else suffix
        pattern = re.compile(rf"\.{re.escape(target.stem)}\.{_RANDOM}\.partial{re.escape(suffix)}")
    found = _old_partials(target.parent)
    removed = []
    with _candidates_lock:
        for name in [n for n, is_dir in found.items() if is_dir == folder and pattern.fullmatch(n)]:
            del found[name]
            path = target.parent / name
            try:
                if folder:
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except OSError:  # gone already, or not ours to remove after all: the write itself goes on
                continue
            removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `target`; rename it to `target` on success.

    `suffix` keeps the extension for writers that infer the format from it
    (video muxers, image writers). On any exception the temporary file is removed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = target.suffix if suffix is None else suffix
    remove_stale_partials(target, suffix)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".partial{suffix}", dir=target.parent)
    except OSError as e:  # a read-only or full folder: name the file asked for, not the temporary one
        raise _renamed(e, target) from None
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes owner-only files; results should be normal files
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, target)
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        if _about_the_write(e, tmp_path):
            raise _renamed(e, target) from None
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


# Errors of the write itself (as opposed to reading an input inside the `with` body).
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EIO}


def _about_the_write(error: OSError, tmp: Path) -> bool:
    """The error is the write's own (a full disk, a read-only folder, ...) and names no file, or
    only our temporary one (as the destination of a copy, too): it should name the target."""
    if error.errno not in _WRITE_ERRNOS:
        return False
    name = error.filename2 if error.filename2 is not None else error.filename  # a copy's: its destination
    if name is None:
        return True
    name = Path(os.fsdecode(name))
    return name == tmp or name.is_relative_to(tmp)


def _renamed(error: OSError, target: Path) -> OSError:
    """The same error (errno, cause) about `target`, so the message names the file the user asked for."""
    return OSError(error.errno, error.strerror or str(error), os.fspath(target))


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory next to `target`; rename it to `target` on success.

    An existing `target` is replaced only after the new one is complete.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(target, folder=True)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    except OSError as e:  # a read-only or full folder: name the folder asked for, not the temporary one
        raise _renamed(e, target) from None
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if _about_the_write(e, tmp):
            raise _renamed(e, target) from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_torch_save(obj, target: str | os.PathLike) -> None:
    """`torch.save` through a temporary file and a rename."""
    import torch

    with atomic_path(target) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as e:  # torch's writer reports a full disk as "[enforce fail at ...] unexpected pos"
            detail = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise TalkingFaceError(f"could not write the checkpoint; the disk may be full ({detail[:120]})",
                                   target) from None


def check_writable(target: str | os.PathLike) -> None:
    """Fail now, not after the work, when `target` could not be written: its nearest existing folder
    is read-only, not ours to write, or a file. Creates nothing (a temporary file, removed at once).
    A full disk shows only when writing; that is reported then."""
    target = Path(os.path.abspath(target))
    folder = next((p for p in target.parents if os.path.lexists(p)), None)
    if folder is None:
        return
    if not folder.is_dir():
        raise OSError(errno.ENOTDIR, "exists and is a file, not a folder", os.fspath(folder))
    try:
        fd, probe = tempfile.mkstemp(prefix=".talkingface-probe.", suffix=".partial", dir=folder)
    except OSError as e:
        raise _renamed(e, target) from None
    os.close(fd)
    os.unlink(probe)


def json_bytes(data: dict) -> bytes:
    """The one JSON text our metadata files hold (indent 1, a final newline): the same bytes in a
    dataset folder and in a shard."""
    return (json.dumps(data, indent=1) + "\n").encode("utf-8")


def write_json(path: str | os.PathLike, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(json_bytes(data))


def read_json(path: str | os.PathLike) -> dict | None:
    """A JSON object from `path`; None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
