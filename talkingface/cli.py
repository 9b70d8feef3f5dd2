"""`talkingface <verb>`: the one command-line entry point.

Each verb is declared here with its flags; its handler imports the recipe that does
the work, so `talkingface --help` stays fast and a verb's heavy imports load only
when that verb runs. User errors (`TalkingFaceError`) print as one line and exit 2;
`--debug` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from typing import Callable, Sequence

from talkingface.errors import TalkingFaceError, describe_os_error

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1


# --------------------------------------------------------------------------- verbs
def add_force_argument(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--force", action="store_true",
                   help="Keep the requested bf16/fp16 (--precision, --fp16) even where this machine only emulates "
                        "it: bf16 on a CPU without avx512_bf16/amx_bf16, fp16 on a CPU without "
                        "avx512_fp16/amx_fp16, bf16 on a GPU before compute capability 8.0. Measured 60-100x "
                        "slower than fp32 on an AVX2-only CPU. Without it: one warning, then fp32.")


def add_precision_argument(p: argparse.ArgumentParser | argparse._ArgumentGroup, default: str, note: str,
                           force: bool = True) -> None:
    """--precision, and (`force`) --force to keep a low precision the machine only emulates."""
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default=default,
                   help="Inference precision. auto: the fastest one measured to stay within 40 dB PSNR of fp32 "
                        "on this device; bf16/fp16 run convolutions in that type, or fp32 (one warning) where "
                        f"the machine only emulates it (--force keeps it). {note}.")
    if force:
        add_force_argument(p)


def add_fp16_argument(p: argparse.ArgumentParser | argparse._ArgumentGroup, note: str, force: bool = True) -> None:
    """--fp16 (training), and (`force`) --force to keep bf16 autocast where it is emulated."""
    p.add_argument("--fp16", action="store_true",
                   help=f"Mixed precision{note}: fp16 + GradScaler on CUDA, bf16 autocast on CPU. Trains in fp32 "
                        "(one warning) where bf16 is emulated, i.e. a CPU without avx512_bf16/amx_bf16 (--force "
                        "keeps it).")
    if force:
        add_force_argument(p)


def _add_infer(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("infer", help="Reconstruct an official-layout dataset with a base-model checkpoint.")
    p.add_argument("--config", required=True, help="Model/data YAML (official schema).")
    p.add_argument("--ckpt", required=True, help="Base-model checkpoint (official format or ours).")
    p.add_argument("--data", default=None, help="Dataset root; defaults to the config's dataset root.")
    p.add_argument("--out", default="./saved", help="Output folder: out/output_256/*.png and out/out_256.mp4.")
    p.add_argument("--fps", type=float, default=23.98, help="Frame rate of the output video.")
    p.add_argument("--batch-size", type=int, default=None,
                   help="Driving frames per forward pass (default: 1 at fp32, pixel-exact; 4 at bf16/fp16).")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
    p.add_argument("--no-video", action="store_true", help="Write the PNG frames only.")
    p.add_argument("--eval", action="store_true",
                   help="Score the self-reconstruction against the driving frames (report in OUT/eval).")
    p.add_argument("--keep-partial", action="store_true",
                   help="On failure keep the frames written so far in OUT/output_256.partial (by default a "
                        "failed run leaves no frames and no video: both appear only when complete).")
    add_precision_argument(p, "fp32", "fp32 (default) matches the reference implementation pixel for pixel")
    p.set_defaults(handler=_run_infer)


def _run_infer(args: argparse.Namespace) -> None:
    from talkingface.recipes.infer import InferOptions, run_inference

    run_inference(InferOptions(
        config=args.config, ckpt=args.ckpt, data_root=args.data, save_dir=args.out, fps=args.fps,
        batch_size=args.batch_size, device=args.device, write_video=not args.no_video, evaluate=args.eval,
        precision=args.precision, force=args.force, keep_partial=args.keep_partial))


def _add_sample_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample-data", help="Copy the bundled official-layout sample dataset to a folder.")
    p.add_argument("dest", nargs="?", default="dataset/meta_portrait_base_data",
                   help="Destination (default: the eval config's dataset root).")
    p.add_argument("--force", action="store_true", help="Replace a non-empty destination (else it is kept).")
    p.set_defaults(handler=_run_sample_data)


def _run_sample_data(args: argparse.Namespace) -> None:
    from talkingface.data.sample import install_sample_data

    dest, written = install_sample_data(args.dest, args.force)
    print(f"Sample dataset written to {dest}" if written else f"{dest} already exists; kept it (--force replaces it)")


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Training flags shared by `talkingface train` and the seed's metaportraitbasetrain."""
    p.add_argument("--out", dest="out_dir", default=None,
                   help="Checkpoint/log folder (default: saved/ckpt_<stage>/<exp_name>).")
    p.add_argument("--resume", default=None, help="Checkpoint to resume, or 'auto' for the newest in --out.")
    p.add_argument("--warp-ckpt", default=None, help="Full stage: warp-stage checkpoint (overrides model.warp_ckpt).")
    p.add_argument("--data", dest="data_root", default=None,
                   help="Dataset root, or a shard set: its folder or a brace pattern such as "
                        "'shards/shard-{000000..000099}.tar' (overrides the config).")
    p.add_argument("--max-steps", type=int, default=None, help="Stop after this many iterations (with a checkpoint).")
    p.add_argument("--epochs", type=int, default=None, help="Override train.epochs.")
    p.add_argument("--ckpt-every", type=int, default=None, help="Override train.ckpt_save_iter_freq.")
    p.add_argument("--log-every", type=int, default=None, help="Override train.print_freq.")
    p.add_argument("--image-every", type=int, default=None, help="Override train.event_save_freq.")
    p.add_argument("--vgg19", default=None, help="VGG19 ImageNet weights (torchvision layout).")
    p.add_argument("--random-vgg", action="store_true", help="Smoke tests only: untrained VGG19 for the perceptual loss.")
    p.add_argument("--skip-bad", action="store_true",
                   help="Skip unreadable frames, and truncated or corrupt shards, with a warning.")
    p.add_argument("--val-data", default=None, help="Full stage: held-out dataset scored every train.eval_freq "
                                                     "iterations (PSNR/SSIM/L1, as `talkingface evaluate`).")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes.")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N.")


