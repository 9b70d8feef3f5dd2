"""Decoding damaged media as ffmpeg does: the shared core of `video.py` and `audio.py`.

Streams are demuxed and decoded packet by packet: a packet the decoder rejects is
skipped (the decoder conceals what it can) and counted, a read error ends the stream
with everything before it kept, and a stream of which the first LEADING_FAILURES
packets fail is a one-line DataError naming the file. A `Tally` holds what one pass
decoded and lost; `describe_losses` turns it into the one phrase a `DamagedVideoWarning`
gives; `DecodeStats` is the record of a video pass that callers keep (preprocess's meta.json).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from talkingface.errors import DataError

LEADING_FAILURES = 50  # packets rejected before any frame decoded: the stream does not decode, stop there
RESYNC_BYTES = 256  # bytes between two Matroska blocks that only a demuxer skipping damage leaves (headers: ~30)


class DamagedVideoWarning(UserWarning):
    """A video (or its audio) is damaged or truncated: what could not be decoded was skipped."""


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def open_media(path: str | os.PathLike, noun: str):
    """A PyAV container of an existing file, or a DataError naming it ("video" or "audio")."""
    import av

    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such {noun} file", path)
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot open as {'a video' if noun == 'video' else noun} ({error_text(e)})", path) from e


@dataclass
class Tally:
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


def error_text(e: Exception) -> str:
    text = getattr(e, "strerror", None) or str(e)
    if text.startswith("Error number"):  # codec-specific codes ffmpeg has no text for
        return f"invalid data, ffmpeg error {getattr(e, 'errno', '?')}"
    return text


def decode(container, stream, tally: Tally, path, what: str) -> Iterator:
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
            tally.stopped = error_text(e)
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
            tally.last_error = error_text(e)
            if tally.frames == 0 and tally.damaged >= LEADING_FAILURES:
                raise DataError(f"corrupt or unsupported {what} data: the first {tally.damaged} packets do not "
                                f"decode ({tally.last_error})", path) from e
            continue
        for frame in frames:
            tally.frames += 1
            yield frame


def describe_losses(tally: Tally, what: str, declared: int = 0, implied: int = 0) -> str | None:
    """One phrase saying what a pass lost, or None when it lost nothing."""
    parts = []
    if tally.damaged:
        parts.append(f"skipped {plural(tally.damaged, f'damaged {what} packet')} ({tally.last_error})")
    if tally.resynced:
        parts.append(f"the demuxer skipped {plural(tally.resynced, 'damaged part')} of the file")
    if tally.stopped:
        parts.append(f"reading stopped early at a damaged part of the file ({tally.stopped})")
    if declared and tally.frames < declared:
        parts.append(f"decoded {tally.frames} of the {declared} frames the header declares"
                     + ("" if parts else " (file truncated?)"))
    if implied:
        parts.append(f"decoded {tally.frames} of about {implied} frames the duration implies"
                     + ("" if parts else " (file truncated or damaged?)"))
    if tally.concealed:
        parts.append(f"{plural(tally.concealed, 'lost frame')} concealed by repeating the previous frame"
                     + (f", {plural(tally.late, 'late frame')} dropped" if tally.late else ""))
    return "; ".join(parts) or None

