"""Finding the lines of a large log that can start or feed a record, in one pass at memory speed.

Every trigger word of the parser is looked for at once. Every third byte position, the pair of
bytes there is looked up in a table of the pairs that start each word's three chosen windows
(a word of at least four bytes always has one of them at such a position), then the next pair in
a second table; only then is the whole word compared. Lines are counted 64 KiB at a time, a loop
the compiler turns into vector code, while those bytes are still in cache. Compiled by numba,
used for large files only (the import and, on first use, the compilation cost more than a small
file takes to read), and for a plain one only when grep cannot do it (:mod:`parsers.grepscan`)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

# numpy and numba are imported on first use: a small log never pays for them

STRIDE = 3
# (trigger word, offset of the first of its STRIDE windows of two bytes): the windows chosen
# for holding pairs rare in kernel text (counted on the sample logs)
ANCHORS = {b"allocat": 0, b"suppressed": 0, b"Mem-": 0, b"invoked oom-killer": 10,
           b"messages dropped": 2, b"Linux version": 2, b"Unable": 0, b"failure": 1}
MAX_CANDIDATES = 1 << 16  # per block; a block with more is scanned again from where it stopped
SPLIT_MIN = 1 << 20       # a block this large is scanned as two halves, one per thread
COUNT_SPAN = 1 << 16      # lines are counted this many bytes at a time, behind the look-ups


def _tables(words):
    """(pair table, next-pair table, words, their lengths, their window offsets). Bit
    ``4 * j + k`` of a table entry: word j's window k."""
    import numpy as np
    assert len(words) <= 8 and STRIDE <= 4  # 4 bits a word in 32
    first = np.zeros(1 << 16, np.uint32)
    second = np.zeros(1 << 16, np.uint32)
    width = max(len(w) for w in words)
    pats = np.zeros((len(words), width), np.uint8)
    lens = np.zeros(len(words), np.int64)
    offs = np.zeros(len(words), np.int64)
    for j, w in enumerate(words):
        a = ANCHORS[w]
        assert a + STRIDE + 1 <= len(w)  # every window inside the word
        pats[j, :len(w)] = np.frombuffer(w, np.uint8)
        lens[j], offs[j] = len(w), a
        for k in range(STRIDE):
            o = a + k
            bit = np.uint32(1 << (4 * j + k))
            first[w[o] | (w[o + 1] << 8)] |= bit
            if o + 4 <= len(w):
                second[w[o + 2] | (w[o + 3] << 8)] |= bit
            else:
                second |= bit  # the word ends within the next pair: no second look
    return first, second, pats, lens, offs


def _compile():
    """The compiled scan (numba's import and its cached machine code: first use only)."""
    from parsers._scan_kernel import candidates
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

    def end(self, base: int, pos: int, line_no: int) -> int:
        """The line number at the block's end, its first line being ``base`` (every line of
        the block was counted: where the parser is does not matter)."""
        return base + self.total_lines + (self.block[-1:] != b"\n")

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
