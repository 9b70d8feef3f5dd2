"""`talkingface export`: a training checkpoint -> a generator-only inference snapshot,
and/or ONNX graphs for ONNX Runtime (`--onnx`, see talkingface.inference.onnx).

Training checkpoints carry the discriminator, both optimisers and the resume state
(about 3x the generator's size). The snapshot keeps the official layout's `generator`
and `epoch` (empty discriminator and optimisers, so official loaders still read it)
and our metadata with the model config, so `animate` / `infer` need no --config.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from talkingface.checkpoints.official import (checkpoint_meta, config_for_checkpoint, load_generator, read_checkpoint,
                                              save_checkpoint)
from talkingface.errors import CheckpointError, TalkingFaceError
from talkingface.inference.onnx import OnnxExport, encoder_path, export_onnx, require_extra
from talkingface.utils.options import option
from talkingface.utils.paths import refuse_overwrite


@dataclass
class ExportOptions:
    """What `talkingface export` writes: a snapshot (out), ONNX graphs (onnx), or both."""

    ckpt: str = option(help="Training checkpoint (ours or official layout).")
    out: str | None = option(None, "Snapshot to write (official layout, model config inside).")
    onnx: str | None = option(None, "Write the generator for ONNX Runtime: OUT.onnx (per frame) and "
                                    "OUT.encoder.onnx (source encoder); fp32, any batch. Needs the onnx extra: "
                                    'pip install -e ".[onnx]".',
                              metavar="OUT.onnx")
    config: str | None = option(None, "Model config (default: the one stored in the checkpoint).")


@dataclass
class ExportResult:
    out: Path
    parameters: int
    megabytes: float


def export_generator(ckpt: str, out: str, config: str | None = None) -> ExportResult:
    src, dst = Path(ckpt), Path(out)
    refuse_overwrite(dst, src, config)
    cfg = config_for_checkpoint(str(src), config)
    loaded = load_generator(src, cfg)
    model = loaded.model
    save_checkpoint(dst, cfg, model, epoch=_epoch(loaded.checkpoint, src))
    checkpoint_meta(read_checkpoint(dst), dst)  # the written file reads back with its metadata
    result = ExportResult(dst, sum(p.numel() for p in model.parameters()), dst.stat().st_size / 2 ** 20)
    print(f"Wrote {dst}: generator only, {result.parameters / 1e6:.2f} M parameters, {result.megabytes:.1f} MB")
    return result


def _epoch(ckpt: dict, path: Path) -> int:
    value = ckpt.get("epoch", 0)
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise CheckpointError(f"its 'epoch' entry is {value!r}, not a whole number; the file is damaged or "
                              "was edited", path) from None


def export_onnx_graphs(ckpt: str, out: str, config: str | None = None) -> OnnxExport:
    """The checkpoint's generator as ONNX graphs: OUT.onnx (per frame) and OUT.encoder.onnx."""
    src, dst = Path(ckpt), Path(out)
    if dst.suffix != ".onnx":
        raise TalkingFaceError("--onnx names a .onnx file (the source encoder is written beside it as "
                               f"{encoder_path(dst.with_suffix('.onnx')).name})", dst)
    for written in (dst, encoder_path(dst)):
        refuse_overwrite(written, src, config)
    for module in ("onnx", "onnxscript", "onnxruntime"):  # before the slow part, not after it
        require_extra(module)
    cfg = config_for_checkpoint(str(src), config)
    model = load_generator(src, cfg).model
    result = export_onnx(model, cfg, dst)
    print(f"Wrote {result.render} (per frame) and {result.encoder} (source encoder, once per video): "
          f"{result.variant} layers, opset {result.opset}, fp32, any batch, {result.megabytes:.1f} MB; "
          f"ONNX Runtime matches torch to {result.max_abs_diff:.1e}")
    return result