def train_options_from_args(args: argparse.Namespace, stage: str, batch_size: int | None, init_ckpt: str | None,
                            shuffle_buffer: int | None = None):
    from talkingface.recipes.train import TrainOptions

    return TrainOptions(
        config=args.config, stage=stage, out_dir=args.out_dir, resume=args.resume, init_ckpt=init_ckpt,
        warp_ckpt=args.warp_ckpt, data_root=args.data_root, mixed_precision=args.fp16, force=args.force,
        device=args.device, max_steps=args.max_steps, epochs=args.epochs, batch_size=batch_size,
        ckpt_every=args.ckpt_every, log_every=args.log_every, image_every=args.image_every, vgg19=args.vgg19,
        random_vgg=args.random_vgg, skip_bad=args.skip_bad, val_data=args.val_data, num_workers=args.num_workers,
        shuffle_buffer=shuffle_buffer or TrainOptions.shuffle_buffer)


def meta_options_from_args(args: argparse.Namespace, ckpt: str | None, remove_sn: bool):
    from talkingface.recipes.meta_train import MetaTrainOptions

    return MetaTrainOptions(
        config=args.config, ckpt=ckpt, remove_sn=remove_sn, out_dir=args.out_dir, resume=args.resume,
        data_root=args.data_root, device=args.device, mixed_precision=args.fp16, force=args.force,
        max_steps=args.max_steps, epochs=args.epochs, ckpt_every=args.ckpt_every, log_every=args.log_every,
        vgg19=args.vgg19, random_vgg=args.random_vgg, skip_bad=args.skip_bad)


def _add_meta_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("meta-train", help="Reptile meta-training from a full-stage checkpoint.")
    p.add_argument("--config", required=True, help="Meta-training YAML (official schema).")
    p.add_argument("--ckpt", default=None, help="Full-stage checkpoint to start from.")
    p.add_argument("--remove-sn", action="store_true", help="Fold spectral norm into plain weights first.")
    add_fp16_argument(p, " in the inner loop")
    add_train_arguments(p)
    p.set_defaults(handler=_run_meta_train)


def _run_meta_train(args: argparse.Namespace) -> None:
    from talkingface.recipes.meta_train import run_meta_training

    run_meta_training(meta_options_from_args(args, args.ckpt, args.remove_sn))


def _add_personalize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("personalize", help="Fine-tune a base model to one person (dataset folder or video).")
    p.add_argument("--ckpt", required=True, help="Base checkpoint (ideally meta-trained).")
    p.add_argument("--data", required=True,
                   help="The person: an official-layout dataset folder, a shard set (folder or brace pattern) or a "
                        "video.")
    p.add_argument("--out", default="personalized.pth.tar", help="Output checkpoint.")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--steps", type=int, help="Number of fine-tuning steps.")
    budget.add_argument("--seconds", type=float, help="Wall-time budget in seconds.")
    p.add_argument("--config", default=None, help="Model config (default: the one stored in the checkpoint).")
    p.add_argument("--holdout", type=int, default=4, help="Frames held out for the before/after PSNR.")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=None, help="Learning rate (default: train.inner_lr_generator).")
    p.add_argument("--vgg19", default=None, help="VGG19 ImageNet weights (torchvision layout).")
    p.add_argument("--random-vgg", action="store_true", help="Smoke tests only: untrained VGG19.")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    add_fp16_argument(p, "")
    p.set_defaults(handler=_run_personalize)


def _run_personalize(args: argparse.Namespace) -> None:
    from talkingface.recipes.personalize import PersonalizeOptions, run_personalize

    run_personalize(PersonalizeOptions(
        ckpt=args.ckpt, data=args.data, out=args.out, steps=args.steps, seconds=args.seconds, config=args.config,
        holdout=args.holdout, batch_size=args.batch_size, lr=args.lr, vgg19=args.vgg19, random_vgg=args.random_vgg,
        device=args.device, seed=args.seed, mixed_precision=args.fp16, force=args.force))


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="Pretrain the base model: the warp stage, then the full stage.")
    p.add_argument("--config", required=True, help="Training YAML (official schema).")
    p.add_argument("--stage", choices=["warp", "full"], required=True)
    add_fp16_argument(p, "")
    p.add_argument("--batch-size", type=int, default=None, help="Global batch (overrides train.batch_size).")
    p.add_argument("--init", dest="init_ckpt", default=None, help="Start from this checkpoint's weights.")
    p.add_argument("--shuffle-buffer", type=int, default=1000,
                   help="Shard sets: frames each loader worker shuffles among (1: shard order).")
    add_train_arguments(p)
    p.set_defaults(handler=_run_train)


