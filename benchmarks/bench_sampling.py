"""How the photo is resampled in full rendering (FullResSettings.sampling), and where the
face's sharpness goes: the figures in docs/animate_quality.md, step 1.

1. Stills: each photo rotated by 0-3 degrees and shifted by a fraction of a pixel, with
   torch's bicubic and OpenCV's 8x8 Lanczos; face sharpness (metrics.face_quality) of the
   result over the photo's.
2. `animate` with each sampling (and, for the budget, with the generated mouth and eyes
   or the occlusion-driven generation turned off) on PHOTO=VIDEO pairs: face sharpness
   and dlib identity distance to the photo.

    python benchmarks/bench_sampling.py --photo PHOTO [--photo ...] \\
        --run PHOTO=VIDEO[:START:FRAMES] [--run ...] [--budget PHOTO=VIDEO[:START:FRAMES]] [--out FILE]

Writes a JSON result (default benchmarks/results/bench_sampling.json).
"""
from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

import numpy as np


def still_ratios(photo: np.ndarray) -> dict[str, list[float]]:
    """Face sharpness kept by each kernel on three small rigid motions of the photo."""
    import cv2

    from talkingface.animate.deformation import warp_native
    from talkingface.metrics.face_quality import face_sharpness
    from talkingface.models.layers import coordinate_grid

    side = min(photo.shape[:2])
    image = np.ascontiguousarray(photo[:side, :side], dtype=np.float32)
    base = face_sharpness(photo[:side, :side])
    ratios: dict[str, list[float]] = {"bicubic": [], "lanczos": []}
    for degrees, pixels in ((1.0, 0.37), (3.0, 1.5), (0.0, 0.5)):
        m = cv2.getRotationMatrix2D((side / 2, side / 2), degrees, 1.0)
        m[0, 2] += pixels
        inverse = cv2.invertAffineTransform(m)
        grid = coordinate_grid(side, side).numpy()  # S x S x 2, align_corners=False units
        px = (grid + 1) * side / 2 - 0.5
        sx = inverse[0, 0] * px[..., 0] + inverse[0, 1] * px[..., 1] + inverse[0, 2]
        sy = inverse[1, 0] * px[..., 0] + inverse[1, 1] * px[..., 1] + inverse[1, 2]
        sampled = np.stack([(sx + 0.5) * 2 / side - 1, (sy + 0.5) * 2 / side - 1], -1).astype(np.float32)
        for kernel in ratios:
            out = warp_native(image, sampled, sampling=kernel)
            ratios[kernel].append(face_sharpness(np.clip(out + 0.5, 0, 255).astype(np.uint8)) / base)
    return ratios


def parse_run(text: str) -> tuple[str, str, int, int | None]:
    photo, rest = text.split("=", 1)
    parts = rest.split(":")
    start = int(parts[1]) if len(parts) > 1 else 0
    frames = int(parts[2]) if len(parts) > 2 else None
    return photo, parts[0], start, frames


def animate_scores(photo_path: str, driving: Path, settings, work: Path) -> dict[str, float]:
    from talkingface.metrics.face_quality import face_quality
    from talkingface.recipes.animate import AnimateOptions, run_animate
    from talkingface.utils.images import read_image
    from talkingface.utils.video import iter_frames

    out = work / "out.mp4"
    out.unlink(missing_ok=True)
    run_animate(AnimateOptions(source=photo_path, driving=str(driving), out=str(out), progress=False,
                               fullres=settings))
    quality = face_quality(read_image(photo_path), list(iter_frames(out)), every=2)
    return {"sharpness_ratio": quality.sharpness_ratio, "identity_distance": quality.identity_distance}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photo", action="append", default=[], help="Photo for the still test (repeatable).")
    parser.add_argument("--run", action="append", default=[], help="PHOTO=VIDEO[:START:FRAMES]: animate with each "
                        "sampling (repeatable).")
    parser.add_argument("--budget", default=None, help="PHOTO=VIDEO[:START:FRAMES]: also with the generated parts off.")
    parser.add_argument("--out", default=None, help="JSON result (default benchmarks/results/bench_sampling.json).")
    args = parser.parse_args(argv)

    from talkingface.animate.fullres import FullResSettings
    from talkingface.utils.images import read_image
    from talkingface.utils.video import iter_frames, probe_video, write_video

    from bench_common import load_average, machine_info, result_header, result_path, write_result

    header = result_header()
    print("\n".join(machine_info().lines()) + f"\nload average: {load_average()}")
    result: dict[str, object] = {"stills": {}, "runs": {}}
    for path in args.photo:
        ratios = still_ratios(read_image(path))
        result["stills"][path] = ratios
        print(f"still {path}: " + ", ".join(f"{k} {min(v):.2f}-{max(v):.2f}" for k, v in ratios.items()))
    variants = {"lanczos": FullResSettings(), "bicubic": FullResSettings(sampling="bicubic")}
    budget = {"bicubic, no generated mouth or eyes": FullResSettings(sampling="bicubic", mouth_full=10.0,
                                                                      blink_gain=1e-3, occlusion_ratio=0.0),
              "bicubic, no occlusion-driven generation": FullResSettings(sampling="bicubic", occlusion_ratio=0.0)}
    jobs = [(run, variants) for run in args.run] + ([(args.budget, budget)] if args.budget else [])
    with tempfile.TemporaryDirectory(prefix="bench-sampling-") as work:
        for run, settings in jobs:
            photo, video, start, frames = parse_run(run)
            driving = Path(work) / "driving.mp4"
            clip = itertools.islice(iter_frames(video), start, None if frames is None else start + frames)
            write_video(driving, clip, probe_video(video).fps)
            for name, fullres in settings.items():
                scores = animate_scores(photo, driving, fullres, Path(work))
                result["runs"].setdefault(run, {})[name] = scores
                print(f"{run}  {name:42s} sharpness {scores['sharpness_ratio']:.3f}  "
                      f"identity {scores['identity_distance']:.3f}")
    path = write_result(Path(args.out) if args.out else result_path("bench_sampling"), result, header)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
