"""Reading WebDataset shard sets (format: shards.py) for training, meta-training and personalisation.

Two readers give the folder reader's items (official.py: the same encoding code):

- `ShardStream`, for `train`: streaming. Shards are split across DDP ranks (shard i goes to
  rank i mod world size) and then across DataLoader workers (every n-th, as webdataset's
  split_by_worker deals them); each worker reads its shards in an order shuffled per epoch and
  shuffles frames in a buffer (webdataset's shuffle), decodes, and batches. Every rank
  takes the same number of batches per epoch (the largest count of any rank): a rank
  with fewer starts another pass over its shards. A position within an epoch (batches
  taken) is resumed exactly: which worker gave which batch follows from the per-worker
  batch counts (the DataLoader takes batches from its workers in turn), so each worker
  skips its own share.
- `ShardFrames`, for `meta-train`, `personalize` and validation: random access by frame
  index, like the folder reader (the meta-task sampler draws per identity as it does on
  a folder). A shard's member offsets are read from its tar headers the first time one
  of its frames is asked for.
"""
from __future__ import annotations

import io
import itertools
import math
import os
import random
import tarfile
import warnings
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from talkingface.data.official import (IMAGE_EXTENSIONS, OfficialDataset, encode_view, frame_item, load_npy,
                                       with_subset)
from talkingface.data.shards import (FRAME_KEY, IDENTITY_KEY, ShardSet, check_matches_model, check_shard_files,
                                     import_webdataset, is_shard_set, open_shard_set)
from talkingface.errors import DataError
from talkingface.landmarks.scheme import LandmarkScheme

IMAGE_FIELDS = tuple(ext.lstrip(".") for ext in sorted(IMAGE_EXTENSIONS))


@dataclass(frozen=True)
class Decoder:
    """Shard samples -> the folder reader's items."""

    scheme: LandmarkScheme
    size: int
    identity_dim: int
    with_theta: bool

    def source(self, record: dict[str, bytes], where: str) -> dict[str, torch.Tensor]:
        enc = encode_view(io.BytesIO(record["src.png"]), io.BytesIO(record["ldmk.npy"]), self.scheme, self.size,
                          f"{where} src.png")
        d = self.identity_dim
        ident = load_npy(io.BytesIO(record["id.npy"]), [(1, d), (d,)], "identity embedding", f"{where} id.npy")
        enc["identity"] = torch.from_numpy(ident.reshape(-1))
        if self.with_theta:
            enc["theta"] = torch.from_numpy(self._theta(record, where))
        return enc

    def _theta(self, sample: dict[str, bytes], where: str) -> np.ndarray:
        if "theta.npy" not in sample:
            raise DataError("no theta stored (the dataset had no theta files)", where)
        return load_npy(io.BytesIO(sample["theta.npy"]), [(2, 3)], "theta", f"{where} theta.npy")

    def frame(self, sample: dict[str, bytes], source: dict[str, torch.Tensor], k: int, index: int,
              where: str) -> dict:
        field = next((f for f in IMAGE_FIELDS if f in sample), None)
        if field is None or "ldmk.npy" not in sample:
            raise DataError("frame sample without an image or landmarks", where)
        drv = encode_view(io.BytesIO(sample[field]), io.BytesIO(sample["ldmk.npy"]), self.scheme, self.size,
                          f"{where} {field}")
        theta = self._theta(sample, where) if self.with_theta else None
        return frame_item(source, drv, self.scheme, self.size, k, index, theta)


def _checked_shards(spec: str | os.PathLike, scheme: LandmarkScheme, identity_dim: int, skip_bad: bool) -> ShardSet:
    shards = open_shard_set(spec)
    check_matches_model(shards, scheme.name, identity_dim)
    return check_shard_files(shards, skip_bad, lambda message: warnings.warn(message, stacklevel=3))


# ------------------------------------------------------------------ random access
@dataclass(frozen=True)
class ShardFrame:
    identity: int
    shard: int  # position in the shard set
    key: str


