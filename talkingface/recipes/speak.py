"""`talkingface speak`: a portrait that talks from speech audio, or from text (espeak-ng).

Wiring only; the work is in talkingface.speech (alignment, visemes, the track builder)
and talkingface.animate (rendering, full-resolution composition, paste-back). Order:
check the options; speak --text into a temporary WAV; decode the audio and find the
source face (so bad inputs fail in seconds, before anything slow); align the phonemes;
load the model; then build the landmark track, render and write the video in one
stream, with the audio muxed in. The video (and the --save-landmarks file) appear only
when complete: both are written to temporary files that are renamed at the end.
"""
from __future__ import annotations

import contextlib
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from talkingface.errors import ConfigError, DataError
from talkingface.recipes.animate import OUTPUT_EXTENSIONS, RENDER_MODES, default_checkpoint
from talkingface.speech.align import SAMPLE_RATE, SILENCE, align_speech
from talkingface.speech.espeak import synthesize
from talkingface.speech.track import SpeechTrack, TrackFile, TrackSettings
from talkingface.utils.atomic import atomic_path
from talkingface.utils.audio import read_audio
from talkingface.utils.decoding import DamagedVideoWarning
from talkingface.utils.options import device_option, force_option, option, precision_option, render_option
from talkingface.utils.paths import refuse_overwrite
from talkingface.utils.video import write_video

MAX_FPS = 120.0


@dataclass
class SpeakOptions:
    source: str = option(help="The portrait: a photo (.jpg, .png, ...) or a video of the person (its most frontal "
                              "early frame is used).")
    out: str = option("speak.mp4", "Output video (.mp4, .mov, .mkv or .m4v), as long as the audio.")
    audio: str | None = option(None, "Speech audio (.wav, .mp3, .m4a, or a video's sound): its phonemes drive the "
                                     "mouth, and it is the output's sound track.", one_of="speech")
    text: str | None = option(None, "Words to speak with espeak-ng (sudo apt-get install espeak-ng); also the "
                                    "transcript.", one_of="speech")
    transcript: str | None = option(None, "With --audio: the words spoken, for forced alignment (else phonemes are "
                                          "recognised).")
    ckpt: str | None = option(None, "A mediapipe478 model checkpoint (default: the bundled model).")
    fps: float = option(25.0, "Frame rate of the output video.")
    head_motion: float = option(1.0, "Scale of the idle head motion (0: still head; blinks either way).",
                                metavar="0..1")
    save_landmarks: str | None = option(None, "Also write the driving landmark track (478 points per frame, "
                                              "phonemes, visemes).", metavar="TRACK.npz")
    render: str = render_option()
    batch_size: int = 8  # frames per forward pass
    device: str = device_option()
    precision: str = precision_option("auto", "Default auto (checked on the source before rendering)")
    force: bool = force_option()
    seed: int = option(0, "Head motion and blinks: the same seed gives the same video.")
    voice: str = "en-us"  # espeak-ng voice for --text
    progress: bool = True


@dataclass
class SpeakResult:
    out: Path
    frames: int
    fps: float
    width: int
    height: int
    audio_seconds: float
    method: str  # how the phonemes were found: "forced alignment", "phoneme recognition" or "none" (no speech)
    phonemes: int  # phones aligned (silences not counted)
    landmarks: Path | None  # the --save-landmarks file
    render_seconds: float  # making the track, rendering and writing the video (the part that grows with the audio)
    seconds: float  # the whole run


def _check_options(opts: SpeakOptions) -> tuple[Path, Path, Path | None]:
    if (opts.audio is None) == (opts.text is None):
        raise ConfigError("give either --audio FILE or --text TEXT")
    if opts.text is not None and not opts.text.strip():
        raise ConfigError("--text is empty: give the words to speak")
    if opts.transcript is not None and opts.text is not None:
        raise ConfigError("--transcript goes with --audio (with --text, the text is the transcript)")
    if opts.transcript is not None and not opts.transcript.strip():
        raise ConfigError("--transcript is empty: give the words spoken, or leave it out")
    if not 0 < opts.fps <= MAX_FPS:
        raise ConfigError(f"--fps must be in (0, {MAX_FPS:g}], got {opts.fps:g}")
    if not 0 <= opts.head_motion <= 1:
        raise ConfigError(f"--head-motion must be in [0, 1], got {opts.head_motion:g}")
    if opts.render not in RENDER_MODES:
        raise ConfigError(f"--render must be one of {', '.join(RENDER_MODES)}, got {opts.render!r}")
    if opts.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {opts.batch_size}")
    source, out = Path(opts.source), Path(opts.out)
    if not source.exists():
        raise DataError("source not found", source)
    if opts.audio is not None and not Path(opts.audio).is_file():
        raise DataError("no such audio file", opts.audio)
    if out.suffix.lower() not in OUTPUT_EXTENSIONS:
        raise DataError(f"output must be a video file ({', '.join(sorted(OUTPUT_EXTENSIONS))})", out)
    if out.is_dir():
        raise DataError("output is a folder; give a video file path", out)
    landmarks = Path(opts.save_landmarks) if opts.save_landmarks else None
    if landmarks is not None:
        if landmarks.suffix.lower() != ".npz":
            raise DataError("--save-landmarks writes a numpy .npz file; give a path ending in .npz", landmarks)
        refuse_overwrite(landmarks, out, source, opts.audio, opts.ckpt)
    refuse_overwrite(out, source, opts.audio, opts.ckpt)
    return source, out, landmarks


