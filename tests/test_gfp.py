import pytest

from parsers.errors import ParseError
from parsers.gfp import decode, layout_for_release, parse_text


@pytest.mark.parametrize("text,layout,flags", [
    ("0x2080020(GFP_ATOMIC)", "L1", {"__GFP_HIGH", "__GFP_ATOMIC", "__GFP_KSWAPD_RECLAIM"}),
    ("0x1080020(GFP_ATOMIC)", "L2", {"__GFP_HIGH", "__GFP_ATOMIC", "__GFP_KSWAPD_RECLAIM"}),
    ("0x480020(GFP_ATOMIC)", "L3", {"__GFP_HIGH", "__GFP_ATOMIC", "__GFP_KSWAPD_RECLAIM"}),
    ("0xa20(GFP_ATOMIC)", "L4", {"__GFP_HIGH", "__GFP_ATOMIC", "__GFP_KSWAPD_RECLAIM"}),
    ("0x820(GFP_ATOMIC)", "L5", {"__GFP_HIGH", "__GFP_KSWAPD_RECLAIM"}),
    ("0x24000c0(GFP_KERNEL)", "L1", {"__GFP_DIRECT_RECLAIM", "__GFP_KSWAPD_RECLAIM", "__GFP_IO", "__GFP_FS"}),
    ("0x6200ca(GFP_HIGHUSER_MOVABLE)", "L3", {"__GFP_DIRECT_RECLAIM", "__GFP_KSWAPD_RECLAIM", "__GFP_IO",
                                              "__GFP_FS", "__GFP_HARDWALL", "__GFP_HIGHMEM", "__GFP_MOVABLE"}),
    ("0x2800(GFP_NOWAIT)", "L5", {"__GFP_KSWAPD_RECLAIM", "__GFP_NOWARN"}),
    ("0x1c20ca(GFP_TRANSHUGE_LIGHT)", "L5", {"__GFP_HIGHMEM", "__GFP_MOVABLE", "__GFP_IO", "__GFP_FS",
                                             "__GFP_HARDWALL", "__GFP_COMP", "__GFP_NOMEMALLOC", "__GFP_NOWARN"}),
])
def test_layouts_from_names(text, layout, flags):
    g = parse_text(text)
    assert g.layout == layout and set(g.flags) == flags and g.mismatch is None


def test_token_order_is_a_set():
    a = parse_text("0x2820(GFP_ATOMIC|__GFP_NOWARN)")
    b = parse_text("0x2820(__GFP_NOWARN|GFP_ATOMIC)")
    assert a.flags == b.flags and a.nowarn


def test_semantics():
    atomic = parse_text("0x820(GFP_ATOMIC)")
    assert not atomic.can_direct_reclaim and atomic.kswapd_reclaim and atomic.high
    assert atomic.migratetype == "Unmovable"
    thp = parse_text("0x1c20ca(GFP_TRANSHUGE_LIGHT)")
    assert not thp.can_direct_reclaim and not thp.kswapd_reclaim and thp.migratetype == "Movable"
    assert parse_text("0xcd0(GFP_KERNEL|__GFP_RECLAIMABLE)").migratetype == "Reclaimable"


def test_number_only_with_kernel_hint():
    assert set(decode(0x820, kernel="4.19.0").flags) == {"__GFP_HIGH", "__GFP_NOFAIL"}
    assert set(decode(0x820, kernel="6.6.1").flags) == {"__GFP_HIGH", "__GFP_KSWAPD_RECLAIM"}
    assert layout_for_release("6.16.3+deb13-amd64") == "L5"
    assert layout_for_release("4.9.0-5-amd64") == "L1"


def test_mismatch_is_reported():
    g = parse_text("0x820(GFP_KERNEL)")
    assert g.mismatch and "trusting the names" in g.mismatch
    assert "__GFP_DIRECT_RECLAIM" in g.flags


def test_leftover_hex_and_names_only():
    g = parse_text("0x4000820(GFP_ATOMIC|0x4000000)")
    assert g.unknown_bits == 0x4000000 and g.mismatch is None
    g = parse_text("GFP_ATOMIC|__GFP_NOWARN")
    assert g.mask == 0x2820 and g.layout == "L5"


@pytest.mark.parametrize("bad", ["", "zz", "0xZZ", "GFP_NOPE"])
def test_bad_masks(bad):
    with pytest.raises(ParseError):
        parse_text(bad)
