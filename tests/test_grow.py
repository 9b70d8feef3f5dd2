"""Growing a trained generator to twice the resolution (talkingface.checkpoints.grow)."""
from __future__ import annotations

import pytest
import torch

from talkingface.checkpoints.grow import grow_checkpoint, spectral_vectors
from talkingface.checkpoints.official import generator_state, load_generator, read_checkpoint
from talkingface.config import load_config, parse_config
from talkingface.errors import CheckpointError

from helpers import MEDIAPIPE_TINY_CONFIG, make_tiny_checkpoint


def doubled(cfg):
    """The same architecture at twice the frame size (and twice the decoder's start size)."""
    data = cfg.to_dict()
    side = data["dataset"]["frame_shape"][0] * 2
    data["dataset"]["frame_shape"] = [side, side, 3]
    data["model"]["generator"]["spade_start_size"] *= 2
    return parse_config(data)


def test_grown_generator_keeps_every_weight_and_loads_strictly(tmp_path):
    small_cfg = load_config(MEDIAPIPE_TINY_CONFIG)
    small = make_tiny_checkpoint(tmp_path / "small.pth.tar", MEDIAPIPE_TINY_CONFIG)
    big_cfg = doubled(small_cfg)
    resized = grow_checkpoint(small, big_cfg, tmp_path / "big.pth.tar")
    assert resized == ["SPDAE_G.conv1.weight_orig"]  # only the identity-to-map kernel has a size

    before = generator_state(read_checkpoint(small), small)
    after = generator_state(read_checkpoint(tmp_path / "big.pth.tar"), tmp_path / "big.pth.tar")
    assert set(before) == set(after)
    for key, value in before.items():
        if key in resized:
            assert after[key].shape[2:] == tuple(2 * s for s in value.shape[2:])
            # the same map drawn at twice the size: the corners stay exactly, the rest in between
            for row, col in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
                assert torch.equal(after[key][..., row, col], value[..., row, col])
            assert after[key].min() >= value.min() and after[key].max() <= value.max()
        elif not key.endswith(("weight_u", "weight_v")):
            assert torch.equal(value, after[key]), key

    # strictly loadable at the new resolution; the checkpoint says so
    loaded = load_generator(tmp_path / "big.pth.tar", big_cfg)
    assert loaded.meta.resolution == 2 * small_cfg.resolution[0]


def test_spectral_vectors_give_the_largest_singular_value():
    torch.manual_seed(0)
    for weight in (torch.randn(16, 8, 3, 3), torch.randn(32, 16, 8, 8)):  # a conv, and a transposed conv (out=16)
        u0 = torch.randn(weight.shape[0] if weight.shape[0] == 16 else 16)
        u, v = spectral_vectors(weight, u0, iterations=200)
        dim = 0 if weight.shape[0] == u.numel() else 1
        matrix = weight.movedim(dim, 0).reshape(u.numel(), -1)
        sigma = torch.dot(u, matrix @ v)
        assert torch.isclose(sigma, torch.linalg.matrix_norm(matrix, ord=2), rtol=1e-3)


def test_growing_into_other_channels_is_refused(tmp_path):
    small = make_tiny_checkpoint(tmp_path / "small.pth.tar", MEDIAPIPE_TINY_CONFIG)
    data = doubled(load_config(MEDIAPIPE_TINY_CONFIG)).to_dict()
    data["model"]["generator"]["conv_dim"] *= 2
    with pytest.raises(CheckpointError, match="cannot grow .*only spatial kernel sizes may differ"):
        grow_checkpoint(small, parse_config(data), tmp_path / "big.pth.tar")
    assert not (tmp_path / "big.pth.tar").exists()
