"""espeak-ng, the offline text-to-speech program: speech for `speak --text`, and
pronunciations for words pocketsphinx's dictionary does not know.

espeak-ng is a system program (Debian/Ubuntu: `sudo apt-get install espeak-ng`), run as
a subprocess; nothing here needs it until it is called, and a missing program is a
one-line error that says how to install it.

Its phoneme names (the ASCII mnemonics `espeak-ng -x` prints, e.g. `h@l'oU` for
"hello") are turned into the ARPAbet phones pocketsphinx and the viseme table use by
`ESPEAK_TO_ARPABET` (American English voice).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from talkingface.errors import TalkingFaceError

INSTALL_HINT = "sudo apt-get install espeak-ng"
VOICE = "en-us"  # pocketsphinx's acoustic model and dictionary are American English
TIMEOUT_SECONDS = 600.0  # a runaway synthesis is stopped (an hour of text takes about a minute)

# espeak-ng's English phoneme mnemonics (stress marks removed) -> ARPAbet. Syllabic and
# r-coloured vowels become two phones, as the CMU dictionary writes them; pauses ('_')
# and mnemonics not listed are dropped.
ESPEAK_TO_ARPABET: dict[str, tuple[str, ...]] = {
    # consonants
    "p": ("P",), "b": ("B",), "t": ("T",), "d": ("D",), "k": ("K",), "g": ("G",), "f": ("F",), "v": ("V",),
    "T": ("TH",), "D": ("DH",), "s": ("S",), "z": ("Z",), "S": ("SH",), "Z": ("ZH",), "h": ("HH",),
    "tS": ("CH",), "dZ": ("JH",), "m": ("M",), "n": ("N",), "N": ("NG",), "l": ("L",), "r": ("R",),
    "j": ("Y",), "w": ("W",), "t#": ("T",), "d#": ("D",), "?": ("T",), "x": ("K",), "C": ("HH",),
    "n-": ("AH", "N"), "l-": ("AH", "L"), "@L": ("AH", "L"), "r-": ("R",), "m-": ("AH", "M"),
    # vowels
    "a": ("AE",), "aa": ("AE",), "a#": ("AH",), "A:": ("AA",), "A@": ("AA", "R"), "0": ("AA",), "V": ("AH",),
    "@": ("AH",), "@2": ("AH",), "@5": ("AH",), "@-": ("AH",), "3": ("ER",), "3:": ("ER",), "@r": ("ER",),
    "E": ("EH",), "E2": ("EH",), "E3": ("EH",), "e@": ("EH", "R"), "eI": ("EY",), "I": ("IH",),
    "I2": ("IH",), "I#": ("IH",), "i": ("IY",), "i:": ("IY",), "i@": ("IY", "AH"), "i@3": ("IY", "R"),
    "O": ("AO",), "O:": ("AO",), "O@": ("AO", "R"), "o@": ("AO", "R"), "OI": ("OY",), "oU": ("OW",),
    "U": ("UH",), "u:": ("UW",), "u": ("UW",), "U@": ("UH", "R"), "aI": ("AY",), "aU": ("AW",),
    "aI@": ("AY", "ER"), "aI3": ("AY", "ER"), "aU@": ("AW", "ER"),
}
_MARKS = "'\",%=!"  # stress and syllable marks espeak-ng writes into its mnemonics


class EspeakMissingError(TalkingFaceError):
    """espeak-ng is not installed (or not on PATH)."""


def espeak_program() -> str:
    """The espeak-ng executable; EspeakMissingError saying how to install it."""
    found = shutil.which("espeak-ng")
    if found is None:
        raise EspeakMissingError(f"espeak-ng is not installed (it speaks --text); install it with: {INSTALL_HINT}")
    return found


def _run(args: list[str], text: str) -> str:
    try:
        done = subprocess.run([espeak_program(), *args, "--stdin"], input=text, capture_output=True, text=True,
                              timeout=TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        raise TalkingFaceError(f"espeak-ng took longer than {TIMEOUT_SECONDS:g} s; shorten the text") from None
    if done.returncode != 0:
        detail = " ".join((done.stderr or "").split())[:200] or f"exit status {done.returncode}"
        raise TalkingFaceError(f"espeak-ng failed ({detail})")
    return done.stdout


def synthesize(text: str, wav: str | os.PathLike, voice: str = VOICE) -> Path:
    """Speak `text` into a WAV file (espeak-ng's 22.05 kHz mono); returns the path."""
    wav = Path(wav)
    _run(["-v", voice, "-w", str(wav)], text)
    if not wav.is_file() or wav.stat().st_size <= 44:  # a bare WAV header: nothing was spoken
        raise TalkingFaceError("espeak-ng produced no speech for the text (is it only punctuation?)")
    return wav


def mnemonics_to_arpabet(names: list[str]) -> list[str]:
    """espeak-ng phoneme mnemonics (stress marks allowed) -> ARPAbet phones."""
    phones: list[str] = []
    for name in names:
        phones.extend(ESPEAK_TO_ARPABET.get(name.strip(_MARKS), ()))
    return phones


def pronounce(words: list[str], voice: str = VOICE) -> dict[str, list[str]]:
    """ARPAbet pronunciations of words as espeak-ng says them (one run for all: each word
    ends a sentence, so each comes back on its own line); words without a known phoneme
    are left out."""
    if not words:
        return {}
    lines = [line.strip() for line in _run(["-q", "-x", "--sep=|", "-v", voice], ".\n".join(words) + ".\n")
             .splitlines() if line.strip()]
    if len(lines) != len(words):  # not one line per word after all: ask word by word
        return {word: phones for w in words for word, phones in pronounce([w], voice).items()} \
            if len(words) > 1 else {}
    result: dict[str, list[str]] = {}
    for word, line in zip(words, lines):
        phones = mnemonics_to_arpabet([name for chunk in line.split() for name in chunk.split("|")])
        if phones:
            result[word] = phones
    return result
