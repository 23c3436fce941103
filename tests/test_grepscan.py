"""grep finding the trigger lines of a large plain log (parsers/grepscan.py) gives what the
compiled scan gives: the same records, suppressions, line numbers and line count on every real
log and on a synthesized one, whatever the block size and however many parts the file is cut
into; and whatever goes wrong with grep, the parse falls back to the compiled scan and says the
same."""
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from parsers import dmesg, grepscan, logio
from parsers.dmesg import TRIGGERS, LogParser, _scan, parse_log
from parsers.grepscan import GrepHits
from parsers.logio import iter_chunks
from tests.conftest import LAB1, PUBLIC, ROOT, SAMPLES

pytestmark = pytest.mark.skipif(grepscan.grep() is None, reason="no grep on this host")

LOGS = (sorted(PUBLIC.glob("*.txt")) + sorted(SAMPLES.glob("*/dmesg"))
        + sorted(SAMPLES.glob("*/kmsg")))


@pytest.fixture(autouse=True)
def any_size(monkeypatch):
    """Small files cut into parts too; grep looked for anew (a test may have given up on it)."""
    monkeypatch.setattr(grepscan, "SPLIT_MIN", 0)
    monkeypatch.setattr(grepscan, "_cores", lambda: 8)
    monkeypatch.setattr(grepscan, "_GREP", [])


def result(p: LogParser):
    r = p.finish()
    return r.summary(), r.events, r.suppressions


def by_grep(path, chunk):
    p = LogParser(str(path))
    with open(path, "rb") as stream, GrepHits(path, stream, TRIGGERS) as hits:
        _scan(p, hits.guard(iter_chunks(path, chunk, stream=stream)), hits=hits)
    return result(p)


def by_scan(path, chunk, indexed=True):
    p = LogParser(str(path))
    _scan(p, iter_chunks(path, chunk), indexed=indexed)
    return result(p)


@pytest.mark.parametrize("path", LOGS, ids=lambda p: f"{p.parent.name}/{p.name}")
@pytest.mark.parametrize("parts", [1, 2, 3])
@pytest.mark.parametrize("chunk", [4 << 20, 4096, 300])
def test_real_logs_same_as_the_compiled_scan(path, parts, chunk, monkeypatch):
    monkeypatch.setattr(grepscan, "PARTS", parts)
    want = by_scan(path, chunk)
    assert by_grep(path, chunk) == want
    assert by_scan(path, chunk, indexed=False) == want


ORDINARY = ["eth0: renamed from veth{n:x}", "systemd[1]: Started Session {n} of User root.",
            "EXT4-fs (nvme0n1p1): mounted filesystem with ordered data mode.",
            "usb 1-1: new high-speed USB device number {n} using xhci_hcd"]


def synthesized(path: Path, seed: int, end_newline: bool = True) -> None:
    """Ordinary lines with the real lab log's lines pasted in at random places, whole runs of
    them (records) and single lines; a trigger on the first line and near the end."""
    rng = random.Random(seed)
    real = (LAB1 / "dmesg").read_bytes().splitlines(keepends=True)
    out = [real[rng.randrange(len(real))].replace(b"\n", b"") + b" allocat\n"]
    t, size = 5.0, 0
    while size < 3 << 20:
        r = rng.random()
        if r < 0.002:
            a = rng.randrange(len(real))
            more = real[a:a + rng.randrange(1, 200)]
        elif r < 0.004:
            more = [rng.choice(real)]
        else:
            t += 0.001
            line = rng.choice(ORDINARY).format(n=rng.randrange(1 << 16))
            more = [f"[{t:12.6f}] {line}\n".encode()]
        out += more
        size += sum(map(len, more))
    out.append(b"[ 9999.000000] SLUB: Unable to allocate memory on node -1, "
               b"gfp=0x820(GFP_ATOMIC)\n")
    out += [b"[ 9999.1] eth0: renamed from veth1\n"] * rng.randrange(3000)
    data = b"".join(out)
    path.write_bytes(data if end_newline else data + b"[ 9999.2] usb 1-1: no newline")


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("parts", [1, 2, 3])
def test_synthesized_large_log(tmp_path, seed, parts, monkeypatch):
    """Blocks of 64 KiB and part cuts fall inside records, between a record's lines and the
    line before it; the file may end without a newline."""
    monkeypatch.setattr(grepscan, "PARTS", parts)
    path = tmp_path / "big.log"
    synthesized(path, seed, end_newline=seed != 1)
    with open(path, "rb") as stream, GrepHits(path, stream, TRIGGERS) as hits:
        assert len(hits.parts) == parts
    for chunk in (1 << 16, 1 << 20):
        want = by_scan(path, chunk)
        assert want[0]["slub_reports"] > 10 and want[0]["page_alloc_reports"] > 0
        assert by_grep(path, chunk) == want


