"""Audio through PyAV: checking that a file's audio decodes, reading it as 16-bit mono
samples, and copying it into a video being written (`write_video`'s `audio_from`).

Audio never costs a finished video: audio that does not decode is left out, damaged
audio packets are dropped (re-encoded audio gets silence in their place, to stay in
sync), and any other audio failure while muxing ends the audio there, each with one
`DamagedVideoWarning`.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from talkingface.errors import DataError
from talkingface.utils.decoding import DamagedVideoWarning, Tally, decode, describe_losses, error_text, open_media

REMUX_AUDIO = {"aac", "mp3", "alac"}  # copied packet by packet; other audio codecs are re-encoded to AAC


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
        tally = Tally()
        frames = decode(container, stream, tally, path, "audio")
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
    container = open_media(path, "audio")
    with container:
        if not container.streams.audio:
            raise DataError("file has no audio stream", path)
        stream = container.streams.audio[0]
        if stream.codec_context is None:
            raise DataError("no decoder for this file's audio codec (convert it, e.g. to WAV)", path)
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        tally, parts = Tally(), []
        try:
            for frame in decode(container, stream, tally, path, "audio"):
                frame.pts = None  # resample by sample count: damaged timestamps cannot reorder the sound
                parts.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
            parts.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
        except (av.error.FFmpegError, ValueError) as e:  # a resampler that cannot take this layout or format
            raise DataError(f"cannot convert its audio ({error_text(e)})", path) from e
    if tally.frames == 0:
        why = tally.last_error or tally.stopped or "the stream is empty"
        raise DataError(f"no audio could be decoded ({why})", path)
    lost = describe_losses(tally, "audio")
    if lost:
        warnings.warn(f"{path}: {lost}", DamagedVideoWarning, stacklevel=2)
    return np.concatenate(parts).astype(np.int16, copy=False) if parts else np.zeros(0, np.int16)


class AudioCopy:
    """The first audio stream of a file, added to an output container and muxed after the video.

    Streams MP4 can carry (REMUX_AUDIO) are remuxed untouched, other codecs re-encoded
    to AAC. Damaged packets are skipped (when re-encoding, silence fills their time so
    the audio stays in sync); any other failure ends the audio there. Either way the
    video is kept, with one DamagedVideoWarning."""

    @classmethod
    def open(cls, src_path: str | os.PathLike, out) -> AudioCopy | None:
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
        self.tally = Tally()
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
        lost = describe_losses(self.tally, "audio")
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
                self.tally.last_error = error_text(e)
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
        for frame in decode(self.src, self.a_in, self.tally, self.src_path, "audio"):
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


def _decoding_packets(container, stream, tally: Tally) -> Iterator:
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
            tally.stopped = error_text(e)
            return
        try:
            tally.frames += len(packet.decode())
        except av.error.FFmpegError as e:
            tally.damaged += 1
            tally.last_error = error_text(e)
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
