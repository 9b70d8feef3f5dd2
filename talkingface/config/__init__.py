"""Config schemas and their one parser.

- `talkingface.config.base` (re-exported here): the official MetaPortrait YAML schema
  (`Config`, `load_config`, `parse_config`);
- `talkingface.config.sr`: the temporal super-resolution (BasicSR-style) schema
  (`SRConfig`, `load_sr_config`);
- `talkingface.config.convert`: the converter, type rules and YAML loader both use.
"""
from talkingface.config.base import (
    CommonConfig,
    Config,
    DataRootConfig,
    DatasetConfig,
    DenseMotionConfig,
    DiscriminatorConfig,
    GeneralConfig,
    GeneratorConfig,
    KeypointDetectorConfig,
    LadderConfig,
    LossWeights,
    ModelConfig,
    TrainConfig,
    load_config,
    parse_config,
    validate,
)

__all__ = ["CommonConfig", "Config", "DataRootConfig", "DatasetConfig", "DenseMotionConfig", "DiscriminatorConfig",
           "GeneralConfig", "GeneratorConfig", "KeypointDetectorConfig", "LadderConfig", "LossWeights", "ModelConfig",
           "TrainConfig", "load_config", "parse_config", "validate"]
