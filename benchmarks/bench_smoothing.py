"""Landmark smoothing on a moving face whose true landmarks are known: jitter and error.

A synthetic clip (`synthesize_clip`: head motion, speech-like mouth, blinks) of a real
held-out photo moves the photo's pixels and its landmarks by the same known map, so the
true 478 points of every frame are known. Face Mesh tracks the clip as `preprocess`
does (video mode), and three versions of its points are scored against the truth, in
pixels of a `--size` crop:

- raw: Face Mesh as it comes (`--no-smooth`);
- bilateral: `preprocess`'s default centred temporal bilateral filter (BilateralSettings);
- one-euro: the causal one-euro filter, its min cutoff chosen from a sweep as the one whose
  jitter comes closest to the bilateral filter's, so the two are compared at equal
  steadiness.

jitter: mean frame-to-frame change of the error (estimate - truth), i.e. the motion that
is not in the truth; error: mean distance to the truth.

    python benchmarks/bench_smoothing.py            # writes benchmarks/results/bench_smoothing.json
"""
from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from bench_animate_quality import people
from bench_common import result_header, result_path, write_result
from talkingface.data.synthetic import MotionSpec, synthesize_clip
from talkingface.landmarks.scheme import get_scheme
from talkingface.preprocess.landmarks import (BilateralSettings, FaceMeshTracker, OneEuroFilter, OneEuroSettings,
                                              TemporalBilateralSmoother)
from talkingface.preprocess.portrait import detect_landmarks

MIN_CUTOFFS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)  # Hz, the one-euro sweep


def score(points: np.ndarray, truth: np.ndarray, size: int) -> dict[str, float]:
    """Jitter and error in px of a size x size crop (points, truth: T x N x 2 in 0..1)."""
    error = (points - truth) * size
    return {"jitter_px": float(np.linalg.norm(np.diff(error, axis=0), axis=-1).mean()),
            "error_px": float(np.linalg.norm(error, axis=-1).mean())}


def bilateral(raw: np.ndarray) -> np.ndarray:
    smoother = TemporalBilateralSmoother(BilateralSettings())
    out = []
    for t, points in enumerate(raw):
        out += smoother.push(t, points)
    out += smoother.flush()
    return np.stack([p for _, p, _ in out])


def one_euro(raw: np.ndarray, min_cutoff: float, fps: float) -> np.ndarray:
    filt = OneEuroFilter(OneEuroSettings(min_cutoff=min_cutoff))
    return np.stack([filt(points, 1 / fps) for points in raw])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photo", default="hopper", choices=sorted(people()), help="held-out portrait")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--seed", type=int, default=3, help="motion seed")
    ap.add_argument("--size", type=int, default=256, help="crop side the pixel figures refer to (preprocess's)")
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--result", default=None, help="JSON result (default benchmarks/results/bench_smoothing.json)")
    args = ap.parse_args()
    header = result_header()
    image = np.asarray(Image.fromarray(people()[args.photo]).resize((args.size, args.size), Image.LANCZOS))
    clip = synthesize_clip(image, detect_landmarks(image), get_scheme("mediapipe478"),
                           MotionSpec(num_frames=args.frames, seed=args.seed, mouth_open_max=0.15))
    raw, kept = [], []
    with FaceMeshTracker() as tracker:
        for t in range(args.frames):
            points = tracker.process(clip.frames[t])
            if points is not None:
                raw.append(points.astype(np.float64))
                kept.append(t)
    if len(kept) != args.frames:  # smoothing must not bridge gaps: score the longest run from the start
        raise SystemExit(f"Face Mesh lost the face in {args.frames - len(kept)} of {args.frames} frames")
    raw = np.stack(raw)
    truth = clip.landmarks
    rows = {"raw": score(raw, truth, args.size), "bilateral": score(bilateral(raw), truth, args.size)}
    sweep = {c: score(one_euro(raw, c, args.fps), truth, args.size) for c in MIN_CUTOFFS}
    matched = min(sweep, key=lambda c: abs(sweep[c]["jitter_px"] - rows["bilateral"]["jitter_px"]))
    rows[f"one-euro (min cutoff {matched:g} Hz)"] = sweep[matched]
    for name, r in rows.items():
        print(f"{name:32s} jitter {r['jitter_px']:.3f} px   error {r['error_px']:.3f} px")
    written = write_result(args.result or result_path(__file__), {
        "rows": rows, "one_euro_sweep": {f"{c:g}": r for c, r in sweep.items()}, "matched_min_cutoff_hz": matched,
        "photo": args.photo, "frames": args.frames, "seed": args.seed, "size": args.size, "fps": args.fps}, header)
    print(f"wrote {written}")


if __name__ == "__main__":
    main()
