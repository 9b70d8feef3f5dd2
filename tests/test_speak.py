"""`talkingface speak`: the viseme table, the track builder (lips closed on p/b/m, chunked,
seeded head motion and blinks), alignment of an espeak-ng sentence, the verb end to end
(a video as long as the audio, with it; the landmark file), bad inputs as one-line errors
with no output, and the web app's Speak tab. A tiny random model renders (the mouth it
draws means nothing; the landmarks and the files are what is checked)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import wave
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from talkingface.cli import main
from talkingface.landmarks.regions import eye_openness
from talkingface.metrics.reenactment import motion_signals
from talkingface.speech.align import ARPABET, Alignment, Phone, align_speech, loudness_db, transcript_words
from talkingface.speech.track import SpeechTrack, TrackSettings, frame_count
from talkingface.speech.visemes import NAMES, PHONEME_VISEMES, VISEMES, phoneme_visemes, viseme_offsets
from talkingface.utils.audio import read_audio
from talkingface.utils.video import iter_frames, probe_video

from helpers import make_tiny_checkpoint, MEDIAPIPE_TINY_CONFIG, missing_requirement, photo, smooth_image

REPO = Path(__file__).resolve().parents[1]
SENTENCE = "Hello, this is a test."
SENTENCE_PHONES = "HH AH L OW DH IH S IH Z AH T EH S T".split()  # the CMU dictionary's words
CLOSED_GAP = 0.02  # mouth opening (inner-lip gap / eye-to-mouth distance) of closed lips; measured 0.001 closed
OPEN_GAP = 0.08  # ... of an open mouth on a vowel; measured 0.11-0.18 on the vowels of the track below


def mouth_open(points: np.ndarray) -> float:
    return motion_signals(points)[2]


@pytest.fixture(scope="module")
def espeak() -> str:
    """espeak-ng's path; missing, the tests that need it fail under CI=true and skip elsewhere."""
    found = shutil.which("espeak-ng")
    if found is None:
        missing_requirement("espeak-ng is not installed (sudo apt-get install espeak-ng)")
    return found


@pytest.fixture(scope="module")
def face():
    """Biden's photo (closed mouth) and its Face Mesh landmarks (0..1)."""
    from talkingface.preprocess.portrait import detect_landmarks

    image = photo("biden")
    return image, detect_landmarks(image)


@pytest.fixture(scope="module")
def media(tmp_path_factory, espeak) -> Path:
    root = tmp_path_factory.mktemp("speak_media")
    Image.fromarray(photo("biden")).save(root / "portrait.png")
    Image.fromarray(smooth_image(np.random.default_rng(0), 128)).save(root / "noface.png")
    subprocess.run([espeak, "-v", "en-us", "-w", str(root / "sentence.wav"), SENTENCE], check=True)
    with wave.open(str(root / "silence.wav"), "wb") as w:  # one second of digital silence
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000), w.writeframes(bytes(32000))
    (root / "notes.wav").write_text("a text file named .wav")
    make_tiny_checkpoint(root / "tiny.pth.tar", MEDIAPIPE_TINY_CONFIG)
    return root


def timed(*phones: tuple[str, float]) -> Alignment:
    """An alignment of (phone, seconds) in a row, at a steady loud level."""
    out, clock = [], 0.0
    for label, seconds in phones:
        out.append(Phone(label, clock, clock + seconds))
        clock += seconds
    return Alignment(out, clock, np.full(int(clock * 100) + 1, -20.0, np.float32), "test")


