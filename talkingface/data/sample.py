"""The official-layout sample that ships with the package (see scripts/make_sample_data.py)."""
from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from talkingface.errors import DataError
from talkingface.utils.atomic import atomic_dir

DEFAULT_DEST = "dataset/meta_portrait_base_data"


def install_sample_data(dest: str | Path = DEFAULT_DEST, force: bool = False) -> tuple[Path, bool]:
    """Copy the bundled sample to `dest` (the eval config's dataset root by default).

    An existing non-empty `dest` is left alone unless `force`. Returns (dest, written).
    """
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise DataError("exists and is not a folder", dest)
    if dest.exists() and any(dest.iterdir()) and not force:
        return dest, False
    source = resources.files("talkingface") / "assets" / "sample_data"
    with resources.as_file(source) as src, atomic_dir(dest) as tmp:
        if not Path(src).is_dir():
            raise DataError("the bundled sample is missing from this installation", src)
        # file by file, not copytree: its one error for all files keeps no errno (a full disk would
        # read as an internal error); the first failure stops the copy with its own
        for path in sorted(Path(src).rglob("*")):
            if path.is_dir():
                (tmp / path.relative_to(src)).mkdir(exist_ok=True)
            else:
                shutil.copy2(path, tmp / path.relative_to(src))
    return dest, True