def _run_train(args: argparse.Namespace) -> None:
    from talkingface.recipes.train import run_training

    run_training(train_options_from_args(args, args.stage, args.batch_size, args.init_ckpt, args.shuffle_buffer))


def _add_enhance(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("enhance", help="Temporal x2 face super-resolution (256 -> 512) of a frames folder or video.")
    p.add_argument("--input", required=True, help="Folder of .png/.jpg frames (square face crops) or a video file.")
    p.add_argument("--ckpt", required=True, help="temporal_gfpgan.pth (official) or a checkpoint of ours.")
    p.add_argument("--out", required=True, help="Output: a folder of PNGs, or a video file (.mp4) that keeps "
                                                "the input video's fps and audio.")
    p.add_argument("--window", type=int, default=None,
                   help="Frames per forward pass (default: 16 new frames + the context; 16 with reference chunking).")
    p.add_argument("--overlap", type=int, default=None,
                   help="Context frames each side (default: the network's temporal radius, 14; exact).")
    p.add_argument("--batch-size", type=int, default=1, help="Windows per forward pass.")
    p.add_argument("--chunking", choices=["overlap", "reference"], default="overlap",
                   help="overlap: windows with context, equal to a whole-clip pass; reference: independent "
                        "16-frame chunks like the official test script.")
    p.add_argument("--weights", choices=["auto", "params_ema", "params"], default="auto",
                   help="Which weights of a BasicSR checkpoint (auto: params_ema when present).")
    p.add_argument("--fps", type=float, default=25.0, help="Frame rate when a frames folder is written as video.")
    add_precision_argument(p, "auto", "Default auto")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
    p.set_defaults(handler=_run_enhance)


def _run_enhance(args: argparse.Namespace) -> None:
    from talkingface.recipes.enhance import EnhanceOptions, run_enhance

    run_enhance(EnhanceOptions(
        input=args.input, ckpt=args.ckpt, out=args.out, window=args.window, overlap=args.overlap,
        batch_size=args.batch_size, chunking=args.chunking, device=args.device, weights=args.weights,
        fps=args.fps, precision=args.precision, force=args.force))


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="Make an official-layout dataset of synthetic talking clips from portraits.")
    p.add_argument("--portrait", nargs="+", required=True, metavar="IMG", help="Portrait image(s), one identity each.")
    p.add_argument("--out", required=True, help="Dataset root to write (replaced only once complete).")
    p.add_argument("--frames", type=int, default=100, help="Driving frames per portrait.")
    p.add_argument("--seed", type=int, default=0, help="Motion seed: the same seed gives the same clips.")
    p.add_argument("--scheme", choices=["mediapipe478", "dense669"], default="mediapipe478",
                   help="Landmark scheme to write (dense669: a stand-in built from MediaPipe points).")
    p.add_argument("--size", type=int, default=256, help="Side of the square face crop, px.")
    p.add_argument("--identity", choices=["hash", "dlib"], default="hash",
                   help="hash: a unit vector derived from the pixels (no dlib); dlib: the 128-d face descriptor.")
    p.add_argument("--identity-dim", type=int, default=None,
                   help="Length of the hash identity (default: 128 for mediapipe478, 256 for dense669).")
    p.add_argument("--max-shift", type=float, default=None, help="Largest shift, fraction of the size (default 0.04).")
    p.add_argument("--max-scale", type=float, default=None, help="Largest |scale - 1| (default 0.05).")
    p.add_argument("--max-rotation", type=float, default=None, help="Largest in-plane rotation, degrees (default 5).")
    p.add_argument("--mouth-open", type=float, default=None, help="Largest lip gap, fraction of face height (default 0.08).")
    p.add_argument("--blink-every", type=float, default=None, help="Mean frames between blinks, 0 for none (default 90).")
    p.add_argument("--max-yaw", type=float, default=None,
                   help="Largest head turn out of the image plane, degrees (default 0; about 20 looks right).")
    p.add_argument("--max-pitch", type=float, default=None,
                   help="Largest head nod out of the image plane, degrees (default 0; about 15 looks right).")
    p.add_argument("--smile", type=float, default=None,
                   help="Largest smile: mouth-corner lift, fraction of the mouth width (default 0; try 0.15).")
    p.add_argument("--brow", type=float, default=None,
                   help="Largest brow raise, fraction of the face height (default 0; try 0.03).")
    p.add_argument("--teeth", type=float, default=None,
                   help="Opacity of an upper-teeth hint in the open mouth, 0..1 (default 0: a plain dark gap).")
    p.add_argument("--video", default=None, help="Also write an mp4 preview of all clips.")
    p.add_argument("--fps", type=float, default=25.0, help="Frame rate of the preview.")
    p.set_defaults(handler=_run_synth)


