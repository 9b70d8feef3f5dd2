"""How real does `animate` look? Rendering quality on held-out people and held-out motion.

People: portraits no bundled model saw in training (Grace Hopper from matplotlib's
sample data; Biden from the face_recognition source distribution, tests/data/faces),
each on a 512x512 canvas. Motion: `talkingface synth` clips with a motion seed no training clip
used, in two sets: "in-plane" (head shift, scale and in-plane rotation, speech-like
mouth, blinks) and "turns" (the same plus head turns up to 20 degrees of yaw and 15 of
pitch, a smile and brow raises).

- Self-reenactment: a person's photo driven by a synthetic clip of that same photo,
  whose frames are the ground truth. PSNR and SSIM on the face box of each frame,
  dlib identity distance to the photo, and face sharpness against the ground-truth
  frame's (variance of the Laplacian inside MediaPipe's face outline).
- Cross-reenactment: one person's photo driven by the other person's clip. MediaPipe
  head x / y and mouth-opening correlation with the driving clip, identity distance
  to the source photo, face sharpness against the photo.

Rows: the static source; a similarity warp of the source frame following the driving
head (relative motion's head part, no learning); the previous default (the 64 px bundled
model) and the default (the 128 px bundled model), each with `--render model` (its output
upsampled) and with full rendering (the default). A new model's rows are added with
--ckpt (both render modes).

    python benchmarks/bench_animate_quality.py [--frames 50] [--ckpt MODEL] [--out FILE]

Prints a table and the machine, and writes a JSON result (default
benchmarks/results/bench_animate_quality.json; `python benchmarks/report.py` makes the docs
tables from it).
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SIZE = 512
MOTION_SEED = 7301  # no training clip used it (docs/bundled_model.md: seeds 0, 1 and 2)


def canvas(image: np.ndarray) -> np.ndarray:
    """A portrait centre-cropped to a square and resized to SIZE x SIZE."""
    import cv2

    h, w = image.shape[:2]
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    square = image[y0:y0 + side, x0:x0 + side]
    interpolation = cv2.INTER_AREA if side > SIZE else cv2.INTER_CUBIC
    return cv2.resize(square, (SIZE, SIZE), interpolation=interpolation)


def people() -> dict[str, np.ndarray]:
    from PIL import Image

    from talkingface.recipes.demo import demo_portrait

    biden = np.asarray(Image.open(REPO / "tests" / "data" / "faces" / "biden.jpg").convert("RGB"))
    return {"hopper": canvas(demo_portrait()), "biden": canvas(biden)}


MOTION_SETS = {  # name -> MotionSpec fields besides the frame count and seed
    "in-plane": dict(mouth_open_max=0.15),
    "turns": dict(mouth_open_max=0.15, max_yaw_deg=20, max_pitch_deg=15, smile_max=0.15, brow_max=0.03, teeth=1.0),
}


def write_clip(image: np.ndarray, frames: int, path: Path, motion: str, seed: int = MOTION_SEED) -> list[np.ndarray]:
    from talkingface.data.synthetic import MotionSpec, synthesize_clip
    from talkingface.landmarks.scheme import get_scheme
    from talkingface.preprocess.portrait import detect_landmarks
    from talkingface.utils.video import write_video

    clip = synthesize_clip(image, detect_landmarks(image), get_scheme("mediapipe478"),
                           MotionSpec(num_frames=frames, seed=seed, **MOTION_SETS[motion]))
    truth = [clip.frames[t] for t in range(frames)]
    write_video(path, truth, 25)
    return truth


def similarity_frames(source_path: Path, driving: Path, ckpt: Path) -> list[np.ndarray]:
    """The source frame moved by the driving head's similarity (relative motion, no model)."""
    from talkingface.animate.baseline import similarity_baseline
    from talkingface.animate.pipeline import settings_for_model
    from talkingface.checkpoints.official import config_for_checkpoint

    return similarity_baseline(source_path, driving, settings_for_model(config_for_checkpoint(str(ckpt), None)))


def animate_frames(source_path: Path, driving: Path, ckpt: Path | None, render: str, out: Path,
                   fullres=None) -> list[np.ndarray]:
    from talkingface.recipes.animate import AnimateOptions, run_animate
    from talkingface.utils.video import iter_frames

    run_animate(AnimateOptions(source=str(source_path), driving=str(driving), out=str(out),
                               ckpt=None if ckpt is None else str(ckpt), render=render, progress=False,
                               fullres=fullres))
    return list(iter_frames(out))


def face_box_scores(frames: list[np.ndarray], truth: list[np.ndarray]) -> tuple[float, float]:
    """Mean PSNR and SSIM over each ground-truth frame's face box (MediaPipe outline, 10% margin)."""
    from talkingface.metrics import psnr, ssim
    from talkingface.metrics.face_quality import face_points

    ps, ss = [], []
    for frame, gt in zip(frames, truth):
        points = face_points(gt)
        if points is None:
            continue
        (x0, y0), (x1, y1) = points.min(0), points.max(0)
        mx, my = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
        x0, y0 = int(max(x0 - mx, 0)), int(max(y0 - my, 0))
        x1, y1 = int(min(x1 + mx, gt.shape[1])), int(min(y1 + my, gt.shape[0]))
        ps.append(psnr(frame[y0:y1, x0:x1], gt[y0:y1, x0:x1]))
        ss.append(ssim(frame[y0:y1, x0:x1], gt[y0:y1, x0:x1]))
    return float(np.mean(ps)), float(np.mean(ss))


