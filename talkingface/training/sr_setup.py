"""Setting up temporal super-resolution training (talkingface.recipes.train_sr): the clips a
config names, the networks and where their weights come from, what stays frozen, the
parameter groups, the learning-rate schedule and the EMA update."""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import replace
from pathlib import Path

import torch

from talkingface.checkpoints.official import strip_module_prefix
from talkingface.checkpoints.sr import check_sr_state, init_from_gfpgan_v13, is_temporal_key, read_sr_weights
from talkingface.config.sr import ClipFolders, SchedulerConfig, SRConfig
from talkingface.data.sr_clips import SRClip, scan_sr_clips
from talkingface.errors import CheckpointError, ConfigError
from talkingface.models.temporal_sr import TemporalSRNet

GFPGAN_HINT = ("download GFPGANv1.3.pth (the GFPGAN v1.3 release, github.com/TencentARC/GFPGAN) and point "
               "network_g.GFPGANv1_load_path (or --init-ckpt) at it; set GFPGANv1_load_path: ~ to train from "
               "random weights instead")
# Never trained: the forward pass does not use the auxiliary RGB heads (kept for checkpoint compatibility).
UNUSED_PREFIXES = ("toRGB.",)



def with_roots(block: ClipFolders, root: str | None) -> ClipFolders:
    """A --data-root override: both roots there, in the make-sr-data layout unless prefixes are set."""
    if root is None:
        return block
    return replace(block, dataroot_lq=root, dataroot_gt=root, lq_temp=None, gt_temp=None,
                   lq_prefix=block.lq_prefix or "lq", gt_prefix=block.gt_prefix or "gt")


def open_clips(block: ClipFolders, gt_side: int, where: str, need_gt: bool) -> list[SRClip]:
    lq_prefix, gt_prefix = block.prefixes(where)
    gt_root = block.dataroot_gt
    if block.dataroot_lq is None:
        raise ConfigError(f"{where}.dataroot_lq is not set; give the clips with --data")
    if need_gt and gt_root is None:
        raise ConfigError(f"{where}.dataroot_gt is not set; training needs ground truth")
    return scan_sr_clips(block.dataroot_lq, gt_root, lq_prefix, gt_prefix, scale=2, gt_side=gt_side)


def freeze_untrained(model: TemporalSRNet, cfg: SRConfig) -> list[str]:
    """requires_grad False on the decoder (fix_decoder), opt_rm_param matches and unused heads; their names."""
    frozen = []
    for name, p in model.named_parameters():
        if ((cfg.network_g.fix_decoder and name.startswith("stylegan_decoder."))
                or any(k in name for k in cfg.train.opt_rm_param) or name.startswith(UNUSED_PREFIXES)):
            p.requires_grad_(False)
        if not p.requires_grad:
            frozen.append(name)
    return frozen


def param_groups(model: TemporalSRNet, lr: float, recurrent_lr_mul: float) -> list[dict]:
    """The reference's groups: decoder-side temporal blocks at lr x recurrent_lr_mul, the rest at lr."""
    normal = [p for n, p in model.named_parameters() if p.requires_grad and "recurrent" not in n]
    recurrent = [p for n, p in model.named_parameters() if p.requires_grad and "recurrent" in n]
    groups = [{"params": normal, "lr": lr, "initial_lr": lr, "name": "net"}]
    if recurrent:
        groups.append({"params": recurrent, "lr": lr * recurrent_lr_mul, "initial_lr": lr * recurrent_lr_mul,
                       "name": "recurrent"})
    return groups


