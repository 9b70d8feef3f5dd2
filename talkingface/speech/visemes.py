"""Phonemes -> visemes (mouth shapes) -> mouth landmark offsets on one face.

Fifteen visemes (the set many lip-sync tools use): `sil` (rest), `PP` (lips pressed:
p, b, m), `FF` (lower lip to the upper teeth: f, v), `TH`, `DD` (t, d), `kk` (k, g, ng,
h), `CH` (ch, j, sh, zh), `SS` (s, z), `nn` (n, l), `RR` (r, er), `aa`, `E`, `ih`,
`oh`, `ou`. The phoneme table (`PHONEME_VISEMES`, ARPAbet as pocketsphinx writes it):

    P B M -> PP        F V -> FF          TH DH -> TH       T D -> DD
    K G NG HH -> kk    CH JH SH ZH -> CH  S Z -> SS         N L -> nn
    R ER -> RR         AA AE AH -> aa     EH -> E           IH IY Y -> ih
    AO -> oh           UH UW W -> ou      SIL -> sil
    diphthongs, onset then offset:  AY -> aa+ih  AW -> aa+ou  EY -> E+ih  OW -> oh+ou  OY -> oh+ih

Each viseme is three numbers (`Viseme`): `open`, the lip gap added at the mouth centre
(fraction of the face height, the unit of the synthetic clips the bundled model learnt
from, whose mouths open up to 0.2; measured on the bundled model, it draws a dark open
mouth from about 0.08, so the open vowels reach 0.085-0.11, about what a real jaw does on
"ah"); `width`, the change of the mouth's width
(fraction of it: + spread as in "ee", - rounded as in "oo"); `close`, how much of the
photo's own lip gap is closed (1 for p/b/m: lips pressed together). Its `dominance`
and `rate` say how it blends with its neighbours (talkingface.speech.track).

On a face (`viseme_offsets`), in the mediapipe478 scheme and relative to the neutral
face (the portrait's own landmarks), each viseme becomes offsets of all 478 points,
scaled to that face:
- opening: the lips part exactly as a synthetic clip parts them
  (talkingface.data.synthetic.warps.parted_lips): lower lip and jaw down, upper lip a
  little up, fading towards chin and nose;
- width: points of the lips move along the mouth line in proportion to their distance
  from the mouth centre, so the corners move by `width` x half the mouth width;
  the effect fades out over the cheeks;
- closure: the upper lip moves down and the lower lip up, each by half the inner-lip
  gap at its place along the mouth, so `close` = 1 brings the inner lips together
  everywhere; the effect fades out towards nose and chin.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from talkingface.data.synthetic.warps import FaceGeometry, parted_lips
from talkingface.landmarks.regions import INNER_LIP_MIDDLE, mediapipe_regions
from talkingface.landmarks.scheme import LandmarkScheme, get_scheme


@dataclass(frozen=True)
class Viseme:
    open: float  # lip gap added at the mouth centre, fraction of the face height (landmark box height)
    width: float  # change of the mouth's width, fraction of it: + spread, - rounded
    close: float  # 0..1: share of the photo's own inner-lip gap that is closed (1: lips pressed together)
    dominance: float  # how strongly this shape holds against its neighbours (coarticulation), > 0
    rate: float  # 1/s: how fast that dominance fades before and after the phone


VISEMES: dict[str, Viseme] = {
    "sil": Viseme(open=0.0, width=0.0, close=0.0, dominance=0.8, rate=10.0),
    "PP": Viseme(open=0.0, width=0.0, close=1.0, dominance=1.0, rate=20.0),
    "FF": Viseme(open=0.01, width=0.04, close=0.7, dominance=0.9, rate=18.0),
    "TH": Viseme(open=0.035, width=0.0, close=0.0, dominance=0.6, rate=14.0),
    "DD": Viseme(open=0.04, width=0.04, close=0.0, dominance=0.5, rate=14.0),
    "kk": Viseme(open=0.05, width=0.0, close=0.0, dominance=0.3, rate=12.0),
    "CH": Viseme(open=0.035, width=-0.14, close=0.0, dominance=0.8, rate=16.0),
    "SS": Viseme(open=0.02, width=0.1, close=0.0, dominance=0.6, rate=15.0),
    "nn": Viseme(open=0.035, width=0.0, close=0.0, dominance=0.4, rate=13.0),
    "RR": Viseme(open=0.035, width=-0.12, close=0.0, dominance=0.6, rate=14.0),
    "aa": Viseme(open=0.11, width=0.0, close=0.0, dominance=0.8, rate=11.0),
    "E": Viseme(open=0.075, width=0.08, close=0.0, dominance=0.7, rate=11.0),
    "ih": Viseme(open=0.05, width=0.12, close=0.0, dominance=0.7, rate=12.0),
    "oh": Viseme(open=0.085, width=-0.15, close=0.0, dominance=0.8, rate=11.0),
    "ou": Viseme(open=0.035, width=-0.25, close=0.0, dominance=0.8, rate=12.0),
}
NAMES: tuple[str, ...] = tuple(VISEMES)
REST = "sil"
CLOSED = "PP"  # lips fully closed: the track builder holds this shape over every p, b and m

PHONEME_VISEMES: dict[str, tuple[str, ...]] = {
    "P": ("PP",), "B": ("PP",), "M": ("PP",), "F": ("FF",), "V": ("FF",), "TH": ("TH",), "DH": ("TH",),
    "T": ("DD",), "D": ("DD",), "K": ("kk",), "G": ("kk",), "NG": ("kk",), "HH": ("kk",),
    "CH": ("CH",), "JH": ("CH",), "SH": ("CH",), "ZH": ("CH",), "S": ("SS",), "Z": ("SS",),
    "N": ("nn",), "L": ("nn",), "R": ("RR",), "ER": ("RR",),
    "AA": ("aa",), "AE": ("aa",), "AH": ("aa",), "EH": ("E",), "IH": ("ih",), "IY": ("ih",), "Y": ("ih",),
    "AO": ("oh",), "UH": ("ou",), "UW": ("ou",), "W": ("ou",),
    "AY": ("aa", "ih"), "AW": ("aa", "ou"), "EY": ("E", "ih"), "OW": ("oh", "ou"), "OY": ("oh", "ih"),
    "SIL": ("sil",),
}

_CANONICAL_HEIGHT = 256.0  # offsets are computed on the face scaled to this height (the mouth warp works in pixels)


def phoneme_visemes(phone: str) -> tuple[str, ...]:
    """The viseme(s) of an ARPAbet phone (stress digits ignored); two for a diphthong; rest for others."""
    return PHONEME_VISEMES.get(phone.upper().rstrip("012"), (REST,))


@dataclass(frozen=True)
class VisemeOffsets:
    """Per-viseme offsets of one face's landmarks from its neutral pose, in the neutral's units."""

    names: tuple[str, ...]
    opening: np.ndarray  # V x N x 2: the lips parting (scaled by loudness when blended)
    shaping: np.ndarray  # V x N x 2: width and closure

    def index(self, name: str) -> int:
        return self.names.index(name)

    def blend(self, weights: np.ndarray, gain: np.ndarray | None = None) -> np.ndarray:
        """T x V viseme weights (rows summing to 1) and an optional T opening gain -> T x N x 2 offsets."""
        weights = np.asarray(weights, dtype=np.float64)
        opening = weights if gain is None else weights * np.asarray(gain, dtype=np.float64)[:, None]
        return (np.tensordot(opening, self.opening, axes=1) + np.tensordot(weights, self.shaping, axes=1))


def _weight(x: np.ndarray, plateau: float, reach: float) -> np.ndarray:
    """1 up to `plateau`, then a smooth (cosine squared) fall to 0 at `reach`."""
    t = np.clip((np.abs(x) - plateau) / max(reach - plateau, 1e-9), 0.0, 1.0)
    return np.cos(0.5 * np.pi * t) ** 2


@dataclass(frozen=True)
class _MouthFrame:
    """The mouth's own axes: `a` along the mouth line (corner to corner), `b` down the face,
    both from the mouth centre; the inner lips as curves b(a)."""

    centre: np.ndarray
    along: np.ndarray  # unit
    down: np.ndarray  # unit, perpendicular to `along`
    half_width: float
    upper: tuple[np.ndarray, np.ndarray]  # (a sorted, b): the upper inner lip
    lower: tuple[np.ndarray, np.ndarray]
    lip_up: float  # how far the outer lip reaches above the parting line, at the centre
    lip_down: float  # ... and below it
    upper_points: np.ndarray  # indices of the upper inner lip (corners excluded)
    lower_points: np.ndarray  # ... of the lower inner lip

    def local(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rel = points - self.centre
        return rel @ self.along, rel @ self.down

    def inner_lip(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(upper, lower) inner-lip b at positions a (held at the corners beyond them)."""
        return np.interp(a, *self.upper), np.interp(a, *self.lower)


