"""Finding the lines of a large log that can start or feed a record, in one pass at memory speed.

Every trigger word of the parser is looked for at once: a table of two-byte anchors (one rare
pair of bytes per word) marks the places worth a look, where the whole word is compared, and the
same pass counts lines. Compiled by numba, used for large plain files only (the import and, on
first use, the compilation cost more than a small file takes to read)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

# numpy and numba are imported on first use: a small log never pays for them

# (trigger word, offset of its anchor pair): the pair chosen for being rare in kernel text.
ANCHORS = {b"allocat": 3, b"suppressed": 2, b"Mem-": 2, b"invoked oom-killer": 10,
           b"messages dropped": 11, b"Linux version": 0, b"Unable": 0, b"failure": 3}
MAX_CANDIDATES = 1 << 16  # per block; a block with more is scanned again from where it stopped
SPLIT_MIN = 1 << 20       # a block this large is scanned as two halves, one per thread


def _tables(words):
    import numpy as np
    assert len(words) <= 8  # one bit each in a byte-wide table (64 KiB: it stays in cache)
    table = np.zeros(1 << 16, np.uint8)
    width = max(len(w) for w in words)
    pats = np.zeros((len(words), width), np.uint8)
    lens = np.zeros(len(words), np.int64)
    anch = np.zeros(len(words), np.int64)
    for j, w in enumerate(words):
        a = ANCHORS[w]
        pats[j, :len(w)] = np.frombuffer(w, np.uint8)
        lens[j], anch[j] = len(w), a
        table[(w[a] << 8) | w[a + 1]] |= 1 << j
    return table, pats, lens, anch


_kernel = None


def _compile():
    global _kernel
    if _kernel is not None:
        return _kernel
    import numba

    @numba.njit(cache=True, nogil=True)
    def candidates(buf, start, table, pats, lens, anch, out_back, out_at, out_line):
        """From byte ``start``: for each line holding a trigger word, the start of the line
        before it (a wrapped head may be there), its own start, and the newlines before the
        former. Returns (lines counted, candidates, where it stopped)."""
        n = buf.shape[0]
        line = 0
        line_start = 0
        prev_start = 0
        k = 0
        prev = 0
        i = start
        # the line counts are from the block's start: count up to ``start`` first
        for q in range(start):
            if buf[q] == 10:
                line += 1
                prev_start = line_start
                line_start = q + 1
        while i < n:
            b = buf[i]
            m = table[(prev << 8) | b]
            if m != 0 and (k == 0 or out_at[k - 1] != line_start):
                for j in range(pats.shape[0]):
                    if m & (1 << j):
                        s = i - 1 - anch[j]
                        if s >= line_start and s + lens[j] <= n:
                            same = True
                            for q in range(lens[j]):
                                if buf[s + q] != pats[j, q]:
                                    same = False
                                    break
                            if same:
                                if k == out_back.shape[0]:
                                    return line, k, i
                                back = prev_start if line > 0 else line_start
                                out_back[k] = back
                                out_at[k] = line_start
                                out_line[k] = line - 1 if line > 0 else line
                                k += 1
                                break
            if b == 10:
                line += 1
                prev_start = line_start
                line_start = i + 1
            prev = b
            i += 1
        return line, k, n

    _kernel = candidates
    return candidates


_TABLES: dict = {}


class Candidates:
    """The trigger lines of one block, in order; ``next(pos)`` gives where to start reading.
    The block's two halves are scanned on two threads (the kernel releases the GIL)."""

    def __init__(self, block: bytes, words):
        import numpy as np
        self.block = block
        self.buf = np.frombuffer(block, np.uint8)
        key = tuple(words)
        if key not in _TABLES:
            _TABLES[key] = _tables(words)
        self.tables = _TABLES[key]
        self.k = self.count = 0
        self.total_lines, self.stop = 0, 0
        self._fill(0)

    def _fill(self, start: int) -> None:
        import numpy as np
        kernel = _compile()
        n = len(self.buf)
        mid = self.block.find(b"\n", max(start, n // 2)) + 1 if n >= SPLIT_MIN else 0
        # the first part counts lines from the block's start; the second from its own
        parts = [(self.buf[:mid], start), (self.buf[mid:], 0)] if 0 < mid < n else [(self.buf, start)]
        outs = [tuple(np.empty(MAX_CANDIDATES, np.int64) for _ in range(3)) for _ in parts]

        def scan(i):
            return kernel(parts[i][0], parts[i][1], *self.tables, *outs[i])
        if len(parts) == 1:
            results = [scan(0)]
        else:
            with ThreadPoolExecutor(2) as pool:
                results = list(pool.map(scan, range(2)))
        (l0, k0, s0) = results[0]
        backs, ats, lines = [outs[0][0][:k0]], [outs[0][1][:k0]], [outs[0][2][:k0]]
        self.stop = s0
        self.total_lines = l0
        if len(parts) == 2 and s0 >= mid:
            l1, k1, s1 = results[1]
            backs.append(outs[1][0][:k1] + mid)
            ats.append(outs[1][1][:k1] + mid)
            lines.append(outs[1][2][:k1] + l0)
            self.stop, self.total_lines = mid + s1, l0 + l1
        self.back, self.at, self.lines = (np.concatenate(x) for x in (backs, ats, lines))
        self.count = len(self.back)
        self.k = 0

    def next(self, pos: int):
        """``(start, newlines before start)`` of the next place at or after ``pos`` worth
        reading, or None when the block holds no more."""
        while True:
            while self.k < self.count and self.at[self.k] < pos:
                self.k += 1
            if self.k < self.count:
                start = max(int(self.back[self.k]), pos)
                if start == self.back[self.k]:
                    return start, int(self.lines[self.k])
                return start, None
            if self.stop >= len(self.buf):
                return None
            self._fill(max(self.stop - 1, pos))  # more candidates than room: go on from there
