"""Meta-learning evidence benchmark (not a test: it trains, then prints numbers).

Does Reptile meta-training give a start that personalises to a new person faster than
the alternatives given the same compute? The benchmark

1. makes synthetic talking clips (64 px, MediaPipe 478 landmarks, dlib identity, as
   `talkingface synth --identity dlib` does) of 8 training identities (scikit-image's
   astronaut and tests/data/faces/obama*.jpg, each also mirrored);
2. pretrains the bundled 64 px model (warp stage, then full stage), or takes
   `--pretrained PATH` (the bundled 64 px model was trained on exactly these clips);
3. continues from the pretrained weights two ways, with the same number of generator
   gradient steps at the same batch size, once per training seed (`--seeds`):
   (a) Reptile (`run_meta_training`), (b) ordinary full-stage training (`run_training`,
   init_ckpt = the pretrained file);
4. fine-tunes every start (pretrained, and each seed's meta and ordinary start) to each
   of three held-out people, from real footage (benchmarks/meta_people.py): the
   `personalize` command's loss and optimiser (`fine_tuning`, `training_batches`) on
   frames of one stretch of the person's video, at every learning rate of `--lrs`;
5. scores the reconstruction PSNR (`heldout_psnr`) after k = 0, 5, 10, 25, 50 steps on
   a second stretch (validation: it picks each start's learning rate, per k) and on a
   third (test: the table). Rows: meta, ordinary (equal compute), pretrained, and the
   better of the two non-meta starts (chosen on validation).

    python benchmarks/bench_meta.py --footage /tmp/realvid --pretrained talkingface/assets/models/bundled_64.pth.tar --meta-steps 80

The result (header: machine, commit, command) goes to benchmarks/results/bench_meta.json
(`--result`); --out also gets results.md. docs/meta_learning.md has a measured run.
Every finished fine-tuning run is recorded in OUT/scores.json as it ends, so a killed
run picks up where it stopped (with --resume for the training stages).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from meta_people import PEOPLE, Person, prepare_people
from meta_report import report, run_key
from talkingface.checkpoints.official import load_generator
from talkingface.config import Config, load_config
from talkingface.data.official import OfficialDataset, open_dataset
from talkingface.landmarks.scheme import get_scheme
from talkingface.recipes.meta_train import MetaTrainOptions, run_meta_training
from talkingface.recipes.personalize import PersonalizeOptions, fine_tuning, heldout_psnr, training_batches
from talkingface.recipes.synth import SynthOptions, run_synth
from talkingface.recipes.train import TrainOptions, run_training
from talkingface.training.adaptation import adapt
from talkingface.training.common import seed_everything
from talkingface.utils.atomic import atomic_path
from talkingface.utils.device import resolve_device

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "talkingface/properties/model/bundled/mediapipe478_64_bundled.yaml"
FACES = REPO / "tests/data/faces"
TRAIN_PHOTOS = ("obama", "obama2", "obama3")
NEVER = 10 ** 9  # checkpoint / log interval that never triggers inside a run


# --------------------------------------------------------------------------- training data
def write_portraits(folder: Path) -> list[Path]:
    """Training portraits (each photo and its mirror image) as PNG files."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    images = {"astronaut": data.astronaut()}
    for name in TRAIN_PHOTOS:
        images[name] = np.asarray(Image.open(FACES / f"{name}.jpg").convert("RGB"))
    train = []
    for name, px in images.items():
        for suffix, img in (("", px), ("_flip", px[:, ::-1])):
            path = folder / f"{name}{suffix}.png"
            Image.fromarray(np.ascontiguousarray(img)).save(path)
            train.append(path)
    # Sorted by name, as `talkingface synth --portrait portraits/*.png` orders them
    # (scripts/train_bundled_model.sh): identity k, and so clip k's motion seed, match.
    return sorted(train)


