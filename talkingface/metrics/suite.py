"""All metrics over a predicted video and its ground truth, frame by frame.

`FrameEvaluator` takes frame pairs one at a time (so a caller can stream them from
disk, or tee them into a video writer) and `finish()` returns per-frame records and a
summary; `evaluate_pairs` wraps it for two iterables. Frames are H x W x 3 uint8 RGB.

Per frame: PSNR (dB, capped at PSNR_CAP_DB), SSIM, L1 (0..1); LPIPS when weights are
given; CSIM against the ground truth and against the source image, and AKD, through
dlib (NaN where a face is not found; the summary counts those frames); the temporal
warping error from the previous frame (frame 0 has none), with the ground truth's own
warping error beside it as the floor that flow imperfections set. Over the set: FID
when Inception weights are given.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np

from talkingface.errors import DataError
from talkingface.metrics.identity import ArcFaceOnnxEncoder, cosine_similarity, default_identity_encoder
from talkingface.metrics.image import PSNR_CAP_DB, l1, psnr, ssim
from talkingface.metrics.landmarks import default_landmarker, keypoint_distance
from talkingface.metrics.temporal import FlowOptions, consistent_flow, pair_warping_error

if TYPE_CHECKING:  # importing lpips loads torch; the pixel metrics should not have to
    from talkingface.metrics.lpips import LpipsWeights


@dataclass
class MetricOptions:
    faces: bool = True  # CSIM and AKD through dlib: the slowest part on a CPU (~0.25 s a frame)
    temporal: bool = True
    lpips: LpipsWeights | None = None  # None: LPIPS skipped
    inception: Path | None = None  # Inception-v3 weights; None: FID skipped
    arcface: Path | None = None  # ArcFace ONNX model for CSIM; None: dlib's descriptor
    flow: FlowOptions = field(default_factory=FlowOptions)
    device: str = "cpu"  # for LPIPS and Inception
    batch_size: int = 8  # frames per LPIPS / Inception forward pass


@dataclass
class FrameRecord:
    frame: int
    psnr: float
    ssim: float
    l1: float
    lpips: float = math.nan
    csim: float = math.nan  # prediction vs ground truth
    csim_source: float = math.nan  # prediction vs source image (cross-identity runs)
    akd: float = math.nan  # mean landmark distance / ground-truth inter-ocular distance
    akd_px: float = math.nan  # the same in pixels
    warp_error: float = math.nan  # prediction, previous frame -> this one
    warp_error_gt: float = math.nan  # ground truth, same flow
    face_pred: bool | None = None  # None: face metrics not run
    face_gt: bool | None = None


# Per-frame fields averaged into the summary, in report order.
FRAME_METRICS = ("psnr", "ssim", "l1", "lpips", "csim", "csim_source", "akd", "akd_px", "warp_error", "warp_error_gt")


@dataclass
class EvaluationSummary:
    frames: int
    width: int
    height: int
    means: dict[str, float | None]  # NaN-free means over the frames that have a value; None if none has
    fid: float | None
    pred_faces_missing: int | None  # None: face metrics not run
    gt_faces_missing: int | None
    source_face_found: bool | None  # None: no source image, or face metrics not run
    skipped: dict[str, str]  # metric -> why it was not computed
    settings: dict[str, object]
    seconds: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class EvaluationResult:
    records: list[FrameRecord]
    summary: EvaluationSummary


def _check_frame(frame: np.ndarray, what: str) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise DataError(f"{what} must be an H x W x 3 uint8 RGB array, "
                        f"got {frame.dtype} with shape {frame.shape}")
    return frame


class FrameEvaluator:
    """Accumulates metrics over frame pairs; models load once, in the constructor."""

    def __init__(self, options: MetricOptions | None = None, source: np.ndarray | None = None):
        self.options = options or MetricOptions()
        self.records: list[FrameRecord] = []
        self._start = time.perf_counter()
        self._size: tuple[int, ...] | None = None
        self._prev: tuple[np.ndarray, np.ndarray] | None = None
        self._pending: list[tuple[int, np.ndarray, np.ndarray]] = []
        self._features: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
        self.skipped: dict[str, str] = {}
        opts = self.options

        self._landmarker = self._encoder = None
        self._source_embedding = None
        self.source_face_found: bool | None = None
        if opts.faces:
            self._landmarker = default_landmarker()
            self._encoder = ArcFaceOnnxEncoder(opts.arcface) if opts.arcface else default_identity_encoder()
            if source is not None:
                source = _check_frame(source, "the source image")
                face = self._landmarker.detect(source)
                self.source_face_found = face is not None
                if face is None:
                    self.skipped["csim_source"] = "no face found in the source image"
                else:
                    self._source_embedding = self._encoder.embed(source, face)
            else:
                self.skipped["csim_source"] = "no source image given"
        else:
            for name in ("csim", "csim_source", "akd", "akd_px"):
                self.skipped[name] = "face metrics turned off"
        if not opts.temporal:
            self.skipped["warp_error"] = self.skipped["warp_error_gt"] = "temporal metrics turned off"

        self._lpips = None
        if opts.lpips is not None:
            # lazy: torch (the pixel metrics stay torch-free)
            from talkingface.metrics.lpips import LpipsMetric

            self._lpips = LpipsMetric(opts.lpips, opts.device)
        else:
            self.skipped["lpips"] = "no LPIPS weights given"
        self._inception = None
        if opts.inception is not None:
            # lazy: torch (the pixel metrics stay torch-free)
            from talkingface.metrics.fid import InceptionFeatureExtractor

            self._inception = InceptionFeatureExtractor(opts.inception, opts.device)
        else:
            self.skipped["fid"] = "no Inception weights given"

    # ------------------------------------------------------------------ per frame
    def add(self, pred: np.ndarray, gt: np.ndarray) -> FrameRecord:
        index = len(self.records)
        pred = _check_frame(pred, f"frame {index} of the prediction")
        gt = _check_frame(gt, f"frame {index} of the ground truth")
        if pred.shape != gt.shape:
            raise DataError(f"frame {index}: prediction is {pred.shape[1]}x{pred.shape[0]} but ground truth is "
                            f"{gt.shape[1]}x{gt.shape[0]}; resize one of them first")
        if self._size is None:
            self._size = gt.shape
        elif gt.shape != self._size:
            raise DataError(f"frame {index} is {gt.shape[1]}x{gt.shape[0]}, earlier frames are "
                            f"{self._size[1]}x{self._size[0]}")
        rec = FrameRecord(index, min(psnr(pred, gt), PSNR_CAP_DB), ssim(pred, gt), l1(pred, gt))
        if self._landmarker is not None:
            self._face_metrics(rec, pred, gt)
        if self.options.temporal and self._prev is not None:
            flow = consistent_flow(self._prev[1], gt, self.options.flow)
            rec.warp_error = pair_warping_error(self._prev[0], pred, flow)
            rec.warp_error_gt = pair_warping_error(self._prev[1], gt, flow)
        self._prev = (pred, gt)
        self.records.append(rec)
        if self._lpips is not None or self._inception is not None:
            self._pending.append((index, pred, gt))
            if len(self._pending) >= max(1, self.options.batch_size):
                self._flush()
        return rec

    def _face_metrics(self, rec: FrameRecord, pred: np.ndarray, gt: np.ndarray) -> None:
        fp, fg = self._landmarker.detect(pred), self._landmarker.detect(gt)
        rec.face_pred, rec.face_gt = fp is not None, fg is not None
        if fp is None:
            return
        pred_embedding = self._encoder.embed(pred, fp)
        if self._source_embedding is not None:
            rec.csim_source = cosine_similarity(pred_embedding, self._source_embedding)
        if fg is None:
            return
        rec.csim = cosine_similarity(pred_embedding, self._encoder.embed(gt, fg))
        kd = keypoint_distance(fp, fg)
        rec.akd, rec.akd_px = kd.normalized, kd.pixels

    def _flush(self) -> None:
        if not self._pending:
            return
        indices = [i for i, _, _ in self._pending]
        preds = np.stack([p for _, p, _ in self._pending])
        gts = np.stack([g for _, _, g in self._pending])
        self._pending = []
        if self._lpips is not None:
            for i, d in zip(indices, self._lpips.distances(preds, gts)):
                self.records[i].lpips = float(d)
        if self._inception is not None:
            self._features[0].append(self._inception.features(preds))
            self._features[1].append(self._inception.features(gts))

    # ------------------------------------------------------------------ the end
    def finish(self) -> EvaluationResult:
        if not self.records:
            raise DataError("no frames to evaluate")
        self._flush()
        fid = None
        if self._inception is not None:
            # lazy: torch (the pixel metrics stay torch-free)
            from talkingface.metrics.fid import fid_from_features

            if len(self.records) < 2:
                self.skipped["fid"] = "FID needs at least 2 frames"
            else:
                fid = fid_from_features(np.concatenate(self._features[0]), np.concatenate(self._features[1]))
        means: dict[str, float | None] = {}
        for name in FRAME_METRICS:
            values = np.array([getattr(r, name) for r in self.records], dtype=np.float64)
            values = values[np.isfinite(values)]
            means[name] = float(values.mean()) if values.size else None
        faces_on = self._landmarker is not None
        h, w = self._size[:2]
        settings: dict[str, object] = {
            "psnr_cap_db": PSNR_CAP_DB,
            "ssim": "Gaussian window sigma 1.5 (11 taps), K1 0.01, K2 0.03, mean over RGB channels",
            "l1_units": "0..1", "warp_error_units": "0..1 (mean absolute error)",
            "flow": f"OpenCV {self.options.flow.method.value}, forward-backward occlusion check "
                    f"(alpha {self.options.flow.alpha}, beta {self.options.flow.beta})",
            "akd_normalisation": "ground-truth inter-ocular distance (68-point landmarks 36 and 45)",
            "identity_model": self._encoder.name if faces_on else None,
            "lpips": "v0.1 alex" if self._lpips is not None else None,
            "inception": self._inception.name if self._inception is not None else None,
        }
        summary = EvaluationSummary(
            frames=len(self.records), width=w, height=h, means=means, fid=fid,
            pred_faces_missing=sum(not r.face_pred for r in self.records) if faces_on else None,
            gt_faces_missing=sum(not r.face_gt for r in self.records) if faces_on else None,
            source_face_found=self.source_face_found, skipped=dict(self.skipped), settings=settings,
            seconds=time.perf_counter() - self._start)
        return EvaluationResult(self.records, summary)


def paired_frames(pred_frames: Iterable[np.ndarray], gt_frames: Iterable[np.ndarray]
                  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Zip two frame streams; DataError when one is longer than the other."""
    pred_it, gt_it = iter(pred_frames), iter(gt_frames)
    count = 0
    while True:
        p, g = next(pred_it, None), next(gt_it, None)
        if p is None and g is None:
            return
        if p is None or g is None:
            longer, rest = ("ground truth", gt_it) if p is None else ("prediction", pred_it)
            total = count + 1 + sum(1 for _ in rest)
            shorter = "prediction" if p is None else "ground truth"
            raise DataError(f"frame counts differ: the {shorter} has {count} frames, the {longer} has {total}")
        yield p, g
        count += 1


def evaluate_pairs(pred_frames: Iterable[np.ndarray], gt_frames: Iterable[np.ndarray],
                   source: np.ndarray | None = None, options: MetricOptions | None = None) -> EvaluationResult:
    """Every metric over two equally long frame sequences (see the module docstring)."""
    evaluator = FrameEvaluator(options, source)
    for pred, gt in paired_frames(pred_frames, gt_frames):
        evaluator.add(pred, gt)
    return evaluator.finish()