def _mouth_frame(points: np.ndarray, scheme: LandmarkScheme) -> _MouthFrame:
    geo = FaceGeometry.from_landmarks(points, scheme)
    left, right = geo.mouth_corners
    along = (right - left) / max(float(np.linalg.norm(right - left)), 1e-9)
    down = np.array([-along[1], along[0]])
    if down @ geo.down < 0:
        down = -down
    centre = 0.5 * (left + right)
    regions = mediapipe_regions()
    loop = regions.inner_lips
    a = (points[loop] - centre) @ along
    b = (points[loop] - centre) @ down
    i, j = sorted((int(np.argmin(a)), int(np.argmax(a))))  # the inner corners split the loop in two
    arcs = [np.arange(i, j + 1), np.concatenate([np.arange(j, len(loop)), np.arange(0, i + 1)])]
    top = int(np.flatnonzero(loop == INNER_LIP_MIDDLE[0])[0])
    upper_arc, lower_arc = arcs if top in arcs[0] else arcs[::-1]

    def curve(arc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(a[arc])
        return a[arc][order], b[arc][order]

    upper, lower = curve(upper_arc), curve(lower_arc)
    parting = 0.5 * (np.interp(0.0, *upper) + np.interp(0.0, *lower))
    outer_b = (points[regions.outer_lips] - centre) @ down
    half_width = 0.5 * float(np.linalg.norm(right - left))
    return _MouthFrame(centre, along, down, half_width, upper, lower,
                       lip_up=max(parting - float(outer_b.min()), 0.1 * half_width),
                       lip_down=max(float(outer_b.max()) - parting, 0.1 * half_width),
                       upper_points=loop[upper_arc[1:-1]], lower_points=loop[lower_arc[1:-1]])


def _width_field(points: np.ndarray, mouth: _MouthFrame) -> np.ndarray:
    """Offsets that widen the mouth by 100% (corners out by half the width each), fading over the cheeks."""
    a, b = mouth.local(points)
    upper, lower = mouth.inner_lip(a)
    rel = b - 0.5 * (upper + lower)
    height = np.where(rel < 0, mouth.lip_up, mouth.lip_down)
    weight = _weight(a / mouth.half_width, 1.0, 1.6) * _weight(rel / height, 1.0, 2.2)
    return (a * weight)[:, None] * mouth.along


def _closure_field(points: np.ndarray, mouth: _MouthFrame) -> np.ndarray:
    """Offsets that bring the inner lips together (each half of the gap), fading towards nose and chin."""
    a, b = mouth.local(points)
    upper, lower = mouth.inner_lip(a)
    gap = np.maximum(lower - upper, 0.0)
    rel = b - 0.5 * (upper + lower)
    side = np.where(rel < 0, 1.0, -1.0)  # the upper lip moves down, the lower lip up
    height = np.where(rel < 0, mouth.lip_up, mouth.lip_down)
    weight = _weight(a / mouth.half_width, 1.0, 1.3) * _weight(rel / height, 1.0, 2.5)
    return (side * 0.5 * gap * weight)[:, None] * mouth.down


def viseme_offsets(neutral: np.ndarray, scheme: LandmarkScheme | None = None) -> VisemeOffsets:
    """Every viseme's offsets (V x N x 2) for a face whose neutral landmarks are `neutral`
    (N x 2 mediapipe478 points, any units: the offsets come back in the same units)."""
    scheme = scheme or get_scheme("mediapipe478")
    neutral = np.asarray(neutral, dtype=np.float64)
    height = float(np.ptp(neutral[:, 1]))
    if not np.isfinite(neutral).all() or height <= 0:
        raise ValueError("the neutral landmarks must be finite and span some height")
    scale = _CANONICAL_HEIGHT / height
    points = neutral * scale
    mouth = _mouth_frame(points, scheme)
    width, closure = _width_field(points, mouth), _closure_field(points, mouth)
    side = np.zeros(len(points))
    side[mouth.upper_points], side[mouth.lower_points] = -1.0, 1.0  # the inner lips part, as a tracker sees it
    opening = np.stack([parted_lips(points, scheme, v.open * _CANONICAL_HEIGHT, side) - points
                        for v in VISEMES.values()])
    shaping = np.stack([v.width * width + v.close * closure for v in VISEMES.values()])
    return VisemeOffsets(NAMES, opening / scale, shaping / scale)
