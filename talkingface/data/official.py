"""Reader for the official MetaPortrait dataset layout (reference section 1).

    root/src_map_dict.pkl          frame file name -> identity k
    root/src_{k}.png, src_{k}_ldmk.npy, src_{k}_theta.npy, src_{k}_id.npy
    root/{k}/imgs/<frame>.png, {k}/ldmks/<stem>_ldmk.npy, {k}/thetas/<stem>_theta.npy

Unlike the reference reader, any frame name works (the reference's `[!src_]*` glob
drops names starting with s, r, c or _), and frame names may repeat across identities:
the identity folder decides then. Frames are ordered by their path relative to the
root, as the reference orders them. Files are validated as they are read; every
problem is a `DataError` naming the file.
"""
from __future__ import annotations

import pickle
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from talkingface.config import Config
from talkingface.errors import DataError
from talkingface.landmarks.encoding import draw_line_image, eye_mask, mouth_mask, normalized_subset
from talkingface.landmarks.scheme import LandmarkScheme, get_scheme
from talkingface.utils.images import IMAGE_EXTENSIONS

MAP_FILE = "src_map_dict.pkl"


class _MapUnpickler(pickle.Unpickler):
    """The map is a pickled dict of str -> int (numpy ints are common); refuse anything
    else, since unpickling arbitrary classes can run code."""

    SAFE = {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("numpy", "dtype"),
            ("collections", "OrderedDict")}

    def find_class(self, module, name):
        if (module, name) in self.SAFE:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_source_map(root: Path) -> dict[str, int]:
    path = root / MAP_FILE
    if not path.is_file():
        raise DataError(f"missing {MAP_FILE} (frame name -> identity map of the official layout)", path)
    try:
        with open(path, "rb") as f:
            mapping = _MapUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, OSError) as e:
        raise DataError(f"cannot read the frame->identity map ({e})", path) from None
    if not isinstance(mapping, dict) or not all(isinstance(k, str) for k in mapping):
        raise DataError("expected a dict of frame file name -> identity index", path)
    try:
        return {k: int(v) for k, v in mapping.items()}
    except (TypeError, ValueError):
        raise DataError("identity indices must be integers", path) from None


def load_image(path: Path | BinaryIO, height: int, width: int, name: str | Path | None = None) -> np.ndarray:
    """RGB float32 H x W x 3 in 0..1, bicubic-resized when the size differs (as the reference).

    `path` may be an open binary file (a shard member); `name` then names it in errors."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode != "RGB":
                img = img.convert("RGB")
            img = img.resize((width, height), Image.BICUBIC)
            return np.asarray(img, dtype=np.float32) / 255
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"cannot read image ({e})", name or path) from None


def load_npy(path: Path | BinaryIO, shapes: list[tuple[int, ...]], what: str,
             name: str | Path | None = None) -> np.ndarray:
    """Load a .npy (no pickles) and check it has one of `shapes`.

    `path` may be an open binary file (a shard member); `name` then names it in errors."""
    name = name or path
    if not hasattr(path, "read") and not Path(path).is_file():
        raise DataError(f"missing {what} file", name)
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"cannot read {what} ({e})", name) from None
    if arr.shape not in shapes:
        want = " or ".join("x".join(map(str, s)) for s in shapes)
        raise DataError(f"{what} has shape {'x'.join(map(str, arr.shape))}, expected {want}", name)
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{what} contains NaN or inf", name)
    return arr.astype(np.float32)


def with_subset(scheme: LandmarkScheme, subset: list[int] | None) -> LandmarkScheme:
    """`scheme` with the config's 58-point subset (`dataset.ldmk_idx`) in place of its own."""
    if subset is None:
        return scheme
    return LandmarkScheme(scheme.name, scheme.num_points, scheme.edges, scheme.edge_colors,
                          np.asarray(subset, dtype=np.int64), scheme.roles)


def read_landmarks(path: Path | BinaryIO, scheme: LandmarkScheme, name: str | Path | None = None) -> np.ndarray:
    n = scheme.num_points
    return load_npy(path, [(n, 2), (1, n, 2)], f"{scheme.name} landmarks", name).reshape(n, 2)


def encode_view(image: Path | BinaryIO, landmarks: Path | BinaryIO, scheme: LandmarkScheme, size: int,
                name: str | None = None) -> dict[str, torch.Tensor]:
    """One image with its landmarks as the model sees it: image, line image, 58-point subset.
    `name` (file-like inputs): how errors name them; the landmark file is `name` + ' landmarks'."""
    image = load_image(image, size, size, name)
    points = read_landmarks(landmarks, scheme, None if name is None else f"{name} landmarks")
    line = draw_line_image(points, scheme, size, size)
    return {
        "image": torch.from_numpy(image).permute(2, 0, 1).contiguous(),
        "line": torch.from_numpy(line).permute(2, 0, 1).float() / 255,
        "subset": torch.from_numpy(normalized_subset(points, scheme)),
    }


