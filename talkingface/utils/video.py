"""Video files through PyAV (its wheel bundles ffmpeg): streaming reads, atomic writes.

Frames are H x W x 3 uint8 RGB arrays. Reads are generators, so memory stays flat in
video length. Writes go to a temporary file that is renamed at the end.

Damaged files are read as ffmpeg reads them (packet by packet: `decoding.py`), and a
frame lost with a damaged packet is concealed by repeating the previous frame (as ffmpeg
does for a constant-frame-rate output: the picture stays in sync with the sound). What
was lost is reported once per file and pass as a `DamagedVideoWarning`; a file of which
nothing decodes is a one-line DataError naming it. Audio (`audio.py`: reading, checking,
copying into a written video) never costs a finished video.

`read_audio`, `audio_decodes`, `DamagedVideoWarning`, `DecodeStats` and `LEADING_FAILURES`
live in `audio.py` and `decoding.py`; they are importable from here too.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from talkingface.errors import DataError
from talkingface.utils.atomic import atomic_path
from talkingface.utils.audio import AudioCopy, audio_decodes, read_audio
from talkingface.utils.decoding import (LEADING_FAILURES, DamagedVideoWarning, DecodeStats, Tally, decode,
                                        describe_losses, open_media, plural)

__all__ = ["VIDEO_EXTENSIONS", "VideoInfo", "probe_video", "iter_frames", "first_video_frame", "read_video",
           "write_video",
           # re-exported from audio.py and decoding.py
           "read_audio", "audio_decodes", "DamagedVideoWarning", "DecodeStats", "LEADING_FAILURES"]

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".gif"}


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    num_frames: int  # from the container; 0 when it does not say
    width: int
    height: int
    has_audio: bool


def _open(path: str | os.PathLike):
    path = Path(path)
    container = open_media(path, "video")
    if not container.streams.video:
        container.close()
        raise DataError("file has no video stream", path)
    if container.streams.video[0].codec_context is None:  # a codec this ffmpeg build has no decoder for
        container.close()
        raise DataError("no decoder for this file's video codec (re-encode it, e.g. to H.264)", path)
    return container


def probe_video(path: str | os.PathLike) -> VideoInfo:
    with _open(path) as c:
        vs = c.streams.video[0]
        rate = vs.average_rate or vs.guessed_rate or Fraction(25)
        return VideoInfo(fps=float(rate), num_frames=int(vs.frames or 0), width=vs.codec_context.width,
                         height=vs.codec_context.height, has_audio=bool(c.streams.audio))


def _stream_end(container, stream) -> float | None:
    """When the video stream ends (seconds): its header's duration, else ffmpeg's Matroska DURATION tag
    (others', e.g. DURATION-eng, may be stale copies), else the container's when it holds nothing
    else (audio may outlast the video); None when unknown."""
    if stream.duration and stream.time_base:
        return float(((stream.start_time or 0) + stream.duration) * stream.time_base)
    try:  # HH:MM:SS.nnnnnnnnn
        return sum(float(x) * 60 ** i for i, x in enumerate(reversed(stream.metadata["DURATION"].split(":"))))
    except (KeyError, ValueError):
        pass
    return ((container.start_time or 0) + container.duration) / 1e6 if container.duration and \
        len(container.streams) == 1 else None


def iter_frames(path: str | os.PathLike, stats: DecodeStats | None = None) -> Iterator[np.ndarray]:
    """Decode frames one at a time as RGB uint8.

    Damaged packets are skipped, and where that leaves a hole between two decoded frames
    (by their timestamps on the stream's nominal frame grid) the previous frame is
    repeated to fill it, so later frames keep their place in time. Intact files, variable
    frame rates included, are never filled, nor is a truncated end. Once the stream is
    read to its end, one DamagedVideoWarning says what was lost (damaged packets, frames
    concealed, fewer frames than the header declares or, when it declares none, clearly fewer
    than the stream's duration implies). DataError when nothing decodes. `stats`, when given,
    receives the pass's counts (declared and decoded frames, damaged packets, ...) as it ends."""
    container = _open(path)
    tally, declared, implied, lost = Tally(), 0, 0, None
    try:
        stream = container.streams.video[0]
        # slice threads, not frame threads: with a frame in flight per core, a damaged packet's
        # error can come out with other frames, and PyAV then drops the error (the damage goes
        # uncounted, so unconcealed) or, at the end of the file, every frame still in flight.
        # Decoding is rarely the bottleneck: the RGB conversion costs about as much.
        stream.thread_type = "SLICE"
        rate = stream.average_rate or stream.guessed_rate
        declared = int(stream.frames or 0)
        # the last frame decoded and yielded, its position on the nominal frame grid, damaged packets
        # already matched to a hole (B-frame reordering delays frames: a packet's damage is often
        # counted a few frames before its hole shows)
        previous, last, matched = None, None, 0
        for frame in decode(container, stream, tally, path, "video"):
            position = None
            if rate and frame.pts is not None and frame.time_base is not None:
                position = frame.pts * frame.time_base * rate  # frames come in presentation order
            if last is not None and position is not None:
                if tally.concealed and position <= last:  # reordered behind a hole already filled (ffmpeg drops it)
                    tally.late += 1
                    continue
                evidence = tally.damaged + tally.resynced * int(rate * 6)  # a skipped cluster: <= 5 s of frames
                if evidence > matched and position - last > 1.5:
                    # a damaged timestamp never adds more frames than the header declares (or a minute's worth)
                    room = declared - tally.frames + tally.late - tally.concealed if declared else int(rate * 60)
                    missing = max(min(round(position - last) - 1, room), 0)
                    matched += min(evidence - matched, max(missing, 1))  # a packet a frame, or a keyframe's GOP
                    tally.concealed += missing
                    for _ in range(missing):
                        yield previous.to_ndarray(format="rgb24")
            previous, last = frame, position
            yield frame.to_ndarray(format="rgb24")
        if tally.frames == 0:
            why = f"{plural(tally.damaged, 'damaged packet')}: {tally.last_error}" if tally.damaged else \
                tally.stopped or ("damaged file?" if declared else "the stream is empty")
            raise DataError(f"no video frame could be decoded ({why})", path)
        end, implied = None if declared or last is None else _stream_end(container, stream), 0
        if end is not None:  # the frames after the last one decoded (so variable frame rates count right)
            yielded, short = tally.frames - tally.late + tally.concealed, round(end * rate - last - 1)
            implied = yielded + short if short > 2 and short > 0.05 * (yielded + short) else 0
        lost = describe_losses(tally, "video", declared, implied)
        if stats is not None:
            stats.complete = True
        if lost:
            warnings.warn(f"{path}: {lost}", DamagedVideoWarning, stacklevel=2)
    finally:
        container.close()
        if stats is not None:
            stats.declared, stats.decoded, stats.concealed, stats.late_dropped = \
                declared, tally.frames, tally.concealed, tally.late
            stats.damaged_packets, stats.skipped_parts, stats.implied, stats.stopped, stats.warning = \
                tally.damaged, tally.resynced, implied, tally.stopped, lost


def first_video_frame(path: str | os.PathLike):
    """The first frame that decodes (an av.VideoFrame, for its metadata), or None; no warnings."""
    with _open(path) as container:
        frames = decode(container, container.streams.video[0], Tally(), path, "video")
        try:
            return next(frames, None)
        finally:
            frames.close()


def read_video(path: str | os.PathLike) -> tuple[Iterator[np.ndarray], float]:
    """(frame iterator, fps)."""
    return iter_frames(path), probe_video(path).fps


# --------------------------------------------------------------------------- writing
def _even(frame: np.ndarray) -> np.ndarray:
    """yuv420p needs even sizes: replicate the last row/column when odd."""
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return frame


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float,
                audio_from: str | os.PathLike | None = None, crf: int = 18) -> int:
    """Encode RGB frames as H.264 (yuv420p) at `fps`; optionally copy audio from a file.

    Returns the number of frames written. The file appears only when complete. Audio
    problems never lose the video: they leave the audio out (or end it early) with a
    DamagedVideoWarning.
    """
    import av

    path = Path(path)
    rate = Fraction(fps).limit_denominator(1001)
    count = 0
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4" if path.suffix.lower() in {".mp4", ".m4v"} else None) as out:
            stream = None
            audio = AudioCopy.open(audio_from, out) if audio_from is not None else None
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
                if audio is not None:
                    audio.mux(out, duration=count / float(rate))
            finally:
                if audio is not None:
                    audio.close()
    return count