# --------------------------------------------------------------------------- visemes
def test_every_phoneme_has_a_viseme_and_the_documented_table_matches():
    assert set(PHONEME_VISEMES) == set(ARPABET) | {"SIL"}
    assert all(v in VISEMES for names in PHONEME_VISEMES.values() for v in names)
    assert {phoneme_visemes(p) for p in ("P", "B", "M")} == {("PP",)}
    assert phoneme_visemes("F") == phoneme_visemes("V") == ("FF",)
    assert phoneme_visemes("AY1") == ("aa", "ih") and phoneme_visemes("OW") == ("oh", "ou")  # diphthongs: two
    assert phoneme_visemes("+NSN+") == ("sil",)
    assert VISEMES["PP"].close == 1 and VISEMES["PP"].open == 0 and VISEMES["aa"].open > VISEMES["ih"].open
    doc = (REPO / "docs" / "speak.md").read_text()
    rows = {line.split("|")[1].strip(" `"): line.split("|")[2].split() for line in doc.splitlines()
            if line.startswith("| `")}  # docs/speak.md: | `viseme` | phonemes | open | width | close |
    assert set(rows) == set(VISEMES)
    for phone, names in PHONEME_VISEMES.items():
        assert phone in rows[names[0]], phone  # a diphthong in its onset's row


def test_viseme_offsets_open_spread_and_close_the_mouth_in_the_faces_own_scale(face):
    _, points = face
    offsets = viseme_offsets(points)
    assert offsets.opening.shape == offsets.shaping.shape == (len(NAMES), 478, 2)
    shape = {n: points + offsets.opening[i] + offsets.shaping[i] for i, n in enumerate(NAMES)}
    assert mouth_open(shape["aa"]) > mouth_open(shape["E"]) > mouth_open(shape["ih"]) > OPEN_GAP
    assert mouth_open(shape["PP"]) < CLOSED_GAP and mouth_open(shape["sil"]) == pytest.approx(mouth_open(points))
    width = {n: np.linalg.norm(p[61] - p[291]) / np.linalg.norm(points[61] - points[291]) for n, p in shape.items()}
    assert width["ih"] == pytest.approx(1 + VISEMES["ih"].width, abs=0.01)
    assert width["ou"] == pytest.approx(1 + VISEMES["ou"].width, abs=0.01)
    far = [10, 151, 33, 263]  # forehead and eye corners never move
    assert np.abs(offsets.opening[:, far]).max() + np.abs(offsets.shaping[:, far]).max() < 1e-9
    # scaled to the face: the same face twice as large and elsewhere gets offsets twice as large
    bigger = viseme_offsets(points * 2 + 0.3)
    np.testing.assert_allclose(bigger.opening, 2 * offsets.opening, atol=1e-6)  # the warp inverts by bisection
    np.testing.assert_allclose(bigger.shaping, 2 * offsets.shaping, atol=1e-6)


def test_an_open_mouth_photo_closes_fully_on_p_b_m():
    from talkingface.preprocess.portrait import detect_landmarks

    points = detect_landmarks(photo("obama"))  # smiling, teeth showing: mouth open 0.22
    closed = points + viseme_offsets(points).shaping[NAMES.index("PP")]
    assert mouth_open(points) > 0.15 and mouth_open(closed) < CLOSED_GAP  # measured 0.013


# --------------------------------------------------------------------------- the track
def test_lips_close_on_every_p_b_m_of_a_synthetic_phoneme_track(face):
    image, points = face
    # "hope a bee, mama": a 20 ms P (shorter than a 40 ms frame), a B, two Ms, vowels between
    alignment = timed(("SIL", 0.3), ("HH", 0.06), ("OW", 0.16), ("P", 0.02), ("AH", 0.1), ("B", 0.07),
                      ("IY", 0.14), ("M", 0.08), ("AA", 0.12), ("M", 0.06), ("AA", 0.2), ("SIL", 0.4))
    track = SpeechTrack(points, image, alignment, TrackSettings(fps=25, head_motion=1.0, seed=3))
    frames = np.stack(list(track.frames()))
    assert frames.shape == (frame_count(alignment.duration, 25), 478, 2) == (43, 478, 2)
    times = (np.arange(len(frames)) + 0.5) / 25
    gaps = np.array([mouth_open(f) for f in frames])
    for phone in alignment.phones:
        if phone.label in ("P", "B", "M"):  # a closed frame within 40 ms of the phone
            near = np.abs(times - phone.centre) <= 0.04
            assert gaps[near].min() < CLOSED_GAP, phone
        if phone.label in ("AA", "OW", "IY"):
            inside = (times >= phone.start) & (times < phone.end)
            assert gaps[inside].max() > OPEN_GAP, phone
    assert gaps[:3].max() < CLOSED_GAP  # 0.2 s and more before the speech: near rest; measured 0.005-0.015


