"""Start a model at twice the resolution from a trained one (maintainers only).

    python scripts/grow_model.py --ckpt SMALL.pth.tar --config BIG.yaml --out GROWN.pth.tar

BIG.yaml must be SMALL's architecture with twice the frame size and twice
`spade_start_size` (talkingface/checkpoints/grow.py explains why that keeps every
weight). Continue with `talkingface train --init GROWN.pth.tar --config BIG.yaml`.
"""
from __future__ import annotations

import argparse
import sys

from talkingface.checkpoints.grow import grow_checkpoint
from talkingface.config import load_config
from talkingface.errors import TalkingFaceError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="the trained smaller model")
    parser.add_argument("--config", required=True, help="the larger model's config")
    parser.add_argument("--out", required=True, help="checkpoint to write (atomically)")
    args = parser.parse_args()
    try:
        resized = grow_checkpoint(args.ckpt, load_config(args.config), args.out)
    except TalkingFaceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}; resized: {', '.join(resized) or 'nothing'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
