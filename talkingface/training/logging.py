"""Training logs: TensorBoard scalars and image grids (rank 0 only)."""
from __future__ import annotations

from pathlib import Path

import torch


class TrainLogger:
    """Writes nothing unless enabled (non-zero ranks, tensorboard: false)."""

    def __init__(self, log_dir: Path | None):
        self.writer = None
        if log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            log_dir.mkdir(parents=True, exist_ok=True)
            self.writer = SummaryWriter(str(log_dir))

    def scalars(self, values: dict[str, float], step: int, prefix: str = "") -> None:
        if self.writer is None:
            return
        for name, value in values.items():
            self.writer.add_scalar(f"{prefix}{name}", value, step)

    def image_grid(self, tag: str, rows: dict[str, torch.Tensor], step: int, max_items: int = 4) -> None:
        """One row per sample, one column per named B x 3 x H x W image (values clipped to 0..1)."""
        if self.writer is None:
            return
        cols = [t[:max_items].detach().float().cpu().clamp(0, 1) for t in rows.values()]
        # 3 x (B*H) x (K*W): samples stacked vertically, the K images side by side.
        grid = torch.cat([torch.cat([c[i] for c in cols], dim=2) for i in range(cols[0].shape[0])], dim=1)
        self.writer.add_image(f"{tag}/{'|'.join(rows)}", grid, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
