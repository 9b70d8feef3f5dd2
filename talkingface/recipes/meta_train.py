"""Reptile meta-training (reference section 4, "Meta stage").

Per outer step and per sampled identity: copy G (and D when the GAN weight is not 0),
run `inner_update_steps` Adam steps on the support frames, and accumulate
(theta - theta') / identities. The sum is all-reduced across torchrun ranks, divided
by the world size, and used as the gradient of the outer Adam step (nan_to_num, clip
0.3, warp part at lr x warplr_tune). The outer optimiser is built after --remove_sn,
so the folded weights are the ones it updates.
"""
from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from talkingface.checkpoints.official import (
    checkpoint_meta, generator_state, has_spectral_norm, load_official_state, read_checkpoint, save_checkpoint)
from talkingface.config import Config, load_config
from talkingface.data.meta import MetaTaskDataset, TaskSpec, split_support
from talkingface.data.shard_reader import open_frames
from talkingface.errors import CheckpointError, TrainingError
from talkingface.landmarks.scheme import get_scheme
from talkingface.losses.metaportrait import MetaPortraitLoss
from talkingface.models.build import build_discriminator, build_generator
from talkingface.models.layers import fold_spectral_norm
from talkingface.training.adaptation import AdaptSettings, adapt
from talkingface.training.checkpointing import checkpoint_name, find_resume, remove_partials
from talkingface.training.common import gather_rng, load_vgg, mixed_precision_dtype, seed_everything
from talkingface.training.distributed import DistInfo, init_distributed, mean_over_ranks, shutdown_distributed
from talkingface.training.logging import TrainLogger
from talkingface.training.optim import adam, generator_param_groups, sanitize_and_clip
from talkingface.training.runs import discard_if_unfinished, run_folder, write_run_record
from talkingface.training.state import restore_rng
from talkingface.utils.device import resolve_device
from talkingface.utils.options import device_option, force_option, fp16_option, option, vgg19_option
from talkingface.utils.paths import refuse_overwrite


@dataclass
class MetaTrainOptions:
    config: str = option(help="Meta-training YAML (official schema).")
    ckpt: str | None = option(None, "Full-stage checkpoint to start from.")
    remove_sn: bool = option(False, "Fold spectral norm into plain weights first (outputs unchanged).")
    out_dir: str | None = option(None, "Checkpoint/log folder (default: saved/ckpt_meta_train/<exp_name>).",
                                 flag="--out")
    resume: str | None = option(None, "Checkpoint to resume, or 'auto' for the newest in --out.")
    data_root: str | None = option(None, "Dataset root, or a shard set: its folder or a brace pattern such as "
                                         "'shards/shard-{000000..000099}.tar' (overrides the config).", flag="--data")
    device: str = device_option()
    mixed_precision: bool = fp16_option(" in the inner loop")  # autocast (`mixed_precision_dtype`)
    force: bool = force_option()
    max_steps: int | None = option(None, "Stop after this many iterations (with a checkpoint).")
    epochs: int | None = option(None, "Override train.epochs.")
    ckpt_every: int | None = option(None, "Override train.ckpt_save_iter_freq.")
    log_every: int | None = option(None, "Override train.print_freq.")
    vgg19: str | None = vgg19_option()
    random_vgg: bool = option(False, "Smoke tests only: untrained VGG19 for the perceptual loss.")
    skip_bad: bool = option(False, "Skip unreadable frames, and truncated or corrupt shards, with a warning.")


@dataclass
class MetaTrainResult:
    out_dir: Path
    last_checkpoint: Path | None
    iterations: int
    history: list[dict[str, float]]
    generator: torch.nn.Module | None = None
    discriminator: torch.nn.Module | None = None


def inner_settings(cfg: Config, autocast_dtype: torch.dtype | None = None) -> AdaptSettings:
    t = cfg.train
    return AdaptSettings(lr_generator=t.inner_lr_generator, lr_discriminator=t.inner_lr_discriminator,
                         warp_factor=t.inner_warplr_tune, betas=(t.inner_beta_1, t.inner_beta_2),
                         autocast_dtype=autocast_dtype)


def support_batches(support: dict, meta_batch_size: int):
    """Endless slices of the support set, `meta_batch_size` rows each (0 = all rows)."""
    n = next(v for v in support.values() if isinstance(v, torch.Tensor)).shape[0]
    size = meta_batch_size or n
    for k in itertools.count():
        start = (k * size) % n
        yield split_support(support, start, min(start + size, n))


