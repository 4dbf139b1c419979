"""The pixel aspect ratio of a WebM output, written into its header once FFmpeg has finished the file.

FFmpeg's Matroska muxer writes a track's display size from the stream's own
sample aspect ratio (``AVStream.sample_aspect_ratio``), which PyAV cannot set;
MP4 and MOV take it from the encoder and keep it. So the WebM writer adds the
video track's ``DisplayWidth`` / ``DisplayHeight`` to the finished file: the
bytes they take come out of the ``Void`` element FFmpeg reserves before the
``Info`` and ``Tracks`` elements, so the clusters and cues keep their
positions; the ``SeekHead`` entries of the elements that moved are updated.
Only the file's head is read and rewritten, in place, at the same length.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

_SEGMENT, _SEEK_HEAD, _SEEK, _SEEK_ID, _SEEK_POSITION = 0x18538067, 0x114D9B74, 0x4DBB, 0x53AB, 0x53AC
_VOID, _INFO, _TRACKS, _TRACK_ENTRY, _VIDEO, _CLUSTER = 0xEC, 0x1549A966, 0x1654AE6B, 0xAE, 0xE0, 0x1F43B675
_DISPLAY_WIDTH, _DISPLAY_HEIGHT = 0x54B0, 0x54BA
_HEAD_BYTES = 1 << 20  # FFmpeg writes everything before the first cluster in the first few hundred bytes


@dataclass(frozen=True)
class _Element:
    id: int
    start: int  # offset of its ID
    header: int  # bytes of ID and size
    size: int  # bytes of its payload
    size_width: int

    @property
    def data(self) -> int:
        return self.start + self.header

    @property
    def end(self) -> int:
        return self.data + self.size


def _vint(buf: bytes, at: int, keep_marker: bool = False) -> tuple[int, int]:
    first = buf[at]
    width, mask = 1, 0x80
    while width <= 8 and not first & mask:
        mask >>= 1
        width += 1
    if width > 8:
        raise ValueError("not an EBML number")
    value = first if keep_marker else first & (mask - 1)
    for byte in buf[at + 1 : at + width]:
        value = (value << 8) | byte
    return value, width


def _element(buf: bytes, at: int) -> _Element:
    ident, id_width = _vint(buf, at, keep_marker=True)
    size, size_width = _vint(buf, at + id_width)
    return _Element(ident, at, id_width + size_width, size, size_width)


def _children(buf: bytes, parent: _Element, stop: int | None = None) -> list[_Element]:
    found, at = [], parent.data
    end = min(parent.end, len(buf))
    while at < end:
        child = _element(buf, at)
        found.append(child)
        if child.id == stop:
            break
        at = child.end
    return found


def _size_bytes(size: int, width: int) -> bytes:
    width = max(width, next(w for w in range(1, 9) if size < (1 << (7 * w)) - 1))
    return ((1 << (7 * width)) | size).to_bytes(width, "big")


def _id_bytes(ident: int) -> bytes:
    return ident.to_bytes((ident.bit_length() + 7) // 8, "big")


def _uint_element(ident: int, value: int) -> bytes:
    payload = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
    return _id_bytes(ident) + _size_bytes(len(payload), 1) + payload


def _rebuilt(buf: bytes, element: _Element, payload: bytes) -> bytes:
    """``element`` with a new payload, its size field as wide as before where the new size fits."""
    return buf[element.start : element.start + element.header - element.size_width] + _size_bytes(
        len(payload), element.size_width
    ) + payload


def _grown_tracks(head: bytes, tracks: _Element, display: tuple[int, int]) -> bytes | None:
    """The Tracks element with the display size added to its first video track (None: none, or set)."""
    for entry in _children(head, tracks):
        if entry.id != _TRACK_ENTRY:
            continue
        video = next((c for c in _children(head, entry) if c.id == _VIDEO), None)
        if video is None:
            continue
        if any(c.id in (_DISPLAY_WIDTH, _DISPLAY_HEIGHT) for c in _children(head, video)):
            return None
        added = _uint_element(_DISPLAY_WIDTH, display[0]) + _uint_element(_DISPLAY_HEIGHT, display[1])
        new_video = _rebuilt(head, video, head[video.data : video.end] + added)
        new_entry = _rebuilt(head, entry, head[entry.data : video.start] + new_video + head[video.end : entry.end])
        return _rebuilt(head, tracks, head[tracks.data : entry.start] + new_entry + head[entry.end : tracks.end])
    return None


def write_display_size(path: str | os.PathLike[str], width: int, height: int) -> bool:
    """Give the first video track of the WebM at ``path`` the display size ``width`` x ``height``;
    ``False`` (file untouched) where its head is not laid out as FFmpeg writes it."""
    with open(path, "rb") as fh:
        head = fh.read(_HEAD_BYTES)
    try:
        ebml = _element(head, 0)
        segment = _element(head, ebml.end)
        if segment.id != _SEGMENT:
            return False
        top = {c.id: c for c in reversed(_children(head, segment, stop=_CLUSTER))}
        seek_head, void, tracks = top.get(_SEEK_HEAD), top.get(_VOID), top.get(_TRACKS)
        if seek_head is None or void is None or tracks is None or not seek_head.end <= void.start < tracks.start:
            return False
        if tracks.end > len(head):
            return False
        new_tracks = _grown_tracks(head, tracks, (width, height))
        if new_tracks is None:
            return False
        growth = len(new_tracks) - (tracks.end - tracks.start)
        if growth > void.size:
            return False
        new_void = _rebuilt(head, void, bytes(void.size - growth))
        if len(new_void) != void.end - void.start - growth:
            return False
        out = bytearray(head[: void.start] + new_void + head[void.end : tracks.start] + new_tracks)
        _move_seek_positions(out, seek_head, segment.data, (void.end, tracks.end), growth)
    except (IndexError, ValueError, StopIteration):
        return False
    with open(path, "r+b") as fh:
        fh.write(out)
    return True


def _move_seek_positions(buf: bytearray, seek_head: _Element, base: int, moved: tuple[int, int], by: int) -> None:
    """Subtract ``by`` from each SeekHead position (relative to ``base``) within ``moved``, in place,
    each in the bytes it had (a smaller number fits)."""
    for seek in _children(bytes(buf), seek_head):
        if seek.id != _SEEK:
            continue
        for field in _children(bytes(buf), seek):
            if field.id != _SEEK_POSITION:
                continue
            position = int.from_bytes(buf[field.data : field.end], "big")
            if moved[0] <= base + position < moved[1]:
                buf[field.data : field.end] = (position - by).to_bytes(field.size, "big")


def keep_pixel_aspect(path: Path, width: int, height: int, sample_aspect_ratio) -> None:
    """Write ``sample_aspect_ratio`` (a Fraction) into the WebM at ``path`` as its display size,
    as FFmpeg would (display width = width x ratio, rounded); a warning where the file cannot take it."""
    display = (max(1, round(width * sample_aspect_ratio)), height)
    if not write_display_size(path, *display):
        logger.warning(
            "the WebM output does not keep the source's pixel aspect ratio %s (its header could not take it); "
            "use the mov or mp4 format to keep it",
            sample_aspect_ratio,
        )
