"""`preprocess --format shards`: the output as WebDataset shards, resumable and never half-written.

ROOT holds index.json and shard-*.tar (format: talkingface/data/shards.py). Inputs are
staged as for a dataset folder (ROOT/.staging) and committed in input order: an input's
identities get the next numbers k, and their records and frames (by name, the order the
folder reader gives one identity's frames) are appended to the open shard. A shard
closes once it reached the target size at the end of an input, so each input lies in
exactly one shard, and the index, rewritten after each shard, lists it there. A run
killed at any moment loses only its open shard (a temporary file, removed by the next
write of that shard); the next run redoes the inputs that were in it and skips the
others. The shards hold the very bytes `pack-shards` writes from the `preprocess`
folder of the same run, when each input is one identity and there are fewer than 10 of
them (the folder reader's path order puts identity 10 before 2).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from talkingface.data.shards import DEFAULT_SHARD_BYTES, INDEX_FILE, IdentityRecord, ShardIndex, ShardSetWriter
from talkingface.errors import DataError
from talkingface.preprocess.pipeline import FRAMES_DIR, SCHEME, StagedIdentity, VideoResult
from talkingface.preprocess.sources import InputItem
from talkingface.preprocess.store import STAGING_DIR, LockedStore, fresh_staging_dir
from talkingface.utils.atomic import json_bytes

# staged source file -> identity record field
RECORD_FIELDS = {"src.png": "src.png", "src_ldmk.npy": "ldmk.npy", "src_id.npy": "id.npy",
                 "src_theta.npy": "theta.npy"}


@dataclass
class ShardStore(LockedStore):
    """Owns ROOT (a shard set) for one preprocess run, as DatasetStore does for a folder."""

    target_bytes: int = DEFAULT_SHARD_BYTES
    _writer: ShardSetWriter | None = None
    _staged: dict[int, tuple[StagedIdentity, list[int]]] = field(default_factory=dict)

    def _open(self) -> None:
        index = self._open_index()
        shutil.rmtree(self.root / STAGING_DIR, ignore_errors=True)  # left by a killed run
        self._writer = ShardSetWriter(self.root, index, self._record)

    def _open_index(self) -> ShardIndex:
        path = self.root / INDEX_FILE
        if not path.exists():
            if any(not p.name.startswith(".") for p in self.root.iterdir()):
                raise DataError("folder is not empty and is not a shard set; choose a new --out", self.root)
            return ShardIndex(SCHEME, self.resolution, self.identity_dim, self.target_bytes)
        index = ShardIndex.read(path)
        if index.scheme != SCHEME or index.identity_dim != self.identity_dim:
            raise DataError(f"this shard set holds {index.scheme} landmarks and {index.identity_dim}-d identities, "
                            f"not {SCHEME} and {self.identity_dim}-d", self.root)
        if index.resolution != self.resolution:
            raise DataError(f"this shard set holds {index.resolution}px crops; this run makes {self.resolution}px "
                            "(use another --out)", self.root)
        index.target_bytes = self.target_bytes
        inputs = {key for shard in index.shards for key in shard.inputs}
        for row in index.identities:
            if row.get("input") in inputs:
                self.done.setdefault(row["input"], []).append(row["identity"])
        self.failed = {f["source"]: f["error"] for f in index.failed if f.get("source") not in inputs}
        # identities of inputs in a shard that was never closed are forgotten (their inputs run again and
        # get the same numbers); rows without an input come from pack-shards and stay
        index.identities = [row for row in index.identities if "input" not in row or row["input"] in inputs]
        self._next_k = max((row["identity"] + 1 for row in index.identities), default=0)
        return index

    # ------------------------------------------------------------------ per input
    def is_done(self, item: InputItem) -> bool:
        return item.key in self.done

    def staging_dir(self, item: InputItem) -> Path:
        return fresh_staging_dir(self.root, item)

    def _record(self, k: int) -> IdentityRecord:
        staged, ks = self._staged[k]
        record = {name: (staged.folder / staged_name).read_bytes() for staged_name, name in RECORD_FIELDS.items()}
        record["json"] = json_bytes({"identity": k, **staged.meta, "identities_of_input": ks})
        return record

    def commit(self, result: VideoResult) -> list[int]:
        """Append a finished input's identities as the next k; returns them."""
        if not result.ok or result.staged is None or not result.identities:
            raise ValueError("commit needs a successful result")
        ks = list(range(self._next_k, self._next_k + len(result.identities)))
        writer = self._writer
        for k, staged in zip(ks, result.identities):
            self._staged = {k: (staged, ks)}
            meta = staged.meta
            writer.identity_row(k, input=result.item.key, source_video=meta.get("source_video"),
                                dropped=(meta.get("dropped") or {}).get("count"), fps=meta.get("fps"))
            frames = staged.folder / FRAMES_DIR
            for image in sorted((frames / "imgs").iterdir()):
                stem = image.stem
                writer.add_frame(k, image.name, image.read_bytes(), "png",
                                 (frames / "ldmks" / f"{stem}_ldmk.npy").read_bytes(),
                                 (frames / "thetas" / f"{stem}_theta.npy").read_bytes())
        self._next_k = ks[-1] + 1
        writer.finish_input(result.item.key)
        writer.rotate(boundary=True)
        return self._mark_done(result, ks)

    # ------------------------------------------------------------------ end of run
    def finalize(self) -> None:
        shutil.rmtree(self.root / STAGING_DIR, ignore_errors=True)
        if self._writer is None:
            return
        self._writer.index.failed = [{"source": key, "error": err} for key, err in sorted(self.failed.items())]
        if self._created and not self._writer.index.shards and not self._writer.next_serial:
            self._writer.abort()  # nothing was produced: leave no empty shard set behind
            shutil.rmtree(self.root, ignore_errors=True)
            return
        self._writer.close()