class ShardFrames(torch.utils.data.Dataset):
    """The frames of a shard set by index, with the folder reader's interface (`frames`,
    `identities`, `source(k)`, items): frame i is frame i of the set's index order."""

    def __init__(self, spec: str | os.PathLike, scheme: LandmarkScheme, resolution: int, identity_dim: int,
                 subset: list[int] | None = None, with_theta: bool = False, skip_bad: bool = False):
        self.shards = _checked_shards(spec, scheme, identity_dim, skip_bad)
        self.root = self.shards.index_path.parent
        self.scheme = with_subset(scheme, subset)
        self.size = resolution
        self.identity_dim = identity_dim
        self.decoder = Decoder(self.scheme, resolution, identity_dim, with_theta)
        self.frames: list[ShardFrame] = []
        for s, info in enumerate(self.shards.index.shards):
            serial = info.first_frame
            for k, count in info.identities:
                self.frames.extend(ShardFrame(k, s, f"{FRAME_KEY}{n:010d}") for n in range(serial, serial + count))
                serial += count
        self.identities = sorted({f.identity for f in self.frames})
        self._members: dict[int, dict[str, dict[str, tuple[int, int]]]] = {}  # see _member_table
        self._sources: dict[int, dict[str, torch.Tensor]] = {}
        self._files: dict[int, io.BufferedReader] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.frames)

    def __getstate__(self):  # DataLoader workers (spawn) open their own files
        state = dict(self.__dict__)
        state["_files"] = {}
        return state

    def check_landmark_scheme(self) -> None:
        """Done when the set was opened (its index names the scheme)."""

    def _file(self, s: int):
        if self._pid != os.getpid():  # a forked DataLoader worker: its own file handles
            self._files, self._pid = {}, os.getpid()
        if s not in self._files:
            self._files[s] = open(self.shards.paths[s], "rb")
        return self._files[s]

    def _member_table(self, s: int) -> dict[str, dict[str, tuple[int, int]]]:
        """Shard s's samples: key -> field -> (data offset, size), from its tar headers."""
        if s not in self._members:
            path = self.shards.paths[s]
            table: dict[str, dict[str, tuple[int, int]]] = {}
            try:
                with tarfile.open(path, "r:") as tar:
                    for member in tar:
                        key, _, field = member.name.partition(".")
                        if member.isreg() and field:
                            table.setdefault(key, {})[field] = (member.offset_data, member.size)
            except (tarfile.TarError, OSError) as e:
                raise DataError(f"truncated or corrupt shard ({e})", path) from None
            self._members[s] = table
        return self._members[s]

    def _sample(self, s: int, key: str) -> dict[str, bytes]:
        fields = self._member_table(s).get(key)
        if not fields:
            raise DataError(f"no member {key}.* (the index does not match the shard)", self.shards.paths[s])
        f = self._file(s)
        out = {}
        for name, (offset, size) in fields.items():
            f.seek(offset)
            out[name] = f.read(size)
        return out

    def source(self, k: int, shard: int | None = None) -> dict[str, torch.Tensor]:
        if k not in self._sources:
            s = shard if shard is not None else next(f.shard for f in self.frames if f.identity == k)
            where = f"{self.shards.paths[s]}:{IDENTITY_KEY}{k}"
            self._sources[k] = self.decoder.source(self._sample(s, f"{IDENTITY_KEY}{k}"), where)
        return self._sources[k]

    def __getitem__(self, index: int) -> dict:
        frame = self.frames[index]
        src = self.source(frame.identity, frame.shard)
        where = f"{self.shards.paths[frame.shard]}:{frame.key}"
        return self.decoder.frame(self._sample(frame.shard, frame.key), src, frame.identity, index, where)


def open_frames(spec: str | os.PathLike, scheme: LandmarkScheme, resolution: int, identity_dim: int,
                subset: list[int] | None = None, with_theta: bool = False,
                skip_bad: bool = False) -> OfficialDataset | ShardFrames:
    """A dataset folder or a shard set (folder with index.json, or a brace pattern), by frame index."""
    if is_shard_set(spec):
        return ShardFrames(spec, scheme, resolution, identity_dim, subset, with_theta, skip_bad)
    return OfficialDataset(spec, scheme, resolution, identity_dim, subset, with_theta)


