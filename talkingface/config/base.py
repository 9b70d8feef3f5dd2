"""The YAML schema of the official MetaPortrait configs, as typed dataclasses.

Field names are the official YAML keys (so official files parse unchanged); the
mapping to our clearer model names happens once, in `talkingface.models.build`.
Keys marked "extension" are ours; their defaults are the values the reference
hard-codes, so leaving them out gives the official model.

`load_config(path)` parses a file once, at the edge: unknown keys and values of the
wrong type are errors that name the file and the key (the rules: talkingface.config.convert,
shared with the super-resolution schema in talkingface.config.sr).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from talkingface.config.convert import build, convert, parse_mapping, read_yaml
from talkingface.errors import ConfigError


@dataclass
class GeneralConfig:
    exp_name: str = "meta_portrait_base"  # names the checkpoint folder: saved/ckpt_<stage>/<exp_name>
    random_seed: int = 365


@dataclass
class DataRootConfig:
    """One named dataset block (e.g. `personalized`, `meta`) under `dataset`."""

    root: str = "dataset/meta_portrait_base_data"
    crop_expand: float = 1.3  # preprocessing: face box enlargement
    crop_offset_y: float = 0.2  # preprocessing: box shift down, in box heights
    static_bbox: bool = True  # preprocessing: one box per video (from the first good frame)


@dataclass
class DatasetConfig:
    frame_shape: list[int] = field(default_factory=lambda: [256, 256, 3])  # H, W, C the model runs at
    eye_enhance: bool = False  # build eye masks (eye loss)
    mouth_enhance: bool = False  # build mouth masks (mouth loss, mouth line input)
    ldmkimg: bool = True  # line images as inputs (the model needs them)
    ldmk_idx: list[int] | None = None  # the 58-point subset; default: the landmark scheme's
    train_data: list[str] = field(default_factory=lambda: ["personalized"])  # names of the blocks below
    train_data_weight: list[float] = field(default_factory=lambda: [1.0])  # read by the reference; one dataset is used
    use_ukt: bool = False  # reference option (gaze averaging); only when eye_enhance is off
    ldmk_jitter: bool = False  # training augmentation: jitter driving landmarks
    jitter_sigma: float = 5.0  # pixels
    focal_loss: float = 0.0  # reference option: weight map over the face box instead of eye masks
    num_mask_classes: int = 11  # read by the reference; unused without masks
    # Meta-learning (Reptile) task sampling; read from this section by the reference.
    num_classes_per_set: int = 1  # identities per task
    num_support_samples: int = 1  # support (driving) frames per identity
    num_target_samples: int = 1  # target frames per identity
    shot: int = 1  # source frames per identity (the reference always uses 1)
    N_ldmk: int = 0  # read by the reference; unused
    ngpus: int = 1  # multiplies support/target counts in the reference (always forced to 1 there)
    meta_batch_size: int = 0  # support frames per inner step; 0 = all of them
    inner_update_steps: int = 2  # inner Adam steps per task
    blocks: dict[str, DataRootConfig] = field(default_factory=dict)  # the named blocks listed in train_data

    @staticmethod
    def config_extra(kwargs: dict[str, Any], extra: dict[str, tuple[str, Any]]) -> None:
        """The named dataset blocks (`personalized: {root: ...}`): keys listed in train_data, or mappings."""
        listed = kwargs.get("train_data", DatasetConfig().train_data)
        blocks = {}
        for key in list(extra):
            path, value = extra[key]
            if key in listed or isinstance(value, dict):
                blocks[key] = convert(value, DataRootConfig, path)
                del extra[key]
        kwargs["blocks"] = blocks

    def data_block(self) -> DataRootConfig:
        """The first training dataset's block (the one inference and training read)."""
        name = self.train_data[0] if self.train_data else "personalized"
        return self.blocks.get(name, DataRootConfig())


@dataclass
class CommonConfig:
    num_channels: int = 3


@dataclass
class KeypointDetectorConfig:
    """Read by the reference but unused by MetaPortrait (a first-order-motion leftover)."""

    temperature: float = 0.1
    block_expansion: int = 32
    max_features: int = 1024
    scale_factor: float = 0.25
    num_blocks: int = 5


@dataclass
class LadderConfig:
    need_feat: bool = False  # extra feature outputs the generator never uses; must be false
    use_mask: bool = False
    label_nc: int = 0  # extra label channels; must be 0 (no label maps exist)
    z_dim: int = 512  # motion code size
    input_size: int = 256  # extension: the encoder resizes its input to this
    base_channels: int = 64  # extension: width of the first conv (doubles up to 8x)
    num_layers: int = 6  # extension: stride-2 convs (input_size / 2**num_layers must be >= 1)


