"""The temporal SR network computes what the official `temporal_gfpgan.pth` computes (../shared/parity).

The manifest's weights are saved as a BasicSR-style file and read back through the
real checkpoint loader; the fixture's 4-frame clip runs as one clip (batch 1, N = 4).
The full-size network runs once for the whole module (about a minute on CPU).
Measured differences are printed (run with -s).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from talkingface.checkpoints.sr import load_temporal_sr
from talkingface.models.temporal_sr import TemporalSRConfig

from conftest import require_shared

pytestmark = pytest.mark.slow  # full-size or subprocess-heavy: left out of the fast subset (-m "not slow")

TOL = 1e-3


@pytest.fixture(scope="module")
def sr_manifest():
    return json.loads(require_shared("parity", "sr_manifest.json").read_text())


@pytest.fixture(scope="module")
def sr_fixture():
    with np.load(require_shared("parity", "sr_fixture_a.npz")) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def official_run(tmp_path_factory, sr_manifest, sr_fixture, fill_state_dict):
    """Load the parity weights from an official-layout file, run the fixture clip once."""
    path = tmp_path_factory.mktemp("sr") / "temporal_gfpgan.pth"
    torch.save({"params_ema": fill_state_dict(sr_manifest["network_g"])}, path)
    cfg = TemporalSRConfig.from_dict(sr_manifest["config"], source="sr_manifest.json")
    model = load_temporal_sr(path, config=cfg).eval()
    path.unlink()  # 0.6 GB
    with torch.inference_mode():
        out = model(torch.from_numpy(sr_fixture["lq"])[None])  # 1 x 4 x 3 x 512 x 512
    return model, out[0].numpy()


def test_official_config_is_the_default(sr_manifest):
    assert TemporalSRConfig.from_dict(sr_manifest["config"]) == TemporalSRConfig()


def test_keys_and_shapes_match_manifest(official_run, sr_manifest):
    model, _ = official_run
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {e[0]: tuple(e[1]) for e in sr_manifest["network_g"]}
    assert ours == theirs
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(154.7e6, rel=1e-3)
    # 7 encoder + 7 decoder temporal windows, one frame each side per block
    assert model.temporal_radius == 14


def test_output_matches_reference(official_run, sr_fixture):
    _, out = official_run
    ref = sr_fixture["out"]
    assert out.shape == ref.shape == (4, 3, 512, 512)
    diff = np.abs(out - ref)
    print(f"\ntemporal SR parity: max abs diff {diff.max():.3e}, mean abs diff {diff.mean():.3e} "
          f"(tolerance {TOL})")
    for t in range(out.shape[0]):
        print(f"  frame {t}: max {diff[t].max():.3e}")
    assert diff.max() <= TOL
