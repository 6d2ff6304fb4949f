"""Streaming input: files, .gz files and stdin read in fixed-size chunks of whole lines, with progress."""

from __future__ import annotations

import gzip
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

CHUNK_BYTES = 4 * 1024 * 1024
MAX_LINE_BYTES = 1024 * 1024  # a "line" longer than this is junk; it is cut and counted malformed

Progress = Callable[[int], None]


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


def read_chunks(
    source: Source, chunk_bytes: int = CHUNK_BYTES, progress: Progress | None = None
) -> Iterator[bytes]:
    """Yield chunks that end at a line boundary; memory is one chunk plus one partial line."""
    stream, raw = source.open()
    tail = b""
    position = 0
    try:
        while True:
            block = stream.read(chunk_bytes)
            if not block:
                break
            if progress is not None:
                if source.is_stdin:
                    progress(len(block))
                else:  # the raw position, so a .gz file's progress is measured against its own size
                    now = raw.tell()
                    progress(now - position)
                    position = now
            block = tail + block
            cut = block.rfind(b"\n")
            if cut < 0:
                if len(block) > MAX_LINE_BYTES:
                    yield block[:MAX_LINE_BYTES] + b"\n"
                    tail = b""
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
