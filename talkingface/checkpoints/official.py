"""Checkpoints in the official MetaPortrait layout, and the mapping to our module names.

Official file: torch.save({"generator", "discriminator", "optimizer_generator",
"optimizer_discriminator", "epoch"}). Files we write add a "talkingface" entry with
the landmark scheme, identity size, resolution and the resolved config, plus resume
state under extra keys. A file without "talkingface" metadata is official: dense669
landmarks, 256-d identity, 256x256.

Everything loads with torch.load(weights_only=True): no pickled code.
"""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from talkingface.config import Config, load_config, parse_config
from talkingface.errors import CheckpointError
from talkingface.models.build import build_generator
from talkingface.utils.atomic import atomic_torch_save

FORMAT_VERSION = 1
META_KEY = "talkingface"

# --------------------------------------------------------------------------- names
# what a missing official checkpoint's error says to do
OFFICIAL_CKPT_HINT = ("download ckpt_base.pth.tar, the official MetaPortrait base model linked from "
                      "github.com/Meta-Portrait/MetaPortrait, and save it at this path")
# the config of an official checkpoint, which stores none
DEFAULT_OFFICIAL_CONFIG = (Path(__file__).resolve().parents[1] / "properties" / "model" /
                           "meta_portrait_base_config" / "meta_portrait_256_eval.yaml")

def _spade_block_names(count: int) -> list[str]:
    """Official SPADE block names: head_0, G_middle_0.., then the last four are up_0..up_3."""
    early = max(0, count - 4)
    names = (["head_0"] + [f"G_middle_{i}" for i in range(early - 1)]) if early else []
    return names + [f"up_{i}" for i in range(count - early)]


def _rules(spade_blocks: int) -> list[tuple[str, str | Callable[[re.Match], str]]]:
    names = _spade_block_names(spade_blocks)
    return [
        # prefixes
        (r"^warp\.motion_encoder\.convs\.(\d+)\.", lambda m: f"ladder_network.layer{int(m[1]) + 1}."),
        (r"^warp\.motion_encoder\.", "ladder_network."),
        (r"^warp\.motion_net\.", "dense_motion_network."),
        (r"^refine\.source_encoder\.", "feature_encoder."),
        (r"^refine\.fuse_finest\.", "fuse_high_res."),
        (r"^refine\.decoder\.stem\.", "SPDAE_G.conv1."),
        (r"^refine\.decoder\.blocks\.(\d+)\.", lambda m: f"SPDAE_G.{names[int(m[1])]}."),
        (r"^refine\.decoder\.to_rgb\.", "SPDAE_G.conv_img."),
        (r"^patch_discs\.([^.]+)\.blocks\.", r"discs.\1.down_blocks."),
        (r"^patch_discs\.([^.]+)\.to_logits\.", r"discs.\1.conv."),
        # hourglasses
        (r"\.down\.(\d+)\.", r".encoder.down_blocks.\1."),
        (r"\.up\.(\d+)\.", r".decoder.up_blocks.\1."),
        (r"\.extra\.", ".SameBlock2d."),
        (r"\.flow_head\.norm\.", ".reger.0."),
        (r"\.flow_head\.conv\.", ".reger.2."),
        (r"\.occlusion_head\.norm\.", ".occlusion_net.0."),
        (r"\.occlusion_head\.conv\.", ".occlusion_net.2."),
        # AdaIN / SPADE internals
        (r"\.shared\.", ".mlp_shared.0."),
        (r"\.to_gamma\.", ".mlp_gamma."),
        (r"\.to_beta\.", ".mlp_beta."),
        (r"\.attention\.", ".mlp_attention.0."),
        (r"\.plain_norm\.", ".param_free_norm."),
        (r"\.id_adain\.style\.weight$", ".adain.style.linear.weight_orig"),  # equalised-lr weight
        (r"\.id_adain\.style\.bias$", ".adain.style.linear.bias"),
        (r"\.conv_skip\.", ".conv_s."),
        (r"\.norm_skip\.", ".norm_s."),
    ]


def official_names(keys, spade_blocks: int) -> dict[str, str]:
    """Map each of our state-dict keys to its official name (bijective for one model)."""
    rules = [(re.compile(p), r) for p, r in _rules(spade_blocks)]
    out = {}
    for key in keys:
        name = key
        for pattern, repl in rules:
            name = pattern.sub(repl, name)
        out[key] = name
    if len(set(out.values())) != len(out):
        raise AssertionError("official key mapping is not one-to-one")  # a bug in the rules
    return out


