"""Temporal super-resolution training (reference section 5), its validation, and the seed entry.

One loop, readable top to bottom; per iteration:
  lr from the cosine schedule -> the network on a batch of LQ clips -> L1 + VGG19
  perceptual + style against the GT clips -> skip the step if the loss (any rank's)
  or the gradient is not finite -> Adam -> EMA update of the weights.
The StyleGAN2 decoder (and whatever `train.opt_rm_param` names) stays frozen, and so
do the auxiliary `toRGB` heads, which the forward pass never uses (DDP requires every
trainable parameter to take part).

Checkpoints are the BasicSR files `enhance` reads, `{"params": raw weights,
"params_ema": EMA weights, "talkingface": {config}}`, plus the resume state (Adam,
iteration, data position, every rank's RNG) under the extra key "resume". They are
written atomically as <run>/net_g_<iteration>.pth and read back with
torch.load(weights_only=True). `torchrun` runs the loop on many processes (DDP; gloo
on CPU, NCCL on GPU); rank 0 logs, validates and saves.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import random
import re
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from talkingface.checkpoints.official import read_checkpoint
from talkingface.checkpoints.sr import (META_KEY, check_sr_state, config_from_checkpoint, init_from_gfpgan_v13,
                                        is_temporal_key, load_temporal_sr, read_sr_weights, save_temporal_sr)
from talkingface.data.sr_clips import SRClip, SRClipDataset, iter_clip_frames, scan_sr_clips, to_tensor
from talkingface.errors import CheckpointError, ConfigError, DataError, TalkingFaceError
from talkingface.losses.sr import SRLoss
from talkingface.metrics.image import PSNR_CAP_DB, psnr, ssim
from talkingface.models.temporal_sr import TemporalSRNet
from talkingface.sr_config import (METRIC_TYPES, ClipFolders, SchedulerConfig, SRConfig, TrainDataConfig, ValConfig,
                                   ValDataConfig, load_sr_config, validate_sr_config)
from talkingface.training.checkpointing import remove_partials
from talkingface.training.common import autocast, gather_rng, load_vgg, mixed_precision_dtype, seed_everything
from talkingface.training.distributed import DistInfo, any_rank, init_distributed, mean_over_ranks, shutdown_distributed
from talkingface.training.logging import TrainLogger
from talkingface.training.state import restore_rng
from talkingface.utils.atomic import atomic_path
from talkingface.utils.device import resolve_device
from talkingface.utils.paths import refuse_overwrite
from talkingface.utils.png import save_png

CKPT_NAME = re.compile(r"^net_g_(\d+)\.pth$")
GFPGAN_HINT = ("download GFPGANv1.3.pth (the GFPGAN v1.3 release, github.com/TencentARC/GFPGAN) and point "
               "network_g.GFPGANv1_load_path (or --init-ckpt) at it; set GFPGANv1_load_path: ~ to train from "
               "random weights instead")
# Never trained: the forward pass does not use the auxiliary RGB heads (kept for checkpoint compatibility).
UNUSED_PREFIXES = ("toRGB.",)


class SRTrainingError(TalkingFaceError):
    """Training cannot go on (e.g. the loss kept being NaN)."""


@dataclass
class SRTrainOptions:
    config: str
    out_dir: str | None = None  # default: saved/ckpt_sr/<name>
    resume: str | None = None  # a checkpoint path, or "auto": the newest resumable one in out_dir
    init_ckpt: str | None = None  # GFPGANv1.3 or temporal SR weights to start from (overrides the config)
    data_root: str | None = None  # make-sr-data folder (<clip>/lq, <clip>/gt); overrides datasets.train
    val_root: str | None = None  # the same for validation; overrides datasets.val
    no_val: bool = False
    device: str = "auto"
    mixed_precision: bool = False  # fp16 + GradScaler on CUDA, bf16 autocast on CPU (`mixed_precision_dtype`)
    force: bool = False  # keep it even where the device only emulates it
    max_steps: int | None = None  # stop (with a checkpoint) after this many iterations in total
    total_iter: int | None = None  # overrides train.total_iter (and a single scheduler period with it)
    batch_size: int | None = None  # clips per process and step; overrides batch_size_per_gpu
    ckpt_every: int | None = None  # overrides logger.save_checkpoint_freq
    log_every: int | None = None  # overrides logger.print_freq
    image_every: int | None = None  # overrides logger.image_freq
    val_every: int | None = None  # overrides val.val_freq
    vgg19: str | None = None  # VGG19 ImageNet weights file; overrides train.vgg19_weights
    random_vgg: bool = False  # smoke tests only: perceptual/style losses on an untrained VGG19
    lpips_alexnet: str | None = None  # LPIPS weights for validation (see talkingface.metrics.lpips)
    lpips_lin: str | None = None
    max_bad_steps: int = 10  # consecutive non-finite steps tolerated before stopping
    num_workers: int | None = None  # overrides num_worker_per_gpu


@dataclass
class SRTrainResult:
    out_dir: Path
    last_checkpoint: Path | None
    iterations: int
    history: list[dict[str, float]]  # per-iteration losses, mean over ranks
    local_history: list[dict[str, float]] = field(default_factory=list, repr=False)  # this rank's own
    validations: list[dict[str, float]] = field(default_factory=list)  # {"iteration", metric: value}
    model: TemporalSRNet | None = field(default=None, repr=False)
    ema: TemporalSRNet | None = field(default=None, repr=False)


# --------------------------------------------------------------------------- set-up
def _roots(block: ClipFolders, root: str | None) -> ClipFolders:
    """A --data-root override: both roots there, in the make-sr-data layout unless prefixes are set."""
    if root is None:
        return block
    return replace(block, dataroot_lq=root, dataroot_gt=root, lq_temp=None, gt_temp=None,
                   lq_prefix=block.lq_prefix or "lq", gt_prefix=block.gt_prefix or "gt")


def apply_overrides(cfg: SRConfig, opts: SRTrainOptions) -> SRConfig:
    t, log, data = cfg.train, cfg.logger, cfg.datasets
    if opts.total_iter is not None:
        if opts.total_iter < 1:
            raise ConfigError("--total-iter must be at least 1")
        sched = t.scheduler
        if len(sched.periods) == 1 and sched.periods[0] == t.total_iter:  # the schedule spans the run: keep it so
            sched = replace(sched, periods=[opts.total_iter])
        t = replace(t, total_iter=opts.total_iter, scheduler=sched)
    if opts.vgg19:
        t = replace(t, vgg19_weights=opts.vgg19)
    log = replace(log, save_checkpoint_freq=opts.ckpt_every or log.save_checkpoint_freq,
                  print_freq=opts.log_every or log.print_freq, image_freq=opts.image_every or log.image_freq)
    train = data.train
    if train is None and opts.data_root is None:
        raise ConfigError("the config has no datasets.train section; give the data with --data")
    train = _roots(train or TrainDataConfig(gt_size=cfg.network_g.out_size), opts.data_root)
    if opts.batch_size is not None:
        train = replace(train, batch_size_per_gpu=opts.batch_size)
    if opts.num_workers is not None:
        train = replace(train, num_worker_per_gpu=opts.num_workers)
    val_data, val = data.val, cfg.val
    if opts.no_val:
        val_data, val = None, None
    elif opts.val_root is not None:
        val_data = _roots(val_data or ValDataConfig(), opts.val_root)
        val = val or ValConfig()
    elif (opts.data_root is not None and val_data is not None and data.train is not None
          and (val_data.dataroot_lq, val_data.dataroot_gt) == (data.train.dataroot_lq, data.train.dataroot_gt)):
        val_data = _roots(val_data, opts.data_root)  # the config validates on its training clips: so does --data
    if val is not None and opts.val_every:
        val = replace(val, val_freq=opts.val_every)
    cfg = replace(cfg, train=t, logger=log, datasets=replace(data, train=train, val=val_data), val=val)
    validate_sr_config(cfg)
    return cfg


def open_clips(block: ClipFolders, gt_side: int, where: str, need_gt: bool) -> list[SRClip]:
    lq_prefix, gt_prefix = block.prefixes(where)
    gt_root = block.dataroot_gt
    if block.dataroot_lq is None:
        raise ConfigError(f"{where}.dataroot_lq is not set; give the clips with --data")
    if need_gt and gt_root is None:
        raise ConfigError(f"{where}.dataroot_gt is not set; training needs ground truth")
    return scan_sr_clips(block.dataroot_lq, gt_root, lq_prefix, gt_prefix, scale=2, gt_side=gt_side)


def freeze_untrained(model: TemporalSRNet, cfg: SRConfig) -> list[str]:
    """requires_grad False on the decoder (fix_decoder), opt_rm_param matches and unused heads; their names."""
    frozen = []
    for name, p in model.named_parameters():
        if ((cfg.network_g.fix_decoder and name.startswith("stylegan_decoder."))
                or any(k in name for k in cfg.train.opt_rm_param) or name.startswith(UNUSED_PREFIXES)):
            p.requires_grad_(False)
        if not p.requires_grad:
            frozen.append(name)
    return frozen


def param_groups(model: TemporalSRNet, lr: float, recurrent_lr_mul: float) -> list[dict]:
    """The reference's groups: decoder-side temporal blocks at lr x recurrent_lr_mul, the rest at lr."""
    normal = [p for n, p in model.named_parameters() if p.requires_grad and "recurrent" not in n]
    recurrent = [p for n, p in model.named_parameters() if p.requires_grad and "recurrent" in n]
    groups = [{"params": normal, "lr": lr, "initial_lr": lr, "name": "net"}]
    if recurrent:
        groups.append({"params": recurrent, "lr": lr * recurrent_lr_mul, "initial_lr": lr * recurrent_lr_mul,
                       "name": "recurrent"})
    return groups


