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
