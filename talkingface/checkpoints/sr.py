"""Temporal super-resolution checkpoints, BasicSR style: `{"params": sd}` and/or `{"params_ema": sd}`.

The official `temporal_gfpgan.pth` loads as is (our module names are the official
keys). Files we write add a "talkingface" entry with the architecture config, so a
non-official variant (e.g. a tiny test model) rebuilds itself; files without it are
taken to have the official configuration.

Loading is strict: any missing, unexpected or mis-shaped key is a `CheckpointError`
that names the file and lists every key (indices folded: `window_down.{0-6}.conv1.weight`).
The one sanctioned exception is `init_from_gfpgan_v13`: a GFPGANv1.3 file has
everything but the temporal blocks, which then start as the identity.

Everything loads with torch.load(weights_only=True) and is written atomically.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Mapping

import torch
from torch import nn

from talkingface.checkpoints.official import read_checkpoint, strip_module_prefix
from talkingface.errors import CheckpointError, ConfigError
from talkingface.models.temporal_sr import TemporalSRConfig, TemporalSRNet
from talkingface.utils.atomic import atomic_torch_save

FORMAT_VERSION = 1
META_KEY = "talkingface"
MODEL_TAG = "temporal_sr"
WEIGHT_KEYS = ("params_ema", "params")  # BasicSR names; EMA first: the better weights for inference

WeightChoice = Literal["auto", "params_ema", "params"]

# The temporal blocks that GFPGANv1.3 lacks: the encoder-side windows and the decoder-side
# ones (officially named `recurrent_forward`). Nothing else may be missing from it.
TEMPORAL_KEY_PATTERNS = (re.compile(r"^window_down\.\d+\.conv[12]\.(weight|bias)$"),
                         re.compile(r"^recurrent_forward\.\d+\.conv[12]\.(weight|bias)$"))

OFFICIAL_SR_HINT = ("download temporal_gfpgan.pth, the official MetaPortrait super-resolution model linked from "
                    "github.com/Meta-Portrait/MetaPortrait, and pass its path")


def is_temporal_key(key: str) -> bool:
    return any(p.match(key) for p in TEMPORAL_KEY_PATTERNS)


# --------------------------------------------------------------------------- reading
_INDEX = re.compile(r"(?<=\.)\d+(?=\.|$)")  # numeric path parts: ModuleList / Sequential indices


def _ranges(values: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5'."""
    runs: list[list[int]] = []
    for v in sorted(set(values)):
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return ",".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs)


def _fold_keys(keys) -> str:
    """Every key, in one line: keys differing in one index fold to 'window_down.{0-6}.conv1.weight'."""
    groups: dict[str, list[str]] = {}
    for key in sorted(keys):
        groups.setdefault(_INDEX.sub("*", key), []).append(key)
    parts = []
    for pattern, members in groups.items():
        indices = [_INDEX.findall(m) for m in members]
        varying = [i for i in range(len(indices[0])) if len({ix[i] for ix in indices}) > 1]
        if len(members) == 1:
            parts.append(members[0])
        elif len(varying) == 1:
            pieces = pattern.split("*")
            fills = [("{" + _ranges([int(ix[j]) for ix in indices]) + "}") if j == varying[0] else indices[0][j]
                     for j in range(len(pieces) - 1)]
            parts.append("".join(p + f for p, f in zip(pieces, fills + [""])))
        else:
            parts.append(f"{pattern} ({len(members)} keys)")
    return ", ".join(parts)


def read_sr_weights(path: str | Path, which: WeightChoice = "auto") -> tuple[dict[str, torch.Tensor], str, dict]:
    """(state dict, the key it came from, the whole checkpoint dict).

    which="auto" takes `params_ema` when present, else `params`.
    """
    ckpt = read_checkpoint(path)
    present = [k for k in WEIGHT_KEYS if isinstance(ckpt.get(k), dict)]
    if not present:
        top = ", ".join(sorted(map(str, ckpt.keys()))[:6]) or "none"
        kind = ("this is a base model checkpoint, not a super-resolution one; " if "generator" in ckpt else "")
        raise CheckpointError(f"{kind}not a BasicSR-style super-resolution checkpoint (no 'params_ema' or "
                              f"'params' state dict; top-level keys: {top})", path)
    if which == "auto":
        which = present[0]
    elif which not in WEIGHT_KEYS:
        raise ValueError(f"which must be 'auto', 'params_ema' or 'params', not {which!r}")
    elif which not in present:
        raise CheckpointError(f"has no {which!r} weights (it has: {', '.join(present)})", path)
    sd = ckpt[which]
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise CheckpointError(f"its {which!r} entry is not a state dict of tensors", path)
    return strip_module_prefix(sd), which, ckpt


def config_from_checkpoint(ckpt: Mapping[str, Any], path: str | Path) -> TemporalSRConfig:
    """Our files carry their config; official ones (no metadata) have the official config."""
    meta = ckpt.get(META_KEY)
    if not isinstance(meta, dict) or meta.get("model") != MODEL_TAG:
        return TemporalSRConfig()
    try:
        return TemporalSRConfig.from_dict(meta.get("config") or {}, source=str(path))
    except ConfigError as e:
        raise CheckpointError(f"its stored architecture config is invalid ({e})", path) from None


