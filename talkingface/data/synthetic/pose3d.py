"""Out-of-plane head turns for synthetic clips: the face lifted onto its 3-D Face Mesh,
rotated, projected back, and re-rendered with a piecewise-affine warp.

Lift. MediaPipe Face Mesh gives each of its 478 points (x, y) and a relative depth z
(same scale as x, smaller is nearer the camera). In source pixels a point is
(x W, y H, z W). The head turns about a pivot behind the face: the mesh's mean (x, y)
and its mean depth plus half the face width (a neck-like axis, not the nose).

Rotate and project. R = R_pitch R_yaw; a point P goes to pivot + R (P - pivot),
projected orthographically (drop the depth). Positive yaw moves the nose to
image-right, positive pitch moves it up (chin up).

Cover the image. The mesh points are triangulated (Delaunay, once, on the frontal
positions) together with anchors:
- ring 1 and ring 2: the face outline scaled by 1.25 and 1.6 about its centre (hair,
  ears, neck); each follows 75% / 35% of the motion of its outline point;
- fixed anchors along the image border and on a box far outside it, so every output
  pixel lies in some triangle for any in-plane motion.
Each triangle maps affinely, so the map is continuous and piecewise affine; points are
moved by locating their frontal triangle (forward) or their front-most output
triangle (backward): the two are exact inverses wherever that point is visible.

Occlusion. Triangles are drawn back to front: those flipped by the turn (facing away)
first, then the background rings and the frame, then face triangles by depth, far
first. A pixel takes the front-most triangle drawn over it, so the far cheek slides
under the nose and the outline instead of smearing over it. The turn also composes
with in-plane motion: output = A (turned frontal face), A the clip's affine.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from talkingface.errors import DataError

MESH_POINTS = 478
PIVOT_BEHIND = 0.5  # pivot depth behind the mean face depth, fraction of the face width
RING_SCALES = (1.25, 1.6)
RING_FOLLOW = (0.75, 0.35)
# Depth is smoothed over 2-D neighbours (Gaussian, this fraction of the face width): at
# the face's sides Face Mesh points a pixel apart can be tens of pixels apart in depth
# (the surface is steep there), which turned their thin strip into a saw-tooth outline.
DEPTH_SMOOTHING = 0.05
_BORDER_STEPS = 8  # anchors per image side
_FAR = (-3.0, 4.0)  # outer anchor box, in image sizes: covers any in-plane motion the spec allows
_MIN_AREA = 1e-6  # px^2: output triangles smaller than this are not drawn


def detect_mesh(image: np.ndarray, path: str | Path | None = None) -> np.ndarray:
    """Face Mesh (with iris) of one RGB uint8 image: 478 x 3 float32, (x, y) in 0..1 and
    MediaPipe's relative depth z (units of the image width). Same settings as
    `detect_landmarks` (still-image mode). Raises DataError naming `path` when no face."""
    import mediapipe as mp

    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                                         min_detection_confidence=0.5) as mesh:
        result = mesh.process(np.ascontiguousarray(image, dtype=np.uint8))
    if not result.multi_face_landmarks or len(result.multi_face_landmarks[0].landmark) != MESH_POINTS:
        raise DataError("no face found in the portrait", path)
    return np.array([(p.x, p.y, p.z) for p in result.multi_face_landmarks[0].landmark], dtype=np.float32)


def _face_oval() -> np.ndarray:
    """Face Mesh's outline indices, in order around the face."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_FACE_OVAL

    nxt = dict(FACEMESH_FACE_OVAL)
    start = min(nxt)
    order = [start]
    while nxt[order[-1]] != start:
        order.append(nxt[order[-1]])
    return np.array(order)


def rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """3 x 3, image axes (x right, y down, z away from the camera)."""
    a, b = np.deg2rad(yaw_deg), np.deg2rad(pitch_deg)
    yaw = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])  # nose (z < 0) to +x
    pitch = np.array([[1, 0, 0], [0, np.cos(b), np.sin(b)], [0, -np.sin(b), np.cos(b)]])  # nose to -y
    return pitch @ yaw


