"""Temporal super-resolution speed at 512: the reference path against the optimised one
(see talkingface/inference/bench_sr.py for what each path does).

    python benchmarks/bench_sr.py [--frames 4] [--precision auto] [--ablation]
"""
from __future__ import annotations

import sys

from talkingface.inference.bench_sr import main

if __name__ == "__main__":
    sys.exit(main())
