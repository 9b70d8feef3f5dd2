"""The seed's `--model=metaportraitsr --task Test`: enhance every clip of a super-resolution
config's test data (or --data) into save_dir/<name>/<clip>/ and score them where there is
ground truth."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from talkingface.checkpoints.sr import OFFICIAL_SR_HINT, load_temporal_sr
from talkingface.config.sr import ValConfig, ValDataConfig, load_sr_config
from talkingface.errors import CheckpointError, ConfigError
from talkingface.training.sr_setup import open_clips, with_roots
from talkingface.training.sr_validation import evaluate_clips, load_lpips
from talkingface.utils.atomic import atomic_path
from talkingface.utils.device import resolve_device


@dataclass
class SRTestOptions:
    config: str
    ckpt: str | None = None  # default: path.pretrain_network_g
    save_dir: str = "./saved"
    data_root: str | None = None  # clips to enhance (make-sr-data layout); default: datasets.val
    device: str = "auto"
    batch_size: int = 1  # windows per forward pass
    lpips_alexnet: str | None = None
    lpips_lin: str | None = None


def run_sr_test(opts: SRTestOptions) -> dict:
    """Enhance every clip of the config's test data into save_dir/<name>/<clip>/; score them when GT exists."""
    cfg = load_sr_config(opts.config)
    ckpt = opts.ckpt or cfg.path.pretrain_network_g
    if not ckpt:
        raise CheckpointError(f"no checkpoint: give --ckpt or path.pretrain_network_g; {OFFICIAL_SR_HINT}")
    block = cfg.datasets.val
    if opts.data_root is not None:
        block = with_roots(block or ValDataConfig(), opts.data_root)
    if block is None:
        raise ConfigError("the config has no datasets.val section; give the clips with --data")
    clips = open_clips(block, cfg.network_g.out_size, "datasets.val", need_gt=False)
    if block.max_clips is not None:
        clips = clips[:block.max_clips]
    device = resolve_device(opts.device)
    model = load_temporal_sr(ckpt, which=cfg.path.param_key_g or "auto", config=cfg.network_g)  # type: ignore[arg-type]
    model.eval().to(device)
    val = cfg.val or ValConfig()
    lpips = load_lpips(val.metrics, opts.lpips_alexnet, opts.lpips_lin, device)
    out = Path(opts.save_dir) / cfg.name
    print(f"Super-resolving {len(clips)} clips into {out} on {device}")
    means, per_clip = evaluate_clips(model, clips, val, block.val_first_frame, lpips, out, opts.batch_size, "test")
    report = {"checkpoint": str(ckpt), "clips": len(clips), "metrics": means, "per_clip": per_clip}
    if means:
        def finite(d: dict) -> dict:  # strict JSON: a metric with no value is null
            return {k: finite(v) if isinstance(v, dict) else (v if math.isfinite(v) else None) for k, v in d.items()}

        with atomic_path(out / "metrics.json") as tmp:
            tmp.write_text(json.dumps({**report, "metrics": finite(means), "per_clip": finite(per_clip)}, indent=2))
        print(", ".join(f"{k} {v:.4g}" for k, v in means.items()))
    return report
