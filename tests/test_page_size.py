"""Page size is a fact of the host's bundle, not a 4 KiB literal: a real 4 KiB lab bundle, and
the same bundle rewritten as a 64 KiB-page host (arm64), flow through the model and analyzer."""
import dataclasses
import re
import shutil

import pytest

from analyzer.attribution import snapshot_state
from analyzer.metrics import bundle_view
from analyzer.observe import from_mem_info
from analyzer.observe import from_snapshot as observed
from models.calibrate import observe
from models.emit import meminfo_block
from models.engine import Z_FREE
from models.state import from_snapshot
from parsers.bundle import load, page_size, pageblock_order
from parsers.dmesg import parse_text
from tests.conftest import HOST618, LAB1, SAMPLES, need

LIVE618 = SAMPLES / "live-6.18-x86_64-collect"

SCALE = 16  # 64 KiB / 4 KiB


def _as_64k(src, dst):
    """The same page counts on a 64 KiB-page host: every meminfo kB value 16x, huge pages of
    PMD size 512 MiB. zoneinfo and pagetypeinfo count pages and stay as they are."""
    shutil.copytree(src, dst)

    def scale(m):
        val = 524288 if m.group(1) == "Hugepagesize" else int(m.group(3)) * SCALE
        return f"{m.group(1)}:{m.group(2)}{val} kB"

    for f in dst.glob("snapshots/*/meminfo"):
        f.write_text(re.sub(r"^([\w()]+):(\s+)(\d+) kB$", scale, f.read_text(), flags=re.M))
    return dst


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    big = _as_64k(need(LAB1), tmp_path_factory.mktemp("arm64") / "bundle")
    return need(LAB1), big


def test_page_size_rules():
    # MemFree kB over the zones' free pages, within 10 % of a size (the files are read apart)
    assert page_size({"MemFree": 60 * 1000}, [], {"nr_free_pages": 1000}) == 65536
    assert page_size({"MemFree": 17 * 1000}, [], {"nr_free_pages": 1000}) == 16384
    # a ratio near no size is no evidence: the huge page size decides
    assert page_size({"MemFree": 23 * 1000, "Hugepagesize": 2048}, [],
                     {"nr_free_pages": 1000}) == 4096
    # without free counts: the PMD size, PAGE_SIZE**2 / 8
    assert page_size({"Hugepagesize": 2048}, None) == 4096
    assert page_size({"Hugepagesize": 32768}, None) == 16384
    assert page_size({"Hugepagesize": 524288}, None) == 65536
    assert page_size({"Hugepagesize": 1048576}, None) == 4096  # default_hugepagesz=1G on x86
    assert page_size(None, None) == 4096
    assert page_size({"MemFree": -4, "Hugepagesize": 32768}, [], {"nr_free_pages": 1}) == 16384
    assert [pageblock_order(s) for s in (4096, 16384, 65536)] == [9, 11, 13]


@pytest.mark.parametrize("sample", [LAB1, HOST618, LIVE618])
def test_real_x86_bundles_have_4k_pages(sample):
    # the 6.18 VM's meminfo shows 24 GB free over 4 GB of zone pages: still 4 KiB
    with load(need(sample), parse_logs=False) as b:
        assert {(s.page_size, s.pageblock_order) for s in b.snapshots} == {(4096, 9)}


def test_4k_bundle(bundles):
    with load(bundles[0]) as b:
        snap = b.snapshots[-1]
        assert (snap.page_size, snap.pageblock_order) == (4096, 9)
        st = from_snapshot(snap.pagetypeinfo, snap.zoneinfo, meminfo=snap.meminfo)
        assert st.spec.page_size == 4096
        assert observed(snap).page_kb == 4


def test_64k_bundle_flows_through(bundles):
    small, big = bundles
    with load(small) as b4, load(big) as b64:
        s4, s64 = b4.snapshots[-1], b64.snapshots[-1]
        assert s64.page_size == 65536
        # the order pagetypeinfo reports wins; without it, the 64 KiB PMD order
        assert s64.pageblock_order == s64.pagetypeinfo.pageblock_order == 9
        bare = dataclasses.replace(s64, pagetypeinfo=dataclasses.replace(
            s64.pagetypeinfo, pageblock_order=None))
        assert bare.pageblock_order == 13

        st4 = from_snapshot(s4.pagetypeinfo, s4.zoneinfo, meminfo=s4.meminfo)
        st64 = from_snapshot(s64.pagetypeinfo, s64.zoneinfo, meminfo=s64.meminfo)
        assert st64.spec.page_size == 65536
        m4, m64 = st4.free_mb_by_migratetype(), st64.free_mb_by_migratetype()
        assert m64["Movable"] == pytest.approx(m4["Movable"] * SCALE, rel=1e-3)

        # attribution: free memory in other migratetypes, in MiB
        a4, a64 = snapshot_state(s4), snapshot_state(s64)
        assert a4["free_mib_other_types"] > 100
        assert a64["free_mib_other_types"] == pytest.approx(a4["free_mib_other_types"] * SCALE,
                                                            rel=1e-3)
        assert a64["free_mib"] == pytest.approx(a4["free_mib"] * SCALE, rel=1e-3)
        assert a64["free_pageblocks"] == a4["free_pageblocks"]

        # calibration's observed free memory
        o4, o64 = observe(b4), observe(b64)
        assert o64.free_mb == pytest.approx(o4.free_mb * SCALE, rel=1e-6)

    # metrics exported in bytes
    v4, v64 = bundle_view(str(small)), bundle_view(str(big))
    assert (v4.page_size, v64.page_size) == (4096, 65536)


def test_emitted_mem_info_64k(bundles):
    """The model's Mem-Info for a 64 KiB host reads back as 64 KiB pages."""
    with load(bundles[1]) as b:
        s = b.snapshots[-1]
        st = from_snapshot(s.pagetypeinfo, s.zoneinfo, meminfo=s.meminfo)
    lines = ["[   10.000000] swapper/0: page allocation failure: order:0, mode:0x820(GFP_ATOMIC), "
             "nodemask=(null),cpuset=/,mems_allowed=0"]
    lines += meminfo_block(st.nr_free, st.zs, st.lowmem, 2, 10.0, st.npages, st.spec.page_size)
    ev = next(e for e in parse_text("\n".join(lines) + "\n").events if e.get("zones"))
    obs = from_mem_info(ev)
    assert (obs.page_kb, obs.pageblock_order) == (64, 13)
    assert int(obs.zs[:, Z_FREE].sum()) == int(st.zs[:, Z_FREE].sum())
