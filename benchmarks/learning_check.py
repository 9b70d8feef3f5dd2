"""Learning check for the warping network (not a test: it trains, then prints numbers).

Trains the warp stage of the bundled-size model on a synthetic clip of scikit-image's
astronaut photograph, then measures held-out frames (another clip of the same
portrait): landmark flow error vs the motion size, and PSNR of the warped source vs
the unmoved source (identity warp).

    python benchmarks/learning_check.py --steps 1000 --out /tmp/learning_check
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from talkingface.config import load_config
from talkingface.data.synthetic import MotionSpec, detect_landmarks, write_synthetic_dataset
from talkingface.landmarks.scheme import get_scheme
from talkingface.recipes.learning_check import check_motion
from talkingface.recipes.train import TrainOptions, run_training

CONFIG = Path(__file__).resolve().parents[1] / "talkingface/properties/model/bundled/mediapipe478_64_bundled.yaml"


def astronaut_crop(size: int = 64) -> np.ndarray:
    from skimage import data

    return cv2.resize(data.astronaut()[10:250, 110:350], (size, size), interpolation=cv2.INTER_AREA)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--out", default="/tmp/talkingface_learning_check")
    args = ap.parse_args()
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


if __name__ == "__main__":
    main()
