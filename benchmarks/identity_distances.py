"""The descriptor distances docs/preprocess.md quotes for its "same person" threshold:
dlib's raw descriptor lengths, and the pairwise distances of the photos in
tests/data/faces (three of one man, one of another) on raw and on unit-length
descriptors (`preprocess` groups shots on unit-length ones).

    python benchmarks/identity_distances.py [--out FILE]

Result: benchmarks/results/identity_distances.json. A few seconds.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import REPO, result_header, result_path, write_result  # noqa: E402

FACES = REPO / "tests" / "data" / "faces"


def main(argv: Sequence[str] | None = None) -> int:
    from talkingface.preprocess.identity import dlib_descriptor
    from talkingface.utils.images import read_image

    p = argparse.ArgumentParser(prog="identity_distances", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None,
                   help="result JSON (default benchmarks/results/identity_distances.json)")
    args = p.parse_args(argv)
    header = result_header()
    raw = {path.stem: dlib_descriptor(read_image(path)) for path in sorted(FACES.glob("*.jpg"))}
    pairs = {}
    for a, b in itertools.combinations(raw, 2):
        unit = np.linalg.norm(raw[a] / np.linalg.norm(raw[a]) - raw[b] / np.linalg.norm(raw[b]))
        pairs[f"{a}-{b}"] = {"raw": float(np.linalg.norm(raw[a] - raw[b])), "unit": float(unit),
                             "same_person": a.rstrip("0123456789") == b.rstrip("0123456789")}
        print(f"{a} - {b}: raw {pairs[f'{a}-{b}']['raw']:.3f}, unit-length {unit:.3f}")
    lengths = {k: float(np.linalg.norm(v)) for k, v in raw.items()}
    print("raw descriptor lengths: " + ", ".join(f"{k} {v:.3f}" for k, v in lengths.items()))
    out = write_result(args.out or result_path(__file__), {"faces": str(FACES.relative_to(REPO)),
                                                           "raw_lengths": lengths, "pairs": pairs}, header)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
