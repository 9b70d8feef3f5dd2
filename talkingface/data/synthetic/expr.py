"""Smile and brow raise for synthetic clips: local bump warps placed by the face geometry.

Each warp moves the skin around one centre along one direction, by an amount that
fades to nothing over an ellipse (a C1 bump). Like the mouth and eye warps, it is
written in backward form (output point -> source point) in closed form and is
monotone along its direction, so pixels are sampled with the same `cv2.remap` and
landmarks move by its exact inverse (bisection along the direction).

- Smile: each mouth corner moves up and out by `smile` x the mouth width; each cheek
  (between the corner and the eye above it) rises by a third of that.
- Brow raise: the brow (a band 0.4-0.85 eye widths above the eye's corners) rises
  rigidly by `brow` x the face height (at most 0.18 eye widths, about 0.03 of the face
  height: the skin between brow and lid can only stretch so far); the forehead and the
  upper lid follow with a falloff.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from talkingface.data.synthetic.warps import FaceGeometry, _bell

# Along its direction the backward map is s -> s - amount * g(s, t); g rises over the
# trailing falloff with slope <= pi / (2 * behind) per px, so the map is increasing (and
# invertible) while amount < 2 * behind / pi. Amounts are capped at this share of `behind`.
_MAX_AMOUNT_SHARE = 0.6


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return np.array([0.0, 1.0]) if n < 1e-9 else v / n


@dataclass(frozen=True)
class _BumpWarp:
    """Moves the skin near `centre` by up to `amount` px along the unit `direction`.

    Backward: q -> q - amount * g(q) * direction. g is 1 on a rigid core (|s| <=
    `plateau` along the direction, |t| <= `side_plateau` across it, s and t relative to
    `centre`, an output point) and falls to 0 (C1, cosine squared) over `behind` px on
    the trailing side, `ahead` px on the leading side and `side` px across. So the
    source core moves rigidly by `amount`. Along the direction the map is
    s -> s - amount * g(s, t), increasing since amount < 2 * behind / pi (the leading
    side only ever spreads), hence invertible on every line.
    """

    centre: np.ndarray  # 2, output px
    direction: np.ndarray  # 2, unit
    amount: float  # px
    plateau: float  # px, rigid half-length along the direction
    behind: float  # px, falloff on the trailing side
    ahead: float  # px, falloff on the leading side
    side_plateau: float  # px, rigid half-width across
    side: float  # px, falloff across

    @property
    def moves(self) -> bool:
        return self.amount > 0

    def support(self) -> tuple[float, ...]:
        """Box outside which `backward` is the identity."""
        v, n = self.direction, np.array([-self.direction[1], self.direction[0]])
        s = np.array([-(self.plateau + self.behind), self.plateau + self.ahead])
        t = np.array([-1.0, 1.0]) * (self.side_plateau + self.side)
        corners = self.centre + s[:, None, None] * v + t[None, :, None] * n
        (x0, y0), (x1, y1) = corners.reshape(-1, 2).min(0), corners.reshape(-1, 2).max(0)
        return x0 - 1.0, y0 - 1.0, x1 + 1.0, y1 + 1.0

    def _local(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = x - self.centre[0], y - self.centre[1]
        v = self.direction
        return dx * v[0] + dy * v[1], -dx * v[1] + dy * v[0]

    def _weight(self, s: np.ndarray, t: np.ndarray) -> np.ndarray:
        u = np.maximum(np.abs(s) - self.plateau, 0.0) / np.where(s > 0, self.ahead, self.behind)
        w = np.maximum(np.abs(t) - self.side_plateau, 0.0) / self.side
        return _bell(np.sqrt(u ** 2 + w ** 2), 1.0)

    def backward(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s, t = self._local(x, y)
        step = self.amount * self._weight(s, t)
        return x - step * self.direction[0], y - step * self.direction[1]

    def forward(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Source point -> output point: solve s - amount * g(s, t) = s_source by bisection."""
        s0, t = self._local(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
        lo, hi = s0.copy(), s0 + self.amount  # g in [0, 1]: the output lies in this bracket
        for _ in range(48):  # bracket <= amount (tens of px): 48 halvings leave < 1e-12 px
            mid = 0.5 * (lo + hi)
            below = mid - self.amount * self._weight(mid, t) < s0
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        step = 0.5 * (lo + hi) - s0
        return x + step * self.direction[0], y + step * self.direction[1]


def _bump(source_centre: np.ndarray, direction: np.ndarray, amount: float, plateau: float, behind: float,
          ahead: float, side_plateau: float, side: float) -> _BumpWarp:
    """A bump whose core around `source_centre` moves by `amount` (capped for invertibility)."""
    amount = float(np.clip(amount, 0.0, _MAX_AMOUNT_SHARE * behind))
    direction = _unit(direction)
    return _BumpWarp(centre=source_centre + amount * direction, direction=direction, amount=amount,
                     plateau=float(plateau), behind=float(behind), ahead=float(ahead),
                     side_plateau=float(side_plateau), side=float(side))


def smile_warps(geo: FaceGeometry, smile: float) -> list[_BumpWarp]:
    """Mouth corners up and out by `smile` x the mouth width, cheeks up by a third of it."""
    if smile <= 0:
        return []
    up = -geo.down
    corners = geo.mouth_corners
    width = max(float(np.linalg.norm(corners[1] - corners[0])), 2.0)
    middle = corners.mean(0)
    out = []
    for corner, eye in ((corners[0], geo.left_eye), (corners[1], geo.right_eye)):
        outward = _unit(corner - middle)
        lift = smile * width
        out.append(_bump(corner, 0.85 * up + 0.5 * outward, lift, plateau=0.06 * width, behind=0.45 * width,
                         ahead=0.6 * width, side_plateau=0.04 * width, side=0.36 * width))
        cheek = 0.5 * (corner + eye[:2].mean(0)) + 0.15 * width * outward
        out.append(_bump(cheek, up, lift / 3, plateau=0.1 * width, behind=0.35 * width, ahead=0.5 * width,
                         side_plateau=0.1 * width, side=0.4 * width))
    return out


def brow_warps(geo: FaceGeometry, brow: float) -> list[_BumpWarp]:
    """The skin above each eye up by `brow` x the face height."""
    if brow <= 0:
        return []
    up = -geo.down
    out = []
    for eye in (geo.left_eye, geo.right_eye):
        eye_width = max(float(np.linalg.norm(eye[1] - eye[0])), 2.0)
        centre = eye[:2].mean(0) + 0.62 * eye_width * up  # Face Mesh brows: 0.4-0.8 eye widths up
        out.append(_bump(centre, up, brow * geo.face_height, plateau=0.22 * eye_width, behind=0.3 * eye_width,
                         ahead=0.9 * eye_width, side_plateau=0.5 * eye_width, side=0.7 * eye_width))
    return out
