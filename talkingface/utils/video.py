"""Video files through PyAV (its wheel bundles ffmpeg): streaming reads, atomic writes.

Frames are H x W x 3 uint8 RGB arrays. Reads are generators, so memory stays flat in
video length. Writes go to a temporary file that is renamed at the end.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from talkingface.errors import DataError
from talkingface.utils.atomic import atomic_path

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".gif"}


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    num_frames: int  # from the container; 0 when it does not say
    width: int
    height: int
    has_audio: bool


def _open(path: str | os.PathLike):
    import av

    path = Path(path)
    if not path.is_file():
        raise DataError("no such video file", path)
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot open as a video ({e})", path) from e
    if not container.streams.video:
        container.close()
        raise DataError("file has no video stream", path)
    return container


def probe_video(path: str | os.PathLike) -> VideoInfo:
    with _open(path) as c:
        vs = c.streams.video[0]
        rate = vs.average_rate or vs.guessed_rate or Fraction(25)
        return VideoInfo(fps=float(rate), num_frames=int(vs.frames or 0), width=vs.codec_context.width,
                         height=vs.codec_context.height, has_audio=bool(c.streams.audio))


def iter_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Decode frames one at a time as RGB uint8."""
    import av

    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as e:
            raise DataError(f"corrupt or unsupported video data ({e})", path) from e
    finally:
        container.close()


def read_video(path: str | os.PathLike) -> tuple[Iterator[np.ndarray], float]:
    """(frame iterator, fps)."""
    return iter_frames(path), probe_video(path).fps


def _even(frame: np.ndarray) -> np.ndarray:
    """yuv420p needs even sizes: replicate the last row/column when odd."""
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return frame


def _copy_audio(src_path: str | os.PathLike, out_container) -> tuple:
    """Open `src_path`'s first audio stream and add a matching stream to the output.

    Returns (input container, input stream, output stream, remux) or Nones when the
    source has no audio. Streams that MP4 can carry are remuxed untouched; anything
    else is re-encoded to AAC.
    """
    import av

    src = av.open(str(src_path))
    if not src.streams.audio:
        src.close()
        return None, None, None, False
    a_in = src.streams.audio[0]
    if a_in.codec_context.name in {"aac", "mp3", "alac"}:
        return src, a_in, out_container.add_stream_from_template(a_in), True
    a_out = out_container.add_stream("aac", rate=a_in.codec_context.sample_rate or 44100)
    return src, a_in, a_out, False


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float,
                audio_from: str | os.PathLike | None = None, crf: int = 18) -> int:
    """Encode RGB frames as H.264 (yuv420p) at `fps`; optionally copy audio from a file.

    Returns the number of frames written. The file appears only when complete.
    """
    import av

    path = Path(path)
    rate = Fraction(fps).limit_denominator(1001)
    count = 0
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4" if path.suffix.lower() in {".mp4", ".m4v"} else None) as out:
            stream = None
            audio = (None, None, None, False)
            if audio_from is not None:
                audio = _copy_audio(audio_from, out)
            try:
                for frame in frames:
                    frame = _even(np.ascontiguousarray(frame, dtype=np.uint8))
                    if stream is None:
                        stream = out.add_stream("libx264", rate=rate)
                        stream.width, stream.height = frame.shape[1], frame.shape[0]
                        stream.pix_fmt = "yuv420p"
                        stream.options = {"crf": str(crf)}
                    for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                        out.mux(packet)
                    count += 1
                if stream is None:
                    raise DataError("no frames to write", path)
                for packet in stream.encode():
                    out.mux(packet)
                src, a_in, a_out, remux = audio
                if src is not None:
                    _mux_audio(src, a_in, a_out, remux, out, duration=count / float(rate))
            finally:
                if audio[0] is not None:
                    audio[0].close()
    return count


def _mux_audio(src, a_in, a_out, remux: bool, out, duration: float) -> None:
    """Copy audio up to the video's duration."""
    import av

    if remux:
        for packet in src.demux(a_in):
            if packet.dts is None:
                continue
            if packet.pts is not None and packet.time_base is not None and float(packet.pts * packet.time_base) > duration:
                break
            packet.stream = a_out
            out.mux(packet)
        return
    resampler = av.AudioResampler(format=a_out.codec_context.format or "fltp",
                                  layout=a_out.codec_context.layout or "stereo", rate=a_out.codec_context.sample_rate)
    for frame in src.decode(a_in):
        if frame.time is not None and frame.time > duration:
            break
        frame.pts = None
        for rf in resampler.resample(frame):
            for packet in a_out.encode(rf):
                out.mux(packet)
    for packet in a_out.encode(None):
        out.mux(packet)
