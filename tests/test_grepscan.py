"""grep finding the trigger lines of a large plain log (parsers/grepscan.py) gives what the
compiled scan gives: the same records, suppressions, line numbers and line count on every real
log and on a synthesized one, whatever the block size and however many parts the file is cut
into; and whatever goes wrong with grep, the parse falls back to the compiled scan and says the
same."""
import os
import random
import shutil
import subprocess
import sys
import threading
import types
from pathlib import Path

import pytest

from parsers import dmesg, grepscan, logio
from parsers.dmesg import TRIGGERS, LogParser, _scan, parse_log
from parsers.grepscan import GrepHits
from parsers.logio import iter_chunks
from tests.conftest import LAB1, PUBLIC, ROOT, SAMPLES

pytestmark = pytest.mark.skipif(shutil.which("grep") is None, reason="no grep on this host")

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
    with open(path, "rb") as stream, GrepHits(stream, TRIGGERS) as hits:
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
    with open(path, "rb") as stream, GrepHits(stream, TRIGGERS) as hits:
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


REAL_GREP = shutil.which("grep")


def fake_grep(tmp_path, body: str) -> str:
    exe = tmp_path / "grep"
    exe.write_text("#!/bin/sh\n" + body + "\n")
    exe.chmod(0o755)
    return str(exe)


def stdin_only_grep(tmp_path) -> str:
    """GNU grep that leaves out the operands after its options: it reads its standard input
    only, never the sentinel after it."""
    exe = tmp_path / "grep"
    exe.write_text(f"#!{sys.executable}\nimport os, sys\na = sys.argv[1:]\n"
                   "if a[-1].startswith('/proc/self/fd/'):\n    a = a[:-2]\n"
                   f"os.execv({REAL_GREP!r}, [{REAL_GREP!r}] + a)\n")
    exe.chmod(0o755)
    return str(exe)


# grep having passed its self-test: what each file's own checks catch
@pytest.mark.parametrize("parts", [1, 2])
@pytest.mark.parametrize("body", [
    "exit 2",                                          # an option it does not know
    "echo 'grep: unknown'; exit 0",                    # not grep's output
    "cat > /dev/null; echo '1:5:allocat'; exit 0",     # a word where there is none
    "cat > /dev/null; exit 1",                         # read it all, found nothing
    "kill -9 $$",
])
def test_a_failing_grep_falls_back_to_the_compiled_scan(big, tmp_path, monkeypatch, body, parts):
    want = compiled(big)
    exe = fake_grep(tmp_path, body)
    monkeypatch.setattr(grepscan, "_GREP", [exe])
    monkeypatch.setattr(grepscan, "PARTS", parts)
    seen = spy(monkeypatch)
    assert parsed(big) == want and want[0]["slub_reports"] > 10
    assert seen == {"grep": 0, "lost": 1}
    assert grepscan.grep(TRIGGERS) == exe  # one file's failure: grep is tried on the next


def test_gnu_grep_passes_the_self_test():
    assert grepscan._self_test(REAL_GREP, TRIGGERS)
    assert grepscan.grep(TRIGGERS) == REAL_GREP


@pytest.mark.parametrize("body", [
    "cat > /dev/null; exit 1",                          # read it all, found nothing
    "exit 2",
    "echo 'grep: unknown'; exit 0",
    f"exec {REAL_GREP} \"$@\" | head -n 3",              # stops short
    'shift; exec ' + f'{REAL_GREP} "$@"',                # without -a: "binary file matches"
    f'exec {REAL_GREP} -i "$@"',                         # finds more than the words
    f'exec {REAL_GREP} -w "$@"',                         # finds less
    "exec sleep 60",
])
def test_the_self_test_fails_a_grep_that_does_not_do_the_job(tmp_path, monkeypatch, body):
    monkeypatch.setattr(grepscan, "SELF_TEST_TIMEOUT", 1)
    assert not grepscan._self_test(fake_grep(tmp_path, body), TRIGGERS)
    no_child_left()  # the one that hung was killed and waited for


def test_the_self_test_fails_a_grep_that_skips_the_sentinel(tmp_path):
    assert not grepscan._self_test(stdin_only_grep(tmp_path), TRIGGERS)


