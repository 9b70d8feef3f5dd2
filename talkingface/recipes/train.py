"""Pretraining recipe: the warp stage, then the full stage (reference section 4).

One loop for both stages, readable top to bottom:
  G step: losses -> (scaled) backward -> nan_to_num -> clip 0.3 -> Adam
  D step (full stage): LSGAN loss on the detached prediction -> same guards -> Adam
Checkpoints are official-format files with resume state under extra keys, written
atomically every N iterations and at each epoch end. `torchrun` runs it on many
processes (DDP; gloo on CPU, NCCL on GPU); rank 0 logs and saves.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from talkingface.checkpoints.official import (
    generator_state, load_official_state, read_checkpoint, save_checkpoint, checkpoint_meta)
from talkingface.config import Config, load_config
from talkingface.data.shard_reader import open_frames
from talkingface.errors import CheckpointError, ConfigError, TrainingError
from talkingface.landmarks.scheme import get_scheme
from talkingface.losses.identity import IdentityLoss
from talkingface.losses.metaportrait import MetaPortraitLoss
from talkingface.models.build import build_discriminator, build_generator
from talkingface.models.generator import batch_inputs
from talkingface.training.batches import BatchSettings, training_batches
from talkingface.training.checkpointing import checkpoint_name, find_resume, remove_partials
from talkingface.training.common import autocast, gather_rng, load_vgg, mixed_precision_dtype, seed_everything
from talkingface.training.distributed import DistInfo, any_rank, init_distributed, mean_over_ranks, shutdown_distributed
from talkingface.training.logging import TrainLogger
from talkingface.training.optim import adam, generator_param_groups, sanitize_and_clip
from talkingface.training.runs import discard_if_unfinished, run_folder, write_run_record
from talkingface.training.state import restore_rng
from talkingface.training.validation import pick_frames, validate
from talkingface.utils.device import resolve_device
from talkingface.utils.options import device_option, force_option, fp16_option, option, vgg19_option
from talkingface.utils.paths import refuse_overwrite

STAGES = ("warp", "full")


@dataclass
class TrainOptions:
    config: str = option(help="Training YAML (official schema).")
    stage: str = option("warp", "Which stage: warp, then full.", choices=STAGES, required=True)
    out_dir: str | None = option(None, "Checkpoint/log folder (default: saved/ckpt_<stage>/<exp_name>).",
                                 flag="--out")
    resume: str | None = option(None, "Checkpoint to resume, or 'auto' for the newest resumable one in --out.")
    init_ckpt: str | None = option(None, "Start from this checkpoint's weights (not its optimiser state).",
                                   flag="--init", aliases=("--init-ckpt",))
    warp_ckpt: str | None = option(None, "Full stage: warp-stage checkpoint (overrides model.warp_ckpt).")
    data_root: str | None = option(None, "Dataset root, or a shard set: its folder or a brace pattern such as "
                                         "'shards/shard-{000000..000099}.tar' (overrides the config).", flag="--data")
    mixed_precision: bool = fp16_option()  # `mixed_precision_dtype`
    force: bool = force_option()
    device: str = device_option()
    max_steps: int | None = option(None, "Stop after this many iterations in total (with a checkpoint).")
    epochs: int | None = option(None, "Override train.epochs.")
    batch_size: int | None = option(None, "Global batch, split across ranks (overrides train.batch_size).")
    ckpt_every: int | None = option(None, "Override train.ckpt_save_iter_freq.")
    log_every: int | None = option(None, "Override train.print_freq (scalars).")
    image_every: int | None = option(None, "Override train.event_save_freq (image grids).")
    vgg19: str | None = vgg19_option()
    random_vgg: bool = option(False, "Smoke tests only: untrained VGG19 for the perceptual loss.")
    skip_bad: bool = option(False, "Skip unreadable frames, and truncated or corrupt shards, with a warning.")
    val_data: str | None = option(None, "Full stage: held-out dataset scored every train.eval_freq iterations "
                                        "(PSNR/SSIM/L1, as `talkingface evaluate`).")
    val_frames: int = 8  # frames of val_data scored each time
    max_bad_steps: int = 10  # consecutive non-finite losses tolerated before stopping
    num_workers: int = option(0, "DataLoader worker processes.")
    shuffle_buffer: int = option(1000, "Shard sets: frames each loader worker shuffles among (1: shard order).")


@dataclass
class TrainResult:
    out_dir: Path
    last_checkpoint: Path | None
    iterations: int
    history: list[dict[str, float]]  # per-iteration losses, mean over ranks
    local_history: list[dict[str, float]] = field(default_factory=list, repr=False)  # this rank's own losses
    generator: torch.nn.Module | None = field(default=None, repr=False)
    discriminator: torch.nn.Module | None = field(default=None, repr=False)
    validation: dict[str, float] | None = None  # final scores on val_data (full stage, rank 0)


def _apply_overrides(cfg: Config, opts: TrainOptions) -> Config:
    t = cfg.train
    t = replace(t, epochs=opts.epochs or t.epochs, batch_size=opts.batch_size or t.batch_size,
                ckpt_save_iter_freq=opts.ckpt_every or t.ckpt_save_iter_freq,
                print_freq=opts.log_every or t.print_freq, event_save_freq=opts.image_every or t.event_save_freq)
    return replace(cfg, train=t)


def run_training(opts: TrainOptions) -> TrainResult:
    if opts.stage not in STAGES:
        raise ConfigError(f"unknown stage {opts.stage!r}; expected warp or full")
    cfg = _apply_overrides(load_config(opts.config), opts)
    device = resolve_device(opts.device)
    dist_info = init_distributed(device.type)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    try:
        with discard_if_unfinished():  # a run failing before its first checkpoint leaves no folder
            return _train(cfg, opts, device, dist_info)
    finally:
        shutdown_distributed()


def _train(cfg: Config, opts: TrainOptions, device: torch.device, dist_info: DistInfo) -> TrainResult:
    main = dist_info.is_main
    full = opts.stage == "full"
    t = cfg.train
    out_dir = Path(opts.out_dir or Path("saved") / f"ckpt_{opts.stage}" / cfg.general.exp_name)

    # ---- everything that can fail on user input fails here, before any training
    warp_ckpt = (opts.warp_ckpt or cfg.model.warp_ckpt) if full else None
    refuse_overwrite(out_dir, opts.init_ckpt, warp_ckpt, opts.config, opts.data_root, opts.val_data,
                     None if opts.resume in (None, "auto") else opts.resume)
    out_dir = run_folder(out_dir, opts.out_dir is not None, opts.resume, dist_info)
    if warp_ckpt and not Path(warp_ckpt).is_file():
        raise CheckpointError("warp checkpoint (model.warp_ckpt / --warp-ckpt) not found", warp_ckpt)
    if opts.init_ckpt and not Path(opts.init_ckpt).is_file():
        raise CheckpointError("checkpoint to start from not found", opts.init_ckpt)
    seed_everything(cfg.general.random_seed)  # first: a --random-vgg network must be the same on every run
    vgg = load_vgg(opts.vgg19, opts.random_vgg, device, warn=main) if sum(cfg.train.loss_weights.perceptual) else None
    identity_loss = None
    if full and t.loss_weights.id and t.id_network:
        identity_loss = IdentityLoss(t.id_network, t.loss_weights.id).to(device)
    elif t.loss_weights.id and main:
        print(f"identity loss (weight {t.loss_weights.id}) is off: no identity network is configured "
              "(train.id_network); the reference never released its recogniser")
    per_rank_batch = max(1, t.batch_size // dist_info.world_size)
    # a folder or a shard set of another scheme or identity size fails now, before the run folder exists
    batches = training_batches(opts.data_root or cfg.dataset.data_block().root, get_scheme(cfg.model.landmark_scheme),
                               cfg.resolution[0], cfg.model.generator.class_dim, cfg.dataset.ldmk_idx,
                               identity_loss is not None,
                               BatchSettings(per_rank_batch, opts.num_workers, cfg.general.random_seed, opts.skip_bad,
                                             opts.shuffle_buffer), dist_info)
    val_set = None
    if opts.val_data and full:
        val_set = open_frames(opts.val_data, get_scheme(cfg.model.landmark_scheme), cfg.resolution[0],
                              cfg.model.generator.class_dim, subset=cfg.dataset.ldmk_idx)
        val_set.check_landmark_scheme()
        val_indices = pick_frames(val_set, opts.val_frames)

    generator, discriminator = build_generator(cfg).to(device), build_discriminator(cfg).to(device)
    blocks = cfg.model.generator.spade_num_blocks
    if warp_ckpt:
        ckpt = read_checkpoint(warp_ckpt)
        checkpoint_meta(ckpt, warp_ckpt).check_matches(cfg, warp_ckpt)
        load_official_state(generator, ckpt.get("generator", {}), blocks, warp_ckpt, "generator",
                            only_prefixes=("warp.",))
    if opts.init_ckpt:
        ckpt = read_checkpoint(opts.init_ckpt)
        generator_state(ckpt, opts.init_ckpt)
        checkpoint_meta(ckpt, opts.init_ckpt).check_matches(cfg, opts.init_ckpt)
        load_official_state(generator, ckpt.get("generator", {}), blocks, opts.init_ckpt, "generator")
        if ckpt.get("discriminator"):
            load_official_state(discriminator, ckpt["discriminator"], blocks, opts.init_ckpt, "discriminator")

    optim_g = adam(generator_param_groups(generator, t.lr_generator, t.warplr_tune), t.lr_generator, (0.5, 0.999))
    optim_d = adam(discriminator.parameters(), t.lr_discriminator, (0.5, 0.999))
    sched_g = torch.optim.lr_scheduler.MultiStepLR(optim_g, t.epoch_milestones, gamma=0.1)
    sched_d = torch.optim.lr_scheduler.MultiStepLR(optim_d, t.epoch_milestones, gamma=0.1)
    amp_dtype = mixed_precision_dtype(device, opts.mixed_precision, opts.force, warn=main)
    use_scaler = amp_dtype == torch.float16
    scaler_g = torch.amp.GradScaler("cuda", enabled=use_scaler)
    scaler_d = torch.amp.GradScaler("cuda", enabled=use_scaler)

    # ---- resume
    epoch, iteration, epoch_step = 1, 0, 0
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        remove_partials(out_dir)
    resume = find_resume(opts.resume, out_dir)
    if resume is not None:
        path, ckpt = resume
        state = ckpt["resume"]
        if state.get("stage") != opts.stage:
            raise CheckpointError(f"was saved by the {state.get('stage')} stage, not {opts.stage}", path)
        load_official_state(generator, ckpt["generator"], blocks, path, "generator")
        load_official_state(discriminator, ckpt["discriminator"], blocks, path, "discriminator")
        optim_g.load_state_dict(ckpt["optimizer_generator"])
        optim_d.load_state_dict(ckpt["optimizer_discriminator"])
        sched_g.last_epoch, sched_d.last_epoch = state["scheduler_epoch"], state["scheduler_epoch"]
        scaler_g.load_state_dict(state["scaler_generator"])
        scaler_d.load_state_dict(state["scaler_discriminator"])
        epoch, iteration, epoch_step = state["next_epoch"], state["iteration"], state["epoch_step"]
        restore_rng(state["rng"][dist_info.rank] if dist_info.rank < len(state["rng"]) else state["rng"][0])
        if main:
            print(f"Resuming from {path}: epoch {epoch}, iteration {iteration}")
    if main:
        write_run_record(out_dir, cfg.to_dict(), opts, opts.data_root or cfg.dataset.data_block().root,
                         None if resume is None else resume[0])

    g_model = DDP(generator, find_unused_parameters=not full) if dist_info.enabled else generator
    d_model = DDP(discriminator) if dist_info.enabled and full else discriminator
    criterion = MetaPortraitLoss(t.loss_weights, t.scales, vgg, cfg.model.common.num_channels,
                                 discriminator.spec.scales).to(device)
    logger = TrainLogger(out_dir / "events" if main and t.tensorboard else None)
    steps_per_epoch = batches.steps_per_epoch
    total = steps_per_epoch * t.epochs if opts.max_steps is None else min(opts.max_steps, steps_per_epoch * t.epochs)
    bar = tqdm(total=total, initial=min(iteration, total), unit="it", desc=f"train {opts.stage}", disable=not main,
               dynamic_ncols=True)

    history: list[dict[str, float]] = []
    local_history: list[dict[str, float]] = []
    last_ckpt: Path | None = None
    bad_streak = 0

    def save(ep: int, next_epoch: int) -> Path:
        """`ep` is the official `epoch` field; training continues at `next_epoch`, batch `epoch_step`."""
        rng = gather_rng(dist_info)  # every rank's RNG, so each rank resumes its own stream
        path = out_dir / checkpoint_name(ep, iteration)
        if main:
            save_checkpoint(path, cfg, generator, discriminator, epoch=ep,
                            optimizer_generator=optim_g.state_dict(), optimizer_discriminator=optim_d.state_dict(),
                            extra={"resume": {"stage": opts.stage, "iteration": iteration, "epoch_step": epoch_step,
                                              "next_epoch": next_epoch,
                                              "scheduler_epoch": sched_g.last_epoch,
                                              "scaler_generator": scaler_g.state_dict(),
                                              "scaler_discriminator": scaler_d.state_dict(), "rng": rng,
                                              "world_size": dist_info.world_size}})
        return path

    start = time.perf_counter()
    done = opts.max_steps is not None and iteration >= opts.max_steps
    while epoch <= t.epochs and not done:
        for batch in batches.epoch(epoch, epoch_step):  # resumes mid-epoch at the same data position
            x = batch_inputs(batch, device)
            driving = batch["driving"].to(device)
            generator.train(), discriminator.train()
            discriminator.requires_grad_(False)  # the G step's GAN terms must not touch D (or its DDP hooks)
            with autocast(device, amp_dtype):
                out = g_model(x, stage=opts.stage)
                losses = criterion.warp(out["deformed"], driving)
                if full:
                    losses.update(criterion.generator(out["prediction"], driving, batch["eye_mask"].to(device),
                                                      x.mouth_mask, discriminator))
                    if identity_loss is not None:
                        losses["id"] = identity_loss(out["prediction"], batch["driving_theta"].to(device), x.identity)
            g_total = sum(losses.values())
            if any_rank(not torch.isfinite(g_total).item(), dist_info, device):
                bad_streak += 1
                optim_g.zero_grad(set_to_none=True)
                if main:
                    warnings.warn(f"iteration {iteration + 1}: non-finite loss, step skipped ({bad_streak} in a row)")
                if bad_streak >= opts.max_bad_steps:
                    raise TrainingError(f"the loss was NaN/inf for {bad_streak} iterations in a row (at iteration "
                                        f"{iteration + 1}); stopped. "
                                        f"Last good checkpoint: {last_ckpt or 'none written yet'}")
                continue
            bad_streak = 0
            optim_g.zero_grad(set_to_none=True)
            scaler_g.scale(g_total).backward()
            scaler_g.unscale_(optim_g)
            sanitize_and_clip(generator.parameters(), 0.3)
            scaler_g.step(optim_g)
            scaler_g.update()
            if full:
                discriminator.requires_grad_(True)
                with autocast(device, amp_dtype):
                    d_losses = criterion.discriminator(out["prediction"], driving, d_model)
                optim_d.zero_grad(set_to_none=True)  # also drops D grads left by the G step's GAN term
                scaler_d.scale(sum(d_losses.values())).backward()
                scaler_d.unscale_(optim_d)
                sanitize_and_clip(discriminator.parameters(), 0.3)
                scaler_d.step(optim_d)
                scaler_d.update()
                losses.update(d_losses)
            iteration += 1
            epoch_step += 1
            local = {k: float(v.detach()) for k, v in losses.items()}
            local_history.append(local)
            logged = mean_over_ranks(local, dist_info, device)
            history.append(logged)
            if main:
                bar.update(1)
                bar.set_postfix({k: f"{v:.3g}" for k, v in logged.items()}, refresh=False)
                if iteration % t.print_freq == 0 or iteration == 1:
                    logger.scalars(logged, iteration, "loss/")
                    logger.scalars({f"lr/{g['name']}": g["lr"] for g in optim_g.param_groups}, iteration)
                    logger.scalars({"lr/discriminator": optim_d.param_groups[0]["lr"]}, iteration)
                if iteration % t.event_save_freq == 0 or iteration == 1:
                    images = {"source": x.source, "driving": driving, "source_line": x.source_line,
                              "driving_line": x.driving_line, "deformed": out["deformed"]}
                    if full:
                        images["prediction"] = out["prediction"]
                    logger.image_grid("train", images, iteration)
            if val_set is not None and main and (iteration % t.eval_freq == 0 or iteration == total):
                scores = validate(generator, val_set, val_indices, device)
                logger.scalars(scores, iteration, "val/")
                bar.write(f"validation at {iteration}: " + ", ".join(f"{k} {v:.4g}" for k, v in scores.items()))
            if iteration % t.ckpt_save_iter_freq == 0:
                last_ckpt = save(epoch, epoch)
            if opts.max_steps is not None and iteration >= opts.max_steps:
                done = True
                break
        if done:
            if last_ckpt is None or not last_ckpt.name.endswith(f"_{iteration}.pth.tar"):
                last_ckpt = save(epoch, epoch)
            break
        sched_g.step()
        sched_d.step()
        epoch_step = 0
        if epoch % t.ckpt_save_freq == 0 or epoch == t.epochs:
            last_ckpt = save(epoch, epoch + 1)
        epoch += 1
    bar.close()
    logger.close()
    if main:
        rate = len(history) / max(time.perf_counter() - start, 1e-9)
        print(f"Trained {len(history)} iterations ({rate:.2f} it/s); last checkpoint: {last_ckpt}")
    result = TrainResult(out_dir, last_ckpt, iteration, history, local_history, generator, discriminator)
    if val_set is not None and main:
        result.validation = validate(generator, val_set, val_indices, device)
    return result
