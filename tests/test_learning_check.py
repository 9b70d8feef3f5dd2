"""Learning check (issue 4, item 9): the bundled 64 px model, trained by this project's own
recipes on synthetic clips (docs/bundled_model.md), recovers known head motion on a
portrait it never saw, with motions from a seed no training clip used. (The 128 px default
was grown from it and fine-tuned: benchmarks/bench_animate_quality.py measures that one.)"""
from __future__ import annotations

from talkingface.recipes.animate import BUNDLED_64_MODEL
from talkingface.recipes.learning_check import check_checkpoint
from talkingface.checkpoints.official import config_for_checkpoint
from talkingface.recipes.synth import SynthOptions, run_synth

from helpers import REPO


def test_the_trained_warp_recovers_held_out_motion(tmp_path):
    held = run_synth(SynthOptions(portraits=[str(REPO / "tests" / "data" / "faces" / "biden.jpg")],
                                  out=str(tmp_path / "held"), frames=40, seed=99, size=64, identity="dlib"))
    cfg = config_for_checkpoint(str(BUNDLED_64_MODEL), None)
    check = check_checkpoint(BUNDLED_64_MODEL, cfg, held.root)
    print("\n".join(check.lines()))
    assert check.frames == 40
    # measured here: flow error 0.84 px of a 1.95 px motion (0.43x; the zero-flow guess errs by the whole
    # motion); warped source 23.07 dB against 18.58 for leaving it where it is (+4.49 dB)
    assert check.flow_error_px < 0.5 * check.motion_px
    assert check.psnr_warped > check.psnr_identity + 4.0
