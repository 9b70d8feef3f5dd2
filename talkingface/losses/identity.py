"""Identity loss: 1 - cosine(recogniser(aligned prediction), source identity embedding).

The reference weights this loss at 20 but never released its recogniser, so it is off
unless `train.id_network` names a recogniser file: a torch.export archive (`.pt2`,
`torch.export.save`; export it with a dynamic batch dimension) or a TorchScript file
(any other name; torch 2.13 deprecates TorchScript, so prefer `.pt2`). Contract: it
takes B x 3 x S x S RGB in 0..1, aligned by the frame's theta, and returns B x D
embeddings with D = the dataset's identity size. S is the archive's traced input size,
or a TorchScript module's `input_size` attribute (default 112).
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from talkingface.errors import CheckpointError, ConfigError


class IdentityLoss(nn.Module):
    def __init__(self, network_path: str | Path, weight: float):
        super().__init__()
        path = Path(network_path)
        if not path.is_file():
            raise CheckpointError("identity network (train.id_network) not found", path)
        self.net, self.size = load_recogniser(path)
        for p in self.net.parameters():  # frozen: only the generator learns from this loss
            p.requires_grad_(False)
        self.weight = weight
        self.path = path

    def forward(self, prediction: torch.Tensor, theta: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        # prediction: B x 3 x H x W; theta: B x 2 x 3 (affine_grid, crop -> aligned face); identity: B x D
        grid = F.affine_grid(theta.to(prediction.dtype), [prediction.shape[0], 3, self.size, self.size],
                             align_corners=True)
        aligned = F.grid_sample(prediction, grid, align_corners=True)
        emb = self.net(aligned)
        if emb.shape != identity.shape:
            raise ConfigError(f"{self.path}: identity network gives {tuple(emb.shape[1:])}-d embeddings but the "
                              f"dataset's identities are {tuple(identity.shape[1:])}-d")
        return self.weight * (1 - F.cosine_similarity(emb, identity, dim=1)).mean()


def load_recogniser(path: Path) -> tuple[nn.Module, int]:
    """The recogniser in `path` and its input size S (see the module docstring)."""
    if path.suffix == ".pt2":
        try:
            program = torch.export.load(str(path))
        except (RuntimeError, ValueError, KeyError, OSError, zipfile.BadZipFile) as e:
            raise CheckpointError(f"not a torch.export identity network ({str(e).splitlines()[0][:120]})",
                                  path) from None
        inputs = [node.meta.get("val") for node in program.graph.nodes if node.op == "placeholder"
                  and node.name in set(program.graph_signature.user_inputs)]
        if len(inputs) != 1 or inputs[0] is None or inputs[0].dim() != 4:
            raise CheckpointError("the identity network must take one B x 3 x S x S image batch", path)
        size = inputs[0].shape[-1]
        if not isinstance(size, int):  # a dynamic image size: use the reference recogniser's 112
            size = 112
        return program.module(), int(size)
    try:
        net = torch.jit.load(str(path), map_location="cpu").eval()
    except RuntimeError as e:
        raise CheckpointError(f"not a TorchScript identity network ({str(e).splitlines()[0][:120]})", path) from None
    return net, int(getattr(net, "input_size", 112))
