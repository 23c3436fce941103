"""The trigger lines of a large plain log found by GNU grep, in other processes beside the parser.

``grep -a -b -n -o -E 'word|word|…'`` over the file gives each trigger word's line number and byte
offset; the parser reads the file in blocks as before and jumps to those lines. Against the
compiled scan (:mod:`parsers.scan`) this saves numba's import, and the search runs in other
processes while Python starts, reads and parses (docs/benchmarks.md, "Parsing").

With two cores the file is cut in two at a line boundary, one grep per part. The first part is
fed to its grep through a pipe (grep cannot be told where to stop reading a file), followed by a
line holding only a trigger word, so that the last line number grep gives is that part's line
count: the next part's line numbers follow from it, and no one counts lines. The last part's
grep reads the file itself, from the cut to the end.

grep is trusted only as far as it can be checked: every word the parser goes to must be in the
block at the offset grep gives, each part must end with its closing line, and grep must have read
exactly the bytes the parser read. Anything else (grep failing, the file changed, an over-long
line cut by the reader) raises :class:`Lost`, and the file is parsed again from the start with
the compiled scan.

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
import shutil
import stat
import subprocess
import threading

from parsers.logio import LineError

PARTS = 2              # greps over one file, at most one per core
SPLIT_MIN = 64 << 20   # a smaller file is one part: a second process would not pay for itself
PIPE_SPEED = 0.75      # grep reads a pipe this much as fast as a file: the first part is smaller
CLOSING = b"Mem-"      # a trigger word, alone on the line after a fed part
AHEAD = 128            # reads of grep's output (64 KiB each) taken ahead of the parser
TAIL_NUMPY = 64 << 20  # past this much tail to count, numpy counts newlines (its import pays)
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


class Lost(Exception):
    """grep's candidates cannot be trusted for this file: parse it again another way."""


_GREP: list = []  # [path or None]: looked for once a process


def grep() -> str | None:
    if not _GREP:
        _GREP.append(shutil.which("grep"))
    return _GREP[0]


def _give_up_grep() -> None:
    """grep ran but does not do what is asked of it (not GNU grep, say): not tried again."""
    _GREP[:] = [None]


