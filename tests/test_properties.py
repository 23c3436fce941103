"""Property tests: junk never crashes a parser, headers are never lost, render/parse round-trips."""
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers import buddyinfo, pagetypeinfo, vmstat, zoneinfo
from parsers.dmesg import parse_text
from parsers.errors import ParseError
from parsers.pagetypeinfo import FreeRow, PageTypeInfo

HEADERS = [
    "SLUB: Unable to allocate memory on node -1, gfp=0xa20(GFP_ATOMIC)",
    "SLUB: Unable to allocate memory on CPU 3 (of node 0) on node -1, gfp=0x820(GFP_ATOMIC)",
    "SLUB: Unable to allocate memory on node 0 (gfp=0x20)",
    "swapper/0: page allocation failure: order:0, mode:0x40820(GFP_ATOMIC|__GFP_COMP), nodemask=(null),cpuset=/,mems_allowed=0",
    "kworker/1:2: page allocation failure: order:3, mode:0x480020(GFP_ATOMIC), nodemask=(null)",
]
junk_line = st.text(alphabet=string.printable.replace("\n", "").replace("\r", ""), max_size=80)
settings.register_profile("ci", max_examples=150, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")


@given(st.binary(max_size=3000))
def test_random_bytes_never_crash(data):
    res = parse_text(data.decode("utf-8", "replace"))
    assert res.summary()["lines"] >= 0


@given(st.lists(st.one_of(junk_line, st.sampled_from(HEADERS).map(lambda h: "HDR" + h)), max_size=60),
       st.sampled_from(["", "[  12.345678] ", "Nov 25 10:00:00 h kernel: ", "> ", "4,1,100,-;"]))
def test_headers_are_never_lost(items, prefix):
    lines = []
    expected_slub = expected_page = 0
    for it in items:
        if it.startswith("HDR"):
            h = it[3:]
            expected_slub += h.startswith("SLUB")
            expected_page += "page allocation failure" in h
            lines.append(prefix + h)
        else:
            # junk that cannot itself form a header
            lines.append(prefix + it.replace("SLUB", "S").replace("page alloc", "p"))
    s = parse_text("\n".join(lines)).summary()
    assert s["slub_reports"] == expected_slub
    assert s["page_alloc_reports"] == expected_page


@given(st.lists(st.tuples(st.sampled_from(["DMA", "DMA32", "Normal", "HighMem"]),
                          st.lists(st.integers(0, 10**7), min_size=11, max_size=11)),
                min_size=1, max_size=4))
def test_buddyinfo_roundtrip(rows):
    recs = [buddyinfo.BuddyInfo(0, z, tuple(c)) for z, c in rows]
    assert buddyinfo.parse(buddyinfo.render(recs)) == recs


@given(st.integers(1, 14), st.lists(st.sampled_from(["Unmovable", "Movable", "Reclaimable", "HighAtomic",
                                                    "CMA", "Isolate"]), min_size=1, max_size=6, unique=True),
       st.data())
def test_pagetypeinfo_roundtrip(norders, types, data):
    rows = tuple(FreeRow(0, "Normal", t,
                         tuple(data.draw(st.lists(st.integers(0, 10**6), min_size=norders, max_size=norders))),
                         (False,) * norders) for t in types)
    blocks = {(0, "Normal"): {t: data.draw(st.integers(0, 10**5)) for t in types}}
    p = PageTypeInfo(9, 512, rows, blocks)
    q = pagetypeinfo.parse(pagetypeinfo.render(p))
    assert q.free == p.free and q.blocks == p.blocks and q.pageblock_order == 9


@given(st.dictionaries(st.from_regex(r"[a-z][a-z_]{0,20}", fullmatch=True), st.integers(0, 2**63), min_size=1))
def test_vmstat_roundtrip(d):
    assert vmstat.parse(vmstat.render(d)) == d


@given(st.text(max_size=500))
def test_proc_parsers_raise_only_parse_error(t):
    for mod in (buddyinfo, pagetypeinfo, vmstat, zoneinfo):
        try:
            mod.parse(t)
        except ParseError:
            pass


def test_nul_bytes_and_giant_line(tmp_path):
    from parsers.dmesg import parse_log
    p = tmp_path / "junk.log"
    with open(p, "wb") as fh:
        fh.write(b"\0\0\xff\xfe garbage\n")
        fh.write(b"x" * (50 << 20) + b"\n")
        fh.write(b"[ 1.0] SLUB: Unable to allocate memory on node -1, gfp=0xa20(GFP_ATOMIC)\n")
    s = parse_log(p).summary()
    assert s["slub_reports"] == 1 and s["lines"] == 3
