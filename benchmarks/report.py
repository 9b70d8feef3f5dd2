"""Regenerate the docs tables from the result files in benchmarks/results/.

README.md and docs/*.md hold generated blocks:

    <!-- report:bench_animate_quality:cross -->
    ... generated, do not edit ...
    <!-- /report -->

The opening marker names a result file (benchmarks/results/bench_animate_quality.json)
and a view: a named table of that file (benchmarks/report_views.py), one every file
has (`machine`: where, when and with which command it was measured; `paths`: the rows
of bench_infer / bench_sr), or a dotted key path into the JSON (`summary.cross (turns)`),
rendered as a table. A file name with `*` (`bench_preprocess*`) gives a named view all
matching files at once, as {stem: data} in name order (one table from several runs).

    python benchmarks/report.py           # rewrite every block from the result files
    python benchmarks/report.py --check   # exit 1 if a block is out of date or names a missing file/key
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from report_views import COMMON, VIEWS, generic  # benchmarks/ is on the path: run as a script

REPO = Path(__file__).resolve().parents[1]
OPEN = re.compile(r"<!-- report:(?P<file>[\w.*-]+):(?P<view>[^\n]*?) -->\n")
CLOSE = "<!-- /report -->"


class ReportError(Exception):
    """A marker that cannot be rendered: a missing result file or key, or an unclosed block."""


@dataclass
class Block:
    doc: Path
    file: str
    view: str
    start: int  # offset of the generated text (just after the opening marker's line)
    end: int  # offset of the closing marker
    line: int  # 1-based line of the opening marker

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}: report:{self.file}:{self.view}"


def find_blocks(doc: Path, text: str) -> list[Block]:
    blocks = []
    for match in OPEN.finditer(text):
        end = text.find(CLOSE, match.end())
        nested = OPEN.search(text, match.end(), end if end >= 0 else len(text))
        line = text.count("\n", 0, match.start()) + 1
        if end < 0 or nested:
            raise ReportError(f"{doc}:{line}: report:{match['file']}:{match['view']}: no {CLOSE} before the next "
                              "marker or the end of the file")
        blocks.append(Block(doc, match["file"], match["view"].strip(), match.end(), end, line))
    return blocks


def lookup(data: Any, path: str) -> Any:
    """`a.b.c` in nested dicts (list items by index)."""
    value = data
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(part)
    return value


def load_result(results: Path, file: str, cache: dict[str, Any]) -> Any:
    if "*" in file:
        paths = sorted(results.glob(f"{file}.json"))
        if not paths:
            raise ReportError(f"no result file matches {results / (file + '.json')}")
        return {p.stem: load_result(results, p.stem, cache) for p in paths}
    if file not in cache:
        path = results / f"{file}.json"
        if not path.is_file():
            raise ReportError(f"no result file {path}")
        try:
            cache[file] = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ReportError(f"{path}: not JSON ({e})") from None
    return cache[file]


def render(results: Path, file: str, view: str, cache: dict[str, Any] | None = None) -> str:
    """The Markdown of one block, without the trailing newline."""
    data = load_result(results, file, {} if cache is None else cache)
    named = VIEWS.get(file, {}).get(view) or (None if "*" in file else COMMON.get(view))
    if named is None and "*" in file:
        raise ReportError(f"'{file}' names several files: '{view}' must be a view of report_views.VIEWS['{file}']")
    try:
        return named(data) if named else generic(lookup(data, view))
    except (KeyError, IndexError, TypeError) as e:
        raise ReportError(f"{results / (file + '.json')}: view '{view}' needs a key it lacks ({e})") from None


def documents(root: Path) -> list[Path]:
    return [p for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))] if p.is_file()]


def update(root: Path, results: Path, write: bool) -> tuple[list[str], list[str]]:
    """Render every block of every document. Returns (stale block locations, errors); with
    `write`, stale blocks are rewritten in place."""
    stale, errors, cache = [], [], {}
    for doc in documents(root):
        text = doc.read_text()
        try:
            blocks = find_blocks(doc.relative_to(root), text)
        except ReportError as e:
            errors.append(str(e))
            continue
        pieces, last = [], 0
        for block in blocks:
            current = text[block.start:block.end]
            try:
                wanted = render(results, block.file, block.view, cache) + "\n"
            except ReportError as e:
                errors.append(f"{block.where}: {e}")
                wanted = current
            if wanted != current:
                stale.append(block.where)
            pieces += [text[last:block.start], wanted]
            last = block.end
        new = "".join(pieces) + text[last:]
        if write and new != text:
            doc.write_text(new)
    return stale, errors


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if any block is out of date "
                        "or names a missing result file or key")
    parser.add_argument("--root", type=Path, default=REPO, help="the checkout (README.md and docs/)")
    parser.add_argument("--results", type=Path, default=None, help="result files (default ROOT/benchmarks/results)")
    args = parser.parse_args(argv)
    results = args.results or args.root / "benchmarks" / "results"
    stale, errors = update(args.root, results, write=not args.check)
    for e in errors:
        print(f"report: error: {e}", file=sys.stderr)
    if args.check:
        for s in stale:
            print(f"report: out of date: {s} (run python benchmarks/report.py)", file=sys.stderr)
        return 1 if stale or errors else 0
    for s in stale:
        print(f"report: rewrote {s}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
