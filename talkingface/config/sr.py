"""The YAML schema of the temporal super-resolution configs, as typed dataclasses.

The layout and key names are those of the reference's BasicSR option files
(`sr_model/options/train/train_sr_hdtf.yml`, `options/test/same_id.yml`), so those
files parse unchanged. Defaults are the reference's training values. Keys the
reference reads but that change nothing here (GPU count, I/O backend, wandb, ...)
are accepted and marked "reference option; unused"; keys marked "extension" are ours.

`load_sr_config(path)` parses a file once, at the edge: unknown keys and values of the
wrong type are errors naming the file and the key. The converter and loader are the base
config's (`talkingface.config.convert`): one set of type rules, errors reported the same way.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from talkingface.config.convert import build, convert, parse_mapping, read_yaml
from talkingface.errors import ConfigError
from talkingface.losses.vgg import VGG19_LAYER_NAMES
from talkingface.models.temporal_sr import LOAD_PATH_OPTIONS, OFFICIAL_ARCH_NAME, TemporalSRConfig

MODEL_TYPE = "MetaportraitVideoRecurrentModel"
TRAIN_DATASET_TYPE = "HDTFRecurrentDataset"
VAL_DATASET_TYPE = "MetaportraitVideoRecurrentTestDataset"
SCHEDULER_TYPE = "CosineAnnealingRestartLR"
# val.metrics types (the reference's BasicSR metric names) -> what they compute here
METRIC_TYPES = {"calculate_psnr": "psnr", "calculate_ssim": "ssim", "calculate_lpips": "lpips",
                "calculate_temp_warping_error": "warp_error"}
CRITERIA = ("l1", "l2", "fro")

# Per-layer perceptual weights: one float per VGG19 layer name (0 = unused). Pre-activation
# `convX_Y` is what the reference weights; `reluX_Y`/`poolX` are accepted as BasicSR accepts them.
VGGLayerWeights = dataclasses.make_dataclass(
    "VGGLayerWeights", [(name, float, field(default=0.0)) for name in VGG19_LAYER_NAMES])
OFFICIAL_LAYER_WEIGHTS = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}


def active_layers(weights) -> dict[str, float]:
    """The layers with a non-zero weight, in network order."""
    return {n: getattr(weights, n) for n in VGG19_LAYER_NAMES if getattr(weights, n)}


# --------------------------------------------------------------------------- datasets
@dataclass
class IOBackendConfig:
    type: str = "disk"  # only plain files are supported


@dataclass
class ClipFolders:
    """Where a clip set's frames are: <root>/<clip>/<prefix>/<frame>.png (no prefix: <root>/<clip>/<frame>.png).

    `talkingface make-sr-data` writes root/<clip>/lq and root/<clip>/gt: both roots the
    same folder, prefixes lq and gt.
    """

    dataroot_lq: str | None = None  # required (or --data)
    dataroot_gt: str | None = None  # None: no ground truth (enhance and test only, no metrics)
    lq_prefix: str | None = None
    gt_prefix: str | None = None
    lq_temp: str | None = None  # reference glob of the frame folders ("*/final"): read as lq_prefix
    gt_temp: str | None = None
    io_backend: IOBackendConfig = field(default_factory=IOBackendConfig)

    def prefixes(self, where: str) -> tuple[str | None, str | None]:
        """(lq_prefix, gt_prefix) with the reference's glob spelling folded in."""
        return (_prefix(self.lq_prefix, self.lq_temp, f"{where}.lq_temp"),
                _prefix(self.gt_prefix, self.gt_temp, f"{where}.gt_temp"))


_GLOB = re.compile(r"^/?\*(?:/(?P<prefix>[^/*?\[\]]+))?(?:/\*(?:\.png)?)?$")