def scheduled_lr(iteration: int, base: float, sched: SchedulerConfig, warmup_iter: int = -1) -> float:
    """The lr of 1-based `iteration`: linear warm-up, then cosine from base to eta_min over each
    period, restarting at restart_weight x base (BasicSR's CosineAnnealingRestartLR, stepped per iteration)."""
    if warmup_iter > 0 and iteration < warmup_iter:
        return base * iteration / warmup_iter
    start = 0
    for period, weight in zip(sched.periods, sched.restart_weights):
        if iteration <= start + period:
            progress = (iteration - start) / period
            return sched.eta_min + weight * 0.5 * (base - sched.eta_min) * (1 + math.cos(math.pi * progress))
        start += period
    return sched.eta_min


@torch.no_grad()
def update_ema(ema: TemporalSRNet, model: TemporalSRNet, decay: float) -> None:
    """ema = decay * ema + (1 - decay) * weights, for the trained parameters (the others never change)."""
    for pe, pm in zip(ema.parameters(), model.parameters()):
        if pm.requires_grad:
            pe.lerp_(pm.detach(), 1.0 - decay)


def _load_checked(net: TemporalSRNet, sd: object, path: str | Path, what: str) -> None:
    if not isinstance(sd, dict):
        raise CheckpointError(f"has no {what!r} weights", path)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    expected = net.state_dict()
    check_sr_state(expected, sd, path)
    net.load_state_dict({k: v.to(expected[k].dtype) for k, v in sd.items()})


