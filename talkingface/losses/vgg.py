"""VGG19 feature extractor for the perceptual loss, from a standard ImageNet weights file.

The file uses torchvision's key naming (`features.N.weight`), so a user who has
torchvision already has it in the torch hub cache. Nothing is ever downloaded: the
file is looked up (flag/config path, then $TALKINGFACE_VGG19, then the hub cache) and
a missing file is an error saying exactly where to put it.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from talkingface.errors import CheckpointError

HUB_FILENAME = "vgg19-dcbb9e9d.pth"
ENV_VAR = "TALKINGFACE_VGG19"
# VGG19 "E" configuration: conv widths, "M" = 2x2 max pool.
_LAYOUT = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512]
# Outputs taken after these feature indices: relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.
_TAPS = (1, 6, 11, 20, 29)


def _layer_names() -> tuple[str, ...]:
    """Names of `features` by index, as torchvision/BasicSR spell them: conv3_4 is the
    fourth conv of block 3 (its output before the ReLU), relu3_4 the same after it."""
    names: list[str] = []
    block, conv = 1, 0
    for item in _LAYOUT:
        if item == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 0
        else:
            conv += 1
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
    return tuple(names)


VGG19_LAYER_NAMES = _layer_names()


def hub_cache_path() -> Path:
    torch_home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    return torch_home / "hub" / "checkpoints" / HUB_FILENAME


def find_vgg19_weights(explicit: str | os.PathLike | None = None) -> Path:
    """The weights file to use, or a CheckpointError naming every place looked at."""
    candidates = []
    if explicit:
        candidates.append(Path(explicit))
    if os.environ.get(ENV_VAR):
        candidates.append(Path(os.environ[ENV_VAR]))
    candidates.append(hub_cache_path())
    for path in candidates:
        if path.is_file():
            return path
    if explicit:
        raise CheckpointError("VGG19 weights file not found", explicit)
    raise CheckpointError(
        f"VGG19 ImageNet weights not found: put torchvision's {HUB_FILENAME} at {hub_cache_path()} "
        f"(or set {ENV_VAR}, or give the path with --vgg19 / train.vgg19_weights); "
        "--random-vgg trains without them, for smoke tests only")


class VGG19Features(nn.Module):
    """ImageNet-normalised VGG19 up to relu5_1; returns the five relu*_1 activations."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for item in _LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(in_ch, item, 3, padding=1), nn.ReLU()]
                in_ch = item
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)

    def load_file(self, path: str | os.PathLike) -> "VGG19Features":
        """Load `features.*` from a torchvision-layout file (classifier keys are ignored)."""
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, ValueError, OSError) as e:
            raise CheckpointError(f"cannot read VGG19 weights ({str(e).splitlines()[0][:120]})", path) from None
        if not isinstance(sd, dict):
            raise CheckpointError("not a VGG19 state dict", path)
        wanted = set(self.features.state_dict())
        feats = {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")}
        missing = sorted(wanted - set(feats))
        if missing:
            raise CheckpointError(f"not a VGG19 weights file (missing features.{missing[0]} and "
                                  f"{len(missing) - 1} more)", path)
        try:
            self.features.load_state_dict({k: feats[k] for k in wanted})
        except RuntimeError as e:
            raise CheckpointError(f"VGG19 weights of the wrong shape ({str(e).splitlines()[-1][:120]})", path) from None
        return self

    def forward(self, x: torch.Tensor, num_taps: int = len(_TAPS)) -> list[torch.Tensor]:
        # x: B x 3 x H x W in 0..1 -> the first `num_taps` of the five feature maps
        # (layers past the last tap needed are not run at all).
        x = (x - self.mean) / self.std
        taps = []
        for i, layer in enumerate(self.features[: _TAPS[num_taps - 1] + 1]):
            x = layer(x)
            if i in _TAPS:
                taps.append(x)
        return taps

    def named_features(self, x: torch.Tensor, names, normalize: bool = True) -> dict[str, torch.Tensor]:
        """Activations of the named layers (see VGG19_LAYER_NAMES) for B x 3 x H x W input in 0..1.

        `normalize` applies the ImageNet mean/std first. Layers past the deepest one named
        are not run. The ReLUs are not in place, so a conv's output stays pre-activation.
        """
        unknown = sorted(set(names) - set(VGG19_LAYER_NAMES))
        if unknown:
            raise ValueError(f"unknown VGG19 layer name(s) {unknown}; known: {', '.join(VGG19_LAYER_NAMES)}")
        wanted = set(names)
        last = max(VGG19_LAYER_NAMES.index(n) for n in wanted)
        if normalize:
            x = (x - self.mean) / self.std
        out = {}
        for name, layer in zip(VGG19_LAYER_NAMES[:last + 1], self.features):
            x = layer(x)
            if name in wanted:
                out[name] = x
        return out