def _run_synth(args: argparse.Namespace) -> None:
    from talkingface.data.synthetic import MotionSpec
    from talkingface.recipes.synth import SynthOptions, run_synth

    overrides = {"max_shift": args.max_shift, "max_scale": args.max_scale, "max_rotation_deg": args.max_rotation,
                 "mouth_open_max": args.mouth_open, "blink_every": args.blink_every, "max_yaw_deg": args.max_yaw,
                 "max_pitch_deg": args.max_pitch, "smile_max": args.smile, "brow_max": args.brow, "teeth": args.teeth}
    run_synth(SynthOptions(
        portraits=args.portrait, out=args.out, frames=args.frames, seed=args.seed, scheme=args.scheme,
        size=args.size, identity=args.identity, identity_dim=args.identity_dim, video=args.video, fps=args.fps,
        spec=MotionSpec(**{k: v for k, v in overrides.items() if v is not None})))


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="Score a predicted video against its ground truth and write a report.")
    p.add_argument("--pred", required=True, help="Predicted frames: a folder of images or a video file.")
    p.add_argument("--gt", required=True, help="Ground-truth (or driving) frames: a folder of images or a video.")
    p.add_argument("--out", required=True, help="Report folder: per_frame.csv, summary.json, metrics.png, "
                                                "side_by_side.mp4.")
    p.add_argument("--source", default=None, help="Source image: CSIM against it (cross-identity runs) and the "
                                                  "first column of the side-by-side video.")
    p.add_argument("--lpips-alexnet", default=None, help="torchvision AlexNet weights (alexnet-owt-7be5be79.pth); "
                   "default $TALKINGFACE_LPIPS_ALEXNET, then $TORCH_HOME/hub/checkpoints/.")
    p.add_argument("--lpips-lin", default=None, help="LPIPS v0.1 linear layers (alex.pth); "
                                                     "default $TALKINGFACE_LPIPS_LIN.")
    p.add_argument("--inception", default=None, help="Inception-v3 weights for FID (pt_inception-2015-12-05 or "
                   "torchvision's); default $TALKINGFACE_INCEPTION, then $TORCH_HOME/hub/checkpoints/.")
    p.add_argument("--arcface", default=None, help="ArcFace ONNX model for CSIM (needs onnxruntime); "
                                                   "default: dlib's face descriptor.")
    p.add_argument("--fps", type=float, default=None, help="Side-by-side video rate; default the inputs' rate.")
    p.add_argument("--no-video", action="store_true", help="Skip the side-by-side video.")
    p.add_argument("--no-face-metrics", action="store_true", help="Skip CSIM and AKD (the slowest part on CPU).")
    p.add_argument("--no-temporal", action="store_true", help="Skip the warping error.")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (LPIPS and FID networks).")
    p.add_argument("--batch-size", type=int, default=8, help="Frames per LPIPS / Inception pass.")
    p.set_defaults(handler=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> None:
    from talkingface.recipes.evaluate import EvaluateOptions, run_evaluate

    run_evaluate(EvaluateOptions(
        pred=args.pred, gt=args.gt, out=args.out, source=args.source, lpips_alexnet=args.lpips_alexnet,
        lpips_lin=args.lpips_lin, inception=args.inception, arcface=args.arcface, fps=args.fps,
        write_video=not args.no_video, face_metrics=not args.no_face_metrics, temporal=not args.no_temporal,
        device=args.device, batch_size=args.batch_size))


def parse_size(text: str) -> int:
    """Bytes from '1GB', '500M', '64KiB' or a plain number (decimal units; KiB, MiB, GiB binary)."""
    units = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 2**10, "mi": 2**20, "gi": 2**30}
    value = text.strip().lower().removesuffix("b")
    number = value.rstrip("kmgti")
    try:
        return int(float(number) * units[value[len(number):]])
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a size such as 1GB, 500MB or 1000000; got {text!r}") from None


def add_shard_size_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shard-size", type=parse_size, default="1GB", metavar="SIZE",
                   help="Target size of a WebDataset shard (default 1GB; e.g. 500MB).")