def test_a_file_system_that_cannot_splice(tmp_path, monkeypatch):
    def no_splice(*a, **k):
        raise OSError(22, "Invalid argument")
    monkeypatch.setattr(os, "splice", no_splice)
    monkeypatch.setattr(grepscan, "PARTS", 3)
    path = tmp_path / "big.log"
    synthesized(path, 5)
    assert by_grep(path, 1 << 16) == by_scan(path, 1 << 16)


def test_long_tail_counted_by_numpy(tmp_path, monkeypatch):
    monkeypatch.setattr(grepscan, "TAIL_NUMPY", 0)
    path = tmp_path / "big.log"
    synthesized(path, 4)
    assert by_grep(path, 1 << 16) == by_scan(path, 1 << 16)


def test_no_trigger_at_all(tmp_path):
    path = tmp_path / "quiet.log"
    path.write_bytes(b"[    1.000000] eth0: up\n" * 100_000)
    assert by_grep(path, 1 << 16) == by_scan(path, 1 << 16)


def test_first_from():
    text = b"1:10:Mem-\n2:20:Unable\n2:27:allocat\n9:90:failure\n"
    starts = [0, 10, 22, 35, len(text)]
    for target, want in [(0, 0), (10, 0), (11, 1), (20, 1), (21, 2), (27, 2), (28, 3), (90, 3),
                         (91, 4)]:
        assert grepscan._first_from(text, 0, target) == starts[want]
    assert grepscan._first_from(text, 22, 0) == 22


# -- through parse_log: the path a large plain file takes, and its fallbacks --------------------
@pytest.fixture
def big(tmp_path, monkeypatch):
    monkeypatch.setattr(dmesg, "INDEXED_MIN", 0)
    path = tmp_path / "big.log"
    synthesized(path, 7)
    return path


def compiled(path):
    saved = grepscan._GREP[:]
    grepscan._GREP[:] = [None]
    try:
        r = parse_log(path)
    finally:
        grepscan._GREP[:] = saved
    return r.summary(), r.events, r.suppressions


def parsed(path):
    r = parse_log(path)
    return r.summary(), r.events, r.suppressions


def spy(monkeypatch):
    """Counts of the parses that ended on grep's hits and of those that fell back."""
    seen = {"grep": 0, "lost": 0}
    real = dmesg._grep_scan

    def wrapped(*a):
        ok = real(*a)
        seen["grep" if ok else "lost"] += 1
        return ok
    monkeypatch.setattr(dmesg, "_grep_scan", wrapped)
    return seen


def test_parse_log_takes_grep(big, monkeypatch):
    want = compiled(big)
    seen = spy(monkeypatch)
    assert parsed(big) == want
    assert seen == {"grep": 1, "lost": 0}


def fake_grep(tmp_path, body: str) -> str:
    exe = tmp_path / "grep"
    exe.write_text("#!/bin/sh\n" + body + "\n")
    exe.chmod(0o755)
    return str(exe)