def test_the_track_is_the_same_in_any_chunks_seeded_and_head_motion_scales(face):
    image, points = face
    alignment = timed(("SIL", 0.2), ("AA", 0.3), ("M", 0.1), ("IY", 0.3), ("SIL", 3.6))  # 4.5 s: blinks
    whole = np.stack(list(SpeechTrack(points, image, alignment, TrackSettings(seed=1)).frames()))
    pieces = np.stack(list(SpeechTrack(points, image, alignment, TrackSettings(seed=1, chunk=7)).frames()))
    np.testing.assert_allclose(whole, pieces, atol=1e-6)  # float32 landmarks, summed in other batches
    other = np.stack(list(SpeechTrack(points, image, alignment, TrackSettings(seed=2)).frames()))
    still = np.stack(list(SpeechTrack(points, image, alignment, TrackSettings(seed=1, head_motion=0)).frames()))
    forehead = [10, 151, 9]

    def head_travel(track: np.ndarray) -> float:
        return float(np.abs(track[:, forehead] - points[forehead]).max())

    assert head_travel(still) < 1e-6 < 0.002 < head_travel(whole)  # measured 0.012 of the crop at 1
    assert not np.allclose(whole[:, forehead], other[:, forehead])
    openness = np.array([eye_openness(f).mean() for f in still])
    assert openness.min() < 0.3 * openness.max()  # blinks happen with a still head too (seeded)


@pytest.mark.slow
def test_a_long_track_streams_with_flat_memory(face):
    import gc
    import tracemalloc

    image, points = face

    def peak(seconds: float) -> int:
        syllables = [("M", 0.08), ("AA", 0.17), ("S", 0.1), ("IY", 0.15), ("SIL", 0.1)] * int(seconds / 0.6)
        track = SpeechTrack(points, image, timed(*syllables), TrackSettings())
        gc.collect()
        tracemalloc.start()
        try:
            count = sum(1 for _ in track.frames())
            _, top = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert count == track.num_frames
        return top

    peak(2)  # imports and caches first
    short, long = peak(8), peak(40)  # 195 and 990 frames
    # holding the extra 795 frames' landmarks would add 795 x 478 x 2 x 4 bytes = 3.0 MB; each chunk's
    # synthetic clip is a reference cycle, freed by the garbage collector: measured 0-0.4 MB apart
    assert long - short < 1.2e6, (short, long)


# --------------------------------------------------------------------------- alignment
def test_forced_alignment_of_an_espeak_sentence(media):
    samples = read_audio(media / "sentence.wav")
    result = align_speech(samples, SENTENCE, label="sentence.wav")
    assert result.method == "forced alignment"
    spoken = [p for p in result.phones if p.label != "SIL"]
    assert [p.label for p in spoken] == SENTENCE_PHONES == [p for w in map(str.upper, transcript_words(SENTENCE))
                                                            for p in {"HELLO": "HH AH L OW", "THIS": "DH IH S",
                                                                      "IS": "IH Z", "A": "AH",
                                                                      "TEST": "T EH S T"}[w].split()]
    starts = [p.start for p in result.phones]
    assert starts == sorted(starts) and result.phones[-1].end == pytest.approx(result.duration)
    assert spoken[0].start < 0.1 and spoken[-1].end > result.duration - 0.45  # speech fills the audio's 1.3 s
    loud = loudness_db(samples)
    assert loud[int(spoken[4].start * 100):int(spoken[4].end * 100)].max() > -45  # DH of "this" is sound: -33 dB


