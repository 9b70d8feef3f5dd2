"""Real-world video files, read as ffmpeg reads them (talkingface.utils.video): damaged
packets in the video or the audio are skipped with one warning per file, frames lost in
the video are concealed by repeating the previous one (so the picture stays in sync with
the sound; intact files, variable frame rate included, are never filled), truncated files
say how many frames they lost, files of which nothing decodes are one-line errors naming
them, and audio problems never cost a finished video. The files are made here with PyAV
and damaged on purpose (packet positions come from the intact file's index)."""
from __future__ import annotations

import json
import shutil
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from talkingface.errors import DataError
from talkingface.utils.audio import audio_decodes
from talkingface.utils.decoding import LEADING_FAILURES, DamagedVideoWarning, DecodeStats
from talkingface.utils.video import iter_frames, probe_video, write_video

from helpers import MEDIAPIPE_TINY_CONFIG, make_tiny_checkpoint, photo, smooth_image

FRAMES = 30
FPS = 25
RATE = 48000  # AC-3 takes 32, 44.1 or 48 kHz


# --------------------------------------------------------------------------- making and damaging files
def picture(i: int, size=(96, 96)) -> np.ndarray:
    """Frame i: a smooth image with a bar that moves, so P-frames carry real data."""
    h, w = size[1], size[0]
    image = np.resize(smooth_image(np.random.default_rng(0), max(h, w)), (h, w, 3)).copy()
    image[:, (3 * i) % w:(3 * i) % w + 6] = 255
    return image


def make_video(path: Path, frames=None, count: int = FRAMES, size=(96, 96), audio: str | None = "ac3",
               options: dict | None = None, rotation: int = 0, pix_fmt: str = "yuv420p",
               times_ms: list[int] | None = None, codec: str = "libx264") -> Path:
    """H.264 (or `codec`) at FPS (or at `times_ms` presentation times), with `audio` (a codec name) of a
    440 Hz tone."""
    import av

    frames = [picture(i, size) for i in range(count)] if frames is None else list(frames)
    with av.open(str(path), "w", options=options or {}) as out:
        video = out.add_stream(codec, rate=FPS)
        video.width, video.height, video.pix_fmt = size[0], size[1], pix_fmt
        if rotation:
            video.set_display_rotation(rotation)
        if times_ms is not None:
            video.codec_context.time_base = Fraction(1, 1000)
        sound = None
        if audio is not None:  # streams are added before anything is muxed
            sound = out.add_stream(audio, rate=RATE)
            sound.layout = "mono"
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if times_ms is not None:
                frame.pts, frame.time_base = times_ms[i], Fraction(1, 1000)
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if sound is not None:
            step = sound.codec_context.frame_size or 1024
            total = RATE * len(frames) // FPS
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(total + step) / RATE)).astype(np.float32)
            for start in range(0, total, step):
                frame = av.AudioFrame.from_ndarray(tone[None, start:start + step], format="fltp", layout="mono")
                frame.sample_rate, frame.pts = RATE, start
                for packet in sound.encode(frame):
                    out.mux(packet)
            for packet in sound.encode(None):
                out.mux(packet)
    return path


def packets(path: Path, kind: str) -> list[tuple[int, int]]:
    """(byte offset, size) of each of the file's `kind` ("video"/"audio") packets."""
    import av

    with av.open(str(path)) as c:
        return [(p.pos, p.size) for p in c.demux(getattr(c.streams, kind)[0]) if p.size]


def damage(src: Path, dst: Path, kind: str, *indices: int) -> Path:
    """A copy of `src` with the bytes of the given packets overwritten (0xFF: no decoder accepts them)."""
    shutil.copy(src, dst)
    where = packets(src, kind)
    with open(dst, "r+b") as f:
        for i in indices:
            pos, size = where[i]
            f.seek(pos)
            f.write(b"\xff" * size)
    return dst


def decoded_audio_seconds(path: Path) -> float:
    import av

    with av.open(str(path)) as c:
        return sum(f.samples / f.sample_rate for f in c.decode(c.streams.audio[0]))