def run_meta_training(opts: MetaTrainOptions) -> MetaTrainResult:
    cfg = load_config(opts.config)
    t = replace(cfg.train, epochs=opts.epochs or cfg.train.epochs,
                ckpt_save_iter_freq=opts.ckpt_every or cfg.train.ckpt_save_iter_freq,
                print_freq=opts.log_every or cfg.train.print_freq)
    cfg = replace(cfg, train=t)
    device = resolve_device(opts.device)
    info = init_distributed(device.type)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    try:
        with discard_if_unfinished():  # a run failing before its first checkpoint leaves no folder
            return _meta_train(cfg, opts, device, info)
    finally:
        shutdown_distributed()


def _meta_train(cfg: Config, opts: MetaTrainOptions, device: torch.device, info: DistInfo) -> MetaTrainResult:
    main, t, d = info.is_main, cfg.train, cfg.dataset
    out_dir = Path(opts.out_dir or Path("saved") / "ckpt_meta_train" / cfg.general.exp_name)
    refuse_overwrite(out_dir, opts.ckpt, opts.config, opts.data_root,
                     None if opts.resume in (None, "auto") else opts.resume)
    out_dir = run_folder(out_dir, opts.out_dir is not None, opts.resume, info)
    use_gan = t.loss_weights.generator_gan != 0
    blocks = cfg.model.generator.spade_num_blocks

    start_ckpt = None
    if opts.ckpt:
        start_ckpt = read_checkpoint(opts.ckpt)
        generator_state(start_ckpt, opts.ckpt)
        checkpoint_meta(start_ckpt, opts.ckpt).check_matches(cfg, opts.ckpt)
    seed_everything(cfg.general.random_seed)
    vgg = load_vgg(opts.vgg19, opts.random_vgg, device, warn=main) if sum(cfg.train.loss_weights.perceptual) else None
    # a dataset folder or a shard set (random access: the task sampler draws frames per identity)
    frames = open_frames(opts.data_root or d.data_block().root, get_scheme(cfg.model.landmark_scheme),
                         cfg.resolution[0], cfg.model.generator.class_dim, subset=d.ldmk_idx, skip_bad=opts.skip_bad)
    frames.check_landmark_scheme()  # another scheme or identity size fails now, before the run folder exists
    tasks = MetaTaskDataset(frames, TaskSpec(num_support=d.num_support_samples, num_target=d.num_target_samples,
                                             identities_per_task=d.num_classes_per_set, seed=cfg.general.random_seed))

    sn = has_spectral_norm(start_ckpt["generator"]) if start_ckpt else cfg.model.generator.use_SN
    generator = build_generator(cfg, spectral_norm=sn)
    discriminator = build_discriminator(cfg)
    if start_ckpt:
        load_official_state(generator, start_ckpt["generator"], blocks, opts.ckpt, "generator")
        if start_ckpt.get("discriminator"):
            load_official_state(discriminator, start_ckpt["discriminator"], blocks, opts.ckpt, "discriminator")
    if opts.remove_sn:
        fold_spectral_norm(generator)
    generator.to(device), discriminator.to(device)

    betas = (t.outer_beta_1, t.outer_beta_2)
    optim_g = adam(generator_param_groups(generator, t.lr_generator, t.warplr_tune), t.lr_generator, betas)
    optim_d = adam(discriminator.parameters(), t.lr_discriminator, betas)
    sched_g = torch.optim.lr_scheduler.MultiStepLR(optim_g, t.epoch_milestones, gamma=0.1)
    sched_d = torch.optim.lr_scheduler.MultiStepLR(optim_d, t.epoch_milestones, gamma=0.1)

    epoch, iteration, epoch_step = 1, 0, 0
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        remove_partials(out_dir)
    resume = find_resume(opts.resume, out_dir)
    if resume is not None:
        path, ckpt = resume
        state = ckpt["resume"]
        if state.get("stage") != "meta":
            raise CheckpointError(f"was saved by the {state.get('stage')} stage, not meta-training", path)
        generator = build_generator(cfg, spectral_norm=has_spectral_norm(ckpt["generator"]))
        load_official_state(generator, ckpt["generator"], blocks, path, "generator")
        load_official_state(discriminator, ckpt["discriminator"], blocks, path, "discriminator")
        generator.to(device)
        optim_g = adam(generator_param_groups(generator, t.lr_generator, t.warplr_tune), t.lr_generator, betas)
        sched_g = torch.optim.lr_scheduler.MultiStepLR(optim_g, t.epoch_milestones, gamma=0.1)
        optim_g.load_state_dict(ckpt["optimizer_generator"])
        optim_d.load_state_dict(ckpt["optimizer_discriminator"])
        sched_g.last_epoch = sched_d.last_epoch = state["scheduler_epoch"]
        epoch, iteration, epoch_step = state["next_epoch"], state["iteration"], state["epoch_step"]
        restore_rng(state["rng"][min(info.rank, len(state["rng"]) - 1)])
        if main:
            print(f"Resuming from {path}: epoch {epoch}, iteration {iteration}")
    if main:
        write_run_record(out_dir, cfg.to_dict(), opts, opts.data_root or d.data_block().root,
                         None if resume is None else resume[0])

    criterion = MetaPortraitLoss(t.loss_weights, t.scales, vgg, cfg.model.common.num_channels,
                                 discriminator.spec.scales).to(device)
    settings = inner_settings(cfg, mixed_precision_dtype(device, opts.mixed_precision, opts.force, warn=main))
    sampler = torch.utils.data.DistributedSampler(tasks, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                                  seed=cfg.general.random_seed)
    per_epoch = math.ceil(len(tasks) / info.world_size)
    total = per_epoch * t.epochs if opts.max_steps is None else min(opts.max_steps, per_epoch * t.epochs)
    logger = TrainLogger(out_dir / "events" if main and t.tensorboard else None)
    bar = tqdm(total=total, initial=min(iteration, total), unit="task", desc="meta-train", disable=not main,
               dynamic_ncols=True)
    history: list[dict[str, float]] = []
    last_ckpt = None

    def save(ep: int, next_epoch: int) -> Path:
        rng = gather_rng(info)
        path = out_dir / checkpoint_name(ep, iteration)
        if main:
            save_checkpoint(path, cfg, generator, discriminator, epoch=ep, optimizer_generator=optim_g.state_dict(),
                            optimizer_discriminator=optim_d.state_dict(),
                            extra={"resume": {"stage": "meta", "iteration": iteration, "epoch_step": epoch_step,
                                              "next_epoch": next_epoch, "scheduler_epoch": sched_g.last_epoch,
                                              "rng": rng, "world_size": info.world_size}})
        return path

    done = opts.max_steps is not None and iteration >= opts.max_steps
    while epoch <= t.epochs and not done:
        sampler.set_epoch(epoch)
        for index in list(sampler)[epoch_step:]:
            task = tasks[index]
            meta_g = [torch.zeros_like(p) for p in generator.parameters()]
            meta_d = [torch.zeros_like(p) for p in discriminator.parameters()] if use_gan else []
            inner_first, inner_last = {}, {}
            for support, _target in task:
                fast_g = copy.deepcopy(generator)
                fast_d = copy.deepcopy(discriminator) if use_gan else None
                try:
                    steps = adapt(fast_g, criterion, support_batches(support, d.meta_batch_size), device, settings,
                                  steps=d.inner_update_steps, discriminator=fast_d)
                except TrainingError as e:  # name the outer iteration too
                    raise TrainingError(f"meta-training iteration {iteration + 1}, inner loop: {e.message}. Last "
                                        f"good checkpoint: {last_ckpt or 'none written yet'}") from None
                for acc, p, q in zip(meta_g, generator.parameters(), fast_g.parameters()):
                    acc += (p.detach() - q.detach()) / len(task)
                if use_gan:
                    for acc, p, q in zip(meta_d, discriminator.parameters(), fast_d.parameters()):
                        acc += (p.detach() - q.detach()) / len(task)
                for k, v in steps[0].items():
                    inner_first[k] = inner_first.get(k, 0.0) + v / len(task)
                for k, v in steps[-1].items():
                    inner_last[k] = inner_last.get(k, 0.0) + v / len(task)
            _outer_step(generator, meta_g, optim_g, info)
            if use_gan:
                _outer_step(discriminator, meta_d, optim_d, info)
            iteration += 1
            epoch_step += 1
            logged = mean_over_ranks({**{f"first/{k}": v for k, v in inner_first.items()},
                                      **{f"last/{k}": v for k, v in inner_last.items()}}, info, device)
            history.append(logged)
            if main:
                bar.update(1)
                bar.set_postfix({k: f"{v:.3g}" for k, v in logged.items() if k.startswith("last/")}, refresh=False)
                if iteration % t.print_freq == 0 or iteration == 1:
                    logger.scalars(logged, iteration, "inner/")
                    logger.scalars({f"lr/{g['name']}": g["lr"] for g in optim_g.param_groups}, iteration)
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
    return MetaTrainResult(out_dir, last_ckpt, iteration, history, generator, discriminator)


def _outer_step(model: torch.nn.Module, meta_grad: list[torch.Tensor], optim: torch.optim.Optimizer,
                info: DistInfo) -> None:
    """Use the (rank-averaged) Reptile direction as the gradient of one outer Adam step."""
    if info.enabled:
        flat = torch.cat([g.flatten() for g in meta_grad])
        dist.all_reduce(flat)
        flat /= info.world_size
        offset = 0
        for g in meta_grad:
            g.copy_(flat[offset: offset + g.numel()].view_as(g))
            offset += g.numel()
    optim.zero_grad(set_to_none=True)
    for p, g in zip(model.parameters(), meta_grad):
        p.grad = g.clone()
    sanitize_and_clip(model.parameters(), 0.3, clamp=1e3)
    optim.step()