def _prefix(prefix: str | None, glob: str | None, where: str) -> str | None:
    if glob is None:
        return prefix
    m = _GLOB.match(glob)
    if not m:
        raise ConfigError(f"{where}: only globs of the form '*/NAME' or '/*/NAME/*.png' are supported, got {glob!r}")
    if prefix is not None and prefix != m["prefix"]:
        raise ConfigError(f"{where}: {glob!r} contradicts the prefix {prefix!r}")
    return m["prefix"]


@dataclass
class TrainDataConfig(ClipFolders):
    name: str = "train"
    type: str = TRAIN_DATASET_TYPE
    test_mode: bool = False  # reference option; unused
    num_frame: int = 6  # frames per training clip
    gt_size: int = 512  # ground-truth side; must be the network's out_size (whole faces, no crops)
    interval_list: list[int] = field(default_factory=lambda: [1])  # frame strides, one drawn per clip
    random_reverse: bool = False  # play a clip backwards half the time
    use_hflip: bool = True  # flip a whole clip (LQ and GT alike) half the time
    use_rot: bool = False  # not supported: faces are upright
    use_shuffle: bool = True
    num_worker_per_gpu: int = 6
    batch_size_per_gpu: int = 1  # clips per process and step (the reference network takes 1)
    dataset_enlarge_ratio: int = 1  # one epoch visits every frame this many times (reference: 200)
    prefetch_mode: str | None = None  # reference option; unused


@dataclass
class ValDataConfig(ClipFolders):
    name: str = "val"
    type: str = VAL_DATASET_TYPE
    cache_data: bool = False  # reference option; unused (frames stream from disk)
    num_frame: int = -1  # reference option; unused
    val_first_frame: int | None = None  # validate on the first N frames of each clip; None: all
    clean_hdtf_folder: bool = False  # reference option; unused
    max_clips: int | None = None  # extension: validate on the first N clips only


@dataclass
class DatasetsConfig:
    train: TrainDataConfig | None = None
    val: ValDataConfig | None = None


# --------------------------------------------------------------------------- training
@dataclass
class PathConfig:
    pretrain_network_g: str | None = None  # start from (test: run) this temporal SR checkpoint
    param_key_g: str | None = None  # params or params_ema; None: params_ema when present (BasicSR: params)
    strict_load_g: bool = True  # reference option; loads here are always strict
    resume_state: str | None = None  # resume from this training checkpoint ("auto": the newest in the run folder)


@dataclass
class OptimConfig:
    type: str = "Adam"
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])


@dataclass
class SchedulerConfig:
    """Cosine from lr to eta_min over each period, restarting at restart_weight * lr."""

    type: str = SCHEDULER_TYPE
    periods: list[int] = field(default_factory=lambda: [300000])
    restart_weights: list[float] = field(default_factory=lambda: [1.0])
    eta_min: float = 1e-7


@dataclass
class PixelLossConfig:
    type: str = "L1Loss"
    loss_weight: float = 0.1
    reduction: str = "mean"


@dataclass
class PerceptualLossConfig:
    """VGG19 feature (L1) and Gram-matrix style losses, BasicSR's PerceptualLoss."""

    type: str = "PerceptualLoss"
    layer_weights: VGGLayerWeights = field(  # type: ignore[valid-type]
        default_factory=lambda: VGGLayerWeights(**OFFICIAL_LAYER_WEIGHTS))
    vgg_type: str = "vgg19"
    use_input_norm: bool = True  # ImageNet mean/std before VGG
    perceptual_weight: float = 1.0
    style_weight: float = 50.0
    # The reference sets range_norm (x -> (x + 1) / 2, meant for -1..1 images) although its
    # network outputs 0..1, so VGG sees 0.5..1. Kept true to reproduce its training exactly;
    # false feeds VGG the 0..1 images as they are.
    range_norm: bool = True
    criterion: str = "l1"  # l1, l2 (mean squared) or fro (Frobenius norm)