def scheduled_lr(iteration: int, base: float, sched: SchedulerConfig, warmup_iter: int = -1) -> float:
    """The lr of 1-based `iteration`: linear warm-up, then cosine from base to eta_min over each
    period, restarting at restart_weight x base (BasicSR's CosineAnnealingRestartLR, stepped per iteration)."""
    if warmup_iter > 0 and iteration < warmup_iter:
        return base * iteration / warmup_iter
    start = 0
    for period, weight in zip(sched.periods, sched.restart_weights):
        if iteration <= start + period:
            progress = (iteration - start) / period
            return sched.eta_min + weight * 0.5 * (base - sched.eta_min) * (1 + math.cos(math.pi * progress))
        start += period
    return sched.eta_min


@torch.no_grad()
def update_ema(ema: TemporalSRNet, model: TemporalSRNet, decay: float) -> None:
    """ema = decay * ema + (1 - decay) * weights, for the trained parameters (the others never change)."""
    for pe, pm in zip(ema.parameters(), model.parameters()):
        if pm.requires_grad:
            pe.lerp_(pm.detach(), 1.0 - decay)


def load_checked(net: TemporalSRNet, sd: object, path: str | Path, what: str) -> None:
    if not isinstance(sd, dict):
        raise CheckpointError(f"has no {what!r} weights", path)
    sd = strip_module_prefix(sd)
    expected = net.state_dict()
    check_sr_state(expected, sd, path)
    net.load_state_dict({k: v.to(expected[k].dtype) for k, v in sd.items()})


def build_networks(cfg: SRConfig, init_ckpt: str | None, main: bool) -> tuple[TemporalSRNet, TemporalSRNet, str]:
    """(network, its EMA copy, where the weights came from), as the reference starts.

    A temporal SR checkpoint (`--init-ckpt` or path.pretrain_network_g) gives both weight
    sets (params_ema, when present, for the EMA); a GFPGANv1.3 file (it has no temporal
    blocks; network_g.GFPGANv1_load_path, or the same flags) gives both the same
    weights, with the temporal blocks at their identity init; else random weights.
    """
    source = init_ckpt or cfg.path.pretrain_network_g
    gfpgan = cfg.gfpgan_init
    which = cfg.path.param_key_g or "auto"
    if source:
        sd, _, ckpt = read_sr_weights(source, which)  # type: ignore[arg-type]
        if not any(is_temporal_key(k) for k in sd):  # GFPGANv1.3-style: no temporal blocks
            source, gfpgan = None, source
        else:
            # As BasicSR: the raw weights from `params` (or param_key_g), the EMA from `params_ema`.
            raw_key = cfg.path.param_key_g or ("params" if isinstance(ckpt.get("params"), dict) else "params_ema")
            model = TemporalSRNet(cfg.network_g)
            load_checked(model, ckpt.get(raw_key), source, raw_key)
            ema = copy.deepcopy(model)
            if isinstance(ckpt.get("params_ema"), dict):
                load_checked(ema, ckpt["params_ema"], source, "params_ema")
            return model, ema, f"temporal SR weights {source}"
    if gfpgan:
        if not Path(gfpgan).is_file():
            raise CheckpointError(f"GFPGANv1.3 weights not found; {GFPGAN_HINT}", gfpgan)
        model = init_from_gfpgan_v13(gfpgan, cfg.network_g, which=which)  # type: ignore[arg-type]
        origin = f"GFPGANv1.3 weights {gfpgan} (temporal blocks at their identity init)"
    else:
        model = TemporalSRNet(cfg.network_g)
        origin = "random weights"
        if main:
            warnings.warn("no GFPGANv1.3 initialisation (network_g.GFPGANv1_load_path): training from random "
                          "weights; the reference starts from GFPGANv1.3")
    if cfg.decoder_init:
        sd, _, _ = read_sr_weights(cfg.decoder_init, "auto")
        try:
            model.stylegan_decoder.load_state_dict(sd)
        except RuntimeError as e:
            raise CheckpointError(f"not StyleGAN2 decoder weights for this network ({str(e).splitlines()[0]})",
                                  cfg.decoder_init) from None
        origin += f", decoder from {cfg.decoder_init}"
    return model, copy.deepcopy(model), origin
