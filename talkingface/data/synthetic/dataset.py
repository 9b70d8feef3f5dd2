"""Synthetic datasets in the official layout: one clip per portrait, its ground-truth motion
beside the frames (`write_synthetic_dataset`)."""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from talkingface.data.synthetic.clip import SyntheticClip, synthesize_clip
from talkingface.data.synthetic.motion import MotionSpec
from talkingface.data.writer import IDENTITY_THETA, DrivingFrame, IdentityRecord, write_identity, write_map
from talkingface.errors import DataError
from talkingface.landmarks.scheme import LandmarkScheme, get_scheme
from talkingface.utils.atomic import atomic_dir


# --------------------------------------------------------------------------- datasets
def image_identity(image: np.ndarray, dim: int) -> np.ndarray:
    """A deterministic unit vector derived from the pixels (stands in for a face embedding)."""
    digest = hashlib.sha256(np.ascontiguousarray(image).tobytes()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    v = rng.standard_normal(dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


def clip_seed(seed: int, index: int) -> int:
    """The seed of portrait `index`'s clip in a dataset made with `seed`."""
    return int(np.random.SeedSequence((seed, index)).generate_state(1)[0])


MOTION_FILE = "synth_motion.npz"


ThetasFn = Callable[[int, SyntheticClip], tuple[np.ndarray, np.ndarray]]


def write_synthetic_dataset(root: str | Path, portraits: Sequence[tuple[np.ndarray, np.ndarray]],
                            spec: MotionSpec, identity_dim: int = 256, scheme: LandmarkScheme | None = None,
                            identity_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                            thetas_fn: ThetasFn | None = None, meshes: Sequence[np.ndarray | None] | None = None
                            ) -> tuple[Path, list[SyntheticClip]]:
    """Write one synthetic clip per (image, landmarks 0..1) portrait in the official layout.

    Identity k: the portrait is the source, its clip the driving frames 00000000.png...
    Clip k uses seed `clip_seed(spec.seed, k)`. `scheme` defaults to dense669.
    - identity: `identity_fn(image, landmarks)`, by default `image_identity` (no dlib).
    - theta: `thetas_fn(k, clip)` -> (source 2 x 3, frames T x 2 x 3); by default the
      identity matrix (no alignment known for an arbitrary scheme).
    - meshes: per portrait, its 3-D Face Mesh for head turns (`synthesize_clip`'s `mesh`).
    The ground-truth motion goes beside the frames in `<k>/synth_motion.npz` (affines,
    affines_px, mouth_open, eye_closure, shift, scale, rotation_deg, face_height_px,
    yaw_deg, pitch_deg, smile, brow);
    the official reader ignores it. Returns (root, clips); the folder appears only
    when complete.
    """
    if not portraits:
        raise DataError("nothing to write: no portraits", root)
    scheme = scheme or get_scheme("dense669")
    root = Path(root)
    clips = []
    with atomic_dir(root) as tmp:
        mapping: dict[str, int] = {}
        for k, (image, landmarks) in enumerate(portraits):
            clip = synthesize_clip(image, landmarks, scheme, replace(spec, seed=clip_seed(spec.seed, k)),
                                   meshes[k] if meshes else None)
            identity = (identity_fn(image, clip.source_landmarks) if identity_fn
                        else image_identity(image, identity_dim))
            identity = np.asarray(identity, dtype=np.float32).reshape(-1)
            if identity.shape != (identity_dim,):
                raise DataError(f"identity vector of portrait {k} has {identity.size} values, expected {identity_dim}")
            if thetas_fn:
                source_theta, thetas = thetas_fn(k, clip)
            else:
                source_theta, thetas = IDENTITY_THETA, np.broadcast_to(IDENTITY_THETA, (clip.num_frames, 2, 3))
            frames = [DrivingFrame(f"{t:08d}.png", frame, clip.landmarks[t], np.asarray(thetas[t], np.float32))
                      for t, frame in enumerate(clip.frames)]
            record = IdentityRecord(image, clip.source_landmarks, identity, frames,
                                    np.asarray(source_theta, np.float32))
            mapping.update(write_identity(tmp, k, record))
            m = clip.motion
            np.savez(tmp / str(k) / MOTION_FILE, affines=clip.affines, affines_px=clip.affines_px,
                     mouth_open=m.mouth_open, eye_closure=m.eye_closure, shift=m.shift, scale=m.scale,
                     rotation_deg=m.rotation_deg, face_height_px=clip.geometry.face_height,
                     yaw_deg=m.yaw_deg, pitch_deg=m.pitch_deg, smile=m.smile, brow=m.brow)
            clips.append(clip)
        write_map(tmp, mapping)
    return root, clips