def synth(portraits: list[Path], root: Path, frames: int, seed: int) -> Path:
    """`talkingface synth --size 64 --scheme mediapipe478 --identity dlib`; reused when already written alike."""
    stamp = root / "bench_meta_synth.json"
    want = {"portraits": [p.name for p in portraits], "frames": frames, "seed": seed}
    if stamp.is_file() and json.loads(stamp.read_text()) == want:
        return root
    run_synth(SynthOptions(portraits=[str(p) for p in portraits], out=str(root), frames=frames, seed=seed,
                           scheme="mediapipe478", size=64, identity="dlib"))
    stamp.write_text(json.dumps(want))
    return root


# --------------------------------------------------------------------------- configs
def save_config(cfg: Config, path: Path) -> Path:
    """Write a derived config and read it back through the validating loader."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    load_config(path)
    return path


def with_data(cfg: Config, root: Path, name: str, seed: int) -> Config:
    block = replace(cfg.dataset.data_block(), root=str(root))
    dataset = replace(cfg.dataset, train_data=["personalized"], blocks={"personalized": block})
    return replace(cfg, general=replace(cfg.general, exp_name=name, random_seed=seed), dataset=dataset)


def build_configs(args, train_root: Path, out: Path, seed: int) -> dict[str, Path]:
    """pretrain / ordinary / meta configs for one training seed, derived from the bundled YAML."""
    base = load_config(CONFIG)
    # Fine-tuning reads the inner_* keys (warp lr factor, Adam betas) from its config; every
    # config gets the same ones so every start is fine-tuned alike (the lr is swept apart).
    inner = dict(inner_lr_generator=args.inner_lr, inner_warplr_tune=args.inner_warplr_tune,
                 inner_beta_1=0.5, inner_beta_2=0.999)
    pretrain = with_data(base, train_root, "bench_meta_pretrain", seed)
    pretrain = replace(pretrain, train=replace(pretrain.train, **inner))
    ordinary = replace(pretrain, general=replace(pretrain.general, exp_name="bench_meta_ordinary"),
                       train=replace(pretrain.train, lr_generator=args.ordinary_lr, batch_size=args.inner_batch))
    meta_dataset = replace(pretrain.dataset, num_classes_per_set=args.task_identities,
                           num_support_samples=args.inner_batch * args.inner_steps, num_target_samples=1,
                           meta_batch_size=args.inner_batch, inner_update_steps=args.inner_steps)
    meta_train = replace(pretrain.train, lr_generator=args.outer_lr, warplr_tune=args.outer_warplr_tune,
                         outer_beta_1=0.5, outer_beta_2=0.999, batch_size=0, epoch_milestones=[NEVER])
    meta = replace(pretrain, general=replace(pretrain.general, exp_name="bench_meta_meta"), dataset=meta_dataset,
                   train=meta_train)
    return {name: save_config(cfg, out / "configs" / f"{name}_seed{seed}.yaml")
            for name, cfg in (("pretrain", pretrain), ("ordinary", ordinary), ("meta", meta))}


# --------------------------------------------------------------------------- training stages
def stage(args, out_dir: Path, steps: int, launch) -> tuple[Path, int]:
    """Run one training stage: launch(resume) -> a recipe result. (checkpoint, iterations).

    With --resume, a stage whose final checkpoint is in `out_dir` is reused, and an
    interrupted one resumes from its newest checkpoint (the recipes' `resume="auto"`).
    """
    if args.resume:
        finished = sorted(out_dir.glob(f"ckpt_*_{steps}.pth.tar"))
        if finished:
            print(f"--resume: reusing {finished[-1]}")
            return finished[-1], steps
    result = launch("auto" if args.resume else None)
    return Path(result.last_checkpoint), result.iterations


def pretrain(args, config: Path, out: Path) -> Path:
    warp, _ = stage(args, out / "warp", args.pretrain_warp_steps, lambda resume: run_training(TrainOptions(
        config=str(config), stage="warp", out_dir=str(out / "warp"), max_steps=args.pretrain_warp_steps,
        batch_size=args.pretrain_batch, epochs=NEVER, ckpt_every=args.ckpt_every, resume=resume,
        device=args.device)))
    full, _ = stage(args, out / "full", args.pretrain_full_steps, lambda resume: run_training(TrainOptions(
        config=str(config), stage="full", out_dir=str(out / "full"), warp_ckpt=str(warp),
        max_steps=args.pretrain_full_steps, batch_size=args.pretrain_batch, epochs=NEVER,
        ckpt_every=args.ckpt_every, resume=resume, device=args.device)))
    return full


def continuations(args, start: Path, configs: dict[str, Path], out: Path, frames_total: int,
                  timed: Clock) -> dict[str, object]:
    """One seed's meta and ordinary continuation of `start`, equal generator gradient steps."""
    seed = load_config(configs["meta"]).general.random_seed
    with timed(f"meta-training (Reptile), seed {seed}"):
        meta_ckpt, meta_steps = stage(args, out / "meta", args.meta_steps, lambda resume: run_meta_training(
            MetaTrainOptions(config=str(configs["meta"]), ckpt=str(start), out_dir=str(out / "meta"),
                             max_steps=args.meta_steps, epochs=max(1, math.ceil(args.meta_steps / frames_total)),
                             ckpt_every=args.ckpt_every, resume=resume, device=args.device)))
    d = load_config(configs["meta"]).dataset
    grad_steps = meta_steps * d.num_classes_per_set * d.inner_update_steps
    batch = d.meta_batch_size or d.num_support_samples
    with timed(f"ordinary training, seed {seed}"):
        ordinary_ckpt, ordinary_steps = stage(args, out / "ordinary", grad_steps, lambda resume: run_training(
            TrainOptions(config=str(configs["ordinary"]), stage="full", init_ckpt=str(start),
                         out_dir=str(out / "ordinary"), max_steps=grad_steps, batch_size=batch,
                         epochs=NEVER, ckpt_every=args.ckpt_every, resume=resume, device=args.device)))
    return {"meta": meta_ckpt, "ordinary": ordinary_ckpt, "meta_outer_steps": meta_steps,
            "meta_grad_steps": grad_steps, "ordinary_grad_steps": ordinary_steps, "batch": batch}


# --------------------------------------------------------------------------- fine-tuning and scores
def fine_tune_and_score(args, start: Path, cfg: Config, person: Person, lr: float | None) -> dict[str, dict]:
    """PSNR on the validation and test stretches after each k fine-tuning steps at `lr`.

    One run of max(k) steps, scored when it passes each k: the same weights as a separate
    run of k steps (scoring is in inference mode and the batches have their own RNG).
    lr None: k = 0 only (the start itself).
    """
    device = resolve_device(args.device)
    seed_everything(args.personalize_seed)
    generator = load_generator(start, cfg).model.to(device)
    stretches = {stage: person.scored(cfg, stage, args.score_frames) for stage in ("validate", "test")}

    def score() -> dict[str, float]:
        values = {stage: heldout_psnr(generator, data, frames, device) for stage, (data, frames) in stretches.items()}
        generator.train()  # heldout_psnr leaves it in eval mode; fine-tuning goes on in train mode
        return values

    if lr is None:
        return {"0": score()}
    opts = PersonalizeOptions(ckpt=str(start), data=str(person.adapt), lr=lr, batch_size=args.inner_batch,
                              device=args.device, seed=args.personalize_seed)
    criterion, settings = fine_tuning(cfg, opts, device)
    adaptation = open_dataset(cfg, person.adapt)
    scores: dict[str, dict] = {}
    ks = {k for k in args.k if k}

    def on_step(step: int, losses: dict[str, float]) -> None:
        if step in ks:
            scores[str(step)] = score()

    batches = training_batches(adaptation, list(range(len(adaptation))), args.inner_batch, args.personalize_seed)
    adapt(generator, criterion, batches, device, settings, steps=max(ks), on_step=on_step)
    return scores


def all_scores(args, starts: dict[str, Path], cfg: Config, people: list[Person], path: Path, timed: Clock) -> dict:
    """Every (start, person, lr) run; each is written to `path` as it finishes and skipped when there."""
    scores = json.loads(path.read_text()) if path.is_file() else {}
    for name, start in starts.items():
        with timed(f"fine-tune + score: {name}"):
            for person in people:
                for lr in (None, *args.lrs):
                    key = run_key(name, person.name, lr)
                    if key in scores:
                        continue
                    scores[key] = fine_tune_and_score(args, start, cfg, person, lr)
                    k = str(max(args.k)) if lr is not None else "0"
                    print(f"[{key}] k={k}: validation {scores[key][k]['validate']:.2f} dB, "
                          f"test {scores[key][k]['test']:.2f} dB", flush=True)
                    with atomic_path(path) as tmp:
                        tmp.write_text(json.dumps(scores, indent=1))
    return scores


class Clock:
    """Wall seconds and this process's CPU seconds (all threads) per stage: on a shared machine the
    CPU time is the cost. Kept in a file, so a resumed run adds to what the killed one spent."""

    def __init__(self, path: Path, resume: bool):
        self.path = path
        self.seconds: dict[str, dict[str, float]] = json.loads(path.read_text()) if resume and path.is_file() else {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        entry = self.seconds.setdefault(name, {"wall_s": 0.0, "cpu_s": 0.0})
        entry["wall_s"] += time.perf_counter() - wall
        entry["cpu_s"] += time.process_time() - cpu
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(self.seconds, indent=1))


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--out", default="/tmp/talkingface_bench_meta", help="Work and report folder.")
    ap.add_argument("--footage", type=Path, required=True,
                    help="Folder with the held-out people's videos: " + ", ".join(p.file for p in PEOPLE) +
                         " (benchmarks/meta_people.py says where each comes from).")
    ap.add_argument("--result", default=None, help="JSON result file (default: benchmarks/results/bench_meta.json).")
    ap.add_argument("--pretrained", default=None,
                    help="A pretrained bundled-architecture 64 px checkpoint; skips pretraining.")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="Training seeds: one meta and one ordinary continuation each (config random_seed: "
                         "initial state, task and batch sampling).")
    ap.add_argument("--personalize-seed", type=int, default=0, help="Seed of the fine-tuning batch order.")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--resume", action="store_true", help="Reuse the finished training stages in --out and resume "
                    "an interrupted one (same settings only; use a fresh --out after changing any).")
    ap.add_argument("--ckpt-every", type=int, default=100, help="Training checkpoints every N iterations "
                    "(what --resume restarts from).")
    ap.add_argument("--frames", type=int, default=200, help="Frames per training clip.")
    ap.add_argument("--train-motion-seed", type=int, default=1, help="Motion seed of the training clips "
                    "(scripts/train_bundled_model.sh's data).")
    ap.add_argument("--pretrain-warp-steps", type=int, default=600)
    ap.add_argument("--pretrain-full-steps", type=int, default=600)
    ap.add_argument("--pretrain-batch", type=int, default=8)
    ap.add_argument("--meta-steps", type=int, default=200, help="Reptile outer steps.")
    ap.add_argument("--task-identities", type=int, default=1, help="Identities per Reptile task "
                    "(dataset.num_classes_per_set; the official meta config uses 1).")
    ap.add_argument("--inner-steps", type=int, default=5, help="Inner Adam steps per identity.")
    ap.add_argument("--inner-batch", type=int, default=4,
                    help="Frames per inner step = ordinary training batch = fine-tuning batch.")
    ap.add_argument("--inner-lr", type=float, default=2e-4, help="Reptile inner-loop lr.")
    ap.add_argument("--inner-warplr-tune", type=float, default=0.1,
                    help="Warp-part lr factor of the inner loop and of fine-tuning.")
    ap.add_argument("--outer-lr", type=float, default=5e-4)
    ap.add_argument("--outer-warplr-tune", type=float, default=0.1)
    ap.add_argument("--ordinary-lr", type=float, default=2e-4, help="Ordinary continuation lr (the "
                    "bundled config's).")
    ap.add_argument("--lrs", type=float, nargs="+", default=[1e-4, 2e-4, 5e-4, 1e-3],
                    help="Fine-tuning learning rates swept for every start; each start uses, per k, the one "
                         "with the best mean validation PSNR.")
    ap.add_argument("--score-frames", type=int, default=32, help="Frames scored per validation or test stretch "
                    "(evenly spaced).")
    ap.add_argument("--k", type=int, nargs="+", default=[0, 5, 10, 25, 50], help="Fine-tuning steps scored.")
    ap.add_argument("--within", type=int, default=25, help="Target: meta at this k ...")
    ap.add_argument("--reference", type=int, default=50, help="... reaches the best other start at this k.")
    args = ap.parse_args()
    args.k = sorted(set(args.k) | {0})
    return args