def _add_pack_shards(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pack-shards", help="Convert an official-layout dataset (either scheme) to WebDataset shards.")
    p.add_argument("root", metavar="DATASET", help="Dataset folder (official layout).")
    p.add_argument("--out", required=True, help="New shard folder: shard-*.tar and index.json.")
    add_shard_size_argument(p)
    p.set_defaults(handler=_run_pack_shards)


def _run_pack_shards(args: argparse.Namespace) -> None:
    from talkingface.recipes.preprocess import PackOptions, run_pack

    run_pack(PackOptions(root=args.root, out=args.out, shard_bytes=args.shard_size))


def _add_preprocess(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preprocess", help="Turn talking-head videos (or image folders) into a mediapipe478 dataset.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="Video files, folders of frames, or folders searched recursively for both.")
    p.add_argument("--out", required=True, help="Dataset folder (official layout + meta.json); re-runs resume it.")
    p.add_argument("--size", type=int, default=None, help="Crop size: 256 (default) or 512 for super-resolution data.")
    p.add_argument("--config", default=None, help="A mediapipe478 model config: size and crop settings from it.")
    p.add_argument("--crop-expand", type=float, default=None, help="Crop side / face-box side (default 1.3).")
    p.add_argument("--crop-offset-y", type=float, default=None,
                   help="Crop centre moves down by this x face-box height (default 0.2).")
    p.add_argument("--moving-box", action="store_true", default=None,
                   help="Follow the face with a smoothed box (default: one static box per video).")
    p.add_argument("--source-frame", type=int, default=None,
                   help="Frame index of the source portrait (default: the first near-frontal frame).")
    p.add_argument("--min-confidence", type=float, default=0.5, help="Face confidence below which a frame is dropped.")
    p.add_argument("--no-smooth", action="store_true", help="Keep raw per-frame landmarks (no temporal smoothing).")
    p.add_argument("--fps", type=float, default=25.0, help="Frame rate recorded for folders of images.")
    p.add_argument("--max-frames", type=int, default=None, help="Stop each input after this many frames.")
    p.add_argument("--preview", action="store_true", help="Also write <out>/<k>/preview.mp4 with landmarks drawn.")
    p.add_argument("--shard", default=None, metavar="K/N",
                   help="Process only shard K of N (K from 0) of the sorted inputs; merge shards with merge-data "
                        "(for machines without Ray; --ray spreads one run over a cluster).")
    p.add_argument("--workers", type=int, default=None,
                   help="Inputs processed at once in worker processes (default 1); with --ray local: the local "
                        "Ray instance's CPUs (default: all cores).")
    p.add_argument("--ray", nargs="?", const="auto", default=None, metavar="auto|local|ADDRESS",
                   help="One Ray task per input. auto (the default value): the cluster Ray finds (RAY_ADDRESS, or "
                        "one started here with `ray start`), else a local instance of all cores; local: a new local "
                        "instance (--workers CPUs); ADDRESS: a cluster's HOST:PORT. Needs pip install -e \".[scale]\".")
    p.add_argument("--retries", type=int, default=3,
                   help="--ray: further attempts at an input whose worker died or hit an I/O error.")
    p.add_argument("--format", choices=["folder", "shards"], default="folder",
                   help="folder: the official layout; shards: WebDataset tar shards for training I/O at scale "
                        "(--shard-size each).")
    add_shard_size_argument(p)
    p.add_argument("--no-scene-split", action="store_true",
                   help="One identity per input, as if it had no scene cuts (default: split each input at cuts "
                        "and make one identity per person).")
    p.add_argument("--scene-threshold", type=float, default=None,
                   help="Scene-cut threshold on the frame change score, 0..1 (default 0.3; lower finds more cuts).")
    p.set_defaults(handler=_run_preprocess)


def _run_preprocess(args: argparse.Namespace) -> None:
    from talkingface.recipes.preprocess import PreprocessOptions, run_preprocess

    run_preprocess(PreprocessOptions(
        inputs=args.inputs, out=args.out, size=args.size, config=args.config, crop_expand=args.crop_expand,
        crop_offset_y=args.crop_offset_y, moving_box=args.moving_box, source_frame=args.source_frame,
        min_confidence=args.min_confidence, smooth=not args.no_smooth, image_fps=args.fps,
        max_frames=args.max_frames, preview=args.preview, shard=args.shard, workers=args.workers,
        scene_split=not args.no_scene_split, scene_threshold=args.scene_threshold, ray=args.ray,
        ray_retries=args.retries, format=args.format, shard_bytes=args.shard_size))


def _add_validate_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate-data", help="Check an official-layout dataset (either landmark scheme).")
    p.add_argument("root", help="Dataset folder.")
    p.add_argument("--scheme", default=None, help="dense669 or mediapipe478 (default: from meta.json or the files).")
    p.add_argument("--identity-dim", type=int, default=None, help="Expected identity size (256 official, 128 dlib).")
    p.add_argument("--quick", action="store_true", help="Read image headers only instead of decoding every image.")
    p.set_defaults(handler=_run_validate_data)


def _run_validate_data(args: argparse.Namespace) -> None:
    from talkingface.recipes.preprocess import ValidateOptions, run_validate

    run_validate(ValidateOptions(root=args.root, scheme=args.scheme, identity_dim=args.identity_dim,
                                 check_images=not args.quick))


def _add_merge_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge-data", help="Join datasets (e.g. preprocess shards) into one, renumbering identities.")
    p.add_argument("inputs", nargs="+", metavar="ROOT", help="Datasets to join, in order.")
    p.add_argument("--out", required=True, help="New dataset folder.")
    p.add_argument("--force", action="store_true", help="Replace --out if it exists.")
    p.add_argument("--copy", action="store_true", help="Copy files (default: hard-link when on one file system).")
    p.set_defaults(handler=_run_merge_data)


def _run_merge_data(args: argparse.Namespace) -> None:
    from talkingface.recipes.preprocess import MergeOptions, run_merge

    run_merge(MergeOptions(inputs=args.inputs, out=args.out, force=args.force, link=not args.copy))


def _add_train_sr(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-sr", help="Train the temporal super-resolution model (256 -> 512) on LQ/GT clips.")
    p.add_argument("--config", required=True, help="Temporal SR YAML (e.g. temporal_sr_512.yaml; the reference's "
                                                   "BasicSR option files parse too).")
    p.add_argument("--data", dest="data_root", default=None,
                   help="make-sr-data folder (<clip>/lq, <clip>/gt); overrides datasets.train.")
    p.add_argument("--val-data", dest="val_root", default=None, help="The same for validation; overrides datasets.val.")
    p.add_argument("--no-val", action="store_true", help="Train without validation.")
    p.add_argument("--out", dest="out_dir", default=None, help="Checkpoint/log folder (default: saved/ckpt_sr/<name>).")
    p.add_argument("--resume", default=None, help="Checkpoint to resume, or 'auto' for the newest in --out.")
    p.add_argument("--init-ckpt", default=None,
                   help="Start from GFPGANv1.3.pth or a temporal SR checkpoint (overrides the config).")
    p.add_argument("--max-steps", type=int, default=None, help="Stop after this many iterations (with a checkpoint).")
    p.add_argument("--total-iter", type=int, default=None, help="Override train.total_iter (and the cosine period).")
    p.add_argument("--batch-size", type=int, default=None, help="Clips per process and step (batch_size_per_gpu).")
    p.add_argument("--ckpt-every", type=int, default=None, help="Override logger.save_checkpoint_freq.")
    p.add_argument("--log-every", type=int, default=None, help="Override logger.print_freq.")
    p.add_argument("--image-every", type=int, default=None, help="Override logger.image_freq.")
    p.add_argument("--val-every", type=int, default=None, help="Override val.val_freq.")
    p.add_argument("--vgg19", default=None, help="VGG19 ImageNet weights (torchvision layout).")
    p.add_argument("--random-vgg", action="store_true", help="Smoke tests only: untrained VGG19 for the losses.")
    p.add_argument("--lpips-alexnet", default=None, help="AlexNet weights for the LPIPS validation metric.")
    p.add_argument("--lpips-lin", default=None, help="LPIPS v0.1 linear layers (alex.pth).")
    add_fp16_argument(p, "")
    p.add_argument("--num-workers", type=int, default=None, help="DataLoader workers (num_worker_per_gpu).")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
    p.set_defaults(handler=_run_train_sr)


def _run_train_sr(args: argparse.Namespace) -> None:
    from talkingface.recipes.train_sr import SRTrainOptions, run_sr_training

    run_sr_training(SRTrainOptions(
        config=args.config, data_root=args.data_root, val_root=args.val_root, no_val=args.no_val,
        out_dir=args.out_dir, resume=args.resume, init_ckpt=args.init_ckpt, max_steps=args.max_steps,
        total_iter=args.total_iter, batch_size=args.batch_size, ckpt_every=args.ckpt_every,
        log_every=args.log_every, image_every=args.image_every, val_every=args.val_every, vgg19=args.vgg19,
        random_vgg=args.random_vgg, lpips_alexnet=args.lpips_alexnet, lpips_lin=args.lpips_lin,
        mixed_precision=args.fp16, force=args.force, num_workers=args.num_workers, device=args.device))


def _add_make_sr_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("make-sr-data", help="Build LQ/GT clip pairs for train-sr from a preprocessed 512 dataset.")
    p.add_argument("--data", required=True, help="Official-layout dataset at the GT size (preprocess --size 512).")
    p.add_argument("--out", required=True, help="Output folder: <clip>/lq/*.png and <clip>/gt/*.png; reruns resume.")
    p.add_argument("--ckpt", default=None, help="Base-model checkpoint: LQ = its self-reconstruction at 256.")
    p.add_argument("--config", default=None, help="The base model's config (with --ckpt).")
    p.add_argument("--degrade", action="store_true",
                   help="LQ by blur, x0.5, noise and JPEG instead (the default when no --ckpt is given).")
    p.add_argument("--seed", type=int, default=0, help="Degradation seed: the same seed gives the same files.")
    p.add_argument("--batch-size", type=int, default=1, help="Frames per base-model forward pass.")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
    p.set_defaults(handler=_run_make_sr_data)


def _run_make_sr_data(args: argparse.Namespace) -> None:
    from talkingface.recipes.make_sr_data import MakeSRDataOptions, run_make_sr_data

    run_make_sr_data(MakeSRDataOptions(data=args.data, out=args.out, ckpt=args.ckpt, config=args.config,
                                       degrade=args.degrade, seed=args.seed, batch_size=args.batch_size,
                                       device=args.device))


def add_render_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--render", choices=["full", "model"], default="full",
                   help="full (default): the model's motion applied to the photo's own pixels at its resolution, "
                        "the generator filling the mouth and closing eyes; model: the model's output upsampled "
                        "and pasted back (blurry at 64 px; for comparison).")


def _add_animate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("animate", help="Make a portrait (photo or video) talk like a driving video.")
    p.add_argument("--source", required=True, help="The portrait: a photo (.jpg, .png, ...) or a video of the person.")
    p.add_argument("--driving", required=True, help="The video whose motion and audio are transferred.")
    p.add_argument("--ckpt", default=None,
                   help="A mediapipe478 model checkpoint (default: the bundled model).")
    p.add_argument("--config", default=None, help="Model config (default: the one stored in the checkpoint).")
    p.add_argument("--out", default="animated.mp4", help="Output video (.mp4, .mov, .mkv or .m4v).")
    p.add_argument("--absolute", action="store_true",
                   help="Absolute motion: use the driving landmarks as they are (default: relative motion).")
    p.add_argument("--find-best-frame", action="store_true",
                   help="Measure motion from the driving frame most like the source (default: the first with a face).")
    p.add_argument("--crop-only", action="store_true", help="Write the generated face crops, no paste-back.")
    add_render_argument(p)
    p.add_argument("--batch-size", type=int, default=8, help="Driving frames per forward pass.")
    p.add_argument("--personalize", type=int, default=0, metavar="N",
                   help="First fine-tune N steps on the source (a video of the person).")
    p.add_argument("--vgg19", default=None, help="--personalize: VGG19 ImageNet weights (torchvision layout).")
    p.add_argument("--enhance", action="store_true", help="Temporal super-resolution of the crops (needs --sr-ckpt).")
    p.add_argument("--sr-ckpt", default=None, help="Temporal super-resolution weights (not bundled).")
    add_precision_argument(p, "auto", "Default auto (checked on the source before rendering)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
    p.set_defaults(handler=_run_animate)


def _run_animate(args: argparse.Namespace) -> None:
    from talkingface.recipes.animate import AnimateOptions, run_animate

    run_animate(AnimateOptions(
        source=args.source, driving=args.driving, out=args.out, ckpt=args.ckpt, config=args.config,
        relative=not args.absolute, find_best_frame=args.find_best_frame, crop_only=args.crop_only,
        batch_size=args.batch_size, personalize=args.personalize, vgg19=args.vgg19, enhance=args.enhance,
        sr_ckpt=args.sr_ckpt, precision=args.precision, force=args.force, device=args.device, render=args.render))


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="Write a generator-only inference snapshot of a training checkpoint, "
                                      "and/or ONNX graphs of its generator (--onnx).")
    p.add_argument("--ckpt", required=True, help="Training checkpoint (ours or official layout).")
    p.add_argument("--out", default=None, help="Snapshot to write (official layout, model config inside).")
    p.add_argument("--onnx", default=None, metavar="OUT.onnx",
                   help="Write the generator for ONNX Runtime: OUT.onnx (per frame) and OUT.encoder.onnx (source "
                        'encoder); fp32, any batch. Needs the onnx extra: pip install -e ".[onnx]".')
    p.add_argument("--config", default=None, help="Model config (default: the one stored in the checkpoint).")
    p.set_defaults(handler=_run_export)


def _run_export(args: argparse.Namespace) -> None:
    from talkingface.recipes.export import export_generator, export_onnx_graphs

    if args.out is None and args.onnx is None:
        raise TalkingFaceError("nothing to write: give --out (a snapshot), --onnx OUT.onnx (ONNX graphs) or both")
    if args.onnx is not None:  # first: a missing extra fails before anything is written
        export_onnx_graphs(args.ckpt, args.onnx, args.config)
    if args.out is not None:
        export_generator(args.ckpt, args.out, args.config)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="Animate a bundled portrait with a bundled driving video and model (no downloads).")
    p.add_argument("--out", default="demo.mp4", help="Output video.")
    p.add_argument("--source", default=None, help="Your own portrait instead of the Grace Hopper photo.")
    p.add_argument("--driving", default=None, help="Your own driving video instead of the bundled one.")
    p.add_argument("--ckpt", default=None, help="A mediapipe478 model instead of the bundled one.")
    add_render_argument(p)
    add_precision_argument(p, "auto", "Default auto")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
    p.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> None:
    from talkingface.recipes.demo import DemoOptions, run_demo

    result = run_demo(DemoOptions(out=args.out, source=args.source, driving=args.driving, ckpt=args.ckpt,
                                  precision=args.precision, force=args.force, device=args.device,
                                  render=args.render))
    print(f"Demo video: {result.out}")


