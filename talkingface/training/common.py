"""Set-up shared by the training recipes (pretraining, meta-training, personalisation)."""
from __future__ import annotations

import contextlib
import random
import warnings

import numpy as np
import torch

from talkingface.data.official import OfficialDataset
from talkingface.errors import DataError
from talkingface.inference.engine import fit_precision
from talkingface.inference.precision import LOW_DTYPES
from talkingface.losses.vgg import VGG19Features, find_vgg19_weights
from talkingface.training.distributed import DistInfo
from talkingface.training.state import capture_rng


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_vgg(path: str | None, random_vgg: bool, device: torch.device, warn: bool = True) -> VGG19Features:
    """ImageNet VGG19 from `path`/env/hub cache; an untrained one only when asked for (warned every run)."""
    vgg = VGG19Features()
    if random_vgg:
        if warn:
            warnings.warn("training with an UNTRAINED VGG19 (--random-vgg): the perceptual loss is only a smoke "
                          "test signal; results are not meaningful")
        return vgg.to(device)
    return vgg.load_file(find_vgg19_weights(path)).to(device)


def mixed_precision_dtype(device: torch.device, mixed_precision: bool, force: bool = False,
                          warn: bool = True) -> torch.dtype | None:
    """The autocast dtype `--fp16` means on `device`: fp16 on CUDA (with a GradScaler), bf16
    elsewhere (no scaler needed); None (fp32) without it, or, with one warning, where the
    device only emulates that dtype (bf16 on a CPU without avx512_bf16/amx_bf16), unless `force`."""
    if not mixed_precision:
        return None
    wanted = "fp16" if device.type == "cuda" else "bf16"
    return LOW_DTYPES.get(fit_precision(wanted, device, force, use="training", warn=warn))


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast to `dtype` (from `mixed_precision_dtype`); None: plain fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


class SkipBadFrames(torch.utils.data.Dataset):
    """Replace an unreadable item by the next readable one, warning once per file."""

    def __init__(self, dataset: OfficialDataset):
        self.dataset = dataset
        self.bad: set[int] = set()

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        for offset in range(len(self.dataset)):
            i = (index + offset) % len(self.dataset)
            if i in self.bad:
                continue
            try:
                return self.dataset[i]
            except DataError as e:
                self.bad.add(i)
                warnings.warn(f"skipping bad frame: {e}")
        raise DataError("no readable frames left", self.dataset.root)


def gather_rng(info: DistInfo) -> list:
    """Every rank's RNG state (so each rank resumes its own stream)."""
    state = capture_rng()
    if not info.enabled:
        return [state]
    gathered: list = [None] * info.world_size
    torch.distributed.all_gather_object(gathered, state)
    return gathered
