"""Every framing of the same real log gives the same records (product.md §3)."""
import bz2
import gzip
import lzma

import pytest
import zstandard

from parsers.dmesg import parse_log, parse_text
from tests.conftest import LAB1, need
from tests.formats import kmsg_x0a, rsyslog_012, to_format

FORMATS = ["raw", "dmesg-T", "dmesg-x", "caller", "syslog", "syslog-nostamp", "rfc3339",
           "short-iso", "short-precise", "short-monotonic", "json", "kmsg", "kmsg-caller", "crlf",
           "caret-m", "quoted", "journal-export"]


@pytest.fixture(scope="module")
def lab_text():
    return (need(LAB1) / "dmesg").read_text()


def _check(res):
    s = res.summary()
    assert s["slub_reports"] == 30
    assert s["page_alloc_reports"] == 2
    assert s["suppressed"] == {"slab_out_of_memory": 2945, "warn_alloc": 1586}
    assert s["slub_failures_estimated"] == 2975
    assert s["page_alloc_failures_estimated"] == 1588
    assert s["partial_records"] == 0
    pa = [e for e in res.events if e["kind"] == "page_alloc"][0]
    assert pa["comm"] == "pingflood" and pa["order"] == 0
    assert pa["gfp_mask"] == 0x40820
    assert pa["gfp_flags"] == ["__GFP_COMP", "__GFP_HIGH", "__GFP_KSWAPD_RECLAIM"]
    dma32 = [z for z in pa["zones"] if z["zone"] == "DMA32"][0]
    assert dma32["free_kb"] == 1360412 and dma32["min_kb"] == 16024
    assert dma32["boost_kb"] == 11352 and dma32["managed_kb"] == 1448016
    assert [b["count"] for b in dma32["buddy"]] == [609, 689, 683, 680, 679, 673, 673, 674, 657, 0, 0]
    assert dma32["buddy"][0]["types"] == "ME" and dma32["buddy"][9]["types"] == ""
    assert dma32["lowmem_reserve"] == [0, 0, 0, 0, 0]
    assert pa["counters"]["free"] == 341509
    slub = [e for e in res.events if e["kind"] == "slub"][0]
    assert slub["cache"] == "skbuff_head_cache" and slub["buffer_size"] == 256
    assert slub["nodes"] == [{"node": 0, "slabs": 1825, "objs": 29200, "free": 0}]
    assert slub["cpu"] == 0 and slub["node_requested"] == -1


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_framing(lab_text, fmt):
    data = to_format(lab_text, fmt)
    if isinstance(data, bytes):
        data = data.decode()
    res = parse_text(data, source=fmt)
    _check(res)
    slub = [e for e in res.events if e["kind"] == "slub"][0]
    if fmt in ("raw", "caller", "kmsg", "json", "short-monotonic", "journal-export", "crlf"):
        assert slub["time_s"] == pytest.approx(44.982138, abs=1e-6)
    if fmt in ("dmesg-T", "syslog-nostamp", "rfc3339", "short-iso", "short-precise"):
        assert slub["time_wall"] is not None


def test_rsyslog_012_and_kmsg_x0a(lab_text):
    _check(parse_text(rsyslog_012(lab_text)))
    _check(parse_text(kmsg_x0a(lab_text)))


@pytest.mark.parametrize("comp", ["gz", "xz", "bz2", "zst"])
def test_compressed(tmp_path, lab_text, comp):
    raw = lab_text.encode()
    data = {"gz": gzip.compress, "xz": lzma.compress, "bz2": bz2.compress,
            "zst": zstandard.ZstdCompressor().compress}[comp](raw)
    p = tmp_path / f"kern.log.{comp}"
    p.write_bytes(data)
    _check(parse_log(p))


def test_mixed_formats_in_one_file(lab_text):
    a = to_format(lab_text, "syslog")
    b = to_format(lab_text, "kmsg")
    res = parse_text(a + b)
    assert res.summary()["slub_reports"] == 60
    assert res.summary()["page_alloc_reports"] == 4


