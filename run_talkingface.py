"""Seed-compatible entry point: python run_talkingface.py --model=metaportraitbaseinference ..."""
import sys

from talkingface.seed_cli import main

if __name__ == "__main__":
    sys.exit(main())
