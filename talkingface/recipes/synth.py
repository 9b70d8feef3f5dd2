"""`talkingface synth`: official-layout datasets of synthetic talking clips from portraits.

Each portrait is read, its face found (Face Mesh, 478 points), cropped square around
the face as preprocessing crops video frames, and turned into one clip by
`talkingface.data.synthetic` (head motion, mouth, blinks, optionally head turns,
smiles, brow raises and teeth; landmarks moved with the pixels). Head turns use the
portrait's 3-D Face Mesh, found on the full photo and carried into the crop. Identity
k is portrait k. Thetas are the ArcFace alignment of the moved
Face Mesh points, as preprocessing computes them.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from talkingface.data.synthetic import (MotionSpec, SyntheticClip, detect_mesh, image_identity, landmarks_for_scheme,
                                        write_synthetic_dataset)
from talkingface.errors import ConfigError, DataError
from talkingface.landmarks.scheme import get_scheme
from talkingface.preprocess.align import theta_from_points
from talkingface.preprocess.detect import FaceDetector, box_around_points, crop_frame
from talkingface.preprocess.identity import identity_embedding
from talkingface.preprocess.portrait import detect_landmarks
from talkingface.utils.images import read_image
from talkingface.utils.options import option
from talkingface.utils.paths import refuse_overwrite
from talkingface.utils.video import write_video

# Preprocessing's crop (VideoSettings.crop_expand / crop_offset_y, the reference's values),
# so synthetic data is framed like preprocessed data.
CROP_EXPAND = 1.3
CROP_OFFSET_Y = 0.2
DLIB_DIM = 128
DEFAULT_IDENTITY_DIM = {"mediapipe478": DLIB_DIM, "dense669": 256}  # what the shipped configs expect


@dataclass
class SynthOptions:
    portraits: list[str] = option(help="Portrait image(s), one identity each.", flag="--portrait", metavar="IMG")
    out: str = option(help="Dataset root to write (replaced only once complete).")
    frames: int = option(100, "Driving frames per portrait.")
    seed: int = option(0, "Motion seed: the same seed gives the same clips.")
    scheme: str = option("mediapipe478", "Landmark scheme to write (dense669: a stand-in built from MediaPipe "
                                         "points).", choices=("mediapipe478", "dense669"))
    size: int = option(256, "Side of the square face crop, px.")
    identity: str = option("hash", "hash: a unit vector derived from the pixels (no dlib); dlib: the 128-d face "
                                   "descriptor.", choices=("hash", "dlib"))
    identity_dim: int | None = option(None, "Length of the hash identity (default: 128 for mediapipe478, 256 for "
                                            "dense669, as the shipped configs).")
    video: str | None = option(None, "Also write an mp4 preview of all clips, one after another.")
    fps: float = option(25.0, "Frame rate of the preview.")
    # motion bounds etc. (on the command line: MotionSpec's options); num_frames and seed come from the fields above
    spec: MotionSpec | None = None


@dataclass
class SynthResult:
    root: Path
    identities: int
    frames: int
    video: Path | None
    seconds: float


def crop_face(image: np.ndarray, points: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessing's square face crop, resized to size; returns (crop, points in 0..1 of the crop)."""
    h, w = image.shape[:2]
    points_px = np.asarray(points, dtype=np.float64) * (w, h)
    box = box_around_points(points_px, CROP_EXPAND, CROP_OFFSET_Y)
    return crop_frame(image, box, size), box.to_crop(points_px)


def crop_mesh(image: np.ndarray, mesh: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """`crop_face` for a 3-D Face Mesh (478 x 3, depth in image widths): the crop and the
    mesh in it (x, y in 0..1 of the crop, depth in crop widths)."""
    w = image.shape[1]
    mesh = np.asarray(mesh, dtype=np.float64)
    crop, points = crop_face(image, mesh[:, :2], size)
    box = box_around_points(mesh[:, :2] * image.shape[1::-1], CROP_EXPAND, CROP_OFFSET_Y)
    return crop, np.concatenate([points, mesh[:, 2:] * w / box.side], axis=1).astype(np.float32)


def _identity_settings(opts: SynthOptions) -> tuple[int, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    if opts.identity == "hash":
        dim = opts.identity_dim or DEFAULT_IDENTITY_DIM.get(opts.scheme, 256)
        return dim, lambda image, points: image_identity(image, dim)
    if opts.identity == "dlib":
        if opts.identity_dim not in (None, DLIB_DIM):
            raise ConfigError(f"the dlib identity has {DLIB_DIM} values; drop --identity-dim or set it to {DLIB_DIM}")
        return DLIB_DIM, identity_embedding
    raise ConfigError(f"unknown identity {opts.identity!r}; known: hash, dlib")


def run_synth(opts: SynthOptions) -> SynthResult:
    start = time.perf_counter()
    if not opts.portraits:
        raise DataError("no portraits given")
    refuse_overwrite(opts.out, opts.portraits, nested=True)  # --out is replaced whole once complete
    refuse_overwrite(opts.video, opts.portraits)
    if opts.size < 16:
        raise ConfigError(f"size must be at least 16, got {opts.size}")
    scheme = get_scheme(opts.scheme)
    spec = replace(opts.spec or MotionSpec(), num_frames=opts.frames, seed=opts.seed)  # re-validates
    identity_dim, identity_fn = _identity_settings(opts)

    turns = spec.max_yaw_deg > 0 or spec.max_pitch_deg > 0
    portraits, mesh_points, meshes = [], [], []
    for path in opts.portraits:
        image = read_image(path)
        _say_if_several_faces(image, path)
        if turns:
            crop, mesh = crop_mesh(image, detect_mesh(image, path), opts.size)
            points = mesh[:, :2]
            meshes.append(mesh)
        else:
            crop, points = crop_face(image, detect_landmarks(image, path), opts.size)
        portraits.append((crop, landmarks_for_scheme(points, scheme)))
        mesh_points.append(points)

    def thetas(k: int, clip: SyntheticClip) -> tuple[np.ndarray, np.ndarray]:
        # Face Mesh points move with the clip whatever the scheme written, so theta is
        # defined for dense669 stand-ins too.
        pts = mesh_points[k]
        return theta_from_points(pts), np.stack([theta_from_points(clip.move_points(t, pts))
                                                 for t in range(clip.num_frames)])

    root, clips = write_synthetic_dataset(opts.out, portraits, spec, identity_dim, scheme, identity_fn, thetas,
                                          meshes or None)
    total = sum(c.num_frames for c in clips)
    print(f"Wrote {len(clips)} synthetic clip(s), {total} frames ({opts.scheme} landmarks, "
          f"{identity_dim}-d {opts.identity} identity) to {root}")

    video = None
    if opts.video:
        video = Path(opts.video)
        write_video(video, (frame for clip in clips for frame in clip.frames), opts.fps)
        print(f"Preview: {video}")
    return SynthResult(root=root, identities=len(clips), frames=total, video=video,
                       seconds=time.perf_counter() - start)


def _say_if_several_faces(image: np.ndarray, path) -> None:
    """One warning naming a portrait with more than one face (Face Mesh then takes its most confident)."""
    import warnings

    with FaceDetector(full_range=True, min_confidence=0.5) as detector:
        faces = detector.count(image)
    if faces > 1:
        warnings.warn(f"{path}: {faces} faces in the portrait; using the most confident one (crop the portrait "
                      f"to choose)", UserWarning, stacklevel=2)
