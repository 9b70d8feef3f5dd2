"""benchmarks/report.py: the docs tables are generated from benchmarks/results/*.json and
are up to date; the rendering and the check work on a tiny made-up checkout; result files
carry their header (benchmarks/bench_common.py)."""
from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"


@pytest.fixture
def report(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("report")


def test_repo_docs_match_their_result_files():
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "report.py"), "--check"], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr


def test_every_marker_names_an_existing_result_file(report):
    blocks = [b for doc in report.documents(REPO) for b in report.find_blocks(doc, doc.read_text())]
    assert blocks, "no generated blocks in README.md or docs/"
    for block in blocks:
        assert list((BENCHMARKS / "results").glob(f"{block.file}.json")), block.where


def make_checkout(tmp_path: Path, doc: str, result: dict) -> Path:
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# x\n")
    (tmp_path / "docs" / "a.md").write_text(doc)
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "tiny.json").write_text(json.dumps(result))
    return tmp_path


TINY = {"written": "2026-01-02T03:04:05+00:00", "command": "python benchmarks/tiny.py --n 2",
        "commit": {"sha": "0123456789abcdef", "dirty": True},
        "machine": {"cpu": "Some CPU", "cpu_flags": ["avx2"], "cores": 2, "threads": 1, "gpu": None,
                    "torch": "2.13.0"},
        "summary": {"fast": {"fps": 12.3456, "psnr": "inf"}, "slow": {"fps": 1.5, "psnr": 40.0}}}

DOC = ("Intro.\n<!-- report:tiny:summary -->\nstale text\n<!-- /report -->\nMiddle.\n"
       "<!-- report:tiny:machine -->\n<!-- /report -->\nEnd.\n")


def test_rewrites_blocks_from_the_json_and_leaves_the_rest(tmp_path, report):
    root = make_checkout(tmp_path, DOC, TINY)
    assert report.main(["--root", str(root), "--check"]) == 1  # stale before
    assert report.main(["--root", str(root)]) == 0
    text = (root / "docs" / "a.md").read_text()
    assert text.startswith("Intro.\n<!-- report:tiny:summary -->\n| row | fps | psnr |\n|---|---:|---:|\n")
    assert "| fast | 12.35 | inf |\n| slow | 1.5 | 40 |\n<!-- /report -->\nMiddle.\n" in text
    assert ("Measured on Some CPU, 2 cores, 1 torch thread; CPU flags: avx2; torch 2.13.0 (2026-01-02), "
            "commit 0123456789 with local changes; `python benchmarks/tiny.py --n 2`.\n<!-- /report -->\nEnd.\n"
            ) in text
    assert "stale text" not in text
    assert report.main(["--root", str(root), "--check"]) == 0  # up to date now
    assert report.main(["--root", str(root)]) == 0 and (root / "docs" / "a.md").read_text() == text  # idempotent

    changed = {**TINY, "summary": {"fast": {"fps": 99.0, "psnr": "inf"}}}
    (root / "benchmarks" / "results" / "tiny.json").write_text(json.dumps(changed))
    assert report.main(["--root", str(root), "--check"]) == 1
    assert (root / "docs" / "a.md").read_text() == text  # --check changes nothing


@pytest.mark.parametrize("doc, message", [
    ("<!-- report:missing:summary -->\n<!-- /report -->\n", "no result file"),
    ("<!-- report:tiny:no.such.key -->\n<!-- /report -->\n", "needs a key it lacks"),
    ("<!-- report:tiny:summary -->\nnever closed\n", "no <!-- /report -->"),
])
def test_check_fails_on_a_missing_file_key_or_end(tmp_path, report, capsys, doc, message):
    root = make_checkout(tmp_path, doc, TINY)
    assert report.main(["--root", str(root), "--check"]) == 1
    err = capsys.readouterr().err
    assert message in err and "docs/a.md:1" in err


def test_provenance_stands_in_for_a_missing_command(report):
    old = {"provenance": "measured before result headers existed; re-run `x` to refresh", "commit": None,
           "machine": {"cpu": "AMD EPYC", "cores": 2, "threads": 2, "flags": ["avx2"], "torch": "2.13.0+cpu"}}
    line = report.COMMON["machine"](old)
    assert line == ("Measured on AMD EPYC, 2 cores, 2 torch threads; CPU flags: avx2; torch 2.13.0+cpu; "
                    "measured before result headers existed; re-run `x` to refresh.")


def test_result_files_carry_the_header(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bench_common = importlib.import_module("bench_common")
    header = bench_common.result_header("cpu", argv=[str(BENCHMARKS / "bench_x.py"), "--frames", "2"])
    assert header["command"] == "python benchmarks/bench_x.py --frames 2"
    assert header["package_version"]
    machine = header["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and machine["threads"] >= 1 and "cpu_flags" in machine
    assert "gpu" in machine
    commit = header["commit"]  # None outside a git checkout
    assert commit is None or (len(commit["sha"]) == 40 and commit["dirty"] in (True, False, None))

    path = bench_common.write_result(tmp_path / "sub" / "r.json", {"psnr": float("inf"), "rows": (1, 2)}, header)
    data = json.loads(path.read_text())  # strict JSON: inf written as a string
    assert data["psnr"] == "inf" and data["rows"] == [1, 2] and data["command"] == header["command"]
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]  # no temporary left behind
    assert bench_common.result_path("benchmarks/bench_x.py", "ablation").name == "bench_x_ablation.json"
    assert bench_common.result_path("bench_x.py").parent == BENCHMARKS / "results"


def test_a_star_gives_a_named_view_every_matching_file(tmp_path, report, monkeypatch, capsys):
    doc = "<!-- report:tiny*:names -->\n<!-- /report -->\n<!-- report:tiny*:summary -->\n<!-- /report -->\n"
    root = make_checkout(tmp_path, doc, TINY)
    (root / "benchmarks" / "results" / "tiny_b.json").write_text(json.dumps(TINY))
    monkeypatch.setitem(report.VIEWS, "tiny*", {"names": lambda files: ", ".join(files)})
    assert report.main(["--root", str(root)]) == 1  # the generic key path is for one file only
    assert "names several files" in capsys.readouterr().err
    assert (root / "docs" / "a.md").read_text().startswith("<!-- report:tiny*:names -->\ntiny, tiny_b\n")
