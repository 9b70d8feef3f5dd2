"""`talkingface export`: a training checkpoint -> a generator-only inference snapshot.

Training checkpoints carry the discriminator, both optimisers and the resume state
(about 3x the generator's size). The snapshot keeps the official layout's `generator`
and `epoch` (empty discriminator and optimisers, so official loaders still read it)
and our metadata with the model config, so `animate` / `infer` need no --config.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from talkingface.checkpoints.official import checkpoint_meta, load_generator, read_checkpoint, save_checkpoint
from talkingface.errors import CheckpointError


@dataclass
class ExportResult:
    out: Path
    parameters: int
    megabytes: float


def export_generator(ckpt: str, out: str, config: str | None = None) -> ExportResult:
    from talkingface.recipes.personalize import config_for_checkpoint

    src, dst = Path(ckpt), Path(out)
    if src.resolve() == dst.resolve():
        raise CheckpointError("export would overwrite its input; choose another --out", dst)
    cfg = config_for_checkpoint(str(src), config)
    epoch = int(read_checkpoint(src).get("epoch", 0))
    model = load_generator(src, cfg).model
    save_checkpoint(dst, cfg, model, epoch=epoch)
    checkpoint_meta(read_checkpoint(dst))  # the written file reads back with its metadata
    result = ExportResult(dst, sum(p.numel() for p in model.parameters()), dst.stat().st_size / 2 ** 20)
    print(f"Wrote {dst}: generator only, {result.parameters / 1e6:.2f} M parameters, {result.megabytes:.1f} MB")
    return result
