"""The conda files: environment.yml (the source) and the seed's talkingface/environment_for_metaportrait.yml,
generated from it by scripts/sync_conda_env.py. Both parse, agree, and install this checkout."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

from helpers import REPO

SOURCE = REPO / "environment.yml"
SEED_FILE = REPO / "talkingface" / "environment_for_metaportrait.yml"


def _sync_script():
    spec = importlib.util.spec_from_file_location("sync_conda_env", REPO / "scripts" / "sync_conda_env.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _editable_target(env_file: Path) -> Path:
    """The folder the pip section installs: conda runs pip from the environment file's folder."""
    env = yaml.safe_load(env_file.read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    (editable,) = [p for p in pip if p.startswith("-e ")]
    return (env_file.parent / editable[3:].split("[")[0]).resolve()


def test_the_seed_file_is_generated_from_environment_yml():
    assert SEED_FILE.read_text() == _sync_script().render(SOURCE.read_text())


def test_both_parse_agree_and_install_this_checkout():
    source, seed = yaml.safe_load(SOURCE.read_text()), yaml.safe_load(SEED_FILE.read_text())
    for env in (source, seed):
        assert env["name"] == "talkingface" and "python=3.11" in env["dependencies"]
    assert {k: v for k, v in seed.items() if k != "dependencies"} == {k: v for k, v in source.items()
                                                                      if k != "dependencies"}
    assert [d for d in seed["dependencies"] if not isinstance(d, dict)] == \
        [d for d in source["dependencies"] if not isinstance(d, dict)]
    assert _editable_target(SOURCE) == _editable_target(SEED_FILE) == REPO.resolve()
    assert (REPO / "pyproject.toml").is_file()
