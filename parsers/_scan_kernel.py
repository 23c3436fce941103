"""The compiled part of :mod:`parsers.scan`, in a module of its own so that numba is imported
only when a large log is scanned."""
import numba
import numpy as np

from parsers.scan import COUNT_SPAN, STRIDE


@numba.njit(cache=True, nogil=True)
def count_lines(buf, a, b):
    """Newlines in ``buf[a:b]``; 255 bytes at a time into a byte-wide sum (vector code)."""
    c = 0
    q = a
    while q + 255 <= b:
        acc = np.uint8(0)
        for r in range(q, q + 255):
            acc += np.uint8(buf[r] == 10)
        c += acc
        q += 255
    for r in range(q, b):
        c += buf[r] == 10
    return c


@numba.njit(cache=True, nogil=True)
def word_at(buf, i, m, pats, lens, offs):
    """The start of a trigger word one of whose windows (bits ``m``) is at ``i``, or -1."""
    n = buf.shape[0]
    for j in range(pats.shape[0]):
        mj = (m >> (4 * j)) & 15
        if mj == 0:
            continue
        for k in range(4):
            if mj & (1 << k):
                s = i - offs[j] - k
                if s >= 0 and s + lens[j] <= n:
                    same = True
                    for q in range(lens[j]):
                        if buf[s + q] != pats[j, q]:
                            same = False
                            break
                    if same:
                        return s
    return -1


@numba.njit(cache=True, nogil=True)
def candidates(buf, start, first, second, pats, lens, offs, out_back, out_at, out_line):
    """From byte ``start``: for each line holding a trigger word, the start of the line
    before it (a wrapped head may be there), its own start, and the newlines before the
    former. Returns (lines counted, candidates, where it stopped)."""
    n = buf.shape[0]
    line = count_lines(buf, 0, start)   # newlines before ``counted``
    counted = start
    k = 0
    last = -1
    i = start
    while i + 1 < n:
        stop = min(i + COUNT_SPAN, n - 1)
        while i < stop:
            m = first[buf[i] | (buf[i + 1] << 8)]
            if m != 0:
                if i + 3 < n:
                    m &= second[buf[i + 2] | (buf[i + 3] << 8)]
                if m != 0:
                    s = word_at(buf, i, m, pats, lens, offs)
                    if s >= 0:
                        ls = s
                        while ls > 0 and buf[ls - 1] != 10:
                            ls -= 1
                        if ls != last:
                            if ls > counted:
                                line += count_lines(buf, counted, ls)
                                counted = ls
                            if k == out_back.shape[0]:
                                return line, k, ls
                            if line > 0:
                                ps = ls - 1
                                while ps > 0 and buf[ps - 1] != 10:
                                    ps -= 1
                                out_back[k] = ps
                                out_line[k] = line - 1
                            else:
                                out_back[k] = ls
                                out_line[k] = line
                            out_at[k] = ls
                            last = ls
                            k += 1
            i += STRIDE
        if i > counted:
            line += count_lines(buf, counted, min(i, n))
            counted = min(i, n)
    return line + count_lines(buf, counted, n), k, n
