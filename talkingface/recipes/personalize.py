"""Personalise a base model to one person: a few minutes (or seconds) of fine-tuning.

Frames of the person are split into training frames and a few held-out frames
(evenly spaced); the held-out reconstruction PSNR is reported before and after. The
loop is the meta-training inner loop (talkingface.training.adaptation), without the
GAN terms. Writes the personalised checkpoint (usable by `infer` and `animate`), the
loss curve as CSV and a PNG plot next to it.
"""
from __future__ import annotations

import contextlib
import csv
import math
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from talkingface.checkpoints.official import config_for_checkpoint, load_generator, save_checkpoint
from talkingface.config import Config
from talkingface.data.official import OfficialDataset
from talkingface.data.shard_reader import open_frames
from talkingface.errors import ConfigError, DataError
from talkingface.landmarks.scheme import get_scheme
from talkingface.losses.metaportrait import MetaPortraitLoss
from talkingface.models.generator import batch_inputs
from talkingface.preprocess.pipeline import IDENTITY_DIM, SCHEME
from talkingface.recipes.preprocess import PreprocessOptions, run_preprocess
from talkingface.training.adaptation import AdaptSettings, adapt
from talkingface.training.common import load_vgg, mixed_precision_dtype, seed_everything
from talkingface.utils.atomic import atomic_path, check_writable
from talkingface.utils.device import resolve_device
from talkingface.utils.options import device_option, force_option, fp16_option, option, vgg19_option
from talkingface.utils.paths import refuse_overwrite
from talkingface.utils.video import VIDEO_EXTENSIONS


@dataclass
class PersonalizeOptions:
    ckpt: str = option(help="Base checkpoint (ideally meta-trained).")
    data: str = option(help="The person: an official-layout dataset folder, a shard set (folder or brace pattern) "
                            "or a video.")
    out: str = option("personalized.pth.tar", "Output checkpoint.")
    steps: int | None = option(None, "Number of fine-tuning steps.", one_of="budget")
    seconds: float | None = option(None, "Wall-time budget in seconds.", one_of="budget")
    config: str | None = option(None, "Model config (default: the one stored in the checkpoint; official: the 256 "
                                      "eval config).")
    holdout: int = option(4, "Frames held out for the before/after PSNR.")
    batch_size: int = option(4, "Frames per fine-tuning step.")
    lr: float | None = option(None, "Learning rate (default: train.inner_lr_generator).")
    vgg19: str | None = vgg19_option()
    random_vgg: bool = option(False, "Smoke tests only: untrained VGG19.")
    device: str = device_option()
    seed: int = option(0, "Seed of the frame sampling and initialisation.")
    mixed_precision: bool = fp16_option()  # autocast (`mixed_precision_dtype`)
    force: bool = force_option()


@dataclass
class PersonalizeResult:
    checkpoint: Path
    psnr_before: float
    psnr_after: float
    steps: int
    curve_csv: Path
    curve_png: Path


def heldout_indices(count: int, holdout: int) -> list[int]:
    """Evenly spaced frames (never all of them)."""
    holdout = min(holdout, count - 1)
    if holdout <= 0:
        raise DataError(f"need at least 2 frames to personalise (hold one out); found {count}")
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, holdout + 2)[1:-1]})


@torch.inference_mode()
def heldout_psnr(generator, dataset, indices, device) -> float:
    """Mean PSNR (dB) of the reconstructions of `indices`, images in 0..1."""
    generator.eval()
    values = []
    for i in indices:
        batch = torch.utils.data.default_collate([dataset[i]])
        pred = generator(batch_inputs(batch, device), stage="full")["prediction"].clamp(0, 1)
        mse = float(((pred.cpu() - batch["driving"]) ** 2).mean())
        values.append(10 * math.log10(1 / max(mse, 1e-10)))
    return float(np.mean(values))


