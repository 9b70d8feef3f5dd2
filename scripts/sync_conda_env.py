"""Write talkingface/environment_for_metaportrait.yml from environment.yml (the one source).

The seed tells its users `cd talkingface && conda env create -f environment_for_metaportrait.yml`.
conda runs an environment file's pip section from the file's own folder, so the copy there
installs the checkout one level up (`-e ..[test]`); everything else is the root file's.

    python scripts/sync_conda_env.py          # rewrite the seed's file
    python scripts/sync_conda_env.py --check  # exit 1 when it is out of date
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "environment.yml"
SEED_FILE = REPO / "talkingface" / "environment_for_metaportrait.yml"
HEADER = ("# GENERATED from ../environment.yml by scripts/sync_conda_env.py: edit that file, then rerun the script.\n"
          "# The seed's set-up line: cd talkingface && conda env create -f environment_for_metaportrait.yml\n")


def render(source_text: str) -> str:
    """The seed's file for `source_text` (environment.yml): its pip path one folder up."""
    lines = []
    for line in source_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("- -e .") or stripped == "- .":
            line = line.replace("-e .", "-e ..", 1) if "-e ." in line else line.replace("- .", "- ..", 1)
        lines.append(line)
    return HEADER + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only say whether the seed's file is up to date")
    args = p.parse_args(argv)
    want = render(SOURCE.read_text())
    if args.check:
        current = SEED_FILE.read_text() if SEED_FILE.is_file() else None
        if current != want:
            print(f"{SEED_FILE} is out of date: run python scripts/sync_conda_env.py")
            return 1
        return 0
    SEED_FILE.write_text(want)
    print(f"wrote {SEED_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