def check_sr_state(expected: Mapping[str, torch.Tensor], sd: Mapping[str, torch.Tensor], path: str | Path,
                   allowed_missing: tuple[re.Pattern, ...] = ()) -> list[str]:
    """Strict comparison of a state dict with the network's: names and shapes.

    Keys matching `allowed_missing` may be absent; returns those that are.
    """
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    common = len(set(expected) & set(sd))
    if common < 0.5 * len(expected):
        raise CheckpointError(f"not a temporal GFPGAN ({TemporalSRNet.__name__}) checkpoint: only {common} of "
                              f"{len(expected)} keys match (it has e.g. {_fold_keys(unexpected[:5]) or 'no keys'})",
                              path)
    tolerated = [k for k in missing if any(p.match(k) for p in allowed_missing)]
    missing = [k for k in missing if k not in tolerated]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {_fold_keys(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_fold_keys(unexpected)}")
        hint = ""
        if not unexpected and all(is_temporal_key(k) for k in missing):
            hint = (" (it has no temporal blocks: a GFPGANv1.3-style file; "
                    "use init_from_gfpgan_v13 to start training from it)")
        raise CheckpointError("does not match the temporal SR architecture: " + "; ".join(parts) + hint, path)
    wrong = [f"{k} {tuple(sd[k].shape)} vs {tuple(expected[k].shape)}" for k in sd
             if sd[k].shape != expected[k].shape]
    if wrong:
        raise CheckpointError(f"{len(wrong)} tensors have the wrong shape for the architecture config "
                              f"({'; '.join(wrong[:3])}{' ...' if len(wrong) > 3 else ''})", path)
    return tolerated


def load_temporal_sr(path: str | Path, which: WeightChoice = "auto", config: TemporalSRConfig | None = None,
                     map_location: str | torch.device = "cpu") -> TemporalSRNet:
    """Build the network (config from the file, or `config`) and strictly load its weights."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found; {OFFICIAL_SR_HINT}", path)
    sd, _, ckpt = read_sr_weights(path, which)
    # Built on the meta device: no time or memory spent on a random init that is overwritten.
    with torch.device("meta"):
        model = TemporalSRNet(config or config_from_checkpoint(ckpt, path))
    expected = model.state_dict()
    check_sr_state(expected, sd, path)
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in sd.items()}, assign=True)
    return model.to(map_location)


def init_from_gfpgan_v13(path: str | Path, config: TemporalSRConfig | None = None,
                         which: WeightChoice = "params_ema") -> TemporalSRNet:
    """The official training start: GFPGANv1.3 weights, temporal blocks at their identity init.

    Exactly the `TEMPORAL_KEY_PATTERNS` keys may be absent (all of them, in fact:
    a file that has some is not GFPGANv1.3); any other mismatch is an error.
    """
    cfg = config or TemporalSRConfig()
    if not cfg.zero_out_init:
        raise ConfigError("init_from_gfpgan_v13 needs zero_out_init=True: the temporal blocks must start "
                          "as the identity, or the GFPGAN prior is perturbed by random weights")
    sd, _, _ = read_sr_weights(path, which)
    present_temporal = sorted(k for k in sd if is_temporal_key(k))
    if present_temporal:
        raise CheckpointError(f"is not a GFPGANv1.3 checkpoint: it already has temporal blocks "
                              f"({_fold_keys(present_temporal)}); load it with load_temporal_sr", path)
    model = TemporalSRNet(cfg)  # a real init: the temporal blocks keep theirs
    expected = model.state_dict()
    check_sr_state(expected, sd, path, allowed_missing=TEMPORAL_KEY_PATTERNS)
    # strict=False: exactly the temporal keys are absent, as just checked
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in sd.items()}, strict=False)
    return model


# --------------------------------------------------------------------------- writing
def _cpu_state(weights: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    sd = weights.state_dict() if isinstance(weights, nn.Module) else weights
    return {k: v.detach().to("cpu", copy=True) for k, v in sd.items()}


def save_temporal_sr(path: str | Path, params: nn.Module | Mapping[str, torch.Tensor] | None = None,
                     params_ema: nn.Module | Mapping[str, torch.Tensor] | None = None,
                     config: TemporalSRConfig | None = None, extra: dict[str, Any] | None = None) -> None:
    """Write `{"params": ..., "params_ema": ..., "talkingface": {config}}` atomically.

    At least one of the weight sets is required. `config` defaults to the first
    network's own config; the official layout ignores the extra entry.
    """
    if params is None and params_ema is None:
        raise ValueError("save_temporal_sr needs params, params_ema or both")
    if config is None:
        source = next((w for w in (params, params_ema) if isinstance(w, TemporalSRNet)), None)
        config = source.cfg if source is not None else TemporalSRConfig()
    ckpt: dict[str, Any] = {META_KEY: {"format_version": FORMAT_VERSION, "model": MODEL_TAG,
                                       "config": config.to_dict()}}
    if params is not None:
        ckpt["params"] = _cpu_state(params)
    if params_ema is not None:
        ckpt["params_ema"] = _cpu_state(params_ema)
    if extra:
        clash = set(extra) & set(ckpt)
        if clash:
            raise ValueError(f"extra checkpoint keys clash with reserved ones: {sorted(clash)}")
        ckpt.update(extra)
    atomic_torch_save(ckpt, path)
