"""Temporal super-resolution training (reference section 5): `talkingface train-sr`.

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

Set-up (clips, networks, schedule, EMA) is talkingface.training.sr_setup; validation
talkingface.training.sr_validation; the seed's --task Test talkingface.recipes.sr_eval;
the seed's `--model=metaportraitsr` adapter talkingface.seed_cli.
"""
from __future__ import annotations

import math
import random
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from talkingface.checkpoints.sr import META_KEY, config_from_checkpoint, save_temporal_sr
from talkingface.config.sr import (SRConfig, TrainDataConfig, ValConfig, ValDataConfig, load_sr_config,
                                   validate_sr_config)
from talkingface.data.sr_clips import SRClip, SRClipDataset
from talkingface.errors import CheckpointError, ConfigError, DataError, TalkingFaceError
from talkingface.losses.sr import SRLoss
from talkingface.models.temporal_sr import TemporalSRNet
from talkingface.training.checkpointing import find_resume, list_sr_checkpoints, remove_partials
from talkingface.training.common import autocast, gather_rng, load_vgg, mixed_precision_dtype, seed_everything
from talkingface.training.distributed import DistInfo, any_rank, init_distributed, mean_over_ranks, shutdown_distributed
from talkingface.training.logging import TrainLogger
from talkingface.training.sr_setup import (build_networks, freeze_untrained, load_checked, open_clips, param_groups,
                                           scheduled_lr, update_ema, with_roots)
from talkingface.training.sr_validation import evaluate_clips, load_lpips
from talkingface.training.runs import discard_if_unfinished, run_folder, write_run_record
from talkingface.training.state import restore_rng
from talkingface.utils.device import resolve_device
from talkingface.utils.options import device_option, force_option, fp16_option, option, vgg19_option
from talkingface.utils.paths import refuse_overwrite


# --------------------------------------------------------------------------- options
class SRTrainingError(TalkingFaceError):
    """Training cannot go on (e.g. the loss kept being NaN)."""


@dataclass
class SRTrainOptions:
    config: str = option(help="Temporal SR YAML (e.g. temporal_sr_512.yaml; the reference's BasicSR option files "
                              "parse too).")
    out_dir: str | None = option(None, "Checkpoint/log folder (default: saved/ckpt_sr/<name>).", flag="--out")
    resume: str | None = option(None, "Checkpoint to resume, or 'auto' for the newest resumable one in --out.")
    init_ckpt: str | None = option(None, "Start from GFPGANv1.3.pth or a temporal SR checkpoint (overrides the "
                                         "config).", flag="--init", aliases=("--init-ckpt",))
    data_root: str | None = option(None, "make-sr-data folder (<clip>/lq, <clip>/gt); overrides datasets.train.",
                                   flag="--data")
    val_root: str | None = option(None, "The same for validation; overrides datasets.val.", flag="--val-data")
    no_val: bool = option(False, "Train without validation.")
    device: str = device_option()
    mixed_precision: bool = fp16_option()  # `mixed_precision_dtype`
    force: bool = force_option()
    max_steps: int | None = option(None, "Stop after this many iterations in total (with a checkpoint).")
    total_iter: int | None = option(None, "Override train.total_iter (and the cosine period).")
    batch_size: int | None = option(None, "Clips per process and step (batch_size_per_gpu).")
    ckpt_every: int | None = option(None, "Override logger.save_checkpoint_freq.")
    log_every: int | None = option(None, "Override logger.print_freq.")
    image_every: int | None = option(None, "Override logger.image_freq.")
    val_every: int | None = option(None, "Override val.val_freq.")
    vgg19: str | None = vgg19_option()  # overrides train.vgg19_weights
    random_vgg: bool = option(False, "Smoke tests only: untrained VGG19 for the perceptual/style losses.")
    lpips_alexnet: str | None = option(None, "AlexNet weights for the LPIPS validation metric (see "
                                             "talkingface.metrics.lpips).")
    lpips_lin: str | None = option(None, "LPIPS v0.1 linear layers (alex.pth).")
    max_bad_steps: int = 10  # consecutive non-finite steps tolerated before stopping
    num_workers: int | None = option(None, "DataLoader workers (num_worker_per_gpu).")


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
    train = with_roots(train or TrainDataConfig(gt_size=cfg.network_g.out_size), opts.data_root)
    if opts.batch_size is not None:
        train = replace(train, batch_size_per_gpu=opts.batch_size)
    if opts.num_workers is not None:
        train = replace(train, num_worker_per_gpu=opts.num_workers)
    val_data, val = data.val, cfg.val
    if opts.no_val:
        val_data, val = None, None
    elif opts.val_root is not None:
        val_data = with_roots(val_data or ValDataConfig(), opts.val_root)
        val = val or ValConfig()
    elif (opts.data_root is not None and val_data is not None and data.train is not None
          and (val_data.dataroot_lq, val_data.dataroot_gt) == (data.train.dataroot_lq, data.train.dataroot_gt)):
        val_data = with_roots(val_data, opts.data_root)  # the config validates on its training clips: so does --data
    if val is not None and opts.val_every:
        val = replace(val, val_freq=opts.val_every)
    cfg = replace(cfg, train=t, logger=log, datasets=replace(data, train=train, val=val_data), val=val)
    validate_sr_config(cfg)
    return cfg


# --------------------------------------------------------------------------- training
def run_sr_training(opts: SRTrainOptions) -> SRTrainResult:
    cfg = apply_overrides(load_sr_config(opts.config), opts)
    device = resolve_device(opts.device)
    dist_info = init_distributed(device.type)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    try:
        with discard_if_unfinished():  # a run failing before its first checkpoint leaves no folder
            return _train(cfg, opts, device, dist_info)
    finally:
        shutdown_distributed()


def _train(cfg: SRConfig, opts: SRTrainOptions, device: torch.device, dist_info: DistInfo) -> SRTrainResult:
    main = dist_info.is_main
    t, log, data = cfg.train, cfg.logger, cfg.datasets.train
    out_dir = Path(opts.out_dir or Path("saved") / "ckpt_sr" / cfg.name)
    refuse_overwrite(out_dir, opts.init_ckpt, opts.config, opts.data_root, opts.val_root,
                     None if opts.resume in (None, "auto") else opts.resume)
    out_dir = run_folder(out_dir, opts.out_dir is not None, opts.resume or cfg.path.resume_state, dist_info)
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
    resume = find_resume(opts.resume or cfg.path.resume_state, out_dir, list_sr_checkpoints, "train-sr")
    if resume is not None:
        path, ckpt = resume
        state = ckpt["resume"]
        stored = config_from_checkpoint(ckpt, path)
        if isinstance(ckpt.get(META_KEY), dict) and stored != cfg.network_g:
            raise CheckpointError("was trained with a different network_g config than this one", path)
        load_checked(model, ckpt.get("params"), path, "params")
        load_checked(ema, ckpt.get("params_ema"), path, "params_ema")
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
        write_run_record(out_dir, cfg.to_dict(), opts, data.dataroot_lq, None if resume is None else resume[0])
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
