"""A synthetic clip from one portrait (`synthesize_clip`, `SyntheticClip`: frames rendered on
access, landmarks moved by the same map as the pixels) and the mapping of MediaPipe's 478
points to any landmark scheme (`landmarks_for_scheme`). The geometry: the package doc."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from talkingface.data.synthetic.expr import brow_warps, smile_warps
from talkingface.data.synthetic.motion import Motion, MotionSpec, generate_motion
from talkingface.data.synthetic.pose3d import MESH_POINTS, HeadMesh, PoseMap, detect_mesh
from talkingface.data.synthetic.warps import (_CAVITY_MIX, _CAVITY_RGB, _TEETH_RGB, FaceGeometry, _affine_px,
                                              _eye_warp, _inside, _mouth_warp, _MouthWarp, _to_normalised)
from talkingface.errors import DataError
from talkingface.landmarks.scheme import LandmarkScheme

# --------------------------------------------------------------------------- clips
class _LazyFrames(Sequence[np.ndarray]):
    """Frames rendered on access, so a long clip costs one frame of memory."""

    def __init__(self, clip: "SyntheticClip"):
        self._clip = clip

    def __len__(self) -> int:
        return len(self._clip.affines)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return self._clip.render(i % len(self))

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self._clip.render(i)


@dataclass
class SyntheticClip:
    """A synthetic clip and its ground truth.

    `affines[t]` maps source landmarks (0..1, after the local mouth/eye warps and the
    head turn, if any) to frame t (0..1): q = A[:, :2] @ u + A[:, 2]. `mouth_open[t]` is
    the lip gap added at the mouth centre (fraction of the source face height, before
    the global scale); `eye_closure[t]` is 0 open .. 1 shut; `motion` also holds the
    head turn (yaw, pitch), smile and brow curves. `frames` renders on access; index it
    or iterate it (`list(clip.frames)` keeps them all).
    """

    source: np.ndarray  # H x W x 3 uint8
    source_landmarks: np.ndarray  # N x 2, 0..1
    landmarks: np.ndarray  # T x N x 2, 0..1
    affines: np.ndarray  # T x 2 x 3, normalised coordinates, forward
    affines_px: np.ndarray  # T x 2 x 3, the same in pixels
    motion: Motion
    geometry: FaceGeometry
    _warps: list[tuple] = field(repr=False, default_factory=list)  # per frame, the backward chain's order
    _poses: list[PoseMap | None] = field(repr=False, default_factory=list)  # per frame; None: no head turn
    _teeth: float = field(repr=False, default=0.0)  # MotionSpec.teeth
    frames: Sequence[np.ndarray] = field(init=False, repr=False)

    def __post_init__(self):
        self.frames = _LazyFrames(self)

    @property
    def num_frames(self) -> int:
        return len(self.affines)

    @property
    def mouth_open(self) -> np.ndarray:
        return self.motion.mouth_open

    @property
    def eye_closure(self) -> np.ndarray:
        return self.motion.eye_closure

    def _pose(self, t: int) -> PoseMap | None:
        return self._poses[t] if self._poses else None

    def _backward_px(self, t: int, x: np.ndarray, y: np.ndarray, triangles: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """Frame-t pixel coordinates -> source pixel coordinates, the mouth-gap opacity and
        the teeth opacity (None without teeth). `triangles`: the head turn's front-most
        triangle per point when known (rasterised for whole frames)."""
        import cv2

        pose = self._pose(t)
        if pose is None:
            inv = cv2.invertAffineTransform(self.affines_px[t])
            rx = inv[0, 0] * x + inv[0, 1] * y + inv[0, 2]
            ry = inv[1, 0] * x + inv[1, 1] * y + inv[1, 2]
        else:
            rx, ry = pose.backward(x, y, triangles)
        px, py, gap = rx.copy(), ry.copy(), np.zeros_like(rx)
        teeth = np.zeros_like(rx) if self._teeth > 0 else None
        for warp in self._warps[t]:
            if not warp.moves:
                continue
            sel = _inside(warp.support(), px, py)  # warps are local: skip the rest of the image
            if sel.any():
                if teeth is not None and isinstance(warp, _MouthWarp):
                    teeth[sel] = self._teeth * warp.teeth(px[sel], py[sel])
                moved = warp.backward(px[sel], py[sel])
                px[sel], py[sel] = moved[0], moved[1]
                if isinstance(warp, _MouthWarp):
                    gap[sel] = moved[2]
        return px, py, gap, teeth

    def source_points(self, t: int, points: np.ndarray) -> np.ndarray:
        """Where frame-t points (M x 2, 0..1) were in the source (0..1): the pixels' map."""
        h, w = self.source.shape[:2]
        px, py, _, _ = self._backward_px(t, points[:, 0].astype(np.float64) * w, points[:, 1].astype(np.float64) * h)
        return np.stack([px / w, py / h], axis=1)

    def sampling_map(self, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frame t's backward map for cv2.remap: per output pixel, the source point (pixel
        centres at integers) and the mouth-gap opacity."""
        map_x, map_y, gap, _ = self._layers(t)
        return map_x, map_y, gap

    def triangle_map(self, t: int) -> np.ndarray | None:
        """H x W: the head turn's triangle drawn at each pixel (-1: none), or None when
        frame t has no turn."""
        pose = self._pose(t)
        return None if pose is None else pose.raster(*self.source.shape[:2])

    def _layers(self, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        h, w = self.source.shape[:2]
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
        px, py, gap, teeth = self._backward_px(t, xs, ys, self.triangle_map(t))
        return px - 0.5, py - 0.5, gap, teeth

    def render(self, t: int) -> np.ndarray:
        import cv2

        map_x, map_y, gap, teeth = self._layers(t)
        frame = cv2.remap(self.source, map_x.astype(np.float32), map_y.astype(np.float32),
                          interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if gap.any():
            alpha = (_CAVITY_MIX * gap)[..., None].astype(np.float32)
            if teeth is None:
                frame = np.clip(frame * (1 - alpha) + _CAVITY_RGB * alpha + 0.5, 0, 255).astype(np.uint8)
            else:  # the teeth over the cavity, one rounding
                beta = teeth[..., None].astype(np.float32)
                mixed = (frame * (1 - alpha) + _CAVITY_RGB * alpha) * (1 - beta) + _TEETH_RGB * beta
                frame = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
        return frame

    def move_points(self, t: int, points: np.ndarray) -> np.ndarray:
        """Where source points (M x 2, 0..1) are in frame t (0..1)."""
        h, w = self.source.shape[:2]
        x, y = points[:, 0].astype(np.float64) * w, points[:, 1].astype(np.float64) * h
        for warp in reversed(self._warps[t]):  # undo the backward chain, last warp first
            if warp.moves:
                x, y = warp.forward(x, y)
        pose = self._pose(t)
        if pose is not None:
            qx, qy = pose.forward(x, y)
            return np.stack([qx / w, qy / h], axis=1)
        m = self.affines_px[t]
        qx = m[0, 0] * x + m[0, 1] * y + m[0, 2]
        qy = m[1, 0] * x + m[1, 1] * y + m[1, 2]
        return np.stack([qx / w, qy / h], axis=1)


def _check_inputs(image: np.ndarray, landmarks: np.ndarray, scheme: LandmarkScheme) -> None:
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        raise DataError(f"portrait must be an H x W x 3 uint8 array, got {getattr(image, 'shape', type(image))}")
    if min(image.shape[:2]) < 16:
        raise DataError(f"portrait is too small ({image.shape[1]}x{image.shape[0]})")
    if landmarks.shape != (scheme.num_points, 2):
        raise DataError(f"landmarks must be {scheme.num_points} x 2 for scheme {scheme.name}, got "
                        f"{'x'.join(map(str, landmarks.shape))}")
    if not np.all(np.isfinite(landmarks)):
        raise DataError("landmarks contain NaN or inf")


def _mesh_px(image: np.ndarray, landmarks: np.ndarray, mesh: np.ndarray | None) -> np.ndarray:
    """The portrait's 3-D Face Mesh in pixels (z scaled like x): `mesh` (478 x 3, x and y in
    0..1, z in image widths, as `detect_mesh` gives), else detected. Landmarks given in
    Face Mesh's own 478 points replace its (x, y), so the turned landmarks are exactly
    the turned mesh."""
    h, w = image.shape[:2]
    mesh = detect_mesh(image) if mesh is None else np.asarray(mesh, dtype=np.float64)
    if mesh.shape != (MESH_POINTS, 3):
        raise DataError(f"the Face Mesh must be {MESH_POINTS} x 3, got {'x'.join(map(str, mesh.shape))}")
    mesh = mesh.astype(np.float64).copy()
    if landmarks.shape == (MESH_POINTS, 2):
        mesh[:, :2] = landmarks
    return mesh * (w, h, w)


def synthesize_clip(image: np.ndarray, landmarks: np.ndarray, scheme: LandmarkScheme,
                    spec: MotionSpec, mesh: np.ndarray | None = None, motion: Motion | None = None
                    ) -> SyntheticClip:
    """Make a clip from a portrait: head motion, speech-like mouth motion, blinks (and,
    when the spec asks, head turns, smiles, brow raises, teeth).

    image: H x W x 3 uint8 RGB; landmarks: N x 2 (x, y) in 0..1 for `scheme`. The same
    seed gives the same clip. Frames render lazily (see `SyntheticClip`). Head turns
    (`max_yaw_deg`, `max_pitch_deg`) need the portrait's 3-D Face Mesh: `mesh` (478 x 3,
    `detect_mesh`'s convention), or Face Mesh runs on `image`. `motion` replaces the
    spec's random curves (`generate_motion(spec)`) with given ones (any number of frames).
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    _check_inputs(image, landmarks, scheme)
    h, w = image.shape[:2]
    size = np.array([w, h], dtype=np.float64)
    geo = FaceGeometry.from_landmarks(landmarks * size, scheme)
    motion = generate_motion(spec) if motion is None else motion
    frames = len(motion.scale)
    warps, affines_px = [], []
    for t in range(frames):
        # The backward chain's order: brows and smile act last on the way out of the source.
        warps.append((*brow_warps(geo, motion.brow[t]), *smile_warps(geo, motion.smile[t]),
                      _mouth_warp(geo, motion.mouth_open[t] * geo.face_height),
                      _eye_warp(geo.left_eye, geo.down, motion.eye_closure[t]),
                      _eye_warp(geo.right_eye, geo.down, motion.eye_closure[t])))
        affines_px.append(_affine_px(geo.centre, motion.shift[t] * size, motion.scale[t], motion.rotation_deg[t]))
    affines_px = np.stack(affines_px)
    poses: list[PoseMap | None] = []
    if motion.turns_head:
        head = HeadMesh.build(_mesh_px(image, landmarks, mesh), w, h)
        poses = [PoseMap.build(head, yaw, pitch, a) if (yaw or pitch) else None
                 for yaw, pitch, a in zip(motion.yaw_deg, motion.pitch_deg, affines_px)]
    clip = SyntheticClip(
        source=np.ascontiguousarray(image), source_landmarks=landmarks.astype(np.float32),
        landmarks=np.zeros((frames, len(landmarks), 2), dtype=np.float32),
        affines=np.stack([_to_normalised(m, w, h) for m in affines_px]), affines_px=affines_px,
        motion=motion, geometry=geo, _warps=warps, _poses=poses, _teeth=spec.teeth)
    for t in range(frames):
        clip.landmarks[t] = clip.move_points(t, landmarks)
    return clip


