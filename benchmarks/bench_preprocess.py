"""End-to-end preprocessing speed: frames/s at 256 for a synthetic 720p talking-head video.

The video is scikit-image's astronaut photo moving, scaling and rotating on a 1280x720
canvas (H.264, 25 fps), made once before timing. The timed part is the whole
`preprocess` run: decoding, detection, Face Mesh, smoothing, theta, the identity
embedding, PNG/npy writes, the commit and the map.

    python benchmarks/bench_preprocess.py [--frames 300] [--videos 1] [--workers 1] [--size 256]
                                         [--runs 1] [--out FILE]

Writes benchmarks/results/bench_preprocess[_<variant>].json by default, the variant naming the
options off their defaults (`_size512`, `_videos2_workers2`, `_frames1500`).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def synth_frames(count: int, width: int = 1280, height: int = 720, seed: int = 0):
    import cv2
    from skimage import data

    face = data.astronaut()
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi)
    for i in range(count):
        t = i / 25.0
        angle = 6 * np.sin(0.7 * t + phase)
        scale = 1.0 + 0.05 * np.sin(0.4 * t)
        m = cv2.getRotationMatrix2D((256, 256), angle, scale)
        m[0, 2] += (width - 512) / 2 + 30 * np.sin(0.5 * t)
        m[1, 2] += (height - 512) / 2 + 10 * np.sin(0.9 * t)
        yield cv2.warpAffine(face, m, (width, height), borderMode=cv2.BORDER_CONSTANT, borderValue=(90, 100, 110))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300, help="frames per video")
    parser.add_argument("--videos", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--runs", type=int, default=1, help="timed runs (each a fresh output folder)")
    parser.add_argument("--out", default=None, help="JSON result file (default benchmarks/results/"
                        "bench_preprocess[_<variant>].json, the variant naming the options off their defaults)")
    args = parser.parse_args()

    from bench_common import PeakMemory, result_header, result_path, write_result
    from talkingface.recipes.preprocess import PreprocessOptions, run_preprocess
    from talkingface.utils.video import write_video

    header = result_header()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        videos = []
        for v in range(args.videos):
            path = Path(tmp) / f"talk_{v}.mp4"
            write_video(path, synth_frames(args.frames, seed=v), 25)
            videos.append(str(path))
        for run in range(args.runs):
            memory = PeakMemory()  # this process's peak resident set (with --workers 1 the work runs here)
            memory.reset()
            start = time.perf_counter()
            report = run_preprocess(PreprocessOptions(inputs=videos, out=os.path.join(tmp, f"out{run}"),
                                                      size=args.size, workers=args.workers))
            seconds = time.perf_counter() - start
            frames = report.frames_decoded
            runs.append({"frames": frames, "seconds": seconds, "frames_per_s": frames / seconds,
                         "peak_rss_mib": memory.peak_mib()})
            print(f"bench_preprocess: {frames} frames of 1280x720 -> {args.size}px, {args.videos} video(s), "
                  f"workers={args.workers}, {os.cpu_count()} CPUs: {seconds:.1f} s end to end, "
                  f"{frames / seconds:.1f} frames/s, peak RSS {runs[-1]['peak_rss_mib']:.0f} MiB", flush=True)
    defaults = {"frames": 300, "videos": 1, "workers": 1, "size": 256}
    variant = "_".join(f"{k}{getattr(args, k)}" for k in defaults if getattr(args, k) != defaults[k]) or None
    out = write_result(args.out or result_path(__file__, variant),
                       {"videos": args.videos, "frames_per_video": args.frames, "source": "1280x720 synthetic",
                        "size": args.size, "workers": args.workers, "runs": runs,
                        "frames_per_s": [r["frames_per_s"] for r in runs]}, header)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
