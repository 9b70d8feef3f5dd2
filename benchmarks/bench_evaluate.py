"""Time `talkingface evaluate` on a 100-frame 256x256 pair (CPU).

The pair is synthetic but face-like: a real portrait from tests/data/faces moving a few
pixels (so flow, landmarks and identity all have work to do), and a "prediction" that
is the same motion, blurred, noisy and flickering. Both are written as MP4 files and
evaluated through the recipe, report included.

    python benchmarks/bench_evaluate.py [--frames 100] [--lpips] [--fid] [--keep DIR] [--out FILE]

Writes benchmarks/results/bench_evaluate.json by default.
--lpips / --fid add those metrics with randomly initialised weight files in the
expected layouts (the numbers are meaningless; the time is what counts).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FACE = REPO / "tests" / "data" / "faces" / "obama.jpg"


def make_pair(frames: int, size: int, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    import cv2
    from PIL import Image

    rng = np.random.default_rng(seed)
    face = np.asarray(Image.open(FACE).convert("RGB").resize((size, size)))
    gt, pred = [], []
    for t in range(frames):
        angle = 3.0 * np.sin(t / 9.0)
        dx, dy = 4.0 * np.sin(t / 7.0), 2.0 * np.cos(t / 11.0)
        m = cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0)
        m[:, 2] += (dx, dy)
        g = cv2.warpAffine(face, m, (size, size), borderMode=cv2.BORDER_REFLECT)
        p = cv2.GaussianBlur(g, (5, 5), 1.0).astype(np.float32) + rng.normal(0, 4, g.shape) + 3.0 * (t % 2)
        gt.append(g)
        pred.append(np.clip(p, 0, 255).astype(np.uint8))
    return pred, gt


def random_weights(folder: Path) -> tuple[Path, Path, Path]:
    """AlexNet, LPIPS-lin and Inception files with random tensors in the real key layouts."""
    import torch

    from talkingface.metrics.fid import InceptionV3Features
    from talkingface.metrics.lpips import LpipsNet

    torch.manual_seed(0)
    net = LpipsNet()
    alex = {f"features.{k.split('.', 2)[2]}": v for k, v in net.state_dict().items() if k.startswith("net.")}
    lin = {f"lin{i}.model.1.weight": c.weight.detach().abs() for i, c in enumerate(net.lins)}
    paths = folder / "alexnet.pth", folder / "alex.pth", folder / "inception.pth"
    torch.save(alex, paths[0])
    torch.save(lin, paths[1])
    inception = InceptionV3Features(tf_variant=True)
    with torch.no_grad():  # He scaling, as trained weights behave; PyTorch's default init
        for m in inception.modules():  # decays activations into (slow) denormal floats
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    torch.save(inception.state_dict(), paths[2])
    return paths


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--lpips", action="store_true", help="Also LPIPS (random weights in the real layout).")
    ap.add_argument("--fid", action="store_true", help="Also FID (random Inception weights).")
    ap.add_argument("--keep", default=None, help="Write inputs and report here instead of a temporary folder.")
    ap.add_argument("--out", default=None, help="JSON result file (default benchmarks/results/bench_evaluate.json).")
    args = ap.parse_args()

    sys.path.insert(0, str(REPO))
    from bench_common import result_header, result_path, write_result
    from talkingface.recipes.evaluate import EvaluateOptions, run_evaluate
    from talkingface.utils.video import write_video

    header = result_header()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_evaluate_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        pred, gt = make_pair(args.frames, args.size)
        write_video(work / "pred.mp4", pred, 25.0)
        write_video(work / "gt.mp4", gt, 25.0)
        opts = EvaluateOptions(pred=str(work / "pred.mp4"), gt=str(work / "gt.mp4"), out=str(work / "report"),
                               source=str(FACE), device="cpu")
        if args.lpips or args.fid:
            alex, lin, inception = random_weights(work)
            if args.lpips:
                opts.lpips_alexnet, opts.lpips_lin = str(alex), str(lin)
            if args.fid:
                opts.inception = str(inception)
        start = time.perf_counter()
        run_evaluate(opts)
        seconds = time.perf_counter() - start
        extras = " + ".join(n for n, on in (("LPIPS", args.lpips), ("FID", args.fid)) if on)
        print(f"evaluate: {args.frames} frames of {args.size}x{args.size}"
              f"{' with ' + extras if extras else ''} in {seconds:.1f} s "
              f"({1000 * seconds / args.frames:.0f} ms/frame)")
        out = write_result(args.out or result_path(__file__),
                           {"frames": args.frames, "size": args.size, "lpips": args.lpips, "fid": args.fid,
                            "seconds": seconds, "ms_per_frame": 1000 * seconds / args.frames}, header)
        print(f"wrote {out}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
