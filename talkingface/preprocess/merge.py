"""`merge-data`: join datasets (e.g. the shards of a corpus run) into one.

Identities are renumbered 0..n-1 in input order (then by k within an input). Frame
names stay as they are unless a name is already taken, in which case the frame (its
image, landmarks and theta) gets a `_m<k>` suffix, so the merged map has unique names.
An identity already merged from an earlier dataset (same source_video and, for inputs
split at scene cuts into several identities, the same input_identity in its meta.json)
is skipped. Files are hard-linked when possible (no extra disk space), else
copied; the merged folder appears only when complete.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from talkingface.data.official import IMAGE_EXTENSIONS, read_source_map
from talkingface.data.writer import write_map
from talkingface.errors import DataError
from talkingface.preprocess.store import FORMAT, FORMAT_VERSION
from talkingface.preprocess.validate import detect_scheme
from talkingface.utils.atomic import atomic_dir
from talkingface.utils.images import image_size
from talkingface.utils.paths import refuse_overwrite

SOURCE_SUFFIXES = (".png", "_ldmk.npy", "_theta.npy", "_id.npy")


@dataclass
class MergeResult:
    out: Path
    identities: int = 0
    frames: int = 0
    renamed: int = 0
    duplicates: list[str] = field(default_factory=list)


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _transfer(src: Path, dst: Path, link: bool) -> None:
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:  # another file system, or links not allowed: copy instead
            pass
    shutil.copy2(src, dst)


def dataset_facts(root: Path) -> tuple[str | None, int | None, int | None]:
    """(scheme, identity dim, image size) of a dataset, from meta.json or its files."""
    meta = _read_json(root / "meta.json") or {}
    dim = meta.get("identity_dim")
    if not isinstance(dim, int):
        ids = sorted(root.glob("src_*_id.npy"))
        dim = int(np.load(ids[0], allow_pickle=False).shape[-1]) if ids else None
    size = meta.get("resolution")
    if not isinstance(size, int):
        srcs = sorted(root.glob("src_*.png"))
        size = image_size(srcs[0])[0] if srcs else None  # (closes the file; a damaged one is a DataError)
    return detect_scheme(root), dim, size


def merge_datasets(inputs: list[Path], out: Path, force: bool = False, link: bool = True) -> MergeResult:
    if not inputs:
        raise DataError("merge-data needs at least one dataset")
    out = Path(out)
    refuse_overwrite(out, inputs, nested=True)  # (--force replaces --out: an input inside it would go too)
    for root in inputs:
        if not root.is_dir():
            raise DataError("dataset folder not found", root)
        read_source_map(root)  # fails early, naming the file, on a dataset without a readable map
    if out.exists() and not force:
        raise DataError("already exists (use --force to replace it)", out)

    facts = {root: dataset_facts(root) for root in inputs}
    first = inputs[0]
    for root, fact in facts.items():
        for what, a, b in zip(("landmark scheme", "identity size", "image size"), facts[first], fact):
            if a != b:
                raise DataError(f"cannot merge: {what} {b} differs from {a} in {first}", root)
    scheme, identity_dim, size = facts[first]

    result = MergeResult(out=out)
    mapping: dict[str, int] = {}
    seen_sources: dict[tuple[str, int], str] = {}
    rows = []
    with atomic_dir(out) as tmp:
        for root in inputs:
            folders = sorted((int(p.name), p) for p in root.iterdir() if p.is_dir() and p.name.isdigit())
            for k, folder in folders:
                meta = _read_json(folder / "meta.json")
                source = meta.get("source_video") if meta else None
                # one input may give several identities (scene cuts): tell them apart
                key = None if source is None else (source, meta.get("input_identity", 0))
                if key is not None and key in seen_sources:
                    part = f" (identity {key[1]} of that input)" if meta.get("input_identities", 1) > 1 else ""
                    result.duplicates.append(f"{root}/{k}: {source}{part} (already merged from {seen_sources[key]})")
                    continue
                new_k = result.identities
                for suffix in SOURCE_SUFFIXES:
                    src = root / f"src_{k}{suffix}"
                    if not src.is_file():
                        raise DataError(f"missing source file of identity {k}", src)
                    _transfer(src, tmp / f"src_{new_k}{suffix}", link)
                target = tmp / str(new_k)
                for sub in ("imgs", "ldmks", "thetas"):
                    (target / sub).mkdir(parents=True)
                images = sorted(p for p in (folder / "imgs").glob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
                for image in images:
                    name = image.name
                    if name in mapping:
                        n = 0
                        while name in mapping:
                            name = f"{image.stem}_m{new_k}{'' if n == 0 else f'_{n}'}{image.suffix}"
                            n += 1
                        result.renamed += 1
                    stem = Path(name).stem
                    _transfer(image, target / "imgs" / name, link)
                    for sub, suffix in (("ldmks", "_ldmk.npy"), ("thetas", "_theta.npy")):
                        src = folder / sub / f"{image.stem}{suffix}"
                        if not src.is_file():
                            raise DataError(f"missing {sub[:-1]} file for frame {image.name}", src)
                        _transfer(src, target / sub / f"{stem}{suffix}", link)
                    mapping[name] = new_k
                preview = folder / "preview.mp4"
                if preview.is_file():
                    _transfer(preview, target / "preview.mp4", link)
                new_meta = dict(meta or {})
                new_meta.update(identity=new_k, merged_from={"dataset": str(root.resolve()), "identity": k})
                new_meta.pop("identities_of_input", None)  # numbers of the old dataset
                (target / "meta.json").write_text(json.dumps(new_meta, indent=1) + "\n")
                if key is not None:
                    seen_sources[key] = f"{root}/{k}"
                rows.append({"identity": new_k, "source_video": source, "frames": len(images),
                             "dropped": ((meta or {}).get("dropped") or {}).get("count"),
                             "fps": (meta or {}).get("fps")})
                result.identities += 1
                result.frames += len(images)
        if result.identities == 0:
            raise DataError("nothing to merge: the inputs hold no identities")
        write_map(tmp, mapping)
        (tmp / "meta.json").write_text(json.dumps({
            "format": FORMAT, "format_version": FORMAT_VERSION, "scheme": scheme, "resolution": size,
            "identity_dim": identity_dim, "identities": rows, "failed": [],
            "merged_from": [str(root.resolve()) for root in inputs],
        }, indent=1) + "\n")
    return result
