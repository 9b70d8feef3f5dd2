"""Run folders you can trace: one folder per run, options.json beside config.yaml."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from talkingface.errors import TalkingFaceError
from talkingface.recipes.train import TrainOptions, run_training
from talkingface.training.runs import next_numbered, run_folder, write_run_record

from helpers import TINY_CONFIG, make_tiny_dataset


def test_an_empty_or_missing_folder_is_used_as_it_is(tmp_path):
    assert run_folder(tmp_path / "new", explicit=True, resume=None) == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    assert run_folder(tmp_path / "empty", explicit=True, resume=None) == tmp_path / "empty"


def test_a_non_empty_folder_is_resumed_numbered_or_refused(tmp_path, capsys):
    used = tmp_path / "saved" / "ckpt_warp" / "exp"
    used.mkdir(parents=True)
    (used / "config.yaml").write_text("x: 1\n")
    assert run_folder(used, explicit=True, resume="auto") == used  # resuming it
    assert run_folder(used, explicit=False, resume=None) == used.with_name("exp-1")  # the seed's default: a new one
    assert "exp-1" in capsys.readouterr().out
    with pytest.raises(TalkingFaceError, match="another run's files.*--resume auto"):
        run_folder(used, explicit=True, resume=None)  # a folder given with --out-dir
    (used.with_name("exp-1")).mkdir()
    (used.with_name("exp-1") / "events").mkdir()
    assert next_numbered(used) == used.with_name("exp-2")


@dataclass
class _Options:
    config: str
    out_dir: Path | None = None
    steps: int = 3


def test_the_record_holds_options_data_and_version_and_resumes_add_to_it(tmp_path):
    write_run_record(tmp_path, {"a": 1}, _Options("c.yaml", tmp_path / "o"), tmp_path / "data")
    record = json.loads((tmp_path / "options.json").read_text())
    assert record["options"] == {"config": "c.yaml", "out_dir": str(tmp_path / "o"), "steps": 3}
    assert record["data"] == str((tmp_path / "data").resolve())
    assert record["talkingface_version"] and "git_commit" in record and record["resumed_from"] is None
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == {"a": 1}
    write_run_record(tmp_path, {"a": 2}, _Options("c.yaml", steps=5), tmp_path / "data", resumed_from="ckpt_1_3")
    record = json.loads((tmp_path / "options.json").read_text())
    assert record["options"]["steps"] == 3 and record["resumes"][0]["options"]["steps"] == 5
    assert record["resumes"][0]["resumed_from"] == "ckpt_1_3"
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == {"a": 1}  # the run's own config stays


def test_training_records_its_run_and_refuses_to_write_over_it(tmp_path):
    data = make_tiny_dataset(tmp_path / "data", frames_per_identity=(2, 2))
    out = tmp_path / "run"
    opts = TrainOptions(config=str(TINY_CONFIG), data_root=str(data), out_dir=str(out), stage="warp", random_vgg=True,
                        batch_size=2, max_steps=1, ckpt_every=1000)
    run_training(opts)
    record = json.loads((out / "options.json").read_text())
    assert record["options"]["stage"] == "warp" and record["data"] == str(data.resolve())
    assert (out / "config.yaml").is_file()
    with pytest.raises(TalkingFaceError, match="another run's files"):
        run_training(opts)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "run"]
