"""LPIPS (Zhang et al. 2018, v0.1, AlexNet backbone) from the user's own weight files.

Two files are needed, and nothing is downloaded:
  * AlexNet ImageNet weights in torchvision's naming (`features.N.weight/bias`), e.g.
    torchvision's `alexnet-owt-7be5be79.pth`;
  * the LPIPS linear layers `alex.pth` (keys `lin0.model.1.weight` ... `lin4.model.1.weight`),
    shipped inside the `lpips` pip package as `lpips/weights/v0.1/alex.pth`.
They are found, in order, from the flags `--lpips-alexnet PATH --lpips-lin PATH`, the
environment variables TALKINGFACE_LPIPS_ALEXNET / TALKINGFACE_LPIPS_LIN, and for
AlexNet the torch hub cache, $TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth
(TORCH_HOME defaults to ~/.cache/torch).

The metric: both images in [-1, 1] go through a fixed per-channel affine scaling and
AlexNet; at each of the five ReLU outputs the features are unit-normalised along
channels, their squared difference is weighted per channel by the linear layer and
averaged over space; the five values are summed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from talkingface.errors import CheckpointError

ALEXNET_FILENAME = "alexnet-owt-7be5be79.pth"
ENV_ALEXNET = "TALKINGFACE_LPIPS_ALEXNET"
ENV_LIN = "TALKINGFACE_LPIPS_LIN"

# LPIPS's input scaling: (x - shift) / scale per RGB channel, x in [-1, 1].
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
TAP_CHANNELS = (64, 192, 384, 256, 256)  # AlexNet's five ReLU outputs that LPIPS compares
NORM_EPS = 1e-10

HOW_TO_PROVIDE = (f"pass --lpips-alexnet PATH (torchvision AlexNet ImageNet weights, {ALEXNET_FILENAME}; "
                  f"default $TORCH_HOME/hub/checkpoints/{ALEXNET_FILENAME}) and --lpips-lin PATH (LPIPS v0.1 "
                  f"alex.pth), or set {ENV_ALEXNET} / {ENV_LIN}")


@dataclass(frozen=True)
class LpipsWeights:
    alexnet: Path
    lin: Path


def hub_checkpoint_dir() -> Path:
    """torch.hub's cache folder for weight files ($TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_lpips_weights(alexnet: str | os.PathLike | None = None,
                       lin: str | os.PathLike | None = None) -> tuple[LpipsWeights | None, str]:
    """(weights, "") when both files are found, else (None, a one-line reason and how to fix it).

    A path the user named explicitly (flag or environment) must exist: a typo there is
    an error, not a silent skip.
    """
    def pick(given, env: str) -> Path | None:
        value = given if given is not None else os.environ.get(env) or None
        if value is None:
            return None
        path = Path(value).expanduser()
        if not path.is_file():
            raise CheckpointError(f"LPIPS weight file not found ({HOW_TO_PROVIDE})", path)
        return path

    alex_path = pick(alexnet, ENV_ALEXNET)
    if alex_path is None:
        cached = hub_checkpoint_dir() / ALEXNET_FILENAME
        alex_path = cached if cached.is_file() else None
    lin_path = pick(lin, ENV_LIN)
    if alex_path is None or lin_path is None:
        missing = " and ".join(n for n, p in (("AlexNet", alex_path), ("linear-layer", lin_path)) if p is None)
        return None, f"LPIPS skipped: no {missing} weights; {HOW_TO_PROVIDE}"
    return LpipsWeights(alex_path, lin_path), ""


def load_state_dict_file(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a corrupt file makes torch.load raise any of a dozen types
        raise CheckpointError(f"cannot read as a torch weight file ({e})", path) from e
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError("expected a state dict (name -> tensor)", path)
    return state


class AlexNetTaps(nn.Module):
    """torchvision AlexNet's convolutional trunk (same layer indices); returns the five ReLU outputs."""

    TAPS = (1, 4, 7, 9, 11)

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(),  # 0, 1
            nn.MaxPool2d(3, 2),  # 2
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(),  # 3, 4
            nn.MaxPool2d(3, 2),  # 5
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),  # 6, 7
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),  # 8, 9
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),  # 10, 11
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.TAPS:
                out.append(x)
        return out


class LpipsNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = AlexNetTaps()
        # 1x1 convolutions without bias to one channel: a weight per feature channel.
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in TAP_CHANNELS)
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a, b: N x 3 x H x W in [-1, 1] -> N distances."""
        n = a.shape[0]
        feats = self.net((torch.cat([a, b]) - self.shift) / self.scale)
        total = a.new_zeros(n)
        for f, lin in zip(feats, self.lins):
            f = f / (f.pow(2).sum(1, keepdim=True).sqrt() + NORM_EPS)
            total = total + lin((f[:n] - f[n:]) ** 2).mean((1, 2, 3))
        return total


class LpipsMetric:
    """Loaded LPIPS network. `distances(pred, gt)` takes N x H x W x 3 uint8 batches."""

    def __init__(self, weights: LpipsWeights, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.model = LpipsNet()
        alex = load_state_dict_file(weights.alexnet)
        lin = load_state_dict_file(weights.lin)
        state = {}
        for i, layer in enumerate(self.model.net.features):
            if isinstance(layer, torch.nn.Conv2d):
                for kind in ("weight", "bias"):
                    state[f"net.features.{i}.{kind}"] = self._take(
                        alex, f"features.{i}.{kind}", weights.alexnet, getattr(layer, kind).shape)
        for k, conv in enumerate(self.model.lins):
            state[f"lins.{k}.weight"] = self._take(lin, f"lin{k}.model.1.weight", weights.lin, conv.weight.shape)
        self.model.load_state_dict(state)
        self.model.eval().to(self.device)

    @staticmethod
    def _take(state: dict, key: str, path: Path, shape) -> torch.Tensor:
        value = state.get(key)
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"no tensor {key!r}: not the expected LPIPS/AlexNet weight file ({HOW_TO_PROVIDE})",
                                  path)
        if tuple(value.shape) != tuple(shape):
            raise CheckpointError(f"{key} has shape {tuple(value.shape)}, expected {tuple(shape)}", path)
        return value.float()

    def distances(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        def to_tensor(x: np.ndarray):
            t = torch.from_numpy(np.ascontiguousarray(x)).to(self.device).permute(0, 3, 1, 2).float()
            return t / 127.5 - 1.0

        with torch.inference_mode():
            return self.model(to_tensor(pred), to_tensor(gt)).cpu().numpy().astype(np.float64)