# ------------------------------------------------------------------ streaming
@dataclass(frozen=True)
class StreamSettings:
    batch_size: int  # frames per batch on this rank
    num_workers: int = 0  # DataLoader worker processes; shards are split between them
    shuffle_buffer: int = 1000  # frames each worker holds to shuffle from (1: shard order)
    seed: int = 0  # with the epoch, fixes the shard order and the shuffle
    rank: int = 0
    world_size: int = 1
    skip_bad: bool = False  # skip unreadable shards and frames with a warning instead of stopping


def round_robin_position(counts: list[int], taken: int) -> tuple[list[int], int]:
    """Where a DataLoader stands after `taken` batches when it takes one batch from each worker in
    turn, passing over workers that have run out (`counts`: batches per worker): how many each
    worker gave, and the worker whose turn is next."""
    skips = [0] * len(counts)
    turn = 0
    while taken > 0 and any(s < c for s, c in zip(skips, counts)):
        if skips[turn] < counts[turn]:
            skips[turn] += 1
            taken -= 1
        turn = (turn + 1) % len(counts)
    return skips, turn


class ShardStream:
    """Batches of a shard set for one DDP rank: `steps_per_epoch` of them per epoch, the same on
    every rank; `epoch(e, start)` resumes at batch `start` of epoch e."""

    def __init__(self, spec: str | os.PathLike, scheme: LandmarkScheme, resolution: int, identity_dim: int,
                 settings: StreamSettings, subset: list[int] | None = None, with_theta: bool = False):
        s = self.settings = settings
        self.shards = _checked_shards(spec, scheme, identity_dim, s.skip_bad)
        self.root = self.shards.index_path.parent
        count = len(self.shards.paths)
        if count < s.world_size:
            raise DataError(f"{count} shards for {s.world_size} ranks: every rank needs a shard (pack with a smaller "
                            "--shard-size)", self.shards.index_path)
        self.decoder = Decoder(with_subset(scheme, subset), resolution, identity_dim, with_theta)
        self.paths = self.shards.paths[s.rank::s.world_size]
        self.frames_of = {str(path): info.frames for path, info in
                          zip(self.paths, self.shards.index.shards[s.rank::s.world_size])}
        self.worker_batches = self._worker_batches(s.rank)
        self.pass_batches = sum(self.worker_batches)
        self.steps_per_epoch = max(sum(self._worker_batches(r)) for r in range(s.world_size))

    def __len__(self) -> int:
        return self.steps_per_epoch

    def _worker_batches(self, rank: int) -> list[int]:
        infos = self.shards.index.shards[rank::self.settings.world_size]
        workers = max(1, self.settings.num_workers)
        return [math.ceil(sum(i.frames for i in infos[w::workers]) / self.settings.batch_size)
                for w in range(workers)]

    def check_landmark_scheme(self) -> None:
        """Done when the set was opened (its index names the scheme)."""

    def epoch(self, epoch: int, start: int = 0) -> Iterator[dict]:
        """Batches `start`..steps_per_epoch-1 of `epoch`: passes over this rank's shards (a new
        shuffle each) until the epoch's count is reached."""
        step = start
        pass_no, skip = divmod(start, self.pass_batches)
        while step < self.steps_per_epoch:
            one_pass = _Pass(self, epoch, pass_no, *round_robin_position(self.worker_batches, skip))
            loader = torch.utils.data.DataLoader(one_pass, batch_size=None, num_workers=self.settings.num_workers)
            got = 0
            for batch in loader:
                yield batch
                got += 1
                step += 1
                if step >= self.steps_per_epoch:
                    return
            if got == 0:
                raise DataError("no readable frames left in this rank's shards", self.shards.index_path)
            pass_no, skip = pass_no + 1, 0


