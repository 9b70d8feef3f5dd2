"""Benchmark helpers whose numbers the docs quote: the roofline's convolution accounting
(benchmarks/roofline.py) and the meta benchmark's learning-rate choice and verdict
(benchmarks/meta_report.py), and the parsers of bench_suite / bench_infer --command. No
timings are asserted."""
from __future__ import annotations

import argparse
import importlib

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from helpers import REPO


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    return importlib.import_module


def small_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 8, 3, padding=1, groups=2),
                               torch.nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1),
                               torch.nn.Conv2d(4, 4, 3, padding=1)).eval()


def test_roofline_records_every_convolution_with_torchs_flop_count(bench):
    roofline = bench("roofline")
    net, x = small_net(), torch.randn(2, 3, 16, 16)
    calls = roofline.record_convs(lambda: net(x))
    assert [c.transposed for c in calls] == [False, False, True, False]
    assert calls[1].groups == 2 and calls[2].output == (2, 4, 32, 32)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(x)
    assert sum(c.flops for c in calls) == counter.get_total_flops()  # the same accounting as torch's counter
    result = roofline.roofline(lambda: net(x), frames_per_call=2, frames_per_second=10.0,
                                 min_seconds=0.01)
    assert result["distinct_convs"] == 4 and len(result["layers"]) == 4
    assert result["conv_gflop_per_frame"] == pytest.approx(counter.get_total_flops() / 2 / 1e9)
    assert result["peak_gflops"] >= max(layer["gflops"] for layer in result["layers"])


def scores_for(gain_at: dict[int, float], people=("a", "b"), seeds=(0, 1), noise=0.01) -> dict:
    """Made-up scores: every start at 20 dB + k/10 on validation and test; the meta start
    `gain_at[k]` dB higher on test; lr 1e-3 worse than 1e-4 on validation for everyone."""
    scores = {}
    starts = ["pretrained"] + [f"{kind}_seed{s}" for kind in ("meta", "ordinary") for s in seeds]
    for i, start in enumerate(starts):
        for j, person in enumerate(people):
            wobble = noise * ((i + j) % 3)
            scores[f"{start}|{person}|start"] = {"0": {"validate": 20.0, "test": 20.0 + wobble}}
            for lr, penalty in ((1e-4, 0.0), (1e-3, 1.0)):
                scores[f"{start}|{person}|{lr:g}"] = {str(k): {
                    "validate": 20 + k / 10 - penalty,
                    "test": 20 + k / 10 - penalty + wobble + (gain_at[k] if start.startswith("meta") else 0.0)}
                    for k in (5, 50)}
    return scores


def test_meta_report_chooses_the_lr_on_validation_and_states_the_verdict(bench):
    meta_report = bench("meta_report")
    args = argparse.Namespace(k=[0, 5, 50], lrs=[1e-4, 1e-3], seeds=[0, 1], within=5, reference=50)
    result, markdown = meta_report.report(scores_for({5: 0.5, 50: 0.5}), args, ["a", "b"], [], {})
    assert result["chosen_lr"]["meta"]["50"] == 1e-4 and result["chosen_lr"]["ordinary"]["5"] == 1e-4
    assert result["paired_gain_db"]["meta - best other"]["50"][0] == pytest.approx(0.5, abs=0.02)
    assert "pays off" in result["verdict"][-2] and result["target"]["met"] is False  # 20.5+0.5 < 25
    behind, _ = meta_report.report(scores_for({5: -0.5, 50: -0.5}), args, ["a", "b"], [], {})
    assert "does not pay off" in behind["verdict"][-2]
    mixed, _ = meta_report.report(scores_for({5: 0.5, 50: 0.0}), args, ["a", "b"], [], {})
    assert "does not clearly pay off" in mixed["verdict"][-2] and "## Verdict" in markdown
    assert "k = none" not in mixed["verdict"][-2]  # only the clauses that have a k
    assert meta_report.verdict_of(mixed) == mixed["verdict"]  # the docs view recomputes it from the stored pairs


def test_bench_suite_reads_pytests_summary_line(bench):
    parse = bench("bench_suite").parse_summary
    out = "....s..\n809 passed, 26 skipped, 3 deselected in 421.23s (0:07:01)\n"
    assert parse(out) == {"passed": 809, "skipped": 26, "deselected": 3, "pytest_seconds": 421.23}
    assert parse("= 2 failed, 5 passed in 3.50s =")["failed"] == 2
    with pytest.raises(ValueError):
        parse("collected 0 items\n")


def test_bench_infer_reads_the_recipes_own_time(bench):
    seconds = bench("bench_infer")._recipe_seconds
    assert seconds("precision fp32\nWrote 48 frames to saved/output_256 and saved/out_256.mp4 in 87.1 s\n") == 87.1
    assert seconds("no such line") != seconds("no such line")  # NaN: the split is then unknown


def test_parity_report_keeps_the_largest_difference_per_quantity(bench):
    parse = bench("parity_report").parse_differences
    out = ("line image source[0]: max diff 0 grey levels, 0 pixels differ\n"
           "line image source[1]: max diff 1 grey levels, 3 pixels differ\n"
           "subset driving[1]: max diff 2.50e-07\n"
           "..full prediction: max abs diff 9.24e-07, mean 1.10e-08\n"
           "\ntemporal SR parity: max abs diff 5.960e-07, mean abs diff 1.000e-08 \n")
    assert parse(out) == {"line image source": 1.0, "subset driving": 2.5e-07, "full prediction": 9.24e-07,
                          "temporal SR parity": 5.96e-07}
