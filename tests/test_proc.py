"""/proc parsers: whole-structure checks on real files, malformed inputs, old kernels."""
import textwrap

import pytest

from parsers import buddyinfo, meminfo, pagetypeinfo, snmp, vmstat, zoneinfo
from parsers.errors import InputWarning, ParseError
from parsers.proc import cross_check, detect, parse_file
from tests.conftest import HOST618, LAB1, PUBLIC, SAMPLES, need

HOST = HOST618 / "snapshots" / "20261125T195929Z"


def text(p):
    return need(p).read_text()


def test_pagetypeinfo_chromeos_order10():
    p = pagetypeinfo.parse(text(PUBLIC / "pagetypeinfo-chromeos66-1.txt"))
    assert (p.pageblock_order, p.pages_per_block, p.orders) == (10, 1024, 11)
    row = [r for r in p.free if r.zone == "Normal" and r.type == "Movable"][0]
    assert row.counts == (10656, 8282, 1910, 571, 259, 192, 68, 26, 7, 1, 378)
    assert p.blocks[(0, "Normal")] == {"Unmovable": 140, "Movable": 1337, "Reclaimable": 58,
                                       "HighAtomic": 0}


def test_pagetypeinfo_old_names_cma_reserve():
    p = pagetypeinfo.parse(text(PUBLIC / "pagetypeinfo-jmr540arm-1.txt"))
    assert [r.type for r in p.free] == ["Unmovable", "Reclaimable", "Movable", "CMA", "Reserve", "Isolate"]
    assert p.blocks[(0, "Normal")] == {"Unmovable": 5, "Reclaimable": 2, "Movable": 34, "CMA": 2,
                                       "Reserve": 1, "Isolate": 0}
    assert p.free_pages(0, "Normal", "Reserve") == 1024


def test_pagetypeinfo_teawater_six_types():
    p = pagetypeinfo.parse(text(PUBLIC / "pagetypeinfo-lkml-teawater-zsmalloc-1.txt"))
    assert len(p.free) == 18 and p.pageblock_order == 9
    assert p.blocks[(0, "DMA32")]["Movable"] == 1650


def test_pagetypeinfo_capped_and_mixed():
    t = textwrap.dedent("""\
        Page block order: 9
        Pages per block:  512

        Free pages count per migrate type at order       0      1      2 
        Node    0, zone   Normal, type    Unmovable >100000     12      0 
        Node    0, zone   Normal, type      Movable      5      6      7 

        Number of blocks type     Unmovable      Movable 
        Node 0, zone   Normal           10           20 
        Number of mixed blocks    Unmovable      Movable 
        Node 0, zone   Normal            1            3 
        """)
    p = pagetypeinfo.parse(t)
    assert p.free[0].counts == (100000, 12, 0) and p.free[0].capped == (True, False, False)
    assert p.mixed_blocks[(0, "Normal")] == {"Unmovable": 1, "Movable": 3}
    assert pagetypeinfo.parse(pagetypeinfo.render(p)).free == p.free


@pytest.mark.parametrize("bad,line", [
    ("Page block order: x\n", 1),
    ("Free pages count per migrate type at order 0 1\nNode 0, zone N, type U 1\n", 2),
    ("Free pages count per migrate type at order 0 1\nNode 0, zone N, type U 1 zz\n", 2),
    ("garbage\n", 0),
    ("", 0),
    ("Page block order: 1000000000000\n", 1),
], ids=["bad order", "short row", "bad count", "garbage", "empty", "order out of range"])
def test_pagetypeinfo_malformed(bad, line):
    with pytest.raises(ParseError) as ei:
        pagetypeinfo.parse(bad, "pt")
    assert ei.value.line == line and str(ei.value).startswith("pt")


def test_buddyinfo_real():
    b = buddyinfo.parse(text(PUBLIC / "buddyinfo-procfs-1.txt"))
    assert [(r.zone, r.free[-1]) for r in b] == [("DMA", 3), ("DMA32", 0), ("Normal", 0)]
    assert b[1].free[:3] == (759, 572, 791)
    (one,) = buddyinfo.parse(text(PUBLIC / "buddyinfo-jmr540arm-1.txt"))
    assert one.free == (1, 2, 3, 2, 1, 2, 2, 5, 7, 6, 27)


@pytest.mark.parametrize("bad", ["Node 0, zone DMA 1 2\nNode 0, zone Normal 1 2 3\n",
                                 "Node 0, zone DMA 1 x\n", "Node 0 DMA 1 2\n"],
                         ids=["bucket count changes", "bad count", "no zone word"])
def test_buddyinfo_malformed(bad):
    with pytest.raises(ParseError):
        buddyinfo.parse(bad)


def test_zoneinfo_procfs_pernode_and_unpopulated():
    zs = zoneinfo.parse(text(PUBLIC / "zoneinfo-procfs-1.txt"))
    names = [z.zone for z in zs]
    assert names == ["DMA", "DMA32", "Normal", "Movable", "Device"]
    dma = zs[0]
    assert (dma.pages_free, dma.min, dma.low, dma.high, dma.managed) == (3952, 33, 41, 49, 3956)
    assert dma.protection == (0, 2877, 7826, 7826, 7826)
    assert dma.node_stats["nr_inactive_anon"] == 230981
    assert dma.stats["nr_free_pages"] == 3952 and dma.boost is None
    assert not zs[3].populated and zs[3].stats == {}


