"""`validate-data`: check an official-layout dataset of either scheme before training on it.

Checks shapes (landmarks N x 2 for the scheme, theta 2 x 3, identity 1 x D with one D
for all identities), ranges (finite values, landmarks near 0..1, non-degenerate theta,
non-zero identity), counts (every frame has its image, landmarks and theta; no
orphans; per-identity meta.json frame counts) and the frame -> identity map (every
frame listed under its identity, no entry without a frame or a source). Problems make
the command fail; warnings (e.g. names repeated across identities, which the
reference reader cannot handle) do not.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from talkingface.data.official import IMAGE_EXTENSIONS, MAP_FILE, read_source_map
from talkingface.errors import DataError
from talkingface.landmarks.scheme import BUILTIN_SCHEMES, get_scheme

# Landmarks may leave the crop a little (a face at the frame edge); far outside is broken data.
LANDMARK_LIMITS = (-0.5, 1.5)
THETA_LIMIT = 10.0


@dataclass
class ValidationReport:
    root: Path
    scheme: str | None = None
    identity_dim: int | None = None
    resolution: tuple[int, int] | None = None
    frames_per_identity: dict[int, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return sum(self.frames_per_identity.values())

    def problem(self, path: Path | str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def warn(self, path: Path | str, message: str) -> None:
        self.warnings.append(f"{path}: {message}")

    def summary(self, max_shown: int = 20) -> str:
        counts = list(self.frames_per_identity.values())
        res = f"{self.resolution[1]}x{self.resolution[0]}" if self.resolution else "?"
        lines = [
            f"dataset {self.root}",
            f"  scheme {self.scheme or '?'}, identity dim {self.identity_dim or '?'}, images {res}",
            f"  {len(counts)} identities, {self.frames} frames"
            + (f" ({min(counts)}-{max(counts)} per identity)" if counts else ""),
        ]
        for title, items in (("warnings", self.warnings), ("problems", self.problems)):
            if items:
                lines.append(f"  {len(items)} {title}:")
                lines += [f"    {line}" for line in items[:max_shown]]
                if len(items) > max_shown:
                    lines.append(f"    ... and {len(items) - max_shown} more")
        lines.append("  OK" if not self.problems else f"  FAILED: {len(self.problems)} problems")
        return "\n".join(lines)


def scheme_for_points(num_points: int) -> str | None:
    for name in BUILTIN_SCHEMES:
        if get_scheme(name).num_points == num_points:
            return name
    return None


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def detect_scheme(root: Path) -> str | None:
    """The dataset's scheme: meta.json's, else from the first landmark file's size."""
    meta = _read_json(root / "meta.json")
    if meta and meta.get("scheme") in BUILTIN_SCHEMES:
        return meta["scheme"]
    candidates = sorted(root.glob("src_*_ldmk.npy")) or sorted(root.glob("*/ldmks/*_ldmk.npy"))
    for path in candidates[:1]:
        try:
            arr = np.load(path, allow_pickle=False, mmap_mode="r")
        except (ValueError, OSError):
            return None
        return scheme_for_points(int(arr.shape[-2])) if arr.ndim >= 2 else None
    return None


def _load(path: Path, report: ValidationReport, what: str) -> np.ndarray | None:
    if not path.is_file():
        report.problem(path, f"missing {what}")
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        report.problem(path, f"cannot read {what} ({e})")
        return None
    if not np.issubdtype(arr.dtype, np.number):
        report.problem(path, f"{what} is not numeric ({arr.dtype})")
        return None
    if not np.all(np.isfinite(arr)):
        report.problem(path, f"{what} contains NaN or inf")
        return None
    return arr


