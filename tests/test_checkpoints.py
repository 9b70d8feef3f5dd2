"""Our checkpoint files: official layout, metadata, round trips, spectral norm removed."""
from __future__ import annotations

import copy

import pytest
import torch

from talkingface.checkpoints.official import (
    _spade_block_names, first_non_finite, load_generator, official_names, read_checkpoint, save_checkpoint)
from talkingface.config import load_config
from talkingface.errors import CheckpointError
from talkingface.models.build import build_discriminator, build_generator
from talkingface.models.generator import GeneratorInputs
from talkingface.models.layers import fold_spectral_norm

from helpers import TINY_CONFIG


def tiny_inputs(batch=2, size=64, identity_dim=16, seed=0) -> GeneratorInputs:
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(batch, 1, size, size)
    mask[:, :, size // 2:, size // 4: 3 * size // 4] = 1
    return GeneratorInputs(
        source=torch.rand(batch, 3, size, size, generator=g),
        source_line=torch.rand(batch, 3, size, size, generator=g),
        driving_line=torch.rand(batch, 3, size, size, generator=g),
        driving_subset=torch.rand(batch, 58, 2, generator=g) - 0.5,
        mouth_mask=mask,
        identity=torch.nn.functional.normalize(torch.randn(batch, identity_dim, generator=g), dim=1))


@pytest.fixture()
def tiny():
    cfg = load_config(TINY_CONFIG)
    torch.manual_seed(0)
    return cfg, build_generator(cfg).eval(), build_discriminator(cfg)


def test_saved_file_is_official_layout_and_weights_only(tmp_path, tiny):
    cfg, gen, disc = tiny
    path = tmp_path / "c.pth.tar"
    save_checkpoint(path, cfg, gen, disc, epoch=3)
    raw = torch.load(path, weights_only=True)
    assert {"generator", "discriminator", "optimizer_generator", "optimizer_discriminator", "epoch"} <= set(raw)
    assert raw["epoch"] == 3
    assert any(k.startswith("SPDAE_G.up_3.") for k in raw["generator"])
    assert any(k.startswith("ladder_network.layer1.0.weight_orig") for k in raw["generator"])
    assert "discs.1.conv.weight" in raw["discriminator"]
    meta = raw["talkingface"]
    assert (meta["landmark_scheme"], meta["identity_dim"], meta["resolution"]) == ("dense669", 16, 64)
    assert meta["config"]["model"]["generator"]["class_dim"] == 16


def test_round_trip_gives_identical_outputs(tmp_path, tiny):
    cfg, gen, disc = tiny
    path = tmp_path / "c.pth.tar"
    save_checkpoint(path, cfg, gen, disc)
    loaded = load_generator(path, cfg).model.eval()
    x = tiny_inputs()
    with torch.inference_mode():
        assert torch.equal(gen(x)["prediction"], loaded(x)["prediction"])


def test_a_generator_built_to_be_loaded_skips_only_the_random_fills(tiny):
    """initialise=False (load_generator's build: every weight is loaded next) gives the same
    parameters and buffers, and torch.nn.init fills again afterwards."""
    cfg, gen, _ = tiny
    bare = build_generator(cfg, initialise=False)
    assert {k: v.shape for k, v in bare.state_dict().items()} == {k: v.shape for k, v in gen.state_dict().items()}
    weight = torch.zeros(4, 4)
    torch.nn.init.kaiming_uniform_(weight)
    assert weight.abs().sum() > 0  # the real fill again


def test_skipping_the_fills_in_one_thread_leaves_other_threads_builds_initialised(tiny):
    """The web app loads models (fills skipped) in several threads while others build models to
    train: those must always be initialised, and the fills must work once every load is done."""
    import threading

    cfg, _, _ = tiny
    stop = threading.Event()

    def loading():
        while not stop.is_set():
            build_generator(cfg, initialise=False)

    loaders = [threading.Thread(target=loading) for _ in range(2)]
    for t in loaders:
        t.start()
    try:
        for _ in range(8):
            built = build_generator(cfg)
            weights = [p for name, p in built.named_parameters() if name.endswith("weight") and p.dim() == 4]
            assert all(float(w.detach().std()) > 0 and bool(torch.isfinite(w).all()) for w in weights)
    finally:
        stop.set()
        for t in loaders:
            t.join()
    weight = torch.zeros(4, 4)
    torch.nn.init.kaiming_uniform_(weight)
    assert weight.abs().sum() > 0


def test_the_non_finite_check_finds_nan_and_inf_and_passes_a_sum_that_overflows():
    big = torch.full((4,), 3e38)  # finite, but its float32 sum overflows to inf
    assert first_non_finite({"g": {"w": big, "steps": torch.tensor([1, 2])}}) is None
    nan, inf = big.clone(), torch.ones(3, dtype=torch.float16)
    nan[2], inf[0] = float("nan"), float("inf")
    assert first_non_finite({"g": {"ok": big, "w": nan}}) == "g.w"
    assert first_non_finite({"d": [torch.ones(2), inf]}) == "d.1"


def test_spectral_norm_removed_checkpoint_loads_with_same_outputs(tmp_path, tiny):
    cfg, gen, disc = tiny
    folded = fold_spectral_norm(copy.deepcopy(gen))
    path = tmp_path / "nosn.pth.tar"
    save_checkpoint(path, cfg, folded, disc)
    keys = torch.load(path, weights_only=True)["generator"].keys()
    assert not any(k.endswith("weight_u") for k in keys)
    assert "SPDAE_G.conv1.weight" in keys  # plain weight instead of weight_orig/_u/_v
    # The identity AdaIN's equalised-lr weight keeps its official name.
    assert any(k.endswith("adain.style.linear.weight_orig") for k in keys)
    loaded = load_generator(path, cfg).model.eval()
    x = tiny_inputs()
    with torch.inference_mode():
        assert torch.allclose(gen(x)["prediction"], loaded(x)["prediction"], atol=1e-6)


def test_missing_and_unexpected_keys_are_named(tmp_path, tiny):
    cfg, gen, disc = tiny
    path = tmp_path / "c.pth.tar"
    save_checkpoint(path, cfg, gen, disc)
    raw = torch.load(path, weights_only=True)
    raw["generator"].pop("SPDAE_G.conv_img.bias")
    raw["generator"]["SPDAE_G.extra.weight"] = torch.zeros(1)
    torch.save(raw, path)
    with pytest.raises(CheckpointError) as e:
        load_generator(path, cfg)
    msg = str(e.value)
    assert "SPDAE_G.conv_img.bias" in msg and "SPDAE_G.extra.weight" in msg and str(path) in msg


def test_wrong_shape_is_named(tmp_path, tiny):
    cfg, gen, disc = tiny
    path = tmp_path / "c.pth.tar"
    save_checkpoint(path, cfg, gen, disc)
    raw = torch.load(path, weights_only=True)
    raw["generator"]["SPDAE_G.conv_img.weight"] = torch.zeros(3, 5, 3, 3)
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="SPDAE_G.conv_img.weight"):
        load_generator(path, cfg)


def test_ddp_module_prefix_is_accepted(tmp_path, tiny):
    cfg, gen, disc = tiny
    path = tmp_path / "c.pth.tar"
    save_checkpoint(path, cfg, gen, disc)
    raw = torch.load(path, weights_only=True)
    raw["generator"] = {f"module.{k}": v for k, v in raw["generator"].items()}
    torch.save(raw, path)
    load_generator(path, cfg)


class NotAWeight:
    """Any class instance: weights-only loading must refuse to unpickle it."""


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"generator": NotAWeight()}, path)
    with pytest.raises(CheckpointError, match="evil.pth"):
        read_checkpoint(path)


def test_official_name_mapping_is_one_to_one_for_official_model():
    cfg = load_config(TINY_CONFIG.parent / "meta_portrait_256_eval.yaml")
    gen = build_generator(cfg)
    names = official_names(gen.state_dict().keys(), 7)
    assert len(set(names.values())) == len(names) == 436
    assert _spade_block_names(7) == ["head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3"]
