"""The track builder: timed phonemes -> per-frame face landmarks, made in chunks.

For frame i (shown at t = (i + 0.5) / fps):

1. Coarticulation by dominance functions (Cohen and Massaro's model): every phone
   (a diphthong as two halves) pulls the mouth towards its viseme with a weight that
   is the viseme's `dominance` over the phone's own interval and fades as
   exp(-rate x distance) before and after it (tapered to 0 at `context`). The mouth's offsets at t are the
   weighted mean of the visemes' offsets (talkingface.speech.visemes), so consonants
   of low dominance take the shape of the vowels around them, and fast speech never
   reaches every target, as in real speech.
2. Lips close fully on p, b and m: every frame inside such a phone, or for a phone
   shorter than a frame the frame nearest to its centre, takes the closed viseme alone.
3. Loudness: the opening part of the offsets is scaled by the audio's level around t
   against the speech's usual level (louder speech opens the jaw wider).
4. Idle head motion and blinks, seeded: the synthetic clips' own curves and warps
   (talkingface.data.synthetic.motion's smooth random shift, scale and in-plane rotation,
   and blinks at jittered intervals; synthesize_clip's eyelid warp and head affine),
   with bounds scaled by `head_motion` (0: none). The mouth offsets are carried by the
   same head motion: the head affine is linear and the eyelid warps do not reach the
   mouth, so a point p + o of the mouth lands at A(p) + A_lin(o).

Frames are made `chunk` at a time from the phone list (a few numbers per phone) and
the per-frame head and blink curves (a few numbers per frame), so the landmark arrays
of a long track never exist all at once. `TrackFile` writes a track to an .npz as it
is made.
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from talkingface.data.synthetic import Motion, MotionSpec, generate_motion, synthesize_clip
from talkingface.landmarks.scheme import get_scheme
from talkingface.speech.align import FRAME_SECONDS, Alignment
from talkingface.speech.visemes import CLOSED, NAMES, VISEMES, VisemeOffsets, phoneme_visemes, viseme_offsets


@dataclass(frozen=True)
class TrackSettings:
    fps: float = 25.0  # frames per second of the track (and of the video)
    head_motion: float = 1.0  # 0..1: scale of the idle head motion (0: the head stays still)
    seed: int = 0  # head motion and blinks: the same seed gives the same track
    max_shift: float = 0.012  # at head_motion 1: largest head shift per axis, fraction of the crop
    max_scale: float = 0.012  # at head_motion 1: largest |scale - 1|
    max_rotation_deg: float = 2.0  # at head_motion 1: largest in-plane head rotation, degrees
    head_period: float = 2.5  # shortest period of the head motion, seconds
    blink_every: float = 3.5  # mean time between blinks, seconds (people blink every 2-10 s)
    blink_seconds: float = 0.24  # one blink, closing and reopening, seconds
    loudness_gain: float = 0.5  # how much the mouth opening follows loudness (0: not at all)
    context: float = 0.8  # seconds before and after a phone over which it can shape the mouth (tapered to 0)
    chunk: int = 64  # frames made at a time

    def __post_init__(self):
        checks = [(self.fps > 0, "fps must be > 0"), (0 <= self.head_motion <= 1, "head_motion must be in [0, 1]"),
                  (self.blink_every == 0 or self.blink_every >= self.blink_seconds,
                   "blink_every must be 0 (no blinks) or at least blink_seconds"),
                  (self.blink_seconds > 0 and self.head_period > 0 and self.context > 0, "times must be > 0"),
                  (self.loudness_gain >= 0 and self.chunk >= 1, "loudness_gain must be >= 0, chunk >= 1")]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"TrackSettings: {message}")


def frame_count(duration: float, fps: float) -> int:
    """Frames of a video as long as `duration` seconds of audio (at least one)."""
    return max(1, int(round(duration * fps)))


@dataclass(frozen=True)
class TrackChunk:
    start: int  # index of the first frame
    landmarks: np.ndarray  # C x N x 2 float32, in the neutral landmarks' units (0..1 of the source crop)
    visemes: np.ndarray  # C int: the viseme of largest weight in each frame (index into visemes.NAMES)


class _Segments:
    """The phones as viseme segments: arrays of start, end, viseme index, dominance and rate."""

    def __init__(self, alignment: Alignment):
        rows = []
        for phone in alignment.phones:
            names = phoneme_visemes(phone.label)
            step = (phone.end - phone.start) / len(names)
            rows.extend((phone.start + k * step, phone.start + (k + 1) * step, NAMES.index(name))
                        for k, name in enumerate(names))
        table = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
        self.start, self.end, self.viseme = table[:, 0], table[:, 1], table[:, 2].astype(np.int64)
        self.dominance = np.asarray([VISEMES[NAMES[v]].dominance for v in self.viseme])
        self.rate = np.asarray([VISEMES[NAMES[v]].rate for v in self.viseme])
        self.closed = self.viseme == NAMES.index(CLOSED)

    def near(self, t0: float, t1: float, context: float) -> np.ndarray:
        """Indices of the segments that reach into [t0 - context, t1 + context]."""
        first = int(np.searchsorted(self.end, t0 - context, side="left"))
        last = int(np.searchsorted(self.start, t1 + context, side="right"))
        return np.arange(first, max(first, last))


def viseme_weights(segments: _Segments, times: np.ndarray, context: float, fps: float) -> np.ndarray:
    """T x V weights (rows sum to 1) of the visemes at `times` (seconds)."""
    weights = np.zeros((len(times), len(NAMES)))
    weights[:, NAMES.index("sil")] = 1e-6  # where no phone reaches: rest
    if len(times) == 0:
        return weights
    near = segments.near(float(times[0]), float(times[-1]), context)
    if len(near):
        start, end = segments.start[near], segments.end[near]
        distance = np.maximum(np.maximum(start[None] - times[:, None], times[:, None] - end[None]), 0.0)
        taper = np.clip(1.0 - (distance / context) ** 2, 0.0, None) ** 2  # 0 from `context` on: any chunking agrees
        dominance = segments.dominance[near] * np.exp(-segments.rate[near] * distance) * taper  # T x S
        np.add.at(weights.T, segments.viseme[near], dominance.T)
        # lips closed on p, b, m: frames inside the phone, or the one nearest its centre when it is shorter
        closed = near[segments.closed[near]]
        for s in closed:
            inside = (times >= segments.start[s]) & (times < segments.end[s])
            if not inside.any():  # the frame nearest the centre, if it is in `times`
                centre = 0.5 * (segments.start[s] + segments.end[s])
                nearest = int(np.argmin(np.abs(times - centre)))
                inside[nearest] = abs(times[nearest] - centre) <= 0.5 / fps
            weights[inside] = 0.0
            weights[inside, NAMES.index(CLOSED)] = 1.0
    return weights / weights.sum(axis=1, keepdims=True)


def opening_gain(loudness: np.ndarray, sound_level: float, times: np.ndarray, amount: float) -> np.ndarray:
    """How wide the mouth opens at `times` against the viseme's own opening: 1 at the speech's usual
    level (`sound_level`, dBFS), more when louder, less when quieter (by `amount` per 20 dB)."""
    if amount <= 0 or len(loudness) == 0:
        return np.ones(len(times))
    index = np.clip((times / FRAME_SECONDS).astype(np.int64), 0, len(loudness) - 1)
    window = np.stack([loudness[np.clip(index + k, 0, len(loudness) - 1)] for k in range(-3, 4)])  # +-30 ms
    level = window.max(axis=0)
    return np.clip(1.0 + amount * (level - sound_level) / 20.0, 0.5, 1.25)


class SpeechTrack:
    """The landmark track of one face speaking an aligned audio (module doc); iterate `chunks()`."""

    def __init__(self, neutral: np.ndarray, image: np.ndarray, alignment: Alignment,
                 settings: TrackSettings = TrackSettings()):
        """neutral: the face's landmarks (N x 2, 0..1 of `image`, mediapipe478); image: the picture
        they are on (the source crop: its size sets the pixel scale of the eyelid warps)."""
        self.neutral = np.asarray(neutral, dtype=np.float64)
        self.image = image
        self.settings = s = settings
        self.scheme = get_scheme("mediapipe478")
        self.alignment = alignment
        self.num_frames = frame_count(alignment.duration, s.fps)
        self.offsets: VisemeOffsets = viseme_offsets(self.neutral, self.scheme)
        self.segments = _Segments(alignment)
        loud = alignment.loudness[alignment.loudness > -60.0] if len(alignment.loudness) else alignment.loudness
        self.sound_level = float(np.percentile(loud, 90)) if len(loud) else 0.0
        h = s.head_motion
        blink_frames = max(2, int(round(s.blink_seconds * s.fps)))
        self.spec = MotionSpec(num_frames=self.num_frames, max_shift=s.max_shift * h, max_scale=s.max_scale * h,
                               max_rotation_deg=s.max_rotation_deg * h, smoothness=max(2.0, s.head_period * s.fps),
                               mouth_open_max=0.0, blink_every=max(s.blink_every * s.fps, blink_frames),
                               blink_frames=blink_frames, seed=s.seed)
        self.motion = generate_motion(self.spec)  # a few numbers per frame

    def times(self, start: int, stop: int) -> np.ndarray:
        return (np.arange(start, stop) + 0.5) / self.settings.fps

    def mouth_offsets(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """(C x N x 2 mouth offsets from the neutral face, C viseme weights' argmax) of frames start..stop-1."""
        times = self.times(start, stop)
        weights = viseme_weights(self.segments, times, self.settings.context, self.settings.fps)
        gain = opening_gain(self.alignment.loudness, self.sound_level, times, self.settings.loudness_gain)
        return self.offsets.blend(weights, gain), weights.argmax(axis=1)

    def chunk(self, start: int, stop: int) -> TrackChunk:
        offsets, visemes = self.mouth_offsets(start, stop)
        part = slice(start, stop)
        m = self.motion
        zeros = np.zeros(stop - start)
        motion = Motion(shift=m.shift[part], scale=m.scale[part], rotation_deg=m.rotation_deg[part],
                        mouth_open=zeros, eye_closure=m.eye_closure[part], yaw_deg=zeros, pitch_deg=zeros,
                        smile=zeros, brow=zeros)
        clip = synthesize_clip(self.image, self.neutral, self.scheme, self.spec, motion=motion)
        carried = np.einsum("cij,cnj->cni", clip.affines[:, :, :2], offsets)  # A_lin(o), per frame
        return TrackChunk(start, (clip.landmarks + carried).astype(np.float32), visemes.astype(np.int16))

    def chunks(self) -> Iterator[TrackChunk]:
        step = self.settings.chunk
        for start in range(0, self.num_frames, step):
            yield self.chunk(start, min(start + step, self.num_frames))

    def frames(self) -> Iterator[np.ndarray]:
        """Each frame's landmarks (N x 2, 0..1 of the source crop), in order."""
        for chunk in self.chunks():
            yield from chunk.landmarks


class TrackFile:
    """A track written to an .npz as its chunks are made (numpy's .npz: a zip of .npy files,
    written member by member, so the landmarks are never all in memory). `np.load` reads it:

        landmarks        T x 478 x 2 float32, the driving landmarks in the source image's pixels (x, y)
        visemes          T int16, each frame's strongest viseme (index into viseme_names)
        viseme_names     the visemes (talkingface.speech.visemes)
        source_landmarks 478 x 2 float32, the portrait's own (neutral) landmarks, pixels
        crop_box         x0, y0, side: the model crop; crop coordinates = (landmarks - (x0, y0)) / side
        phonemes, phoneme_times   the aligned phones (ARPAbet, SIL) and their (start, end), seconds
        fps, duration    frame rate, seconds of audio
        scheme           "mediapipe478"
    """

    def __init__(self, path: str | os.PathLike, num_frames: int, num_points: int):
        self.shape = (num_frames, num_points, 2)
        self.zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        self.visemes: list[np.ndarray] = []
        self.written = 0
        self.member = self.zip.open("landmarks.npy", "w", force_zip64=True)
        np.lib.format.write_array_header_1_0(self.member, {"descr": "<f4", "fortran_order": False,
                                                           "shape": self.shape})

    def write(self, landmarks_px: np.ndarray, visemes: np.ndarray) -> None:
        if self.written + len(landmarks_px) > self.shape[0]:
            raise ValueError(f"more frames than the {self.shape[0]} announced")
        self.member.write(np.ascontiguousarray(landmarks_px, dtype="<f4").tobytes())
        self.visemes.append(np.asarray(visemes, dtype=np.int16))
        self.written += len(landmarks_px)

    def close(self, **arrays: np.ndarray) -> None:
        """Finish the file with the small arrays (source_landmarks, crop_box, phonemes, ...)."""
        self.member.close()
        if self.written != self.shape[0]:
            raise ValueError(f"{self.written} frames written of the {self.shape[0]} announced")
        arrays = {"visemes": np.concatenate(self.visemes) if self.visemes else np.zeros(0, np.int16),
                  "viseme_names": np.asarray(NAMES), "scheme": np.asarray("mediapipe478"), **arrays}
        for name, value in arrays.items():
            with self.zip.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, np.asarray(value), allow_pickle=False)
        self.zip.close()

    def abort(self) -> None:
        """Close the file unfinished (after a failure); nothing once it is closed."""
        if self.zip.fp is not None:
            self.member.close()
            self.zip.close()
