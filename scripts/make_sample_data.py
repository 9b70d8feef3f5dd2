"""Build the small official-layout sample shipped in talkingface/assets/sample_data.

Images: scikit-image's astronaut photograph (public domain), a 256x256 face crop
moved by a smooth synthetic head motion (shift, scale, in-plane rotation).
Landmarks: the dense669 tracker was never released, so no real dense669 landmarks
exist for this photo. The sample uses the well-formed dense669 point set of the
parity fixture, placed on the face box and moved with the same motion. It exercises
the official pipeline end to end (layout, encoding, checkpoint, video); the official
model's output on it is not a meaningful reconstruction. For that, use data prepared
with the dense tracker, or the MediaPipe path.

Run from the repo root: python scripts/make_sample_data.py
"""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
from skimage import data

from talkingface.data.writer import DrivingFrame, IdentityRecord, write_official_dataset

OUT = Path("talkingface/assets/sample_data")
FIXTURE = Path("../shared/parity/base_fixture_a.npz")
NUM_FRAMES = 8


def affine(t: float) -> np.ndarray:
    """2x3 matrix in 0..1 crop coordinates: a slow nod/turn and a slight zoom."""
    angle = np.deg2rad(4 * np.sin(2 * np.pi * t))
    scale = 1 + 0.04 * np.sin(np.pi * t)
    shift = np.array([0.03 * np.sin(2 * np.pi * t), 0.02 * np.cos(2 * np.pi * t) - 0.02])
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    rot = np.array([[c, -s], [s, c]])
    centre = np.array([0.5, 0.5])
    return np.hstack([rot, (centre - rot @ centre + shift)[:, None]])


def main() -> None:
    photo = data.astronaut()  # 512 x 512 RGB
    crop = cv2.resize(photo[0:300, 90:390], (256, 256), interpolation=cv2.INTER_AREA)
    fx = np.load(FIXTURE)
    points = fx["source_ldmk_669"][0].astype(np.float64)
    identity = fx["source_id"][0]
    frames = []
    for i in range(NUM_FRAMES):
        m = affine(i / NUM_FRAMES)
        pix = m.copy()
        pix[:, 2] *= 256
        image = cv2.warpAffine(crop, pix, (256, 256), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        moved = points @ m[:, :2].T + m[:, 2]
        frames.append(DrivingFrame(f"{i:08d}.png", image, moved.astype(np.float32)))
    if OUT.exists():
        shutil.rmtree(OUT)
    write_official_dataset(OUT, [IdentityRecord(crop, points.astype(np.float32), identity, frames)])
    print(f"wrote {OUT} ({sum(p.stat().st_size for p in OUT.rglob('*') if p.is_file()) / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
