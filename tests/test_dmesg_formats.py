"""Every framing of the same real log gives the same records (product.md §3)."""
import bz2
import gzip
import lzma

import pytest
import zstandard

from parsers.dmesg import parse_log, parse_text
from tests.conftest import LAB1, need
from tests.formats import fold, kmsg_x0a, mail_wrap, rsyslog_012, to_format

FORMATS = ["raw", "dmesg-T", "dmesg-x", "caller", "syslog", "syslog-nostamp", "rfc3339",
           "short-iso", "short-precise", "short-monotonic", "json", "kmsg", "kmsg-caller", "crlf",
           "caret-m", "quoted", "journal-export", "dmesg-d", "short-delta", "dmesg-iso",
           "dmesg-reltime", "dmesg-T-caller", "short-unix", "short-full", "busybox", "logread",
           "rfc5424", "json-seq", "json-bytes", "json-pretty", "color", "color-line"]


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
    if fmt in ("raw", "caller", "kmsg", "json", "short-monotonic", "journal-export", "crlf",
               "dmesg-d", "short-delta", "busybox", "logread", "rfc5424", "json-seq",
               "json-bytes", "color", "color-line"):
        assert slub["time_s"] == pytest.approx(44.982138, abs=1e-6)
    if fmt in ("dmesg-T", "syslog-nostamp", "rfc3339", "short-iso", "short-precise", "dmesg-iso",
               "dmesg-T-caller", "short-unix", "short-full", "logread", "rfc5424"):
        # a stamp without a year (syslog's) takes the latest year that is not ahead of today
        assert slub["time_wall"][5:10] == "11-25", slub["time_wall"]
        if fmt not in ("syslog-nostamp", "short-precise"):
            assert slub["time_wall"][:4] == "2025", slub["time_wall"]
    if fmt == "dmesg-T-caller":
        assert slub["caller"] == "T306"


@pytest.mark.parametrize("fmt", ["json-bytes", "json-pretty", "color", "raw"])
@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_files_the_reader_rewrites(tmp_path, lab_text, fmt, encoding):
    """A file read from disk, as the CLI reads it: journald's byte-array messages are written
    as strings before the trigger words are looked for, and a UTF-16 log (PowerShell's ``>``)
    is read as UTF-8, its line numbers kept."""
    f = tmp_path / f"{fmt}.log"
    f.write_bytes(to_format(lab_text, fmt).encode(encoding))
    res = parse_log(f)
    _check(res)
    raw = parse_text(lab_text)
    if fmt == "json-pretty":  # each record's line is its first entry's opening brace
        data = f.read_text(encoding=encoding).splitlines()
        assert all(data[e["line"] - 1].lstrip("\ufeff") == "{" for e in res.events)
        assert res.summary()["lines"] == len(data)
    else:
        assert [e["line"] for e in res.events] == [e["line"] for e in raw.events]


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


@pytest.mark.parametrize("width", [60, 64, 72, 76, 80, 90, 96, 100, 120, 132, 150])
def test_a_log_cut_at_a_terminal_s_width_reads_as_the_log(lab_text, width):
    """``fold -w N``, a serial console or a terminal copy cuts every long line at column N,
    through words and numbers (GFP_ATO|MIC, presen|t:, 67|4*512kB, isolated_file:|0): each
    record comes out as from the uncut log, field for field."""
    res = parse_text(fold(lab_text, width))
    _check(res)
    base = parse_text(lab_text)
    strip = [{k: v for k, v in e.items() if k != "line"} for e in res.events]
    assert strip == [{k: v for k, v in e.items() if k != "line"} for e in base.events]


@pytest.mark.parametrize("fmt,width", [("raw", w) for w in (50, 56, 59, 62, 65, 72, 77)]
                         + [("syslog", w) for w in (59, 62, 65, 72, 77)])
def test_a_mail_wrapped_log_that_dropped_its_spaces_reads_as_the_log(lab_text, fmt, width):
    """A mailer breaks at a space and drops it: after ``key:`` or between two numbers the rest
    must be joined with a space again (``lowmem_reserve[]: 0 1450`` + ``1450``, ``cache:`` +
    ``skbuff_head_cache, ...``), though a terminal's cut there would not be. (Syslog lines
    wrapped under 59 columns cut the boot line after 'Linux', a line the scan never reads, so
    the release is lost there.)"""
    text = to_format(lab_text, fmt)
    res = parse_text(mail_wrap(text, width))
    base = parse_text(text)
    strip = [{k: v for k, v in e.items() if k != "line"} for e in res.events]
    assert strip == [{k: v for k, v in e.items() if k != "line"} for e in base.events]


