"""GFP mask decoding across kernel generations.

The kernel prints a mask as ``0xa20(GFP_ATOMIC)``: a number whose bit layout changed five times
(kernel.md §2.2) and a ``%pGg`` rendering whose composite names are greedy and whose token order
changed in ~6.14. We trust the symbolic names (an unordered set), pick the bit layout whose
definitions reproduce the number, and say so when the two disagree.

Layouts: L0 <= 4.3 (``__GFP_WAIT`` era, from memory), L1 4.4-4.9, L2 4.10-4.14, L3 4.15-5.0,
L4 5.1-6.2, L5 6.3+.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from parsers.errors import ParseError

# Single-flag bit values per layout. Names are the kernel's own.
_COMMON = {
    "__GFP_DMA": 0x1, "__GFP_HIGHMEM": 0x2, "__GFP_DMA32": 0x4, "__GFP_MOVABLE": 0x8,
    "__GFP_HIGH": 0x20, "__GFP_IO": 0x40, "__GFP_FS": 0x80,
}

LAYOUTS: dict[str, dict[str, int]] = {
    # <= 4.3: __GFP_WAIT is direct reclaim, kswapd is woken unless __GFP_NO_KSWAPD. [M]
    "L0": {**_COMMON, "__GFP_WAIT": 0x10, "__GFP_COLD": 0x100, "__GFP_NOWARN": 0x200,
           "__GFP_REPEAT": 0x400, "__GFP_NOFAIL": 0x800, "__GFP_NORETRY": 0x1000,
           "__GFP_MEMALLOC": 0x2000, "__GFP_COMP": 0x4000, "__GFP_ZERO": 0x8000,
           "__GFP_NOMEMALLOC": 0x10000, "__GFP_HARDWALL": 0x20000, "__GFP_THISNODE": 0x40000,
           "__GFP_RECLAIMABLE": 0x80000, "__GFP_KMEMCG": 0x100000, "__GFP_NOTRACK": 0x200000,
           "__GFP_NO_KSWAPD": 0x400000, "__GFP_OTHER_NODE": 0x800000, "__GFP_WRITE": 0x1000000},
    "L1": {**_COMMON, "__GFP_RECLAIMABLE": 0x10, "__GFP_COLD": 0x100, "__GFP_NOWARN": 0x200,
           "__GFP_REPEAT": 0x400, "__GFP_NOFAIL": 0x800, "__GFP_NORETRY": 0x1000,
           "__GFP_MEMALLOC": 0x2000, "__GFP_COMP": 0x4000, "__GFP_ZERO": 0x8000,
           "__GFP_NOMEMALLOC": 0x10000, "__GFP_HARDWALL": 0x20000, "__GFP_THISNODE": 0x40000,
           "__GFP_ATOMIC": 0x80000, "__GFP_ACCOUNT": 0x100000, "__GFP_NOTRACK": 0x200000,
           "__GFP_DIRECT_RECLAIM": 0x400000, "__GFP_OTHER_NODE": 0x800000,
           "__GFP_WRITE": 0x1000000, "__GFP_KSWAPD_RECLAIM": 0x2000000},
    "L2": {**_COMMON, "__GFP_RECLAIMABLE": 0x10, "__GFP_COLD": 0x100, "__GFP_NOWARN": 0x200,
           "__GFP_RETRY_MAYFAIL": 0x400, "__GFP_NOFAIL": 0x800, "__GFP_NORETRY": 0x1000,
           "__GFP_MEMALLOC": 0x2000, "__GFP_COMP": 0x4000, "__GFP_ZERO": 0x8000,
           "__GFP_NOMEMALLOC": 0x10000, "__GFP_HARDWALL": 0x20000, "__GFP_THISNODE": 0x40000,
           "__GFP_ATOMIC": 0x80000, "__GFP_ACCOUNT": 0x100000, "__GFP_NOTRACK": 0x200000,
           "__GFP_DIRECT_RECLAIM": 0x400000, "__GFP_WRITE": 0x800000,
           "__GFP_KSWAPD_RECLAIM": 0x1000000, "__GFP_NOLOCKDEP": 0x2000000},
    "L3": {**_COMMON, "__GFP_RECLAIMABLE": 0x10, "__GFP_WRITE": 0x100, "__GFP_NOWARN": 0x200,
           "__GFP_RETRY_MAYFAIL": 0x400, "__GFP_NOFAIL": 0x800, "__GFP_NORETRY": 0x1000,
           "__GFP_MEMALLOC": 0x2000, "__GFP_COMP": 0x4000, "__GFP_ZERO": 0x8000,
           "__GFP_NOMEMALLOC": 0x10000, "__GFP_HARDWALL": 0x20000, "__GFP_THISNODE": 0x40000,
           "__GFP_ATOMIC": 0x80000, "__GFP_ACCOUNT": 0x100000, "__GFP_DIRECT_RECLAIM": 0x200000,
           "__GFP_KSWAPD_RECLAIM": 0x400000, "__GFP_NOLOCKDEP": 0x800000},
    "L4": {**_COMMON, "__GFP_RECLAIMABLE": 0x10, "__GFP_ZERO": 0x100, "__GFP_ATOMIC": 0x200,
           "__GFP_DIRECT_RECLAIM": 0x400, "__GFP_KSWAPD_RECLAIM": 0x800, "__GFP_WRITE": 0x1000,
           "__GFP_NOWARN": 0x2000, "__GFP_RETRY_MAYFAIL": 0x4000, "__GFP_NOFAIL": 0x8000,
           "__GFP_NORETRY": 0x10000, "__GFP_MEMALLOC": 0x20000, "__GFP_COMP": 0x40000,
           "__GFP_NOMEMALLOC": 0x80000, "__GFP_HARDWALL": 0x100000, "__GFP_THISNODE": 0x200000,
           "__GFP_ACCOUNT": 0x400000, "__GFP_ZEROTAGS": 0x800000,
           "__GFP_SKIP_KASAN_POISON": 0x1000000, "__GFP_NOLOCKDEP": 0x8000000},
    "L5": {**_COMMON, "__GFP_RECLAIMABLE": 0x10, "__GFP_ZERO": 0x100,
           "__GFP_DIRECT_RECLAIM": 0x400, "__GFP_KSWAPD_RECLAIM": 0x800, "__GFP_WRITE": 0x1000,
           "__GFP_NOWARN": 0x2000, "__GFP_RETRY_MAYFAIL": 0x4000, "__GFP_NOFAIL": 0x8000,
           "__GFP_NORETRY": 0x10000, "__GFP_MEMALLOC": 0x20000, "__GFP_COMP": 0x40000,
           "__GFP_NOMEMALLOC": 0x80000, "__GFP_HARDWALL": 0x100000, "__GFP_THISNODE": 0x200000,
           "__GFP_ACCOUNT": 0x400000, "__GFP_ZEROTAGS": 0x800000,
           # 6.3-6.9 fixed values; 6.10+ assigns these only when configured (kernel.md §2.2).
           "__GFP_SKIP_ZERO": 0x1000000, "__GFP_SKIP_KASAN": 0x2000000,
           "__GFP_NOLOCKDEP": 0x4000000},
}

LAYOUT_RELEASES = {"L0": "<=4.3", "L1": "4.4-4.9", "L2": "4.10-4.14", "L3": "4.15-5.0",
                   "L4": "5.1-6.2", "L5": "6.3+"}
_NEWEST_FIRST = ["L5", "L4", "L3", "L2", "L1", "L0"]

# Composites as sets of single flags, per layout (kernel.md §2.3).
_RECLAIM = ("__GFP_DIRECT_RECLAIM", "__GFP_KSWAPD_RECLAIM")


def _composites(layout: str) -> dict[str, tuple[str, ...]]:
    if layout == "L0":
        wait = ("__GFP_WAIT",)
        kernel = wait + ("__GFP_IO", "__GFP_FS")
        user = kernel + ("__GFP_HARDWALL",)
        return {
            "GFP_ATOMIC": ("__GFP_HIGH",), "GFP_NOWAIT": (), "GFP_NOIO": wait,
            "GFP_NOFS": wait + ("__GFP_IO",), "GFP_KERNEL": kernel,
            "GFP_TEMPORARY": kernel + ("__GFP_RECLAIMABLE",), "GFP_USER": user,
            "GFP_HIGHUSER": user + ("__GFP_HIGHMEM",),
            "GFP_HIGHUSER_MOVABLE": user + ("__GFP_HIGHMEM", "__GFP_MOVABLE"),
            "GFP_TRANSHUGE": user + ("__GFP_HIGHMEM", "__GFP_MOVABLE", "__GFP_COMP",
                                     "__GFP_NOMEMALLOC", "__GFP_NORETRY", "__GFP_NOWARN",
                                     "__GFP_NO_KSWAPD"),
            "GFP_DMA": ("__GFP_DMA",), "GFP_DMA32": ("__GFP_DMA32",),
        }
    atomic = ("__GFP_HIGH", "__GFP_KSWAPD_RECLAIM") + (("__GFP_ATOMIC",) if layout != "L5" else ())
    kernel = _RECLAIM + ("__GFP_IO", "__GFP_FS")
    user = kernel + ("__GFP_HARDWALL",)
    hum = user + ("__GFP_HIGHMEM", "__GFP_MOVABLE")
    light = tuple(f for f in hum + ("__GFP_COMP", "__GFP_NOMEMALLOC", "__GFP_NOWARN")
                  if f not in _RECLAIM)
    out = {
        "GFP_ATOMIC": atomic, "GFP_NOWAIT": ("__GFP_KSWAPD_RECLAIM",),
        "GFP_NOIO": _RECLAIM, "GFP_NOFS": _RECLAIM + ("__GFP_IO",), "GFP_KERNEL": kernel,
        "GFP_KERNEL_ACCOUNT": kernel + ("__GFP_ACCOUNT",), "GFP_USER": user,
        "GFP_HIGHUSER": user + ("__GFP_HIGHMEM",), "GFP_HIGHUSER_MOVABLE": hum,
        "GFP_TRANSHUGE_LIGHT": light, "GFP_TRANSHUGE": light + ("__GFP_DIRECT_RECLAIM",),
        "GFP_DMA": ("__GFP_DMA",), "GFP_DMA32": ("__GFP_DMA32",), "__GFP_RECLAIM": _RECLAIM,
        "GFP_TEMPORARY": kernel + ("__GFP_RECLAIMABLE",),
    }
    return out


COMPOSITES = {lay: _composites(lay) for lay in LAYOUTS}
# 6.8+ GFP_NOWAIT also carries __GFP_NOWARN; both spellings decode (see decode()).
_NOWAIT_68 = ("__GFP_KSWAPD_RECLAIM", "__GFP_NOWARN")

MIGRATETYPES = ("Unmovable", "Movable", "Reclaimable")


@dataclass(frozen=True, slots=True)
class Gfp:
    """A decoded GFP mask. ``flags`` are single ``__GFP_*`` flags, composites expanded."""
    mask: int | None
    names: tuple[str, ...]
    layout: str | None
    flags: frozenset[str]
    unknown_bits: int = 0
    mismatch: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def migratetype(self) -> str:
        mov, rec = "__GFP_MOVABLE" in self.flags, "__GFP_RECLAIMABLE" in self.flags
        return "Movable" if mov and not rec else "Reclaimable" if rec and not mov else "Unmovable"

    @property
    def can_direct_reclaim(self) -> bool:
        return "__GFP_DIRECT_RECLAIM" in self.flags or "__GFP_WAIT" in self.flags

    @property
    def kswapd_reclaim(self) -> bool:
        if self.layout == "L0":
            return "__GFP_NO_KSWAPD" not in self.flags
        return "__GFP_KSWAPD_RECLAIM" in self.flags

    @property
    def high(self) -> bool:
        return "__GFP_HIGH" in self.flags

    @property
    def nowarn(self) -> bool:
        return "__GFP_NOWARN" in self.flags

    @property
    def canonical_mask(self) -> int:
        """The mask in the 6.3+ layout (L5), for the allocator model."""
        return to_mask(self.flags, "L5")

    def to_dict(self) -> dict:
        return {
            "mask": self.mask, "hex": None if self.mask is None else hex(self.mask),
            "names": list(self.names), "layout": self.layout,
            "layout_releases": LAYOUT_RELEASES.get(self.layout or ""),
            "flags": sorted(self.flags), "unknown_bits": self.unknown_bits,
            "migratetype": self.migratetype, "can_direct_reclaim": self.can_direct_reclaim,
            "kswapd_reclaim": self.kswapd_reclaim, "high": self.high, "nowarn": self.nowarn,
            "mismatch": self.mismatch, "notes": list(self.notes),
        }


def to_mask(flags, layout: str) -> int:
    bits = LAYOUTS[layout]
    return sum(bits.get(f, 0) for f in set(flags))


def expand(names, layout: str) -> tuple[frozenset[str], int, list[str]]:
    """Expand printed names into single flags. Returns (flags, hex leftovers, unknown names)."""
    comps = COMPOSITES[layout]
    flags: set[str] = set()
    extra = 0
    unknown = []
    for n in names:
        if n.startswith("0x"):
            extra |= int(n, 16)
        elif n in comps:
            flags.update(comps[n])
        elif n in LAYOUTS[layout]:
            flags.add(n)
        else:
            unknown.append(n)
    return frozenset(flags), extra, unknown


def layout_for_release(release: str | None) -> str | None:
    """The bit layout of a kernel release string such as ``6.16.3+deb13-amd64``."""
    if not release:
        return None
    m = re.match(r"\s*(\d+)\.(\d+)", release)
    if not m:
        return None
    v = (int(m.group(1)), int(m.group(2)))
    if v <= (4, 3):
        return "L0"
    if v <= (4, 9):
        return "L1"
    if v <= (4, 14):
        return "L2"
    if v <= (5, 0):
        return "L3"
    if v <= (6, 2):
        return "L4"
    return "L5"


_TOKEN = re.compile(r"^(0x[0-9a-fA-F]+|\d+)?\s*(?:\((.*)\))?\s*$")


def split_text(text: str) -> tuple[int | None, list[str]]:
    """``0xa20(GFP_ATOMIC|__GFP_NOWARN)`` / ``GFP_ATOMIC|__GFP_NOWARN`` / ``0x820`` -> (mask, names)."""
    t = text.strip()
    if not t:
        raise ValueError("empty GFP mask")
    if re.fullmatch(r"[A-Za-z_0-9x|\s]+", t) and not re.fullmatch(r"0x[0-9a-fA-F]+|\d+", t):
        names = [n.strip() for n in t.split("|") if n.strip()]
        return None, names
    m = _TOKEN.match(t)
    if not m or (m.group(1) is None and m.group(2) is None):
        raise ValueError(f"not a GFP mask: {text!r}")
    mask = int(m.group(1), 0) if m.group(1) else None
    names = [n.strip() for n in (m.group(2) or "").split("|") if n.strip()]
    return mask, names


def decode(mask: int | None, names=(), kernel: str | None = None,
           layout: str | None = None) -> Gfp:
    """Decode a mask and/or its printed names. ``kernel`` (a release) or ``layout`` hints the era."""
    names = tuple(names)
    hint = layout or layout_for_release(kernel)
    notes: list[str] = []
    if names:
        candidates = []
        for lay in _NEWEST_FIRST:
            flags, extra, unknown = expand(names, lay)
            if unknown:
                continue
            value = to_mask(flags, lay) | extra
            candidates.append((lay, flags, extra, value))
        if not candidates:
            # Names from no table we know: keep them, decode by number with the hint.
            notes.append("unrecognised GFP names: " + ", ".join(names))
            return _decode_number(mask, names, hint or "L5", notes)
        if mask is None:
            lay, flags, extra, value = next((c for c in candidates if c[0] == hint), candidates[0])
            return Gfp(value, names, lay, flags, extra, None, tuple(notes))
        matching = [c for c in candidates if c[3] == mask]
        # GFP_NOWAIT gained __GFP_NOWARN in 6.8: its text is the same, the number is not.
        if not matching and "GFP_NOWAIT" in names:
            for lay, flags, extra, value in candidates:
                if lay == "L5" and (value | LAYOUTS["L5"]["__GFP_NOWARN"]) == mask:
                    matching.append((lay, flags | {"__GFP_NOWARN"}, extra, mask))
        if matching:
            pick = next((c for c in matching if c[0] == hint), matching[0])
            lay, flags, extra, _ = pick
            if hint and pick[0] != hint:
                notes.append(f"names and number fit layout {lay} ({LAYOUT_RELEASES[lay]}), "
                             f"not the kernel's {hint}")
            return Gfp(mask, names, lay, flags, extra, None, tuple(notes))
        lay, flags, extra, value = next((c for c in candidates if c[0] == hint), candidates[0])
        msg = (f"number {mask:#x} does not match names {'|'.join(names)} in any layout "
               f"(in {lay} the names give {value:#x}); trusting the names")
        return Gfp(mask, names, lay, flags, extra, msg, tuple(notes))
    if mask is None:
        raise ValueError("nothing to decode")
    return _decode_number(mask, names, hint, notes)


def _decode_number(mask: int, names, hint: str | None, notes: list[str]) -> Gfp:
    if mask is None:
        return Gfp(None, tuple(names), hint, frozenset(), 0, None, tuple(notes))
    lay = hint
    if lay is None:
        # No names, no release: the newest layout that explains every bit.
        lay = next((cand for cand in _NEWEST_FIRST if _leftover(mask, cand) == 0), "L5")
        notes.append(f"layout {lay} ({LAYOUT_RELEASES[lay]}) guessed from the number alone")
    bits = LAYOUTS[lay]
    flags = frozenset(n for n, b in bits.items() if mask & b == b)
    return Gfp(mask, tuple(names), lay, flags, _leftover(mask, lay), None, tuple(notes))


def _leftover(mask: int, layout: str) -> int:
    known = 0
    for b in LAYOUTS[layout].values():
        known |= b
    return mask & ~known


def parse_text(text: str, kernel: str | None = None, *, path: str = "<gfp>", line: int = 0) -> Gfp:
    """Decode user input such as ``0xa20(GFP_ATOMIC)``; raises ParseError on nonsense."""
    try:
        mask, names = split_text(text)
        g = decode(mask, names, kernel)
    except ValueError as err:
        raise ParseError(path, line, str(err), text) from err
    if g.flags == frozenset() and g.names and any(n not in ("GFP_NOWAIT",) for n in g.names) \
            and g.notes and g.notes[0].startswith("unrecognised"):
        raise ParseError(path, line, g.notes[0], text)
    return g


# %pGg table order since ~6.14: composites, then single flags in bit order (kernel.md §2.1).
_RENDER_COMPOSITES = ("GFP_TRANSHUGE", "GFP_TRANSHUGE_LIGHT", "GFP_HIGHUSER_MOVABLE", "GFP_HIGHUSER",
                      "GFP_USER", "GFP_KERNEL_ACCOUNT", "GFP_KERNEL", "GFP_NOFS", "GFP_ATOMIC",
                      "GFP_NOIO", "GFP_NOWAIT", "GFP_DMA", "GFP_DMA32", "__GFP_RECLAIM")


def render(mask: int, layout: str = "L5") -> str:
    """``%pGg`` text of a mask: greedy composites, then single flags, then leftover hex."""
    bits = LAYOUTS[layout]
    comps = dict(COMPOSITES[layout])
    if layout == "L5":
        comps["GFP_NOWAIT"] = _NOWAIT_68
    names = []
    rest = mask
    for name in _RENDER_COMPOSITES:
        flags = comps.get(name)
        if not flags:
            continue
        m = to_mask(flags, layout)
        if m and rest & m == m:
            names.append(name)
            rest &= ~m
    for name, b in sorted(bits.items(), key=lambda kv: kv[1]):
        if rest & b == b:
            names.append(name)
            rest &= ~b
    if rest:
        names.append(hex(rest))
    return "|".join(names)
