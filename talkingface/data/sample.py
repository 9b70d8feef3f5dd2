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
        shutil.copytree(src, tmp, dirs_exist_ok=True)
    return dest, True