def _add_speak(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("speak", help="Make a portrait talk from speech audio, or from text (espeak-ng).")
    p.add_argument("--source", required=True, help="The portrait: a photo (.jpg, .png, ...) or a video of the person.")
    speech = p.add_mutually_exclusive_group(required=True)
    speech.add_argument("--audio", help="Speech audio (.wav, .mp3, .m4a, or a video's sound): its phonemes drive the "
                                        "mouth, and it is the output's sound track.")
    speech.add_argument("--text", help="Words to speak with espeak-ng (sudo apt-get install espeak-ng).")
    p.add_argument("--transcript", default=None,
                   help="With --audio: the words spoken, for forced alignment (else phonemes are recognised).")
    p.add_argument("--out", default="speak.mp4", help="Output video (.mp4, .mov, .mkv or .m4v), as long as the audio.")
    p.add_argument("--ckpt", default=None, help="A mediapipe478 model checkpoint (default: the bundled model).")
    p.add_argument("--fps", type=float, default=25.0, help="Frame rate of the output video.")
    p.add_argument("--head-motion", type=float, default=1.0, metavar="0..1",
                   help="Scale of the idle head motion (0: still head; blinks either way).")
    p.add_argument("--save-landmarks", default=None, metavar="TRACK.npz",
                   help="Also write the driving landmark track (478 points per frame, phonemes, visemes).")
    p.add_argument("--seed", type=int, default=0, help="Head motion and blinks: the same seed gives the same video.")
    add_render_argument(p)
    add_precision_argument(p, "auto", "Default auto (checked on the source before rendering)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
    p.set_defaults(handler=_run_speak)


def _run_speak(args: argparse.Namespace) -> None:
    from talkingface.recipes.speak import SpeakOptions, run_speak

    run_speak(SpeakOptions(source=args.source, out=args.out, audio=args.audio, text=args.text,
                           transcript=args.transcript, ckpt=args.ckpt, fps=args.fps, head_motion=args.head_motion,
                           save_landmarks=args.save_landmarks, render=args.render, device=args.device,
                           precision=args.precision, force=args.force, seed=args.seed))


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _add_app(sub: argparse._SubParsersAction) -> None:
    from talkingface.app.jobs import AppSettings  # the settings' defaults and meanings live there (no Gradio)

    defaults = AppSettings()
    p = sub.add_parser("app", help="The web demo (Gradio): animate, personalise and enhance in a browser.")
    p.add_argument("--host", default="127.0.0.1", help="Address to listen on (0.0.0.0: every interface).")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--work-dir", default=None,
                   help="Folder for the jobs' files, a new subfolder per job (default: <system temp>/talkingface-app).")
    p.add_argument("--models-dir", default=None,
                   help="Folder of checkpoints (*.pth, *.pth.tar, *.pt; subfolders too) offered in the page's model "
                        "and super-resolution menus, besides the bundled model and the session's personalised ones.")
    p.add_argument("--allow-server-paths", action="store_true",
                   help="Also accept checkpoint paths typed on the page: any file the server can read. Only for "
                        "people you trust.")
    p.add_argument("--max-seconds", type=float, default=defaults.max_seconds, help="Longest video accepted, in seconds.")
    p.add_argument("--max-upload-mb", type=float, default=defaults.max_upload_mb,
                   help="Largest upload accepted, in MB.")
    p.add_argument("--max-image-side", type=int, default=defaults.max_image_side,
                   help="Longest side of an uploaded image or video frame, in pixels.")
    p.add_argument("--job-timeout", type=float, default=defaults.job_timeout,
                   help="Seconds a job may run; past it the job is stopped and the page says so.")
    p.add_argument("--queue-size", type=int, default=defaults.queue_size,
                   help="Jobs that may wait while one runs; past it the page says the server is busy.")
    p.add_argument("--share", type=parse_bool, default=False, metavar="{true,false}",
                   help="Also serve through a public gradio.live link (needs internet).")
    p.add_argument("--vgg19", default=None, help="Personalisation: VGG19 ImageNet weights (torchvision layout).")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
    p.set_defaults(handler=_run_app)


def _run_app(args: argparse.Namespace) -> None:
    from talkingface.app.jobs import AppSettings, default_work_dir

    settings = AppSettings(work_dir=args.work_dir or default_work_dir(), max_seconds=args.max_seconds,
                           device=args.device, vgg19=args.vgg19, models_dir=args.models_dir,
                           allow_server_paths=args.allow_server_paths, max_upload_mb=args.max_upload_mb,
                           max_image_side=args.max_image_side, job_timeout=args.job_timeout,
                           queue_size=args.queue_size)
    from talkingface.app.server import serve  # imports Gradio (an optional extra): a one-line error without it

    serve(settings, host=args.host, port=args.port, share=args.share)


VERBS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_preprocess,
    _add_validate_data,
    _add_merge_data,
    _add_pack_shards,
    _add_infer,
    _add_animate,
    _add_demo,
    _add_speak,
    _add_export,
    _add_train,
    _add_meta_train,
    _add_personalize,
    _add_enhance,
    _add_train_sr,
    _add_make_sr_data,
    _add_synth,
    _add_evaluate,
    _add_sample_data,
    _add_app,
]