def _check_landmarks(path: Path, report: ValidationReport, num_points: int | None) -> bool:
    arr = _load(path, report, "landmarks")
    if arr is None:
        return False
    if num_points is None:
        num_points = arr.shape[-2] if arr.ndim >= 2 else -1
    if arr.shape not in ((num_points, 2), (1, num_points, 2)):
        report.problem(path, f"landmarks have shape {arr.shape}, expected ({num_points}, 2)")
        return False
    lo, hi = LANDMARK_LIMITS
    if arr.min() < lo or arr.max() > hi:
        report.problem(path, f"landmarks outside {lo}..{hi} of the crop (min {arr.min():.2f}, max {arr.max():.2f}); "
                             "expected x, y in 0..1")
        return False
    return True


def _check_theta(path: Path, report: ValidationReport) -> bool:
    arr = _load(path, report, "theta")
    if arr is None:
        return False
    if arr.shape != (2, 3):
        report.problem(path, f"theta has shape {arr.shape}, expected (2, 3)")
        return False
    if np.abs(arr).max() > THETA_LIMIT or abs(np.linalg.det(arr[:, :2].astype(np.float64))) < 1e-6:
        report.problem(path, "theta is degenerate or out of range (not an affine_grid alignment)")
        return False
    return True


def _image_size(path: Path, report: ValidationReport, decode: bool) -> tuple[int, int] | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if decode:
                img.load()
            if img.mode not in ("RGB", "RGBA", "L", "P"):
                report.problem(path, f"unexpected image mode {img.mode}")
            return img.height, img.width
    except (UnidentifiedImageError, OSError, ValueError) as e:
        report.problem(path, f"cannot read image ({e})")
        return None