def test_a_report_whose_body_was_lost_does_not_take_the_next_one_s():
    text = "\n".join([
        "[  10.000001] SLUB: Unable to allocate memory on node -1, gfp=0x820(GFP_ATOMIC)",
        "[  10.000002] SLUB: Unable to allocate memory on node -1, gfp=0xa20(GFP_ATOMIC)",
        "[  10.000003]   cache: kmalloc-2k, object size: 2048, buffer size: 2048, default order: 3, min order: 0",
        "[  10.000004]   node 0: slabs: 10, objs: 160, free: 0",
        "[  10.000005] eth0: link up",
    ]) + "\n"
    a, b = parse_text(text).events
    assert a["partial"] and a["cache"] is None and a["nodes"] == []
    assert not b["partial"] and b["cache"] == "kmalloc-2k" and len(b["nodes"]) == 1


def test_a_serial_console_s_indented_line_is_not_glued_to_a_report():
    text = "\n".join([
        "[  10.000001] SLUB: Unable to allocate memory on node -1, gfp=0x820(GFP_ATOMIC)",
        "[  10.000003]   cache: kmalloc-2k, object size: 2048, buffer size: 2048, default order: 3, min order: 0",
        "[  10.000004]   node 0: slabs: 10, objs: 160, free: 0",
        " * Starting OpenBSD Secure Shell server sshd",
        "[  10.000005] eth0: link up",
    ]) + "\n"
    ev, = parse_text(text).events
    assert ev["nodes"] == [{"node": 0, "slabs": 10, "objs": 160, "free": 0}]


def test_rfc5424_lines_of_other_programs_are_dropped():
    """Only the kernel's lines are read: a PRI of two digits (any facility but kern) too."""
    text = "\n".join([
        "<4>1 2025-11-12T09:00:44.100000+00:00 h kernel - - - [  100.000000] SLUB: Unable to allocate memory on node -1, gfp=0x820(GFP_ATOMIC)",
        "<4>1 2025-11-12T09:00:44.100010+00:00 h kernel - - - [  100.000010]   cache: kmalloc-2k, object size: 2048, buffer size: 2048, default order: 3, min order: 0",
        "<30>1 2025-11-12T09:00:44.100015+00:00 h systemd 1 - - node 0: slabs: 99, objs: 99, free: 0",
        "<4>1 2025-11-12T09:00:44.100020+00:00 h kernel - - - [  100.000020]   node 0: slabs: 10, objs: 160, free: 0",
    ]) + "\n"
    ev, = parse_text(text).events
    assert ev["nodes"] == [{"node": 0, "slabs": 10, "objs": 160, "free": 0}]


def test_a_journal_array_that_is_not_bytes_costs_only_its_line(tmp_path, lab_text):
    import json
    good = to_format(lab_text, "json-bytes")
    bad = json.dumps({"_TRANSPORT": "kernel", "MESSAGE": "x"}).replace('"x"', "[27, 91, 49 109]")
    huge = json.dumps({"_TRANSPORT": "kernel", "MESSAGE": "x"}).replace('"x"', "[" + "9" * 5000 + "]")
    f = tmp_path / "j.json"
    null = json.dumps({"_TRANSPORT": "kernel", "MESSAGE": [None, 65]})
    f.write_text(bad + "\n" + huge + "\n" + null + "\n" + good)
    _check(parse_log(f))


