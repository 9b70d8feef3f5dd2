"""The shots of one input: their frames, their source candidates, and who is in them.

`preprocess` splits an input at scene cuts (scenes.py) into segments, one per shot,
and writes each segment's frames to its own staging folder as they stream. At the end,
segments with too few frames with a face are discarded, the others get a dlib
descriptor at their source candidate, segments of the same person are grouped
(`group_by_distance`), and each group's frames are moved (renamed) into one identity
folder (`gather_frames`).
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from talkingface.preprocess.landmarks import frontal_error, is_near_frontal

FRAME_SUBDIRS = ("imgs", "ldmks", "thetas")


@dataclass
class Portrait:
    """One kept frame as a source-portrait candidate."""

    index: int
    image: np.ndarray  # the crop, RGB uint8
    points: np.ndarray  # 478 x 2, 0..1 of the crop
    theta: np.ndarray
    frontal_error: float

    @classmethod
    def of(cls, index: int, image: np.ndarray, points: np.ndarray, theta: np.ndarray) -> Portrait:
        return cls(index, image, points, theta, frontal_error(points))


@dataclass
class Segment:
    """One shot: frames [start, end) of the input, written to `folder`."""

    number: int
    start: int
    folder: Path
    end: int | None = None
    frames_kept: int = 0
    best: Portrait | None = None  # the first near-frontal kept frame, else the most frontal one
    frontal_found: bool = False  # `best` is near-frontal (it stopped changing)
    chosen: Portrait | None = None  # the --source-frame, when it falls in this shot
    descriptor: np.ndarray | None = None  # dlib descriptor at `best` (only computed when grouping)
    identity: int | None = None  # index of the input's identity this shot went to
    discarded: str | None = None  # why it was left out

    def contains(self, index: int) -> bool:
        return self.start <= index < (self.end if self.end is not None else index + 1)

    def offer(self, portrait: Portrait, source_frame: int | None) -> None:
        """A kept frame, in order: track the source candidates."""
        self.frames_kept += 1
        if source_frame is not None and portrait.index == source_frame:
            self.chosen = portrait
        if not self.frontal_found:
            if self.best is None or portrait.frontal_error < self.best.frontal_error:
                self.best = portrait
            self.frontal_found = is_near_frontal(portrait.points)


def pick_source(segments: list[Segment]) -> Portrait:
    """The source portrait of an identity made of `segments` (in time order): the
    --source-frame if one of them holds it, else the first near-frontal frame, else the
    most frontal one. For a single segment this is exactly the per-input rule."""
    for seg in segments:
        if seg.chosen is not None:
            return seg.chosen
    for seg in segments:
        if seg.frontal_found:
            return seg.best
    return min((seg.best for seg in segments), key=lambda p: p.frontal_error)


def group_by_distance(descriptors: list[np.ndarray], threshold: float) -> list[int]:
    """Group items whose descriptors lie close: average-linkage agglomerative clustering.

    The closest two groups (mean pairwise Euclidean distance between their members) merge
    while that distance is below `threshold`. Unlike joining every pair below the
    threshold (single linkage), one ambiguous shot cannot chain two people together.
    Returns one label per item, numbered 0, 1, ... in order of each group's first item.
    """
    n = len(descriptors)
    if n == 0:
        return []
    x = np.stack([np.asarray(d, dtype=np.float64).ravel() for d in descriptors])
    dist = np.linalg.norm(x[:, None, :] - x[None, :, :], axis=-1)
    np.fill_diagonal(dist, np.inf)
    sizes = np.ones(n)
    members = [[i] for i in range(n)]
    while True:
        i, j = np.unravel_index(int(np.argmin(dist)), dist.shape)
        if not dist[i, j] < threshold:
            break
        i, j = min(i, j), max(i, j)
        # Lance-Williams update for average linkage: the merged group's mean distances
        merged = (sizes[i] * dist[i] + sizes[j] * dist[j]) / (sizes[i] + sizes[j])
        dist[i, :] = dist[:, i] = merged
        dist[i, i] = np.inf
        dist[j, :] = dist[:, j] = np.inf
        sizes[i] += sizes[j]
        members[i] += members[j]
        members[j] = []
    labels = [0] * n
    groups = sorted((sorted(m) for m in members if m), key=lambda m: m[0])
    for label, group in enumerate(groups):
        for item in group:
            labels[item] = label
    return labels


def gather_frames(segments: list[Segment], target: Path) -> None:
    """Move the frames of `segments` into `target` (imgs, ldmks, thetas): the first
    segment's folder is renamed, the others' files are renamed into it."""
    first, *rest = segments
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(first.folder, target)
    for seg in rest:
        for sub in FRAME_SUBDIRS:
            (target / sub).mkdir(exist_ok=True)
            for path in (seg.folder / sub).iterdir():
                os.replace(path, target / sub / path.name)
        shutil.rmtree(seg.folder)


def keep_segments(segments: list[Segment], min_faces: int) -> list[Segment]:
    """The shots that become (part of) identities. A single shot (no cuts) is kept as it
    is; with cuts, a shot needs `min_faces` frames with a face. The others are marked
    `discarded` and their folders deleted."""
    if len(segments) == 1:
        return [seg for seg in segments if seg.frames_kept]
    kept = []
    for seg in segments:
        if seg.frames_kept >= min_faces:
            kept.append(seg)
            continue
        seg.discarded = (f"shot of frames {seg.start}-{seg.end - 1} has {seg.frames_kept} frames with a face, "
                         f"fewer than {min_faces}")
        shutil.rmtree(seg.folder, ignore_errors=True)
    return kept


def group_segments(kept: list[Segment], threshold: float,
                   embed: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> list[int]:
    """Set each kept shot's `identity` (0, 1, ... in order of appearance) and return the
    labels. With several shots, each gets a descriptor `embed(image, points)` at its
    source candidate, and `group_by_distance` joins the same person's shots."""
    if len(kept) > 1:
        for seg in kept:
            seg.descriptor = embed(seg.best.image, seg.best.points)
        labels = group_by_distance([seg.descriptor for seg in kept], threshold)
    else:
        labels = [0] * len(kept)
    for seg, label in zip(kept, labels):
        seg.identity = label
    return labels


def shot_rows(segments: list[Segment]) -> list[dict]:
    """Every shot of the input for meta.json: frame range [start, end), frames with a face,
    the input identity it went to (null: discarded, with the reason)."""
    return [{"start": seg.start, "end": seg.end, "frames_kept": seg.frames_kept, "identity": seg.identity,
             **({"discarded": seg.discarded} if seg.discarded else {})} for seg in segments]