@dataclass
class DenseMotionConfig:
    block_expansion: int = 64
    num_blocks: int = 5
    max_features: int = 1024
    Lwarp: bool = False  # an extra same-resolution block at each level
    AdaINc: int = 0  # AdaIN conditioning size (the motion code); must equal ladder.z_dim
    dec_lease: int = 0  # decoder levels skipped (2: flow at 1/4 resolution)
    label_nc: int = 0  # must be 0
    ldmkimg: bool = False  # line images are inputs (must be true: the generator always passes them)
    occlusion: bool = False  # predict an occlusion map (must be true for the full stage)


@dataclass
class GeneratorConfig:
    block_expansion: int = 64  # source feature encoder width
    max_features: int = 512
    with_gaze_htmap: bool = False
    with_ldmk_line: bool = False
    with_mouth_line: bool = False
    with_warp_im: bool = False  # read by the reference; unused
    with_ht: bool = False  # dense landmark heatmaps; not supported (must be false)
    use_IN: bool = False  # instance norm in the feature encoder and SPADE (else batch norm)
    use_SN: bool = True  # spectral norm in the ladder and SPADE convs
    ladder: LadderConfig = field(default_factory=LadderConfig)
    dense_motion_params: DenseMotionConfig = field(default_factory=DenseMotionConfig)
    class_dim: int = 256  # extension: identity embedding size (official 256; dlib 128)
    conv_dim: int = 32  # extension: SPADE decoder width unit (widest block 16x)
    spade_start_size: int = 4  # extension: decoder starts at this size
    spade_num_blocks: int = 7  # extension: SPADE res blocks (start * 2**(n-1) = image size)
    spade_hidden: int = 128  # extension: width of each SPADE's shared conv
    feature_num_blocks: int = 3  # extension: source feature encoder depth


@dataclass
class DiscriminatorConfig:
    type: str = "MultiPatchGan"
    scales: list[float] = field(default_factory=lambda: [1.0])
    block_expansion: int = 64
    max_features: int = 512
    num_blocks: int = 4
    use_kp: bool = False  # keypoint heatmaps as input; not supported (must be false)
    sn: bool = False
    num_kp: int = 10
    kp_variance: float = 0.01
    AdaINc: int = 0  # expression head; not supported (must be 0)


@dataclass
class ModelConfig:
    arch: str = "SPADEID"
    warp_ckpt: str | None = None  # full stage: warp-stage checkpoint whose warp keys initialise the generator
    landmark_scheme: str = "dense669"  # extension: dense669 (official) or mediapipe478
    common: CommonConfig = field(default_factory=CommonConfig)
    kp_detector: KeypointDetectorConfig = field(default_factory=KeypointDetectorConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)


@dataclass
class LossWeights:
    generator_gan: float = 1.0
    discriminator_gan: float = 1.0
    feature_matching: list[float] = field(default_factory=lambda: [10.0, 10.0, 10.0, 10.0])
    perceptual: list[float] = field(default_factory=lambda: [10.0, 10.0, 10.0, 10.0, 10.0])
    id: float = 0.0  # identity loss; needs an identity network file (train.id_network)
    eye_enhance: float = 0.0
    mouth_enhance: float = 0.0
    l1: float = 0.0  # L1 on the prediction; extension: also on the warp stage's deformed image
    warp_ce: float = 0.0  # read by the reference; unused
    D_exp: float = 0.0  # read by the reference; unused


@dataclass
class TrainConfig:
    epochs: int = 60
    batch_size: int = 48  # global batch (split across ranks); meta: 0 = one task per step
    dataset_repeats: int = 1
    epoch_milestones: list[int] = field(default_factory=lambda: [45])  # MultiStepLR x0.1 at these epochs
    lr_generator: float = 2.0e-4
    lr_discriminator: float = 2.0e-4
    lr_kp_detector: float = 2.0e-4  # read by the reference; unused
    warplr_tune: float = 0.1  # lr factor of the warp part (ladder + dense motion)
    scales: list[float] = field(default_factory=lambda: [1, 0.5, 0.25, 0.125])  # perceptual pyramid
    loss_weights: LossWeights = field(default_factory=LossWeights)
    # Meta-learning (Reptile)
    outer_beta_1: float = 0.5
    outer_beta_2: float = 0.999
    inner_lr_generator: float = 2.0e-4
    inner_lr_discriminator: float = 2.0e-4
    inner_warplr_tune: float = 0.1
    inner_beta_1: float = 0.5
    inner_beta_2: float = 0.999
    # Logging and checkpoints
    tensorboard: bool = True
    event_save_path: str = "./results/events/"
    event_save_freq: int = 500
    ckpt_save_path: str = "./results/ckpt/"
    ckpt_save_iter_freq: int = 5000
    ckpt_save_freq: int = 1
    print_freq: int = 1000
    eval_freq: int = 10000
    use_mask: bool = False  # read by older reference versions; unused
    num_mask_classes: int = 11  # read by older reference versions; unused
    id_network: str | None = None  # extension: identity network file enabling the identity loss


