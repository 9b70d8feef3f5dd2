"""Config -> model. The one place where official config names become our model specs."""
from __future__ import annotations

import contextlib
import functools
import threading
from typing import Iterator

import torch

from talkingface.config import Config
from talkingface.models.discriminator import DiscriminatorSpec, MultiScaleDiscriminator
from talkingface.models.generator import MetaPortraitGenerator
from talkingface.models.refinement import RefinementSpec
from talkingface.models.warping import WarpingSpec


def generator_specs(cfg: Config, spectral_norm: bool | None = None) -> tuple[WarpingSpec, RefinementSpec]:
    """`spectral_norm` overrides the config's use_SN (a checkpoint saved with --remove_sn has none)."""
    g = cfg.model.generator
    dm = g.dense_motion_params
    sn = g.use_SN if spectral_norm is None else spectral_norm
    warp = WarpingSpec(
        in_channels=cfg.model.common.num_channels + 6,
        encoder_input_size=g.ladder.input_size,
        encoder_base=g.ladder.base_channels,
        encoder_layers=g.ladder.num_layers,
        code_dim=g.ladder.z_dim,
        spectral_norm=sn,
        motion_base=dm.block_expansion,
        motion_max=dm.max_features,
        motion_blocks=dm.num_blocks,
        motion_skip_levels=dm.dec_lease,
        motion_extra_blocks=dm.Lwarp,
        occlusion=dm.occlusion,
    )
    refine = RefinementSpec(
        image_channels=cfg.model.common.num_channels,
        source_base=g.block_expansion,
        source_max=g.max_features,
        source_blocks=g.feature_num_blocks,
        instance_norm=g.use_IN,
        identity_dim=g.class_dim,
        decoder_channels=g.conv_dim,
        decoder_start_size=g.spade_start_size,
        decoder_blocks=g.spade_num_blocks,
        spade_hidden=g.spade_hidden,
        spectral_norm=sn,
        gaze_heatmaps=g.with_gaze_htmap,
        line_images=g.with_ldmk_line,
        mouth_line=g.with_mouth_line,
    )
    return warp, refine


# torch.nn.init's fills that modules' reset_parameters call; skipped when every weight is loaded next
_INIT_FILLS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "xavier_uniform_",
               "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_")
_SKIP_FILLS = threading.local()  # .on: this thread is building a model that a strict load fills next
_INSTALL_LOCK = threading.Lock()
_installed = False


def _install_skippable_fills() -> None:
    """Once, on first use: wrap each of torch.nn.init's fills so that it does nothing in a thread
    that asked to skip them (`_no_weight_fills`) and exactly what it did in every other thread.
    (Swapping the functions in and out around a build instead raced: the web app loads models
    in several threads at once, and one build's restore could leave the no-ops in place for all.)"""
    global _installed
    with _INSTALL_LOCK:
        if _installed:
            return
        for name in _INIT_FILLS:
            fill = getattr(torch.nn.init, name)

            @functools.wraps(fill)
            def skippable(tensor, *args, _fill=fill, **kwargs):
                return tensor if getattr(_SKIP_FILLS, "on", False) else _fill(tensor, *args, **kwargs)

            setattr(torch.nn.init, name, skippable)
        _installed = True


@contextlib.contextmanager
def _no_weight_fills() -> Iterator[None]:
    """Within the block, in this thread only, torch.nn.init's fills leave tensors as they are
    (uninitialised memory). Only for models whose every parameter and buffer is overwritten right
    after, by a strict load."""
    _install_skippable_fills()
    before = getattr(_SKIP_FILLS, "on", False)
    _SKIP_FILLS.on = True
    try:
        yield
    finally:
        _SKIP_FILLS.on = before


def build_generator(cfg: Config, spectral_norm: bool | None = None, initialise: bool = True) -> MetaPortraitGenerator:
    """The config's generator. `initialise=False` skips the random initialisation (0.6 s of the 1.4 s
    load of the official 256 model, benchmarks/results/bench_load.json) for a model whose every weight
    is loaded next, strictly."""
    with contextlib.nullcontext() if initialise else _no_weight_fills():
        return MetaPortraitGenerator(*generator_specs(cfg, spectral_norm))


def discriminator_spec(cfg: Config) -> DiscriminatorSpec:
    d = cfg.model.discriminator
    return DiscriminatorSpec(scales=tuple(d.scales), image_channels=cfg.model.common.num_channels,
                             base=d.block_expansion, max_channels=d.max_features, num_blocks=d.num_blocks,
                             spectral_norm=d.sn)


def build_discriminator(cfg: Config) -> MultiScaleDiscriminator:
    return MultiScaleDiscriminator(discriminator_spec(cfg))
