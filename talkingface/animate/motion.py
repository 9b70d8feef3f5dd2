"""Motion transfer: driving landmarks -> the landmarks the source crop should take.

Coordinates: driving landmarks are in driving-frame pixels (N x 2, any frame size);
source landmarks and the results are in 0..1 of the source crop, the coordinates the
model's line image and subset are made from.

Relative motion (the default) splits the driving face's motion, measured against a
reference driving frame, into a head part and an expression part:

    A_t = the similarity (shift, uniform scale, in-plane rotation) that best maps the
          reference's STABLE_POINTS (points that move with the skull) onto frame t's:
          the head motion;
    E_t = A_t^-1(D_t) - D_ref: what is left, in the reference's own frame: mouth, eyes,
          brows, and the 2-D trace of out-of-plane turns.

B, the similarity from the reference's stable points to the source's, carries both
into the source crop:

    L_t = C_t(S + B_lin E_t),   C_t = B o A_t o B^-1.

So a driving face that is larger, smaller, elsewhere in its frame or tilted moves the
source by the same amount relative to the source's own size and orientation. Because
least-squares similarity fits are equivariant, applying any similarity to the whole
driving video leaves L_t unchanged, and D_t = D_ref gives L_t = S.

A photo's body does not move, and a model has learnt head motion only as far as its
training pairs went. With `HeadLimits`, C_t's shift, scale and rotation (about the
source's stable-point centre) pass unchanged up to half their limit and then bend
smoothly towards it (`soft_limit`), so a driving head that walks across its frame or
leans into the camera moves the portrait's head as far as the model can render, not
further, and a correlation with the driving head survives (the map is monotonic).

Absolute motion uses the driving landmarks as they are, in a driving crop made the way
preprocessing makes crops (the box around the reference frame's face). That is what
the model sees when it reconstructs a person from their own video; for another person
it also carries the driving face's shape over.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from talkingface.preprocess.align import fit_similarity
from talkingface.preprocess.detect import box_around_points

# Face Mesh points that follow the skull rather than the expression: forehead, nose
# bridge, eye corners (blinks move the lids, not the corners) and the face outline
# beside the eyes. Jaw, lips, brows, lids and irises are left out, and so are the nose
# tip and wings, which the upper lip pulls when it moves.
STABLE_POINTS: tuple[int, ...] = (
    10, 151, 9, 8, 109, 338,  # forehead
    168, 6, 197, 195, 5,  # nose bridge, down to just above the tip
    33, 133, 362, 263,  # eye corners: outer, inner (image-left eye), inner, outer
    21, 251, 127, 356, 234, 454,  # face outline from the temples to the cheekbones
)


@dataclass(frozen=True)
class HeadLimits:
    """How far relative motion may move the source's head (C_t against the identity), in the
    source crop's units. Defaults: the 99th percentile of the same quantities between two
    frames of one clip in the bundled model's training data (shift 0.20, |log scale| 0.097,
    rotation 8.2 degrees; `benchmarks/motion_range.py` measures any dataset)."""

    shift: float = 0.2  # displacement of the stable-point centre, fraction of the crop side
    log_scale: float = 0.1  # |ln(scale)|: 0.1 is about 10 % larger or smaller
    rotation_deg: float = 8.0  # in-plane rotation
    knee: float = 0.5  # fraction of each limit passed through unchanged

    def __post_init__(self):
        if min(self.shift, self.log_scale, self.rotation_deg) <= 0 or not 0 <= self.knee < 1:
            raise ValueError(f"head limits must be positive and the knee in [0, 1): {self}")


def soft_limit(value: float, limit: float, knee: float) -> float:
    """`value` unchanged up to knee * limit in size, then bent smoothly (tanh, continuous
    slope) so that it approaches but never passes `limit`; the sign is kept."""
    start = knee * limit
    size = abs(value)
    if size <= start:
        return value
    span = limit - start
    return float(np.sign(value) * (start + span * np.tanh((size - start) / span)))


def similarity_parts(m: np.ndarray, centre: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(shift of `centre` (2,), scale, rotation in degrees) of a 2 x 3 similarity `m`."""
    shift = m[:, :2] @ centre + m[:, 2] - centre
    return shift, float(np.hypot(m[0, 0], m[1, 0])), float(np.degrees(np.arctan2(m[1, 0], m[0, 0])))


def limit_similarity(m: np.ndarray, centre: np.ndarray, limits: HeadLimits) -> np.ndarray:
    """The similarity `m` (2 x 3) with its shift of `centre`, scale and rotation about `centre`
    soft-limited (`soft_limit`) by `limits`."""
    shift, scale, degrees = similarity_parts(m, centre)
    length = float(np.hypot(*shift))
    if length > 0:
        shift = shift * (soft_limit(length, limits.shift, limits.knee) / length)
    scale = float(np.exp(soft_limit(np.log(scale), limits.log_scale, limits.knee)))
    angle = np.radians(soft_limit(degrees, limits.rotation_deg, limits.knee))
    linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return np.hstack([linear, (centre + shift - linear @ centre)[:, None]])


