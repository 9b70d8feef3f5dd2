"""Meta-learning evidence benchmark (not a test: it trains, then prints numbers).

Does Reptile meta-training give a start that personalises faster than ordinary
training given the same compute? The benchmark

1. makes synthetic talking clips (64 px, MediaPipe 478 landmarks, dlib identity, as
   `talkingface synth --identity dlib` does) of 8 training identities (scikit-image's
   astronaut and tests/data/faces/obama*.jpg, each also mirrored) and of one held-out
   person (tests/data/faces/biden.jpg): a personalisation clip and an evaluation clip
   with two other motion seeds, so the evaluated motions are in no training clip;
2. pretrains the bundled 64 px model (warp stage, then full stage), or takes
   `--pretrained PATH`;
3. continues from the pretrained weights two ways with the same number of generator
   gradient steps at the same batch size: (a) Reptile (`run_meta_training`), (b)
   ordinary full-stage training (`run_training`, init_ckpt = the pretrained file);
4. personalises each start to the held-out person with the `personalize` command's
   code (`run_personalize`, same lr, batch, seed and config for both) for k steps,
   and scores the evaluation clip (`heldout_psnr`) after k = 0, 5, 10, 25, 50 steps.

Target: the meta-learned start reaches the ordinary start's 50-step PSNR within 25
steps. docs/meta_learning.md has a measured run.

    python benchmarks/bench_meta.py --out /tmp/bench_meta
    python benchmarks/bench_meta.py --out /tmp/bench_meta --pretrained talkingface/assets/models/bundled_64.pth.tar

The result (header: machine, commit, command) goes to benchmarks/results/bench_meta.json
(`--result`); --out also gets results.json and results.md.
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

from talkingface.checkpoints.official import load_generator
from talkingface.config import Config, load_config
from talkingface.data.official import OfficialDataset
from talkingface.landmarks.scheme import get_scheme
from talkingface.recipes.meta_train import MetaTrainOptions, run_meta_training
from talkingface.recipes.personalize import PersonalizeOptions, heldout_psnr, run_personalize
from talkingface.recipes.synth import SynthOptions, run_synth
from talkingface.recipes.train import TrainOptions, run_training
from talkingface.utils.device import resolve_device

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "talkingface/properties/model/bundled/mediapipe478_64_bundled.yaml"
FACES = REPO / "tests/data/faces"
TRAIN_PHOTOS = ("obama", "obama2", "obama3")
HELD_OUT_PHOTO = "biden"
NEVER = 10 ** 9  # checkpoint / log interval that never triggers inside a run


# --------------------------------------------------------------------------- data
def write_portraits(folder: Path) -> tuple[list[Path], Path]:
    """Training portraits (each photo and its mirror image) and the held-out portrait, as PNG files."""
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
    held = folder / f"{HELD_OUT_PHOTO}.png"
    Image.open(FACES / f"{HELD_OUT_PHOTO}.jpg").convert("RGB").save(held)
    # Sorted by name, as `talkingface synth --portrait portraits/*.png` orders them
    # (scripts/train_bundled_model.sh): identity k, and so clip k's motion seed, match.
    return sorted(train), held


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


def build_configs(args, train_root: Path, out: Path) -> dict[str, Path]:
    """pretrain / ordinary / meta configs derived from the bundled YAML, saved into `out`."""
    base = load_config(CONFIG)
    # Personalisation reads the inner_* keys (warp lr factor, Adam betas) from its config;
    # every config gets the same ones so either start is personalised alike.
    inner = dict(inner_lr_generator=args.inner_lr, inner_warplr_tune=args.inner_warplr_tune,
                 inner_beta_1=0.5, inner_beta_2=0.999)
    pretrain = with_data(base, train_root, "bench_meta_pretrain", args.seed)
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
    return {name: save_config(cfg, out / "configs" / f"{name}.yaml")
            for name, cfg in (("pretrain", pretrain), ("ordinary", ordinary), ("meta", meta))}


# --------------------------------------------------------------------------- stages
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


def personalise_and_score(args, name: str, start: Path, cfg_path: Path, person: Path, evaluation: OfficialDataset,
                          out: Path) -> dict:
    """Held-out PSNR of `start` after each k personalisation steps (k = 0: the start itself).

    One personalisation per seed (batch order and RNG); "psnr" is the mean over seeds,
    "per_seed" the values behind it.
    """
    device = resolve_device(args.device)
    cfg = load_config(cfg_path)
    frames = list(range(len(evaluation)))
    per_seed: dict[int, list[float]] = {k: [] for k in args.k}
    in_clip: dict[int, list[float]] = {k: [] for k in args.k if k}
    for seed in args.personalize_seeds:
        for k in args.k:
            if k == 0:
                if per_seed[0]:  # no training: the same for every seed
                    continue
                path = start
            else:
                path = out / f"{name}_seed{seed}_k{k}.pth.tar"
                result = run_personalize(PersonalizeOptions(
                    ckpt=str(start), data=str(person), out=str(path), steps=k, config=str(cfg_path),
                    holdout=args.holdout, batch_size=args.inner_batch, lr=args.personalize_lr, device=args.device,
                    seed=seed))
                in_clip[k].append(result.psnr_after)
            generator = load_generator(path, cfg).model.to(device)
            per_seed[k].append(heldout_psnr(generator, evaluation, frames, device))
            print(f"[{name}] seed {seed}, k={k}: held-out PSNR {per_seed[k][-1]:.2f} dB")
    return {"psnr": {k: float(np.mean(v)) for k, v in per_seed.items()},
            "spread": {k: float(np.std(v)) for k, v in per_seed.items()},
            "per_seed": per_seed,
            "personalize_holdout_psnr": {k: float(np.mean(v)) for k, v in in_clip.items()}}


# --------------------------------------------------------------------------- report
@contextlib.contextmanager
def timed(times: dict[str, dict[str, float]], name: str):
    """Wall seconds and this process's CPU seconds (all threads): on a shared machine the CPU time is the cost."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    times[name] = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def markdown_table(rows: dict[str, dict], ks: list[int]) -> str:
    lines = ["| start | " + " | ".join(f"k = {k}" for k in ks) + " |",
             "|---|" + "---:|" * len(ks)]
    for label, r in rows.items():
        lines.append(f"| {label} | " + " | ".join(
            f"{r['psnr'][k]:.2f}" + (f" ± {r['spread'][k]:.2f}" if k else "") for k in ks) + " |")
    return "\n".join(lines)


