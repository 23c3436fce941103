"""Every real posted log in tests/fixtures/public, as it is, gives the values it contains."""
import pytest

from parsers.dmesg import parse_log
from tests.conftest import LAB0, LAB1, PUBLIC, need


def parse(name):
    return parse_log(need(PUBLIC / name))


def events(res, kind):
    return [e for e in res.events if e["kind"] == kind]


def test_wujing_slub_no_indent_midrecord():
    res = parse("slub-lkml-wujing-1.txt")
    s = res.summary()
    assert s["slub_reports"] == 6 and s["page_alloc_reports"] == 1
    assert s["suppressed"] == {"warn_alloc": 59}
    assert s["page_alloc_failures_estimated"] == 60
    sl = events(res, "slub")
    assert {e["cache"] for e in sl} == {"skbuff_head_cache"}
    assert all(e["gfp_mask"] == 0x480020 and e["gfp_layout"] == "L3" for e in sl)
    assert sl[0]["nodes"] == [{"node": 0, "slabs": 854, "objs": 42320, "free": 0},
                              {"node": 1, "slabs": 400, "objs": 25360, "free": 294}]
    assert (sl[0]["default_order"], sl[0]["min_order"], sl[0]["object_size"]) == (2, 0, 232)
    assert sl[-1]["nodes"] == []  # the last report's node lines are cut off by the mail
    pa = events(res, "page_alloc")[0]
    assert pa["comm"] == "swapper/100" and pa["cpuset"] == "/" and pa["mems_allowed"] == "0-1"
    assert pa["partial"] and "mem_info" in pa["missing"]
    assert s["first_time_s"] == pytest.approx(38535641.026406)


def test_hannes_memcg_cache_name():
    res = parse("slub-lkml-hannes-memcg-twsock-52-1.txt")
    (e,) = res.events
    assert e["cache"] == "tw_sock_TCPv6(960:helper-logs)"
    assert (e["gfp_mask"], e["gfp_layout"], e["buffer_size"]) == (0xa20, "L4", 240)
    assert e["nodes"] == [{"node": 0, "slabs": 5, "objs": 170, "free": 0}]


def test_moby_old_header_form():
    res = parse("slub-gh-moby35545-1.txt")
    assert res.summary()["slub_reports"] == 4
    e = res.events[0]
    assert e["gfp_mask"] == 0x20 and e["gfp_flags"] == ["__GFP_HIGH"] and e["gfp_layout"] == "L0"
    assert e["cache"].startswith("kmalloc-1024(1793:c8edefa9")
    assert e["default_order"] == 3
    assert [ev["nodes"][0]["slabs"] for ev in res.events] == [663, 663, 664, 666]


def test_congwang_wrapped_caret_m_no_header():
    res = parse("allocfail-lkml-congwang49-1.txt")
    s = res.summary()
    # The post starts inside the stack: there is no failure header to count, only a Mem-Info.
    assert s["page_alloc_reports"] == 0 and s["orphan_meminfo"] == 1
    assert s["lines"] == 107


def test_dcache_interleaved_header():
    res = parse("allocfail-gh-dcache3787-interleaved-1.txt")
    (e,) = res.events
    assert e["kind"] == "page_alloc" and e["order"] == 0
    assert e["gfp_mask"] == 0x2080020 and e["gfp_layout"] == "L1"
    assert e["partial"] and "interleaved_header" in e["missing"]
    # the header's comm was cut away from it; the stack's CPU line names the task
    assert e["comm"] == "swapper/12" and "comm" not in e["missing"]


def test_xtensa_order5_counters():
    (e,) = parse("allocfail-gh-xtensa5-esp32s3-k63-1.txt").events
    assert (e["comm"], e["order"], e["gfp_mask"]) == ("ls", 5, 0xcc0)
    assert e["kernel_release"] == "6.3.0"
    assert e["counters"]["free"] == 51 and e["counters"]["sec_pagetables"] == 0
    assert e["partial"]  # the post stops before the zone lines


def test_rsyslog_012_orphan_meminfo():
    res = parse("allocfail-gh-mountpoints3-1770-rsyslog012-1.txt")
    s = res.summary()
    assert s["orphan_meminfo"] == 1 and s["page_alloc_reports"] == 0
    assert s["first_time_wall"].endswith("-02-09T08:09:39")


def test_spdk_dmesg_T():
    (e,) = parse("allocfail-gh-spdk1252-dmesgT-1.txt").events
    assert e["time_wall"] == "2020-04-20T15:08:07"
    assert (e["order"], e["gfp_mask"], e["gfp_layout"]) == (4, 0x40dc0, "L4")
    assert e["comm"] == "kworker/u16:3" and e["kernel_release"] == "5.4.19-100.fc30.x86_64"


def test_earlyoom_journal_monotonic():
    res = parse("allocfail-gh-earlyoom220-journal-monotonic-1.txt")
    (e,) = res.events
    assert e["comm"] == "earlyoom" and e["gfp_mask"] == 0x800
    assert e["gfp_flags"] == ["__GFP_KSWAPD_RECLAIM"]
    assert e["time_s"] == pytest.approx(21161.092614)
    assert e["kernel_release"] == "5.9.0-0.rc4.5.fc34.x86_64+debug"


def test_imx6_quoted_uma_cma():
    res = parse("mixed-lkml-imx6-cma-3.10-1.txt")
    pa = events(res, "page_alloc")[0]
    assert pa["comm"] == "swapper/0" and pa["gfp_mask"] == 0x200020 and pa["gfp_layout"] == "L0"
    assert pa["gfp_flags"] == ["__GFP_HIGH", "__GFP_NOTRACK"]
    assert pa["kernel_release"] == "3.10.53-1.1.0_ga+g67f859d"
    (z,) = pa["zones"]
    assert (z["node"], z["zone"], z["free_kb"], z["min_kb"], z["free_cma_kb"]) == \
        (None, "DMA", 143792, 3336, 143136)
    assert len(z["buddy"]) == 14 and z["buddy"][-1]["size_kb"] == 32768 and z["buddy"][-1]["order"] == 13
    assert z["buddy"][0] == {"size_kb": 4, "count": 4452, "types": "UC", "order": 0}
    assert pa["counters"]["free_cma"] == 35784
    sl = events(res, "slub")[0]
    assert sl["cache"] == "kmalloc-192" and sl["nodes"][0]["slabs"] == 0


def test_stoakes_oom_is_not_a_failure():
    res = parse("mixed-lkml-stoakes-oom47-1.txt")
    s = res.summary()
    assert s["oom_reports"] == 1 and s["page_alloc_reports"] == 0 and s["orphan_meminfo"] == 0
    assert res.events == []


def test_lab_defrag1():
    res = parse_log(need(LAB1) / "dmesg")
    s = res.summary()
    assert (s["slub_reports"], s["page_alloc_reports"]) == (30, 2)
    assert s["suppressed"]["slab_out_of_memory"] + s["suppressed"]["warn_alloc"] == 4531
    assert s["kernel_release"] == "6.16.3+deb13-amd64"
    pas = events(res, "page_alloc")
    assert all(not e["partial"] for e in res.events)
    dma = [z for z in pas[0]["zones"] if z["zone"] == "DMA"][0]
    assert dma["lowmem_reserve"] == [0, 1414, 1414, 1414, 1414]
    assert dma["free_highatomic_kb"] == 0 and dma["reserved_highatomic_kb"] == 0


def test_lab_defrag0_has_no_failures():
    s = parse_log(need(LAB0) / "dmesg").summary()
    assert s["slub_reports"] == s["page_alloc_reports"] == 0
    assert s["lines"] == 381