@dataclass
class Config:
    general: GeneralConfig = field(default_factory=GeneralConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def resolution(self) -> tuple[int, int]:
        h, w = self.dataset.frame_shape[:2]
        return int(h), int(w)

    def to_dict(self) -> dict[str, Any]:
        """Back to the YAML layout (named dataset blocks inlined)."""
        out = dataclasses.asdict(self)
        blocks = out["dataset"].pop("blocks")
        out["dataset"].update(blocks)
        return out


# --------------------------------------------------------------------------- parsing
def _parse(data: dict) -> Config:
    cfg = build(Config, data, "")
    motion = ((data.get("model") or {}).get("generator") or {}).get("dense_motion_params")
    if cfg.model.generator.dense_motion_params.dec_lease < 1 and "dec_lease" not in (motion or {}):
        # the one key without a usable default: its absence means a config cut short or not a model config
        raise ConfigError("model.generator.dense_motion_params.dec_lease is missing (is the file cut short, or "
                          "not a model config?)")
    validate(cfg)
    return cfg


def parse_config(data: dict | None, source: str = "<config>") -> Config:
    return parse_mapping(data, source, _parse)


def load_config(path: str | Path) -> Config:
    return parse_config(read_yaml(path), str(Path(path)))


def validate(cfg: Config) -> None:
    """Reject values the model cannot honour, with the key named."""
    g = cfg.model.generator
    if len(cfg.dataset.frame_shape) not in (2, 3):
        raise ConfigError("dataset.frame_shape must be [H, W] or [H, W, 3]")
    h, w = cfg.resolution
    if h != w:
        raise ConfigError("dataset.frame_shape: only square frames are supported")
    if g.ladder.need_feat:
        raise ConfigError("model.generator.ladder.need_feat: true adds layers whose output is never used; set false")
    if g.ladder.label_nc or g.dense_motion_params.label_nc:
        raise ConfigError("model.generator: label_nc must be 0 (no label maps exist)")
    if g.with_ht:
        raise ConfigError("model.generator.with_ht: dense heatmap inputs are not supported; set false")
    if g.dense_motion_params.AdaINc not in (0, g.ladder.z_dim):
        raise ConfigError("model.generator.dense_motion_params.AdaINc must equal ladder.z_dim")
    if g.dense_motion_params.dec_lease < 1:
        raise ConfigError("model.generator.dense_motion_params.dec_lease must be at least 1 (the flow and "
                          "occlusion heads exist only then)")
    if not g.dense_motion_params.occlusion:
        raise ConfigError("model.generator.dense_motion_params.occlusion must be true (refinement uses it)")
    if not cfg.dataset.ldmkimg or not g.dense_motion_params.ldmkimg:
        raise ConfigError("dataset.ldmkimg and dense_motion_params.ldmkimg must be true (line images are inputs)")
    if g.ladder.input_size // 2 ** g.ladder.num_layers < 1:
        raise ConfigError("model.generator.ladder: input_size / 2**num_layers must be at least 1")
    if g.spade_start_size * 2 ** (g.spade_num_blocks - 1) != h:
        raise ConfigError(f"model.generator: spade_start_size * 2**(spade_num_blocks-1) must equal the frame size {h}")
    if h % 2 ** g.feature_num_blocks or h % 2 ** g.dense_motion_params.num_blocks:
        raise ConfigError(f"dataset.frame_shape: {h} must be divisible by 2**num_blocks of each hourglass")
    d = cfg.model.discriminator
    if d.use_kp or d.AdaINc:
        raise ConfigError("model.discriminator: use_kp and AdaINc are not supported; set false / 0")
    if not {float(x) for x in d.scales} <= {float(x) for x in cfg.train.scales}:
        raise ConfigError("model.discriminator.scales must be a subset of train.scales")
    if cfg.dataset.ldmk_idx is not None and len(cfg.dataset.ldmk_idx) != 58:
        raise ConfigError("dataset.ldmk_idx must list 58 indices")
    if cfg.dataset.use_ukt and not cfg.dataset.eye_enhance:
        raise ConfigError("dataset.use_ukt (averaged gaze points) is not supported; set false")
