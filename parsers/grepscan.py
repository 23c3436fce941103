"""The trigger lines of a large plain log found by GNU grep, in other processes beside the parser.

``grep -a -b -n -o -E 'word|word|…'`` over the file gives each trigger word's line number and byte
offset; the parser reads the file in blocks as before and jumps to those lines. Against the
compiled scan (:mod:`parsers.scan`) this saves numba's import, and the search runs in other
processes while Python starts, reads and parses (docs/benchmarks.md, "Parsing").

With two cores (and ``os.splice``) the file is cut in two at a line boundary, one grep per part.
The first part is fed to its grep through a pipe (grep cannot be told where to stop reading a
file), followed by a line holding only a trigger word, so that the last line number grep gives
is that part's line count: the next part's line numbers follow from it, and no one counts lines.
The last part's grep reads the file itself, from the cut on, through a descriptor of its own on
the file already open (not its path: the log may have been rotated or deleted since); then, from
a pipe, a sentinel line, so that its output too ends with a known line.

grep is trusted only as far as it can be checked. Once a process, before its first use, it must
give exactly the expected output on a small known input (:func:`grep`); otherwise it is not used
in that process. On each file, every word the parser goes to must be in the block at the offset
grep gives, each part's output must end with its closing or sentinel line, grep must exit with
status 0 (those lines always match) and must have read at least the bytes the parser read. The
parser reads the file only up to its size when opened, and grep's hits past that are dropped:
a log being written to is parsed as it was. Anything else (grep failing, the file shorter than
when opened, an over-long line cut by the reader) raises :class:`Lost`, and the file is parsed
again from the start with the compiled scan.

grep's output is kept as text, a block's worth at a time, and searched by bisection for the next
hit at or after where the parser is: a failure-dense log has millions of hits, and the parser
jumps over most of them in stretches it reads whole. Between trigger lines the line number is
left unknown; it is counted only past the last one."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import queue
import re
import shutil
import stat
import subprocess
import threading

from parsers.logio import LineError

PARTS = 2              # greps over one file, at most one per core
SPLIT_MIN = 64 << 20   # a smaller file is one part: a second process would not pay for itself
PIPE_SPEED = 0.75      # grep reads a pipe this much as fast as a file: the first part is smaller
CLOSING = b"Mem-"      # a trigger word, alone on the line after a fed part
SENTINEL = b"1:0:" + CLOSING  # grep's output line for CLOSING alone, read after the last part
AHEAD = 128            # reads of grep's output (64 KiB each) taken ahead of the parser
TAIL_NUMPY = 64 << 20  # past this much tail to count, numpy counts newlines (its import pays)
SELF_TEST_TIMEOUT = 30  # seconds
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


class Lost(Exception):
    """grep's candidates cannot be trusted for this file: parse it again another way."""


_GREP: list = []  # [grep's path, or None: missing or failed its self-test]; once a process


def grep(words) -> str | None:
    """grep's path, once it has passed its self-test on ``words`` in this process."""
    if not _GREP:
        exe = shutil.which("grep")
        _GREP.append(exe if exe is not None and _self_test(exe, words) else None)
    return _GREP[0]


def _argv(exe: str, words) -> list:
    # an ERE of literal words: letters, digits, spaces and '-' need no escaping
    assert all(w.replace(b" ", b"").replace(b"-", b"").isalnum() for w in words)
    assert CLOSING in words
    # -h: the file's part and the sentinel after it are one output, not named by file
    return [exe, "-a", "-b", "-n", "-o", "-h", "--color=never", "-E", "-e",
            b"|".join(sorted(words))]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREP_")}
    env["LC_ALL"] = "C"  # bytes, not characters: offsets and matches as the parser sees them
    return env