def to_official(state_dict: dict[str, torch.Tensor], spade_blocks: int) -> dict[str, torch.Tensor]:
    names = official_names(state_dict.keys(), spade_blocks)
    return {names[k]: v for k, v in state_dict.items()}


# --------------------------------------------------------------------------- reading
@dataclass
class CheckpointMeta:
    """What a generator needs to match its data. Official files get the official values."""

    landmark_scheme: str = "dense669"
    identity_dim: int = 256
    resolution: int = 256
    config: dict[str, Any] | None = None  # the resolved YAML the model was trained with
    official: bool = True  # no talkingface metadata in the file

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "landmark_scheme": self.landmark_scheme,
                "identity_dim": self.identity_dim, "resolution": self.resolution, "config": self.config}

    @classmethod
    def from_config(cls, cfg: Config) -> "CheckpointMeta":
        return cls(landmark_scheme=cfg.model.landmark_scheme, identity_dim=cfg.model.generator.class_dim,
                   resolution=cfg.resolution[0], config=cfg.to_dict(), official=False)

    def check_matches(self, cfg: Config, path: str | Path) -> None:
        wanted = CheckpointMeta.from_config(cfg)
        for name in ("landmark_scheme", "identity_dim", "resolution"):
            have, want = getattr(self, name), getattr(wanted, name)
            if have != want:
                origin = "an official checkpoint" if self.official else "the checkpoint"
                raise CheckpointError(f"{origin} has {name}={have} but the config has {name}={want}; "
                                      "use a config that matches the checkpoint", path)


# How files torch.save writes begin: a zip archive (the default since torch 1.6) or a pickle.
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_MAGIC = b"\x80"