@pytest.mark.parametrize("body,given_up", [
    ("exit 2", True),                                  # an option it does not know
    ("echo 'grep: unknown'; exit 0", True),            # not grep's output
    ("cat > /dev/null; echo '1:5:allocat'; exit 0", False),   # a word where there is none
    ("cat > /dev/null; exit 1", False),                # found nothing: the closing line missing
    ("kill -9 $$", False),
])
def test_a_failing_grep_falls_back_to_the_compiled_scan(big, tmp_path, monkeypatch, body,
                                                        given_up):
    want = compiled(big)
    monkeypatch.setattr(grepscan, "_GREP", [fake_grep(tmp_path, body)])
    monkeypatch.setattr(grepscan, "PARTS", 2)
    seen = spy(monkeypatch)
    assert parsed(big) == want
    assert seen == {"grep": 0, "lost": 1}
    assert (grepscan.grep() is None) == given_up


def test_no_grep(big, monkeypatch):
    want = compiled(big)
    monkeypatch.setattr(grepscan, "_GREP", [None])
    seen = spy(monkeypatch)
    assert parsed(big) == want
    assert seen == {"grep": 0, "lost": 1}


def test_a_line_cut_by_the_reader(big, monkeypatch):
    """The reader keeps an over-long line's head only: the blocks are no longer the file's
    bytes, so grep's offsets are not the parser's."""
    monkeypatch.setattr(logio, "MAX_LINE", 4096)
    monkeypatch.setattr(dmesg, "INDEXED_CHUNK", 1 << 16)  # the line is longer than a block
    data = big.read_bytes()
    cut = data.index(b"\n", len(data) // 3) + 1
    big.write_bytes(data[:cut] + b"x" * 100_000 + b" allocat\n" + data[cut:])
    want = compiled(big)
    seen = spy(monkeypatch)
    assert parsed(big) == want
    assert seen == {"grep": 0, "lost": 1}


def test_cr_only_is_left_to_the_compiled_scan(big, monkeypatch):
    big.write_bytes(big.read_bytes().replace(b"\n", b"\r"))
    want = compiled(big)
    seen = spy(monkeypatch)
    r = parsed(big)
    assert r == want and r[0]["slub_reports"] > 10
    assert seen == {"grep": 0, "lost": 1}


@pytest.mark.parametrize("ext", ["gz", "zst"])
def test_compressed_is_left_to_the_compiled_scan(big, monkeypatch, ext):
    """A compressed file's bytes are not the text the parser reads: grep is not run on them."""
    import gzip

    import zstandard
    data = big.read_bytes()
    comp = big.with_suffix("." + ext)
    comp.write_bytes(gzip.compress(data, 1) if ext == "gz" else zstandard.compress(data, 1))
    want = compiled(comp)

    def no_grep(*a):
        raise AssertionError("grep run on a compressed file")
    monkeypatch.setattr(dmesg, "GrepHits", no_grep)
    assert parsed(comp) == want and want[0]["slub_reports"] > 10


def test_a_broken_grep_is_not_run_again(big, tmp_path, monkeypatch):
    exe = fake_grep(tmp_path, f"echo run >> {tmp_path}/runs; exit 2")
    monkeypatch.setattr(grepscan, "_GREP", [exe])
    parsed(big)
    parsed(big)
    assert (tmp_path / "runs").read_text() == "run\n" * 2  # the two parts of the first parse


def test_no_numba_on_the_grep_path(big):
    code = ("import sys; from parsers import dmesg; dmesg.INDEXED_MIN = 0; "
            f"r = dmesg.parse_log({str(big)!r}); assert r.slub_reports > 10; "
            "print(sorted(m for m in ('numba', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True).stdout
    assert out.strip() == "[]"


def test_grep_is_stopped_when_the_parse_fails(big, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("boom")
    monkeypatch.setattr(dmesg.LogParser, "feed_line", boom)
    before = set(threading.enumerate())
    with pytest.raises(RuntimeError):
        parse_log(big)
    assert set(threading.enumerate()) <= before  # the reading threads ended