def training_batches(dataset, indices: list[int], batch_size: int, seed: int):
    """Endless batches of `indices`, reshuffled (by `seed`) every pass."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(indices)
        for start in range(0, len(order), batch_size):
            yield torch.utils.data.default_collate([dataset[int(i)] for i in order[start:start + batch_size]])


def preprocess_for_model(video: Path, out: Path, cfg: Config) -> Path:
    """Preprocess one video into a dataset matching the model (MediaPipe landmarks, dlib identity)."""
    if cfg.model.landmark_scheme != SCHEME or cfg.model.generator.class_dim != IDENTITY_DIM:
        raise ConfigError(f"a video can only drive a {SCHEME} model with {IDENTITY_DIM}-d identities (what "
                          f"preprocessing produces); this model uses {cfg.model.landmark_scheme} and "
                          f"{cfg.model.generator.class_dim}-d identities: give a preprocessed dataset folder instead")
    block = cfg.dataset.data_block()
    run_preprocess(PreprocessOptions(inputs=[str(video)], out=str(out), size=cfg.resolution[0],
                                     crop_expand=block.crop_expand, crop_offset_y=block.crop_offset_y))
    return out


@contextlib.contextmanager
def person_dataset(data: str, cfg: Config):
    """Open `data` (a dataset folder or a shard set); a video is preprocessed into a temporary dataset first."""
    path = Path(data)
    if path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS:
        with tempfile.TemporaryDirectory(prefix="talkingface-person-") as tmp:
            root = preprocess_for_model(path, Path(tmp) / "person", cfg)
            yield OfficialDataset(root, get_scheme(cfg.model.landmark_scheme), cfg.resolution[0],
                                  cfg.model.generator.class_dim, subset=cfg.dataset.ldmk_idx)
        return
    frames = open_frames(path, get_scheme(cfg.model.landmark_scheme), cfg.resolution[0],
                         cfg.model.generator.class_dim, subset=cfg.dataset.ldmk_idx)
    frames.check_landmark_scheme()
    yield frames


def fine_tuning(cfg: Config, opts: PersonalizeOptions, device: torch.device) -> tuple[MetaPortraitLoss, AdaptSettings]:
    """The loss and the optimiser settings `personalize` fine-tunes with: the config's losses without
    the GAN term, the inner-loop Adam settings (lr: `opts.lr`, else train.inner_lr_generator)."""
    t = cfg.train
    # No GAN terms: the discriminator is not needed to fit one person (the meta config also sets it to 0).
    weights = replace(t.loss_weights, generator_gan=0.0)
    vgg = load_vgg(opts.vgg19, opts.random_vgg, device) if sum(weights.perceptual) else None
    criterion = MetaPortraitLoss(weights, t.scales, vgg, cfg.model.common.num_channels).to(device)
    settings = AdaptSettings(lr_generator=opts.lr or t.inner_lr_generator, warp_factor=t.inner_warplr_tune,
                             betas=(t.inner_beta_1, t.inner_beta_2),
                             autocast_dtype=mixed_precision_dtype(device, opts.mixed_precision, opts.force))
    return criterion, settings


def run_personalize(opts: PersonalizeOptions) -> PersonalizeResult:
    if opts.steps is None and opts.seconds is None:
        raise ConfigError("give --steps N or --seconds S")
    out = Path(opts.out)
    curve_csv, curve_png = out.with_name(out.name.split(".")[0] + "_loss.csv"), out.with_name(
        out.name.split(".")[0] + "_loss.png")
    for written in (out, curve_csv, curve_png):
        refuse_overwrite(written, opts.ckpt, opts.data, opts.config)
    check_writable(out)  # a read-only --out fails before the fine-tuning, not after it
    cfg = config_for_checkpoint(opts.ckpt, opts.config)
    device = resolve_device(opts.device)
    seed_everything(opts.seed)
    generator = load_generator(opts.ckpt, cfg).model.to(device)
    criterion, settings = fine_tuning(cfg, opts, device)
    with person_dataset(opts.data, cfg) as dataset:
        held = heldout_indices(len(dataset), opts.holdout)
        train = [i for i in range(len(dataset)) if i not in set(held)]
        before = heldout_psnr(generator, dataset, held, device)
        print(f"Personalising on {len(train)} frames ({len(held)} held out); held-out PSNR before: {before:.2f} dB")
        # A bar over the steps (or, with --seconds, a step counter); the web app shows it too.
        with tqdm(total=opts.steps, unit="step", desc="personalize", dynamic_ncols=True) as bar:
            def on_step(step: int, losses: dict[str, float]) -> None:
                bar.set_postfix(loss=f"{sum(losses.values()):.4f}", refresh=False)
                bar.update(1)

            history = adapt(generator, criterion, training_batches(dataset, train, opts.batch_size, opts.seed), device,
                            settings, steps=opts.steps, seconds=opts.seconds, on_step=on_step)
        after = heldout_psnr(generator, dataset, held, device)
    print(f"Held-out PSNR after {len(history)} steps: {after:.2f} dB ({after - before:+.2f} dB)")
    save_checkpoint(out, cfg, generator, epoch=0, extra={"personalized": {
        "base": str(opts.ckpt), "steps": len(history), "psnr_before": before, "psnr_after": after}})
    _write_curve(curve_csv, curve_png, history)
    print(f"Wrote {out}, {curve_csv} and {curve_png}")
    return PersonalizeResult(out, before, after, len(history), curve_csv, curve_png)


def _write_curve(csv_path: Path, png_path: Path, history: list[dict[str, float]]) -> None:
    names = sorted({k for h in history for k in h})
    with atomic_path(csv_path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["step", "total", *names])
            for i, h in enumerate(history, 1):
                writer.writerow([i, sum(h.values()), *(h.get(n, "") for n in names)])
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    steps = np.arange(1, len(history) + 1)
    ax.plot(steps, [sum(h.values()) for h in history], label="total", linewidth=2)
    for n in names:
        ax.plot(steps, [h.get(n, np.nan) for h in history], label=n, alpha=0.7)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title("personalisation loss")
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