def test_a_grep_failing_its_self_test_is_not_run_again(big, tmp_path, monkeypatch):
    """The reviewer's grep: reads all, prints nothing, exits 1. Found out by the self-test, once
    a process, and the parse is the compiled scan's."""
    want = compiled(big)
    exe = fake_grep(tmp_path, f"echo run >> {tmp_path}/runs; cat > /dev/null; exit 1")
    monkeypatch.setattr(grepscan.shutil, "which", lambda name: exe)
    seen = spy(monkeypatch)
    assert parsed(big) == want
    assert parsed(big) == want
    assert seen == {"grep": 0, "lost": 2}
    assert (tmp_path / "runs").read_text() == "run\n"  # the self-test only
    assert grepscan.grep(TRIGGERS) is None


def test_status_2_on_one_file_falls_back_for_that_file_only(big, tmp_path, monkeypatch):
    want = compiled(big)
    count = tmp_path / "count"
    exe = fake_grep(tmp_path, f"""n=$(cat {count} 2>/dev/null || echo 0); echo $((n + 1)) > {count}
[ "$n" = 1 ] && exit 2  # the first file, after the self-test
exec {REAL_GREP} "$@" """)
    monkeypatch.setattr(grepscan.shutil, "which", lambda name: exe)
    monkeypatch.setattr(grepscan, "PARTS", 1)
    seen = spy(monkeypatch)
    assert parsed(big) == want
    assert seen == {"grep": 0, "lost": 1}
    assert parsed(big) == want
    assert seen == {"grep": 1, "lost": 1}
    assert count.read_text() == "3\n"


@pytest.mark.parametrize("parts", [1, 2, 3])
def test_parts_that_start_with_the_closing_word(tmp_path, monkeypatch, parts):
    """'Mem-Info:' lines without a stamp: a part's first hit is then grep's output line for the
    sentinel."""
    monkeypatch.setattr(grepscan, "PARTS", parts)
    path = tmp_path / "mem.log"
    path.write_bytes(b"Mem-Info:\n" * 30000 + (LAB1 / "dmesg").read_bytes())
    with open(path, "rb") as stream, GrepHits(stream, TRIGGERS) as hits:
        assert len(hits.parts) == parts
        assert all(p.at_zero for p in hits.parts if p.stop is None)
    assert by_grep(path, 1 << 16) == by_scan(path, 1 << 16)


def test_a_grep_that_skips_the_sentinel_is_caught(big, tmp_path, monkeypatch):
    """A part whose only hit is 'Mem-' at its start: that hit is not taken for the sentinel."""
    big.write_bytes(b"Mem-Info:\n" + b"[    1.000000] eth0: up\n" * 100_000)
    want = compiled(big)
    monkeypatch.setattr(grepscan, "_GREP", [stdin_only_grep(tmp_path)])
    monkeypatch.setattr(grepscan, "PARTS", 1)
    seen = spy(monkeypatch)
    assert parsed(big) == want
    assert seen == {"grep": 0, "lost": 1}


def test_without_splice_or_pipe2_one_part(big, monkeypatch):
    """Not Linux: no part is fed through a pipe, and no AttributeError escapes."""
    monkeypatch.delattr(os, "splice", raising=False)
    monkeypatch.delattr(os, "pipe2", raising=False)
    monkeypatch.setattr(grepscan, "PARTS", 2)
    with open(big, "rb") as stream, GrepHits(stream, TRIGGERS) as hits:
        assert len(hits.parts) == 1
    want = compiled(big)
    seen = spy(monkeypatch)
    assert parsed(big) == want
    assert seen == {"grep": 1, "lost": 0}


def test_a_feeder_that_fails_prints_no_traceback(big, monkeypatch):
    def broken(*a, **k):
        raise TypeError("splice")
    hooked = []
    monkeypatch.setattr(threading, "excepthook", hooked.append)
    monkeypatch.setattr(os, "splice", broken)
    monkeypatch.setattr(grepscan, "PARTS", 2)
    want = compiled(big)
    seen = spy(monkeypatch)
    assert parsed(big) == want
    assert seen == {"grep": 0, "lost": 1}  # the closing line missing
    assert hooked == []


def before_grep(monkeypatch, action):
    """``action()`` once the file is open, before grep looks at it."""
    real = dmesg._grep_scan

    def wrapped(*a):
        action()
        return real(*a)
    monkeypatch.setattr(dmesg, "_grep_scan", wrapped)


