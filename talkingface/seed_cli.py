"""The seed's front door: `python run_talkingface.py --model=<name> ...`.

Accepts the seed's commands verbatim, including its `--model==name` spelling, and
hands each model name to the same recipe as `talkingface <verb>`.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from talkingface.cli import (add_fp16_argument, add_precision_argument, add_train_arguments, meta_options_from_args,
                             run_guarded, train_options_from_args)
from talkingface.errors import TalkingFaceError

PROG = "run_talkingface.py"
MODELS = ("metaportraitbaseinference", "metaportraitbasetrain", "metaportraitsr")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Seed-compatible entry point of talkingface.")
    p.add_argument("--model", required=True, help=f"one of: {', '.join(MODELS)}")
    p.add_argument("--config", required=True, help="YAML config (official schema)")
    p.add_argument("--ckpt", default=None, help="checkpoint to load")
    p.add_argument("--save_dir", default="./saved", help="output folder (inference)")
    p.add_argument("--fps", type=float, default=23.98, help="output video frame rate (inference)")
    p.add_argument("--batch_size", "--batch-size", type=int, default=None,
                   help="frames per forward (inference; default 1 at fp32, pixel-exact; 4 at bf16/fp16)")
    add_fp16_argument(p, " (training)", force=False)  # the one --force comes with --precision
    add_precision_argument(p, "fp32", "Inference and --model=metaportraitsr --task Test only; fp32 (default) "
                                      "matches the reference implementation")
    p.add_argument("--stage", default="Full", help="Warp | Full (training)")
    p.add_argument("--task", default="Meta", help="Pretrain | Meta | Eval (training)")
    p.add_argument("--remove_sn", action="store_true", help="remove spectral norm (meta-training)")
    p.add_argument("--input", default=None, help="metaportraitsr --task Test: frames folder or video to enhance")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    train = p.add_argument_group("training (metaportraitbasetrain)")
    add_train_arguments(train)
    return p


def _run(args: argparse.Namespace) -> None:
    model = args.model.lstrip("=").strip().lower()  # the seed writes --model==name
    if model == "metaportraitbaseinference":
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
            from talkingface.recipes.train import run_training

            run_training(train_options_from_args(args, stage, None, args.ckpt))
        elif task == "meta":
            if stage != "full":
                raise TalkingFaceError("--task Meta runs on the full model: use --stage Full")
            from talkingface.recipes.meta_train import run_meta_training

            run_meta_training(meta_options_from_args(args, args.ckpt, args.remove_sn))
        else:
            raise TalkingFaceError(f"--task must be Pretrain or Meta, not {args.task!r}")
    elif model == "metaportraitsr":
        from talkingface.recipes.train_sr import run_seed_sr

        run_seed_sr(args)
    else:
        raise TalkingFaceError(f"unknown --model {args.model!r}; expected one of: {', '.join(MODELS)}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    return run_guarded(lambda: _run(args), args.debug, PROG)
