"""Video files through PyAV (its wheel bundles ffmpeg): streaming reads, atomic writes.

Frames are H x W x 3 uint8 RGB arrays. Reads are generators, so memory stays flat in
video length. Writes go to a temporary file that is renamed at the end.

Damaged files are read as ffmpeg reads them: streams are demuxed and decoded packet
by packet, a packet the decoder rejects is skipped (the decoder conceals what it can),
a frame lost with it is concealed by repeating the previous frame (as ffmpeg does for a
constant-frame-rate output: the picture stays in sync with the sound), and a read error
ends the stream with everything before it kept. What was lost is
reported once per file and pass as a `DamagedVideoWarning`; a file of which nothing
decodes is a one-line DataError naming it. Audio never costs a finished video: audio
that does not decode is left out, damaged audio packets are dropped (re-encoded audio
gets silence in their place, to stay in sync), and any other audio failure while
muxing ends the audio there, each with one warning.
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

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".gif"}
REMUX_AUDIO = {"aac", "mp3", "alac"}  # copied packet by packet; other audio codecs are re-encoded to AAC
LEADING_FAILURES = 50  # packets rejected before any frame decoded: the stream does not decode, stop there
RESYNC_BYTES = 256  # bytes between two Matroska blocks that only a demuxer skipping damage leaves (headers: ~30)


class DamagedVideoWarning(UserWarning):
    """A video (or its audio) is damaged or truncated: what could not be decoded was skipped."""


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    num_frames: int  # from the container; 0 when it does not say
    width: int
    height: int
    has_audio: bool


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _open_media(path: str | os.PathLike, noun: str):
    """A PyAV container of an existing file, or a DataError naming it ("video" or "audio")."""
    import av

    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such {noun} file", path)
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot open as {'a video' if noun == 'video' else noun} ({_message(e)})", path) from e


def _open(path: str | os.PathLike):
    path = Path(path)
    container = _open_media(path, "video")
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


# --------------------------------------------------------------------------- robust decoding
@dataclass
class _Tally:
    """What one pass over a stream decoded and lost."""

    frames: int = 0
    damaged: int = 0  # packets the decoder rejected (skipped)
    concealed: int = 0  # lost frames filled in by repeating the previous one
    late: int = 0  # frames decoded after their place was filled (dropped)
    resynced: int = 0  # damaged parts of a Matroska file the demuxer skipped (to the next cluster)
    stopped: str | None = None  # why reading ended before the end of the file
    last_error: str | None = None


@dataclass
class DecodeStats:
    """What one pass of `iter_frames` read and lost, for records (preprocess's meta.json).
    Filled in when the pass ends; a pass closed early holds what it had read until then."""

    declared: int = 0  # frames the container's header or index declares (0: it does not say)
    decoded: int = 0  # frames the decoder gave
    concealed: int = 0  # lost frames filled in by repeating the previous one
    late_dropped: int = 0  # frames decoded after their place was filled
    damaged_packets: int = 0  # packets the decoder rejected (skipped)
    skipped_parts: int = 0  # damaged parts of a Matroska file the demuxer skipped
    implied: int = 0  # frames the duration implies, where the header declares none and clearly more were lost
    stopped: str | None = None  # why reading ended before the end of the file
    complete: bool = False  # the stream was read to its end
    warning: str | None = None  # what the DamagedVideoWarning said, if one was given


def _message(e: Exception) -> str:
    text = getattr(e, "strerror", None) or str(e)
    if text.startswith("Error number"):  # codec-specific codes ffmpeg has no text for
        return f"invalid data, ffmpeg error {getattr(e, 'errno', '?')}"
    return text


def _decode(container, stream, tally: _Tally, path, what: str) -> Iterator:
    """Decoded frames of `stream`, packet by packet as ffmpeg does: a packet the decoder
    rejects is counted and skipped, a read error ends the stream (the decoder is drained).
    A Matroska demuxer skips damaged bytes silently, to the next cluster: a jump in the byte
    positions of the file's blocks (every stream's) counts in `tally.resynced`. DataError once
    LEADING_FAILURES packets failed before any frame decoded (an undecodable file fails fast)."""
    import av

    packets = container.demux()
    matroska, start, end, ended = "matroska" in container.format.name, None, None, False
    while not ended:
        try:
            packet = next(packets)
        except StopIteration:
            return  # the demuxer's last (empty) packet drained the decoder
        except av.error.FFmpegError as e:
            tally.stopped = _message(e)
            packet, ended = None, True  # drain the decoder, as at the end of the file
        else:
            if matroska and packet.size and packet.pos is not None and packet.pos >= 0:
                tally.resynced += end is not None and packet.pos - end > RESYNC_BYTES  # (laced frames share a pos)
                start, end = packet.pos, (end + packet.size if packet.pos == start else
                                          max(end or 0, packet.pos + packet.size))  # (a late packet: behind)
            if packet.stream.index != stream.index:  # (a flush packet's stream_index is always 0)
                continue
        try:
            frames = stream.codec_context.decode(packet)
        except av.error.FFmpegError as e:
            tally.damaged += 1
            tally.last_error = _message(e)
            if tally.frames == 0 and tally.damaged >= LEADING_FAILURES:
                raise DataError(f"corrupt or unsupported {what} data: the first {tally.damaged} packets do not "
                                f"decode ({tally.last_error})", path) from e
            continue
        for frame in frames:
            tally.frames += 1
            yield frame


def _losses(tally: _Tally, what: str, declared: int = 0, implied: int = 0) -> str | None:
    """One phrase saying what a pass lost, or None when it lost nothing."""
    parts = []
    if tally.damaged:
        parts.append(f"skipped {_plural(tally.damaged, f'damaged {what} packet')} ({tally.last_error})")
    if tally.resynced:
        parts.append(f"the demuxer skipped {_plural(tally.resynced, 'damaged part')} of the file")
    if tally.stopped:
        parts.append(f"reading stopped early at a damaged part of the file ({tally.stopped})")
    if declared and tally.frames < declared:
        parts.append(f"decoded {tally.frames} of the {declared} frames the header declares"
                     + ("" if parts else " (file truncated?)"))
    if implied:
        parts.append(f"decoded {tally.frames} of about {implied} frames the duration implies"
                     + ("" if parts else " (file truncated or damaged?)"))
    if tally.concealed:
        parts.append(f"{_plural(tally.concealed, 'lost frame')} concealed by repeating the previous frame"
                     + (f", {_plural(tally.late, 'late frame')} dropped" if tally.late else ""))
    return "; ".join(parts) or None


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
    tally, declared, implied, lost = _Tally(), 0, 0, None
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
        for frame in _decode(container, stream, tally, path, "video"):
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
            why = f"{_plural(tally.damaged, 'damaged packet')}: {tally.last_error}" if tally.damaged else \
                tally.stopped or ("damaged file?" if declared else "the stream is empty")
            raise DataError(f"no video frame could be decoded ({why})", path)
        end, implied = None if declared or last is None else _stream_end(container, stream), 0
        if end is not None:  # the frames after the last one decoded (so variable frame rates count right)
            yielded, short = tally.frames - tally.late + tally.concealed, round(end * rate - last - 1)
            implied = yielded + short if short > 2 and short > 0.05 * (yielded + short) else 0
        lost = _losses(tally, "video", declared, implied)
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
        frames = _decode(container, container.streams.video[0], _Tally(), path, "video")
        try:
            return next(frames, None)
        finally:
            frames.close()


def read_video(path: str | os.PathLike) -> tuple[Iterator[np.ndarray], float]:
    """(frame iterator, fps)."""
    return iter_frames(path), probe_video(path).fps


# --------------------------------------------------------------------------- audio
def _audio_problem(path: str | os.PathLike) -> tuple[bool, str | None]:
    """(the file has an audio stream, why it cannot be used or None).

    Cheap: decodes up to the first audio frame that decodes (damaged packets later on
    are skipped while muxing)."""
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        return False, f"cannot open the file ({e})"
    with container:
        if not container.streams.audio:
            return False, None
        stream = container.streams.audio[0]
        if stream.codec_context is None:
            return True, "no decoder for its audio codec"
        tally = _Tally()
        frames = _decode(container, stream, tally, path, "audio")
        try:
            next(frames, None)
        except DataError:
            pass  # LEADING_FAILURES damaged packets: counted in the tally
        finally:
            frames.close()
        if tally.frames:
            return True, None
        if tally.damaged:
            return True, f"its audio does not decode ({tally.last_error})"
        return True, "its audio stream is empty" + (f" ({tally.stopped})" if tally.stopped else "")


def audio_decodes(path: str | os.PathLike) -> bool:
    """Whether the file has audio that decodes; a DamagedVideoWarning when it has audio that does not."""
    present, problem = _audio_problem(path)
    if present and problem is not None:
        warnings.warn(f"{path}: {problem}; the output has no audio", DamagedVideoWarning, stacklevel=2)
    return present and problem is None


def read_audio(path: str | os.PathLike, rate: int = 16000) -> np.ndarray:
    """The first audio stream of a file (any container PyAV reads: wav, mp3, m4a, a video's
    sound track, ...) as mono int16 samples at `rate` Hz, resampled and downmixed by ffmpeg.

    Damaged packets are skipped as when muxing (one DamagedVideoWarning); a DataError naming
    the file when it cannot be opened, has no audio stream, or none of its audio decodes.
    The whole stream is returned: 2 bytes per sample (32 KB a second at 16 kHz)."""
    import av

    path = Path(path)
    container = _open_media(path, "audio")
    with container:
        if not container.streams.audio:
            raise DataError("file has no audio stream", path)
        stream = container.streams.audio[0]
        if stream.codec_context is None:
            raise DataError("no decoder for this file's audio codec (convert it, e.g. to WAV)", path)
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        tally, parts = _Tally(), []
        try:
            for frame in _decode(container, stream, tally, path, "audio"):
                frame.pts = None  # resample by sample count: damaged timestamps cannot reorder the sound
                parts.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
            parts.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
        except (av.error.FFmpegError, ValueError) as e:  # a resampler that cannot take this layout or format
            raise DataError(f"cannot convert its audio ({_message(e)})", path) from e
    if tally.frames == 0:
        why = tally.last_error or tally.stopped or "the stream is empty"
        raise DataError(f"no audio could be decoded ({why})", path)
    lost = _losses(tally, "audio")
    if lost:
        warnings.warn(f"{path}: {lost}", DamagedVideoWarning, stacklevel=2)
    return np.concatenate(parts).astype(np.int16, copy=False) if parts else np.zeros(0, np.int16)


class _AudioCopy:
    """The first audio stream of a file, added to an output container and muxed after the video.

    Streams MP4 can carry (REMUX_AUDIO) are remuxed untouched, other codecs re-encoded
    to AAC. Damaged packets are skipped (when re-encoding, silence fills their time so
    the audio stays in sync); any other failure ends the audio there. Either way the
    video is kept, with one DamagedVideoWarning."""

    @classmethod
    def open(cls, src_path: str | os.PathLike, out) -> _AudioCopy | None:
        import av

        present, problem = _audio_problem(src_path)
        if problem is not None:
            warnings.warn(f"{src_path}: {problem}; the video is written without audio", DamagedVideoWarning,
                          stacklevel=3)
        if not present or problem is not None:
            return None
        src = None
        try:
            src = av.open(str(src_path))
            a_in = src.streams.audio[0]
            if a_in.codec_context.name in REMUX_AUDIO:
                a_out = out.add_stream_from_template(a_in)
            else:
                a_out = out.add_stream("aac", rate=a_in.codec_context.sample_rate or 44100)
        except (av.error.FFmpegError, OSError, ValueError) as e:
            if src is not None:
                src.close()
            warnings.warn(f"{src_path}: cannot add its audio to the output ({e}); the video is written without "
                          "audio", DamagedVideoWarning, stacklevel=3)
            return None
        return cls(src_path, src, a_in, a_out)

    def __init__(self, src_path, src, a_in, a_out):
        self.src_path, self.src, self.a_in, self.a_out = src_path, src, a_in, a_out
        self.remux = a_in.codec_context.name in REMUX_AUDIO
        self.tally = _Tally()
        self.silence = 0.0  # seconds of silence in place of damaged packets
        self.muxed = 0.0  # seconds of audio written

    def close(self) -> None:
        self.src.close()

    def mux(self, out, duration: float) -> None:
        """Copy audio up to the video's `duration` (seconds); one warning about anything lost."""
        failure = None
        try:
            if self.remux:
                self._remux(out, duration)
            else:
                self._reencode(out, duration)
        except Exception as e:  # noqa: BLE001 - the video is finished: no audio failure may cost it
            failure = f"{type(e).__name__}: {e}"
            if not self.remux:
                self._drain(out)
        lost = _losses(self.tally, "audio")
        if lost and self.silence:
            lost += f", {self.silence:.2f} s of silence in their place"
        if failure:
            lost = (lost + "; " if lost else "") + f"the audio stops at {self.muxed:.2f} s ({failure})"
        if lost:
            warnings.warn(f"{self.src_path}: {lost}; the video is written in full", DamagedVideoWarning,
                          stacklevel=3)

    def _remux(self, out, duration: float) -> None:
        import av

        for packet in _decoding_packets(self.src, self.a_in, self.tally):
            if packet.dts is None:
                continue
            start = None if packet.pts is None or packet.time_base is None else float(packet.pts * packet.time_base)
            if start is not None and start > duration:
                break
            packet.stream = self.a_out
            try:
                out.mux(packet)
            except (av.error.FFmpegError, ValueError) as e:  # e.g. a damaged timestamp going backwards
                self.tally.damaged += 1
                self.tally.last_error = _message(e)
                continue
            if start is not None and packet.duration is not None and packet.time_base is not None:
                self.muxed = start + float(packet.duration * packet.time_base)

    def _drain(self, out) -> None:
        """After a failure: the encoder's last packets, when it can still give them."""
        import av

        try:
            for packet in self.a_out.encode(None):
                out.mux(packet)
        except (av.error.FFmpegError, ValueError):
            pass  # the audio simply ends earlier

    def _reencode(self, out, duration: float) -> None:
        import av

        a_out = self.a_out
        resampler = av.AudioResampler(format=a_out.codec_context.format or "fltp",
                                      layout=a_out.codec_context.layout or "stereo",
                                      rate=a_out.codec_context.sample_rate)

        def encode(frame) -> None:
            for rf in resampler.resample(frame):
                for packet in a_out.encode(rf):
                    out.mux(packet)

        origin, written = None, 0  # the first frame's time (seconds), samples written since
        for frame in _decode(self.src, self.a_in, self.tally, self.src_path, "audio"):
            if frame.time is not None and frame.time > duration:
                break
            rate = frame.sample_rate
            if frame.time is not None:
                origin = frame.time if origin is None else origin
                # a hole in the timeline (damaged packets): silence keeps what follows in sync. Measured
                # against what was written, so timestamp rounding never accumulates.
                gap = int(round((min(frame.time, duration) - origin) * rate)) - written
                if gap > frame.samples // 2:
                    encode(_silence(frame, gap))
                    written += gap
                    self.silence += gap / rate
            frame.pts = None
            encode(frame)
            written += frame.samples
            self.muxed = written / rate
        for packet in a_out.encode(None):
            out.mux(packet)


def _decoding_packets(container, stream, tally: _Tally) -> Iterator:
    """`stream`'s packets that decode (each is decoded to check it; audio decoders are cheap).
    The rest are counted in `tally` and skipped; a read error ends the stream."""
    import av

    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError as e:
            tally.stopped = _message(e)
            return
        try:
            tally.frames += len(packet.decode())
        except av.error.FFmpegError as e:
            tally.damaged += 1
            tally.last_error = _message(e)
            continue
        yield packet


def _silence(like, samples: int):
    """A silent audio frame in the format, layout and rate of `like`."""
    import av

    frame = av.AudioFrame(format=like.format.name, layout=like.layout.name, samples=samples)
    fill = b"\x80" if like.format.name.startswith("u8") else b"\x00"  # unsigned 8-bit silence is mid-scale
    for plane in frame.planes:
        plane.update(fill * plane.buffer_size)
    frame.sample_rate = like.sample_rate
    frame.pts = None
    return frame


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
            audio = _AudioCopy.open(audio_from, out) if audio_from is not None else None
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