@dataclass
class TrainConfig:
    ema_decay: float = 0.999  # 0: no EMA weights
    optim_g: OptimConfig = field(default_factory=OptimConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    total_iter: int = 300000
    warmup_iter: int = -1  # linear warm-up iterations (-1: none)
    opt_rm_param: list[str] = field(default_factory=lambda: ["stylegan_decoder"])  # never trained (name contains)
    requires_grad_all_iter: int | None = None  # reference option; no effect (nothing else starts frozen)
    fix_flow: int | None = None  # reference option for optical-flow networks; unused
    flow_lr_mul: float = 1.0  # reference option for optical-flow networks; unused
    recurrent_lr_mul: float = 1.0  # lr factor of the decoder-side temporal blocks (recurrent_forward.*)
    pixel_opt: PixelLossConfig | None = field(default_factory=PixelLossConfig)
    perceptual_opt: PerceptualLossConfig | None = field(default_factory=PerceptualLossConfig)
    vgg19_weights: str | None = None  # extension: VGG19 ImageNet weights (torchvision layout)


# --------------------------------------------------------------------------- validation, logging
@dataclass
class MetricConfig:
    type: str = "calculate_psnr"  # calculate_psnr | calculate_ssim | calculate_lpips | calculate_temp_warping_error
    crop_border: int = 0  # pixels left out at each border
    test_y_channel: bool = False  # not supported (RGB only)
    better: str = "higher"  # reference option; unused
    frame_limit: int | None = None  # temporal metric: the first N frames only
    strict_shape: bool = True  # reference option; unused


@dataclass
class ValConfig:
    val_freq: float = 500  # iterations between validations (the reference writes !!float 5e2)
    save_img: bool = True  # write the validation outputs under <run>/visualization/<iter>/
    save_input: bool = True  # reference option; unused
    temp_psz: int = 16  # new frames per forward pass
    # extension: overlap = windows with enough context to equal a whole-clip pass;
    # reference = independent temp_psz-frame chunks, as the reference validates
    chunking: str = "overlap"
    metrics: dict[str, MetricConfig] = field(default_factory=dict)  # parsed separately (free-form names)


@dataclass
class WandbConfig:
    project: str | None = None  # not supported (TensorBoard only)
    resume_id: str | None = None


@dataclass
class LoggerConfig:
    print_freq: int = 10  # iterations between logged scalars
    print_module_para: list[str] = field(default_factory=list)  # reference option; unused
    save_checkpoint_freq: float = 500  # iterations between checkpoints
    use_tb_logger: bool = True
    wandb: WandbConfig | None = None
    image_freq: int = 500  # extension: iterations between TensorBoard image grids


@dataclass
class DistParamsConfig:
    """Reference options; unused: torchrun sets up the process group (NCCL on GPU, gloo on CPU)."""

    backend: str = "nccl"
    port: int = 29500


@dataclass
class SRConfig:
    name: str = "temporal_sr"  # names the run folder: saved/ckpt_sr/<name>
    model_type: str = MODEL_TYPE
    scale: int = 2
    manual_seed: int = 0
    datasets: DatasetsConfig = field(default_factory=DatasetsConfig)
    path: PathConfig = field(default_factory=PathConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    val: ValConfig | None = None
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    dist_params: DistParamsConfig = field(default_factory=DistParamsConfig)
    find_unused_parameters: bool = False  # reference option; unused (unused layers are frozen here)
    # From the `network_g` block (parsed by TemporalSRConfig.from_dict):
    network_g: TemporalSRConfig = field(default_factory=TemporalSRConfig)
    gfpgan_init: str | None = None  # network_g.GFPGANv1_load_path: GFPGANv1.3 weights to start from
    decoder_init: str | None = None  # network_g.decoder_load_path: StyleGAN2 decoder weights to start from

    def to_dict(self) -> dict[str, Any]:
        """Back to the YAML layout."""
        out = dataclasses.asdict(dataclasses.replace(self, network_g=TemporalSRConfig()))
        for key in ("network_g", "gfpgan_init", "decoder_init"):
            out.pop(key)
        net = {"type": OFFICIAL_ARCH_NAME, **self.network_g.to_dict()}
        if self.gfpgan_init:
            net["GFPGANv1_load_path"] = self.gfpgan_init
        if self.decoder_init:
            net["decoder_load_path"] = self.decoder_init
        out = {**{k: out.pop(k) for k in ("name", "model_type", "scale", "manual_seed", "datasets")},
               "network_g": net, **out}
        perceptual = out["train"]["perceptual_opt"]
        if perceptual is not None:
            perceptual["layer_weights"] = active_layers(self.train.perceptual_opt.layer_weights)
        return out


# --------------------------------------------------------------------------- parsing
_IGNORED_TOP = ("num_gpu",)  # reference option; any value (an int or 'auto'); the world size is torchrun's
_PARSED_APART = ("network_g", "gfpgan_init", "decoder_init")


def _pop_metrics(data: dict) -> tuple[dict, dict[str, MetricConfig]]:
    """Take `val.metrics` (free-form names) out of the tree and parse it on its own."""
    val = data.get("val")
    if not isinstance(val, dict) or "metrics" not in val:
        return data, {}
    val = dict(val)
    raw = val.pop("metrics")
    data = {**data, "val": val}
    if raw is None or raw == "None":  # the reference writes `metrics: None` for "no metrics"
        return data, {}
    if not isinstance(raw, dict):
        raise ConfigError(f"val.metrics: expected a mapping of name -> metric options, got {raw!r}")
    metrics = {}
    for name, options in raw.items():
        where = f"val.metrics.{name}"
        metrics[str(name)] = convert(options if options is not None else {}, MetricConfig, where)
    return data, metrics


def _parse(data: dict) -> SRConfig:
    for key in _PARSED_APART[1:]:
        if key in data:
            raise ConfigError(f"unknown key '{key}' (GFPGANv1_load_path / decoder_load_path go in network_g)")
    data = {k: v for k, v in data.items() if k not in _IGNORED_TOP}
    network = data.pop("network_g", None) or {}
    if not isinstance(network, dict):
        raise ConfigError("network_g: expected a mapping")
    data, metrics = _pop_metrics(data)
    cfg = build(SRConfig, data, "")
    if cfg.val is not None:
        cfg.val.metrics = metrics
    elif metrics:
        raise ConfigError("val.metrics given without a val section")
    cfg.network_g = TemporalSRConfig.from_dict(network, source="network_g")
    cfg.gfpgan_init = _path_option(network, "GFPGANv1_load_path")
    cfg.decoder_init = _path_option(network, "decoder_load_path")
    validate_sr_config(cfg)
    return cfg


def parse_sr_config(data: dict | None, source: str = "<config>") -> SRConfig:
    return parse_mapping(data, source, _parse)


def _path_option(network: dict, key: str) -> str | None:
    assert key in LOAD_PATH_OPTIONS
    value = network.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"network_g.{key}: expected a path, got {value!r}")
    return value or None


def load_sr_config(path: str | Path) -> SRConfig:
    return parse_sr_config(read_yaml(path), str(Path(path)))


def validate_sr_config(cfg: SRConfig) -> None:
    """Reject values this implementation cannot honour, with the key named."""
    if cfg.model_type != MODEL_TYPE:
        raise ConfigError(f"model_type: only {MODEL_TYPE} (the temporal GFPGAN) is supported, got {cfg.model_type!r}")
    if cfg.scale != 2:
        raise ConfigError(f"scale: the network upscales x2; got {cfg.scale}")
    t = cfg.train
    if t.total_iter < 1:
        raise ConfigError("train.total_iter must be at least 1")
    if not 0 <= t.ema_decay < 1:
        raise ConfigError(f"train.ema_decay must be in [0, 1), got {t.ema_decay}")
    if t.optim_g.type != "Adam":
        raise ConfigError(f"train.optim_g.type: only Adam is supported, got {t.optim_g.type!r}")
    if len(t.optim_g.betas) != 2 or t.optim_g.lr <= 0:
        raise ConfigError("train.optim_g: betas must be two numbers and lr positive")
    s = t.scheduler
    if s.type != SCHEDULER_TYPE:
        raise ConfigError(f"train.scheduler.type: only {SCHEDULER_TYPE} is supported, got {s.type!r}")
    if not s.periods or len(s.periods) != len(s.restart_weights) or min(s.periods) < 1:
        raise ConfigError("train.scheduler: periods (positive) and restart_weights must be lists of the same length")
    if t.pixel_opt is not None:
        if t.pixel_opt.type != "L1Loss" or t.pixel_opt.reduction != "mean":
            raise ConfigError("train.pixel_opt: only type L1Loss with reduction mean is supported")
    p = t.perceptual_opt
    if p is not None:
        if p.type != "PerceptualLoss" or p.vgg_type != "vgg19":
            raise ConfigError("train.perceptual_opt: only type PerceptualLoss with vgg_type vgg19 is supported")
        if p.criterion not in CRITERIA:
            raise ConfigError(f"train.perceptual_opt.criterion must be one of {', '.join(CRITERIA)}, got {p.criterion!r}")
        if (p.perceptual_weight or p.style_weight) and not active_layers(p.layer_weights):
            raise ConfigError("train.perceptual_opt.layer_weights: no layer has a non-zero weight")
    if t.pixel_opt is None and (p is None or not (p.perceptual_weight or p.style_weight)):
        raise ConfigError("train: pixel_opt and perceptual_opt are both off; nothing to train on")
    d = cfg.datasets.train
    if d is not None:
        if d.gt_size != cfg.network_g.out_size:
            raise ConfigError(f"datasets.train.gt_size {d.gt_size} must equal network_g.out_size "
                              f"{cfg.network_g.out_size} (the network sees whole faces; no crops)")
        if d.use_rot:
            raise ConfigError("datasets.train.use_rot: rotations are not supported (faces are upright); set false")
        if d.num_frame < 1 or d.batch_size_per_gpu < 1 or d.dataset_enlarge_ratio < 1:
            raise ConfigError("datasets.train: num_frame, batch_size_per_gpu and dataset_enlarge_ratio must be >= 1")
        if not d.interval_list or min(d.interval_list) < 1:
            raise ConfigError("datasets.train.interval_list must list positive frame strides")
    for name, block in (("train", d), ("val", cfg.datasets.val)):
        if block is not None:
            block.prefixes(f"datasets.{name}")
            if block.io_backend.type != "disk":
                raise ConfigError(f"datasets.{name}.io_backend.type: only disk is supported")
    if cfg.val is not None:
        if cfg.val.chunking not in ("overlap", "reference"):
            raise ConfigError(f"val.chunking must be overlap or reference, got {cfg.val.chunking!r}")
        if cfg.val.temp_psz < 1 or cfg.val.val_freq < 1:
            raise ConfigError("val: temp_psz and val_freq must be >= 1")
        for name, m in cfg.val.metrics.items():
            if m.type not in METRIC_TYPES:
                raise ConfigError(f"val.metrics.{name}.type must be one of {', '.join(METRIC_TYPES)}, got {m.type!r}")
            if m.test_y_channel:
                raise ConfigError(f"val.metrics.{name}.test_y_channel: only RGB metrics are supported; set false")
            if m.crop_border < 0:
                raise ConfigError(f"val.metrics.{name}.crop_border must be >= 0")
    if cfg.logger.wandb is not None and cfg.logger.wandb.project:
        raise ConfigError("logger.wandb: not supported; logs go to TensorBoard (logger.use_tb_logger)")
    if cfg.logger.print_freq < 1 or cfg.logger.save_checkpoint_freq < 1 or cfg.logger.image_freq < 1:
        raise ConfigError("logger: print_freq, save_checkpoint_freq and image_freq must be >= 1")