def test_callers_keep_records_apart():
    text = "\n".join([
        "[  10.000001] [T100] SLUB: Unable to allocate memory on node -1, gfp=0xa20(GFP_ATOMIC)",
        "[  10.000002] [T200] SLUB: Unable to allocate memory on node -1, gfp=0xcc0(GFP_KERNEL)",
        "[  10.000003] [T100]   cache: skbuff_head_cache, object size: 232, buffer size: 256, default order: 2, min order: 0",
        "[  10.000004] [T200]   cache: kmalloc-64, object size: 64, buffer size: 64, default order: 0, min order: 0",
        "[  10.000005] [T200]   node 0: slabs: 5, objs: 320, free: 0",
        "[  10.000006] [T100]   node 0: slabs: 9, objs: 100, free: 1",
    ])
    res = parse_text(text)
    a, b = res.events
    assert (a["cache"], a["gfp_mask"], a["nodes"][0]["slabs"]) == ("skbuff_head_cache", 0xa20, 9)
    assert (b["cache"], b["gfp_mask"], b["nodes"][0]["slabs"]) == ("kmalloc-64", 0xcc0, 5)


def test_two_headers_on_one_line_and_period_form():
    text = ("foo: page allocation failure. order:1, mode:0x20\n"
            "[ 1.0] SLUB: Unable to allocate memory on node -1 (gfp=0x20) junk SLUB: Unable to "
            "allocate memory on node 0, gfp=0xa20(GFP_ATOMIC)\n")
    res = parse_text(text)
    s = res.summary()
    assert s["page_alloc_reports"] == 1
    assert s["slub_reports"] == 2
    pa = [e for e in res.events if e["kind"] == "page_alloc"][0]
    assert pa["order"] == 1 and pa["comm"] == "foo" and pa["gfp_mask"] == 0x20
    # each SLUB header keeps its own node and mask
    assert [(e["node_requested"], e["gfp_mask"]) for e in res.events if e["kind"] == "slub"] == [
        (-1, 0x20), (0, 0xa20)]


def test_printk_dropped_and_other_suppressions():
    text = ("[1.0] ** 1234 printk messages dropped **\n"
            "[2.0] net_ratelimit: 17 callbacks suppressed\n"
            "[3.0] warn_alloc_failed: 4 callbacks suppressed\n")
    s = parse_text(text).summary()
    assert s["printk_dropped"] == 1234
    assert s["suppressed"] == {"net_ratelimit": 17, "warn_alloc_failed": 4}
    assert s["page_alloc_failures_estimated"] == 4


def test_oom_stall_vmalloc_counted_apart():
    text = "\n".join([
        "[1.0] a.out invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
        "[1.0] Mem-Info:",
        "[1.0] active_anon:1 inactive_anon:2 isolated_anon:0",
        "[1.0] Node 0 Normal free:1000kB boost:0kB min:2000kB low:2500kB high:3000kB managed:100000kB",
        "[1.0] Node 0 Normal: 1*4kB (U) 0*8kB = 4kB",
        "[1.0] 0 pages hwpoisoned",
        "[2.0] kworker/0:1: page allocation stalls for 10012ms, order:0, mode:0x14200ca(GFP_HIGHUSER_MOVABLE)",
        "[3.0] vmalloc: allocation failure: 4096 bytes, mode:0xcc0(GFP_KERNEL)",
        "[4.0] insmod: vmalloc error: size 8192, page order 0, failed to allocate pages, mode:0xcc0(GFP_KERNEL), nodemask=(null)",
    ])
    s = parse_text(text).summary()
    assert (s["oom_reports"], s["stall_reports"], s["vmalloc_reports"]) == (1, 1, 2)
    assert s["page_alloc_reports"] == 0 and s["orphan_meminfo"] == 0


def test_fast_path_equals_slow_path(lab_text):
    from parsers.dmesg import LogParser, _scan
    dense = "".join(
        f"[{100 + i * 0.001:12.6f}] SLUB: Unable to allocate memory on CPU {i % 4} (of node 0) on node -1, "
        f"gfp=0x820(GFP_ATOMIC)\n[{100 + i * 0.001:12.6f}]   cache: skbuff_head_cache, object size: 232, "
        f"buffer size: 256, default order: 1, min order: 0\n[{100 + i * 0.001:12.6f}]   node 0: slabs: {i}, "
        f"objs: {i * 16}, free: 0\n" + (f"[{100 + i * 0.001:12.6f}] slab_out_of_memory: 9 callbacks suppressed\n"
                                         if i % 10 == 0 else "")
        for i in range(300))
    for text in (lab_text, dense, lab_text + dense):
        out = []
        for fast in (True, False):
            p = LogParser("x")
            lines = text.encode().splitlines(keepends=True)
            chunks = [b"".join(lines[i:i + 37]) for i in range(0, len(lines), 37)]
            _scan(p, chunks, fast=fast)
            r = p.finish()
            out.append((r.summary(), r.events, r.suppressions))
        assert out[0] == out[1]