def main() -> None:
    args = parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timed = Clock(out / "seconds.json", args.resume)
    from bench_common import result_header, result_path, write_result

    header = result_header(resolve_device(args.device))  # its load average is the one at the start
    with timed("data: synthetic training clips, real held-out footage"):
        train_root = synth(write_portraits(out / "portraits"), out / "data" / "train", args.frames,
                           args.train_motion_seed)
        configs = {seed: build_configs(args, train_root, out, seed) for seed in args.seeds}
        fine_cfg = load_config(configs[args.seeds[0]]["meta"])  # inner settings: the same in every config
        people = prepare_people(args.footage, out / "people", fine_cfg)

    if args.pretrained:
        start = Path(args.pretrained)
        if not start.is_file():
            raise SystemExit(f"--pretrained: no such file: {start}")
        pretrain_steps = "given (--pretrained)"
    else:
        with timed("pretraining"):
            start = pretrain(args, configs[args.seeds[0]]["pretrain"], out / "pretrain")
        pretrain_steps = (f"{args.pretrain_warp_steps} warp + {args.pretrain_full_steps} full steps, "
                          f"batch {args.pretrain_batch}, seed {args.seeds[0]}")

    frames_total = len(OfficialDataset(train_root, get_scheme("mediapipe478"), 64, 128))
    trained = {seed: continuations(args, start, configs[seed], out / f"seed{seed}", frames_total, timed)
               for seed in args.seeds}
    starts = {"pretrained": start}  # the names meta_report reads: pretrained, meta_seed<S>, ordinary_seed<S>
    for seed, t in trained.items():
        starts[f"meta_seed{seed}"] = Path(t["meta"])
        starts[f"ordinary_seed{seed}"] = Path(t["ordinary"])
    scores = all_scores(args, starts, fine_cfg, people, out / "scores.json", timed)

    first = trained[args.seeds[0]]
    accounting = [
        f"pretraining: {pretrain_steps}",
        f"meta (Reptile), per seed: {first['meta_outer_steps']} outer steps x {args.task_identities} identities x "
        f"{args.inner_steps} inner steps = {first['meta_grad_steps']} generator gradient steps, batch "
        f"{first['batch']} (inner lr {args.inner_lr:g}, outer Adam lr {args.outer_lr:g}); seeds {args.seeds}",
        f"ordinary (full stage), per seed: {first['ordinary_grad_steps']} generator gradient steps, batch "
        f"{first['batch']} (lr {args.ordinary_lr:g}; its discriminator step has weight 0)",
        f"fine-tuning: the personalize command's loss and Adam settings, batch {args.inner_batch}, batch-order "
        f"seed {args.personalize_seed}, lr swept over {[f'{lr:g}' for lr in args.lrs]} and chosen per start and k "
        f"on validation; {len(people)} held-out people from real footage, adaptation / validation / test "
        f"stretches apart in time, up to {args.score_frames} frames scored per stretch",
    ]
    result, markdown = report(scores, args, [p.name for p in people], accounting, timed.seconds)
    result.update({"checkpoints": {k: str(v) for k, v in starts.items()},
                   "configs": {str(s): {k: str(v) for k, v in c.items()} for s, c in configs.items()},
                   "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                   "load_average_at_end": os.getloadavg()})
    written = write_result(args.result or result_path(__file__), result, header)
    (out / "results.md").write_text(markdown)
    print()
    print(markdown)
    print(f"Wrote {written} and {out / 'results.md'}")


if __name__ == "__main__":
    main()