def once_grep_runs(monkeypatch, action):
    """``action()`` once grep has started, before the parser reads."""
    real = dmesg.GrepHits

    def wrapped(*a, **k):
        hits = real(*a, **k)
        action()
        return hits
    monkeypatch.setattr(dmesg, "GrepHits", wrapped)


def other_log(path: Path) -> None:
    """``path`` names another file now, as after a log rotation."""
    new = path.with_suffix(".new")
    synthesized(new, 8)
    os.replace(new, path)


@pytest.mark.parametrize("parts", [1, 2])
def test_a_log_deleted_once_open(big, monkeypatch, parts):
    monkeypatch.setattr(grepscan, "PARTS", parts)
    want = compiled(big)
    before_grep(monkeypatch, big.unlink)
    seen = spy(monkeypatch)
    assert parsed(big) == want
    assert seen == {"grep": 1, "lost": 0}


def test_a_log_rotated_once_open(big, monkeypatch):
    want = compiled(big)
    before_grep(monkeypatch, lambda: other_log(big))
    seen = spy(monkeypatch)
    assert parsed(big) == want
    assert seen == {"grep": 1, "lost": 0}
    assert compiled(big) != want  # the file the path names now is not the one parsed


@pytest.mark.parametrize("grep_is", ["missing", "failing"])
def test_the_fallback_reads_the_file_already_open(big, tmp_path, monkeypatch, grep_is):
    """The compiled scan parses the file that was opened, from its start (grep failing: after
    the parser has read some of it), not the one the path names now."""
    want = compiled(big)
    monkeypatch.setattr(grepscan, "_GREP", [None if grep_is == "missing" else
                                            fake_grep(tmp_path, "cat > /dev/null; exit 2")])
    before_grep(monkeypatch, lambda: other_log(big))
    seen = spy(monkeypatch)
    assert parsed(big) == want
    assert seen == {"grep": 0, "lost": 1}


def test_no_proc(big, monkeypatch):
    """/proc/self/fd missing: grep cannot be given the open file; the compiled scan parses it."""
    assert grepscan.grep(TRIGGERS) is not None
    real = os.open

    def no_proc(path, *a, **k):
        if str(path).startswith("/proc/self/fd/"):
            raise FileNotFoundError(2, "No such file or directory", path)
        return real(path, *a, **k)
    want = compiled(big)
    monkeypatch.setattr(os, "open", no_proc)
    seen = spy(monkeypatch)
    assert parsed(big) == want
    assert seen == {"grep": 0, "lost": 1}


@pytest.mark.parametrize("parts", [1, 2])
@pytest.mark.parametrize("end_newline", [True, False])
def test_a_log_written_to_while_parsed(tmp_path, monkeypatch, parts, end_newline):
    """Lines (SLUB reports among them) appended once grep runs: the log is parsed as it was when
    opened, by grep, once; a last line cut short is read as it was too."""
    monkeypatch.setattr(dmesg, "INDEXED_MIN", 0)
    monkeypatch.setattr(grepscan, "PARTS", parts)
    path = tmp_path / "big.log"
    synthesized(path, 9, end_newline)
    want = compiled(path)

    def append():
        with open(path, "ab") as f:
            f.write(b" allocat\n" + b"[ 9999.5] SLUB: Unable to allocate memory on node -1, "
                    b"gfp=0x820(GFP_ATOMIC)\n" * 5000)
    once_grep_runs(monkeypatch, append)
    seen = spy(monkeypatch)
    assert parsed(path) == want
    assert seen == {"grep": 1, "lost": 0}


