"""The shapes real posted logs take, built from real records (the 6.16.3 lab capture) by the
edits that mail clients, terminals, interleaving CPUs and vendor kernels make. Each edited log
must give the same records as the original, or count every header it holds."""
import re

import pytest

from parsers.dmesg import parse_text
from tests.conftest import LAB1

LOG = (LAB1 / "dmesg").read_text()
LINES = LOG.splitlines()
PAGE = next(i for i, ln in enumerate(LINES) if "page allocation failure" in ln)
MEMINFO_END = next(i for i, ln in enumerate(LINES) if "hwpoisoned" in ln)
SLUB = MEMINFO_END + 1          # a whole SLUB report: header, cache line, one node line
RECORDS = LINES[PAGE:SLUB + 3]  # one page-allocation report with its Mem-Info, then one SLUB
SYSLOG = [re.sub(r"^\[\s*(\d+\.\d+)\] ", r"Nov 25 20:00:44 lab kernel: [\1] ", ln) for ln in RECORDS]
FIELDS = ("kind", "order", "gfp_mask", "cache", "object_size", "buffer_size", "default_order",
          "min_order", "nodes", "comm", "zones", "partial")


def events(lines):
    res = parse_text("\n".join(lines) + "\n")
    return res, [{k: e[k] for k in FIELDS} for e in res.events]


ORIGINAL = events(RECORDS)[1]


def test_the_originals_are_whole():
    assert [e["kind"] for e in ORIGINAL] == ["page_alloc", "slub"]
    assert not any(e["partial"] for e in ORIGINAL)
    assert ORIGINAL[1]["cache"] == "skbuff_head_cache" and ORIGINAL[1]["buffer_size"] == 256


def wrap(lines, i, after):
    """Line i cut after the text ``after``; the rest goes on a new line with no prefix."""
    ln = lines[i]
    cut = ln.index(after) + len(after)
    return lines[:i] + [ln[:cut], ln[cut:].lstrip()] + lines[i + 1:]


@pytest.mark.parametrize("frame", [RECORDS, SYSLOG], ids=["dmesg", "syslog"])
@pytest.mark.parametrize("after", ["buffer", "default order:", "object size: 232,", "cache:"])
def test_cache_line_wrapped_mid_field(frame, after):
    i = len(frame) - 2
    assert "cache:" in frame[i]
    assert events(wrap(frame, i, after))[1] == ORIGINAL


@pytest.mark.parametrize("frame", [RECORDS, SYSLOG], ids=["dmesg", "syslog"])
def test_page_header_wrapped_before_mode(frame):
    got = events(wrap(frame, 0, "order:0,"))[1]
    assert got == ORIGINAL


def test_node_line_wrapped():
    i = len(RECORDS) - 1
    assert events(wrap(RECORDS, i, "objs:"))[1] == ORIGINAL


def test_wrapped_in_a_log_with_no_stamps_at_all():
    bare = [re.sub(r"^\[\s*\d+\.\d+\] ", "", ln) for ln in RECORDS]
    i = len(bare) - 2
    got = events(wrap(bare, i, "buffer"))[1]
    assert got[1]["cache"] == "skbuff_head_cache" and got[1]["buffer_size"] == 256
    assert got[1]["default_order"] == 0 and not got[1]["partial"]


def test_two_headers_in_one_line_keep_their_own_order_and_mode():
    a = "[   44.948454] pingflood: page allocation failure: order:0, mode:0x40820(GFP_ATOMIC|__GFP_COMP), nodemask=(null)"
    b = "kworker/1:1: page allocation failure: order:3, mode:0x400dc0(GFP_KERNEL_ACCOUNT|__GFP_ZERO)"
    res, evs = events([a + b])
    assert res.page_alloc_reports == 2
    assert [(e["comm"], e["order"], e["gfp_mask"]) for e in evs] == [
        ("pingflood", 0, 0x40820), ("kworker/1:1", 3, 0x400dc0)]


def test_two_headers_on_adjacent_lines_with_swapped_comms():
    lines = ["[   44.948454] pingflood: swapper/1: page allocation failure: order:0, mode:0x40820(GFP_ATOMIC|__GFP_COMP), nodemask=(null)",
             "[   44.948455] page allocation failure: order:1, mode:0x820(GFP_ATOMIC), nodemask=(null)"]
    res, evs = events(lines)
    assert res.page_alloc_reports == 2
    assert [(e["order"], e["gfp_mask"]) for e in evs] == [(0, 0x40820), (1, 0x820)]


def test_slub_and_page_headers_glued():
    line = RECORDS[-3] + RECORDS[0][15:]
    res, evs = events([line])
    assert (res.slub_reports, res.page_alloc_reports) == (1, 1)
    assert {e["kind"]: e["gfp_mask"] for e in evs} == {"slub": 0x820, "page_alloc": 0x40820}


@pytest.mark.parametrize("where", ["start", "middle"])
def test_printk_dropped_glued_to_another_line(where):
    lines = list(RECORDS)
    i = len(lines) - 1  # the SLUB node line
    if where == "start":
        lines[i] = "** 37 printk messages dropped **" + lines[i]
    else:
        lines[i] = lines[i][:15] + "** 37 printk messages dropped ** " + lines[i][15:]
    res, evs = events(lines)
    assert res.printk_dropped == 37
    assert evs == ORIGINAL


