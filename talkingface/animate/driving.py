"""A driving video as motion: its landmark track, and the source poses it asks for.

Shared by `animate` (which renders the poses) and the no-learning baseline
(animate.baseline, which moves the source frame rigidly by them), so both read the same
track and the same relative motion, scene cuts included.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from talkingface.animate.faces import FaceTracker
from talkingface.animate.motion import motion_transfer
from talkingface.animate.pipeline import (AnimateSettings, LandmarkTrack, SourceFace, close_frames, open_video,
                                          source_poses, track_landmarks)
from talkingface.errors import DataError
from talkingface.preprocess.scenes import SceneCutDetector


def track_driving(path: Path, settings: AnimateSettings, progress: bool) -> tuple[LandmarkTrack, float, bool]:
    """(landmark track, fps, several faces seen) of a driving video, with its scene cuts; the
    caller closes the track. A video without a decodable frame or without any face is a
    DataError naming the file."""
    driving = open_video(path)
    cuts = SceneCutDetector()
    try:
        with FaceTracker(settings.tracker, label=f"{path} (driving)") as tracker, \
                tqdm(total=driving.num_frames or None, unit="frame", desc="track", dynamic_ncols=True,
                     disable=not progress) as bar:

            def is_cut(frame: np.ndarray) -> bool:
                if cuts.push(frame):
                    tracker.reset()  # the new shot's face is searched afresh
                    return True
                return False

            track = track_landmarks(driving.frames, tracker.process, settings, on_frame=lambda: bar.update(1),
                                    is_cut=is_cut)
            several = tracker.several_faces > 0
    finally:
        close_frames(driving)
    if track.count == 0 or track.first_good is None:
        track.close()
        if track.count == 0:
            raise DataError("no frames could be decoded", path)
        raise DataError(f"no face found in any of the {track.count} driving frames", path)
    return track, (driving.fps if driving.fps > 0 else 25.0), several


def driving_poses(source: SourceFace, track: LandmarkTrack, settings: AnimateSettings,
                  reference: int) -> Iterator[np.ndarray]:
    """The source crop's landmarks (N x 2, 0..1) for every driving frame: motion measured from
    the `reference` driving frame (relative or absolute, as `settings` says) and, with relative
    motion, measured afresh from the first face after each scene cut."""
    def motion_from(driving_points: np.ndarray):
        return motion_transfer(source.points, driving_points, settings.relative, settings.crop_expand,
                               settings.crop_offset_y, limits=settings.head_limits)

    return source_poses(track, motion_from(track.get(reference)), rebase=motion_from if settings.relative else None)
