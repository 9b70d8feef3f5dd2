"""Base-model inference speed: the reference path against the optimised one (see
talkingface/inference/bench_infer.py for what each path does).

    python benchmarks/bench_infer.py [--frames 8] [--batch-size 4] [--precision auto]
                                     [--ablation] [--compile] [--command]
"""
from __future__ import annotations

import sys

from talkingface.inference.bench_infer import main

if __name__ == "__main__":
    sys.exit(main())