def build_networks(cfg: SRConfig, init_ckpt: str | None, main: bool) -> tuple[TemporalSRNet, TemporalSRNet, str]:
    """(network, its EMA copy, where the weights came from), as the reference starts.

    A temporal SR checkpoint (`--init-ckpt` or path.pretrain_network_g) gives both weight
    sets (params_ema, when present, for the EMA); a GFPGANv1.3 file (it has no temporal
    blocks; network_g.GFPGANv1_load_path, or the same flags) gives both the same
    weights, with the temporal blocks at their identity init; else random weights.
    """
    source = init_ckpt or cfg.path.pretrain_network_g
    gfpgan = cfg.gfpgan_init
    which = cfg.path.param_key_g or "auto"
    if source:
        sd, _, ckpt = read_sr_weights(source, which)  # type: ignore[arg-type]
        if not any(is_temporal_key(k) for k in sd):  # GFPGANv1.3-style: no temporal blocks
            source, gfpgan = None, source
        else:
            # As BasicSR: the raw weights from `params` (or param_key_g), the EMA from `params_ema`.
            raw_key = cfg.path.param_key_g or ("params" if isinstance(ckpt.get("params"), dict) else "params_ema")
            model = TemporalSRNet(cfg.network_g)
            _load_checked(model, ckpt.get(raw_key), source, raw_key)
            ema = copy.deepcopy(model)
            if isinstance(ckpt.get("params_ema"), dict):
                _load_checked(ema, ckpt["params_ema"], source, "params_ema")
            return model, ema, f"temporal SR weights {source}"
    if gfpgan:
        if not Path(gfpgan).is_file():
            raise CheckpointError(f"GFPGANv1.3 weights not found; {GFPGAN_HINT}", gfpgan)
        model = init_from_gfpgan_v13(gfpgan, cfg.network_g, which=which)  # type: ignore[arg-type]
        origin = f"GFPGANv1.3 weights {gfpgan} (temporal blocks at their identity init)"
    else:
        model = TemporalSRNet(cfg.network_g)
        origin = "random weights"
        if main:
            warnings.warn("no GFPGANv1.3 initialisation (network_g.GFPGANv1_load_path): training from random "
                          "weights; the reference starts from GFPGANv1.3")
    if cfg.decoder_init:
        sd, _, _ = read_sr_weights(cfg.decoder_init, "auto")
        try:
            model.stylegan_decoder.load_state_dict(sd)
        except RuntimeError as e:
            raise CheckpointError(f"not StyleGAN2 decoder weights for this network ({str(e).splitlines()[0]})",
                                  cfg.decoder_init) from None
        origin += f", decoder from {cfg.decoder_init}"
    return model, copy.deepcopy(model), origin


