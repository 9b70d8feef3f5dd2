"""Local warps of a synthetic clip (lips parting, eyelids closing) and the face geometry
they are placed by. See `talkingface.data.synthetic` for the geometry conventions.

Each warp is written in backward form (output point -> source point) in closed form,
monotone along one axis, so pixels are sampled with one `cv2.remap` and landmarks are
moved by inverting it exactly (a 1-D bisection per point).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from talkingface.landmarks.scheme import LandmarkScheme

# Darkened lip-line colour in the mouth gap: a dim red-brown, as an open mouth's shadow.
_CAVITY_RGB = np.array([52.0, 20.0, 22.0], dtype=np.float32)
_CAVITY_MIX = 0.85  # share of the cavity colour in the gap (the rest: the lip line's own colour)
_LOWER_LIP_SHARE = 0.8  # the jaw does most of the opening; the upper lip lifts a little
_TEETH_RGB = np.array([206.0, 198.0, 184.0], dtype=np.float32)  # upper teeth, slightly warm off-white
# --------------------------------------------------------------------------- local warps
def _plateau_falloff(s: np.ndarray, plateau: float, length: float) -> np.ndarray:
    """1 up to `plateau`, then a C1 cosine-squared fall to 0 over `length`."""
    x = np.clip((s - plateau) / length, 0.0, 1.0)
    return np.cos(0.5 * np.pi * x) ** 2


def _bell(a: np.ndarray, half_width: float) -> np.ndarray:
    """C1 bump: 1 at 0, 0 from |a| >= half_width."""
    x = np.clip(np.abs(a) / half_width, 0.0, 1.0)
    return np.cos(0.5 * np.pi * x) ** 2


def _solve_increasing(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], amount: np.ndarray,
                      target: np.ndarray, lo: np.ndarray, hi: np.ndarray, iters: int = 40) -> np.ndarray:
    """Solve fn(s, amount) = target for s in [lo, hi], fn increasing in s, elementwise (flat result).

    Bisection rather than fixed-point iteration: it converges for any slope. Brackets
    are at most one displacement wide (tens of px), so 40 halvings leave < 1e-10 px.
    Only elements with an open bracket (those the warp moves) are iterated.
    """
    amount, target, lo, hi = (a.ravel() for a in np.broadcast_arrays(
        *(np.asarray(x, dtype=np.float64) for x in (amount, target, lo, hi))))
    out = 0.5 * (lo + hi)
    active = np.flatnonzero(hi - lo > 0)
    if active.size:
        k, goal, a, b = amount[active], target[active], lo[active], hi[active]
        for _ in range(iters):
            mid = 0.5 * (a + b)
            below = fn(mid, k) < goal
            a = np.where(below, mid, a)
            b = np.where(below, b, mid)
        out[active] = 0.5 * (a + b)
    return out


@dataclass(frozen=True)
class _LocalFrame:
    """An orthonormal frame: `a` along `axis`, `b` along its perpendicular (down the face)."""

    origin: np.ndarray  # 2
    axis: np.ndarray  # 2, unit

    @staticmethod
    def through(p0: np.ndarray, p1: np.ndarray, down: np.ndarray) -> "_LocalFrame":
        axis = p1 - p0
        norm = np.linalg.norm(axis)
        axis = np.array([1.0, 0.0]) if norm < 1e-9 else axis / norm
        if np.dot(np.array([-axis[1], axis[0]]), down) < 0:  # keep b pointing down the face
            axis = -axis
        return _LocalFrame(origin=0.5 * (p0 + p1), axis=axis)

    @property
    def normal(self) -> np.ndarray:
        return np.array([-self.axis[1], self.axis[0]])

    def to_local(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = x - self.origin[0], y - self.origin[1]
        n = self.normal
        return dx * self.axis[0] + dy * self.axis[1], dx * n[0] + dy * n[1]

    def to_global(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = self.normal
        return (self.origin[0] + a * self.axis[0] + b * n[0], self.origin[1] + a * self.axis[1] + b * n[1])

    def box(self, a0: float, a1: float, b0: float, b1: float, margin: float = 1.0) -> tuple[float, ...]:
        """Axis-aligned (x0, y0, x1, y1) around a local rectangle, plus `margin` px."""
        x, y = self.to_global(np.array([a0, a0, a1, a1]), np.array([b0, b1, b0, b1]))
        return x.min() - margin, y.min() - margin, x.max() + margin, y.max() + margin


def _inside(box: tuple[float, ...], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x > box[0]) & (x < box[2]) & (y > box[1]) & (y < box[3])


@dataclass(frozen=True)
class _MouthWarp:
    """Parts the lips along a parabola through the corners.

    Along the mouth axis nothing moves. Across it (b, relative to the parting curve),
    the lower side moves down by `lower * bell(a)` and the upper side up by `upper *
    bell(a)`, rigidly within a plateau (the lips) and fading to nothing over a falloff
    (chin, nose). Backward per column: output b' >= lower -> source s + lower*(1 - h(s)),
    s = b' - lower; increasing in s with slope >= 1, hence invertible for any amount.
    """

    frame: _LocalFrame
    half_width: float  # half the corner distance
    parting_offset: float  # parting curve's b at the mouth centre (0 at the corners)
    lower: float  # px the lower lip moves at the centre
    upper: float  # px the upper lip moves at the centre
    lower_plateau: float
    lower_falloff: float
    upper_plateau: float
    upper_falloff: float

    @property
    def moves(self) -> bool:
        return self.lower + self.upper > 0

    def support(self) -> tuple[float, ...]:
        """Box outside which `backward` is the identity (and the gap 0)."""
        reach_down = self.lower + self.lower_plateau + self.lower_falloff
        reach_up = self.upper + self.upper_plateau + self.upper_falloff
        return self.frame.box(-self.half_width, self.half_width, min(0.0, self.parting_offset) - reach_up,
                              max(0.0, self.parting_offset) + reach_down)

    def _parting(self, a: np.ndarray) -> np.ndarray:
        return self.parting_offset * np.clip(1 - (a / self.half_width) ** 2, 0.0, None)

    def backward(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Output point -> source point, and the mouth-gap opacity (0..1) at the output point."""
        a, b = self.frame.to_local(x, y)
        w = _bell(a, self.half_width)
        ml, mu = self.lower * w, self.upper * w
        v0 = self._parting(a)
        d = b - v0
        s_low = np.maximum(d - ml, 0.0)
        s_up = np.maximum(-d - mu, 0.0)
        src_low = s_low + ml * (1 - _plateau_falloff(s_low, self.lower_plateau, self.lower_falloff))
        src_up = -(s_up + mu * (1 - _plateau_falloff(s_up, self.upper_plateau, self.upper_falloff)))
        src = np.where(d >= ml, src_low, np.where(d <= -mu, src_up, 0.0))
        # Soft 1-px edges; a gap thinner than a pixel only partly darkens it.
        gap = np.clip(np.minimum(d + mu, ml - d) + 0.5, 0.0, 1.0) * np.clip(ml + mu, 0.0, 1.0)
        sx, sy = self.frame.to_global(a, v0 + src)
        return sx, sy, gap

    def teeth(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Opacity (0..1) of an upper-teeth hint at output points inside the gap.

        A band hanging from the upper lip's edge, at most 45% of the opening and 18% of
        the mouth width tall, its lower edge curving up towards the corners; it fades
        into the cavity's dark beyond 60% of the half width, with faint seams between
        the teeth. Edges are feathered over about 1.5 px.
        """
        hw = self.half_width
        a, b = self.frame.to_local(x, y)
        w = _bell(a, hw)
        ml, mu = self.lower * w, self.upper * w
        d = b - self._parting(a) + mu  # depth below the upper lip's edge
        height = np.minimum(0.45 * (ml + mu), 0.36 * hw) * (1 - 0.35 * np.clip(a / hw, -1, 1) ** 2)
        band = np.clip(d + 0.5, 0.0, 1.0) * np.clip((height - d) / 1.5 + 0.5, 0.0, 1.0)
        side = np.cos(0.5 * np.pi * np.clip((np.abs(a) - 0.35 * hw) / (0.45 * hw), 0.0, 1.0)) ** 2
        seams = 1 - 0.35 * (np.cos(np.pi * a / (0.28 * hw)) ** 2) ** 12
        inside = np.clip(np.minimum(d, ml + mu - d) + 0.5, 0.0, 1.0) * np.clip(ml + mu, 0.0, 1.0)
        return band * side * seams * inside

    def forward(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Source point -> output point (exact inverse of `backward` off the gap)."""
        a, b = self.frame.to_local(x, y)
        w = _bell(a, self.half_width)
        ml, mu = self.lower * w, self.upper * w
        v0 = self._parting(a)
        d = b - v0
        dl, du = np.maximum(d, 0.0), np.maximum(-d, 0.0)
        s_low = _solve_increasing(
            lambda s, k: s + k * (1 - _plateau_falloff(s, self.lower_plateau, self.lower_falloff)),
            ml, dl, np.maximum(dl - ml, 0.0), dl).reshape(d.shape)
        s_up = _solve_increasing(
            lambda s, k: s + k * (1 - _plateau_falloff(s, self.upper_plateau, self.upper_falloff)),
            mu, du, np.maximum(du - mu, 0.0), du).reshape(d.shape)
        out = np.where(d >= 0, s_low + ml, -(s_up + mu))
        return self.frame.to_global(a, v0 + out)


def _lid_arc(a: np.ndarray, half_width: float) -> np.ndarray:
    """Height of the eye opening along the eye, relative to its centre: 1 there, 0.3 past the corners."""
    return 0.3 + 0.7 * _bell(a, 1.1 * half_width)


@dataclass(frozen=True)
class _EyeWarp:
    """Squeezes the eye opening towards the corner line by `closure` (1 = shut).

    The opening is the band -top*p(a) <= b <= bottom*p(a), p an arc (1 at the centre,
    0.3 at the corners). Inside it, b scales by (1 - c); outside, the lids' skin follows
    with a falloff, stretched to cover what the lids gave up. `c` fades out beyond the
    corners. Backward per column is increasing (slope > 0 given falloff > 1.6 * top),
    so landmarks invert exactly.
    """

    frame: _LocalFrame
    half_width: float
    top: float  # px from the corner line up to the upper lid (at the centre)
    bottom: float  # px down to the lower lid
    closure: float

    @property
    def _falloff_top(self) -> float:
        return 2.2 * self.top

    @property
    def _falloff_bottom(self) -> float:
        return 2.2 * self.bottom

    @property
    def moves(self) -> bool:
        return self.closure > 0

    def support(self) -> tuple[float, ...]:
        """Box outside which `backward` is the identity."""
        reach = 1.9 * self.half_width  # the closure has faded out beyond this
        return self.frame.box(-reach, reach, -(self.top + self._falloff_top), self.bottom + self._falloff_bottom)

    def _profile(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lid arc p(a), closure at a)."""
        arc = _lid_arc(a, self.half_width)
        fade = np.clip((np.abs(a) - 1.1 * self.half_width) / (0.8 * self.half_width), 0.0, 1.0)
        return arc, self.closure * np.cos(0.5 * np.pi * fade) ** 2

    def backward(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.frame.to_local(x, y)
        arc, c = self._profile(a)
        keep = np.maximum(1 - c, 1e-9)
        out = []
        for side, extent, falloff in ((-1.0, self.top, self._falloff_top), (1.0, self.bottom, self._falloff_bottom)):
            e = extent * arc
            v = np.maximum(side * b, 0.0)  # distance from the corner line towards this lid
            e_new = (1 - c) * e
            s = np.maximum(v - e_new, 0.0)
            outside = s + e_new + c * e * _plateau_falloff(s, 0.0, falloff)
            out.append(side * np.where(v <= e_new, v / keep, outside))
        src = np.where(b < 0, out[0], out[1])
        return self.frame.to_global(a, src)

    def forward(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.frame.to_local(x, y)
        arc, c = self._profile(a)
        out = []
        for side, extent, falloff in ((-1.0, self.top, self._falloff_top), (1.0, self.bottom, self._falloff_bottom)):
            e = extent * arc
            v = np.maximum(side * b, 0.0)
            e_new = (1 - c) * e
            target = v - e_new
            s = _solve_increasing(lambda t, k: t + k * _plateau_falloff(t, 0.0, falloff), c * e, target,
                                  np.maximum(target - c * e, 0.0), np.maximum(target, 0.0)).reshape(b.shape)
            out.append(side * np.where(v <= e, (1 - c) * v, s + e_new))
        dst = np.where(b < 0, out[0], out[1])
        return self.frame.to_global(a, dst)


# --------------------------------------------------------------------------- face geometry
@dataclass(frozen=True)
class FaceGeometry:
    """Where the parts the warps need are, in pixels, from the scheme's subset roles."""

    left_eye: np.ndarray  # 4 x 2: left, right, top, bottom
    right_eye: np.ndarray  # 4 x 2
    mouth_corners: np.ndarray  # 2 x 2
    lips: np.ndarray  # 2 x 2: top, bottom
    face_height: float  # landmark bounding-box height, px
    centre: np.ndarray  # 2, pivot of the head motion

    @staticmethod
    def from_landmarks(points_px: np.ndarray, scheme: LandmarkScheme) -> "FaceGeometry":
        roles, sub = scheme.roles, scheme.subset

        def pick(positions: tuple[int, ...]) -> np.ndarray:
            return points_px[sub[list(positions)]]

        left, right = pick(roles.left_eye), pick(roles.right_eye)
        corners, lips = pick(roles.mouth_corners), pick(roles.mouth_lips)
        centre = np.concatenate([left[:2], right[:2], corners]).mean(0)
        return FaceGeometry(left, right, corners, lips, float(np.ptp(points_px[:, 1])), centre)

    @property
    def down(self) -> np.ndarray:
        """Unit vector from the eyes towards the mouth."""
        eyes = np.concatenate([self.left_eye[:2], self.right_eye[:2]]).mean(0)
        d = self.mouth_corners.mean(0) - eyes
        n = np.linalg.norm(d)
        return np.array([0.0, 1.0]) if n < 1e-9 else d / n


def _mouth_warp(geo: FaceGeometry, gap_px: float) -> _MouthWarp:
    frame = _LocalFrame.through(geo.mouth_corners[0], geo.mouth_corners[1], geo.down)
    width = max(float(np.linalg.norm(geo.mouth_corners[1] - geo.mouth_corners[0])), 2.0)
    _, (bt, bb) = frame.to_local(geo.lips[:, 0], geo.lips[:, 1])
    # Outer-lip landmarks: the lips part about 40% of the way down; inner ones: anywhere between.
    parting = float(bt + 0.4 * (bb - bt))
    margin = 0.05 * width
    return _MouthWarp(
        frame=frame, half_width=0.5 * width, parting_offset=parting,
        lower=_LOWER_LIP_SHARE * gap_px, upper=(1 - _LOWER_LIP_SHARE) * gap_px,
        lower_plateau=max(float(bb) - parting, 0.1 * width) + margin, lower_falloff=0.9 * width,
        upper_plateau=max(parting - float(bt), 0.1 * width) + margin, upper_falloff=0.5 * width)


def parted_lips(points_px: np.ndarray, scheme: LandmarkScheme, gap_px: float,
                side: np.ndarray | None = None) -> np.ndarray:
    """Where a face's points (N x 2, pixels) go when its lips part by `gap_px` at the mouth
    centre, exactly as a synthetic clip's mouth opening moves them (the mouth warp, forward):
    the lower lip and jaw down, the upper lip a little up, fading out towards chin and nose.

    The lips part along a curve 40% of the way from the top to the bottom of the lips, so on
    a closed mouth both inner lips lie on its lower side and move down together. `side` (N:
    -1 upper lip, +1 lower lip, 0 as the curve says) puts points on their own lip instead, as
    a face tracker sees a mouth that really opens (speech tracks, talkingface.speech)."""
    points_px = np.asarray(points_px, dtype=np.float64)
    warp = _mouth_warp(FaceGeometry.from_landmarks(points_px, scheme), float(gap_px))
    if not warp.moves:
        return points_px.copy()
    x, y = warp.forward(points_px[:, 0], points_px[:, 1])
    if side is not None:  # points on the wrong side of the curve move rigidly with their own lip
        a, b = warp.frame.to_local(points_px[:, 0], points_px[:, 1])
        below, share = b >= warp._parting(a), _bell(a, warp.half_width)
        up, down = (side < 0) & below, (side > 0) & ~below
        b = np.where(up, b - warp.upper * share, np.where(down, b + warp.lower * share, b))
        gx, gy = warp.frame.to_global(a, b)
        x, y = np.where(up | down, gx, x), np.where(up | down, gy, y)
    return np.stack([x, y], axis=1)


def _eye_warp(eye: np.ndarray, down: np.ndarray, closure: float) -> _EyeWarp:
    frame = _LocalFrame.through(eye[0], eye[1], down)
    width = max(float(np.linalg.norm(eye[1] - eye[0])), 2.0)
    (at, ab), (bt, bb) = frame.to_local(eye[2:, 0], eye[2:, 1])
    # Scale the lid arc so it passes through the lid landmarks, which then close exactly by (1 - c).
    hw = 0.5 * width
    return _EyeWarp(frame=frame, half_width=hw, top=max(-float(bt), 0.12 * width) / float(_lid_arc(at, hw)),
                    bottom=max(float(bb), 0.06 * width) / float(_lid_arc(ab, hw)), closure=float(closure))


def _affine_px(centre: np.ndarray, shift_px: np.ndarray, scale: float, rotation_deg: float) -> np.ndarray:
    """2 x 3 forward map q = centre + shift + scale * R (r - centre), pixels."""
    t = np.deg2rad(rotation_deg)
    lin = scale * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])  # y down: clockwise on screen
    return np.hstack([lin, (centre + shift_px - lin @ centre)[:, None]])


def _to_normalised(m_px: np.ndarray, width: int, height: int) -> np.ndarray:
    d = np.array([width, height], dtype=np.float64)
    lin = m_px[:, :2] * d[None, :] / d[:, None]
    return np.hstack([lin, (m_px[:, 2] / d)[:, None]])

