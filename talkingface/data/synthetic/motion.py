"""Motion of a synthetic clip: the spec (bounds) and the per-frame curves drawn from it.

Every curve is deterministic in the spec's seed. Curves are drawn in a fixed order
(head shift, scale, rotation, mouth, blinks, then head yaw, pitch, smile, brow), so
adding a later curve never changes an earlier one: clips made before the 3-D head
turns and expressions existed are reproduced exactly when those stay at 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from talkingface.errors import ConfigError
from talkingface.utils.options import option


# --------------------------------------------------------------------------- spec
@dataclass
class MotionSpec:
    """How a synthetic clip moves. Bounds are hard: every frame stays inside them."""

    num_frames: int = 64
    max_shift: float = option(0.04, "Largest shift per axis, fraction of the size (default %(default)s).")
    max_scale: float = option(0.05, "Largest |scale - 1| (default %(default)s).")
    max_rotation_deg: float = option(5.0, "Largest in-plane rotation, degrees (default %(default)s; positive: "
                                          "clockwise on screen).", flag="--max-rotation")
    smoothness: float = 40.0  # shortest period of the head motion, frames; per-frame change <= 2*pi/smoothness * bound
    mouth_open_max: float = option(0.08, "Largest lip gap, fraction of the face height (landmark box height; "
                                         "default %(default)s).", flag="--mouth-open")
    syllable_frames: float = 7.0  # mean length of one mouth open-close cycle, frames (~3.5 Hz at 25 fps)
    pause_prob: float = 0.2  # chance that a syllable slot keeps the mouth closed
    blink_every: float = option(90.0, "Mean frames between blinks, 0 for none (default %(default)s).")
    blink_frames: int = 7  # length of one blink (close, then reopen), frames
    blink_closure: float = 1.0  # eye closure at a blink's peak: 0 open .. 1 shut
    seed: int = 0
    # Added later; all default to 0 (off), which reproduces earlier clips exactly.
    # Yaw needs the portrait's 3-D Face Mesh (`pose3d`); it rotates about a pivot behind the face.
    max_yaw_deg: float = option(0.0, "Largest head turn out of the image plane, degrees (default 0; about 20 looks "
                                     "right; positive: nose to image-right).", flag="--max-yaw")
    max_pitch_deg: float = option(0.0, "Largest head nod out of the image plane, degrees (default 0; about 15 looks "
                                       "right; positive: chin up).", flag="--max-pitch")
    smile_max: float = option(0.0, "Largest smile: mouth-corner lift (up and out), fraction of the mouth width "
                                   "(default 0; try 0.15).", flag="--smile")
    brow_max: float = option(0.0, "Largest brow raise, fraction of the face height (default 0; try 0.03; capped at "
                                  "0.18 eye widths, ~0.03).", flag="--brow")
    teeth: float = option(0.0, "Opacity of an upper-teeth hint in the open mouth, 0..1 (default 0: a plain dark "
                               "gap).")

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
            (0 <= self.max_yaw_deg <= 30, "max_yaw_deg must be in [0, 30]"),
            (0 <= self.max_pitch_deg <= 30, "max_pitch_deg must be in [0, 30]"),
            (0 <= self.smile_max <= 0.25, "smile_max must be in [0, 0.25]"),
            (0 <= self.brow_max <= 0.05, "brow_max must be in [0, 0.05]"),
            (0 <= self.teeth <= 1, "teeth must be in [0, 1]"),
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
    yaw_deg: np.ndarray  # T, out-of-plane head turn, degrees (positive: nose to image-right)
    pitch_deg: np.ndarray  # T, out-of-plane nod, degrees (positive: chin up)
    smile: np.ndarray  # T, mouth-corner lift, fraction of the mouth width
    brow: np.ndarray  # T, brow raise, fraction of the face height

    @staticmethod
    def fixed(num_frames: int = 1, **values) -> Motion:
        """The same pose in every frame: the given values (shift a pair), the rest at rest
        (no shift, scale 1, nothing else). For renders of set poses and expressions."""
        rest = {"shift": (0.0, 0.0), "scale": 1.0, "rotation_deg": 0.0, "mouth_open": 0.0, "eye_closure": 0.0,
                "yaw_deg": 0.0, "pitch_deg": 0.0, "smile": 0.0, "brow": 0.0}
        unknown = set(values) - set(rest)
        if unknown:
            raise ConfigError(f"Motion.fixed: unknown field(s) {sorted(unknown)}")
        rest.update(values)
        return Motion(**{k: np.tile(np.asarray(v, dtype=np.float64), (num_frames, 1) if k == "shift" else num_frames)
                         for k, v in rest.items()})

    @property
    def turns_head(self) -> bool:
        return bool(np.any(self.yaw_deg != 0) or np.any(self.pitch_deg != 0))


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
    # Drawn after the curves above, whatever their bounds, so those stay as they were.
    yaw = spec.max_yaw_deg * _smooth_curve(rng, n, p)
    pitch = spec.max_pitch_deg * _smooth_curve(rng, n, p)
    smile = spec.smile_max * (0.5 + 0.5 * _smooth_curve(rng, n, p)) ** 2  # in [0, max], often small
    brow = spec.brow_max * np.maximum(_smooth_curve(rng, n, max(2.0, 0.5 * p)), 0.0) ** 2  # raised now and then
    return Motion(shift=shift, scale=scale, rotation_deg=rotation, mouth_open=mouth, eye_closure=eyes,
                  yaw_deg=yaw, pitch_deg=pitch, smile=smile, brow=brow)

