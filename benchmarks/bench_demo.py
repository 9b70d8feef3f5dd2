"""`talkingface demo`: how long it takes and how well its output follows and keeps the person.

Runs the README's `talkingface demo` as a fresh process (wall time, start-up included),
then scores its video as tests/test_demo.py does:

- motion: MediaPipe head x / y and mouth-opening trajectories of the output against the
  driving video (correlation over all frames), beside two no-learning baselines (the
  photo repeated; a similarity warp of it following the driving head) and the
  `--render model` output;
- face: sharpness relative to the photo and dlib identity distance to it, every 5th
  frame, for full rendering (the default) and for `--render model` (the model's output
  upsampled, rendered here in this process).

    python benchmarks/bench_demo.py [--out FILE]   # default benchmarks/results/bench_demo.json
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=int, default=5, help="Score face quality on every N-th frame.")
    parser.add_argument("--out", default=None, help="JSON result file (default benchmarks/results/bench_demo.json).")
    args = parser.parse_args(argv)

    from PIL import Image

    from bench_common import load_average, result_header, result_path, write_result
    from talkingface.animate.baseline import similarity_baseline
    from talkingface.animate.pipeline import settings_for_model
    from talkingface.checkpoints.official import config_for_checkpoint
    from talkingface.metrics.face_quality import face_quality
    from talkingface.metrics.reenactment import follow_table, track_motion
    from talkingface.recipes.animate import BUNDLED_MODEL
    from talkingface.recipes.demo import DEMO_DRIVING, DemoOptions, demo_portrait, run_demo
    from talkingface.utils.video import iter_frames, probe_video

    header = result_header()
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as work:
        work = Path(work)
        out = work / "demo.mp4"
        began = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "talkingface", "demo", "--out", str(out)], cwd=REPO,
                              capture_output=True, text=True, check=False)
        demo_seconds = time.perf_counter() - began
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            return 1
        log = [line for line in (proc.stdout + proc.stderr).splitlines() if "precision" in line.lower()]
        print(f"talkingface demo: {demo_seconds:.1f} s", flush=True)

        photo = demo_portrait()
        driving = track_motion(iter_frames(DEMO_DRIVING))
        output = track_motion(iter_frames(out))
        still = track_motion([photo] * len(driving.head_x))
        source = work / "portrait.png"
        Image.fromarray(photo).save(source)
        settings = settings_for_model(config_for_checkpoint(str(BUNDLED_MODEL), None))
        warp = track_motion(similarity_baseline(source, DEMO_DRIVING, settings))
        follow = follow_table(output, driving, {"static source": still, "similarity warp": warp})
        missing = {"output": output.missing, "driving": driving.missing, "similarity warp": warp.missing}

        full = face_quality(photo, iter_frames(out), every=args.every)
        model_out = run_demo(DemoOptions(out=str(work / "model.mp4"), render="model")).out
        model = face_quality(photo, iter_frames(model_out), every=args.every)
        model_track = track_motion(iter_frames(model_out))
        follow["render model"] = follow_table(model_track, driving, {})["output"]
        missing["render model"] = model_track.missing
        video = probe_video(out)

    result = {"demo_seconds": demo_seconds, "frames": video.num_frames, "size": [video.width, video.height],
              "precision_log": log, "follow": follow, "frames_without_face": missing,
              "face_quality": {"full": asdict(full), "model": asdict(model)}, "every": args.every,
              "load_average_after": load_average()}
    for name, scores in follow.items():
        print(f"{name:16s} " + " ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    print(f"face: full {full.sharpness_ratio:.3f} sharpness / {full.identity_distance:.3f} distance; "
          f"--render model {model.sharpness_ratio:.3f} / {model.identity_distance:.3f}")
    written = write_result(args.out or result_path(__file__), result, header)
    print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
