"""Streaming input: files, .gz files and stdin read in fixed-size chunks of whole lines, with progress."""

from __future__ import annotations

import gzip
import os
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

CHUNK_BYTES = 4 * 1024 * 1024
MAX_LINE_BYTES = 1024 * 1024  # a "line" longer than this is junk; it is cut and counted malformed

Progress = Callable[[int], None]
# What a damaged .gz file raises part-way: cut short (a copy or rotation interrupted), a bad
# checksum, or corrupt compressed data.
_DAMAGED = (EOFError, gzip.BadGzipFile, zlib.error)


class DamagedInput(Exception):
    """A compressed source broke off part-way. Raised after every line before the break was read."""

    def __init__(self, source: str, why: str) -> None:
        super().__init__(f"{source}: {why}; the lines before the break were analysed")


@dataclass(frozen=True)
class Source:
    """One input: a path, or '-' for standard input."""

    name: str

    @property
    def is_stdin(self) -> bool:
        return self.name == "-"

    @property
    def size(self) -> int | None:
        if self.is_stdin:
            return None
        try:
            return os.path.getsize(self.name)
        except OSError:
            return None

    def open(self) -> tuple[BinaryIO, BinaryIO]:
        """(stream to read lines from, raw stream whose position measures progress)."""
        if self.is_stdin:
            stream = sys.stdin.buffer
            return stream, stream
        raw = open(self.name, "rb")  # noqa: SIM115  (closed by read_chunks)
        magic = raw.read(2)
        raw.seek(0)
        if magic == b"\x1f\x8b":
            return gzip.GzipFile(fileobj=raw, mode="rb"), raw
        return raw, raw


def _read_block(stream: BinaryIO, size: int) -> tuple[bytes, str | None]:
    """Up to `size` bytes, and why the stream broke off if it did. Read a piece at a time
    (read1), so the bytes decompressed before a break are kept: read() would drop them."""
    pieces: list[bytes] = []
    have = 0
    try:
        while have < size:
            piece = stream.read1(size - have)  # type: ignore[attr-defined]
            if not piece:
                break
            pieces.append(piece)
            have += len(piece)
    except _DAMAGED as exc:
        return b"".join(pieces), f"the compressed data is damaged ({exc})"
    return b"".join(pieces), None


def read_chunks(
    source: Source, chunk_bytes: int = CHUNK_BYTES, progress: Progress | None = None
) -> Iterator[bytes]:
    """Yield chunks that end at a line boundary; memory is one chunk plus one partial line.

    A line longer than MAX_LINE_BYTES is cut there and the rest of it dropped (one malformed line,
    however long). A compressed source that breaks off raises DamagedInput after its last chunk.
    """
    stream, raw = source.open()
    tail = b""
    position = 0
    skipping = False  # inside the rest of a line that was cut
    damage = None
    try:
        while damage is None:
            block, damage = _read_block(stream, chunk_bytes)
            if not block:
                break
            if progress is not None:
                if source.is_stdin:
                    progress(len(block))
                else:  # the raw position, so a .gz file's progress is measured against its own size
                    now = raw.tell()
                    progress(now - position)
                    position = now
            if skipping:
                end = block.find(b"\n")
                if end < 0:
                    continue
                block, skipping = block[end + 1 :], False
            block = tail + block
            cut = block.rfind(b"\n")
            if cut < 0:
                if len(block) > MAX_LINE_BYTES:
                    yield block[:MAX_LINE_BYTES] + b"\n"
                    tail, skipping = b"", True
                else:
                    tail = block
                continue
            tail = block[cut + 1 :]
            yield block[: cut + 1]
        if tail:
            yield tail + b"\n"
    finally:
        if not source.is_stdin:
            stream.close()
            raw.close()
    if damage is not None:
        raise DamagedInput(source.name, damage)
