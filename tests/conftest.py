"""Shared test fixtures: the parity fixtures in ../shared and tiny configs."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CONFIG_DIR = REPO / "talkingface" / "properties" / "model" / "meta_portrait_base_config"
EVAL_CONFIG = CONFIG_DIR / "meta_portrait_256_eval.yaml"
FULL_CONFIG = CONFIG_DIR / "meta_portrait_256_pretrain_full.yaml"


def require_shared(*parts: str) -> Path:
    """Path under ../shared; a missing file fails under CI=true and skips elsewhere."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        msg = f"{path} is missing (the parity fixtures live in ../shared beside the repo)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
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
