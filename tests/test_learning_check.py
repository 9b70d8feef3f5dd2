"""Learning check (issue 4, item 9): the bundled model, trained by this project's own
recipes on synthetic clips (docs/bundled_model.md), recovers known head motion on a
portrait it never saw, with motions from a seed no training clip used."""
from __future__ import annotations

from talkingface.recipes.animate import BUNDLED_MODEL
from talkingface.recipes.learning_check import check_checkpoint
from talkingface.recipes.personalize import config_for_checkpoint
from talkingface.recipes.synth import SynthOptions, run_synth

from helpers import REPO


def test_the_trained_warp_recovers_held_out_motion(tmp_path):
    held = run_synth(SynthOptions(portraits=[str(REPO / "tests" / "data" / "faces" / "biden.jpg")],
                                  out=str(tmp_path / "held"), frames=40, seed=99, size=64, identity="dlib"))
    cfg = config_for_checkpoint(str(BUNDLED_MODEL), None)
    check = check_checkpoint(BUNDLED_MODEL, cfg, held.root)
    print("\n".join(check.lines()))
    assert check.frames == 40
    assert check.flow_error_px < 0.7 * check.motion_px  # the zero-flow guess errs by the whole motion
    assert check.psnr_warped > check.psnr_identity + 2.0  # better than leaving the source where it is