class _Pass(torch.utils.data.IterableDataset):
    """One pass over a rank's shards, as run in each DataLoader worker.

    Shards are dealt to logical workers (webdataset's split_by_worker rule: every n-th); DataLoader
    worker i plays logical worker (i + first) mod n, so a resumed pass, whose DataLoader starts
    with worker 0 again, interleaves the remaining batches exactly as the interrupted one would."""

    def __init__(self, stream: ShardStream, epoch: int, pass_no: int, skips: list[int], first: int):
        self.paths = stream.paths
        self.frames_of = stream.frames_of
        self.settings = stream.settings
        self.decoder = stream.decoder
        self.epoch, self.pass_no, self.skips, self.first = epoch, pass_no, skips, first

    def __iter__(self) -> Iterator[dict]:
        wds = import_webdataset()
        s = self.settings
        info = torch.utils.data.get_worker_info()
        workers = len(self.skips)
        worker = ((info.id if info is not None else 0) + self.first) % workers
        rng = random.Random(f"{s.seed}:{self.epoch}:{self.pass_no}:{s.rank}:{worker}")
        urls = [{"url": str(p)} for p in self.paths[worker::workers]]
        rng.shuffle(urls)
        frames = _with_identity_records(self._read(wds, urls))
        if s.shuffle_buffer > 1:
            frames = wds.shuffle(s.shuffle_buffer, initial=s.shuffle_buffer, rng=rng)(frames)
        frames = itertools.islice(frames, self.skips[worker] * s.batch_size, None)
        yield from wds.batched(s.batch_size, collation_fn=torch.utils.data.default_collate,
                               partial=True)(self._decoded(frames))

    def _read(self, wds, urls: list[dict]) -> Iterator[dict]:
        """The samples of each shard; a shard that breaks off (a damaged tar header ends a tar
        stream early, silently) or yields fewer frames than its index entry is named."""
        for url in urls:
            frames = 0
            try:
                for sample in wds.tarfile_samples(iter([dict(url)])):
                    frames += not sample["__key__"].startswith(IDENTITY_KEY)
                    yield sample
                expected = self.frames_of[url["url"]]
                if frames != expected:
                    raise tarfile.ReadError(f"it held {frames} of its {expected} frames")
            except (tarfile.TarError, OSError, ValueError) as e:
                cause = str(e.args[0] if e.args else e).split(" @ ")[0]
                if not self.settings.skip_bad:
                    raise DataError(f"truncated or corrupt shard ({cause})", url["url"]) from None
                warnings.warn(f"skipping the rest of bad shard {url['url']}: {cause}")

    def _decoded(self, frames: Iterator[dict]) -> Iterator[dict]:
        sources: dict[tuple[str, int], dict[str, torch.Tensor]] = {}
        for sample in frames:
            k, url, key = int(sample["cls"]), sample["__url__"], sample["__key__"]
            where = f"{url}:{key}"
            try:
                if (url, k) not in sources:
                    if len(sources) >= 64:
                        sources.clear()
                    sources[url, k] = self.decoder.source(sample["_identity"], f"{url}:{IDENTITY_KEY}{k}")
                yield self.decoder.frame(sample, sources[url, k], k, int(key[len(FRAME_KEY):]), where)
            except DataError as e:
                if not self.settings.skip_bad:
                    raise
                warnings.warn(f"skipping bad frame: {e}")


def _with_identity_records(samples: Iterator[dict]) -> Iterator[dict]:
    """Frame samples with their identity's record attached (records come first in each shard)."""
    records: dict[int, dict] = {}
    current = None
    for sample in samples:
        if sample["__url__"] != current:
            records, current = {}, sample["__url__"]
        k = int(sample["cls"])
        if sample["__key__"].startswith(IDENTITY_KEY):
            records[k] = sample
            continue
        if k not in records:
            raise DataError(f"frame {sample['__key__']} comes before its identity's record (corrupt shard)", current)
        sample["_identity"] = records[k]
        yield sample


__all__ = ["ShardFrames", "ShardStream", "StreamSettings", "open_frames", "round_robin_position"]
