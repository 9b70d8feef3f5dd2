"""The seed's front door: `python run_talkingface.py --model=<name> ...`.

Accepts the seed's commands verbatim, including its `--model==name` spelling, and
hands each model name to the same recipe as `talkingface <verb>`.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from talkingface.cli import run_guarded
from talkingface.errors import TalkingFaceError
from talkingface.utils.options import add_options, options_from_args

PROG = "run_talkingface.py"
MODELS = ("metaportraitbaseinference", "metaportraitbasetrain", "metaportraitsr")
SR_TRAIN_TASKS = ("train", "pretrain", "meta")  # "meta" is the seed parser's default: --task left out means train
SR_TEST_TASKS = ("test", "eval")
# the training flags (`talkingface train`'s, declared on TrainOptions) the seed's metaportraitbasetrain takes
SEED_TRAIN_OPTIONS = ("out_dir", "resume", "warp_ckpt", "data_root", "max_steps", "epochs", "ckpt_every", "log_every",
                      "image_every", "vgg19", "random_vgg", "skip_bad", "val_data", "num_workers", "device")


def build_parser() -> argparse.ArgumentParser:
    # lazy: verb (built inside run_guarded, so a recipe that fails to import is a one-line error)
    from talkingface.recipes.infer import InferOptions
    from talkingface.recipes.train import TrainOptions

    p = argparse.ArgumentParser(prog=PROG, description="Seed-compatible entry point of talkingface.")
    p.add_argument("--model", required=True, help=f"one of: {', '.join(MODELS)}")
    p.add_argument("--config", required=True, help="YAML config (official schema)")
    p.add_argument("--ckpt", default=None, help="checkpoint to load")
    p.add_argument("--save_dir", default="./saved", help="output folder (inference)")
    p.add_argument("--fps", type=float, default=23.98, help="output video frame rate (inference)")
    p.add_argument("--batch_size", "--batch-size", type=int, default=None,
                   help="frames per forward (inference; default 1 at fp32, pixel-exact; 4 at bf16/fp16)")
    add_options(p, TrainOptions, only=["mixed_precision"])  # --fp16 (training)
    add_options(p, InferOptions, only=["precision", "force"])  # inference and metaportraitsr --task Test
    p.add_argument("--stage", default="Full", help="Warp | Full (training)")
    p.add_argument("--task", default="Meta", help="Pretrain | Meta | Eval (training)")
    p.add_argument("--remove_sn", action="store_true", help="remove spectral norm (meta-training)")
    p.add_argument("--input", default=None, help="metaportraitsr --task Test: frames folder or video to enhance")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    train = p.add_argument_group("training (metaportraitbasetrain)")
    add_options(train, TrainOptions, only=SEED_TRAIN_OPTIONS)
    return p


def _run(args: argparse.Namespace) -> None:
    model = args.model.lstrip("=").strip().lower()  # the seed writes --model==name
    if model == "metaportraitbaseinference":
        # lazy: verb (as in build_parser)
        from talkingface.recipes.infer import InferOptions, run_inference

        if args.ckpt is None:
            raise TalkingFaceError("--ckpt is required for metaportraitbaseinference")
        run_inference(InferOptions(config=args.config, ckpt=args.ckpt, save_dir=args.save_dir, fps=args.fps,
                                   batch_size=args.batch_size, device=args.device, precision=args.precision,
                                   force=args.force))
    elif model == "metaportraitbasetrain":
        stage, task = args.stage.lower(), args.task.lower()
        if stage not in ("warp", "full"):
            raise TalkingFaceError(f"--stage must be Warp or Full, not {args.stage!r}")
        if task == "pretrain":
            # lazy: verb (as in build_parser)
            from talkingface.recipes.train import TrainOptions, run_training

            run_training(options_from_args(TrainOptions, args, stage=stage, init_ckpt=args.ckpt, batch_size=None))
        elif task == "meta":
            if stage != "full":
                raise TalkingFaceError("--task Meta runs on the full model: use --stage Full")
            # lazy: verb (only the recipe of the model asked for loads)
            from talkingface.recipes.meta_train import MetaTrainOptions, run_meta_training

            run_meta_training(options_from_args(MetaTrainOptions, args))  # --ckpt, --remove_sn included
        else:
            raise TalkingFaceError(f"--task must be Pretrain or Meta, not {args.task!r}")
    elif model == "metaportraitsr":
        run_seed_sr(args)
    else:
        raise TalkingFaceError(f"unknown --model {args.model!r}; expected one of: {', '.join(MODELS)}")


def run_seed_sr(args: argparse.Namespace) -> None:
    """`python run_talkingface.py --model=metaportraitsr --config <sr yaml> [--ckpt ...] [--task Train|Test]`.

    Train: `--ckpt` is the starting point (GFPGANv1.3 or a temporal SR checkpoint);
    the training flags (SEED_TRAIN_OPTIONS) apply. Test: enhances the config's
    datasets.val clips (or --data) with `--ckpt` into --save_dir and scores them; with
    an `--input` (frames folder or video) it runs `enhance` on that instead.
    """
    task = str(getattr(args, "task", None) or "train").lower()
    get = lambda name: getattr(args, name, None)  # noqa: E731 - the seed parser may lack some flags
    if task in SR_TRAIN_TASKS:
        for flag, name in (("--warp-ckpt", "warp_ckpt"), ("--epochs", "epochs"), ("--skip-bad", "skip_bad")):
            if get(name):
                raise TalkingFaceError(f"{flag} does not apply to --model=metaportraitsr (it trains for "
                                       "train.total_iter iterations)")
        # lazy: verb (only the recipe of the model asked for loads)
        from talkingface.recipes.train_sr import SRTrainOptions, run_sr_training

        run_sr_training(SRTrainOptions(
            config=args.config, init_ckpt=get("ckpt"), out_dir=get("out_dir"), resume=get("resume"),
            data_root=get("data_root"), device=get("device") or "auto", mixed_precision=bool(get("mixed_precision")),
            force=bool(get("force")), max_steps=get("max_steps"), ckpt_every=get("ckpt_every"),
            log_every=get("log_every"), image_every=get("image_every"), vgg19=get("vgg19"),
            random_vgg=bool(get("random_vgg")), num_workers=get("num_workers")))
    elif task in SR_TEST_TASKS:
        if get("input"):
            # lazy: verb (only the recipe of the model asked for loads)
            from talkingface.recipes.enhance import EnhanceOptions, run_enhance

            if not get("ckpt"):
                raise TalkingFaceError("--ckpt is required to enhance --input")
            run_enhance(EnhanceOptions(input=args.input, ckpt=args.ckpt, out=get("save_dir") or "./saved",
                                       batch_size=get("batch_size") or 1, device=get("device") or "auto",
                                       precision=get("precision") or "fp32", force=bool(get("force"))))
            return
        # lazy: verb (only the recipe of the model asked for loads)
        from talkingface.recipes.sr_eval import SRTestOptions, run_sr_test

        run_sr_test(SRTestOptions(config=args.config, ckpt=get("ckpt"), save_dir=get("save_dir") or "./saved",
                                  data_root=get("data_root"), device=get("device") or "auto",
                                  batch_size=get("batch_size") or 1))
    else:
        raise TalkingFaceError(f"--task must be Train or Test for --model=metaportraitsr, not {args.task!r}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parsed: list[argparse.Namespace] = []
    code = run_guarded(lambda: parsed.append(build_parser().parse_args(argv)), "--debug" in argv, PROG)
    if code:
        return code
    args = parsed[0]
    return run_guarded(lambda: _run(args), args.debug, PROG)
