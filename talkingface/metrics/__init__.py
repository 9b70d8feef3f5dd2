"""Evaluation metrics for talking-head results: the library functions recipes call.

Pixel metrics (`psnr`, `ssim`, `l1`) and the temporal `warping_error` need only NumPy
and OpenCV; `csim` and `akd` load dlib's models on first use; LPIPS and FID live in
`talkingface.metrics.lpips` / `.fid` and need user-provided weights.
`evaluate_pairs` runs everything over a pair of frame sequences.
"""
from talkingface.metrics.identity import csim
from talkingface.metrics.image import PSNR_CAP_DB, l1, psnr, ssim
from talkingface.metrics.landmarks import akd
from talkingface.metrics.suite import (EvaluationResult, EvaluationSummary, FrameEvaluator, FrameRecord,
                                       MetricOptions, evaluate_pairs)
from talkingface.metrics.temporal import warping_error

__all__ = ["PSNR_CAP_DB", "EvaluationResult", "EvaluationSummary", "FrameEvaluator", "FrameRecord", "MetricOptions",
           "akd", "csim", "evaluate_pairs", "l1", "psnr", "ssim", "warping_error"]
