"""How well does `speak` follow speech? Alignment, lip closure, mouth against loudness, speed.

Speech: known sentences spoken by espeak-ng through its library (libespeak-ng, as the
`espeak-ng` program uses it), which reports when each of its phonemes starts in the
audio it makes. That timing is exact by construction, so it is the reference:

- alignment: phoneme boundary error against espeak-ng's own timing, for forced
  alignment on the sentence (what `speak --text` does) and for phoneme recognition (no
  transcript). The predicted and reference phone sequences are matched by label
  (difflib); for each matched phone, |predicted start - espeak-ng's start|. espeak-ng's
  phonemes are turned into ARPAbet with talkingface.speech.espeak's table.
- lip closure: for every p, b and m (espeak-ng's timing), whether some frame within
  40 ms of the phone (its centre time within [start - 40 ms, end + 40 ms]) has the lips
  closed: mouth opening (inner-lip gap over the eye-to-mouth distance, as
  talkingface.metrics.reenactment measures it) below CLOSED, in the driving landmark
  track and, by MediaPipe Face Mesh, in the rendered video. So that a mouth that never
  opens does not pass, the share of vowels (60 ms or longer) during which it opens
  beyond CLOSED is reported beside it.
- mouth against loudness: Pearson correlation, per frame, of the mouth opening
  MediaPipe measures on the rendered video with the audio's loudness (RMS dBFS over the
  frame's 40 ms, floored at -60), all sentences together; the track's own opening too.
- speed: wall seconds of `speak` (alignment, track, rendering, encoding; model loading
  included) per second of audio, on this machine, and the part that grows with the audio
  (the track, rendering and encoding) apart from the start-up.

The portrait is Grace Hopper's (matplotlib's sample data; closed mouth), the model the
bundled one, rendering full resolution (the defaults).

    python benchmarks/bench_speak.py [--out FILE]   # default benchmarks/results/bench_speak.json
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import difflib
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

SENTENCES = (
    "Hello, this is a test.",
    "Bob may bring a map of the big pond.",
    "The quick brown fox jumps over the lazy dog.",
    "Peter picked a peck of pickled peppers.",
    "My mother prefers a warm bath, but she sells sea shells by the shore.",
)
CLOSED = 0.05  # mouth opening below this: lips closed (Grace Hopper's photo: 0.01 by MediaPipe)
VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}
NEAR = 0.04  # seconds: "within 40 ms" of a p, b or m
FPS = 25.0


# --------------------------------------------------------------------------- espeak-ng, with its phoneme timing
class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):  # espeak_EVENT of speak_lib.h
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_PHONEME_EVENT, _SYNCHRONOUS, _WITH_PHONEME_EVENTS, _END_PAUSE = 7, 2, 1, 0x1000


class Espeak:
    """libespeak-ng in synchronous mode: text -> (samples, rate, [(phoneme, start seconds)])."""

    def __init__(self, voice: str = "en-us"):
        name = ctypes.util.find_library("espeak-ng")
        if name is None:
            raise SystemExit("libespeak-ng not found: sudo apt-get install espeak-ng")
        self.lib = ctypes.CDLL(name)
        self.rate = self.lib.espeak_Initialize(_SYNCHRONOUS, 0, None, _WITH_PHONEME_EVENTS)
        self.lib.espeak_SetVoiceByName(voice.encode())
        self.samples: list[np.ndarray] = []
        self.events: list[tuple[str, float]] = []
        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                         ctypes.POINTER(_Event))
        self._callback = callback_type(self._receive)  # kept alive as long as the library may call it
        self.lib.espeak_SetSynthCallback(self._callback)

    def _receive(self, wav, count, events) -> int:
        if wav and count > 0:
            self.samples.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        i = 0
        while events[i].type != 0:
            if events[i].type == _PHONEME_EVENT:
                self.events.append((events[i].id.string.decode(), events[i].audio_position / 1000.0))
            i += 1
        return 0

    def speak(self, text: str) -> tuple[np.ndarray, int, list[tuple[str, float]]]:
        self.samples, self.events = [], []
        data = text.encode()
        self.lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, _END_PAUSE, None, None)
        self.lib.espeak_Synchronize()
        return np.concatenate(self.samples), self.rate, list(self.events)


def reference_phones(events: list[tuple[str, float]], duration: float) -> list[tuple[str, float, float]]:
    """espeak-ng's phoneme events -> ARPAbet (label, start, end); a phoneme written as two ARPAbet
    phones is split in equal halves; pauses are dropped."""
    from talkingface.speech.espeak import mnemonics_to_arpabet

    out = []
    for k, (name, start) in enumerate(events):
        end = events[k + 1][1] if k + 1 < len(events) else duration
        phones = mnemonics_to_arpabet([name])
        step = (end - start) / max(len(phones), 1)
        out.extend((p, start + j * step, start + (j + 1) * step) for j, p in enumerate(phones))
    return out


def boundary_errors(predicted: list, reference: list) -> tuple[list[float], int]:
    """|start differences| of phones matched by label (difflib), and the number matched."""
    a, b = [p.label for p in predicted], [r[0] for r in reference]
    errors = []
    for block in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_matching_blocks():
        errors.extend(abs(predicted[block.a + k].start - reference[block.b + k][1]) for k in range(block.size))
    return errors, len(errors)


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())


def frame_loudness(samples16k: np.ndarray, frames: int) -> np.ndarray:
    step = int(16000 / FPS)
    out = []
    for i in range(frames):
        chunk = samples16k[i * step:(i + 1) * step].astype(np.float64) / 32768
        out.append(max(10 * np.log10((chunk ** 2).mean() + 1e-12) if len(chunk) else -120.0, -60.0))
    return np.asarray(out)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    from talkingface.metrics.reenactment import correlation as pearson

    return pearson(np.asarray(a, float), np.asarray(b, float))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="JSON result file (default benchmarks/results/bench_speak.json).")
    parser.add_argument("--speed-repeats", type=int, default=3,
                        help="Extra runs of the longest sentence for the speed figure; the fastest counts (the "
                             "least disturbed by other work on shared cores).")
    args = parser.parse_args(argv)

    from PIL import Image

    from bench_common import load_average, machine_info, result_header, result_path, write_result
    from talkingface.inference.engine import cpu_flags
    from talkingface.metrics.reenactment import motion_signals, track_motion
    from talkingface.recipes.demo import demo_portrait
    from talkingface.recipes.speak import SpeakOptions, run_speak
    from talkingface.speech.align import align_speech
    from talkingface.utils.audio import read_audio
    from talkingface.utils.video import iter_frames

    info = machine_info()
    header = result_header()  # before the run: the load average it started under
    flags = sorted(f for f in cpu_flags() if f == "avx2" or f.startswith(("avx512", "amx")))
    print("\n".join(info.lines()) + f"\nCPU flags (avx2/avx512*/amx*): {' '.join(flags) or 'none'}"
          + f"\nload average: {load_average()}")
    espeak = Espeak()
    rows: dict[str, dict] = {}
    forced_errors, recog_errors, forced_n, recog_n, ref_n = [], [], 0, 0, 0
    closures = {"track": [], "video": []}
    vowels_open = {"track": [], "video": []}
    align_seconds = 0.0
    mouth_video, mouth_track, loudness = [], [], []
    audio_total = wall_total = render_total = 0.0
    with tempfile.TemporaryDirectory(prefix="bench-speak-") as work:
        work = Path(work)
        portrait = work / "grace_hopper.png"
        Image.fromarray(demo_portrait()).save(portrait)
        photo_gap = track_motion([demo_portrait()]).mouth_open[0]
        for n, sentence in enumerate(SENTENCES):
            samples, rate, events = espeak.speak(sentence)
            wav = work / f"s{n}.wav"
            write_wav(wav, samples, rate)
            audio16k = read_audio(wav)
            duration = len(audio16k) / 16000
            reference = reference_phones(events, len(samples) / rate)
            ref_n += len(reference)
            clock = time.perf_counter()
            forced = [p for p in align_speech(audio16k, sentence).phones if p.label != "SIL"]
            align_seconds += time.perf_counter() - clock
            recognised = [p for p in align_speech(audio16k, None).phones if p.label != "SIL"]
            fe, fn = boundary_errors(forced, reference)
            re_, rn = boundary_errors(recognised, reference)
            forced_errors += fe
            recog_errors += re_
            forced_n, recog_n = forced_n + fn, recog_n + rn

            out, npz = work / f"s{n}.mp4", work / f"s{n}.npz"
            began = time.perf_counter()
            spoke = run_speak(SpeakOptions(source=str(portrait), audio=str(wav), transcript=sentence, out=str(out),
                                           save_landmarks=str(npz), progress=False))
            wall = time.perf_counter() - began
            audio_total, wall_total = audio_total + duration, wall_total + wall
            render_total += spoke.render_seconds
            frames = list(iter_frames(out))
            with np.load(npz) as track:
                track_open = np.array([motion_signals(p)[2] for p in track["landmarks"]])
            video_open = track_motion(frames).mouth_open
            times = (np.arange(len(frames)) + 0.5) / FPS
            for label, start, end in reference:
                if label in ("P", "B", "M"):
                    near = (times >= start - NEAR) & (times <= end + NEAR)
                    closures["track"].append(bool(near.any() and track_open[near].min() < CLOSED))
                    closures["video"].append(bool(near.any() and np.nanmin(video_open[near]) < CLOSED))
                if label in VOWELS and end - start >= 0.06:
                    inside = (times >= start) & (times < end)
                    vowels_open["track"].append(bool(inside.any() and track_open[inside].max() > CLOSED))
                    vowels_open["video"].append(bool(inside.any() and np.nanmax(video_open[inside]) > CLOSED))
            loud = frame_loudness(audio16k, len(frames))
            mouth_video.append(video_open)
            mouth_track.append(track_open)
            loudness.append(loud)
            rows[sentence] = {"audio_seconds": duration, "frames": len(frames), "wall_seconds": wall,
                              "render_seconds": spoke.render_seconds,
                              "reference_phones": len(reference), "forced_matched": fn, "recognised_matched": rn,
                              "forced_mean_error_ms": 1000 * float(np.mean(fe)) if fe else None,
                              "recognised_mean_error_ms": 1000 * float(np.mean(re_)) if re_ else None,
                              "mouth_loudness_corr_video": correlation(video_open, loud),
                              "mouth_loudness_corr_track": correlation(track_open, loud)}
            print(f"[{n + 1}/{len(SENTENCES)}] {sentence!r}: {duration:.2f} s audio, {wall:.1f} s wall")
        longest = max(rows, key=lambda k: rows[k]["audio_seconds"])
        repeats = [(rows[longest]["wall_seconds"], rows[longest]["render_seconds"])]
        wav = work / f"s{SENTENCES.index(longest)}.wav"
        for k in range(args.speed_repeats):
            began = time.perf_counter()
            spoke = run_speak(SpeakOptions(source=str(portrait), audio=str(wav), transcript=longest,
                                           out=str(work / "speed.mp4"), progress=False))
            repeats.append((time.perf_counter() - began, spoke.render_seconds))
            print(f"speed run {k + 1}/{args.speed_repeats}: {repeats[-1][0]:.1f} s wall, load {load_average()}")
        best_wall, best_render = min(repeats)

    def summary(errors: list[float], matched: int) -> dict:
        e = np.asarray(errors) * 1000
        return {"matched_phones": matched, "reference_phones": ref_n, "matched_share": matched / ref_n,
                "mean_ms": float(e.mean()), "median_ms": float(np.median(e)),
                "within_20ms": float((e <= 20).mean()), "within_40ms": float((e <= 40).mean())}

    result = {
        "sentences": list(SENTENCES), "fps": FPS, "closed_threshold": CLOSED, "photo_mouth_open": float(photo_gap),
        "alignment": {"forced": summary(forced_errors, forced_n), "recognition": summary(recog_errors, recog_n)},
        "lip_closure": {k: {"closed": int(sum(v)), "bilabials": len(v), "share": float(np.mean(v)),
                            "vowels_open": int(sum(vowels_open[k])), "vowels": len(vowels_open[k])}
                        for k, v in closures.items()},
        "mouth_loudness_correlation": {
            "video_mediapipe": correlation(np.concatenate(mouth_video), np.concatenate(loudness)),
            "track": correlation(np.concatenate(mouth_track), np.concatenate(loudness))},
        "speed": {"audio_seconds": audio_total, "wall_seconds": wall_total,
                  "wall_per_audio_second": wall_total / audio_total,
                  "render_per_audio_second": render_total / audio_total,
                  "startup_seconds_per_run": (wall_total - render_total) / len(SENTENCES),
                  "forced_alignment_per_audio_second": align_seconds / audio_total,
                  "fastest_run": {"sentence": longest, "audio_seconds": rows[longest]["audio_seconds"],
                                  "runs": len(repeats), "wall_seconds": best_wall, "render_seconds": best_render,
                                  "wall_per_audio_second": best_wall / rows[longest]["audio_seconds"],
                                  "render_per_audio_second": best_render / rows[longest]["audio_seconds"]}},
        "load_average_after": load_average(),
        "per_sentence": rows,
    }
    a, c, m, s = result["alignment"], result["lip_closure"], result["mouth_loudness_correlation"], result["speed"]
    print(f"\n{'':32s} {'matched':>9s} {'mean ms':>8s} {'median':>7s} {'<=20ms':>7s} {'<=40ms':>7s}")
    for name in ("forced", "recognition"):
        r = a[name]
        print(f"alignment, {name:21s} {r['matched_share']:8.0%} {r['mean_ms']:8.1f} {r['median_ms']:7.1f} "
              f"{r['within_20ms']:7.0%} {r['within_40ms']:7.0%}")
    for k, name in (("track", "landmark track"), ("video", "rendered video (MediaPipe)")):
        print(f"{name}: lips closed within 40 ms of {c[k]['closed']}/{c[k]['bilabials']} p/b/m; "
              f"mouth open on {c[k]['vowels_open']}/{c[k]['vowels']} vowels")
    print(f"mouth opening vs loudness (Pearson): rendered video {m['video_mediapipe']:.2f}, track {m['track']:.2f}")
    print(f"speed: {s['wall_per_audio_second']:.2f} s of wall time per second of audio "
          f"({s['audio_seconds']:.1f} s of audio): {s['render_per_audio_second']:.2f} s rendering and encoding per "
          f"second of audio, plus {s['startup_seconds_per_run']:.1f} s of start-up a run (imports, model, face, "
          f"alignment; forced alignment alone {s['forced_alignment_per_audio_second']:.3f} s per audio second)"
          f"\nfastest of {s['fastest_run']['runs']} runs of the longest sentence: "
          f"{s['fastest_run']['wall_per_audio_second']:.2f} s per second of audio, "
          f"{s['fastest_run']['render_per_audio_second']:.2f} s of it rendering and encoding"
          f"\nload average: {load_average()}")
    out = write_result(args.out or result_path(__file__), result, header)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