def _signed_area(p: np.ndarray) -> np.ndarray:
    """p: F x 3 x 2 -> twice the signed areas."""
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    return e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]


def _barycentric(points: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """points M x 2, tri F x 3 x 2 -> M x F x 3 barycentric coordinates (nan for degenerate)."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    det = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    det = np.where(np.abs(det) < 1e-12, np.nan, det)
    dx, dy = points[:, None, 0] - a[None, :, 0], points[:, None, 1] - a[None, :, 1]
    l1 = (dx * (c[:, 1] - a[:, 1]) - dy * (c[:, 0] - a[:, 0])) / det
    l2 = ((b[:, 0] - a[:, 0]) * dy - (b[:, 1] - a[:, 1]) * dx) / det
    return np.stack([1 - l1 - l2, l1, l2], axis=-1)


def _locate(points: np.ndarray, tri: np.ndarray, priority: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Per point, the triangle containing it with the highest priority (>= 0); a point in
    none gets the allowed triangle it is nearest to being inside of."""
    out = np.empty(len(points), dtype=np.int64)
    allowed = priority >= 0
    for s in range(0, len(points), chunk):
        lam = _barycentric(points[s:s + chunk], tri)
        worst = np.nan_to_num(lam.min(-1), nan=-np.inf)
        worst[:, ~allowed] = -np.inf
        inside = worst >= -1e-9
        score = np.where(inside, priority[None, :].astype(np.float64), -1.0)
        best = score.argmax(1)
        none = ~inside.any(1)
        best[none] = worst[none].argmax(1)
        out[s:s + chunk] = best
    return out


def _weights(points: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Barycentric coordinates of each point (M x 2) in its own triangle (M x 3 x 2): M x 3."""
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
    det = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    det = np.where(np.abs(det) < 1e-12, np.nan, det)
    dx, dy = points[:, 0] - a[:, 0], points[:, 1] - a[:, 1]
    l1 = (dx * (c[:, 1] - a[:, 1]) - dy * (c[:, 0] - a[:, 0])) / det
    l2 = ((b[:, 0] - a[:, 0]) * dy - (b[:, 1] - a[:, 1]) * dx) / det
    return np.stack([1 - l1 - l2, l1, l2], axis=1)


@dataclass(frozen=True)
class HeadMesh:
    """The frontal face and its surroundings, triangulated once per clip (pixels)."""

    face: np.ndarray  # 478 x 3: x, y, z of the Face Mesh points, px (z scaled like x)
    points: np.ndarray  # V x 2: the face points, then the anchors (frontal positions)
    triangles: np.ndarray  # F x 3 vertex indices
    tier: np.ndarray  # F: 0 face, 1 ring 1, 2 ring 2, 3 frame (highest of its vertices)
    follow: np.ndarray  # anchors: share of their outline point's motion they follow
    nearest: np.ndarray  # anchors: index of that outline point
    pivot: np.ndarray  # 3, px
    delaunay: object = field(repr=False, compare=False, default=None)  # scipy's, for fast point location

    @staticmethod
    def build(face_px: np.ndarray, width: int, height: int) -> HeadMesh:
        from scipy.spatial import Delaunay

        face_px = np.asarray(face_px, dtype=np.float64)
        if face_px.shape != (MESH_POINTS, 3) or not np.all(np.isfinite(face_px)):
            raise DataError(f"a head turn needs the {MESH_POINTS} x 3 Face Mesh of the portrait, got "
                            f"{'x'.join(map(str, face_px.shape))}")
        oval = _face_oval()
        outline = face_px[oval, :2]
        middle = outline.mean(0)
        face_width = float(np.ptp(outline[:, 0]))
        gap2 = ((face_px[:, None, :2] - face_px[None, :, :2]) ** 2).sum(-1)
        weights = np.exp(-0.5 * gap2 / (DEPTH_SMOOTHING * face_width) ** 2)
        face_px = np.concatenate([face_px[:, :2], (weights @ face_px[:, 2:]) / weights.sum(1, keepdims=True)], 1)
        pivot = np.array([*face_px[:, :2].mean(0), face_px[:, 2].mean() + PIVOT_BEHIND * face_width])
        size = np.array([width, height], dtype=np.float64)
        margin = 0.03 * size
        anchors, follow, nearest, tiers = [], [], [], []
        for k, (scale, share) in enumerate(zip(RING_SCALES, RING_FOLLOW)):
            ring = middle + scale * (outline - middle)
            keep = np.all((ring > margin) & (ring < size - margin), axis=1)  # the border has its own anchors
            anchors.append(ring[keep])
            follow += [share] * int(keep.sum())
            nearest += oval[keep].tolist()
            tiers += [k + 1] * int(keep.sum())
        steps = np.linspace(0, 1, _BORDER_STEPS + 1)[:-1]
        unit_square = np.concatenate([np.stack([steps, 0 * steps], 1), np.stack([1 + 0 * steps, steps], 1),
                                      np.stack([1 - steps, 1 + 0 * steps], 1), np.stack([0 * steps, 1 - steps], 1)])
        far = _FAR[0] + (_FAR[1] - _FAR[0]) * unit_square[::_BORDER_STEPS // 2]
        for frame_points in (unit_square * size, far * size):
            anchors.append(frame_points)
            follow += [0.0] * len(frame_points)
            nearest += [0] * len(frame_points)
            tiers += [3] * len(frame_points)
        points = np.concatenate([face_px[:, :2], *anchors])
        delaunay = Delaunay(points)
        triangles = delaunay.simplices.astype(np.int64)
        vertex_tier = np.concatenate([np.zeros(MESH_POINTS, np.int64), np.array(tiers, np.int64)])
        return HeadMesh(face=face_px, points=points, triangles=triangles, tier=vertex_tier[triangles].max(1),
                        follow=np.array(follow), nearest=np.array(nearest, np.int64), pivot=pivot,
                        delaunay=delaunay)


@dataclass(frozen=True)
class PoseMap:
    """One frame's turn: frontal (pre-turn) pixels <-> output pixels, including the in-plane affine."""

    head: HeadMesh
    output: np.ndarray  # V x 2, the vertices in the output frame
    order: np.ndarray  # drawn triangles, back to front
    inverse: np.ndarray  # F x 2 x 3: output point -> frontal point, per triangle (nan if not drawn)
    face_depth: np.ndarray  # 478, depth of the turned face points, px (smaller is nearer)

    @staticmethod
    def build(head: HeadMesh, yaw_deg: float, pitch_deg: float, affine_px: np.ndarray) -> PoseMap:
        turned = (head.face - head.pivot) @ rotation(yaw_deg, pitch_deg).T + head.pivot
        moved = turned[:, :2] - head.face[:, :2]
        shift = np.concatenate([moved, head.follow[:, None] * moved[head.nearest]])
        frontal = head.points + shift
        output = frontal @ affine_px[:, :2].T + affine_px[:, 2]
        tri = head.triangles
        area_in, area_out = _signed_area(head.points[tri]), _signed_area(output[tri])
        drawn = np.abs(area_out) > _MIN_AREA
        facing = np.sign(area_in) == np.sign(area_out)
        depth = np.where(head.tier == 0, turned[np.minimum(tri, MESH_POINTS - 1), 2].mean(1), 0.0)
        keys = np.lexsort((-depth, -head.tier, facing))  # last key first: away-facing, frame, rings, far face
        order = keys[drawn[keys]]
        inverse = np.full((len(tri), 2, 3), np.nan)
        homog = np.concatenate([output[tri[order]].transpose(0, 2, 1), np.ones((len(order), 1, 3))], axis=1)
        inverse[order] = head.points[tri[order]].transpose(0, 2, 1) @ np.linalg.inv(homog)
        return PoseMap(head=head, output=output, order=order, inverse=inverse, face_depth=turned[:, 2])

    def _priority(self) -> np.ndarray:
        rank = np.full(len(self.head.triangles), -1, dtype=np.int64)
        rank[self.order] = np.arange(len(self.order))
        return rank

    def raster(self, height: int, width: int) -> np.ndarray:
        """H x W int32: the front-most triangle over each pixel centre (-1: none)."""
        import cv2

        ids = np.full((height, width), -1, dtype=np.int32)
        shift = 4
        corners = np.round((self.output - 0.5) * (1 << shift)).astype(np.int32)  # cv2: pixel centres at integers
        for k in self.order:
            cv2.fillConvexPoly(ids, corners[self.head.triangles[k]], int(k), lineType=cv2.LINE_8, shift=shift)
        return ids

    def _locate_tiled(self, flat: np.ndarray, tile: float = 16.0) -> np.ndarray:
        """`_locate` in the output, testing each point only against the triangles whose
        bounding box meets its tile (fast for the few thousand edge pixels of a frame)."""
        tris, priority = self.output[self.head.triangles], self._priority()
        lo, hi = np.floor(tris.min(1) / tile), np.floor(tris.max(1) / tile)
        keys = np.floor(flat / tile)
        tiles, which = np.unique(keys, axis=0, return_inverse=True)
        which = which.ravel()
        out = np.empty(len(flat), dtype=np.int64)
        for u, key in enumerate(tiles):
            idx = np.flatnonzero(which == u)
            near = np.flatnonzero(np.all((lo <= key) & (hi >= key), axis=1) & (priority >= 0))
            if near.size == 0:  # outside every drawn triangle's box: search them all
                out[idx] = _locate(flat[idx], tris, priority)
            else:
                out[idx] = near[_locate(flat[idx], tris[near], priority[near])]
        return out

    def backward(self, x: np.ndarray, y: np.ndarray, tri: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Output points -> frontal points, through the front-most triangle over each
        (`tri`: those triangles, e.g. from `raster`; located exactly when None)."""
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        flat = np.stack([x.ravel(), y.ravel()], axis=1)
        if tri is None:
            tri = _locate(flat, self.output[self.head.triangles], self._priority())
        else:  # a rasteriser fills edge pixels whose centres lie just outside: locate those exactly
            tri = np.asarray(tri, dtype=np.int64).ravel().copy()
            lam = _weights(flat, self.output[self.head.triangles[np.maximum(tri, 0)]])
            off = np.flatnonzero((tri < 0) | ~(lam.min(1) >= -1e-9))
            tri[off] = self._locate_tiled(flat[off])
        tri = tri.reshape(x.shape)
        m = self.inverse[tri]
        return (m[..., 0, 0] * x + m[..., 0, 1] * y + m[..., 0, 2],
                m[..., 1, 0] * x + m[..., 1, 1] * y + m[..., 1, 2])

    def forward(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frontal points -> output points (the frontal triangulation has no folds)."""
        flat = np.stack([np.ravel(x), np.ravel(y)], axis=1).astype(np.float64)
        tri = self.head.triangles
        located = self.head.delaunay.find_simplex(flat).astype(np.int64)
        outside = located < 0  # beyond the far box: extrapolate from the nearest triangle
        if outside.any():
            located[outside] = _locate(flat[outside], self.head.points[tri], np.zeros(len(tri), dtype=np.int64))
        lam = _weights(flat, self.head.points[tri[located]])
        moved = np.einsum("mk,mkd->md", lam, self.output[tri[located]])
        return moved[:, 0].reshape(np.shape(x)), moved[:, 1].reshape(np.shape(x))