# --------------------------------------------------------------------------- landmarks from a photo
# Face Mesh indices for the subset roles, as in the mediapipe478 scheme (image-left eye
# first; outer lips, so the mouth mask covers both lips; the iris rings).
MEDIAPIPE_ROLE_POINTS: dict[int, int] = {
    1: 33, 2: 133, 3: 159, 4: 145,  # left eye: left, right, top, bottom
    5: 362, 6: 263, 7: 386, 8: 374,  # right eye
    14: 61, 15: 291,  # mouth corners
    56: 0, 57: 17,  # lips: top, bottom
    29: 469, 30: 470, 31: 471, 32: 472,  # left iris ring
    33: 474, 34: 475, 35: 476, 36: 477,  # right iris ring
}
MEDIAPIPE_POINTS = 478
_MEDIAPIPE_MESH_POINTS = 468  # without the iris


def landmarks_for_scheme(mediapipe_points: np.ndarray, scheme: LandmarkScheme) -> np.ndarray:
    """MediaPipe's 478 points as `scheme` points.

    A 478-point scheme takes them as they are. For another scheme (dense669, whose
    tracker was never released) this builds a stand-in: the subset's role positions get
    the matching MediaPipe points, every other point a MediaPipe mesh point in a fixed
    order. It is on the face and moves with it, but is not that tracker's output.
    """
    if mediapipe_points.shape != (MEDIAPIPE_POINTS, 2):
        raise DataError(f"expected {MEDIAPIPE_POINTS} x 2 MediaPipe landmarks, got {mediapipe_points.shape}")
    if scheme.num_points == MEDIAPIPE_POINTS:
        return mediapipe_points.astype(np.float32)
    order = (np.arange(scheme.num_points) * (_MEDIAPIPE_MESH_POINTS - 1)) // max(scheme.num_points - 1, 1)
    for position, index in MEDIAPIPE_ROLE_POINTS.items():
        order[scheme.subset[position]] = index
    return mediapipe_points[order].astype(np.float32)