def _start(cmd: list, env: dict, stdin: int, after: bytes | None = None) -> subprocess.Popen:
    """grep reading ``stdin`` (a descriptor), then ``after`` (a pipe's worth at most) from a
    pipe of its own."""
    if after is None:
        return subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=env)
    r, w = os.pipe()
    try:
        try:
            os.write(w, after)  # whole: a new pipe holds 64 KiB
        finally:
            os.close(w)
        return subprocess.Popen(cmd + ["-", f"/proc/self/fd/{r}"], stdin=stdin, pass_fds=(r,),
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    finally:
        os.close(r)


def _expected(data: bytes, words) -> bytes:
    """What ``grep -b -n -o`` prints for ``data``: no word overlaps another in the test input,
    and the longest is tried first, as POSIX's leftmost-longest does."""
    alt = re.compile(b"|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)))
    return b"".join(b"%d:%d:%s\n" % (data.count(b"\n", 0, m.start()) + 1, m.start(), m.group())
                    for m in alt.finditer(data))


def _self_test(exe: str, words) -> bool:
    """Whether grep, run as a part runs it, gives exactly the expected output on a small known
    input: every word, alone, inside a longer word and in capitals (not a hit), CRLF line ends,
    a NUL and a byte that is not UTF-8 beside words, two words on a line, a last line without
    its newline; read from a file past an offset (the words before it are not to be found),
    then from a pipe."""
    words = sorted(words)
    skipped = b" ".join(words) + b"\n"
    body = (CLOSING + b"\r\n" + b"".join(b"\x00\xff %s\xfe\r\n" % w for w in words)
            + b"".join(b"x%sx %s\n" % (w, w.upper()) for w in words)
            + b"%s %s" % (words[-1], words[0]))
    piped = b"".join(b"\xff%s\x00\n" % w for w in words) + CLOSING + b"\n"
    want = _expected(body, words) + _expected(piped, words)
    import tempfile  # here: its import (random's) is not paid by every parse
    try:
        with tempfile.TemporaryFile() as f:
            f.write(skipped + body)
            f.flush()
            fd = os.open(f"/proc/self/fd/{f.fileno()}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.lseek(fd, len(skipped), os.SEEK_SET)
                proc = _start(_argv(exe, set(words)), _env(), fd, piped)
            finally:
                os.close(fd)
            with proc:
                try:
                    out = proc.communicate(timeout=SELF_TEST_TIMEOUT)[0]
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    return False
    except OSError:
        return False
    return proc.returncode == 0 and out == want


def _garbled():
    raise Lost("grep wrote something else than line:offset:word")


def _hit(text: bytes, i: int) -> tuple[int, int, int]:
    """(line number, byte offset, end of the output line) of the hit whose output line starts
    at ``i``; ValueError when it is not ``line:offset:word``."""
    a = text.index(b":", i)
    b = text.index(b":", a + 1)
    return int(text[i:a]), int(text[a + 1:b]), text.index(b"\n", b)


def _first_from(text: bytes, lo: int, target: int) -> int:
    """Where the first output line at or after ``lo`` (a line start) with an offset at or past
    ``target`` starts; ``len(text)`` when there is none. Offsets ascend."""
    hi = len(text)
    while lo < hi:
        s = text.rfind(b"\n", lo, (lo + hi) // 2) + 1 or lo
        _, off, e = _hit(text, s)
        if off < target:
            lo = e + 1
        else:
            hi = s
    return lo


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class _Part:
    """One grep over bytes ``[start, stop)`` of the file, fed to it through a pipe and followed by
    the closing line; or (``stop`` None) over the file from ``start`` to its end, read by grep
    from ``fd`` (whose position is then where grep stopped) and followed by the sentinel. Its
    offsets and line numbers count from ``start``. Hits at or past file offset ``limit`` are not
    the parser's (for the last part: the file grew after it was opened) and are dropped."""

    def __init__(self, cmd: list, env: dict, fd: int, start: int, stop: int | None, limit: int):
        self.start, self.stop, self.limit = start, stop, limit
        self.lines = None    # newlines in the part, once its closing line is read (fed parts)
        self.base = 0 if start == 0 else None  # newlines before the part, once known
        self.proc = self.feeder = self.pump = None
        self._w = None       # the feeding pipe's end, closed once by whoever closes it first
        self._w_lock = threading.Lock()
        # grep's output read ahead by a thread, so that grep does not wait on a full pipe while
        # the parser works through a block; bounded, so memory does not grow with the file
        self.ahead: queue.Queue = queue.Queue(AHEAD)
        self.pieces: list = []  # whole output lines not yet given to a block
        self.partial = b""      # an output line's start, the rest not read yet
        self.last_off = -1      # file offset of the last whole line read
        self.eof = False
        self.ended = False      # the closing or sentinel line, grep's last, is read
        self.seen = False       # a whole output line is read
        self.at_zero = False    # the part starts with CLOSING: a real hit looks like the sentinel
        try:
            if stop is None:
                os.lseek(fd, start, os.SEEK_SET)
                self.at_zero = os.pread(fd, len(CLOSING), start) == CLOSING
                self.proc = _start(cmd, env, fd, CLOSING + b"\n")
            else:
                r, self._w = os.pipe()
                try:
                    with contextlib.suppress(OSError):
                        fcntl.fcntl(self._w, F_SETPIPE_SZ, 1 << 20)  # fewer wake-ups
                    self.proc = _start(cmd, env, r)
                finally:
                    os.close(r)
                self.feeder = threading.Thread(target=self._feed, args=(fd, self._w),
                                               daemon=True)
                self.feeder.start()
            self.pump = threading.Thread(target=self._pump, daemon=True)
            self.pump.start()
        except BaseException:
            self.close()  # not left running, nor waiting on a pipe no one feeds
            raise

    def _close_w(self) -> None:
        with self._w_lock:
            w, self._w = self._w, None
        if w is not None:
            os.close(w)

    def _feed(self, fd: int, w: int) -> None:
        """Bytes ``[start, stop)`` of the file into grep's pipe (spliced: no copy through
        Python), then the closing line. A short file, a dead grep or any other failure ends it
        early, and grep's output then lacks the closing line."""
        off, stop = self.start, self.stop
        try:
            while off < stop:
                n = min(stop - off, 1 << 20)
                try:
                    n = os.splice(fd, w, n, offset_src=off)
                except OSError as e:
                    if e.errno not in (errno.EINVAL, errno.ENOSYS):
                        raise
                    data = os.pread(fd, n, off)  # a file system that cannot splice
                    n = len(data)
                    with memoryview(data) as mv:
                        done = 0
                        while done < n:
                            done += os.write(w, mv[done:])
                if n == 0:
                    return
                off += n
            os.write(w, CLOSING + b"\n")
        except Exception:
            pass  # said by the missing closing line, not by a thread's traceback
        finally:
            self._close_w()

    def _pump(self) -> None:
        fd = self.proc.stdout.fileno()
        while True:
            try:
                data = os.read(fd, 1 << 16)
            except OSError:
                data = b""  # as an end: grep's exit status says what went wrong
            self.ahead.put(data)
            if not data:
                return

    def close(self) -> None:
        """grep stopped, the threads ended, the descriptors closed; also of a part whose start
        failed half-way."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
        if self.pump is not None:
            while self.pump.is_alive():  # it ends at grep's end of output, once it can put that
                with contextlib.suppress(queue.Empty):
                    self.ahead.get_nowait()
                self.pump.join(0.01)
        if self.feeder is not None and self.feeder.is_alive():
            self.feeder.join()  # grep is gone: its pipe takes nothing more
        self._close_w()  # a feeder that never ran did not
        if self.proc is not None:
            self.proc.stdout.close()

    def read(self) -> None:
        data = self.ahead.get()
        if not data:
            self.eof = True
            status = self.proc.wait()
            # its last line always matches: status 0 (not 1, "nothing found")
            if self.partial or status != 0 or not self.ended:
                raise Lost(f"grep's output ended early (status {status})")
            return
        if self.ended:
            raise Lost("grep wrote past its last line")
        data = self.partial + data
        cut = data.rfind(b"\n") + 1
        if not cut:
            self.partial = data
            return
        self.partial = data[cut:]
        first, self.seen = not self.seen, True
        try:
            s = data.rfind(b"\n", 0, cut - 1) + 1  # the last whole line
            line, off, _ = _hit(data, s)
            if self.stop is not None and off >= self.stop - self.start:
                self._closing(data[s:cut - 1], line, off)
            elif (self.stop is None and data[s:cut - 1] == SENTINEL
                  and not (first and s == 0 and self.at_zero)):
                self.ended = True  # a real hit at offset 0 can only be the part's first line
            if self.ended:
                cut, self.last_off = s, self.limit
                if not cut:
                    return
                off = _hit(data, data.rfind(b"\n", 0, cut - 1) + 1)[1]
            if self.start + off >= self.limit:
                cut = _first_from(data[:cut], 0, self.limit - self.start)
                self.last_off = self.limit
            elif not self.ended:
                self.last_off = self.start + off
        except ValueError:
            _garbled()
        if cut:
            self.pieces.append(data[:cut])

    def _closing(self, text: bytes, line: int, off: int) -> None:
        """A fed part's output ends with its closing line: the part's line count."""
        if off != self.stop - self.start or text.rpartition(b":")[2] != CLOSING:
            raise Lost("a part of the file was not read whole")
        self.lines = line - 1
        self.ended = True

    def take(self, end: int) -> bytes:
        """grep's output for the hits before file offset ``end``."""
        while not self.eof and self.last_off < end:
            self.read()
        text = b"".join(self.pieces)
        try:
            k = _first_from(text, 0, end - self.start)
        except ValueError:
            _garbled()
        self.pieces = [text[k:]] if k < len(text) else []
        return text[:k]

    def more(self) -> bool:
        """Whether grep finds anything more in this part before its limit (waits for it to
        say: for its end when there is nothing)."""
        while not self.pieces and not self.eof:
            self.read()
        return bool(self.pieces)


class GrepHits:
    """greps running over the plain file open in ``stream``, at most its first ``size`` bytes
    (the file's size now when None); ``block(chunk, line_no)`` for each block the parser reads,
    in order. A context manager: grep is stopped when the parse ends, however it ends."""

    def __init__(self, stream, words, size: int | None = None):
        self.words = {bytes(w) for w in words}
        exe = grep(self.words)
        if exe is None:
            raise Lost("no grep")
        cmd, env = _argv(exe, self.words), _env()
        try:
            # the file open in stream, not its path (renamed or deleted since), with a position
            # of its own for grep to read from
            self.fd = os.open(f"/proc/self/fd/{stream.fileno()}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as err:
            raise Lost(f"the open file cannot be opened again: {err}") from err
        self.parts: list[_Part] = []
        try:
            a, b = os.fstat(self.fd), os.fstat(stream.fileno())
            if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) or not stat.S_ISREG(a.st_mode):
                raise Lost("not the same regular file")
            self.size = a.st_size if size is None else size
            cuts = self._cuts(self.size)
            for i, start in enumerate(cuts):
                stop = cuts[i + 1] if i + 1 < len(cuts) else None
                self.parts.append(_Part(cmd, env, self.fd, start, stop,
                                        self.size if stop is None else stop))
        except OSError as err:
            self.__exit__()
            raise Lost(str(err)) from err
        except BaseException:
            self.__exit__()
            raise
        self.offset = 0  # file offset of the next block
        self.tail = 0    # bytes counted past the last trigger line

    def _cuts(self, size: int) -> list[int]:
        """Where the parts start: each just after a newline, the fed ones smaller. A fed part
        is spliced: where os.splice is missing (not Linux), one part."""
        k = min(PARTS, _cores())
        if k < 2 or size < SPLIT_MIN or not hasattr(os, "splice"):
            return [0]
        share = 1 / (k - 1 + 1 / PIPE_SPEED)  # of the file, per fed part
        cuts = [0]
        for i in range(1, k):
            at = int(size * share * i)
            nl = os.pread(self.fd, 1 << 16, at).find(b"\n")
            if nl < 0 or at + nl + 1 >= size:
                break  # no line ends near: fewer parts
            cuts.append(at + nl + 1)
        return cuts

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            for p in self.parts:
                p.close()
        finally:
            os.close(self.fd)
        return False

    def guard(self, chunks):
        """The reader's blocks; a line it cannot read (binary, too long) is reported by the
        compiled scan's parse, which counts lines to say where."""
        try:
            yield from chunks
        except LineError:
            raise Lost("a line the reader refused") from None

    def block(self, chunk, line_no: int) -> "_Block":
        """The hits in ``chunk``, the next block of the file (grep's output is read up to the
        first hit past it); ``line_no``: the parser's line number at its start."""
        start = self.offset
        end = self.offset = start + len(chunk)
        segs = []
        for j, p in enumerate(self.parts):
            if p.start >= end:
                break
            if p.stop is not None and p.stop <= start and p.eof and not p.pieces:
                continue  # behind the parser
            text = p.take(end)
            if p.base is None:  # the part before it is read whole by now: it ends before end
                prev = self.parts[j - 1]
                p.base = prev.base + prev.lines
            if text:
                segs.append((p, text))
        return _Block(self, chunk, start, segs, line_no)

    def more_after(self, end: int) -> bool:
        """Whether any trigger line lies past file offset ``end`` (all before it are taken)."""
        return any(p.more() for p in self.parts if p.stop is None or p.stop > end)

    def finish(self) -> None:
        """After the last block: the parser read the file as it was opened, grep found nothing
        more in it and read all of it."""
        for p in self.parts:
            if p.more():  # otherwise read to its end: status and last line checked
                raise Lost("grep found lines past the end of what the parser read")
        if self.offset != self.size:
            raise Lost("the file is shorter than when it was opened")
        if os.lseek(self.fd, 0, os.SEEK_CUR) < self.size:  # the last part's grep read it
            raise Lost("grep read less of the file than the parser")

    def count(self, chunk, a: int) -> int:
        """Newlines in ``chunk[a:]``: past the last trigger line, every line is counted."""
        self.tail += len(chunk) - a
        if self.tail <= TAIL_NUMPY:
            return chunk.count(b"\n", a)
        import numpy as np
        with memoryview(chunk) as mv:
            eq = np.frombuffer(mv[a:], np.uint8) == 10
            return int(np.count_nonzero(eq))


class _Block:
    """The trigger lines of one block, with the interface of :class:`parsers.scan.Candidates`:
    ``next(pos)``, then ``end(...)`` for the line number at the block's end."""

    def __init__(self, hits: GrepHits, chunk, start: int, segs: list, base: int):
        self.g, self.chunk, self.start, self.segs, self.base = hits, chunk, start, segs, base
        self.s = 0        # segments (one part's hits each) before this one are behind the parser
        self.i = 0        # output lines of segment s before this one are behind the parser
        self.cur = None   # (at, back, before) of that hit, once placed

    def next(self, pos: int):
        """``(start, newlines before start - the block's first line number)`` of the next line
        worth reading at or after ``pos`` (from the line before it: a wrapped head may be
        there), ``(pos, None)`` when that line was read already, or None."""
        while True:
            if self.cur is None:
                if self.s == len(self.segs):
                    return None
                part, text = self.segs[self.s]
                try:
                    # a word before pos is on a line read already (pos is a line's start)
                    i = self.i = _first_from(text, self.i, self.start + pos - part.start)
                    if i == len(text):
                        self.s, self.i = self.s + 1, 0
                        continue
                    self.cur = self._place(part, text, i)
                except ValueError:
                    _garbled()
            at, back, before = self.cur
            if at < pos:
                self.i = self.segs[self.s][1].index(b"\n", self.i) + 1
                self.cur = None
                continue
            if back >= pos:
                return back, before - self.base
            return pos, None

    def _place(self, part: _Part, text: bytes, i: int):
        """(line start, start of the line before, newlines before the latter) of the hit
        whose output line starts at ``i``."""
        line, off, e = _hit(text, i)
        line += part.base
        word = text[text.rindex(b":", i, e) + 1:e]
        chunk = self.chunk
        m = part.start + off - self.start
        if word not in self.g.words or chunk[m:m + len(word)] != word:
            raise Lost("grep's word is not where it says")
        at = chunk.rfind(b"\n", 0, m) + 1
        if at == 0:
            return at, 0, line - 1
        return at, chunk.rfind(b"\n", 0, at - 1) + 1, line - 2

    def end(self, base: int, pos: int, line_no: int) -> int:
        """The line number at the block's end, the parser idle at ``pos`` on line ``line_no``.
        Exact when no trigger line follows (then ``line_no`` is: this block had one, or the
        one before was counted); otherwise left as it is until the next trigger line."""
        chunk = self.chunk
        if self.g.more_after(self.start + len(chunk)):
            return line_no
        return line_no + self.g.count(chunk, pos) + (chunk[-1:] != b"\n")
