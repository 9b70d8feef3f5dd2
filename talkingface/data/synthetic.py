"""Synthetic talking clips from one portrait, with exact ground-truth motion.

A clip is the portrait moved by a smooth random head motion (shift, scale, in-plane
rotation about the face centre), with the mouth opening and closing and the eyes
blinking. Its landmarks are moved by exactly the same map as its pixels, so tests,
the meta-learning benchmark and the demo model can check recovered motion against
known motion.

Geometry. Points are continuous pixel coordinates (pixel (i, j) covers [j, j+1) x
[i, i+1); landmarks in 0..1 are these divided by W and H, as the encoding's
`int(x * W)` assumes). Frame t is the source seen through the map

    source point p  --local warps L_t-->  r  --global affine A_t-->  frame point q

Local warps act in the source face's own frame: the lips part (lower lip down, upper
lip slightly up, with a smooth falloff towards chin and nose) and the eyelids squeeze
towards the line through the eye corners. Each is written in backward form (output
point -> source point) in closed form, monotone along one axis, so pixels are sampled
with one `cv2.remap` and landmarks are moved by inverting it exactly (a 1-D bisection
per point, far below 1e-6 px). Where the lips part, no source pixel exists: the gap samples
the lip line and is darkened like a mouth cavity.

The mouth and eyes are located from the 58-point subset's roles (eye extremes, mouth
corners, lips), so any `LandmarkScheme` works.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from talkingface.errors import ConfigError, DataError
from talkingface.landmarks.scheme import LandmarkScheme

# Darkened lip-line colour in the mouth gap: a dim red-brown, as an open mouth's shadow.
_CAVITY_RGB = np.array([52.0, 20.0, 22.0], dtype=np.float32)
_CAVITY_MIX = 0.85  # share of the cavity colour in the gap (the rest: the lip line's own colour)
_LOWER_LIP_SHARE = 0.8  # the jaw does most of the opening; the upper lip lifts a little


# --------------------------------------------------------------------------- spec
@dataclass
class MotionSpec:
    """How a synthetic clip moves. Bounds are hard: every frame stays inside them."""

    num_frames: int = 64
    max_shift: float = 0.04  # |shift| per axis, fraction of the image width / height
    max_scale: float = 0.05  # |scale - 1|
    max_rotation_deg: float = 5.0  # |in-plane rotation|, degrees (positive: clockwise on screen)
    smoothness: float = 40.0  # shortest period of the head motion, frames; per-frame change <= 2*pi/smoothness * bound
    mouth_open_max: float = 0.08  # largest lip gap added, fraction of the face height (landmark box height)
    syllable_frames: float = 7.0  # mean length of one mouth open-close cycle, frames (~3.5 Hz at 25 fps)
    pause_prob: float = 0.2  # chance that a syllable slot keeps the mouth closed
    blink_every: float = 90.0  # mean frames between blinks; 0 disables blinks
    blink_frames: int = 7  # length of one blink (close, then reopen), frames
    blink_closure: float = 1.0  # eye closure at a blink's peak: 0 open .. 1 shut
    seed: int = 0

    def __post_init__(self):
        checks = [
            (self.num_frames >= 1, "num_frames must be >= 1"),
            (0 <= self.max_shift < 0.5, "max_shift must be in [0, 0.5)"),
            (0 <= self.max_scale < 0.5, "max_scale must be in [0, 0.5)"),
            (0 <= self.max_rotation_deg <= 45, "max_rotation_deg must be in [0, 45]"),
            (self.smoothness >= 2, "smoothness must be >= 2 frames"),
            (0 <= self.mouth_open_max <= 0.3, "mouth_open_max must be in [0, 0.3]"),
            (self.syllable_frames >= 3, "syllable_frames must be >= 3"),
            (0 <= self.pause_prob <= 1, "pause_prob must be in [0, 1]"),
            (self.blink_every == 0 or self.blink_every >= self.blink_frames,
             "blink_every must be 0 (no blinks) or >= blink_frames"),
            (self.blink_frames >= 2, "blink_frames must be >= 2"),
            (0 <= self.blink_closure <= 1, "blink_closure must be in [0, 1]"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"MotionSpec: {message}")


@dataclass
class Motion:
    """Per-frame motion parameters (T frames)."""

    shift: np.ndarray  # T x 2, fraction of width / height
    scale: np.ndarray  # T
    rotation_deg: np.ndarray  # T, clockwise on screen
    mouth_open: np.ndarray  # T, lip gap added, fraction of the face height
    eye_closure: np.ndarray  # T, 0 open .. 1 shut (both eyes)


def _smooth_curve(rng: np.random.Generator, length: int, shortest_period: float) -> np.ndarray:
    """A smooth random curve in [-1, 1]: a normalised sum of slow sinusoids.

    Dividing by the sum of amplitudes bounds it by 1 and its per-frame change by
    2*pi/shortest_period, whatever the random draw.
    """
    periods = shortest_period * rng.uniform(1.0, 4.0, size=3)
    amps = rng.uniform(0.5, 1.0, size=3)
    phases = rng.uniform(0, 2 * np.pi, size=3)
    t = np.arange(length, dtype=np.float64)[:, None]
    return (amps * np.sin(2 * np.pi * t / periods + phases)).sum(1) / amps.sum()


def _mouth_curve(rng: np.random.Generator, length: int, spec: MotionSpec) -> np.ndarray:
    """Syllable-like open-close cycles in [0, 1] (raised cosines), with pauses."""
    out = np.zeros(length)
    t = 0
    while t < length:
        d = max(3, int(round(spec.syllable_frames * rng.uniform(0.7, 1.3))))
        amp = 0.0 if rng.random() < spec.pause_prob else rng.uniform(0.3, 1.0)
        i = np.arange(d)
        cycle = amp * (0.5 - 0.5 * np.cos(2 * np.pi * i / d))
        n = min(d, length - t)
        out[t:t + n] = cycle[:n]
        t += d
    return out


def _blink_curve(rng: np.random.Generator, length: int, spec: MotionSpec) -> np.ndarray:
    """Eye closure in [0, 1]: quick close, slower reopen, at jittered intervals."""
    out = np.zeros(length)
    if spec.blink_every <= 0 or spec.blink_closure <= 0:
        return out
    d = spec.blink_frames
    close = max(1, int(round(0.4 * (d - 1))))  # frames to shut
    reopen = max(1, d - 1 - close)
    profile = np.concatenate([0.5 - 0.5 * np.cos(np.pi * np.arange(close + 1) / close),
                              (0.5 + 0.5 * np.cos(np.pi * np.arange(1, reopen + 1) / reopen))])
    profile *= spec.blink_closure
    t = int(spec.blink_every * rng.uniform(0.2, 1.0))
    while t < length:
        n = min(len(profile), length - t)
        out[t:t + n] = np.maximum(out[t:t + n], profile[:n])
        t += max(len(profile) + 1, int(spec.blink_every * rng.uniform(0.6, 1.4)))
    return out


def generate_motion(spec: MotionSpec) -> Motion:
    """Deterministic per-frame motion for `spec` (same seed, same motion)."""
    rng = np.random.default_rng(spec.seed)
    n, p = spec.num_frames, spec.smoothness
    shift = np.stack([_smooth_curve(rng, n, p), _smooth_curve(rng, n, p)], axis=1) * spec.max_shift
    scale = 1 + spec.max_scale * _smooth_curve(rng, n, p)
    rotation = spec.max_rotation_deg * _smooth_curve(rng, n, p)
    mouth = spec.mouth_open_max * _mouth_curve(rng, n, spec)
    eyes = _blink_curve(rng, n, spec)
    return Motion(shift=shift, scale=scale, rotation_deg=rotation, mouth_open=mouth, eye_closure=eyes)


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

    `affines[t]` maps source landmarks (0..1, after the local mouth/eye warps) to frame
    t (0..1): q = A[:, :2] @ r + A[:, 2]. `mouth_open[t]` is the lip gap added at the
    mouth centre (fraction of the source face height, before the global scale);
    `eye_closure[t]` is 0 open .. 1 shut. `frames` renders on access; index it or
    iterate it (`list(clip.frames)` keeps them all).
    """

    source: np.ndarray  # H x W x 3 uint8
    source_landmarks: np.ndarray  # N x 2, 0..1
    landmarks: np.ndarray  # T x N x 2, 0..1
    affines: np.ndarray  # T x 2 x 3, normalised coordinates, forward
    affines_px: np.ndarray  # T x 2 x 3, the same in pixels
    motion: Motion
    geometry: FaceGeometry
    _warps: list[tuple[_MouthWarp, _EyeWarp, _EyeWarp]] = field(repr=False, default_factory=list)
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

    def _backward_px(self, t: int, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frame-t pixel coordinates -> source pixel coordinates, and the mouth-gap opacity."""
        import cv2

        inv = cv2.invertAffineTransform(self.affines_px[t])
        rx = inv[0, 0] * x + inv[0, 1] * y + inv[0, 2]
        ry = inv[1, 0] * x + inv[1, 1] * y + inv[1, 2]
        px, py, gap = rx.copy(), ry.copy(), np.zeros_like(rx)
        for warp in self._warps[t]:
            if not warp.moves:
                continue
            sel = _inside(warp.support(), px, py)  # warps are local: skip the rest of the image
            if sel.any():
                moved = warp.backward(px[sel], py[sel])
                px[sel], py[sel] = moved[0], moved[1]
                if isinstance(warp, _MouthWarp):
                    gap[sel] = moved[2]
        return px, py, gap

    def source_points(self, t: int, points: np.ndarray) -> np.ndarray:
        """Where frame-t points (M x 2, 0..1) were in the source (0..1): the pixels' map."""
        h, w = self.source.shape[:2]
        px, py, _ = self._backward_px(t, points[:, 0].astype(np.float64) * w, points[:, 1].astype(np.float64) * h)
        return np.stack([px / w, py / h], axis=1)

    def sampling_map(self, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frame t's backward map for cv2.remap: per output pixel, the source point (pixel
        centres at integers) and the mouth-gap opacity."""
        h, w = self.source.shape[:2]
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
        px, py, gap = self._backward_px(t, xs, ys)
        return px - 0.5, py - 0.5, gap

    def render(self, t: int) -> np.ndarray:
        import cv2

        map_x, map_y, gap = self.sampling_map(t)
        frame = cv2.remap(self.source, map_x.astype(np.float32), map_y.astype(np.float32),
                          interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if gap.any():
            alpha = (_CAVITY_MIX * gap)[..., None].astype(np.float32)
            frame = np.clip(frame * (1 - alpha) + _CAVITY_RGB * alpha + 0.5, 0, 255).astype(np.uint8)
        return frame

    def move_points(self, t: int, points: np.ndarray) -> np.ndarray:
        """Where source points (M x 2, 0..1) are in frame t (0..1)."""
        h, w = self.source.shape[:2]
        x, y = points[:, 0].astype(np.float64) * w, points[:, 1].astype(np.float64) * h
        for warp in reversed(self._warps[t]):  # undo the backward chain, last warp first
            if warp.moves:
                x, y = warp.forward(x, y)
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


def synthesize_clip(image: np.ndarray, landmarks: np.ndarray, scheme: LandmarkScheme,
                    spec: MotionSpec) -> SyntheticClip:
    """Make a clip from a portrait: head motion, speech-like mouth motion, blinks.

    image: H x W x 3 uint8 RGB; landmarks: N x 2 (x, y) in 0..1 for `scheme`. The same
    seed gives the same clip. Frames render lazily (see `SyntheticClip`).
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    _check_inputs(image, landmarks, scheme)
    h, w = image.shape[:2]
    size = np.array([w, h], dtype=np.float64)
    geo = FaceGeometry.from_landmarks(landmarks * size, scheme)
    motion = generate_motion(spec)
    warps, affines_px = [], []
    for t in range(spec.num_frames):
        warps.append((_mouth_warp(geo, motion.mouth_open[t] * geo.face_height),
                      _eye_warp(geo.left_eye, geo.down, motion.eye_closure[t]),
                      _eye_warp(geo.right_eye, geo.down, motion.eye_closure[t])))
        affines_px.append(_affine_px(geo.centre, motion.shift[t] * size, motion.scale[t], motion.rotation_deg[t]))
    affines_px = np.stack(affines_px)
    clip = SyntheticClip(
        source=np.ascontiguousarray(image), source_landmarks=landmarks.astype(np.float32),
        landmarks=np.zeros((spec.num_frames, len(landmarks), 2), dtype=np.float32),
        affines=np.stack([_to_normalised(m, w, h) for m in affines_px]), affines_px=affines_px,
        motion=motion, geometry=geo, _warps=warps)
    for t in range(spec.num_frames):
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


def detect_landmarks(image: np.ndarray, path: str | Path | None = None) -> np.ndarray:
    """MediaPipe Face Mesh (with iris, 478 points) on one RGB uint8 image: 478 x 2 in 0..1.

    The same tracker as preprocessing, in still-image mode. Raises DataError naming
    `path` when no face is found.
    """
    from talkingface.preprocess.landmarks import FaceMeshTracker

    with FaceMeshTracker(static=True) as tracker:
        points = tracker.process(np.ascontiguousarray(image, dtype=np.uint8))
    if points is None:
        raise DataError("no face found in the portrait", path)
    return points


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
                            thetas_fn: ThetasFn | None = None) -> tuple[Path, list[SyntheticClip]]:
    """Write one synthetic clip per (image, landmarks 0..1) portrait in the official layout.

    Identity k: the portrait is the source, its clip the driving frames 00000000.png...
    Clip k uses seed `clip_seed(spec.seed, k)`. `scheme` defaults to dense669.
    - identity: `identity_fn(image, landmarks)`, by default `image_identity` (no dlib).
    - theta: `thetas_fn(k, clip)` -> (source 2 x 3, frames T x 2 x 3); by default the
      identity matrix (no alignment known for an arbitrary scheme).
    The ground-truth motion goes beside the frames in `<k>/synth_motion.npz` (affines,
    affines_px, mouth_open, eye_closure, shift, scale, rotation_deg, face_height_px);
    the official reader ignores it. Returns (root, clips); the folder appears only
    when complete.
    """
    from talkingface.data.writer import IDENTITY_THETA, DrivingFrame, IdentityRecord, write_identity, write_map
    from talkingface.landmarks.scheme import get_scheme
    from talkingface.utils.atomic import atomic_dir

    if not portraits:
        raise DataError("nothing to write: no portraits", root)
    scheme = scheme or get_scheme("dense669")
    root = Path(root)
    clips = []
    with atomic_dir(root) as tmp:
        mapping: dict[str, int] = {}
        for k, (image, landmarks) in enumerate(portraits):
            clip = synthesize_clip(image, landmarks, scheme, replace(spec, seed=clip_seed(spec.seed, k)))
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
                     rotation_deg=m.rotation_deg, face_height_px=clip.geometry.face_height)
            clips.append(clip)
        write_map(tmp, mapping)
    return root, clips