def _garbled():
    _give_up_grep()
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
    """One grep over bytes ``[start, stop)`` of the file (``stop`` None: to its end, read by
    grep from ``fd``, whose position is then where grep stopped). Its offsets and line numbers
    count from ``start``."""

    def __init__(self, cmd: list, env: dict, fd: int, start: int, stop: int | None):
        self.start, self.stop = start, stop
        self.lines = None    # newlines in the part, once its grep has ended (fed parts)
        self.base = 0 if start == 0 else None  # newlines before the part, once known
        self.feeder = None
        if stop is None:
            os.lseek(fd, start, os.SEEK_SET)
            self.proc = subprocess.Popen(cmd, stdin=fd, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, env=env)
        else:
            r, w = os.pipe2(os.O_CLOEXEC)
            try:
                with contextlib.suppress(OSError):
                    fcntl.fcntl(w, F_SETPIPE_SZ, 1 << 20)  # fewer wake-ups; as large as allowed
                self.proc = subprocess.Popen(cmd, stdin=r, stdout=subprocess.PIPE,
                                             stderr=subprocess.DEVNULL, env=env)
            except BaseException:
                os.close(w)
                raise
            finally:
                os.close(r)
            self.feeder = threading.Thread(target=self._feed, args=(fd, w), daemon=True)
            self.feeder.start()
        # grep's output read ahead by a thread, so that grep does not wait on a full pipe while
        # the parser works through a block; bounded, so memory does not grow with the file
        self.ahead: queue.Queue = queue.Queue(AHEAD)
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()
        self.pieces: list = []  # whole output lines not yet given to a block
        self.partial = b""      # an output line's start, the rest not read yet
        self.last_off = -1      # file offset of the last whole line read
        self.eof = False

    def _feed(self, fd: int, w: int) -> None:
        """Bytes ``[start, stop)`` of the file into grep's pipe (spliced: no copy through
        Python), then the closing line. A short file or a dead grep ends it early, and grep's
        output then lacks the closing line."""
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
        except OSError:
            pass
        finally:
            os.close(w)

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
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        while self.pump.is_alive():  # it ends at grep's end of output, once it can put that
            with contextlib.suppress(queue.Empty):
                self.ahead.get_nowait()
            self.pump.join(0.01)
        if self.feeder is not None:
            self.feeder.join()  # grep is gone: its pipe takes nothing more
        self.proc.stdout.close()

    def read(self) -> None:
        data = self.ahead.get()
        if not data:
            self.eof = True
            status = self.proc.wait()
            if self.partial or status not in (0, 1):  # 1: no line matched
                if status == 2:
                    _give_up_grep()
                raise Lost(f"grep exited with status {status}")
            if self.stop is not None:
                self._closing()
            return
        data = self.partial + data
        cut = data.rfind(b"\n") + 1
        if cut:
            self.partial = data[cut:]
            self.pieces.append(data[:cut])
            try:
                self.last_off = self.start + _hit(data, data.rfind(b"\n", 0, cut - 1) + 1)[1]
            except ValueError:
                _garbled()
        else:
            self.partial = data

    def _closing(self) -> None:
        """A fed part's output ends with its closing line: the part's line count."""
        text = b"".join(self.pieces)
        s = text.rfind(b"\n", 0, len(text) - 1) + 1
        try:
            line, off, e = _hit(text, s)
        except ValueError:
            raise Lost("a part of the file was not read whole") from None
        if off != self.stop - self.start or text[s:e].rpartition(b":")[2] != CLOSING:
            raise Lost("a part of the file was not read whole")
        self.lines = line - 1
        self.pieces = [text[:s]] if s else []

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
        """Whether grep finds anything more in this part (waits for it to say). A fed part's
        closing line, its last, is not a find."""
        while not self.eof:
            if self.pieces:
                try:
                    if self.start + _hit(self.pieces[0], 0)[1] != self.stop:
                        return True
                except ValueError:
                    _garbled()
            self.read()
        return bool(self.pieces)


class GrepHits:
    """greps running over ``path``; ``block(chunk, line_no)`` for each block the parser reads,
    in order. A context manager: grep is stopped when the parse ends, however it ends."""

    def __init__(self, path, stream, words):
        exe = grep()
        if exe is None:
            raise Lost("no grep")
        self.words = {bytes(w) for w in words}
        # an ERE of literal words: letters, digits, spaces and '-' need no escaping
        assert all(w.replace(b" ", b"").replace(b"-", b"").isalnum() for w in self.words)
        assert CLOSING in self.words
        cmd = [exe, "-a", "-b", "-n", "-o", "--color=never", "-E", "-e",
               b"|".join(sorted(self.words))]
        env = {k: v for k, v in os.environ.items() if not k.startswith("GREP_")}
        env["LC_ALL"] = "C"  # bytes, not characters: offsets and matches as the parser sees them
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.parts: list[_Part] = []
        try:
            a, b = os.fstat(self.fd), os.fstat(stream.fileno())
            if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) or not stat.S_ISREG(a.st_mode):
                raise Lost("not the same regular file")  # renamed over between the two opens
            cuts = self._cuts(a.st_size)
            for i, start in enumerate(cuts):
                stop = cuts[i + 1] if i + 1 < len(cuts) else None
                self.parts.append(_Part(cmd, env, self.fd, start, stop))
        except OSError as err:
            self.__exit__()
            raise Lost(str(err)) from err
        except BaseException:
            self.__exit__()
            raise
        self.offset = 0  # file offset of the next block
        self.tail = 0    # bytes counted past the last trigger line

    def _cuts(self, size: int) -> list[int]:
        """Where the parts start: each just after a newline, the fed ones smaller."""
        k = min(PARTS, _cores())
        if k < 2 or size < SPLIT_MIN:
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
        """After the last block: grep found nothing more and read what the parser read."""
        for p in self.parts:
            if p.more():
                raise Lost("grep found lines past the end of what the parser read")
        if os.lseek(self.fd, 0, os.SEEK_CUR) != self.offset:
            raise Lost("grep and the parser read different files")

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
