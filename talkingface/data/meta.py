"""Meta-learning tasks: each task is one identity, with support and target frames.

Sampling follows the reference: item `i` seeds its own generator with seed + i, picks
`num_classes_per_set` identities (weighted by their frame counts), and for each draws
num_support + num_target + 1 of its frames with replacement; the last drawn frame
is the source. Sampling is deterministic for a given seed.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from talkingface.data.official import OfficialDataset


@dataclass(frozen=True)
class TaskSpec:
    num_support: int = 1
    num_target: int = 1
    identities_per_task: int = 1
    seed: int = 365


class MetaTaskDataset(torch.utils.data.Dataset):
    """len = number of frames (as the reference); item = list of per-identity (support, target) batches."""

    def __init__(self, frames: OfficialDataset, spec: TaskSpec):
        self.frames = frames
        self.spec = spec
        self.by_identity: dict[int, list[int]] = defaultdict(list)
        for index, frame in enumerate(frames.frames):
            self.by_identity[frame.identity].append(index)
        # One entry per frame: identities are drawn in proportion to their frame counts.
        self.identity_pool = [frame.identity for frame in frames.frames]

    def __len__(self) -> int:
        return len(self.frames)

    def frame_item(self, index: int, source_index: int) -> dict:
        """A driving frame with another frame of the same video as its source."""
        item = self.frames[index]
        src = self.frames[source_index]
        item = dict(item)
        item["source"], item["source_line"], item["source_subset"] = src["driving"], src["driving_line"], src["driving_subset"]
        return item

    def task(self, index: int) -> list[tuple[dict, dict]]:
        rng = np.random.RandomState(self.spec.seed + index)
        s = self.spec
        chosen = rng.choice(len(self.identity_pool), size=min(s.identities_per_task, len(self.identity_pool)),
                            replace=False)
        identities = [self.identity_pool[i] for i in chosen]
        rng.shuffle(identities)
        out = []
        for k in identities:
            pool = self.by_identity[k]
            draws = [pool[i] for i in rng.randint(0, len(pool), size=s.num_support + s.num_target + 1)]
            source = draws[-1]
            support = [self.frame_item(i, source) for i in draws[: s.num_support]]
            target = [self.frame_item(i, source) for i in draws[s.num_support: s.num_support + s.num_target]]
            collate = torch.utils.data.default_collate
            out.append((collate(support), collate(target)))
        return out

    def __getitem__(self, index: int):
        return self.task(index)


def split_support(batch: dict, start: int, end: int) -> dict:
    """Rows start..end of a collated batch (the inner loop's meta_batch_size slices)."""
    return {k: (v[start:end] if isinstance(v, torch.Tensor) and v.dim() > 0 else v) for k, v in batch.items()}


__all__ = ["MetaTaskDataset", "TaskSpec", "split_support"]
