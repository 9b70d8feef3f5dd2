"""Development set for full rendering's settings (talkingface.animate.fullres.FullResSettings).

Settings are chosen here, never on bench_animate_quality.py's held-out people and motion.
People: scikit-image's astronaut and `tests/data/faces/obama.jpg` (both bundled-model
training identities: the choice is about rendering, not generalisation), each on a
512x512 canvas. Motion: `talkingface synth` clips with motion seed 4242 (no training clip
and not the benchmark's 7301), "in-plane" and "turns" as in the benchmark.
- self: each photo driven by its own clip; identity distance to the photo, PSNR on the
  face box against the clip's frames.
- cross: the astronaut driven by the clip of another photo of the man (obama2.jpg), the
  man by the astronaut's clip; MediaPipe head and mouth correlation with the driving clip,
  identity distance to the photo, sharpness against the photo.

    python benchmarks/tune_fullres.py --variant default: --variant smooth10:flow_smooth=0.1 \\
        [--ckpt name=MODEL ...] [--out FILE]

Each --variant is NAME:FIELD=VALUE,FIELD=VALUE (FullResSettings fields, a pair as A/B;
empty: the defaults). Each --ckpt is NAME=PATH (default: the bundled model). Prints one line per run
and a mean table, and writes a JSON result (default benchmarks/results/tune_fullres.json).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_animate_quality import (MOTION_SETS, REPO, animate_frames, canvas, cross_scores, face_box_scores,
                                   write_clip)

DEV_SEED = 4242


def parse_variant(text: str):
    """NAME:FIELD=VALUE,... -> (name, FullResSettings)."""
    from talkingface.animate.fullres import FullResSettings

    name, _, assignments = text.partition(":")
    fields = {f.name: f for f in dataclasses.fields(FullResSettings)}
    values = {}
    for item in filter(None, assignments.split(",")):
        key, _, value = item.partition("=")
        if key not in fields:
            raise SystemExit(f"--variant {text}: FullResSettings has no field {key!r}")
        default = getattr(FullResSettings(), key)
        values[key] = tuple(float(v) for v in value.split("/")) if isinstance(default, tuple) else \
            type(default)(float(value))
    return name, FullResSettings(**values)


def dev_people() -> dict[str, np.ndarray]:
    from PIL import Image
    from skimage import data

    faces = REPO / "tests" / "data" / "faces"
    load = lambda name: np.asarray(Image.open(faces / name).convert("RGB"))  # noqa: E731
    return {"astronaut": canvas(data.astronaut()), "obama": canvas(load("obama.jpg")),
            "obama2": canvas(load("obama2.jpg"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", default=None, help="NAME:FIELD=VALUE,... (repeatable).")
    parser.add_argument("--ckpt", action="append", default=None, help="NAME=PATH of a model (repeatable).")
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--every", type=int, default=2, help="Score every N-th frame for identity and sharpness.")
    parser.add_argument("--motion", nargs="+", default=list(MOTION_SETS), choices=list(MOTION_SETS))
    parser.add_argument("--out", default=None, help="JSON result (default benchmarks/results/tune_fullres.json).")
    args = parser.parse_args(argv)

    from PIL import Image

    from bench_common import load_average, machine_info, result_header, result_path, write_result
    from talkingface.metrics.face_quality import IdentityDistance, face_sharpness

    variants = dict(parse_variant(v) for v in (args.variant or ["default:"]))
    models = dict(c.split("=", 1) for c in args.ckpt) if args.ckpt else {"bundled": None}
    info = machine_info()
    header = result_header()
    print("\n".join(info.lines()) + f"\nload average: {load_average()}")
    began = time.perf_counter()
    pairs = {"self": [("astronaut", "astronaut"), ("obama", "obama")],
             "cross": [("astronaut", "obama2"), ("obama", "astronaut")]}
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="tune-fullres-") as work:
        work = Path(work)
        faces = dev_people()
        paths = {}
        for name, image in faces.items():
            paths[name] = work / f"{name}.png"
            Image.fromarray(image).save(paths[name])
        for motion in args.motion:
            clips = {name: write_clip(image, args.frames, work / f"{name}_{motion}.mp4", motion, seed=DEV_SEED)
                     for name, image in faces.items()}
            for model, ckpt in models.items():
                for variant, settings in variants.items():
                    for kind, kind_pairs in pairs.items():
                        for name, driver in kind_pairs:
                            frames = animate_frames(paths[name], work / f"{driver}_{motion}.mp4",
                                                    None if ckpt is None else Path(ckpt), "full", work / "out.mp4",
                                                    fullres=settings)
                            if kind == "cross":
                                scores = cross_scores(frames, clips[driver], faces[name], args.every)
                            else:
                                distance = IdentityDistance(faces[name])
                                picked = frames[::args.every]
                                psnr, _ = face_box_scores(picked, clips[name][::args.every])
                                scores = {"psnr": psnr, "identity_distance": float(np.nanmean(
                                    [distance(f) for f in picked])), "sharpness_ratio": float(np.nanmean(
                                        [face_sharpness(f) / face_sharpness(faces[name]) for f in picked]))}
                            runs.append({"model": model, "variant": variant, "motion": motion, "task": kind,
                                         "pair": f"{name}<-{driver}", **scores})
                            print(f"{model:8s} {variant:12s} {motion:8s} {kind:5s} {name:9s}<-{driver:9s} "
                                  + " ".join(f"{k}={v:.3f}" for k, v in scores.items()), flush=True)

    summary: dict = {}
    for run in runs:
        key = f"{run['model']} / {run['variant']} / {run['task']}"
        summary.setdefault(key, []).append({k: v for k, v in run.items() if isinstance(v, float)})
    summary = {key: {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} for key, rows in summary.items()}
    print("\nmeans over people and motion sets:")
    for key, means in summary.items():
        print(f"  {key:40s} " + " ".join(f"{k}={v:.3f}" for k, v in means.items()))
    result = {"frames": args.frames, "motion_seed": DEV_SEED, "models": {k: v or "bundled" for k, v in models.items()},
              "variants": {k: dataclasses.asdict(v) for k, v in variants.items()}, "means": summary, "runs": runs,
              "seconds": time.perf_counter() - began}
    path = write_result(Path(args.out) if args.out else result_path("tune_fullres"), result, header)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
