"""The training loop's batches: from a dataset folder or from a WebDataset shard set.

Both give `steps_per_epoch` (the same on every DDP rank) and `epoch(e, start)`: the
batches of epoch e from batch `start` on, so a resumed run continues at the same data
position. A folder is split across ranks by a DistributedSampler and shuffled as a
whole each epoch; a shard set is streamed (talkingface/data/shard_reader.py).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Iterable

import torch

from talkingface.data.official import OfficialDataset
from talkingface.data.shard_reader import ShardStream, StreamSettings
from talkingface.data.shards import is_shard_set
from talkingface.landmarks.scheme import LandmarkScheme
from talkingface.training.common import SkipBadFrames
from talkingface.training.distributed import DistInfo


@dataclass(frozen=True)
class BatchSettings:
    batch_size: int  # per rank
    num_workers: int = 0  # DataLoader worker processes
    seed: int = 0  # the shuffle (with the epoch)
    skip_bad: bool = False  # skip unreadable frames (and shards) with a warning instead of stopping
    shuffle_buffer: int = 1000  # shard sets: frames each loader worker shuffles among


class FolderBatches:
    """A dataset folder: every rank's share of a whole-set permutation per epoch."""

    def __init__(self, data: torch.utils.data.Dataset, settings: BatchSettings, info: DistInfo):
        self.data, self.settings = data, settings
        self.sampler = torch.utils.data.DistributedSampler(data, num_replicas=info.world_size, rank=info.rank,
                                                           shuffle=True, seed=settings.seed)
        self.steps_per_epoch = math.ceil(math.ceil(len(data) / info.world_size) / settings.batch_size)

    def epoch(self, epoch: int, start: int = 0) -> Iterable[dict]:
        self.sampler.set_epoch(epoch)
        order = list(self.sampler)[start * self.settings.batch_size:]
        return torch.utils.data.DataLoader(self.data, batch_size=self.settings.batch_size, sampler=order,
                                           num_workers=self.settings.num_workers, drop_last=False)


def training_batches(root: str | os.PathLike, scheme: LandmarkScheme, resolution: int, identity_dim: int,
                     subset: list[int] | None, with_theta: bool, settings: BatchSettings,
                     info: DistInfo) -> FolderBatches | ShardStream:
    """Batches of `root`, a dataset folder or a shard set (a folder with index.json, or a brace
    pattern). Data of another landmark scheme or identity size fails here, before a run starts."""
    if is_shard_set(root):
        stream = StreamSettings(batch_size=settings.batch_size, num_workers=settings.num_workers,
                                shuffle_buffer=settings.shuffle_buffer, seed=settings.seed, rank=info.rank,
                                world_size=info.world_size, skip_bad=settings.skip_bad)
        return ShardStream(root, scheme, resolution, identity_dim, stream, subset, with_theta)
    dataset = OfficialDataset(root, scheme, resolution, identity_dim, subset=subset, with_theta=with_theta)
    dataset.check_landmark_scheme()
    return FolderBatches(SkipBadFrames(dataset) if settings.skip_bad else dataset, settings, info)