def verdict(meta: dict, ordinary: dict, ks: list[int], within: int, reference: int) -> tuple[bool | None, str]:
    if within not in ks or reference not in ks:
        return None, f"target not evaluated (k = {within} and k = {reference} must both be measured)"
    goal = ordinary["psnr"][reference]
    reached = [k for k in ks if meta["psnr"][k] >= goal]
    first = f"first at k = {reached[0]}" if reached else f"not reached by k = {ks[-1]}"
    met = meta["psnr"][within] >= goal
    pairs = list(zip(meta["per_seed"][within], ordinary["per_seed"][reference]))
    seeds = sum(m >= o for m, o in pairs)
    return met, (f"target {'MET' if met else 'NOT MET'} (means over personalisation seeds): meta start after "
                 f"{within} steps {meta['psnr'][within]:.2f} dB vs ordinary start after {reference} steps "
                 f"{goal:.2f} dB ({meta['psnr'][within] - goal:+.2f} dB; meta reaches it {first}); "
                 f"met for {seeds} of {len(pairs)} seeds taken one by one")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--out", default="/tmp/talkingface_bench_meta", help="Work and report folder.")
    ap.add_argument("--result", default=None, help="JSON result file (default: benchmarks/results/bench_meta.json).")
    ap.add_argument("--pretrained", default=None,
                    help="A pretrained bundled-architecture 64 px checkpoint; skips pretraining.")
    ap.add_argument("--seed", type=int, default=0, help="Config seed (training and task sampling).")
    ap.add_argument("--personalize-seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="One personalisation per seed; the table shows mean ± std over them.")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--resume", action="store_true", help="Reuse the finished training stages in --out and resume "
                    "an interrupted one (same settings only; use a fresh --out after changing any).")
    ap.add_argument("--ckpt-every", type=int, default=100, help="Training checkpoints every N iterations "
                    "(what --resume restarts from).")
    ap.add_argument("--frames", type=int, default=200, help="Frames per training clip.")
    ap.add_argument("--train-motion-seed", type=int, default=1, help="Motion seed of the training clips "
                    "(scripts/train_bundled_model.sh's data).")
    ap.add_argument("--person-frames", type=int, default=64, help="Frames of the personalisation clip.")
    ap.add_argument("--person-motion-seed", type=int, default=1001)
    ap.add_argument("--eval-frames", type=int, default=32, help="Frames of the evaluation clip.")
    ap.add_argument("--eval-motion-seed", type=int, default=2002)
    ap.add_argument("--pretrain-warp-steps", type=int, default=600)
    ap.add_argument("--pretrain-full-steps", type=int, default=600)
    ap.add_argument("--pretrain-batch", type=int, default=8)
    ap.add_argument("--meta-steps", type=int, default=200, help="Reptile outer steps.")
    ap.add_argument("--task-identities", type=int, default=1, help="Identities per Reptile task "
                    "(dataset.num_classes_per_set; the official meta config uses 1).")
    ap.add_argument("--inner-steps", type=int, default=5, help="Inner Adam steps per identity.")
    ap.add_argument("--inner-batch", type=int, default=4,
                    help="Frames per inner step = ordinary training batch = personalisation batch.")
    ap.add_argument("--inner-lr", type=float, default=2e-4)
    ap.add_argument("--inner-warplr-tune", type=float, default=0.1,
                    help="Warp-part lr factor of the inner loop and of personalisation.")
    ap.add_argument("--outer-lr", type=float, default=5e-4)
    ap.add_argument("--outer-warplr-tune", type=float, default=0.1)
    ap.add_argument("--ordinary-lr", type=float, default=2e-4, help="Ordinary continuation lr (the "
                    "bundled config's).")
    ap.add_argument("--personalize-lr", type=float, default=None, help="Default: --inner-lr.")
    ap.add_argument("--holdout", type=int, default=4, help="personalize's own held-out frames (reported apart).")
    ap.add_argument("--k", type=int, nargs="+", default=[0, 5, 10, 25, 50], help="Personalisation steps scored.")
    ap.add_argument("--within", type=int, default=25, help="Target: meta at this k ...")
    ap.add_argument("--reference", type=int, default=50, help="... reaches ordinary at this k.")
    args = ap.parse_args()
    args.personalize_lr = args.personalize_lr or args.inner_lr
    args.k = sorted(set(args.k))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, dict[str, float]] = {}
    from bench_common import result_header, result_path, write_result

    header = result_header(resolve_device(args.device))  # its load average is the one at the start

    with timed(times, "synthetic data"):
        train_portraits, held_portrait = write_portraits(out / "portraits")
        train_root = synth(train_portraits, out / "data" / "train", args.frames, args.train_motion_seed)
        person_root = synth([held_portrait], out / "data" / "person", args.person_frames, args.person_motion_seed)
        eval_root = synth([held_portrait], out / "data" / "eval", args.eval_frames, args.eval_motion_seed)
    configs = build_configs(args, train_root, out)

    if args.pretrained:
        start = Path(args.pretrained)
        if not start.is_file():
            raise SystemExit(f"--pretrained: no such file: {start}")
        pretrain_steps = "given (--pretrained)"
    else:
        with timed(times, "pretraining"):
            start = pretrain(args, configs["pretrain"], out / "pretrain")
        pretrain_steps = (f"{args.pretrain_warp_steps} warp + {args.pretrain_full_steps} full steps, "
                          f"batch {args.pretrain_batch}")

    frames_total = len(OfficialDataset(train_root, get_scheme("mediapipe478"), 64, 128))
    with timed(times, "meta-training (Reptile)"):
        meta_ckpt, meta_steps = stage(args, out / "meta", args.meta_steps, lambda resume: run_meta_training(
            MetaTrainOptions(config=str(configs["meta"]), ckpt=str(start), out_dir=str(out / "meta"),
                             max_steps=args.meta_steps, epochs=max(1, math.ceil(args.meta_steps / frames_total)),
                             ckpt_every=args.ckpt_every, resume=resume, device=args.device)))
    meta_cfg = load_config(configs["meta"])
    d = meta_cfg.dataset
    meta_grad_steps = meta_steps * d.num_classes_per_set * d.inner_update_steps
    meta_batch = d.meta_batch_size or d.num_support_samples

    with timed(times, "ordinary training"):
        ordinary_ckpt, ordinary_grad_steps = stage(args, out / "ordinary", meta_grad_steps, lambda resume: run_training(
            TrainOptions(config=str(configs["ordinary"]), stage="full", init_ckpt=str(start),
                         out_dir=str(out / "ordinary"), max_steps=meta_grad_steps, batch_size=meta_batch,
                         epochs=NEVER, ckpt_every=args.ckpt_every, resume=resume, device=args.device)))

    evaluation = OfficialDataset(eval_root, get_scheme("mediapipe478"), 64, 128)
    rows = {}
    for label, key, ckpt in (("meta start", "meta", meta_ckpt), ("ordinary start", "ordinary", ordinary_ckpt),
                             ("pretrained start (reference)", "pretrained", start)):
        with timed(times, f"personalise + score: {label}"):
            rows[label] = personalise_and_score(args, key, Path(ckpt), configs["meta"], person_root, evaluation,
                                                out / "personalized")

    met, line = verdict(rows["meta start"], rows["ordinary start"], args.k, args.within, args.reference)
    table = markdown_table(rows, args.k)
    accounting = [
        f"pretraining: {pretrain_steps}",
        f"meta (Reptile): {meta_steps} outer steps x {d.num_classes_per_set} identities x "
        f"{d.inner_update_steps} inner steps = {meta_grad_steps} generator gradient steps, batch {meta_batch} "
        f"(inner lr {meta_cfg.train.inner_lr_generator:g}, outer Adam lr {meta_cfg.train.lr_generator:g})",
        f"ordinary (full stage): {ordinary_grad_steps} generator gradient steps, batch {meta_batch} "
        f"(lr {load_config(configs['ordinary']).train.lr_generator:g}; its discriminator step has weight 0)",
        f"personalisation: batch {args.inner_batch}, lr {args.personalize_lr:g}, seeds {args.personalize_seeds}, "
        f"same config "
        f"({configs['meta'].name}) for every start; scored on {len(evaluation)} frames of an unseen-motion clip",
    ]
    report = {
        "table_psnr_db": {label: {str(k): r["psnr"][k] for k in args.k} for label, r in rows.items()},
        "psnr_db_per_seed": {label: {str(k): r["per_seed"][k] for k in args.k} for label, r in rows.items()},
        "personalize_holdout_psnr_db": {label: {str(k): v for k, v in r["personalize_holdout_psnr"].items()}
                                        for label, r in rows.items()},
        "target": {"met": met, "line": line, "within": args.within, "reference": args.reference},
        "generator_gradient_steps": {"meta": meta_grad_steps, "ordinary": ordinary_grad_steps,
                                     "batch": meta_batch},
        "accounting": accounting,
        "seconds": times,
        "checkpoints": {"start": str(start), "meta": str(meta_ckpt), "ordinary": str(ordinary_ckpt)},
        "configs": {k: str(v) for k, v in configs.items()},
        "args": vars(args),
        "load_average_at_end": os.getloadavg(),
    }
    markdown = "\n".join([
        "## Held-out PSNR (dB) after k personalisation steps", "", table, "",
        "## Equal compute", "", *[f"- {a}" for a in accounting], "",
        "## Time (wall; process CPU, all threads)", "",
        *[f"- {k}: {v['wall_s']:.0f} s wall, {v['cpu_s']:.0f} s CPU" for k, v in times.items()], "",
        "## Target", "", line, ""])
    (out / "results.json").write_text(json.dumps(report, indent=2))
    written = write_result(args.result or result_path(__file__), report, header)
    (out / "results.md").write_text(markdown)
    print()
    print(markdown)
    print(f"Wrote {written}, {out / 'results.json'} and {out / 'results.md'}")


if __name__ == "__main__":
    main()
