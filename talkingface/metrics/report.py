"""The evaluation report's files: per-frame CSV, summary JSON, a plot, side-by-side frames.

Every file goes through a temporary name and a rename, so a report folder never holds
a half-written file.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from talkingface.metrics.suite import EvaluationSummary, FrameRecord
from talkingface.utils.atomic import atomic_path

# Plot panels: (y-axis label, per-frame fields drawn in it).
PLOT_PANELS = (
    ("PSNR (dB)", ("psnr",)),
    ("SSIM", ("ssim",)),
    ("L1", ("l1",)),
    ("LPIPS", ("lpips",)),
    ("CSIM", ("csim", "csim_source")),
    ("AKD / inter-ocular", ("akd",)),
    ("warping error", ("warp_error", "warp_error_gt")),
)


def _csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def write_frame_csv(path: str | Path, records: Sequence[FrameRecord]) -> None:
    """One row per frame; empty cells where a metric has no value (no face, frame 0's warp error)."""
    names = [f.name for f in dataclasses.fields(FrameRecord)]
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(names)
            for r in records:
                writer.writerow([_csv_cell(getattr(r, n)) for n in names])


def _json_safe(value):
    """NaN and infinities are not JSON: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_summary_json(path: str | Path, summary: EvaluationSummary, inputs: dict[str, object] | None = None) -> None:
    data = summary.as_dict()
    if inputs:
        data = {"inputs": inputs, **data}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_json_safe(data), indent=2, allow_nan=False) + "\n")


def plot_frame_metrics(path: str | Path, records: Sequence[FrameRecord], title: str = "") -> None:
    """Per-frame curves, one panel per metric that has values. Uses the Agg canvas
    directly, leaving pyplot's global backend alone."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    frames = np.array([r.frame for r in records])
    panels = []
    for label, names in PLOT_PANELS:
        series = [(n, np.array([getattr(r, n) for r in records], dtype=np.float64)) for n in names]
        series = [(n, v) for n, v in series if np.isfinite(v).any()]
        if series:
            panels.append((label, series))
    fig = Figure(figsize=(9, 1.7 * max(1, len(panels)) + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(max(1, len(panels)), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (label, series) in zip(axes, panels):
        for name, values in series:
            ax.plot(frames, values, linewidth=1.0, marker="." if len(frames) < 40 else None, label=name)
        ax.set_ylabel(label, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=7, loc="best")
    axes[-1].set_xlabel("frame")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def _label(panel: np.ndarray, text: str) -> np.ndarray:
    import cv2

    scale = max(0.35, panel.shape[1] / 640)
    org = (6, int(16 * scale / 0.4))
    cv2.putText(panel, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(panel, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return panel


def side_by_side(gt: np.ndarray, pred: np.ndarray, source: np.ndarray | None = None,
                 gt_label: str = "ground truth") -> np.ndarray:
    """[source |] ground truth (or driving) | prediction, labelled, at the ground truth's size."""
    import cv2

    h, w = gt.shape[:2]
    panels = []
    if source is not None:
        src = source if source.shape[:2] == (h, w) else cv2.resize(source, (w, h), interpolation=cv2.INTER_AREA)
        panels.append(_label(np.array(src, dtype=np.uint8), "source"))
    panels.append(_label(np.array(gt, dtype=np.uint8), gt_label))
    panels.append(_label(np.array(pred, dtype=np.uint8), "prediction"))
    return np.concatenate(panels, axis=1)


def format_summary(summary: EvaluationSummary) -> list[str]:
    """Human-readable lines for the terminal."""
    lines = [f"{summary.frames} frames of {summary.width}x{summary.height}"]
    for name, value in summary.means.items():
        if value is not None:
            lines.append(f"  {name:<14} {value:.4f}")
    if summary.fid is not None:
        lines.append(f"  {'fid':<14} {summary.fid:.4f}  (over {summary.frames} frames)")
    if summary.pred_faces_missing:
        lines.append(f"  no face found in {summary.pred_faces_missing} predicted frame(s)")
    if summary.gt_faces_missing:
        lines.append(f"  no face found in {summary.gt_faces_missing} ground-truth frame(s)")
    return lines