def _check_format(path: Path) -> None:
    """A text file, an image or an empty file is named as such, not as a failed unpickling."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise CheckpointError(f"cannot be read ({(e.strerror or str(e)).lower()})", path) from None
    if not head:
        raise CheckpointError("is an empty file, not a PyTorch checkpoint", path)
    if not (head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_MAGIC)):
        raise CheckpointError("not a PyTorch checkpoint (it is neither a zip archive nor a pickle, as files "
                              "written by torch.save are)", path)


def first_non_finite(obj: Any, where: str = "") -> str | None:
    """The key path ('generator.SPDAE_G.conv_img.weight') of the first floating tensor holding NaN or inf."""
    if isinstance(obj, torch.Tensor):
        if not (obj.is_floating_point() or obj.is_complex()):
            return None
        # a NaN or inf makes the sum non-finite, and so can an overflow: only then look at every element
        # (the sum is a tenth of isfinite's cost: 0.02 s against 0.2 s on the official 256 generator)
        finite = bool(torch.isfinite(obj.sum())) or bool(torch.isfinite(obj).all())
        return None if finite else where or "<tensor>"
    if isinstance(obj, dict):
        items = ((str(k), v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        items = ((str(i), v) for i, v in enumerate(obj))
    else:
        return None
    for key, value in items:
        found = first_non_finite(value, f"{where}.{key}" if where else key)
        if found is not None:
            return found
    return None


def check_finite(obj: Any, path: str | Path) -> None:
    """A damaged checkpoint fails here, at load, before NaN reaches a kernel (a NaN sampling grid
    crashed the process in a backward pass) or renders black frames."""
    bad = first_non_finite(obj)
    if bad is None:
        return
    top, _, rest = bad.partition(".")
    where = f"{top} key '{rest}'" if rest else f"'{top}'"
    raise CheckpointError(f"has non-finite values (NaN/inf) in {where}; the weights are damaged", path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """torch.load(weights_only=True) with every failure turned into one clear line.

    Every floating tensor in the file must be finite (`check_finite`)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError("is a folder, not a checkpoint file", path)
    if not path.is_file():
        raise CheckpointError("checkpoint file not found", path)
    _check_format(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError, IndexError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        first = first.split(". This is an internal miniz error")[0]  # then a paragraph about torch bugs
        raise CheckpointError(f"cannot be read as a PyTorch checkpoint; truncated or corrupt? ({first[:160]})",
                              path) from None
    except Exception as e:  # noqa: BLE001 - unpickling errors come in many types; report them as one line
        if type(e).__name__ == "UnpicklingError":
            raise CheckpointError("holds pickled code or objects; only weights-only checkpoints are accepted",
                                  path) from None
        raise
    if not isinstance(obj, dict):
        raise CheckpointError(f"not a MetaPortrait checkpoint (a {type(obj).__name__}, expected a dict)", path)
    check_finite(obj, path)
    return obj


def strip_module_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Checkpoints saved from a DDP-wrapped model prefix every key with 'module.'."""
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}
    return sd


SR_MODEL_TAG = "temporal_sr"  # talkingface.checkpoints.sr.MODEL_TAG (kept import-light here)
SR_WEIGHT_KEYS = ("params_ema", "params")
SR_HINT = "use it with `talkingface enhance --ckpt`, or `animate --enhance --sr-ckpt`"


def is_sr_checkpoint(ckpt: dict[str, Any]) -> bool:
    """A temporal super-resolution file (BasicSR layout, or ours with its model tag)."""
    meta = ckpt.get(META_KEY)
    tagged = isinstance(meta, dict) and meta.get("model") == SR_MODEL_TAG
    return tagged or any(isinstance(ckpt.get(k), dict) for k in SR_WEIGHT_KEYS)


def generator_state(ckpt: dict[str, Any], path: str | Path) -> dict[str, torch.Tensor]:
    """The checkpoint's `generator` state dict, or an error that says what the file is instead."""
    sd = ckpt.get("generator")
    if sd is None and is_sr_checkpoint(ckpt):
        raise CheckpointError(f"this is a super-resolution checkpoint, not a base model; {SR_HINT}", path)
    if sd is None:
        raise CheckpointError("not a MetaPortrait checkpoint: it has no generator weights (no 'generator' entry; "
                              f"top-level keys: {_summarise(map(str, ckpt.keys()), 6) or 'none'})", path)
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError("not a MetaPortrait checkpoint: its 'generator' entry is not a state dict of tensors",
                              path)
    if not sd:
        raise CheckpointError("has no generator weights (its 'generator' state dict is empty)", path)
    return sd


def _meta_int(meta: dict[str, Any], key: str, default: int, path: str | Path | None) -> int:
    value = meta.get(key, default)
    number = None
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            number = int(value)
        except (ValueError, OverflowError):
            number = None
        if isinstance(value, float) and number != value:
            number = None
    if number is None:
        raise CheckpointError(f"its metadata has {key}={value!r}, not a whole number; the file is damaged "
                              "or was edited", path)
    return number


def checkpoint_meta(ckpt: dict[str, Any], path: str | Path | None = None) -> CheckpointMeta:
    """The generator's landmark scheme, identity size, resolution and config (`path` names the file in errors)."""
    meta = ckpt.get(META_KEY)
    if not isinstance(meta, dict):
        return CheckpointMeta()
    if meta.get("model") == SR_MODEL_TAG:
        raise CheckpointError(f"this is a super-resolution checkpoint, not a base model; {SR_HINT}", path)
    return CheckpointMeta(landmark_scheme=str(meta.get("landmark_scheme", "dense669")),
                          identity_dim=_meta_int(meta, "identity_dim", 256, path),
                          resolution=_meta_int(meta, "resolution", 256, path),
                          config=meta.get("config"), official=False)


def config_for_checkpoint(ckpt_path: str, explicit: str | None) -> Config:
    """The config a checkpoint was trained with (stored in files we write), unless one is given."""
    ckpt = read_checkpoint(ckpt_path)
    generator_state(ckpt, ckpt_path)  # what the file is (no generator, a super-resolution model) before its config
    meta = checkpoint_meta(ckpt, ckpt_path)
    if explicit:
        return load_config(explicit)
    if meta.config is not None:
        return parse_config(meta.config, f"{ckpt_path} (stored config)")
    return load_config(DEFAULT_OFFICIAL_CONFIG)


def _summarise(keys, limit: int = 4) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_official_state(model: nn.Module, official_sd: dict[str, torch.Tensor], spade_blocks: int,
                        path: str | Path, what: str, only_prefixes: tuple[str, ...] | None = None) -> None:
    """Strictly load an official-layout state dict into `model` (our names).

    Every official key must be used and every parameter filled; otherwise the error
    names the missing and unexpected keys. `only_prefixes` restricts the load to our
    keys with those prefixes (e.g. the warp part for the full stage's warp_ckpt).
    """
    official_sd = strip_module_prefix(official_sd)
    ours = model.state_dict()
    names = official_names(ours.keys(), spade_blocks)
    if only_prefixes is not None:
        names = {k: v for k, v in names.items() if k.startswith(only_prefixes)}
        official_sd = {k: v for k, v in official_sd.items() if k in set(names.values())}
    expected = set(names.values())
    present = set(official_sd)
    missing, unexpected = expected - present, present - expected
    _check_overlap(expected, present, path, what)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_summarise(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_summarise(unexpected)})")
        raise CheckpointError(f"{what} does not match the config's architecture: " + "; ".join(parts), path)
    wrong = [f"{official} {tuple(official_sd[official].shape)} vs {tuple(ours[k].shape)}"
             for k, official in names.items() if official_sd[official].shape != ours[k].shape]
    if wrong:
        raise CheckpointError(f"{what} has {len(wrong)} tensors of the wrong shape for the config "
                              f"({'; '.join(wrong[:3])})", path)
    converted = {k: official_sd[official].to(ours[k].dtype) for k, official in names.items()}
    model.load_state_dict(converted, strict=only_prefixes is None)


