"""Make the demo's driving video, talkingface/assets/demo/driving.mp4 (maintainers only).

A held-out person (tests/data/faces/biden.jpg; the bundled model never saw him) given
synthetic head, mouth and blink motion by talkingface.data.synthetic, 256x256 at 25 fps,
with a synthetic voice-like audio track whose loudness follows the mouth opening, so
that `talkingface demo` shows motion and audio transfer with files that ship in the
package.

    python scripts/make_demo_driving.py [--out talkingface/assets/demo/driving.mp4]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from talkingface.data.synthetic import MotionSpec, synthesize_clip
from talkingface.landmarks.scheme import get_scheme
from talkingface.preprocess.portrait import detect_landmarks
from talkingface.utils.video import write_video

REPO = Path(__file__).resolve().parents[1]
SAMPLE_RATE = 16000


def voice_like(mouth_open: np.ndarray, fps: float, seed: int = 0) -> np.ndarray:
    """Mono float32 samples: a buzzing harmonic tone with a drifting pitch, loud when
    the mouth is open and silent when it is shut (a stand-in for speech)."""
    rng = np.random.default_rng(seed)
    n = int(round(len(mouth_open) / fps * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    frame_t = np.arange(len(mouth_open)) / fps
    level = np.interp(t, frame_t, mouth_open / max(float(mouth_open.max()), 1e-6))
    pitch = 130 + 25 * np.sin(2 * np.pi * 0.7 * t) + 10 * np.sin(2 * np.pi * 2.3 * t)  # Hz
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    tone = sum(np.sin(k * phase) / k ** 1.2 for k in range(1, 12))  # harmonics of the glottal buzz
    breath = rng.standard_normal(n) * 0.05
    signal = (tone / 3 + breath) * level ** 1.5
    return (0.5 * signal / max(float(np.abs(signal).max()), 1e-6)).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray) -> None:
    import av

    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("pcm_s16le", rate=SAMPLE_RATE)
        stream.layout = "mono"
        pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)[None]
        for start in range(0, pcm.shape[1], 4096):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, start:start + 4096]), format="s16",
                                               layout="mono")
            frame.sample_rate = SAMPLE_RATE
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--portrait", type=Path, default=REPO / "tests" / "data" / "faces" / "biden.jpg")
    p.add_argument("--out", type=Path, default=REPO / "talkingface" / "assets" / "demo" / "driving.mp4")
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--mouth-open", type=float, default=0.16, help="largest lip gap, fraction of the face height")
    args = p.parse_args()

    image = np.asarray(Image.open(args.portrait).convert("RGB"))
    scheme = get_scheme("mediapipe478")
    clip = synthesize_clip(image, detect_landmarks(image, args.portrait), scheme,
                           MotionSpec(num_frames=args.frames, seed=args.seed, mouth_open_max=args.mouth_open))
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "voice.wav"
        write_wav(wav, voice_like(clip.motion.mouth_open, args.fps, args.seed))
        count = write_video(args.out, iter(clip.frames), args.fps, audio_from=wav, crf=20)
    print(f"wrote {args.out}: {count} frames at {args.fps} fps, {args.out.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
