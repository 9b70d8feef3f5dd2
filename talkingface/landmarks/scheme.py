"""Landmark schemes: which points a tracker gives and how the model sees them.

A scheme fixes everything landmark-specific that the model, the line drawing and the
loss masks need:
- `num_points`: points per frame from the tracker;
- `edges` and `edge_colors`: the line image drawn from the points (one colour per edge,
  so the network can tell facial parts apart);
- `subset`: the 58-point semantic subset (indices into the points). Its positions have
  fixed roles (eye extremes, mouth corners and lips, 8 gaze points), listed in
  `SubsetRoles`, so the model code is the same for every scheme.

`dense669` is the official scheme (the unreleased Microsoft dense tracker). Other
schemes (e.g. MediaPipe's 478 points) ship as an asset file of the same format.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np

from talkingface.errors import ConfigError

SUBSET_SIZE = 58


@dataclass(frozen=True)
class SubsetRoles:
    """Positions in the 58-point subset (not indices into the raw points)."""

    left_eye: tuple[int, int, int, int] = (1, 2, 3, 4)  # left, right, top, bottom
    right_eye: tuple[int, int, int, int] = (5, 6, 7, 8)  # left, right, top, bottom
    mouth_corners: tuple[int, int] = (14, 15)  # left, right
    mouth_lips: tuple[int, int] = (56, 57)  # top, bottom
    gaze: tuple[int, ...] = (29, 30, 31, 32, 33, 34, 35, 36)  # 4 per eye (iris)


ROLES = SubsetRoles()


@dataclass(frozen=True, eq=False)
class LandmarkScheme:
    name: str
    num_points: int
    edges: np.ndarray  # E x 2 int, indices into the points
    edge_colors: np.ndarray  # E x 3 uint8, RGB per edge
    subset: np.ndarray  # 58 int, indices into the points
    roles: SubsetRoles = ROLES

    def __post_init__(self):
        if self.edges.ndim != 2 or self.edges.shape[1] != 2:
            raise ConfigError(f"scheme {self.name}: edges must be E x 2")
        if self.edge_colors.shape != (len(self.edges), 3):
            raise ConfigError(f"scheme {self.name}: need one RGB colour per edge")
        if self.subset.shape != (SUBSET_SIZE,):
            raise ConfigError(f"scheme {self.name}: subset must have {SUBSET_SIZE} indices")
        if self.edges.max() >= self.num_points or self.subset.max() >= self.num_points:
            raise ConfigError(f"scheme {self.name}: an index exceeds num_points={self.num_points}")

    @property
    def num_gaze(self) -> int:
        return len(self.roles.gaze)

    def __repr__(self) -> str:
        return f"LandmarkScheme({self.name!r}, {self.num_points} points, {len(self.edges)} edges)"


BUILTIN_SCHEMES = ("dense669", "mediapipe478")


@functools.cache
def get_scheme(name: str) -> LandmarkScheme:
    """Load a built-in scheme from its asset file."""
    if name not in BUILTIN_SCHEMES:
        raise ConfigError(f"unknown landmark scheme {name!r}; known: {', '.join(BUILTIN_SCHEMES)}")
    asset = resources.files("talkingface.landmarks") / "assets" / f"{name}.npz"
    if not asset.is_file():
        raise ConfigError(f"landmark scheme {name!r} is not installed (missing {asset.name})")
    with asset.open("rb") as f, np.load(f) as data:
        return LandmarkScheme(
            name=name,
            num_points=int(data["num_points"]),
            edges=data["edges"].astype(np.int64),
            edge_colors=data["edge_colors"].astype(np.uint8),
            subset=data["subset"].astype(np.int64),
        )
