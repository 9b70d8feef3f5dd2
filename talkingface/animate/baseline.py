"""The no-learning baseline for motion following: the source frame moved as a rigid picture.

Relative motion gives, for every driving frame, where the source's landmarks should be.
Fitting a similarity transform (rotation, uniform scale, shift) from the source's skull
points (animate.motion.STABLE_POINTS) to those positions and warping the whole source
frame by it follows the driving head with no model at all. It cannot open a mouth or
close an eye. A learned model earns its keep only by what it does beyond this: the
motion scores (metrics.reenactment) report it beside the model's output, and the tests
require the mouth to beat it clearly.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from talkingface.animate.driving import driving_poses, track_driving
from talkingface.animate.motion import STABLE_POINTS
from talkingface.animate.pipeline import AnimateSettings, SourceFace, load_source, reference_frame
from talkingface.preprocess.align import fit_similarity


def similarity_warp_frames(source: SourceFace, poses: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """The source frame (H x W x 3 uint8) moved by each pose's similarity to the source's
    landmarks; poses are N x 2 in 0..1 of the source crop (as animate.pipeline.source_poses
    yields them)."""
    import cv2

    stable = list(STABLE_POINTS)
    h, w = source.frame.shape[:2]
    source_px = source.box.to_frame(source.points)[stable]
    for pose in poses:
        m = fit_similarity(source_px, source.box.to_frame(pose)[stable])  # 2 x 3, source -> pose
        yield cv2.warpAffine(source.frame, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def similarity_baseline(source_path: str | os.PathLike, driving_path: str | os.PathLike,
                        settings: AnimateSettings) -> list[np.ndarray]:
    """The baseline video for a source and a driving video, with the same face detection,
    track, reference frame and relative motion `animate` uses (settings_for_model gives them)."""
    source = load_source(source_path, settings)
    track, _, _ = track_driving(Path(driving_path), settings, progress=False)
    with track:
        reference = reference_frame(track, source.points, settings.find_best_frame)
        return list(similarity_warp_frames(source, driving_poses(source, track, settings, reference)))
