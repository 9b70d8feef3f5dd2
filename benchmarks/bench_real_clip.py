"""`animate` on a real driving video, scored as issue 16's "done when" reads.

Runs `talkingface animate` (the default command, or with --ckpt / --render) on one source
photo and one driving video, then reports:
- whether it finished with the driving video's frame count, fps and audio;
- MediaPipe head x / y and mouth-opening correlation with the driving video, over the
  whole clip and per shot (the scene cuts animate found; motion restarts at each);
- face sharpness against the photo and dlib identity distance to it (metrics.face_quality);
- whether the surroundings stayed the source's own pixels: the mean difference from the photo
  outside the blend region's reach (the frame minus a margin of one face-box side around the
  face), beside what the video codec alone changes there.

    python benchmarks/bench_real_clip.py --source PHOTO --driving VIDEO [--ckpt MODEL ...] [--no-head-limit]
        [--out FILE]

With several --ckpt (NAME=PATH; "default" is the bundled default) each is run in turn.
Prints a table and the machine, and writes a JSON result (default
benchmarks/results/bench_real_clip.json). docs/animate_quality.md ("Real driving videos")
lists the clips measured, where each comes from, and the result files
(`--out benchmarks/results/real_clip_<photo>_<clip>.json`, tabulated by
`python benchmarks/report.py`).
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def surroundings_error(photo: np.ndarray, frames: list[np.ndarray], every: int, work: Path) -> dict:
    """Mean absolute difference (grey levels) from the photo outside the face's neighbourhood
    (the photo's face box grown by its side on each side), for the output and for the photo
    itself sent through the same video writer (what the codec alone changes)."""
    from talkingface.metrics.face_quality import face_points
    from talkingface.utils.video import iter_frames, write_video

    points = face_points(photo)
    if points is None:
        return {"output": float("nan"), "codec_only": float("nan")}
    (x0, y0), (x1, y1) = points.min(0), points.max(0)
    side = max(x1 - x0, y1 - y0)
    outside = np.ones(photo.shape[:2], bool)
    outside[int(max(y0 - side, 0)):int(y1 + side), int(max(x0 - side, 0)):int(x1 + side)] = False

    def error(images) -> float:
        diffs = [np.abs(f.astype(np.float32) - photo)[outside].mean() for f in images if f.shape == photo.shape]
        return float(np.mean(diffs)) if diffs and outside.any() else float("nan")

    still = work / "still.mp4"
    write_video(still, iter([photo] * 5), 25.0)
    return {"output": error(frames[::every]), "codec_only": error(iter_frames(still))}


def score(photo: np.ndarray, driving: Path, out: Path, result, every: int) -> dict:
    from talkingface.metrics.face_quality import face_quality
    from talkingface.metrics.reenactment import correlation, follow_scores, track_motion
    from talkingface.utils.video import iter_frames, probe_video

    frames = list(iter_frames(out))
    got, want = probe_video(out), probe_video(driving)
    output, source = track_motion(frames), track_motion(iter_frames(driving))
    bounds = [0, *result.scene_cuts, len(frames)]
    shots = [{"frames": [a, b], **{name: correlation(output.signal(name)[a:b], source.signal(name)[a:b])
                                   for name in ("head_x", "head_y", "mouth_open")}}
             for a, b in zip(bounds[:-1], bounds[1:])]
    quality = face_quality(photo, frames, every=every)
    return {"frames": got.num_frames, "driving_frames": want.num_frames, "fps": got.fps, "driving_fps": want.fps,
            "audio": got.has_audio, "driving_audio": want.has_audio, "scene_cuts": list(result.scene_cuts),
            "whole_clip": follow_scores(output, source), "shots": shots,
            "sharpness_ratio": quality.sharpness_ratio, "identity_distance": quality.identity_distance,
            "frames_without_face": quality.frames_without_face,
            "surroundings_error": surroundings_error(photo, frames, every, out.parent), "seconds": result.seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, help="Portrait photo.")
    parser.add_argument("--driving", required=True, help="Driving video (with its audio).")
    parser.add_argument("--ckpt", action="append", default=None, help="NAME=PATH (repeatable; default: the bundled "
                        "default as 'default').")
    parser.add_argument("--render", default="full", choices=("full", "model"))
    parser.add_argument("--no-head-limit", action="store_true", help="animate --no-head-limit (follow the driving "
                        "head however far it moves).")
    parser.add_argument("--variant", action="append", default=[], help="NAME:FIELD=VALUE,... full rendering's "
                        "settings changed (FullResSettings fields, as tune_fullres.py takes them); one more run each, "
                        "beside the defaults.")
    parser.add_argument("--every", type=int, default=3, help="Score face quality on every N-th frame.")
    parser.add_argument("--out", default=None, help="JSON result (default benchmarks/results/bench_real_clip.json).")
    args = parser.parse_args(argv)

    from talkingface.recipes.animate import AnimateOptions, run_animate
    from talkingface.utils.images import read_image

    from bench_common import load_average, machine_info, result_header, result_path, write_result
    from tune_fullres import parse_variant

    info = machine_info()
    header = result_header()
    print("\n".join(info.lines()) + f"\nload average: {load_average()}")
    photo = read_image(args.source)
    models = dict(c.split("=", 1) for c in args.ckpt) if args.ckpt else {"default": ""}
    variants = dict([(None, None), *(parse_variant(v) for v in args.variant)])  # None: the default settings
    began = time.perf_counter()
    runs = {}
    with tempfile.TemporaryDirectory(prefix="bench-real-clip-") as work:
        for (model, ckpt), variant in itertools.product(models.items(), variants):
            name = model if variant is None else f"{model}, {variant}"
            out = Path(work) / f"{len(runs)}.mp4"
            result = run_animate(AnimateOptions(source=args.source, driving=args.driving, out=str(out),
                                                ckpt=ckpt or None, render=args.render, head_limit=not args.no_head_limit,
                                                progress=False, fullres=variants[variant]))
            runs[name] = score(photo, Path(args.driving), out, result, args.every)
            r = runs[name]
            print(f"{name}: {r['frames']}/{r['driving_frames']} frames, fps {r['fps']:g}/{r['driving_fps']:g}, "
                  f"audio {r['audio']}/{r['driving_audio']}, sharpness {r['sharpness_ratio']:.3f}, identity "
                  f"{r['identity_distance']:.3f}, surroundings off by {r['surroundings_error']['output']:.2f} levels "
                  f"(the codec alone: {r['surroundings_error']['codec_only']:.2f})")
            print("  whole clip " + " ".join(f"{k}={v:.3f}" for k, v in r["whole_clip"].items()))
            for shot in r["shots"]:
                print(f"  shot {shot['frames'][0]:4d}-{shot['frames'][1]:4d} "
                      + " ".join(f"{k}={shot[k]:.3f}" for k in ("head_x", "head_y", "mouth_open")))
    result = {"source": str(args.source), "driving": str(args.driving), "render": args.render,
              "head_limit": not args.no_head_limit,
              "models": {k: v or "bundled default" for k, v in models.items()},
              "variants": {k: dataclasses.asdict(v) for k, v in variants.items() if k is not None}, "runs": runs,
              "seconds": time.perf_counter() - began}
    path = write_result(Path(args.out) if args.out else result_path("bench_real_clip"), result, header)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
