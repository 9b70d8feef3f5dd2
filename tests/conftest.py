"""Shared test fixtures: the parity fixtures in ../shared and tiny configs."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from talkingface.checkpoints.official import load_generator
from talkingface.config import load_config
from talkingface.landmarks.encoding import normalized_subset
from talkingface.landmarks.scheme import get_scheme
from talkingface.models.generator import GeneratorInputs

from helpers import missing_requirement

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CONFIG_DIR = REPO / "talkingface" / "properties" / "model" / "meta_portrait_base_config"
EVAL_CONFIG = CONFIG_DIR / "meta_portrait_256_eval.yaml"
FULL_CONFIG = CONFIG_DIR / "meta_portrait_256_pretrain_full.yaml"


def require_shared(*parts: str) -> Path:
    """Path under ../shared; a missing file fails under CI=true and skips elsewhere."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        missing_requirement(f"{path} is missing (the parity fixtures live in ../shared beside the repo)")
    return path


@pytest.fixture(scope="session")
def base_fixture():
    import numpy as np

    with np.load(require_shared("parity", "base_fixture_a.npz")) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="session")
def base_manifest():
    return json.loads(require_shared("parity", "base_manifest.json").read_text())


@pytest.fixture(scope="session")
def fill_state_dict():
    require_shared("parity", "weights.py")
    sys.path.insert(0, str(SHARED / "parity"))
    try:
        from weights import fill_state_dict as fill
    finally:
        sys.path.pop(0)
    return fill


@pytest.fixture(scope="session")
def official_ckpt_file(tmp_path_factory, base_manifest, fill_state_dict):
    """An official-format checkpoint file holding the parity weights."""
    path = tmp_path_factory.mktemp("ckpt") / "ckpt_base.pth.tar"
    torch.save({"generator": fill_state_dict(base_manifest["generator"]),
                "discriminator": fill_state_dict(base_manifest["discriminator"]), "epoch": 0}, path)
    return path


def fixture_inputs(fx) -> GeneratorInputs:
    scheme = get_scheme("dense669")
    t = torch.from_numpy
    subsets = np.stack([normalized_subset(p, scheme) for p in fx["driving_ldmk_669"]])
    return GeneratorInputs(
        source=t(fx["source"]), identity=t(fx["source_id"]),
        source_line=t(fx["source_line_u8"]).permute(0, 3, 1, 2).float() / 255,
        driving_line=t(fx["driving_line_u8"]).permute(0, 3, 1, 2).float() / 255,
        driving_subset=t(subsets), mouth_mask=t(fx["mouth_mask"]))


@pytest.fixture(scope="session")
def official_outputs(official_ckpt_file, base_fixture):
    cfg = load_config(FULL_CONFIG)
    model = load_generator(official_ckpt_file, cfg).model.eval()
    with torch.inference_mode():
        out = model(fixture_inputs(base_fixture), stage="full")
    return model, out


