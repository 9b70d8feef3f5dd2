"""Phonemes with start and end times, from speech audio, offline (pocketsphinx).

- With a transcript: forced alignment. The words are aligned to the audio (a grammar
  of exactly those words, optional pauses between them), then a second pass aligns
  their phones. Words the CMU dictionary lacks get espeak-ng's pronunciation when
  espeak-ng is installed. If the words cannot be aligned to the end (the transcript
  does not match the speech), phoneme recognition is used instead, with a warning.
- Without: phoneme recognition. pocketsphinx's all-phone search with its phone
  language model, one utterance at a time (the audio is cut at pauses into pieces of
  at most `utterance_seconds`, so memory and search stay bounded on long audio).

Both use the American English acoustic model inside the pocketsphinx wheel. Phones
are ARPAbet without stress digits (`AA`, `B`, ... as the CMU dictionary writes them);
`SIL` is silence. Times are in seconds at pocketsphinx's 10 ms frame rate.

Audio is decoded with PyAV (talkingface.utils.audio.read_audio) to 16 kHz mono. Before
decoding, a little seeded noise is added: digital silence (exact zeros, which
synthesised speech has between words) makes the recogniser's log-energy features
degenerate, and the alignment then stops early (measured on espeak-ng speech:
"hello this is a test" aligned "hello" only; with the noise, all five words).

Loudness (dBFS per 10 ms) tells speech from silence: audio with too little sound above
the silence level has no speech, and is not decoded at all.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from talkingface.speech.espeak import EspeakMissingError, pronounce

SAMPLE_RATE = 16000  # what the acoustic model was trained on
FRAME_SECONDS = 0.01  # pocketsphinx's frame shift (100 frames a second)
SILENCE = "SIL"
ARPABET = ("AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH", "IY",
           "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W", "Y",
           "Z", "ZH")
_FULL_SCALE = 32768.0


class SpeechWarning(UserWarning):
    """Audio without speech, or a transcript that could not be aligned to it."""


class AlignmentFailed(Exception):
    """A transcript could not be aligned to the audio; the message says why."""


@dataclass(frozen=True)
class Phone:
    label: str  # ARPAbet phone (no stress digit), or "SIL"
    start: float  # seconds
    end: float  # seconds, > start

    @property
    def centre(self) -> float:
        return 0.5 * (self.start + self.end)


@dataclass(frozen=True)
class AlignSettings:
    dither: float = 8.0  # std of the seeded noise added before decoding, in int16 steps (-72 dBFS)
    silence_db: float = -50.0  # 10 ms frames quieter than this (dBFS) are silence ...
    dynamic_range_db: float = 40.0  # ... and so are frames this far below the loudest one
    min_speech_seconds: float = 0.1  # less sound than this above the silence level: no speech in the audio
    utterance_seconds: float = 30.0  # recognition decodes at most this much audio at once (cut at pauses)
    min_pause_seconds: float = 0.25  # a silence at least this long may end an utterance
    phone_lm_weight: float = 2.0  # recognition: weight of the phone language model (tuned: docs/speak.md)

    def __post_init__(self):
        if self.dither < 0 or self.min_speech_seconds < 0 or self.phone_lm_weight <= 0:
            raise ValueError("dither and min_speech_seconds must be >= 0, phone_lm_weight > 0")
        if self.utterance_seconds < 1 or self.min_pause_seconds <= 0:
            raise ValueError("utterance_seconds must be >= 1 and min_pause_seconds > 0")


@dataclass
class Alignment:
    phones: list[Phone]  # in time order, silences included
    duration: float  # seconds of audio
    loudness: np.ndarray  # dBFS per 10 ms frame
    method: str  # "forced alignment", "phoneme recognition" or "none" (no speech)

    @property
    def speech(self) -> bool:
        return any(p.label != SILENCE for p in self.phones)


# --------------------------------------------------------------------------- loudness
def loudness_db(samples: np.ndarray, rate: int = SAMPLE_RATE, hop: float = FRAME_SECONDS) -> np.ndarray:
    """RMS level of each `hop`-second frame of int16 samples, dBFS (a full-scale square wave is 0)."""
    step = max(int(round(rate * hop)), 1)
    count = -(-len(samples) // step)
    padded = np.zeros(count * step, np.float32)
    padded[:len(samples)] = samples
    power = (padded.reshape(count, step) / _FULL_SCALE) ** 2
    return (10 * np.log10(power.mean(axis=1) + 1e-12)).astype(np.float32)


def sound_mask(loudness: np.ndarray, settings: AlignSettings) -> np.ndarray:
    """Which frames carry sound: above the silence level and within the dynamic range of the loudest."""
    if len(loudness) == 0:
        return np.zeros(0, bool)
    floor = max(settings.silence_db, float(loudness.max()) - settings.dynamic_range_db)
    return loudness > floor


# --------------------------------------------------------------------------- pocketsphinx
def _decoder(**config):
    from pocketsphinx import Decoder, get_model_path

    return Decoder(hmm=get_model_path("en-us/en-us"), dict=get_model_path("en-us/cmudict-en-us.dict"), lm=None,
                   loglevel="FATAL", **config)


def _dithered(samples: np.ndarray, amount: float) -> bytes:
    if amount <= 0:
        return np.ascontiguousarray(samples, dtype="<i2").tobytes()
    noise = np.random.default_rng(0).normal(0.0, amount, len(samples))
    return np.clip(np.asarray(samples, np.float64) + noise, -32768, 32767).astype("<i2").tobytes()


def _decode(decoder, data: bytes) -> None:
    decoder.start_utt()
    decoder.process_raw(data, full_utt=True)
    decoder.end_utt()


def _phone_label(name: str) -> str:
    """A pocketsphinx phone or filler name -> ARPAbet, or SIL for silences and noises."""
    name = name.strip().upper().rstrip("012")
    return name if name in ARPABET else SILENCE


def transcript_words(text: str) -> list[str]:
    """A transcript as dictionary words: lower case, letters, digits and apostrophes."""
    text = text.lower().replace("\u2019", "'")
    return [w.strip("'") for w in re.split(r"[^a-z0-9']+", text) if w.strip("'")]


def _missing_pronunciations(words: list[str]) -> dict[str, list[str]]:
    """espeak-ng's pronunciations of the words the CMU dictionary lacks ({} when it has them all);
    AlignmentFailed when some word has none (espeak-ng missing, or no phoneme it knows)."""
    decoder = _decoder()
    missing = sorted({w for w in words if decoder.lookup_word(w) is None})
    if not missing:
        return {}
    try:
        found, why = pronounce(missing), "nor known to espeak-ng"
    except EspeakMissingError:
        found, why = {}, "and espeak-ng, which would give one, is not installed"
    unknown = [w for w in missing if w not in found]
    if unknown:
        raise AlignmentFailed(f"no pronunciation for {', '.join(unknown[:5])}{', ...' if len(unknown) > 5 else ''}"
                              f" (not in the dictionary, {why})")
    return found


def _align_once(data: bytes, words: list[str], extra: dict[str, list[str]], fillers: bool) -> list[Phone] | None:
    decoder = _decoder(fsgusefiller=fillers)
    for index, (word, phones) in enumerate(extra.items()):
        decoder.add_word(word, " ".join(phones), update=index == len(extra) - 1)
    try:
        decoder.set_align_text(" ".join(words))
        _decode(decoder, data)
        aligned = [re.sub(r"\(\d+\)$", "", s.word) for s in (decoder.seg() or []) if s.word[:1] not in "<["]
        if aligned != words:
            return None  # the search stopped before the last word: the transcript does not fit the audio
        decoder.set_alignment()
        _decode(decoder, data)
        alignment = decoder.get_alignment()
    except RuntimeError:  # pocketsphinx could not align the phones (e.g. an empty pause between words)
        return None
    if alignment is None:
        return None
    return [Phone(_phone_label(p.name), p.start * FRAME_SECONDS, (p.start + p.duration) * FRAME_SECONDS)
            for p in alignment.phones() if p.duration > 0]


def force_align(samples: np.ndarray, words: list[str], settings: AlignSettings = AlignSettings()) -> list[Phone]:
    """Phones of `words` aligned to 16 kHz samples. AlignmentFailed when a word has no
    pronunciation or the words cannot be aligned to the end of the audio. Pauses between
    words are found first; where the phone pass then fails (pocketsphinx cannot align an
    empty pause: seen on 1 of 5 espeak-ng sentences), the words are aligned again without
    optional pauses."""
    if not words:
        raise AlignmentFailed("the transcript has no words")
    extra = _missing_pronunciations(words)
    data = _dithered(samples, settings.dither)
    phones = _align_once(data, words, extra, fillers=True)
    phones = phones if phones is not None else _align_once(data, words, extra, fillers=False)
    if phones is None:
        raise AlignmentFailed("the transcript could not be aligned to the speech (does it match?)")
    return phones


def utterances(sound: np.ndarray, settings: AlignSettings) -> Iterator[tuple[int, int]]:
    """(start, end) 10 ms frames of the pieces recognition decodes one at a time: cut in the
    middle of the last long pause within `utterance_seconds` (where there is none, at that
    limit). Pieces without sound are skipped."""
    limit = int(settings.utterance_seconds / FRAME_SECONDS)
    pause = int(settings.min_pause_seconds / FRAME_SECONDS)
    start, n = 0, len(sound)
    while start < n:
        end = min(start + limit, n)
        if end < n:  # cut at the middle of the last long pause inside the piece, if there is one
            quiet = np.flatnonzero(~sound[start:end])
            runs = np.split(quiet, np.flatnonzero(np.diff(quiet) > 1) + 1) if len(quiet) else []
            long_runs = [r for r in runs if len(r) >= pause and r[0] > 0]
            if long_runs:
                end = start + int(long_runs[-1][len(long_runs[-1]) // 2])
        if sound[start:end].any():
            yield start, end
        start = end


def recognise_phones(samples: np.ndarray, sound: np.ndarray, settings: AlignSettings = AlignSettings()
                     ) -> list[Phone]:
    """Phones recognised in 16 kHz samples (all-phone search with the phone language model)."""
    from pocketsphinx import get_model_path

    decoder = _decoder(allphone=get_model_path("en-us/en-us-phone.lm.bin"), lw=settings.phone_lm_weight)
    step = int(round(SAMPLE_RATE * FRAME_SECONDS))
    phones: list[Phone] = []
    for first, last in utterances(sound, settings):
        _decode(decoder, _dithered(samples[first * step:last * step], settings.dither))
        for seg in decoder.seg() or []:
            start, end = first + seg.start_frame, first + seg.end_frame + 1
            label = _phone_label(seg.word)
            if label != SILENCE and not sound[start:end].any():
                label = SILENCE  # a phone heard in silence is noise
            phones.append(Phone(label, start * FRAME_SECONDS, end * FRAME_SECONDS))
    return phones


def _tidy(phones: list[Phone], duration: float) -> list[Phone]:
    """Time order, silence wherever no phone is, neighbouring silences merged, within 0..duration."""
    out: list[Phone] = []
    clock = 0.0

    def add(label: str, start: float, end: float) -> None:
        end = min(end, duration)
        if end <= start + 1e-9:
            return
        if out and label == SILENCE and out[-1].label == SILENCE:
            out[-1] = Phone(SILENCE, out[-1].start, end)
        else:
            out.append(Phone(label, start, end))

    for phone in sorted(phones, key=lambda p: p.start):
        start = max(phone.start, clock)
        if start > clock + 1e-9:
            add(SILENCE, clock, start)
        add(phone.label, start, phone.end)
        clock = max(clock, min(phone.end, duration))
    if clock < duration - 1e-9:
        add(SILENCE, clock, duration)
    return out


def align_speech(samples: np.ndarray, transcript: str | None = None, settings: AlignSettings = AlignSettings(),
                 label: str = "audio") -> Alignment:
    """Phones of 16 kHz int16 samples: forced alignment with a transcript, recognition without
    (or when the transcript cannot be aligned). Audio without speech gives only silence and a
    SpeechWarning naming `label` (the file)."""
    samples = np.asarray(samples)
    duration = len(samples) / SAMPLE_RATE
    loudness = loudness_db(samples)
    sound = sound_mask(loudness, settings)
    if sound.sum() * FRAME_SECONDS < settings.min_speech_seconds:
        warnings.warn(f"{label}: no speech found (silence only); the portrait stays still, with blinks",
                      SpeechWarning, stacklevel=2)
        return Alignment(_tidy([], duration), duration, loudness, "none")
    phones, method = None, "forced alignment"
    if transcript is not None:
        try:
            phones = force_align(samples, transcript_words(transcript), settings)
        except AlignmentFailed as e:
            warnings.warn(f"{label}: {e}; phonemes are recognised from the audio instead", SpeechWarning,
                          stacklevel=2)
    if phones is None:
        phones, method = recognise_phones(samples, sound, settings), "phoneme recognition"
    alignment = Alignment(_tidy(phones, duration), duration, loudness, method)
    if not alignment.speech:
        warnings.warn(f"{label}: no speech found; the portrait stays still, with blinks", SpeechWarning,
                      stacklevel=2)
        alignment.method = "none"
    return alignment
