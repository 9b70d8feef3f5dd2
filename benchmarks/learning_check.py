"""Learning check for the warping network (not a test: it trains, then prints numbers).

Trains the warp stage of the bundled-size model on a synthetic clip of scikit-image's
astronaut photograph, then measures held-out frames (another clip of the same
portrait): landmark flow error vs the motion size, and PSNR of the warped source vs
the unmoved source (identity warp).

    python benchmarks/learning_check.py --steps 1000 --out /tmp/learning_check
    python benchmarks/learning_check.py --ckpt talkingface/assets/models/bundled_64.pth.tar

--ckpt trains nothing: it scores that model on the held-out clip tests/test_learning_check.py
uses (tests/data/faces/biden.jpg, 40 frames, motion seed 99, 64 px) and writes
learning_check_<model name>.json.

Writes its figures to benchmarks/results/learning_check.json by default (`--result`).
"""
from __future__ import annotations

import argparse
import tempfile
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np

from talkingface.config import load_config
from talkingface.data.synthetic import MotionSpec, write_synthetic_dataset
from talkingface.landmarks.scheme import get_scheme
from talkingface.preprocess.portrait import detect_landmarks
from talkingface.recipes.learning_check import check_motion
from talkingface.recipes.train import TrainOptions, run_training

CONFIG = Path(__file__).resolve().parents[1] / "talkingface/properties/model/bundled/mediapipe478_64_bundled.yaml"


def astronaut_crop(size: int = 64) -> np.ndarray:
    from skimage import data

    return cv2.resize(data.astronaut()[10:250, 110:350], (size, size), interpolation=cv2.INTER_AREA)


def score_checkpoint(ckpt: Path, result: str | None) -> None:
    """The shipped-model check of tests/test_learning_check.py, as a result file."""
    from bench_common import result_header, result_path, write_result
    from talkingface.checkpoints.official import config_for_checkpoint
    from talkingface.recipes.learning_check import check_checkpoint
    from talkingface.recipes.synth import SynthOptions, run_synth

    header = result_header()
    repo = Path(__file__).resolve().parents[1]
    settings = {"portrait": "tests/data/faces/biden.jpg", "frames": 40, "seed": 99, "size": 64, "identity": "dlib"}
    with tempfile.TemporaryDirectory(prefix="learning-check-") as work:
        held = run_synth(SynthOptions(portraits=[str(repo / settings["portrait"])], out=str(Path(work) / "held"),
                                      frames=settings["frames"], seed=settings["seed"], size=settings["size"],
                                      identity=settings["identity"]))
        check = check_checkpoint(ckpt, config_for_checkpoint(str(ckpt), None), held.root)
    print("\n".join(check.lines()))
    name = ckpt.name.split(".")[0]
    written = write_result(result or result_path(__file__, name),
                           {"ckpt": ckpt.name, "held_out_clip": settings, **asdict(check)}, header)
    print(f"wrote {written}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--out", default="/tmp/talkingface_learning_check", help="Work folder.")
    ap.add_argument("--ckpt", default=None, help="Score this model on the held-out clip instead of training.")
    ap.add_argument("--result", default=None, help="JSON result file (default benchmarks/results/"
                    "learning_check[_<model name>].json).")
    args = ap.parse_args()
    if args.ckpt:
        score_checkpoint(Path(args.ckpt), args.result)
        return
    from bench_common import result_header, result_path, write_result

    header = result_header()
    out = Path(args.out)
    image = astronaut_crop()
    points = detect_landmarks(image)
    scheme = get_scheme("mediapipe478")
    spec = dict(max_shift=0.08, max_scale=0.06, max_rotation_deg=8, blink_every=0)
    train_root, _ = write_synthetic_dataset(out / "train", [(image, points)], MotionSpec(num_frames=96, seed=1, **spec),
                                            identity_dim=128, scheme=scheme)
    held_root, _ = write_synthetic_dataset(out / "held", [(image, points)], MotionSpec(num_frames=24, seed=99, **spec),
                                           identity_dim=128, scheme=scheme)
    result = run_training(TrainOptions(config=str(CONFIG), stage="warp", data_root=str(train_root),
                                       out_dir=str(out / "run"), max_steps=args.steps, batch_size=8, epochs=100_000,
                                       ckpt_every=10_000, resume="auto"))
    check = check_motion(result.generator, load_config(CONFIG), held_root)
    print(f"after {result.iterations} warp-stage steps:")
    print("\n".join(check.lines()))
    written = write_result(args.result or result_path(__file__),
                           {"steps": args.steps, "iterations": result.iterations, **asdict(check)}, header)
    print(f"wrote {written}")


if __name__ == "__main__":
    main()