def validate_dataset(root: Path, scheme_name: str | None = None, identity_dim: int | None = None,
                     check_images: bool = True) -> ValidationReport:
    root = Path(root)
    if not root.is_dir():
        raise DataError("dataset folder not found", root)
    report = ValidationReport(root=root)

    try:
        mapping = read_source_map(root)
    except DataError as e:
        report.problem(root / MAP_FILE, e.message)
        mapping = {}

    report.scheme = scheme_name or detect_scheme(root)
    if report.scheme is None:
        report.problem(root, "cannot tell the landmark scheme (no meta.json and no readable landmark file); "
                             f"known: {', '.join(BUILTIN_SCHEMES)}")
        num_points = None
    else:
        num_points = get_scheme(report.scheme).num_points
    report.identity_dim = identity_dim

    folders = {int(p.name): p for p in root.iterdir() if p.is_dir() and p.name.isdigit()}
    for p in root.iterdir():
        if p.is_dir() and not p.name.isdigit() and not p.name.startswith(".") and (p / "imgs").is_dir():
            report.problem(p, "frame folder whose name is not an identity index")
    source_ids = {int(p.name[4:-4]) for p in root.glob("src_*.png") if p.name[4:-4].isdigit()}
    if not folders:
        report.problem(root, "no identity folders ({k}/imgs/...)")

    mapped_ids = set(mapping.values())
    sizes: Counter = Counter()
    name_owners: dict[str, list[int]] = {}
    mismatched: list[tuple[Path, int]] = []  # frames the map assigns to another identity
    total = sum(len(list((f / "imgs").glob("*"))) for f in folders.values() if (f / "imgs").is_dir())
    bar = tqdm(total=total, unit="frame", desc="validate", dynamic_ncols=True, disable=total < 500)

    for k in sorted(folders.keys() | source_ids | mapped_ids):
        folder = folders.get(k)
        # --- source files
        if k not in source_ids:
            report.problem(root / f"src_{k}.png", f"missing source image of identity {k}")
        else:
            size = _image_size(root / f"src_{k}.png", report, check_images)
            if size:
                sizes[size] += 1
        _check_landmarks(root / f"src_{k}_ldmk.npy", report, num_points)
        theta_path = root / f"src_{k}_theta.npy"
        if theta_path.is_file():
            _check_theta(theta_path, report)
        else:
            report.warn(theta_path, "missing source theta (needed only by the identity loss)")
        ident = _load(root / f"src_{k}_id.npy", report, "identity embedding")
        if ident is not None:
            if ident.ndim not in (1, 2) or (ident.ndim == 2 and ident.shape[0] != 1):
                report.problem(root / f"src_{k}_id.npy", f"identity has shape {ident.shape}, expected (1, D)")
            else:
                dim = int(ident.shape[-1])
                if report.identity_dim is None:
                    report.identity_dim = dim
                elif dim != report.identity_dim:
                    report.problem(root / f"src_{k}_id.npy", f"identity is {dim}-d; the dataset's are "
                                                             f"{report.identity_dim}-d")
                if not np.linalg.norm(ident) > 0:
                    report.problem(root / f"src_{k}_id.npy", "identity embedding is all zeros")
        if folder is None:
            if k in mapped_ids:
                report.problem(root / str(k), f"{MAP_FILE} lists frames of identity {k}, but its folder is missing")
            else:
                report.warn(root / f"src_{k}.png", f"source of identity {k} has no driving frames")
            continue

        # --- driving frames
        imgs, ldmks, thetas = folder / "imgs", folder / "ldmks", folder / "thetas"
        images = sorted(p for p in imgs.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS) if imgs.is_dir() else []
        if not images:
            report.problem(folder, "identity folder has no frames in imgs/")
        stems = {p.stem for p in images}
        for sub, suffix in ((ldmks, "_ldmk.npy"), (thetas, "_theta.npy")):
            if sub.is_dir():
                for extra in sorted(p for p in sub.glob(f"*{suffix}") if p.name[:-len(suffix)] not in stems):
                    report.problem(extra, "no matching image in imgs/ (counts differ)")
        for image in images:
            size = _image_size(image, report, check_images)
            if size:
                sizes[size] += 1
            _check_landmarks(ldmks / f"{image.stem}_ldmk.npy", report, num_points)
            _check_theta(thetas / f"{image.stem}_theta.npy", report)
            name_owners.setdefault(image.name, []).append(k)
            if mapping and image.name not in mapping:
                report.problem(image, f"frame is not in {MAP_FILE} (a stale map: re-run preprocess to rebuild it)")
            elif image.name in mapping and mapping[image.name] != k:
                mismatched.append((image, k))
            bar.update(1)
        report.frames_per_identity[k] = len(images)
        meta = _read_json(folder / "meta.json")
        if meta is not None and "frames_kept" in meta and meta["frames_kept"] != len(images):
            report.problem(folder / "meta.json", f"says {meta['frames_kept']} frames, the folder has {len(images)}")
    bar.close()

    # A repeated name cannot be told apart by the map (the reader uses the folder then), so only
    # names that occur once must agree with it.
    for image, k in mismatched:
        if len(name_owners[image.name]) == 1:
            report.problem(image, f"{MAP_FILE} assigns this frame to identity {mapping[image.name]}, "
                                  f"but it is in folder {k}")
    for name, owners in name_owners.items():
        if len(owners) > 1:
            report.warn(name, f"frame name used by identities {owners} (fine here; the reference reader needs "
                              "unique names; merge-data renames)")
    frame_names = set(name_owners)
    stale = [name for name in mapping if name not in frame_names]
    for name in stale[:50]:
        report.problem(root / MAP_FILE, f"lists {name}, which no identity folder holds")
    if len(stale) > 50:
        report.problem(root / MAP_FILE, f"... and {len(stale) - 50} more entries without a frame")
    if len(sizes) > 1:
        report.problem(root, "images differ in size: " + ", ".join(f"{w}x{h} ({n})" for (h, w), n in sizes.items()))
    if sizes:
        report.resolution = sizes.most_common(1)[0][0]
    if identity_dim is not None and report.identity_dim != identity_dim:
        report.problem(root, f"identity embeddings are {report.identity_dim}-d, expected {identity_dim}")
    meta = _read_json(root / "meta.json")
    if meta and isinstance(meta.get("resolution"), int) and report.resolution and \
            report.resolution != (meta["resolution"], meta["resolution"]):
        report.problem(root / "meta.json", f"says {meta['resolution']}px images; they are {report.resolution}")
    return report
