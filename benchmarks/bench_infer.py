"""Base-model inference speed: the reference path against the optimised one (see
talkingface/inference/bench_infer.py for what each path does).

    python benchmarks/bench_infer.py [--frames 8] [--batch-size 4] [--precision auto]
                                     [--ablation] [--compile] [--command]
"""
from __future__ import annotations

import sys
from pathlib import Path

# Measure the tree this script lives in, not whichever talkingface is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from talkingface.inference.bench_infer import main  # noqa: E402 - after the path set-up

if __name__ == "__main__":
    sys.exit(main())
