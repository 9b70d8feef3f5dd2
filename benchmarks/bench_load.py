"""Checkpoint load time of the official 256 generator, by part, in fresh processes.

A checkpoint of the official architecture (random weights, 130 M parameters, written once
to a temporary file) is loaded by `talkingface.checkpoints.official.load_generator` the way
the seed's inference command loads one. Each repeat is a new Python process (a load happens
once per command, with a cold allocator), which times:
- torch.load of the file;
- the non-finite check over every floating tensor (`first_non_finite`), and the exhaustive
  per-element check it replaced (`torch.isfinite(t).all()`, for comparison);
- building the generator with its random initialisation and without it (`initialise=False`:
  the strict load overwrites every weight);
- the whole `load_generator` call as the command makes it.

    python benchmarks/bench_load.py [--repeats 5] [--out FILE]

Prints the median of each part and writes benchmarks/results/bench_load.json by default.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "talkingface/properties/model/meta_portrait_base_config/meta_portrait_256_eval.yaml"

# one process's measurements, printed as JSON (run with the checkpoint's path as argument)
_CHILD = """
import json, sys, time
import torch
from talkingface.config import load_config
from talkingface.checkpoints.official import first_non_finite, load_generator
from talkingface.models.build import build_generator
cfg = load_config(sys.argv[2])
t = {}
a = time.perf_counter(); load_generator(sys.argv[1], cfg); t["load_generator"] = time.perf_counter() - a
a = time.perf_counter(); ckpt = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
t["torch_load"] = time.perf_counter() - a
a = time.perf_counter(); first_non_finite(ckpt); t["finite_check"] = time.perf_counter() - a
tensors = [v for v in ckpt["generator"].values() if isinstance(v, torch.Tensor) and v.is_floating_point()]
a = time.perf_counter(); all(bool(torch.isfinite(v).all()) for v in tensors); t["finite_check_exhaustive"] = time.perf_counter() - a
a = time.perf_counter(); build_generator(cfg, spectral_norm=True); t["build_initialised"] = time.perf_counter() - a
a = time.perf_counter(); build_generator(cfg, spectral_norm=True, initialise=False); t["build_uninitialised"] = time.perf_counter() - a
print(json.dumps(t))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="Fresh processes to time (the median is reported).")
    parser.add_argument("--out", default=None, help="JSON result file (default benchmarks/results/bench_load.json).")
    args = parser.parse_args(argv)

    from bench_common import load_average, machine_info, result_header, result_path, write_result
    from talkingface.checkpoints.official import save_checkpoint
    from talkingface.config import load_config
    from talkingface.models.build import build_generator

    info = machine_info()
    header = result_header()
    print("\n".join(info.lines()) + f"\nload average: {load_average()}")
    cfg = load_config(CONFIG)
    runs = []
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "official_256.pth.tar"
        generator = build_generator(cfg, spectral_norm=True)
        parameters = sum(p.numel() for p in generator.parameters())
        save_checkpoint(path, cfg, generator)
        del generator
        for _ in range(args.repeats):
            done = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(CONFIG)], check=True,
                                  capture_output=True, text=True, cwd=REPO)
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    for key, value in median.items():
        print(f"{key:26s} {value:6.3f} s")
    out = write_result(args.out or result_path(__file__), {"parameters": parameters, "repeats": args.repeats,
                                                           "median_s": median, "runs": runs}, header)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
