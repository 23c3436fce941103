"""Opening kernel logs: plain, gzip, xz, bzip2 or zstd (by magic number, not by name), or stdin."""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import sys
from pathlib import Path
from typing import BinaryIO, Iterator

from parsers.errors import ParseError

MAGIC = {
    b"\x1f\x8b": "gzip",
    b"\xfd7zXZ\x00": "xz",
    b"BZh": "bzip2",
    b"\x28\xb5\x2f\xfd": "zstd",
}
CHUNK = 4 << 20
MAX_LINE = 1 << 20  # a longer line is cut here for parsing; the rest is skipped, not buffered


def sniff(head: bytes) -> str | None:
    for magic, kind in MAGIC.items():
        if head.startswith(magic):
            return kind
    return None


def open_binary(path: str | Path) -> BinaryIO:
    """A readable binary stream of the decompressed contents of ``path`` (``-`` is stdin)."""
    if str(path) == "-":
        raw: BinaryIO = io.BufferedReader(sys.stdin.buffer) if not isinstance(
            sys.stdin.buffer, io.BufferedReader) else sys.stdin.buffer
    else:
        try:
            raw = open(path, "rb")
        except OSError as err:
            raise ParseError(str(path), 0, err.strerror or str(err)) from err
    head = raw.peek(8)[:8] if hasattr(raw, "peek") else b""
    kind = sniff(head)
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    if kind == "xz":
        return lzma.LZMAFile(raw)  # type: ignore[return-value]
    if kind == "bzip2":
        return bz2.BZ2File(raw)  # type: ignore[return-value]
    if kind == "zstd":
        import zstandard
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)  # type: ignore
    return raw


def iter_chunks(path: str | Path, chunk: int = CHUNK) -> Iterator[bytes]:
    """Chunks that each end at a line boundary (the last one may not). Decompression errors
    (a truncated gzip, a corrupt xz) become a ParseError naming the file."""
    stream = open_binary(path)
    rest = b""
    try:
        while True:
            try:
                data = stream.read(chunk)
            except (EOFError, OSError, lzma.LZMAError, ValueError) as err:
                raise ParseError(str(path), 0, f"cannot decompress: {err}") from err
            except Exception as err:  # zstandard raises its own ZstdError
                if type(err).__name__ == "ZstdError":
                    raise ParseError(str(path), 0, f"cannot decompress: {err}") from err
                raise
            if not data:
                if rest:
                    yield rest
                return
            buf = rest + data if rest else data
            cut = buf.rfind(b"\n")
            if cut < 0:
                if len(buf) > MAX_LINE:
                    # A giant line: keep its head, drop the middle, so memory stays bounded.
                    rest = buf[:MAX_LINE]
                    continue
                rest = buf
                continue
            yield buf[:cut + 1]
            rest = buf[cut + 1:]
            if len(rest) > MAX_LINE:
                rest = rest[:MAX_LINE]
    finally:
        if str(path) != "-":
            stream.close()