def test_a_word_missing_from_the_dictionary_takes_espeaks_pronunciation(media, espeak, tmp_path):
    subprocess.run([espeak, "-v", "en-us", "-w", str(tmp_path / "name.wav"), "Zorblax waved."], check=True)
    result = align_speech(read_audio(tmp_path / "name.wav"), "Zorblax waved.")
    assert result.method == "forced alignment"  # "zorblax" is not in the CMU dictionary
    spoken = [p.label for p in result.phones if p.label != "SIL"]
    assert spoken[0] == "Z" and spoken[-4:] == ["W", "EY", "V", "D"]


def test_phoneme_recognition_without_a_transcript_finds_the_sentence(media):
    import difflib

    result = align_speech(read_audio(media / "sentence.wav"), None)
    assert result.method == "phoneme recognition"
    heard = [p.label for p in result.phones if p.label != "SIL"]
    similarity = difflib.SequenceMatcher(a=heard, b=SENTENCE_PHONES).ratio()
    assert similarity > 0.35, heard  # measured 0.48: a synthetic voice, the phone language model alone


def test_a_transcript_that_does_not_fit_falls_back_to_recognition(media):
    with pytest.warns(UserWarning, match="could not be aligned"):
        result = align_speech(read_audio(media / "sentence.wav"), "completely different words", label="x.wav")
    assert result.method == "phoneme recognition" and result.speech


# --------------------------------------------------------------------------- the verb
def run(args: list[str]) -> int:
    return main(["speak", "--device", "cpu", *args])


def audio_seconds(path: Path) -> float:
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        return float(stream.duration * stream.time_base)


def test_speak_text_writes_a_video_as_long_as_its_speech_with_the_landmark_track(media, tmp_path, capsys):
    out, npz = tmp_path / "hello.mp4", tmp_path / "track.npz"
    assert run(["--source", str(media / "portrait.png"), "--text", SENTENCE, "--out", str(out),
                "--ckpt", str(media / "tiny.pth.tar"), "--save-landmarks", str(npz)]) == 0
    info = probe_video(out)
    frames = list(iter_frames(out))
    with np.load(npz) as track:
        duration, fps = float(track["duration"]), float(track["fps"])
        assert track["landmarks"].shape == (len(frames), 478, 2) and len(track["visemes"]) == len(frames)
        assert list(track["phonemes"][track["phonemes"] != "SIL"]) == SENTENCE_PHONES
        box = track["crop_box"]
        assert np.all(track["landmarks"][:, :, 0] > box[0]) and np.all(track["landmarks"][:, :, 0] < box[0] + box[2])
    assert info.has_audio and info.fps == fps == 25 and frames[0].shape == (256, 256, 3)
    assert len(frames) == round(duration * 25) and abs(len(frames) / 25 - duration) <= 0.5 / 25
    assert abs(audio_seconds(out) - duration) < 0.05  # the AAC stream: whole 46 ms frames of the speech
    assert "phonemes by forced alignment" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hello.mp4", "track.npz"]  # no temporary files left


def test_speak_audio_at_another_fps_with_the_models_render(media, tmp_path):
    out = tmp_path / "speech.mkv"
    assert run(["--source", str(media / "portrait.png"), "--audio", str(media / "sentence.wav"), "--out", str(out),
                "--ckpt", str(media / "tiny.pth.tar"), "--fps", "10", "--render", "model", "--head-motion", "0"]) == 0
    duration = len(read_audio(media / "sentence.wav")) / 16000
    info = probe_video(out)
    assert info.has_audio and info.fps == pytest.approx(10)
    assert len(list(iter_frames(out))) == round(duration * 10)