def caught(fn, *args, **kwargs):
    """(fn's result, the messages of the DamagedVideoWarnings it raised)."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        result = fn(*args, **kwargs)
    return result, [str(w.message) for w in record if issubclass(w.category, DamagedVideoWarning)]


def count_frames(path: Path) -> int:
    return sum(1 for _ in iter_frames(path))


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("robust") / "clean.mp4")


# --------------------------------------------------------------------------- video stream
def test_an_intact_file_reads_fully_without_a_warning(clean):
    n, messages = caught(count_frames, clean)
    assert n == FRAMES == probe_video(clean).num_frames and messages == []
    assert audio_decodes(clean)


def test_damaged_video_packets_are_skipped_and_their_frames_concealed(clean, tmp_path):
    bad = damage(clean, tmp_path / "bad_video.mp4", "video", 8, 20)  # two P-frames
    frames, messages = caught(lambda: list(iter_frames(bad)))
    # as ffmpeg: each rejected packet loses its frame, the rest decode, and (writing a constant
    # frame rate) the previous frame is repeated in its place, so later frames keep their time
    assert len(frames) == FRAMES
    repeated = [i for i in range(1, FRAMES) if np.array_equal(frames[i], frames[i - 1])]
    assert len(repeated) == 2  # the moving bar makes every other frame differ from its predecessor
    assert len(messages) == 1 and messages[0].startswith(str(bad))
    assert "skipped 2 damaged video packets" in messages[0] and f"decoded {FRAMES - 2} of the {FRAMES} frames" \
        in messages[0] and "2 lost frames concealed by repeating the previous frame" in messages[0]


def test_a_truncated_file_says_how_many_frames_it_lost(tmp_path):
    full = make_video(tmp_path / "full.mp4", count=100, size=(64, 64), audio="aac",
                      options={"movflags": "faststart"})  # the index first: the cut file still opens
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:len(data) // 2])
    complete = sum(1 for pos, size in packets(full, "video") if pos + size <= len(data) // 2)
    assert probe_video(cut).num_frames == 100
    n, messages = caught(count_frames, cut)
    # a frame or two before the cut may need a reference frame cut off
    assert complete - 2 <= n <= complete < 100
    assert messages == [f"{cut}: decoded {n} of the 100 frames the header declares (file truncated?)"]
    stats = DecodeStats()
    assert caught(lambda: sum(1 for _ in iter_frames(cut, stats)))[0] == n  # the counts, for records (preprocess)
    assert (stats.declared, stats.decoded, stats.damaged_packets, stats.complete) == (100, n, 0, True)
    assert stats.warning == messages[0].split(": ", 1)[1]


def test_damaged_bytes_in_the_middle_of_the_file(clean, tmp_path):
    """3000 bytes of garbage mid-file, as a bad disk sector: most frames still decode."""
    bad = tmp_path / "mid.mp4"
    data = bytearray(make_video(tmp_path / "long.mp4", count=100).read_bytes())
    data[len(data) // 2:len(data) // 2 + 3000] = np.random.default_rng(0).bytes(3000)
    bad.write_bytes(bytes(data))
    n, messages = caught(count_frames, bad)
    assert n == 100 and len(messages) == 1
    decoded = int(messages[0].split("decoded ")[1].split(" of the 100 frames")[0])
    assert 90 <= decoded < 100 and f"{100 - decoded} lost frames concealed" in messages[0]


@pytest.mark.parametrize("name, codec, audio", [("h264.mkv", "libx264", "ac3"), ("vp8.webm", "libvpx", None),
                                               ("mpeg4.avi", "mpeg4", "ac3")])
def test_damage_in_a_file_that_declares_no_frame_count_is_reported(tmp_path, name, codec, audio):
    """Matroska/WebM headers declare no frame count, and their demuxer silently skips damaged bytes
    to the next cluster (here the only one: the rest of the file). The stream's duration says
    how many frames there should be. AVI reads by its index: its damaged packets are concealed."""
    intact = make_video(tmp_path / name, codec=codec, audio=audio)
    assert caught(count_frames, intact) == (FRAMES, [])
    bad = damage(intact, tmp_path / f"bad_{name}", "video", 8, 20)
    n, messages = caught(count_frames, bad)
    if name.endswith(".avi"):
        assert n == FRAMES and len(messages) == 1 and "2 lost frames concealed" in messages[0]
    else:
        assert probe_video(bad).num_frames == 0 and n < 10
        assert len(messages) == 1 and messages[0].startswith(f"{bad}: decoded {n} of about ")
        assert messages[0].endswith(" frames the duration implies (file truncated or damaged?)")


def test_a_matroska_demuxer_skipping_to_the_next_cluster_is_concealed(tmp_path):
    """Many clusters: the demuxer resumes at the next one, and the jump in the file's byte positions says
    where frames were lost, so the hole is filled and the picture stays in sync with the sound."""
    intact = make_video(tmp_path / "clusters.mkv", options={"cluster_size_limit": "1500"})
    assert caught(count_frames, intact) == (FRAMES, [])
    bad = damage(intact, tmp_path / "bad.mkv", "video", 8)
    frames, messages = caught(lambda: list(iter_frames(bad)))
    assert len(frames) == FRAMES and len(messages) == 1
    assert "the demuxer skipped 1 damaged part of the file; 3 lost frames concealed" in messages[0]


@pytest.mark.parametrize("case", ["empty file", "text", "damaged keyframe", "every packet damaged"])
def test_a_file_nothing_decodes_from_is_a_one_line_error_naming_it(clean, tmp_path, case):
    path = tmp_path / "bad.mp4"
    if case == "empty file":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("not a video\n")
    elif case == "damaged keyframe":  # the only keyframe: no later frame has a reference (ffmpeg drops them too)
        damage(clean, path, "video", 0)
    else:  # more than LEADING_FAILURES: reading gives up early
        long = make_video(tmp_path / "long.mp4", count=LEADING_FAILURES + 10, size=(64, 64), audio=None)
        damage(long, path, "video", *range(LEADING_FAILURES + 10))
    with pytest.raises(DataError) as e:
        count_frames(path)
    assert str(e.value).startswith(f"{path}: ") and "\n" not in str(e.value)
    if case == "every packet damaged":
        assert f"the first {LEADING_FAILURES} packets do not decode" in str(e.value)


def test_a_video_codec_without_a_decoder_is_a_one_line_error(tmp_path):
    mkv = make_video(tmp_path / "ok.mkv", count=5, audio=None)
    odd = tmp_path / "odd.mkv"
    odd.write_bytes(mkv.read_bytes().replace(b"V_MPEG4/ISO/AVC", b"V_ZZZZZ/ISO/AVC"))  # a codec id no one knows
    for read in (probe_video, count_frames):
        with pytest.raises(DataError, match=f"{odd}: no decoder for this file's video codec"):
            read(odd)


def test_variable_frame_rate_odd_sizes_and_rotation(tmp_path):
    from talkingface.preprocess.sources import InputItem, InputKind, open_stream

    times = [sum(100 if k % 3 == 0 else 40 for k in range(i)) for i in range(FRAMES)]  # 40 and 100 ms steps
    vfr = make_video(tmp_path / "vfr.mp4", times_ms=times)
    n, messages = caught(count_frames, vfr)
    assert n == FRAMES == probe_video(vfr).num_frames and messages == []
    # Matroska declares no frame count, and its nominal rate (25) is not the average: no false alarm either
    vfr = make_video(tmp_path / "vfr.mkv", times_ms=times)
    assert probe_video(vfr).num_frames == 0 and caught(count_frames, vfr) == (FRAMES, [])

    odd = make_video(tmp_path / "odd.mp4", count=10, size=(63, 47), pix_fmt="yuv444p")  # 4:2:0 needs even sizes
    frames, messages = caught(lambda: list(iter_frames(odd)))
    assert len(frames) == 10 and frames[0].shape == (47, 63, 3) and messages == []
    assert write_video(tmp_path / "odd_out.mp4", frames, FPS) == 10
    assert (probe_video(tmp_path / "odd_out.mp4").width, probe_video(tmp_path / "odd_out.mp4").height) == (64, 48)

    # a phone video (stored sideways + a display rotation) whose first frame is damaged:
    # the rotation comes from the first frame that decodes
    phone = make_video(tmp_path / "phone.mp4", size=(96, 64), rotation=90, audio=None)
    bad = damage(phone, tmp_path / "phone_bad.mp4", "video", 3)
    stream = open_stream(InputItem(bad, InputKind.VIDEO))
    frames, messages = caught(lambda: list(stream.frames))
    assert stream.rotation == 90 and len(frames) == FRAMES and frames[0].shape == (96, 64, 3)
    assert len(messages) == 1 and "1 lost frame concealed" in messages[0]


# --------------------------------------------------------------------------- audio
@pytest.mark.parametrize("codec", ["ac3", "aac"])  # re-encoded to AAC, and remuxed packet by packet
def test_damaged_audio_packets_never_cost_the_video(clean, tmp_path, codec):
    src = clean if codec == "ac3" else make_video(tmp_path / "aac.mp4", audio="aac")
    bad = damage(src, tmp_path / f"bad_{codec}.mp4", "audio", 5, 20)
    assert audio_decodes(bad)  # its start decodes
    out = tmp_path / "out.mp4"
    n, messages = caught(write_video, out, iter_frames(bad), FPS, audio_from=bad)
    info = probe_video(out)
    assert n == FRAMES == info.num_frames and info.has_audio
    assert len(messages) == 1 and "damaged audio packet" in messages[0] and str(bad) in messages[0]
    seconds = decoded_audio_seconds(out)
    if codec == "ac3":  # re-encoded: silence in place of the lost packets keeps the length (and the sync)
        assert "silence" in messages[0]
        assert seconds == pytest.approx(FRAMES / FPS, abs=0.05)
    else:  # remuxed: the damaged packets are left out
        assert FRAMES / FPS - 0.2 < seconds < FRAMES / FPS + 0.05


def test_audio_that_does_not_decode_is_left_out_with_a_warning(clean, tmp_path):
    every = damage(clean, tmp_path / "mute.mp4", "audio", *range(len(packets(clean, "audio"))))
    unknown = tmp_path / "unknown.mp4"
    unknown.write_bytes(clean.read_bytes().replace(b"ac-3", b"zzzz", 1))  # an audio codec no one decodes
    empty = tmp_path / "empty.mkv"  # an audio stream without packets (Matroska keeps it)
    import av

    with av.open(str(empty), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        out.add_stream("aac", rate=RATE)
        for i in range(5):
            for packet in video.encode(av.VideoFrame.from_ndarray(picture(i, (64, 64)), format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
    for path, why in ((every, "does not decode"), (unknown, "no decoder"), (empty, "audio stream is empty")):
        assert probe_video(path).has_audio
        ok, messages = caught(audio_decodes, path)
        assert not ok and len(messages) == 1 and why in messages[0]
        out = tmp_path / f"{path.stem}_out.mp4"
        frames = list(iter_frames(path))
        n, messages = caught(write_video, out, frames, FPS, audio_from=path)
        assert n == len(frames) and not probe_video(out).has_audio
        assert len(messages) == 1 and "written without audio" in messages[0]


def test_an_audio_failure_while_muxing_keeps_the_video(clean, tmp_path, monkeypatch):
    """Whatever goes wrong with the audio after the frames are encoded, the video is written."""
    import talkingface.utils.audio as audio

    def broken(self, out, duration):
        raise MemoryError("simulated")  # not an ffmpeg error: any failure counts

    monkeypatch.setattr(audio.AudioCopy, "_reencode", broken)
    out = tmp_path / "out.mp4"
    n, messages = caught(write_video, out, iter_frames(clean), FPS, audio_from=clean)
    assert n == FRAMES == probe_video(out).num_frames
    assert len(messages) == 1 and "the audio stops at 0.00 s (MemoryError: simulated)" in messages[0]


# --------------------------------------------------------------------------- the commands
@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    """A portrait photo, and a driving video: 3 black frames, then a face moving a few
    pixels, with AC-3 audio of which one packet is damaged."""
    root = tmp_path_factory.mktemp("robust_faces")
    Image.fromarray(photo("biden")).save(root / "source.png")
    face = photo("obama")[::2, ::2]  # 128 x 128
    frames = [np.zeros_like(face)] * 3 + [np.roll(face, (i % 3, i % 4), axis=(0, 1)) for i in range(9)]
    intact = make_video(root / "intact.mp4", frames=frames, size=(128, 128))
    damage(intact, root / "driving.mp4", "audio", 6)
    make_tiny_checkpoint(root / "tiny.pth.tar", MEDIAPIPE_TINY_CONFIG)
    return root


def animate(faces: Path, driving: Path, out: Path) -> tuple[int, list[str]]:
    """(the exit code of `talkingface animate`, its DamagedVideoWarnings)."""
    from talkingface.cli import main

    return caught(main, ["animate", "--source", str(faces / "source.png"), "--driving", str(driving), "--out",
                         str(out), "--ckpt", str(faces / "tiny.pth.tar"), "--device", "cpu", "--batch-size", "4"])


def test_animate_writes_the_video_with_a_damaged_driving_audio_track(faces, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    code, messages = animate(faces, faces / "driving.mp4", out)
    assert code == 0
    info = probe_video(out)
    assert info.num_frames == 12 and info.has_audio and (info.width, info.height) == (256, 256)  # the photo's size
    assert decoded_audio_seconds(out) == pytest.approx(12 / FPS, abs=0.05)
    assert len(messages) == 1 and "skipped 1 damaged audio packet" in messages[0]
    assert "3 of 12 driving frames have no face" in capsys.readouterr().out  # the black ones: held poses


def test_animate_keeps_the_picture_in_sync_with_the_sound_past_a_damaged_video_packet(faces, tmp_path):
    """A frame lost mid-video is concealed, not dropped: the output keeps the driving video's
    frame count, so after the damage the picture does not run ahead of the copied audio."""
    driving = damage(faces / "intact.mp4", tmp_path / "driving.mp4", "video", 7)  # a P-frame
    out = tmp_path / "out.mp4"
    code, messages = animate(faces, driving, out)
    assert code == 0
    info = probe_video(out)
    assert info.num_frames == probe_video(driving).num_frames == 12 and info.has_audio
    assert decoded_audio_seconds(out) == pytest.approx(12 / FPS, abs=0.05)
    assert len(messages) == 1 and "skipped 1 damaged video packet" in messages[0]
    assert "1 lost frame concealed by repeating the previous frame" in messages[0]


@pytest.mark.parametrize("case", ["damaged keyframe", "unknown codec"])
def test_animate_rejects_an_undecodable_driving_video_in_one_line(faces, tmp_path, capsys, case):
    from talkingface.cli import main

    if case == "damaged keyframe":
        bad = damage(faces / "intact.mp4", tmp_path / "bad.mp4", "video", 0)  # its only keyframe
        why = "no video frame could be decoded"
    else:
        mkv = make_video(tmp_path / "ok.mkv", count=4, audio=None)
        bad = tmp_path / "bad.mkv"
        bad.write_bytes(mkv.read_bytes().replace(b"V_MPEG4/ISO/AVC", b"V_ZZZZZ/ISO/AVC"))
        mkv.unlink()
        why = "no decoder for this file's video codec"
    out = tmp_path / "out.mp4"
    code = main(["animate", "--source", str(faces / "source.png"), "--driving", str(bad), "--out", str(out),
                 "--ckpt", str(faces / "tiny.pth.tar"), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(bad) in err[0] and why in err[0]
    assert list(tmp_path.iterdir()) == [bad]  # nothing half-written


def test_preprocess_keeps_what_decodes(faces, tmp_path):
    from talkingface.recipes.preprocess import PreprocessOptions, run_preprocess

    bad = damage(faces / "intact.mp4", tmp_path / "bad.mp4", "video", 7)
    report, messages = caught(run_preprocess, PreprocessOptions(inputs=[str(bad)], out=str(tmp_path / "data")))
    assert len(messages) == 1 and "skipped 1 damaged video packet" in messages[0]
    assert report.frames_decoded == 12 and report.frames_dropped >= 3  # 11 + 1 concealed; the black ones: no face
    assert report.frames_kept == report.frames_decoded - report.frames_dropped > 0
    # meta.json records the counts: declared by the header, decoded, and what decoding lost
    meta = json.loads((tmp_path / "data" / "0" / "meta.json").read_text())
    assert (meta["frames_declared"], meta["frames_decoded"]) == (12, 12)
    decoding = meta["decoding"]
    assert (decoding["declared"], decoding["decoded"], decoding["concealed"]) == (12, 11, 1)
    assert decoding["damaged_packets"] == 1 and decoding["complete"] and "skipped 1 damaged" in decoding["warning"]


def cut_short(faces: Path, tmp_path: Path) -> Path:
    """The 12-frame driving clip cut to 3/4 of its bytes, its index at the front (so it opens, and
    declares all 12 frames)."""
    full = make_video(tmp_path / "full.mp4", frames=iter_frames(faces / "intact.mp4"), size=(128, 128),
                      options={"movflags": "faststart"})
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[:full.stat().st_size * 3 // 4])
    return cut


def test_animate_warns_once_about_a_driving_video_cut_short(faces, tmp_path):
    code, messages = animate(faces, cut_short(faces, tmp_path), tmp_path / "out.mp4")
    assert code == 0 and len(messages) == 1 and "of the 12 frames the header declares (file truncated?)" \
        in messages[0]


def test_preprocess_records_a_truncated_input_in_meta_json(faces, tmp_path):
    """A file cut short whose index is at the front: preprocess keeps what decodes, warns with
    both counts and records them."""
    from talkingface.recipes.preprocess import PreprocessOptions, run_preprocess

    cut = cut_short(faces, tmp_path)
    report, messages = caught(run_preprocess, PreprocessOptions(inputs=[str(cut)], out=str(tmp_path / "data")))
    assert len(messages) == 1 and "of the 12 frames the header declares (file truncated?)" in messages[0]
    meta = json.loads((tmp_path / "data" / "0" / "meta.json").read_text())
    n = report.frames_decoded
    assert 3 < n < 12 and meta["frames_declared"] == 12 and meta["frames_decoded"] == n
    assert meta["decoding"]["decoded"] == n and meta["decoding"]["damaged_packets"] == 0
    assert f"decoded {n} of the 12 frames" in meta["decoding"]["warning"]


def test_the_web_app_accepts_a_damaged_upload_and_rejects_an_undecodable_one(faces, tmp_path):
    from talkingface.app.jobs import check_video

    assert check_video(str(faces / "driving.mp4"), "driving video", 60) == faces / "driving.mp4"
    bad = damage(faces / "intact.mp4", tmp_path / "bad.mp4", "video", 0)
    with pytest.raises(DataError, match=f"{bad}: no video frame could be decoded"):
        check_video(str(bad), "driving video", 60)


def test_evaluate_reads_what_decodes_and_names_a_frame_count_mismatch(faces, tmp_path, monkeypatch):
    from talkingface.recipes.evaluate import EvaluateOptions, run_evaluate

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    intact = faces / "intact.mp4"
    bad = damage(intact, tmp_path / "bad.mp4", "video", 7)
    options = dict(write_video=False, face_metrics=False, temporal=False, device="cpu")
    result, messages = caught(run_evaluate, EvaluateOptions(pred=str(bad), gt=str(intact), out=str(tmp_path / "r"),
                                                            **options))
    # the lost frame is concealed: the prediction stays aligned with the ground truth, frame for frame
    assert result.summary.frames == 12 and len(messages) == 1 and "decoded 11 of the 12 frames" in messages[0]
    # frames lost at the end (a truncated file: its index first, so it still opens) are not concealed
    full = make_video(tmp_path / "full.mp4", frames=iter_frames(intact), size=(128, 128),
                      options={"movflags": "faststart"})
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[:full.stat().st_size * 3 // 4])
    with pytest.warns(DamagedVideoWarning, match="of the 12 frames the header declares"), \
            pytest.raises(DataError, match=r"the prediction has \d+ frames, the ground truth has 12"):
        run_evaluate(EvaluateOptions(pred=str(cut), gt=str(intact), out=str(tmp_path / "s"), **options))