def frame_item(src: dict[str, torch.Tensor], drv: dict[str, torch.Tensor], scheme: LandmarkScheme, size: int,
               identity: int, index: int, driving_theta: np.ndarray | None = None) -> dict[str, torch.Tensor | int]:
    """A training/inference item from an encoded source (`encode_view` plus `identity`, and `theta`
    when asked for) and an encoded driving frame: what every dataset reader returns."""
    subset = drv["subset"].numpy()
    item = {
        "source": src["image"], "source_line": src["line"], "source_subset": src["subset"],
        "identity": src["identity"],
        "driving": drv["image"], "driving_line": drv["line"], "driving_subset": drv["subset"],
        "eye_mask": torch.from_numpy(eye_mask(subset, scheme, size, size)),
        "mouth_mask": torch.from_numpy(mouth_mask(subset, scheme, size, size)),
        "identity_index": identity, "index": index,
    }
    if driving_theta is not None:
        item["source_theta"] = src["theta"]
        item["driving_theta"] = torch.from_numpy(driving_theta)
    return item


@dataclass(frozen=True)
class Frame:
    identity: int
    image: Path
    landmarks: Path
    theta: Path
    output_name: str  # flat file name for outputs; identity-prefixed when names repeat


def scan_frames(root: Path, mapping: dict[str, int]) -> list[Frame]:
    """Every driving frame under root/{k}/imgs/, in the reference's (path-sorted) order."""
    images = sorted((p for p in root.glob("*/imgs/*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
                    key=lambda p: p.relative_to(root).as_posix())
    counts = Counter(p.name for p in images)
    frames = []
    for img in images:
        folder = img.parent.parent
        name_unique = counts[img.name] == 1
        if name_unique and img.name in mapping:
            identity = mapping[img.name]
        elif folder.name.isdigit():
            identity = int(folder.name)
        else:
            raise DataError(f"cannot tell the identity of this frame: its name is not in {MAP_FILE} "
                            "and its folder is not an identity index", img)
        frames.append(Frame(
            identity=identity, image=img,
            landmarks=folder / "ldmks" / f"{img.stem}_ldmk.npy",
            theta=folder / "thetas" / f"{img.stem}_theta.npy",
            output_name=img.name if name_unique else f"{identity}_{img.name}",
        ))
    return frames


class OfficialDataset(torch.utils.data.Dataset):
    """Driving frames with their identity's source, encoded for the model.

    Each item: source, driving (3 x H x W, 0..1), source_line, driving_line
    (3 x H x W, 0..1), source_subset, driving_subset (58 x 2, -1..1), identity (D),
    eye_mask, mouth_mask (1 x H x W), identity_index, index.
    """

    def __init__(self, root: str | Path, scheme: LandmarkScheme, resolution: int, identity_dim: int,
                 subset: list[int] | None = None, with_theta: bool = False):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError("dataset folder not found", self.root)
        self.scheme = with_subset(scheme, subset)
        self.size = resolution
        self.identity_dim = identity_dim
        self.with_theta = with_theta
        self.mapping = read_source_map(self.root)
        self.frames = scan_frames(self.root, self.mapping)
        if not self.frames:
            raise DataError("dataset has no driving frames (expected <k>/imgs/<frame>.png)", self.root)
        self.identities = sorted({f.identity for f in self.frames})
        for k in self.identities:  # fail early on missing source files, not mid-run
            for suffix in (".png", "_ldmk.npy", "_id.npy") + (("_theta.npy",) if with_theta else ()):
                path = self.root / f"src_{k}{suffix}"
                if not path.is_file():
                    raise DataError(f"missing source file for identity {k}", path)
        self._sources: dict[int, dict[str, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.frames)

    def check_landmark_scheme(self) -> None:
        """Read every identity's source landmarks: a dataset made with another landmark scheme
        fails here (one small file per identity), before a run creates anything."""
        for k in self.identities:
            self._landmarks(self.root / f"src_{k}_ldmk.npy")

    def _landmarks(self, path: Path) -> np.ndarray:
        return read_landmarks(path, self.scheme)

    def source(self, k: int) -> dict[str, torch.Tensor]:
        """The encoded source of identity k (cached: shared by all its frames)."""
        if k not in self._sources:
            enc = encode_view(self.root / f"src_{k}.png", self.root / f"src_{k}_ldmk.npy", self.scheme, self.size)
            id_path = self.root / f"src_{k}_id.npy"
            ident = load_npy(id_path, [(1, self.identity_dim), (self.identity_dim,)], "identity embedding")
            enc["identity"] = torch.from_numpy(ident.reshape(-1))
            if self.with_theta:
                enc["theta"] = torch.from_numpy(load_npy(self.root / f"src_{k}_theta.npy", [(2, 3)], "theta"))
            self._sources[k] = enc
        return self._sources[k]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        frame = self.frames[index]
        src = self.source(frame.identity)
        drv = encode_view(frame.image, frame.landmarks, self.scheme, self.size)
        theta = load_npy(frame.theta, [(2, 3)], "theta") if self.with_theta else None
        return frame_item(src, drv, self.scheme, self.size, frame.identity, index, theta)


def open_dataset(cfg: Config, root: str | Path) -> OfficialDataset:
    """The dataset at `root` as the model of `cfg` sees it: its landmark scheme (with the config's
    58-point subset), resolution and identity size."""
    return OfficialDataset(root, get_scheme(cfg.model.landmark_scheme), cfg.resolution[0],
                           cfg.model.generator.class_dim, subset=cfg.dataset.ldmk_idx)
