"""--preview: an mp4 showing what the model will see, for checking a dataset by eye.

Each frame, side by side: the crop with the scheme's line image drawn over it, and the
crop with the 58-point subset (role points larger) and the eye and mouth loss boxes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from talkingface.landmarks.encoding import draw_line_image, eye_mask, mouth_mask, normalized_subset
from talkingface.landmarks.scheme import LandmarkScheme, get_scheme
from talkingface.utils.video import write_video

ROLE_COLOR = (255, 64, 64)
GAZE_COLOR = (64, 160, 255)
OTHER_COLOR = (255, 255, 0)
MASK_COLOR = (0, 255, 0)


def render_preview(image: np.ndarray, points: np.ndarray, scheme: LandmarkScheme) -> np.ndarray:
    """H x 2W x 3 uint8: [crop + line image | crop + subset points + mask boxes]."""
    import cv2

    h, w = image.shape[:2]
    line = draw_line_image(points, scheme, h, w)
    lines_over = np.where(line.max(axis=2, keepdims=True) > 0, line, image)

    marked = image.copy()
    subset = normalized_subset(points, scheme)
    for mask in (eye_mask(subset, scheme, h, w), mouth_mask(subset, scheme, h, w)):
        contours, _ = cv2.findContours((mask[0] > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(marked, contours, -1, MASK_COLOR, 1)
    roles = scheme.roles
    role_positions = set(roles.left_eye + roles.right_eye + roles.mouth_corners + roles.mouth_lips)
    gaze_positions = set(roles.gaze)
    pixels = np.asarray(points)[scheme.subset] * (w, h)
    for position, (x, y) in enumerate(pixels):
        color = ROLE_COLOR if position in role_positions else GAZE_COLOR if position in gaze_positions else OTHER_COLOR
        radius = 2 if position in role_positions else 1
        cv2.circle(marked, (int(x), int(y)), radius, color, -1, cv2.LINE_AA)
    return np.concatenate([lines_over, marked], axis=1)


def _frames(frames_dir: Path, scheme: LandmarkScheme) -> Iterator[np.ndarray]:
    import cv2

    for png in sorted((frames_dir / "imgs").glob("*.png")):
        image = cv2.cvtColor(cv2.imread(str(png), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        points = np.load(frames_dir / "ldmks" / f"{png.stem}_ldmk.npy")
        yield render_preview(image, points, scheme)


def write_preview(frames_dir: Path, out: Path, fps: float, scheme_name: str = "mediapipe478") -> int:
    """Render every frame in {frames_dir}/imgs (streamed) into `out`; returns the frame count."""
    return write_video(out, _frames(frames_dir, get_scheme(scheme_name)), fps)
