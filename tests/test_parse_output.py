"""What ``mmtriage parse --format json`` writes does not depend on the path a record took.

The fast path renders dense raw-dmesg SLUB reports and suppression lines straight to JSON
(``parse_log(raw_json=True)``): that document must be byte for byte the one the dict records
render to, and its records must be the slow line-by-line path's, on every real log and on a
log made of the shapes the fast path has to refuse (leading zeros, stamps below 1e-4, values out
of range, a gfp decode that disagrees with its names, odd node lines, a release named late),
cut into chunks at every size.
"""
import json

import pytest

from analyzer.cli import _parse_doc, _parse_paths
from parsers.dmesg import LogParser, _scan
from parsers.logio import iter_chunks
from tests.conftest import PUBLIC, SAMPLES

LOGS = sorted(PUBLIC.glob("*.txt")) + sorted(SAMPLES.glob("*/dmesg")) + sorted(SAMPLES.glob("*/kmsg"))
BUNDLES = sorted(p for p in SAMPLES.iterdir() if p.is_dir())


def doc(res) -> bytes:
    return b"".join(p if isinstance(p, bytes) else p.encode() for p in _parse_doc(res))


def parsed(path, chunk, fast=True, raw=False):
    p = LogParser(str(path), raw_json=raw)
    _scan(p, iter_chunks(path, chunk), fast=fast)
    return p.finish()


def records(res):
    """Summary, events and suppressions as JSON values (what the document says)."""
    d = json.loads(doc(res))
    return d["summary"], d["events"], d["suppressions"]


def check(path, chunk):
    raw = parsed(path, chunk, raw=True)
    dicts = parsed(path, chunk)
    slow = parsed(path, chunk, fast=False)
    assert doc(raw) == doc(dicts)
    assert records(raw) == records(slow)
    return raw


@pytest.mark.parametrize("path", LOGS, ids=lambda p: f"{p.parent.name}/{p.name}")
@pytest.mark.parametrize("chunk", [4 << 20, 997])
def test_real_logs_render_the_same_on_every_path(path, chunk):
    check(path, chunk)


@pytest.mark.parametrize("path", BUNDLES, ids=lambda p: p.name)
def test_the_command_writes_what_the_dict_records_render_to(path):
    assert doc(_parse_paths([str(path)], raw_json=True)) == doc(_parse_paths([str(path)]))


def slub(t, cpu="CPU 1 (of node 0) on ", node="-1", gfp="0x820(GFP_ATOMIC)",
         cache="skbuff_head_cache", size="232", order="1", nodes=(("0", "5", "80", "0"),)):
    s = f"[{t}] SLUB: Unable to allocate memory on {cpu}node {node}, gfp={gfp}\n"
    s += (f"[{t}]   cache: {cache}, object size: {size}, buffer size: 256, "
          f"default order: {order}, min order: 0\n")
    return s + "".join(f"[{t}]   node {a}: slabs: {b}, objs: {c}, free: {d}\n" for a, b, c, d in nodes)


def odd_log() -> str:
    parts = [
        slub("    0.000000"), slub("    0.000050"), slub("    0.012300"), slub(" 1000.000000"),
        "[ 1000.000001] slab_out_of_memory: 57 callbacks suppressed\n",
        "[    0.000040] slab_out_of_memory: 3 callbacks suppressed\n",
        "[ 1000.000002] slab_out_of_memory: 99999999999999999999 callbacks suppressed\n",
        "[01000.000003] slab_out_of_memory: 2 callbacks suppressed\n",
        slub("01000.000500"), slub("123456789012.123456"), slub(" 1000.0005001"),
        slub(" 1001.000000", cpu=""), slub(" 1001.100000", cpu="CPU 07 (of node 0) on "),
        slub(" 1001.200000", cpu="CPU 3 (of node -0) on "), slub(" 1001.300000", node="-2"),
        slub(" 1001.400000", node="65536"), slub(" 1001.500000", node="65537"),
        slub(" 1001.600000", node="007"),
        slub(" 1002.000000", nodes=(("0", "1", "2", "3"), ("1", "4", "5", "6"), ("2", "0", "0", "0"))),
        slub(" 1002.100000", nodes=(("0", "007", "2", "3"),)),
        slub(" 1002.200000", nodes=(("0", "1", "2", "3"), ("1", "04", "5", "6"))),
        slub(" 1002.300000", nodes=(("70000", "1", "2", "3"),)),
        slub(" 1002.400000", nodes=(("65536", "1", "2", "3"),)),
        slub(" 1002.500000", nodes=(("0", "9" * 15, "9" * 16, "9" * 25),)),
        slub(" 1002.600000", nodes=()),
        slub(" 1003.000000", gfp="0xffffffffffffffff(GFP_ATOMIC)"),
        slub(" 1003.100000", gfp="0x820(GFP_KERNEL)"), slub(" 1003.200000", gfp="0x20"),
        slub(" 1003.300000", cache='we"ird\\cache\u00e9'), slub(" 1003.400000", size="9" * 20),
        slub(" 1003.500000", order="21"),
        "[ 1004.000000]   node 0: slabs: 1, objs: 2, free: 3\n",
        slub(" 1004.100000")[:-1] + "\n[ 1004.100000]    node 1: slabs: 1, objs: 2, free: 3\n",
        slub(" 1004.200000") + "wrapped rest of a line\n",
        "[ 1005.000000] Linux version 6.1.0-test (gcc) #1 SMP\n",
        slub(" 1005.100000"), slub(" 1005.200000", gfp="0x820"),
        slub(" 1006.000000")[:-1],  # no newline at the end of the log
    ]
    return "".join(parts)