def test_android_vendor_framing():
    vendor = []
    for n, ln in enumerate(RECORDS):
        m = re.match(r"^(\[\s*\d+\.\d+\]) (.*)$", ln)
        vendor.append(f"{4166 + n:05d} < 4> {m.group(1)} [03-19 10:05:52.172] {m.group(2)}")
    res, evs = events(vendor)
    assert evs == ORIGINAL
    assert res.first_time_wall.endswith("-03-19T10:05:52.172")


def test_irregular_node_spacing():
    lines = list(RECORDS)
    lines[-1] = lines[-1].replace("slabs: 1825, objs:", "slabs: 1825,objs:").replace("free: 0", "free:  0")
    assert events(lines)[1] == ORIGINAL


def test_oom_killer_report_alone():
    """The most common memory report: an OOM-killer header and its Mem-Info with per-node lines,
    no allocation failure. (Reconstructed: the lab's own Mem-Info under a 6.x OOM header.)"""
    body = LINES[PAGE + 1:MEMINFO_END + 1]
    oom = ["[   44.948454] frag invoked oom-killer: gfp_mask=0x140dca(GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO), order=0, oom_score_adj=0"]
    res, evs = events(oom + body)
    assert res.oom_reports == 1 and evs == [] and res.internal_errors == []
    assert res.summary()["page_alloc_reports"] == 0


def test_caller_ids_with_node_lines_before_their_record():
    """i386 HIGHMEM with CONFIG_PRINTK_CALLER: the Mem-Info of one CPU's record interleaves with
    another CPU's header, so per-node lines can arrive for a record that has no Mem-Info yet."""
    lines = ["[  100.000001] [ T1234] a.out: page allocation failure: order:0, mode:0x6000c0(GFP_KERNEL), nodemask=(null)",
             "[  100.000002] [  T999] Node 0 active_anon:1kB inactive_anon:2kB",
             "[  100.000003] [  T999] Mem-Info:",
             "[  100.000004] [ T1234] Mem-Info:",
             "[  100.000005] [ T1234] Node 0 active_anon:6684kB inactive_anon:0kB",
             "[  100.000006] [ T1234] Node 0 HighMem free:3000kB boost:0kB min:128kB low:1000kB high:2000kB",
             "[  100.000007] [ T1234] Node 0 HighMem: 2*4kB (U) 3*8kB (M) = 32kB",
             "[  100.000008] [ T1234] 0 pages hwpoisoned"]
    res, evs = events(lines)
    assert res.page_alloc_reports == 1 and res.internal_errors == []
    assert evs[0]["zones"][0]["zone"] == "HighMem" and evs[0]["zones"][0]["free_kb"] == 3000


def test_a_bug_costs_one_record_not_the_log(monkeypatch):
    from parsers import dmesg

    def boom(self, rec, text, line_no):
        if "Mem-Info" in text:
            raise RuntimeError("boom")
        return real(self, rec, text, line_no)
    real = dmesg.LogParser._record_line
    monkeypatch.setattr(dmesg.LogParser, "_record_line", boom)
    res, evs = events(RECORDS)
    assert (res.page_alloc_reports, res.slub_reports) == (1, 1)
    assert evs[0]["partial"] and evs[1] == ORIGINAL[1]
    (err,) = res.internal_errors
    assert err["error"] == "RuntimeError: boom" and err["line"] == 1 + RECORDS.index(
        next(ln for ln in RECORDS if ln.endswith("Mem-Info:")))
    assert any("internal error" in m for m in res.events[0]["missing"])


def test_quoted_printable_mail():
    """A log saved from a mail as sent: quoted-printable, `=3D` for `=`, soft breaks at 76."""
    import quopri
    qp = quopri.encodestring(("\n".join(RECORDS) + "\n").encode()).decode()
    assert "=3D" in qp and "=\n" in qp
    res = parse_text(qp)
    assert [{k: e[k] for k in FIELDS} for e in res.events] == ORIGINAL


def test_oom_header_cut_before_its_order_still_counts():
    res = parse_text("Feb 12 08:21:50 host kernel: updatedb.mlocat invoked oom-killer: "
                     "gfp_mask=0x16040d0(GFP_TEMPORARY|__GFP_COMP|__GFP_NOTRACK), nodemask=\n")
    assert res.oom_reports == 1


def test_real_oom_killer_log_alone():
    """A real posted OOM-killer report (4.7, its Mem-Info with continuation lines) and nothing
    else: counted as one OOM report, no allocation failure, nothing partial, no error."""
    from analyzer.attribution import attribute
    from parsers.bundle import load
    from tests.conftest import PUBLIC
    path = PUBLIC / "mixed-lkml-stoakes-oom47-1.txt"
    with load(path) as b:
        s = b.log.summary()
        assert (s["oom_reports"], s["slub_reports"], s["page_alloc_reports"]) == (1, 0, 0)
        assert s["internal_errors"] == 0 and s["orphan_meminfo"] == 0
        d = attribute(b)
    assert d["failures"]["printed"] == 0 and d["log"]["found"]
