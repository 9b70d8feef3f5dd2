"""Start a larger-resolution generator from a trained smaller one (progressive growing).

A MetaPortrait generator is fully convolutional except where a size is built in: the
refinement decoder's first layer turns the identity vector into a `start_size` square
(a transposed convolution whose kernel *is* that square). A config that doubles the
frame and doubles `spade_start_size` (same channels, same block counts, same ladder
input size) therefore has every tensor of the smaller model at the same shape except
that kernel, which is resized here. Training then continues at the new resolution
with `talkingface train --init` from the file `grow_checkpoint` writes.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from talkingface.checkpoints.official import (checkpoint_meta, generator_state, has_spectral_norm, official_names,
                                              read_checkpoint, save_checkpoint, to_official)
from talkingface.config import Config
from talkingface.errors import CheckpointError
from talkingface.models.build import build_generator


def grow_state(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
               path: str | Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """`target`'s keys filled from `source` (both official layout). Equal shapes are
    copied; tensors that differ only in their two spatial dimensions are resized
    bilinearly (values, not sums, kept: an identity map drawn at 4x4 becomes the same
    map at 8x8). Returns the new state and the names of the resized tensors. Any other
    difference (a missing key, other channels) is a CheckpointError."""
    missing = sorted(set(target) - set(source))
    if missing:
        raise CheckpointError(f"cannot grow: the smaller model lacks {len(missing)} tensors of the new config "
                              f"(e.g. {missing[0]}); the configs must differ only in resolution", path)
    grown, resized = {}, []
    for key, want in target.items():
        have = source[key]
        if key.endswith(("weight_u", "weight_v")):
            continue  # spectral norm's power-iteration vectors: recomputed below from the weight
        if have.shape == want.shape:
            grown[key] = have.clone()
        elif have.dim() == 4 and have.shape[:2] == want.shape[:2]:
            grown[key] = F.interpolate(have.float(), size=tuple(want.shape[2:]), mode="bilinear",
                                       align_corners=True).to(want.dtype)
            resized.append(key)
        else:
            raise CheckpointError(f"cannot grow {key}: {tuple(have.shape)} vs {tuple(want.shape)} in the new config; "
                                  "only spatial kernel sizes may differ", path)
    for key in target:
        if key.endswith("weight_u"):
            base = key[:-len("u")]
            if base + "orig" in resized:
                grown[key], grown[base + "v"] = spectral_vectors(grown[base + "orig"], source[key])
            else:
                grown[key], grown[base + "v"] = source[key].clone(), source[base + "v"].clone()
    return grown, resized


def spectral_vectors(weight: torch.Tensor, u: torch.Tensor, iterations: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """Spectral norm's (u, v) for `weight`, by power iteration from `u` (torch keeps u
    along the output dimension: 0 for a convolution, 1 for a transposed one)."""
    dim = 0 if weight.shape[0] == u.numel() else 1
    matrix = weight.float().movedim(dim, 0).reshape(u.numel(), -1)
    u = F.normalize(u.float(), dim=0)
    for _ in range(iterations):
        v = F.normalize(matrix.t() @ u, dim=0)
        u = F.normalize(matrix @ v, dim=0)
    return u.to(weight.dtype), v.to(weight.dtype)


def grow_checkpoint(source_path: str | Path, cfg: Config, out_path: str | Path) -> list[str]:
    """Write a checkpoint for `cfg` (the larger model) whose generator starts from the
    generator in `source_path`; returns the resized tensors' names."""
    ckpt = read_checkpoint(source_path)
    meta = checkpoint_meta(ckpt, source_path)
    for name, want in (("landmark_scheme", cfg.model.landmark_scheme), ("identity_dim", cfg.model.generator.class_dim)):
        if getattr(meta, name) != want:
            raise CheckpointError(f"cannot grow: the checkpoint has {name}={getattr(meta, name)}, "
                                  f"the config {want}", source_path)
    source = generator_state(ckpt, source_path)
    generator = build_generator(cfg, spectral_norm=has_spectral_norm(source))
    blocks = cfg.model.generator.spade_num_blocks
    target = to_official(generator.state_dict(), blocks)
    grown, resized = grow_state(source, target, source_path)
    names = official_names(generator.state_dict().keys(), blocks)
    generator.load_state_dict({ours: grown[official] for ours, official in names.items()})
    save_checkpoint(out_path, cfg, generator)
    return resized