# --------------------------------------------------------------------------- entry
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="talkingface", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="Show full tracebacks on errors.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for add in VERBS:
        add(sub)
    return parser


def _progress_bars() -> list:
    """The tqdm bars now open (none when tqdm was never imported)."""
    return list(getattr(getattr(sys.modules.get("tqdm"), "tqdm", None), "_instances", ()))


def _end_progress_bars() -> None:
    """Close the progress bars a failure left open, so the error starts a line of its own (not the
    bar's: tqdm leaves the cursor at the end of an open bar)."""
    for bar in _progress_bars():
        bar.close()


def _warning_line(prog: str, message) -> str:
    """A warning as one line of its own: open progress bars are cleared first (each redraws itself
    at its next update), so the line does not start at the end of a bar."""
    for bar in _progress_bars():
        bar.clear()
    return f"{prog}: warning: {message}\n"


def run_guarded(fn: Callable[[], None], debug: bool, prog: str = "talkingface") -> int:
    """Run `fn`, turning failures into one stderr line and an exit code; warnings (a damaged
    packet, several faces, ...) print as one line each (with --debug, Python's usual two)."""
    default_format = warnings.formatwarning
    if not debug:
        warnings.formatwarning = lambda message, *_args, **_kw: _warning_line(prog, message)
    try:
        fn()
    except TalkingFaceError as e:
        if debug:
            raise
        _end_progress_bars()
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - last resort: one line, never a bare traceback
        if debug:
            raise
        # an OSError with a path or a cause the user can fix (a full disk, a read-only folder, a file
        # where a folder belongs) is a user error
        line = describe_os_error(e) if isinstance(e, OSError) else None
        _end_progress_bars()
        if line is not None:
            print(f"{prog}: error: {line}", file=sys.stderr)
            return EXIT_USER_ERROR
        print(f"{prog}: internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return EXIT_INTERNAL_ERROR
    finally:
        warnings.formatwarning = default_format
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_guarded(lambda: args.handler(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())
