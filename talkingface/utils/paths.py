"""The one check every writing verb makes: its output must not be one of its inputs."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Union

from talkingface.errors import DataError

PathLike = Union[str, os.PathLike]


def _resolved(path: PathLike) -> Path:
    """Absolute, with `~` expanded and every symbolic link that exists resolved."""
    return Path(path).expanduser().resolve()


def _flatten(items: Iterable) -> list[PathLike]:
    out: list[PathLike] = []
    for item in items:
        if item is None or item == "":
            continue
        if isinstance(item, (list, tuple, set)):
            out.extend(_flatten(item))
        else:
            out.append(item)
    return out


def _same(a: Path, b: Path) -> bool:
    if a == b:
        return True
    try:  # hard links and bind mounts: the same file under two names
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def refuse_overwrite(out: PathLike | None, *inputs: PathLike | Iterable[PathLike] | None,
                     nested: bool = False) -> None:
    """Raise `DataError` ("output would overwrite an input") if writing `out` would replace an input.

    Paths are compared after resolving links (and hard links are recognised), so
    `a.mp4`, `./a.mp4` and a link to it are all the same file. `inputs` may hold None
    (an option not given) and lists. With `nested`, for verbs whose output is a folder
    they replace or that read their input folders recursively, an output folder that
    holds an input, or lies inside an input folder, is refused too.
    """
    if out is None or out == "":
        return
    target = _resolved(out)
    for item in _flatten(inputs):
        source = _resolved(item)
        shown = "" if os.fspath(item) == os.fspath(out) else f" ({item})"
        if _same(target, source):
            raise DataError(f"output would overwrite an input{shown}; choose another output path", out)
        if not nested:
            continue
        if source.is_relative_to(target):
            raise DataError(f"output would overwrite an input: the output folder holds the input {item}; "
                            "choose a folder outside the inputs", out)
        if target.is_relative_to(source) and source.is_dir():
            raise DataError(f"output would overwrite an input: it lies inside the input folder {item}; "
                            "choose a folder outside the inputs", out)