def test_interleaved_reports_without_callers_each_get_their_own_body():
    """Two CPUs' SLUB reports printed at once, no caller ids: each body line goes to the first
    open report that lacks it, so both are whole and neither has the other's node."""
    text = "\n".join([
        "[  54.704429] SLUB: Unable to allocate memory on CPU 0 (of node 0) on node -1, gfp=0x820(GFP_ATOMIC)",
        "[  54.704431] SLUB: Unable to allocate memory on CPU 1 (of node 0) on node -1, gfp=0xa20(GFP_ATOMIC)",
        "[  54.705099]   cache: skbuff_head_cache, object size: 232, buffer size: 256, default order: 0, min order: 0",
        "[  54.705101]   cache: kmalloc-512, object size: 512, buffer size: 512, default order: 1, min order: 0",
        "[  54.705430]   node 0: slabs: 3888, objs: 62208, free: 0",
        "[  54.705432]   node 0: slabs: 120, objs: 1920, free: 3",
        "[  55.000000] eth0: link up",
    ]) + "\n"
    res = parse_text(text)
    a, b = res.events
    assert (a["cpu"], a["cache"], [n["slabs"] for n in a["nodes"]]) == (0, "skbuff_head_cache", [3888])
    assert (b["cpu"], b["cache"], [n["slabs"] for n in b["nodes"]]) == (1, "kmalloc-512", [120])
    assert res.summary()["partial_records"] == 0


def test_slub_debug_line_keeps_the_node_lines_on_the_fast_path():
    """4.x kmalloc caches print '<cache> debugging increased min order' between the cache and
    node lines: the raw-dmesg fast path must hand the report to the slow path, not end it."""
    text = "\n".join([
        "[ 8812.114760] SLUB: Unable to allocate memory on node -1, gfp=0x1080020(GFP_ATOMIC)",
        "[ 8812.114762]   cache: kmalloc-256, object size: 256, buffer size: 256, default order: 1, min order: 0",
        "[ 8812.114763]   kmalloc-256 debugging increased min order, use slub_debug=O to disable.",
        "[ 8812.114764]   node 0: slabs: 1210, objs: 38720, free: 0",
        "[ 8812.114765]   node 1: slabs: 1180, objs: 37760, free: 0",
    ]) + "\n"
    ev, = parse_text(text).events
    assert ev["slub_debug"] is True
    assert [(n["node"], n["slabs"]) for n in ev["nodes"]] == [(0, 1210), (1, 1180)]


def test_a_syslog_log_across_new_year_runs_forward(tmp_path):
    """Syslog stamps carry no year: the year goes up where the month falls back, so times do
    not run backwards, and the log's span is its real one (20 s here)."""
    lines = ["Dec 31 23:59:44 host kernel: [   44.948454] pingflood: page allocation failure: "
             "order:0, mode:0x40820(GFP_ATOMIC|__GFP_COMP), nodemask=(null)",
             "Jan  1 00:00:04 host kernel: [   64.948454] pingflood: page allocation failure: "
             "order:0, mode:0x40820(GFP_ATOMIC|__GFP_COMP), nodemask=(null)"]
    f = tmp_path / "kern.log"
    f.write_text("\n".join(lines) + "\n")
    res = parse_log(f, year=2025)
    assert [e["time_wall"] for e in res.events] == ["2025-12-31T23:59:44", "2026-01-01T00:00:04"]
    s = res.summary()
    assert (s["first_time_wall"], s["last_time_wall"]) == ("2025-12-31T23:59:44",
                                                           "2026-01-01T00:00:04")


def test_a_year_less_stamp_is_never_in_the_future():
    """Without a year given, a date still ahead of today is last year's."""
    import datetime as dt
    from parsers.framing import Framer
    today = dt.datetime.now(dt.timezone.utc)
    ahead = today + dt.timedelta(days=3)
    f = Framer()
    (_, _, wall, _, _), = f.frame(ahead.strftime("%b %e %H:%M:%S") + " host kernel: hello")
    assert wall[5:10] == ahead.strftime("%m-%d") and wall[:10] <= today.strftime("%Y-%m-%d"), wall


def test_kernel_release_from_the_2_6_stack_line():
    text = ("[10.000001] kswapd0: page allocation failure. order:1, mode:0x20\n"
            "[10.000002] Pid: 52, comm: kswapd0 Not tainted 2.6.32-431.el6.x86_64 #1\n")
    ev, = parse_text(text).events
    assert ev["kernel_release"] == "2.6.32-431.el6.x86_64"


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
        # 4.12-5.x, a partly built area
        "[5.0] modprobe: vmalloc: allocation failure, allocated 1056768 of 1060864 bytes, mode:0x24000c2(GFP_KERNEL|__GFP_HIGHMEM)",
    ])
    s = parse_text(text).summary()
    assert (s["oom_reports"], s["stall_reports"], s["vmalloc_reports"]) == (1, 1, 3)
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