def test_silence_gives_a_still_portrait_with_blinks_and_a_warning(media, tmp_path, capsys):
    from talkingface.speech.align import SpeechWarning

    out = tmp_path / "still.mp4"
    with pytest.warns(SpeechWarning, match="silence.wav: no speech found") as caught:
        assert run(["--source", str(media / "portrait.png"), "--audio", str(media / "silence.wav"), "--out",
                    str(out), "--ckpt", str(media / "tiny.pth.tar"), "--save-landmarks", str(tmp_path / "still.npz")]) == 0
    assert len([w for w in caught if w.category is SpeechWarning]) == 1
    assert "no speech: blinks only" in capsys.readouterr().out
    assert len(list(iter_frames(out))) == 25 and probe_video(out).has_audio
    with np.load(tmp_path / "still.npz") as track:
        landmarks = track["landmarks"]
        assert set(track["phonemes"]) == {"SIL"}
    mouth = [13, 14, 61, 291, 0, 17]
    assert np.ptp(landmarks[:, mouth], axis=0).max() < 1e-3  # mouth and head still (pixels)


BAD = {
    "unreadable audio": (["--audio", "notes.wav"], "notes.wav: cannot open as audio"),
    "missing audio": (["--audio", "nope.wav"], "nope.wav: no such audio file"),
    "no face": (["--source", "noface.png", "--text", "Hi."], "noface.png: no face found in the source"),
    "empty text": (["--text", "  "], "--text is empty"),
    "transcript with text": (["--text", "Hi.", "--transcript", "hi"], "--transcript goes with --audio"),
    "head motion out of range": (["--text", "Hi.", "--head-motion", "2"], "--head-motion must be in [0, 1]"),
    "landmarks not npz": (["--text", "Hi.", "--save-landmarks", "t.txt"], "t.txt: --save-landmarks writes"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_an_error_exit_and_no_output(case, media, tmp_path, capsys):
    args, message = BAD[case]
    args = [str(media / a) if a.endswith((".wav", ".png")) and a != "t.txt" else a for a in args]
    args = [str(tmp_path / a) if a == "t.txt" else a for a in args]
    if "--source" not in args:
        args = ["--source", str(media / "portrait.png"), *args]
    out = tmp_path / "out.mp4"
    assert run([*args, "--out", str(out), "--ckpt", str(media / "tiny.pth.tar")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("talkingface: error:")
    assert list(tmp_path.iterdir()) == []


def test_text_without_espeak_says_how_to_install_it(media, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng on it
    assert run(["--source", str(media / "portrait.png"), "--text", "Hi.", "--out", str(tmp_path / "o.mp4")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("talkingface: error: espeak-ng is not installed (it speaks --text); install it with: "
                   "sudo apt-get install espeak-ng")
    assert not (tmp_path / "o.mp4").exists()


def test_audio_or_text_is_required_and_exclusive(media):
    for args in ([], ["--audio", "a.wav", "--text", "hi"]):
        with pytest.raises(SystemExit):
            main(["speak", "--source", str(media / "portrait.png"), *args])


def test_the_speech_library_never_imports_the_recipes():
    code = ("import sys, talkingface.speech.align, talkingface.speech.visemes, talkingface.speech.track, "
            "talkingface.speech.espeak; sys.exit(any(m.startswith('talkingface.recipes') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# --------------------------------------------------------------------------- the web app
def test_the_speak_tab_speaks_text_and_reports_bad_uploads(media, tmp_path):
    import gradio as gr

    from talkingface.app.jobs import AppSettings
    from talkingface.app.server import AppHandlers

    handlers = AppHandlers(AppSettings(work_dir=tmp_path, max_seconds=2.0, device="cpu",
                                        allow_server_paths=True))  # the typed path below
    video, download, summary = handlers.speak(str(media / "portrait.png"), None, "Hi there.",
                                              str(media / "tiny.pth.tar"))
    assert video == download and Path(video).name == "speak.mp4" and probe_video(video).has_audio
    assert "with the speech" in summary and "by forced alignment" in summary
    for audio, text, message in ((str(media / "sentence.wav"), "Hi.", "not both"),
                                 (None, "", "upload the speech audio, or type the text"),
                                 (str(media / "notes.wav"), None, "notes.wav: cannot open as audio")):
        with pytest.raises(gr.Error, match=message):
            handlers.speak(str(media / "portrait.png"), audio, text, str(media / "tiny.pth.tar"))