def list_sr_checkpoints(folder: Path) -> list[Path]:
    found = [(int(m[1]), p) for p in folder.glob("net_g_*.pth") if (m := CKPT_NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def find_sr_resume(resume: str | None, out_dir: Path) -> tuple[Path, dict] | None:
    """None, or (path, checkpoint) for `resume` = a path or 'auto' (the newest resumable in out_dir)."""
    if resume is None:
        return None
    if resume == "auto":
        for path in reversed(list_sr_checkpoints(out_dir) if out_dir.is_dir() else []):
            try:
                ckpt = read_checkpoint(path)
            except CheckpointError as e:
                warnings.warn(f"skipping unreadable checkpoint: {e}")
                continue
            if "resume" in ckpt:
                return path, ckpt
        return None
    ckpt = read_checkpoint(resume)
    if not isinstance(ckpt.get("resume"), dict):
        raise CheckpointError("has no resume state (only checkpoints written by train-sr can be resumed)", resume)
    return Path(resume), ckpt


# --------------------------------------------------------------------------- validation
@dataclass
class ClipScorer:
    """Streams (prediction, ground truth) frame pairs of one clip into the configured metrics."""

    metrics: dict[str, object]  # name -> MetricConfig
    lpips: object | None = None  # a loaded LpipsMetric, or None (LPIPS skipped)
    values: dict[str, list[float]] = field(default_factory=dict)
    _prev: tuple[np.ndarray, np.ndarray] | None = None
    _count: int = 0

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        from talkingface.metrics.temporal import consistent_flow, pair_warping_error

        for name, m in self.metrics.items():
            kind = METRIC_TYPES[m.type]
            b = m.crop_border
            p, g = (pred[b:-b, b:-b], gt[b:-b, b:-b]) if b else (pred, gt)
            if kind == "psnr":
                value = min(psnr(p, g), PSNR_CAP_DB)
            elif kind == "ssim":
                value = ssim(p, g)
            elif kind == "lpips":
                if self.lpips is None:
                    continue
                value = float(self.lpips.distances(p[None], g[None])[0])
            else:  # warp_error, from the previous frame (none for the first)
                if self._prev is None or (m.frame_limit is not None and self._count >= m.frame_limit):
                    continue
                pp, gp = self._prev
                pp, gp = (pp[b:-b, b:-b], gp[b:-b, b:-b]) if b else (pp, gp)
                value = pair_warping_error(pp, p, consistent_flow(gp, g))
            self.values.setdefault(name, []).append(value)
        self._prev = (pred, gt)
        self._count += 1

    def means(self) -> dict[str, float]:
        return {name: float(np.nanmean(v)) if np.isfinite(v).any() else math.nan for name, v in self.values.items()}


def load_lpips(metrics: dict, alexnet: str | None, lin: str | None, device: torch.device):
    """The LPIPS network when a metric asks for it and its weights are found; else None, said once."""
    if not any(METRIC_TYPES[m.type] == "lpips" for m in metrics.values()):
        return None
    from talkingface.metrics.lpips import LpipsMetric, find_lpips_weights

    weights, why = find_lpips_weights(alexnet, lin)
    if weights is None:
        print(why)
        return None
    return LpipsMetric(weights, device)


def evaluate_clips(model: TemporalSRNet, clips: list[SRClip], val: ValConfig, limit: int | None,
                   lpips=None, save_dir: Path | None = None, batch_size: int = 1, desc: str = "validate",
                   show_progress: bool = True) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Super-resolve each clip (windowed, streaming) and score it; (means over clips, per-clip means).

    Output frames are rounded to uint8, as BasicSR's tensor2img does, before scoring and saving.
    """
    from talkingface.recipes.enhance import iter_planned, plan_windows, to_uint8

    if val.chunking == "reference":
        plan = plan_windows(model, window=val.temp_psz, chunking="reference")
    else:
        plan = plan_windows(model, window=2 * model.temporal_radius + val.temp_psz)
    was_training = model.training
    model.eval()
    per_clip: dict[str, dict[str, float]] = {}
    total = sum(len(c) if limit is None else min(limit, len(c)) for c in clips)
    with tqdm(total=total, unit="frame", desc=desc, dynamic_ncols=True, disable=not show_progress) as bar:
        for clip in clips:
            scorer = ClipScorer(val.metrics if clip.gt is not None else {}, lpips)
            names = clip.frame_names()
            frames = (to_tensor(px) for px in iter_clip_frames(clip, limit))
            for i, out in enumerate(iter_planned(model, frames, plan, batch_size)):
                pred = to_uint8(out)
                if clip.gt is not None and val.metrics:
                    scorer.add(pred, clip.read_gt(i))
                if save_dir is not None:
                    save_png(save_dir / clip.name / f"{names[i]}.png", pred)
                bar.update(1)
            per_clip[clip.name] = scorer.means()
    model.train(was_training)
    names = [n for n in val.metrics if any(n in s for s in per_clip.values())]
    means = {n: float(np.nanmean([s[n] for s in per_clip.values() if n in s])) for n in names}
    return means, per_clip


# --------------------------------------------------------------------------- training
def run_sr_training(opts: SRTrainOptions) -> SRTrainResult:
    cfg = apply_overrides(load_sr_config(opts.config), opts)
    device = resolve_device(opts.device)
    dist_info = init_distributed(device.type)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    try:
        return _train(cfg, opts, device, dist_info)
    finally:
        shutdown_distributed()


def _train(cfg: SRConfig, opts: SRTrainOptions, device: torch.device, dist_info: DistInfo) -> SRTrainResult:
    main = dist_info.is_main
    t, log, data = cfg.train, cfg.logger, cfg.datasets.train
    out_dir = Path(opts.out_dir or Path("saved") / "ckpt_sr" / cfg.name)
    refuse_overwrite(out_dir, opts.init_ckpt, opts.config, opts.data_root, opts.val_root,
                     None if opts.resume in (None, "auto") else opts.resume)
    out_size = cfg.network_g.out_size
    total_iter = t.total_iter
    stop_at = total_iter if opts.max_steps is None else min(opts.max_steps, total_iter)

    # ---- everything that can fail on user input fails here, before any training
    if opts.init_ckpt and not Path(opts.init_ckpt).is_file():
        raise CheckpointError("checkpoint to start from (--init-ckpt) not found", opts.init_ckpt)
    train_clips = open_clips(data, out_size, "datasets.train", need_gt=True)
    dataset = SRClipDataset(train_clips, data.num_frame, data.use_hflip, data.interval_list, data.random_reverse,
                            data.dataset_enlarge_ratio)
    val_clips: list[SRClip] = []
    if cfg.val is not None and cfg.datasets.val is not None and main:
        try:
            val_clips = open_clips(cfg.datasets.val, out_size, "datasets.val", need_gt=False)
        except DataError as e:
            raise DataError(f"{e.message} (validation data, datasets.val; --no-val trains without validation)",
                            e.path) from None
        if cfg.datasets.val.max_clips is not None:
            val_clips = val_clips[:cfg.datasets.val.max_clips]
    seed_everything(cfg.manual_seed)  # first: the initial (and a --random-vgg) network must match on every rank
    criterion_vgg = None
    p = t.perceptual_opt
    if p is not None and (p.perceptual_weight or p.style_weight):
        criterion_vgg = load_vgg(t.vgg19_weights, opts.random_vgg, device, warn=main)
    model, ema, origin = build_networks(cfg, opts.init_ckpt, main)
    frozen = freeze_untrained(model, cfg)
    model.to(device).train()
    ema.to(device).eval().requires_grad_(False)
    criterion = SRLoss(t.pixel_opt, p, criterion_vgg).to(device)
    lpips = load_lpips(cfg.val.metrics, opts.lpips_alexnet, opts.lpips_lin, device) if val_clips else None

    optim = torch.optim.Adam(param_groups(model, t.optim_g.lr, t.recurrent_lr_mul), lr=t.optim_g.lr,
                             betas=tuple(t.optim_g.betas), weight_decay=t.optim_g.weight_decay)
    amp_dtype = mixed_precision_dtype(device, opts.mixed_precision, opts.force, warn=main)
    use_scaler = amp_dtype == torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    # Each rank its own augmentation stream (the reference seeds seed + rank); the weights are already built.
    random.seed(cfg.manual_seed + dist_info.rank)
    np.random.seed(cfg.manual_seed + dist_info.rank)
    torch.manual_seed(cfg.manual_seed + dist_info.rank)

    # ---- resume
    iteration, epoch, epoch_step = 0, 0, 0
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        remove_partials(out_dir)
    resume = find_sr_resume(opts.resume or cfg.path.resume_state, out_dir)
    if resume is not None:
        path, ckpt = resume
        state = ckpt["resume"]
        stored = config_from_checkpoint(ckpt, path)
        if isinstance(ckpt.get(META_KEY), dict) and stored != cfg.network_g:
            raise CheckpointError("was trained with a different network_g config than this one", path)
        _load_checked(model, ckpt.get("params"), path, "params")
        _load_checked(ema, ckpt.get("params_ema"), path, "params_ema")
        try:
            optim.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as e:
            raise CheckpointError(f"its optimizer state does not fit this run ({e})", path) from None
        scaler.load_state_dict(state["scaler"])
        iteration, epoch, epoch_step = int(state["iteration"]), int(state["epoch"]), int(state["epoch_step"])
        rng = state["rng"]
        restore_rng(rng[dist_info.rank] if dist_info.rank < len(rng) else rng[0])
        if main:
            print(f"Resuming from {path}: iteration {iteration}")
    elif main:
        print(f"Starting from {origin}")
    if main:
        with atomic_path(out_dir / "config.yaml") as tmp:
            tmp.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        print(f"Training on {len(dataset.clips)} clips ({len(dataset)} items per epoch), {device}, "
              f"{dist_info.world_size} process(es); frozen: {_summarize(frozen)}")

    net = model
    if dist_info.enabled:
        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    logger = TrainLogger(out_dir / "events" if main and log.use_tb_logger else None)
    per_rank = data.batch_size_per_gpu
    sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=dist_info.world_size, rank=dist_info.rank,
                                                  shuffle=data.use_shuffle, seed=cfg.manual_seed)
    steps_per_epoch = math.ceil(math.ceil(len(dataset) / dist_info.world_size) / per_rank)
    bar = tqdm(total=stop_at, initial=min(iteration, stop_at), unit="it", desc="train-sr", disable=not main,
               dynamic_ncols=True)
    val_every = int(cfg.val.val_freq) if cfg.val is not None else 0
    ckpt_every = int(log.save_checkpoint_freq)

    history: list[dict[str, float]] = []
    local_history: list[dict[str, float]] = []
    validations: list[dict[str, float]] = []
    last_ckpt: Path | None = None
    bad_streak = 0

    def save() -> Path:
        rng = gather_rng(dist_info)  # every rank's RNG, so each rank resumes its own stream
        path = out_dir / f"net_g_{iteration}.pth"
        if main:
            save_temporal_sr(path, params=model, params_ema=ema, config=cfg.network_g, extra={"resume": {
                "iteration": iteration, "epoch": epoch, "epoch_step": epoch_step,
                "optimizer": optim.state_dict(), "scaler": scaler.state_dict(), "rng": rng,
                "world_size": dist_info.world_size, "total_iter": total_iter}})
        return path

    def skip(reason: str) -> None:
        nonlocal bad_streak
        bad_streak += 1
        optim.zero_grad(set_to_none=True)
        if main:
            warnings.warn(f"iteration {iteration + 1}: {reason}, step skipped ({bad_streak} in a row)")
        if bad_streak >= opts.max_bad_steps:
            raise SRTrainingError(f"{reason} for {bad_streak} iterations in a row (at iteration {iteration + 1}); "
                                  "stopped. "
                                  f"Last good checkpoint: {last_ckpt or 'none written yet'}")

    start = time.perf_counter()
    while iteration < stop_at:
        if epoch_step >= steps_per_epoch:
            epoch, epoch_step = epoch + 1, 0
        sampler.set_epoch(epoch)
        order = list(sampler)[epoch_step * per_rank:]  # resume mid-epoch at the same data position
        loader = torch.utils.data.DataLoader(dataset, batch_size=per_rank, sampler=order,
                                             num_workers=data.num_worker_per_gpu, drop_last=False)
        for batch in loader:
            for group in optim.param_groups:
                group["lr"] = scheduled_lr(iteration + 1, group["initial_lr"], t.scheduler, t.warmup_iter)
            lq, gt = batch["lq"].to(device), batch["gt"].to(device)  # B x T x 3 x S x S, B x T x 3 x 2S x 2S
            with autocast(device, amp_dtype):
                pred = net(lq)
                losses = criterion(pred, gt)
            total = sum(losses.values())
            epoch_step += 1
            if any_rank(not torch.isfinite(total).item(), dist_info, device):
                skip("non-finite loss")
                continue
            optim.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            if not use_scaler:  # (the scaler skips non-finite steps itself)
                grads = [q.grad for q in model.parameters() if q.grad is not None]
                if grads and not torch.stack([g.isfinite().all() for g in grads]).all().item():
                    skip("non-finite gradient")  # DDP averaged the gradients: every rank agrees
                    continue
            scaler.step(optim)
            scaler.update()
            if t.ema_decay > 0:
                update_ema(ema, model, t.ema_decay)
            else:
                ema.load_state_dict(model.state_dict())
            bad_streak = 0
            iteration += 1
            local = {k: float(v.detach()) for k, v in losses.items()}
            local_history.append(local)
            logged = mean_over_ranks(local, dist_info, device)
            history.append(logged)
            if main:
                bar.update(1)
                bar.set_postfix({k: f"{v:.3g}" for k, v in logged.items()}, refresh=False)
                if iteration % log.print_freq == 0 or iteration == 1:
                    logger.scalars(logged, iteration, "loss/")
                    logger.scalars({f"lr/{g['name']}": g["lr"] for g in optim.param_groups}, iteration)
                if iteration % log.image_freq == 0 or iteration == 1:
                    up = F.interpolate(lq[0].float(), size=gt.shape[-2:], mode="bilinear", align_corners=False)
                    logger.image_grid("train", {"lq": up, "output": pred[0], "gt": gt[0]}, iteration)
            if val_clips and iteration % val_every == 0:
                means, _ = evaluate_clips(
                    ema, val_clips, cfg.val, cfg.datasets.val.val_first_frame, lpips,
                    out_dir / "visualization" / f"{iteration:08d}" if cfg.val.save_img else None)
                validations.append({"iteration": iteration, **means})
                logger.scalars(means, iteration, "val/")
                bar.write(f"validation at {iteration}: " + ", ".join(f"{k} {v:.4g}" for k, v in means.items()))
            if val_every and dist_info.enabled and iteration % val_every == 0:
                torch.distributed.barrier()  # the other ranks wait for rank 0's validation
            if iteration % ckpt_every == 0:
                last_ckpt = save()
            if iteration >= stop_at:
                break
        else:
            epoch, epoch_step = epoch + 1, 0
    if iteration > 0 and (last_ckpt is None or last_ckpt.name != f"net_g_{iteration}.pth"):
        last_ckpt = save()
    bar.close()
    logger.close()
    if main:
        rate = len(history) / max(time.perf_counter() - start, 1e-9)
        print(f"Trained {len(history)} iterations ({rate:.2f} it/s); last checkpoint: {last_ckpt}")
    return SRTrainResult(out_dir, last_ckpt, iteration, history, local_history, validations, model, ema)


def _summarize(names: list[str]) -> str:
    tops = sorted({n.split(".")[0] for n in names})
    return ", ".join(f"{top}.*" for top in tops) or "nothing"


# --------------------------------------------------------------------------- test (the seed's --task Test)
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
    from talkingface.checkpoints.sr import OFFICIAL_SR_HINT

    cfg = load_sr_config(opts.config)
    ckpt = opts.ckpt or cfg.path.pretrain_network_g
    if not ckpt:
        raise CheckpointError(f"no checkpoint: give --ckpt or path.pretrain_network_g; {OFFICIAL_SR_HINT}")
    block = cfg.datasets.val
    if opts.data_root is not None:
        block = _roots(block or ValDataConfig(), opts.data_root)
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


# --------------------------------------------------------------------------- seed entry
TRAIN_TASKS = ("train", "pretrain", "meta")  # "meta" is the seed parser's default: --task left out means train
TEST_TASKS = ("test", "eval")


def run_seed_sr(args: argparse.Namespace) -> None:
    """`python run_talkingface.py --model=metaportraitsr --config <sr yaml> [--ckpt ...] [--task Train|Test]`.

    Train: `--ckpt` is the starting point (GFPGANv1.3 or a temporal SR checkpoint);
    the training flags of `add_train_arguments` apply. Test: enhances the config's
    datasets.val clips (or --data) with `--ckpt` into --save_dir and scores them; with
    an `--input` (frames folder or video) it runs `enhance` on that instead.
    """
    task = str(getattr(args, "task", None) or "train").lower()
    get = lambda name: getattr(args, name, None)  # noqa: E731 - the seed parser may lack some flags
    if task in TRAIN_TASKS:
        for flag, name in (("--warp-ckpt", "warp_ckpt"), ("--epochs", "epochs"), ("--skip-bad", "skip_bad")):
            if get(name):
                raise TalkingFaceError(f"{flag} does not apply to --model=metaportraitsr (it trains for "
                                       "train.total_iter iterations)")
        run_sr_training(SRTrainOptions(
            config=args.config, init_ckpt=get("ckpt"), out_dir=get("out_dir"), resume=get("resume"),
            data_root=get("data_root"), device=get("device") or "auto", mixed_precision=bool(get("fp16")),
            force=bool(get("force")), max_steps=get("max_steps"), ckpt_every=get("ckpt_every"),
            log_every=get("log_every"), image_every=get("image_every"), vgg19=get("vgg19"),
            random_vgg=bool(get("random_vgg")), num_workers=get("num_workers")))
    elif task in TEST_TASKS:
        if get("input"):
            from talkingface.recipes.enhance import EnhanceOptions, run_enhance

            if not get("ckpt"):
                raise TalkingFaceError("--ckpt is required to enhance --input")
            run_enhance(EnhanceOptions(input=args.input, ckpt=args.ckpt, out=get("save_dir") or "./saved",
                                       batch_size=get("batch_size") or 1, device=get("device") or "auto",
                                       precision=get("precision") or "fp32", force=bool(get("force"))))
            return
        run_sr_test(SRTestOptions(config=args.config, ckpt=get("ckpt"), save_dir=get("save_dir") or "./saved",
                                  data_root=get("data_root"), device=get("device") or "auto",
                                  batch_size=get("batch_size") or 1))
    else:
        raise TalkingFaceError(f"--task must be Train or Test for --model=metaportraitsr, not {args.task!r}")
