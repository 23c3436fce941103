"""The fast paths find exactly what the slow path finds on every real log: the one-pass compiled
scan of large logs and the whole-report regex for dense SLUB stretches against line-by-line
reading — the same records, suppressions, line numbers and line count, across block and thread
boundaries."""
import pytest

from parsers import scan
from parsers.dmesg import LogParser, _scan
from parsers.logio import iter_chunks
from tests.conftest import LAB1, PUBLIC

FILES = [LAB1 / "dmesg"] + sorted(PUBLIC.glob("*.txt"))


def parsed(path, indexed, chunk, fast=True):
    p = LogParser(str(path))
    _scan(p, iter_chunks(path, chunk), fast=fast, indexed=indexed)
    r = p.finish()
    return r.summary(), r.events, r.suppressions


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("chunk,split", [(4 << 20, 1 << 20), (4096, 1024), (300, 64)])
def test_indexed_scan_equals_the_trigger_scan(path, chunk, split, monkeypatch):
    monkeypatch.setattr(scan, "SPLIT_MIN", split)
    slow = parsed(path, False, chunk, fast=False)
    assert parsed(path, True, chunk) == slow
    assert parsed(path, False, chunk) == slow


def test_more_candidates_than_room(monkeypatch):
    monkeypatch.setattr(scan, "MAX_CANDIDATES", 3)
    path = LAB1 / "dmesg"
    assert parsed(path, True, 1 << 20) == parsed(path, False, 1 << 20)


def brute(block, words):
    """(back, at, newlines before back) of every line holding a word, by plain search."""
    out, starts = [], [0] + [i + 1 for i, b in enumerate(block) if b == 10]
    for n, s in enumerate(starts):
        e = block.find(b"\n", s)
        line = block[s:e if e >= 0 else len(block)]
        if s < len(block) and any(w in line for w in words):
            out.append((starts[n - 1] if n else s, s, n - 1 if n else 0))
    return out


@pytest.mark.parametrize("lead", range(7))
def test_every_word_at_every_alignment_and_at_the_ends(lead):
    """The look-ups are every third byte: each word is found whatever its position modulo three,
    first in the block, last in it with no newline after, and beside another on one line."""
    from parsers.dmesg import TRIGGERS
    filler = b"x" * lead
    for w in TRIGGERS:
        for block in (filler + w, filler + w + b"\n", b"a\n" + filler + w,
                      b"one\n" + filler + w + b" two " + w + b"\nthree\n" + filler + w[:-1] + b"\n",
                      (b"kernel: eth0 up\n" * 5 + filler + w + b" x\n") * 3):
            c = scan.Candidates(block, TRIGGERS)
            got = list(zip(c.back.tolist(), c.at.tolist(), c.lines.tolist()))
            assert got == brute(block, TRIGGERS), (w, block)
            assert c.total_lines == block.count(b"\n")