def self_scores(frames, truth, photo, every: int) -> dict:
    from talkingface.metrics.face_quality import IdentityDistance, face_sharpness

    p, s = face_box_scores(frames[::every], truth[::every])
    distance = IdentityDistance(photo)
    ratios = [face_sharpness(f) / face_sharpness(g) for f, g in zip(frames[::every], truth[::every])]
    dists = [distance(f) for f in frames[::every]]
    return {"psnr": p, "ssim": s, "identity_distance": float(np.nanmean(dists)),
            "sharpness_ratio": float(np.nanmean(ratios))}


def cross_scores(frames, driving_frames, photo, every: int) -> dict:
    from talkingface.metrics.face_quality import face_quality
    from talkingface.metrics.reenactment import follow_scores, track_motion

    follow = follow_scores(track_motion(frames), track_motion(driving_frames))
    quality = face_quality(photo, frames, every=every)
    return {**{f"corr_{k}": v for k, v in follow.items()}, "identity_distance": quality.identity_distance,
            "sharpness_ratio": quality.sharpness_ratio}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=50, help="Frames per driving clip.")
    parser.add_argument("--every", type=int, default=2, help="Score every N-th frame for identity and sharpness.")
    parser.add_argument("--ckpt", default=None, help="A new mediapipe478 model to add as rows (both render modes).")
    parser.add_argument("--motion", nargs="+", default=list(MOTION_SETS), choices=list(MOTION_SETS),
                        help="Driving motion sets.")
    parser.add_argument("--out", default=None, help="JSON result file (default benchmarks/results/"
                        "bench_animate_quality.json).")
    args = parser.parse_args(argv)

    from PIL import Image

    from bench_common import load_average, machine_info, result_header, result_path, write_result
    from talkingface.recipes.animate import BUNDLED_64_MODEL, BUNDLED_MODEL

    info = machine_info()
    header = result_header()  # before the run: the load average it started under
    print("\n".join(info.lines()) + f"\nload average: {load_average()}")
    began = time.perf_counter()
    rows = {"static source": None, "similarity warp": None,
            "64 px, render model": (BUNDLED_64_MODEL, "model"), "64 px, full rendering": (BUNDLED_64_MODEL, "full"),
            "default, render model": (BUNDLED_MODEL, "model"), "default, full rendering": (BUNDLED_MODEL, "full")}
    if args.ckpt:
        rows.update({"new model, render model": (Path(args.ckpt), "model"),
                     "new model, full rendering": (Path(args.ckpt), "full")})
    tasks = [f"{task} ({motion})" for motion in args.motion for task in ("self", "cross")]
    results: dict = {task: {} for task in tasks}
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as work:
        work = Path(work)
        faces = people()
        names = list(faces)
        paths = {}
        for name, image in faces.items():
            paths[name] = work / f"{name}.png"
            Image.fromarray(image).save(paths[name])
        for motion in args.motion:
            clips = {name: write_clip(image, args.frames, work / f"{name}_{motion}.mp4", motion)
                     for name, image in faces.items()}
            for kind in ("self", "cross"):
                task = f"{kind} ({motion})"
                for index, name in enumerate(names):
                    driver = name if kind == "self" else names[(index + 1) % len(names)]
                    driving = work / f"{driver}_{motion}.mp4"
                    for row, spec in rows.items():
                        if row == "static source":
                            frames = [faces[name]] * args.frames
                        elif row == "similarity warp":
                            frames = similarity_frames(paths[name], driving, BUNDLED_MODEL)
                        else:
                            frames = animate_frames(paths[name], driving, spec[0], spec[1], work / "out.mp4")
                        if kind == "self":
                            scores = self_scores(frames, clips[name], faces[name], args.every)
                        else:
                            scores = cross_scores(frames, clips[driver], faces[name], args.every)
                        results[task].setdefault(row, {})[f"{name}<-{driver}"] = scores
                        print(f"{task:16s} {name:7s}<-{driver:7s} {row:26s} "
                              + " ".join(f"{k}={v:.3f}" for k, v in scores.items()), flush=True)

    def mean_table(task: str) -> dict:
        table = {}
        for row, per_pair in results[task].items():
            keys = next(iter(per_pair.values())).keys()
            table[row] = {k: float(np.nanmean([v[k] for v in per_pair.values()])) for k in keys}
        return table

    summary = {task: mean_table(task) for task in tasks}
    for task, table in summary.items():
        keys = list(next(iter(table.values())).keys())
        print(f"\n{task} (mean over {len(names)} people)\n| row | " + " | ".join(keys) + " |")
        print("|---|" + "---:|" * len(keys))
        for row, values in table.items():
            print(f"| {row} | " + " | ".join("n/a" if math.isnan(v) else f"{v:.3f}" for v in values.values()) + " |")
    result = {"frames": args.frames, "size": SIZE, "motion_seed": MOTION_SEED,
              "motion_sets": {m: MOTION_SETS[m] for m in args.motion},
              "per_pair": results, "summary": summary, "seconds": time.perf_counter() - began}
    out = write_result(args.out or result_path(__file__), result, header)
    print(f"\nwrote {out} in {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