def test_a_log_truncated_while_parsed(big, monkeypatch):
    once_grep_runs(monkeypatch, lambda: os.truncate(big, big.stat().st_size // 2))
    seen = spy(monkeypatch)
    got = parsed(big)
    assert seen == {"grep": 0, "lost": 1}
    assert got == compiled(big)  # what the file holds now


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


def _zst(big, cut: int = 0):
    import zstandard
    comp = big.with_suffix(".zst")
    data = zstandard.compress(big.read_bytes(), 1)
    comp.write_bytes(data[:len(data) - cut])
    return comp


def decoders() -> int:
    return sum(t.name == "mmtriage-decode" for t in threading.enumerate())


def test_zstd_decoded_ahead_reads_the_same_records(big, monkeypatch):
    """A zstd log is decoded on a thread of its own while the chunk before is scanned: many
    small chunks through the queue give the records, lines and suppressions of the plain
    file, and the thread is gone after."""
    monkeypatch.setattr(dmesg, "INDEXED_CHUNK", 1 << 16)
    want = compiled(big)
    comp = _zst(big)
    got = compiled(comp)
    assert got[0]["lines"] == want[0]["lines"] and got[0]["slub_reports"] > 10
    assert [e["time_s"] for e in got[1]] == [e["time_s"] for e in want[1]]
    assert got[2] == [dict(s, source=str(comp)) for s in want[2]]
    assert decoders() == 0


def test_a_truncated_zstd_log_fails_where_it_ends(big, monkeypatch):
    """The decoder's error, raised on its own thread, reaches the caller as the file's one-line
    error, after the chunks it did decode; no thread is left behind."""
    from parsers.errors import ParseError
    monkeypatch.setattr(dmesg, "INDEXED_CHUNK", 1 << 16)
    comp = _zst(big, cut=100)
    with pytest.raises(ParseError) as e:
        parse_log(comp)
    assert str(comp) in str(e.value) and "zstd frame" in str(e.value)
    assert decoders() == 0


def test_a_consumer_that_stops_stops_the_decoder():
    closed = []

    def chunks():
        try:
            for i in range(1000):
                yield bytearray(b"x" * 10)
        finally:
            closed.append(True)
    it = logio.prefetched(chunks(), depth=1)
    assert next(it) == b"x" * 10
    it.close()
    assert closed == [True] and decoders() == 0


def test_no_numba_on_the_grep_path(big):
    code = ("import sys; from parsers import dmesg; dmesg.INDEXED_MIN = 0; "
            f"r = dmesg.parse_log({str(big)!r}); assert r.slub_reports > 10; "
            "print(sorted(m for m in ('numba', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True).stdout
    assert out.strip() == "[]"


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def grep_children() -> list[str]:
    """This process's children that run grep (or a fake one), alive or zombie. Other children
    (a test worker's, another test's servers) are not ours to count."""
    kids = []
    for task in Path("/proc/self/task").iterdir():
        try:
            kids += (task / "children").read_text().split()
        except OSError:
            pass
    out = []
    for pid in kids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if "grep" in cmd or "grep" in comm or comm == "sleep":
            out.append(f"{pid} {comm} {cmd[:60]}")
    return out


def no_child_left():
    assert grep_children() == []  # neither running nor a zombie


@pytest.mark.parametrize("parts", [1, 2])
def test_grep_is_stopped_when_the_parse_fails(big, monkeypatch, parts):
    def boom(*a, **k):
        raise RuntimeError("boom")
    monkeypatch.setattr(dmesg.LogParser, "feed_line", boom)
    monkeypatch.setattr(grepscan, "PARTS", parts)
    before, n = set(threading.enumerate()), fds()
    with pytest.raises(RuntimeError):
        parse_log(big)
    assert set(threading.enumerate()) <= before  # the reading threads ended
    no_child_left()
    assert fds() == n


@pytest.mark.parametrize("parts,fails", [(1, 1), (2, 1), (2, 2), (2, 3)])
def test_a_part_that_fails_to_start_leaves_nothing_behind(big, monkeypatch, parts, fails):
    """A thread that cannot be started (the fed part's feeder, its reader, the last part's
    reader): grep is killed and waited for, not left waiting on a pipe no one feeds."""
    grepscan.grep(TRIGGERS)
    started = []

    class Thread(threading.Thread):
        def start(self):
            started.append(self)
            if len(started) == fails:
                raise RuntimeError("can't start new thread")
            super().start()
    monkeypatch.setattr(grepscan, "threading", types.SimpleNamespace(Thread=Thread,
                                                                      Lock=threading.Lock))
    monkeypatch.setattr(grepscan, "PARTS", parts)
    before, n = set(threading.enumerate()), fds()
    with pytest.raises(RuntimeError, match="start new thread"):
        parse_log(big)
    assert len(started) == fails
    assert set(threading.enumerate()) <= before
    no_child_left()
    assert fds() == n
