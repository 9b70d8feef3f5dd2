"""Cost of full-resolution composition per frame (talkingface.animate.fullres), by face size.

The Grace Hopper portrait (matplotlib's sample data) is resized so its face crop box has
about the requested side; one rendered frame with an opened mouth (a still deformation
grid, a 64 px generator crop) is composed repeatedly. The model's own cost is not
included: this is what full rendering adds on top of `--render model`.

    python benchmarks/bench_fullres.py [--sides 140 400 785] [--repeats 10] [--out FILE]

Writes benchmarks/results/bench_fullres.json by default.
"""
from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[140, 400, 785], help="Face crop box sides (px).")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default=None, help="JSON result file (default benchmarks/results/bench_fullres.json).")
    args = parser.parse_args(argv)

    import cv2
    import numpy as np

    from talkingface.animate.fullres import FullResComposer, RenderedCrop
    from talkingface.preprocess.portrait import detect_landmarks
    from bench_common import load_average, machine_info, result_header, result_path, write_result
    from talkingface.preprocess.detect import box_around_points, crop_frame
    from talkingface.recipes.demo import demo_portrait

    info = machine_info()
    header = result_header()
    print("\n".join(info.lines()) + f"\nload average: {load_average()}")
    photo = demo_portrait()
    base_box = box_around_points(detect_landmarks(photo) * (photo.shape[1], photo.shape[0]), 1.3, 0.2)
    centres = 2 * (np.arange(16) + 0.5) / 16 - 1
    still = np.stack(np.meshgrid(centres, centres), -1).astype(np.float32)
    rows = []
    for side in args.sides:
        scale = side / base_box.side
        frame = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        points = detect_landmarks(frame) * (frame.shape[1], frame.shape[0])
        box = box_around_points(points, 1.3, 0.2)
        composer = FullResComposer(frame, box, box.to_crop(points))
        pose = box.to_crop(points).copy()
        pose[[14, 17, 87, 317], 1] += 0.03  # lower lip down: a generated mouth opening
        item = RenderedCrop(crop_frame(frame, box, 64), pose, still, np.full((64, 64), 0.7, np.float32))
        composer(item)  # warm-up
        began = time.perf_counter()
        for _ in range(args.repeats):
            composer(item)
        ms = (time.perf_counter() - began) / args.repeats * 1000
        rows.append({"box_side": box.side, "frame": [frame.shape[1], frame.shape[0]], "ms_per_frame": ms})
        print(f"box {box.side:4d} px in a {frame.shape[1]}x{frame.shape[0]} frame: {ms:7.1f} ms a frame")
    out = write_result(args.out or result_path(__file__), {"repeats": args.repeats, "rows": rows}, header)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