@pytest.mark.parametrize("chunk", [4 << 20, 4096, 301, 64])
def test_shapes_the_fast_path_refuses_render_as_the_slow_path_reads_them(tmp_path, chunk):
    path = tmp_path / "odd.log"
    path.write_bytes(odd_log().encode())
    raw = check(path, chunk)
    s, events, supp = records(raw)
    # the fast path took some of it (whole reports fit in the chunk), in bytes, and the
    # release named late reached them
    if chunk >= 4096:
        assert any(isinstance(e, bytes) for e in raw.events)
    assert any(isinstance(e, dict) for e in raw.events)
    assert {e["kernel_release"] for e in events} == {"6.1.0-test"}
    assert s["slub_reports"] == len([e for e in events if e["kind"] == "slub"]) >= 30
    assert [e["time_s"] for e in events[:4]] == [0.0, 5e-05, 0.0123, 1000.0]
    assert supp[0]["count"] == 57 and s["malformed_lines"] >= 1


def test_a_release_named_first_is_in_the_fast_records(tmp_path):
    path = tmp_path / "k.log"
    path.write_bytes(("[    0.000000] Linux version 5.15.0-x (gcc) #1 SMP\n"
                      + slub("    1.000000") + slub("    2.000000")
                      + "[    3.000000] eth0: link up\n").encode())
    raw = check(path, 4 << 20)
    assert all(isinstance(e, bytes) for e in raw.events)
    assert [e["kernel_release"] for e in records(raw)[1]] == ["5.15.0-x"] * 2


def test_a_file_name_that_is_not_utf8_keeps_its_bytes(tmp_path):
    """The name is written as stdout's surrogateescape writes it, on both paths."""
    import os
    path = tmp_path / os.fsdecode(b"kern\xff.log")
    path.write_bytes((slub(" 1000.000000") + slub(" 1000.100000") + "[ 1000.2] eth0: up\n").encode())
    raw = parse_log_of(path, raw=True)
    assert any(isinstance(e, bytes) for e in raw.events)
    assert doc(raw) == doc(parse_log_of(path)) and b"kern\xff.log" in doc(raw)


def parse_log_of(path, raw=False):
    from parsers.dmesg import parse_log
    return parse_log(path, raw_json=raw)


@pytest.mark.parametrize("chunk", [64, 4096, 1 << 20])
def test_a_reused_chunk_buffer_reads_as_fresh_ones_do(chunk):
    """``iter_chunks(reuse=True)`` fills one buffer anew; a view still held on the last chunk
    (the scan's numpy view, if it were kept) makes it take a new buffer rather than fail."""
    import numpy as np
    path = SAMPLES / "lab-6.16.3-defrag1" / "dmesg"
    fresh = [bytes(c) for c in iter_chunks(path, chunk)]
    assert [bytes(c) for c in iter_chunks(path, chunk, reuse=True)] == fresh
    held, got = [], []
    for c in iter_chunks(path, chunk, reuse=True):
        held.append(np.frombuffer(c, np.uint8))
        got.append(bytes(c))
    assert got == fresh and b"".join(fresh) == path.read_bytes()