def _check_overlap(expected: set[str], present: set[str], path, what: str) -> None:
    """Fewer than half the keys in common: this file holds some other network."""
    common = len(expected & present)
    if common < 0.5 * len(expected):
        raise CheckpointError(f"its {what} is not a MetaPortrait {what} (only {common} of {len(expected)} keys "
                              f"match; e.g. it has {_summarise(present - expected, 3) or 'no usable keys'})", path)


def _check_is_generator(model: nn.Module, official_sd: dict, spade_blocks: int, path) -> None:
    names = official_names(model.state_dict().keys(), spade_blocks)
    _check_overlap(set(names.values()), set(official_sd), path, "generator")


def has_spectral_norm(official_sd: dict[str, torch.Tensor]) -> bool:
    """Spectral norm shows as `weight_u` keys. (The identity AdaIN's `weight_orig` is an
    equalised-learning-rate weight, not spectral norm, and stays either way.)"""
    return any(k.endswith(".weight_u") for k in official_sd)


@dataclass
class LoadedGenerator:
    model: nn.Module
    meta: CheckpointMeta
    checkpoint: dict[str, Any] = field(repr=False)


def load_generator(path: str | Path, cfg: Config, map_location: str | torch.device = "cpu") -> LoadedGenerator:
    """Build the config's generator and strictly load a checkpoint's `generator` into it."""
    ckpt = read_checkpoint(path)
    sd = strip_module_prefix(generator_state(ckpt, path))
    model = build_generator(cfg, spectral_norm=has_spectral_norm(sd), initialise=False)  # filled strictly below
    blocks = cfg.model.generator.spade_num_blocks
    _check_is_generator(model, sd, blocks, path)  # another model's file: say so before anything else
    meta = checkpoint_meta(ckpt, path)
    meta.check_matches(cfg, path)
    load_official_state(model, sd, blocks, path, "generator")
    return LoadedGenerator(model.to(map_location), meta, ckpt)


# --------------------------------------------------------------------------- writing
def save_checkpoint(path: str | Path, cfg: Config, generator: nn.Module, discriminator: nn.Module | None = None,
                    epoch: int = 0, optimizer_generator: dict | None = None,
                    optimizer_discriminator: dict | None = None, extra: dict[str, Any] | None = None) -> None:
    """Write the official layout (+ our metadata and any resume state) atomically."""
    blocks = cfg.model.generator.spade_num_blocks
    ckpt: dict[str, Any] = {
        "generator": to_official(generator.state_dict(), blocks),
        "discriminator": to_official(discriminator.state_dict(), blocks) if discriminator is not None else {},
        "optimizer_generator": optimizer_generator or {},
        "optimizer_discriminator": optimizer_discriminator or {},
        "epoch": int(epoch),
        META_KEY: CheckpointMeta.from_config(cfg).to_dict(),
    }
    if extra:
        clash = set(extra) & set(ckpt)
        if clash:
            raise ValueError(f"extra checkpoint keys clash with the official ones: {sorted(clash)}")
        ckpt.update(extra)
    atomic_torch_save(ckpt, path)
