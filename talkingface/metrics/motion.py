"""How well a predicted motion field matches known correspondences (landmarks)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def landmark_flow_error(deformation: torch.Tensor, driving_points: torch.Tensor, source_points: torch.Tensor,
                        size: int) -> torch.Tensor:
    """Pixel error of the backward map at the driving landmarks.

    deformation: B x h x w x 2 sampling grid (-1..1, align_corners=False: the model's
    `deformation`); driving_points, source_points: B x N x 2 in 0..1 (x, y), where
    source_points[b, i] is where driving_points[b, i] came from. Returns B x N errors
    in pixels of a `size`-pixel image. Under align_corners=False, a point at x in 0..1
    sits at 2x - 1 in grid units, so no half-pixel offsets are needed.
    """
    field = deformation.permute(0, 3, 1, 2)  # B x 2 x h x w
    query = (2 * driving_points - 1).unsqueeze(1)  # B x 1 x N x 2
    predicted = F.grid_sample(field, query.to(field.dtype), mode="bilinear", padding_mode="border",
                              align_corners=False)  # B x 2 x 1 x N
    predicted = predicted[:, :, 0].permute(0, 2, 1)  # B x N x 2, grid units
    return (predicted - (2 * source_points - 1)).norm(dim=-1) * size / 2
