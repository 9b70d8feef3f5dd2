"""Training losses match the reference's values on the parity batch (within 1e-4 relative)."""
from __future__ import annotations

import pytest
import torch

from talkingface.checkpoints.official import load_official_state
from talkingface.config import load_config
from talkingface.losses.metaportrait import MetaPortraitLoss
from talkingface.losses.vgg import VGG19Features
from talkingface.models.build import build_discriminator

from conftest import FULL_CONFIG, fixture_inputs

pytestmark = pytest.mark.slow  # full-size or subprocess-heavy: left out of the fast subset (-m "not slow")

REL_TOL = 1e-4


@pytest.fixture(scope="module")
def losses(official_outputs, base_fixture, base_manifest, fill_state_dict, tmp_path_factory):
    cfg = load_config(FULL_CONFIG)
    vgg_file = tmp_path_factory.mktemp("vgg") / "vgg19.pth"
    torch.save(fill_state_dict(base_manifest["vgg19"]), vgg_file)
    vgg = VGG19Features().load_file(vgg_file)
    disc = build_discriminator(cfg).eval()
    load_official_state(disc, fill_state_dict(base_manifest["discriminator"]), 7, "manifest", "discriminator")
    loss = MetaPortraitLoss(cfg.train.loss_weights, cfg.train.scales, vgg, disc_scales=disc.spec.scales)
    _, out = official_outputs
    x = fixture_inputs(base_fixture)
    driving = torch.from_numpy(base_fixture["driving"])
    eye = torch.from_numpy(base_fixture["eye_mask"])
    with torch.no_grad():
        values = {f"loss_warp_{k}": v for k, v in loss.warp(out["deformed"], driving).items()}
        values.update({f"loss_full_{k}": v for k, v in loss.warp(out["deformed"], driving).items()})
        values.update({f"loss_full_{k}": v for k, v in
                       loss.generator(out["prediction"], driving, eye, x.mouth_mask, disc).items()})
        values.update({f"loss_disc_{k}": v for k, v in loss.discriminator(out["prediction"], driving, disc).items()})
    return values


NAMES = ["loss_warp_warp_perceptual", "loss_full_warp_perceptual", "loss_full_perceptual", "loss_full_eye",
         "loss_full_mouth", "loss_full_gen_gan", "loss_full_feature_matching", "loss_disc_disc_gan"]


@pytest.mark.parametrize("name", NAMES)
def test_loss_matches_reference(losses, base_fixture, name):
    ours, ref = float(losses[name]), float(base_fixture[name])
    rel = abs(ours - ref) / abs(ref)
    print(f"{name}: ours {ours:.6f} reference {ref:.6f} relative diff {rel:.1e}")
    assert rel <= REL_TOL
