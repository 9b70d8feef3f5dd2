"""How far heads move, and how wide mouths open, between two frames of one clip in a
training set: the range a model trained on it has seen, which `animate`'s head limits
(talkingface.animate.motion.HeadLimits) are set from.

For random frame pairs (a, b) of each clip, the similarity that maps frame a's stable
points (animate.motion.STABLE_POINTS) onto frame b's is what relative motion asks the
model to render when a is the source and b the driving frame: its shift of the
stable-point centre (fraction of the crop side), |ln scale| and |rotation|. The mouth gap
is metrics.reenactment's mouth_open (inner-lip gap over the eye-line-to-mouth distance).

    python benchmarks/motion_range.py DATA [--pairs 300] [--out FILE]

DATA: a training set as `talkingface synth` / `preprocess` write it (one folder per clip
with ldmks/*.npy, landmarks in 0..1 of the crop). The bundled 128 px model's is made by
scripts/train_bundled_model.sh (WORK/train_data). Prints percentiles and writes a JSON
result (default benchmarks/results/motion_range.json).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def clip_landmarks(data: Path) -> list[list[np.ndarray]]:
    """Per clip, its frames' 478 x 2 landmarks (0..1 of the crop), in frame order."""
    clips = []
    for folder in sorted(p for p in data.iterdir() if (p / "ldmks").is_dir()):
        frames = [np.load(f).astype(np.float64).reshape(-1, 2) for f in sorted((folder / "ldmks").glob("*.npy"))]
        if len(frames) > 1:
            clips.append(frames)
    return clips


def pair_motion(a: np.ndarray, b: np.ndarray, stable: list[int]) -> tuple[float, float, float]:
    """(shift of a's stable-point centre, |ln scale|, |rotation| in degrees) of the similarity a -> b."""
    from talkingface.animate.motion import similarity_parts
    from talkingface.preprocess.align import fit_similarity

    shift, scale, degrees = similarity_parts(fit_similarity(a[stable], b[stable]), a[stable].mean(0))
    return float(np.hypot(*shift)), abs(float(np.log(scale))), abs(degrees)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="Training set folder (one folder per clip with ldmks/).")
    parser.add_argument("--pairs", type=int, default=300, help="Random frame pairs per clip.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="JSON result (default benchmarks/results/motion_range.json).")
    args = parser.parse_args(argv)

    from talkingface.animate.motion import STABLE_POINTS
    from talkingface.metrics.reenactment import motion_signals

    from bench_common import result_header, result_path, write_result

    clips = clip_landmarks(Path(args.data))
    if not clips:
        print(f"{args.data}: no clip folders with ldmks/", file=sys.stderr)
        return 1
    rng = np.random.default_rng(args.seed)
    stable = list(STABLE_POINTS)
    motions = []
    for frames in clips:
        for a, b in rng.integers(len(frames), size=(args.pairs, 2)):
            motions.append(pair_motion(frames[a], frames[b], stable))
    gaps = [motion_signals(f)[2] for frames in clips for f in frames]
    percentiles = (50, 90, 99, 100)
    table = {name: dict(zip((f"p{p}" for p in percentiles), np.percentile(values, percentiles).tolist()))
             for name, values in (("shift", [m[0] for m in motions]), ("log_scale", [m[1] for m in motions]),
                                  ("rotation_deg", [m[2] for m in motions]), ("mouth_open", gaps))}
    print(f"{len(clips)} clips, {len(motions)} frame pairs, {len(gaps)} frames")
    for name, row in table.items():
        print(f"{name:>13}: " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()))
    path = write_result(Path(args.out) if args.out else result_path("motion_range"),
                        {"data": str(args.data), "clips": len(clips), "pairs_per_clip": args.pairs, "seed": args.seed,
                         "range": table}, result_header())
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