def _track_file(stack: contextlib.ExitStack, path: Path | None, frames: int):
    """The --save-landmarks writer on a temporary file renamed when the run completes (None without it)."""
    if path is None:
        return None
    writer = TrackFile(stack.enter_context(atomic_path(path)), frames, 478)
    stack.callback(writer.abort)  # after a failure (a no-op once the file is complete)
    return writer


def run_speak(opts: SpeakOptions) -> SpeakResult:
    # lazy: torch (`talkingface speak --help` imports this module, and no torch)
    from talkingface.animate.pipeline import (CropRenderer, check_model_config, load_source, model_scheme,
                                              prepare_engine, render_frames, settings_for_model)
    from talkingface.checkpoints.official import config_for_checkpoint, load_generator
    from talkingface.utils.device import resolve_device

    began = time.perf_counter()
    source_path, out, landmarks_path = _check_options(opts)
    ckpt = Path(opts.ckpt) if opts.ckpt else default_checkpoint()
    cfg = config_for_checkpoint(str(ckpt), None)
    check_model_config(cfg, ckpt)
    device = resolve_device(opts.device)
    settings = settings_for_model(cfg, render=opts.render, batch_size=opts.batch_size)
    with tempfile.TemporaryDirectory(prefix="talkingface-speak-") as work:
        if opts.text is not None:
            audio_path, transcript = synthesize(opts.text, Path(work) / "speech.wav", opts.voice), opts.text
        else:
            audio_path, transcript = Path(opts.audio), opts.transcript
        read_notes: list = []  # a damaged audio file is said once: by the mux below, which says more
        with _held_damage_warnings(read_notes):
            samples = read_audio(audio_path, SAMPLE_RATE)  # an unreadable file fails here, naming it
        if len(samples) == 0:
            raise DataError("the audio is empty (no samples)", audio_path)
        source = load_source(source_path, settings)  # a source without a face fails here
        label = "the speech of --text" if opts.text is not None else str(audio_path)
        print(f"Aligning phonemes in {label} ({len(samples) / SAMPLE_RATE:.1f} s)")
        alignment = align_speech(samples, transcript, label=label)
        del samples
        spoken = sum(p.label != SILENCE for p in alignment.phones)
        print(f"{spoken} phonemes by {alignment.method}" if alignment.speech else "no speech: blinks only")
        track = SpeechTrack(source.points, source.crop, alignment, TrackSettings(
            fps=opts.fps, head_motion=opts.head_motion if alignment.speech else 0.0, seed=opts.seed))

        model = load_generator(ckpt, cfg).model
        scheme = model_scheme(cfg)
        renderer = CropRenderer(prepare_engine(model, device, opts.precision, source, scheme, force=opts.force),
                                source, scheme)
        shape: list[int] = []
        with contextlib.ExitStack() as stack:
            writer = _track_file(stack, landmarks_path, track.num_frames)

            def poses() -> Iterator[np.ndarray]:
                for chunk in track.chunks():
                    if writer is not None:
                        writer.write(source.box.to_frame(chunk.landmarks), chunk.visemes)
                    yield from chunk.landmarks

            def counted() -> Iterator[np.ndarray]:
                with tqdm(total=track.num_frames, unit="frame", desc="speak", dynamic_ncols=True,
                          disable=not opts.progress) as bar:
                    for frame in render_frames(renderer, poses(), source, settings):
                        if not shape:
                            shape.extend(frame.shape[:2])
                        bar.update(1)
                        yield frame

            rendering = time.perf_counter()
            mux_notes: list = []
            with _held_damage_warnings(mux_notes):
                count = write_video(out, counted(), opts.fps, audio_from=audio_path)
            for note in mux_notes or read_notes:
                warnings.warn_explicit(note.message, note.category, note.filename, note.lineno)
            render_seconds = time.perf_counter() - rendering
            if writer is not None:
                writer.close(source_landmarks=source.box.to_frame(source.points).astype(np.float32),
                             crop_box=np.asarray(source.box.as_list(), np.int64),
                             phonemes=np.asarray([p.label for p in alignment.phones]),
                             phoneme_times=np.asarray([(p.start, p.end) for p in alignment.phones], np.float64),
                             fps=np.float64(opts.fps), duration=np.float64(alignment.duration))

    result = SpeakResult(out=out, frames=count, fps=opts.fps, width=shape[1], height=shape[0],
                         audio_seconds=alignment.duration, method=alignment.method, phonemes=spoken,
                         landmarks=landmarks_path, render_seconds=render_seconds,
                         seconds=time.perf_counter() - began)
    print(f"Wrote {out}: {count} frames, {result.width}x{result.height} at {opts.fps:g} fps with the audio "
          f"({alignment.duration:.2f} s)" + (f", landmarks in {landmarks_path}" if landmarks_path else "")
          + f", in {result.seconds:.1f} s")
    return result


@contextlib.contextmanager
def _held_damage_warnings(held: list) -> Iterator[None]:
    """Keep the block's DamagedVideoWarnings in `held` (for the caller to say once); others pass on."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            others = [w for w in caught if not issubclass(w.category, DamagedVideoWarning)]
            held.extend(w for w in caught if issubclass(w.category, DamagedVideoWarning))
    for w in others:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
