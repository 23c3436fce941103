"""Opening kernel logs: plain, gzip, xz, bzip2 or zstd (by magic number, not by name), or stdin."""
from __future__ import annotations

import binascii
import bz2
import codecs
import collections
import contextlib
import gzip
import io
import json
import lzma
import os
import re
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
MAX_LINE_TOTAL = 256 << 20  # no log has a line this long: it is not a text log


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
        return _utf8(gzip.GzipFile(fileobj=raw))  # type: ignore[return-value]
    if kind == "xz":
        return _utf8(lzma.LZMAFile(raw))  # type: ignore[return-value]
    if kind == "bzip2":
        return _utf8(bz2.BZ2File(raw))  # type: ignore[return-value]
    if kind == "zstd":
        return _ZstdFrames(raw)  # type: ignore[return-value]
    return _utf8(raw)


def _utf8(stream):
    """A UTF-16 log (Windows' PowerShell writes one with ``>``), by its byte order mark, as
    UTF-8: lines, words and line numbers are then the same as in any other log."""
    try:
        bom = stream.peek(2)[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    except Exception:  # a corrupt stream: the reader reports it, with the file's name
        return stream
    return io.BufferedReader(_Utf16(stream)) if bom else stream


class _Utf16(io.RawIOBase):
    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self._dec = codecs.getincrementaldecoder("utf-16")("replace")
        self._out = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._out:
            data = self._raw.read(1 << 16)
            self._out = self._dec.decode(data, final=not data).encode("utf-8", "surrogateescape")
            if not data:
                break
        n = min(len(b), len(self._out))
        b[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


class _ZstdFrames(io.RawIOBase):
    """zstd frames one after another, decoded as a stream. Unlike zstandard's stream_reader, a
    stream that ends inside a frame is an error (EOFError), as it is for gzip and xz. Input is
    fed in pieces sized to what they expand to, so that one read never holds more than a
    bounded amount of output (zeros compress 30,000 to 1)."""

    PIECE_MIN, PIECE_MAX, OUT_PER_PIECE = 4096, 1 << 18, 4 << 20

    def __init__(self, raw: BinaryIO):
        import zstandard
        self._raw = raw
        self._new = zstandard.ZstdDecompressor().decompressobj
        self._d = self._new()
        self._in_frame = False
        self._out: collections.deque = collections.deque()  # decoded pieces not yet read
        self._off = 0      # bytes of the first piece already read
        self._pending = memoryview(b"")
        self._piece = self.PIECE_MIN

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        """Decoded bytes copied straight into ``b`` (no joined buffer in between)."""
        with memoryview(b) as mv, mv.cast("B") as dst:
            want, got = len(dst), 0
            out = self._out
            while got < want:
                if not out:
                    if not self._feed():
                        break
                    continue
                first = out[0]
                k = min(len(first) - self._off, want - got)
                dst[got:got + k] = (memoryview(first)[self._off:self._off + k]
                                    if k < len(first) else first)
                got += k
                self._off += k
                if self._off == len(first):
                    out.popleft()
                    self._off = 0
            return got

    def read(self, n: int = -1) -> bytes:
        buf = bytearray(CHUNK if n is None or n < 0 else n)
        del buf[self.readinto(buf):]
        return bytes(buf)

    def _feed(self) -> bool:
        """Decode one more piece of input; False at the end of the input."""
        if not self._pending:
            self._pending = memoryview(self._raw.read(self.PIECE_MAX))
            if not self._pending:
                if self._in_frame:
                    raise EOFError("compressed file ended before the end of a zstd frame")
                return False
        piece, self._pending = self._pending[:self._piece], self._pending[self._piece:]
        grew = 0
        while piece:
            self._in_frame = True
            data = self._d.decompress(piece)
            if data:
                self._out.append(data)
                grew += len(data)
            if not self._d.eof:
                break
            self._in_frame = False
            piece = self._d.unused_data
            self._d = self._new()
        if grew < self.OUT_PER_PIECE // 4:
            self._piece = min(self._piece * 2, self.PIECE_MAX)
        elif grew > self.OUT_PER_PIECE:
            self._piece = max(self._piece // 4, self.PIECE_MIN)
        return True

    def close(self) -> None:
        self._raw.close()
        super().close()


class Upto:
    """The first ``size`` bytes of a stream, for :func:`iter_chunks`: a log still being written
    to is read as it was when opened. Closing it closes the stream only when it ``owns`` it."""

    def __init__(self, stream, size: int, owns: bool = True):
        self.stream, self.left, self.owns = stream, size, owns

    def readinto(self, b) -> int:
        n = min(len(b), self.left)
        if n <= 0:
            return 0
        with memoryview(b) as mv:
            got = self.stream.readinto(mv[:n]) or 0
        self.left -= got
        return got

    def close(self) -> None:
        if self.owns:
            self.stream.close()


def cr_only(data: bytes) -> bool:
    """Old Mac / some serial captures end lines with a lone CR: read those as newlines."""
    head = data[:1 << 20]
    return b"\r" in head and b"\n" not in head


def quoted_printable(data: bytes) -> bool:
    """A log saved from a mail as sent: quoted-printable (``=3D`` for ``=``, soft line breaks
    ``=`` at line ends). Kernel text has neither in numbers."""
    head = data[:1 << 20]
    return b"=3D" in head and head.count(b"=\n") + head.count(b"=\r\n") >= 2


_JSON_BYTES = re.compile(rb'"MESSAGE"\s*:\s*\[([0-9,\s]*)\]')
_JSON_BYTES_AT = re.compile(rb'"MESSAGE"\s*:\s*\[')


def journal_json(head: bytes) -> bool:
    """``journalctl -o json`` (or json-seq): journald writes a message that is not valid UTF-8,
    or holds control characters (a coloured line), as an array of byte values."""
    return head.lstrip(b"\x1e \t\r\n")[:1] == b"{" and b'"MESSAGE"' in head


def json_strings(buf) -> bytes:
    """Journal JSON with each byte-array MESSAGE written as a string, so that its words can be
    found like any other's (one line stays one line: a newline is escaped). An array that is
    not one of byte values is left as it is."""
    if not _JSON_BYTES_AT.search(buf):
        return buf
    return _JSON_BYTES.sub(_as_string, buf)


def _as_string(m) -> bytes:
    toks = m.group(1).split(b",")
    if toks and not toks[-1].strip():
        toks.pop()  # "[]" or a trailing comma
    vals = []
    for t in toks:
        t = t.strip()
        if not t.isdigit() or len(t) > 3:
            return m.group(0)
        vals.append(int(t) & 0xFF)
    return b'"MESSAGE": ' + json.dumps(bytes(vals).decode("utf-8", "replace")).encode()


class PrettyJson:
    """``journalctl -o json-pretty``: each entry an object over many lines, closed by ``}`` at
    the start of a line. Each is written as one line of compact JSON followed by as many empty
    lines as it had more, so that line numbers stay the file's; an entry cut across chunks is
    held for the next."""

    def __init__(self):
        self.held: list[bytes] = []

    @staticmethod
    def looks_like(head: bytes) -> bool:
        h = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        return h[:1] == b"{" and h[1:].lstrip(b" \t\r")[:1] == b"\n" and b'"MESSAGE"' in head

    def __call__(self, buf, final: bool = False) -> bytes:
        out = []
        lines = bytes(buf).split(b"\n")
        tail = lines.pop()  # after the last newline: nothing, or a last line without one
        for ln in lines:
            self.held.append(ln)
            if ln.rstrip(b"\r") == b"}":
                out.append(self._entry())
        if tail:
            self.held.append(tail)
        if final and self.held:
            out.append(self._entry(newline=False))
        return b"".join(out)

    def _entry(self, newline: bool = True) -> bytes:
        n = len(self.held)
        text = b"\n".join(self.held)
        self.held = []
        try:
            obj = json.loads(text)
            if isinstance(obj, dict) and isinstance(obj.get("MESSAGE"), list):
                obj["MESSAGE"] = bytes(int(b) & 0xFF for b in obj["MESSAGE"]).decode(
                    "utf-8", "replace")
            line = json.dumps(obj).encode()
        except (ValueError, TypeError, OverflowError, RecursionError):
            return text + (b"\n" if newline else b"")  # not an entry: its lines as they were
        return line + b"\n" * (n - 1) + (b"\n" if newline else b"")


def _js(js, buf, final: bool = False) -> bytes:
    return js(buf, final) if isinstance(js, PrettyJson) else json_strings(buf)


def json_rewrite(head: bytes, stream=None) -> bool:
    """Whether journal JSON must be rewritten to be searched: pretty-printed, or a byte-array
    MESSAGE anywhere in it (a plain file is looked through once; a stream cannot be, so it is
    rewritten on the chance). Plain journal JSON keeps the fast paths."""
    if not journal_json(head):
        return False
    if PrettyJson.looks_like(head) or _JSON_BYTES_AT.search(head):
        return True
    raw = getattr(stream, "raw", None)
    if not isinstance(raw, io.FileIO):
        return True
    fd, off, step = raw.fileno(), 0, 16 << 20
    while True:
        block = os.pread(fd, step, off)
        if _JSON_BYTES_AT.search(block):
            return True
        if len(block) < step:
            return False
        off += step - 64  # a match across the cut is seen in the next block


def rewritten(head: bytes, stream=None) -> bool:
    """Whether :func:`iter_chunks` gives other bytes than the file's (a byte offset in the
    file is then not one in what is parsed)."""
    return cr_only(head) or quoted_printable(head) or json_rewrite(head, stream)


@contextlib.contextmanager
def decompress_errors(path):
    """Decompression errors (a truncated gzip, a corrupt xz, zstd's own) as a ParseError naming
    the file."""
    try:
        yield
    except ParseError:
        raise
    except (EOFError, OSError, lzma.LZMAError, ValueError) as err:
        raise ParseError(str(path), 0, f"cannot decompress: {err}") from err
    except Exception as err:
        if type(err).__name__ == "ZstdError":
            raise ParseError(str(path), 0, f"cannot decompress: {err}") from err
        raise


def head_of(stream, path, n: int = 64) -> bytes:
    """The first bytes of an opened stream, left in it to be read again."""
    with decompress_errors(path):
        return stream.peek(n)[:n] if hasattr(stream, "peek") else b""


def iter_chunks(path: str | Path, chunk: int = CHUNK, stream=None,
                reuse: bool = False) -> Iterator[bytes | bytearray]:
    """Chunks that each end at a line boundary (the last one may not), from ``path`` or from a
    ``stream`` already opened on it (closed at the end). Decompression errors become a
    ParseError naming the file; so does a line too long to be a log's, or binary data.

    ``reuse``: every chunk is the same buffer, filled anew in place (a fresh buffer per chunk
    costs the kernel zeroing and mapping it, more than the reading): a chunk is good only
    until the next is asked for, and views of it must be gone by then."""
    stream = stream if stream is not None else open_binary(path)
    rest = b""
    cr = qp = js = None
    skipped = 0  # bytes of the current over-long line that were dropped
    raw = bytearray(0)
    try:
        while True:
            r = len(rest)
            if not reuse:
                raw = bytearray(r + chunk)
            else:
                try:  # sized in place: what was cut off the last chunk, a few bytes
                    raw.append(0)  # any resize fails while a view of the last chunk is held
                    if len(raw) > r + chunk:
                        del raw[r + chunk:]
                    else:
                        raw.extend(bytes(r + chunk - len(raw)))
                except BufferError:
                    raw = bytearray(r + chunk)
            with memoryview(raw) as mv:
                mv[:r] = rest
                with decompress_errors(path):
                    n = stream.readinto(mv[r:r + chunk]) or 0
                total = r + n
                if cr is None and n:
                    head = bytes(mv[:min(total, 1 << 20)])  # all that either looks at
                    cr = cr_only(head)
                    qp = quoted_printable(head)
                    js = json_rewrite(head, stream)
                    if js and PrettyJson.looks_like(head):
                        js = PrettyJson()
                if n and not cr and not qp and not js:
                    cut = raw.rfind(b"\n", 0, total)
                    if cut >= 0:
                        rest = bytes(mv[cut + 1:total])
                buf = (None if n and not cr and not qp and not js and cut >= 0
                       else bytearray(mv[:total]))
            if n == 0:
                if rest:
                    yield (binascii.a2b_qp(rest) if qp else _js(js, rest, True) if js
                           else rest)
                elif isinstance(js, PrettyJson) and js.held:
                    yield js(b"", final=True)
                return
            if buf is None:
                skipped = 0
                del raw[cut + 1:]
                yield raw
                if len(rest) > MAX_LINE:
                    skipped += len(rest) - MAX_LINE
                    _check_line(path, rest[:MAX_LINE], skipped)
                    rest = rest[:MAX_LINE]
                continue
            if cr:
                buf = buf.replace(b"\r", b"\n")
            cut = buf.rfind(b"\n")
            if cut < 0:
                if len(buf) > MAX_LINE:
                    # A giant line: keep its head, drop the middle, so memory stays bounded.
                    skipped += len(buf) - MAX_LINE
                    _check_line(path, buf[:MAX_LINE], skipped)
                    rest = bytes(buf[:MAX_LINE])
                    continue
                rest = bytes(buf)
                continue
            if qp:
                # never cut at a soft line break: its two halves are one line
                while cut > 0 and (buf[cut - 1:cut + 1] == b"=\n" or buf[cut - 2:cut + 1] == b"=\r\n"):
                    cut = buf.rfind(b"\n", 0, cut)
                if cut < 0:
                    rest = bytes(buf)
                    continue
            skipped = 0
            rest = bytes(buf[cut + 1:])
            del buf[cut + 1:]
            yield binascii.a2b_qp(buf) if qp else _js(js, buf) if js else buf
            if len(rest) > MAX_LINE:
                skipped += len(rest) - MAX_LINE
                _check_line(path, rest[:MAX_LINE], skipped)
                rest = rest[:MAX_LINE]
    finally:
        if str(path) != "-":
            stream.close()


def decodes_ahead(stream) -> bool:
    """Whether :func:`prefetched` pays for ``stream``: zstd's decoder works outside the GIL in
    large steps (1 GiB: 1.13-1.23x faster); gzip's reader runs Python between small zlib calls
    and came out 3-9 % slower on the same file, so it is read in line."""
    return isinstance(stream, _ZstdFrames)


def prefetched(chunks: Iterator, depth: int = 1) -> Iterator:
    """``chunks`` produced on a thread of their own, up to ``depth`` ahead: a compressed log is
    decoded while the chunk before it is scanned (zstandard lets go of the GIL while it
    decodes, the compiled scan while it scans; a deeper queue was no faster and held 16 MiB
    more). The chunks must be fresh buffers (not ``reuse``). An error of the producer is raised
    here, where its chunk would have come; a consumer that stops early stops the producer at
    its next chunk."""
    import queue
    import threading
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def produce():
        try:
            for c in chunks:
                while not stop.is_set():
                    try:
                        q.put((c, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((end, None))
        except BaseException as e:  # handed to the consumer, raised there
            q.put((end, e))
        finally:
            if stop.is_set():
                chunks.close()

    t = threading.Thread(target=produce, name="mmtriage-decode", daemon=True)
    t.start()
    try:
        while True:
            c, err = q.get()
            if c is end:
                if err is not None:
                    raise err
                return
            yield c
    finally:
        stop.set()
        while t.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                pass
            t.join(0.05)


class LineError(ParseError):
    """A line that is not a log's. Raised with line 0: the reader that counts lines (it is the
    next line after the chunks it has taken) puts the number in with :meth:`at`."""

    def at(self, line: int) -> ParseError:
        return ParseError(self.path, line, self.reason)


def _check_line(path, head: bytes, skipped: int) -> None:
    """An over-long line is cut and read, unless it is binary (``/dev/zero``) or endless."""
    if head.count(b"\0") > len(head) // 4:
        raise LineError(str(path), 0, "binary data, not a text log (a line of NUL bytes "
                                      f"over {MAX_LINE >> 20} MiB)")
    if skipped + len(head) > MAX_LINE_TOTAL:
        raise LineError(str(path), 0, f"a line longer than {MAX_LINE_TOTAL >> 20} MiB: "
                                      "not a text log")