Motion = Callable[[np.ndarray], np.ndarray]  # driving N x 2 (frame pixels) -> N x 2 (0..1 of the source crop)


# --------------------------------------------------------------------------- 2 x 3 affine helpers
def apply_affine(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2 x 3 affine to N x 2 points."""
    points = np.asarray(points, dtype=np.float64)
    return points @ m[:, :2].T + m[:, 2]


def invert_affine(m: np.ndarray) -> np.ndarray:
    linear = np.linalg.inv(m[:, :2])
    return np.hstack([linear, (-linear @ m[:, 2])[:, None]])


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """outer o inner: first `inner`, then `outer`."""
    return np.hstack([outer[:, :2] @ inner[:, :2], (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]])


# --------------------------------------------------------------------------- transfer
class RelativeMotion:
    """Source landmarks moved by the driving face's motion from a reference frame (module doc)."""

    def __init__(self, source: np.ndarray, reference: np.ndarray, stable: tuple[int, ...] = STABLE_POINTS,
                 limits: HeadLimits | None = None):
        self.limits = limits  # None: C_t as measured
        self.source = np.asarray(source, dtype=np.float64)  # N x 2, 0..1 of the source crop
        self.reference = np.asarray(reference, dtype=np.float64)  # N x 2, driving-frame pixels
        if self.source.shape != self.reference.shape:
            raise ValueError(f"source {self.source.shape} and driving {self.reference.shape} landmarks differ in shape")
        self.stable = list(stable)
        self.to_source = fit_similarity(self.reference[self.stable], self.source[self.stable])  # B
        self.from_source = invert_affine(self.to_source)
        self.centre = self.source[self.stable].mean(0)

    def __call__(self, driving: np.ndarray) -> np.ndarray:
        driving = np.asarray(driving, dtype=np.float64)
        head = fit_similarity(self.reference[self.stable], driving[self.stable])  # A_t: reference -> frame t
        expression = apply_affine(invert_affine(head), driving) - self.reference  # E_t, reference pixels
        moved = self.source + expression @ self.to_source[:, :2].T
        head_in_source = compose_affine(self.to_source, compose_affine(head, self.from_source))  # C_t
        if self.limits is not None:
            head_in_source = limit_similarity(head_in_source, self.centre, self.limits)
        return apply_affine(head_in_source, moved)


class AbsoluteMotion:
    """Driving landmarks in a crop of the driving frame framed as preprocessing frames
    it (a static box around the reference frame's face)."""

    def __init__(self, reference: np.ndarray, crop_expand: float, crop_offset_y: float):
        self.box = box_around_points(reference, crop_expand, crop_offset_y)

    def __call__(self, driving: np.ndarray) -> np.ndarray:
        return self.box.to_crop(driving).astype(np.float64)


def motion_transfer(source: np.ndarray, reference: np.ndarray, relative: bool, crop_expand: float,
                    crop_offset_y: float, limits: HeadLimits | None = None) -> Motion:
    """Relative motion (head motion soft-limited by `limits` when given) or absolute motion."""
    if relative:
        return RelativeMotion(source, reference, limits=limits)
    return AbsoluteMotion(reference, crop_expand, crop_offset_y)


# --------------------------------------------------------------------------- best reference frame
def face_size(points: np.ndarray) -> float:
    """RMS distance of the points to their centroid: a scale for a face, in its own units."""
    points = np.asarray(points, dtype=np.float64)
    return float(np.sqrt(((points - points.mean(0)) ** 2).sum(1).mean()))


def shape_distance(driving: np.ndarray, source: np.ndarray) -> float:
    """How different two faces' landmarks are once position, size and in-plane rotation
    are taken out: RMS residual of the best similarity fit of `driving` onto `source`,
    in units of the source's face size (0: the same shape)."""
    source = np.asarray(source, dtype=np.float64)
    fit = fit_similarity(driving, source)
    residual = apply_affine(fit, driving) - source
    return float(np.sqrt((residual ** 2).sum(1).mean())) / max(face_size(source), 1e-12)


def find_best_frame(source: np.ndarray, frames: Iterable[tuple[int, np.ndarray | None]]) -> tuple[int, float] | None:
    """(index, distance) of the driving frame closest in shape to the source (expression
    and pose, not place or size); frames given as None (no face) are skipped. Streams:
    keeps one frame's landmarks at a time. None when no frame has landmarks."""
    best: tuple[int, float] | None = None
    for index, points in frames:
        if points is None:
            continue
        distance = shape_distance(points, source)
        if best is None or distance < best[1]:
            best = (index, distance)
    return best