def test_zoneinfo_318_arm():
    (z,) = zoneinfo.parse(text(PUBLIC / "zoneinfo-jmr540arm-1.txt"))
    assert (z.zone, z.pages_free, z.min, z.managed, z.extra.get("scanned")) == ("Normal", 33393, 398, 41146, 0)
    assert z.stats["nr_alloc_batch"] == 76 and z.node_stats == {}


def test_zoneinfo_618_fields():
    zs = zoneinfo.parse(text(HOST / "zoneinfo"))
    n = [z for z in zs if z.zone == "Normal"][0]
    assert (n.promo, n.boost, n.cma) == (9369, 0, 0)
    assert n.stats["nr_free_pages_blocks"] == 7168


def test_zoneinfo_render_roundtrip():
    zs = zoneinfo.parse(text(HOST / "zoneinfo"))
    again = zoneinfo.parse(zoneinfo.render(zs))
    assert [(z.zone, z.pages_free, z.min, z.high, z.managed, z.protection) for z in again] == \
        [(z.zone, z.pages_free, z.min, z.high, z.managed, z.protection) for z in zs]


def test_zoneinfo_malformed():
    with pytest.raises(ParseError) as ei, pytest.warns(InputWarning, match="zi:1: skipped"):
        zoneinfo.parse("  pages free 3\n", "zi")
    assert ei.value.line == 0 and "no zones" in str(ei.value)
    # a value the kernel never prints is skipped with its line, never read as another number
    with pytest.warns(InputWarning, match=r"zi:2: 'pages free' with more than one number"):
        (z,) = zoneinfo.parse("Node 0, zone DMA\n  pages free 3776 12345\n  min 5\n", "zi")
    assert z.pages_free == 3776 and z.min == 5


def test_vmstat_real_and_bad():
    v = vmstat.parse(text(PUBLIC / "vmstat-chromeos66-1.txt"))
    assert len(v) == 150 and "nr_free_pages" in v
    old = vmstat.parse(text(PUBLIC / "vmstat-jmr540arm-1.txt"))
    assert "nr_alloc_batch" in old
    with pytest.warns(InputWarning) as rec:
        assert vmstat.parse("nr_free_pages 1\nnr_x y\n", "vm") == {"nr_free_pages": 1}
    assert [str(w.message) for w in rec] == ["vm:2: skipped: not a 'name value' line: 'nr_x y'"]
    with pytest.raises(ParseError, match="not a vmstat file"):
        vmstat.parse("nr_x y\n", "vm")


def test_meminfo_and_snmp():
    m = meminfo.parse(text(HOST / "meminfo"))
    assert m["MemTotal"] > 0
    s = snmp.parse(text(need(LAB1) / "snapshots/20261125T200043Z/net_snmp"))
    assert s["Icmp"]["OutErrors"] == 173507
    with pytest.raises(ParseError):
        snmp.parse("Ip: a b\nIp: 1\n")


def test_cross_check_buddyinfo_equals_pagetypeinfo_sum():
    for snap in sorted((need(LAB1) / "snapshots").iterdir()):
        pt = pagetypeinfo.parse((snap / "pagetypeinfo").read_text())
        bi = buddyinfo.parse((snap / "buddyinfo").read_text())
        zs = zoneinfo.parse((snap / "zoneinfo").read_text())
        vm = vmstat.parse((snap / "vmstat").read_text())
        problems = cross_check(pt, bi, zs, vm)
        if snap.name in ("20261125T200005Z", "20261125T200104Z", "20261125T200107Z"):
            assert problems == [], problems  # a quiet guest: the kernel's invariants hold exactly
        # Under the flood the files are read a moment apart: counts drift, but only a little.
        total = sum(z.pages_free or 0 for z in zs)
        assert abs(total - vm["nr_free_pages"]) < 0.02 * vm["nr_free_pages"]
        assert sum(b.free[0] for b in bi) == pytest.approx(
            sum(r.counts[0] for r in pt.free), rel=0.25)


def test_detect_and_parse_file_json_shape():
    d = parse_file(need(PUBLIC / "pagetypeinfo-chromeos66-1.txt"))
    assert d["kind"] == "pagetypeinfo" and d["pageblock_order"] == 10
    assert {"node", "zone", "type", "order", "count", "capped"} <= set(d["free"][0])
    assert {"node", "zone", "type", "count"} == set(d["blocks"][0])
    for name, kind in [("buddyinfo-chromeos66-1.txt", "buddyinfo"), ("zoneinfo-procfs-1.txt", "zoneinfo"),
                       ("vmstat-jmr540arm-1.txt", "vmstat")]:
        assert detect(text(PUBLIC / name)) == kind
    z = parse_file(PUBLIC / "zoneinfo-procfs-1.txt")["zones"][0]
    assert {"node", "zone", "populated", "pages_free", "min", "low", "high", "managed", "present"} <= set(z)


def test_every_sample_snapshot_parses():
    n = 0
    for f in SAMPLES.glob("*/snapshots/*/*"):
        parse_file(f)
        n += 1
    assert n >= 40
