"""Config schema: official YAMLs parse unchanged; errors name the file and key."""
from __future__ import annotations

import re

import pytest
import yaml

from talkingface.config import Config, load_config, parse_config
from talkingface.errors import ConfigError

from conftest import CONFIG_DIR

EXTENSION_KEYS = ("landmark_scheme", "class_dim")


def strip_extensions(text: str) -> str:
    """The shipped YAML minus our extension keys and comments: what the official files hold."""
    lines = [re.sub(r"\s*#.*$", "", ln) for ln in text.splitlines()]
    return "\n".join(ln for ln in lines if ln.strip() and ln.strip().split(":")[0] not in EXTENSION_KEYS)


@pytest.mark.parametrize("name", ["meta_portrait_256_eval", "meta_portrait_256_pretrain_warp",
                                  "meta_portrait_256_pretrain_full", "meta_portrait_256_meta_train"])
def test_official_files_parse_and_defaults_are_official(name, tmp_path):
    shipped = load_config(CONFIG_DIR / f"{name}.yaml")
    official = tmp_path / "official.yaml"
    text = strip_extensions((CONFIG_DIR / f"{name}.yaml").read_text())
    official.write_text(text.replace("dataset/meta_portrait_base_data", "../data/"))
    parsed = load_config(official)
    assert parsed.model == shipped.model  # extension defaults = the official architecture
    assert parsed.dataset.data_block().root == "../data/"
    assert shipped.dataset.data_block().root == "dataset/meta_portrait_base_data"


def test_meta_config_values():
    cfg = load_config(CONFIG_DIR / "meta_portrait_256_meta_train.yaml")
    assert cfg.train.loss_weights.generator_gan == 0
    assert cfg.dataset.inner_update_steps == 2 and cfg.dataset.meta_batch_size == 0 and cfg.train.lr_generator == pytest.approx(2e-5)
    assert cfg.dataset.train_data == ["meta"] and "meta" in cfg.dataset.blocks


def test_unknown_key_names_path():
    with pytest.raises(ConfigError, match=r"model\.generator\.ladder\.zdim"):
        parse_config({"model": {"generator": {"ladder": {"zdim": 3}}}})


def test_wrong_type_names_key():
    with pytest.raises(ConfigError, match=r"train\.epochs.*integer"):
        parse_config({"train": {"epochs": "ten"}})
    with pytest.raises(ConfigError, match=r"dataset\.eye_enhance.*true/false"):
        parse_config({"dataset": {"eye_enhance": "yes"}})


def test_impossible_architecture_is_rejected():
    data = yaml.safe_load((CONFIG_DIR / "meta_portrait_256_eval.yaml").read_text())
    data["dataset"]["frame_shape"] = [128, 128, 3]  # the 7-block SPADE decoder renders 256
    with pytest.raises(ConfigError, match="spade_num_blocks"):
        parse_config(data)
    data["dataset"]["frame_shape"] = [256, 256, 3]
    data["model"]["generator"]["dense_motion_params"]["occlusion"] = False
    with pytest.raises(ConfigError, match="occlusion"):
        parse_config(data)


def test_invalid_yaml_names_file(tmp_path):
    bad = tmp_path / "x.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    assert "x.yaml" in str(e.value) and "YAML" in str(e.value)


def test_round_trip_to_dict():
    cfg = load_config(CONFIG_DIR / "meta_portrait_64_tiny.yaml")
    again = parse_config(yaml.safe_load(yaml.safe_dump(cfg.to_dict())))
    assert again == cfg and isinstance(again, Config)
