"""The MetaPortrait generator: warping network + ID-preserving refinement network."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from talkingface.models.refinement import RefinementNetwork, RefinementSpec
from talkingface.models.warping import WarpingNetwork, WarpingSpec


@dataclass
class GeneratorInputs:
    """One batch of model inputs, already encoded (see talkingface.landmarks.encoding)."""

    source: torch.Tensor  # B x 3 x H x W, 0..1
    source_line: torch.Tensor  # B x 3 x H x W, 0..1
    driving_line: torch.Tensor  # B x 3 x H x W, 0..1
    driving_subset: torch.Tensor  # B x 58 x 2, -1..1
    mouth_mask: torch.Tensor  # B x 1 x H x W, 0/1
    identity: torch.Tensor  # B x D

    @classmethod
    def from_batch(cls, batch: dict, device: torch.device | str | None = None) -> "GeneratorInputs":
        """The model inputs of a dataset batch (talkingface.data.official's items, collated)."""
        inputs = cls(source=batch["source"], source_line=batch["source_line"], driving_line=batch["driving_line"],
                     driving_subset=batch["driving_subset"], mouth_mask=batch["mouth_mask"],
                     identity=batch["identity"])
        return inputs if device is None else inputs.to(device)

    def to(self, device, dtype=None) -> "GeneratorInputs":
        return GeneratorInputs(**{k: v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device)
                                  for k, v in vars(self).items()})


class MetaPortraitGenerator(nn.Module):
    def __init__(self, warp_spec: WarpingSpec, refine_spec: RefinementSpec):
        super().__init__()
        self.warp = WarpingNetwork(warp_spec)
        self.refine = RefinementNetwork(refine_spec)

    @property
    def warp_parameters(self):
        """The warp part (motion encoder + motion network): trained with a lower learning rate."""
        return self.warp.parameters()

    def forward_warp(self, x: GeneratorInputs) -> dict[str, torch.Tensor]:
        lines = torch.cat([x.source_line, x.driving_line], dim=1)  # B x 6 x H x W
        return self.warp(x.source, lines)

    def forward_refine(self, x: GeneratorInputs, warp_out: dict[str, torch.Tensor],
                       source_features: list[torch.Tensor] | None = None) -> torch.Tensor:
        """`source_features` from `refine.encode_source(x.source)` may be passed in to reuse
        them across driving frames of the same source."""
        if source_features is None:
            source_features = self.refine.encode_source(x.source)
        lines = torch.cat([x.source_line, x.driving_line], dim=1)
        mouth_line = x.driving_line * x.mouth_mask  # B x 3 x H x W
        return self.refine(source_features, warp_out["deformation"], warp_out["occlusion_map"], x.identity,
                           x.driving_subset, lines, mouth_line)

    def forward(self, x: GeneratorInputs, stage: str = "full") -> dict[str, torch.Tensor]:
        """stage 'warp': the warping outputs only; 'full': plus `prediction` (B x 3 x H x W, -1..1)."""
        out = self.forward_warp(x)
        if stage == "full":
            out["prediction"] = self.forward_refine(x, out)
        elif stage != "warp":
            raise ValueError(f"unknown stage {stage!r}")
        return out


def batch_inputs(batch: dict, device: torch.device | str) -> GeneratorInputs:
    """`GeneratorInputs.from_batch` on `device`."""
    return GeneratorInputs.from_batch(batch, device)
