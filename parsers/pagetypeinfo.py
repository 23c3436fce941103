"""/proc/pagetypeinfo (mm/vmstat.c ``pagetypeinfo_show``): free blocks per zone x migratetype x
order, and pageblocks per zone x migratetype. Root-only since ~5.4.

Handles: any number of order columns; the ``>`` prefix of counts capped at 100000 (5.4+); both
migratetype-name eras (<=4.3 Unmovable/Reclaimable/Movable/Reserve, 4.4+ .../HighAtomic); CMA and
Isolate rows; the CONFIG_PAGE_OWNER "Number of mixed blocks" table.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from parsers._util import data_lines, last_cut, read_text, skip, to_int, unwrapped
from parsers.errors import ParseError, warn

# MAX_PAGE_ORDER is 10 on x86, up to 13-15 on arm64/ia64 with large pages: 20 bounds them all.
MAX_PAGEBLOCK_ORDER = 20
_ORDER_HDR = re.compile(r"^Free pages count per migrate type at order\s+(.*)$")
_FREE_ROW = re.compile(r"^Node\s+(\d+),\s+zone\s+(\S+),\s+type\s+(\S+)\s+(.*)$")
_BLOCK_HDR = re.compile(r"^Number of (blocks|mixed blocks)(?: type)?\s+(.*)$")
_BLOCK_ROW = re.compile(r"^Node\s+(\d+),\s+zone\s+(\S+)\s+(.*)$")


@dataclass(frozen=True, slots=True)
class FreeRow:
    node: int
    zone: str
    type: str
    counts: tuple[int, ...]
    capped: tuple[bool, ...]


@dataclass(frozen=True, slots=True)
class PageTypeInfo:
    pageblock_order: int | None
    pages_per_block: int | None
    free: tuple[FreeRow, ...]
    blocks: dict = field(default_factory=dict)        # (node, zone) -> {type: count}
    mixed_blocks: dict = field(default_factory=dict)  # CONFIG_PAGE_OWNER only

    @property
    def orders(self) -> int:
        return len(self.free[0].counts) if self.free else 0

    def free_pages(self, node: int, zone: str, mtype: str | None = None) -> int:
        return sum(c << o for r in self.free if r.node == node and r.zone == zone
                   and (mtype is None or r.type == mtype) for o, c in enumerate(r.counts))


_TYPES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "Reserve", "CMA", "Isolate")


def _wrapped_types(types: list, line: str) -> bool:
    """The rest of a block table's header that a wrap put on a line of its own (``Isolate``,
    or ``ic`` after ``HighAtom``): added to ``types``. False for any other line."""
    toks = line.split()
    if not toks or any(t not in _TYPES for t in toks[1:]):
        return False
    if toks[0] in _TYPES:
        types += toks
    elif types[-1] + toks[0] in _TYPES:
        types[-1] += toks[0]
        types += toks[1:]
    else:
        return False
    return True


def parse(text: str, path: str = "pagetypeinfo") -> PageTypeInfo:
    pbo = ppb = None
    orders = None
    free: list[FreeRow] = []
    tables: dict[str, dict] = {"blocks": {}, "mixed blocks": {}}
    table = None
    types: list[str] = []
    seen: set = set()
    lines = data_lines(text, path)
    cut = last_cut(text, lines)
    for i, raw, alt, alone in unwrapped(lines):
        line = raw.strip()
        if line.startswith("Page block order:"):
            pbo = to_int(line.split(":", 1)[1].strip(), path, i, "page block order")
            if not 0 <= pbo <= MAX_PAGEBLOCK_ORDER:
                raise ParseError(path, i, f"page block order beyond 0..{MAX_PAGEBLOCK_ORDER}", line)
            continue
        if line.startswith("Pages per block:"):
            ppb = to_int(line.split(":", 1)[1].strip(), path, i, "pages per block")
            if not 0 < ppb <= 1 << MAX_PAGEBLOCK_ORDER:
                raise ParseError(path, i, "pages per block out of range", line)
            continue
        m = _ORDER_HDR.match(line)
        if m:
            cols = m.group(1).split()
            if alt is not None and cols != [str(k) for k in range(len(cols))]:
                cols = _ORDER_HDR.match(alt.strip()).group(1).split()  # cut through a number
            orders = [to_int(c, path, i, "order") for c in cols]
            if orders != list(range(len(orders))) or len(orders) > MAX_PAGEBLOCK_ORDER + 1:
                raise ParseError(path, i, "order columns are not 0..N", line)
            table = None
            continue
        m = _BLOCK_HDR.match(line)
        if m:
            table = m.group(1)
            types = m.group(2).split()
            continue
        if table is not None and types and _wrapped_types(types, line):
            continue
        if table is None:
            m = _FREE_ROW.match(line)
            if not m:
                skip(path, i, "not a pagetypeinfo line", raw)
                continue
            toks = m.group(4).split()
            if orders is None:
                # the rows without their header (a grep of the file): the columns are orders
                warn(path, i, "no order header: the columns are taken as orders 0..N", raw.strip())
                orders = list(range(len(toks)))
            if alt is not None and len(_FREE_ROW.match(alone.strip()).group(4).split()) == len(orders):
                skip(path, i, "whole row followed by a line of numbers (not its rest)", raw)
                toks = _FREE_ROW.match(alone.strip()).group(4).split()
            elif len(toks) != len(orders) and alt is not None:
                toks = _FREE_ROW.match(alt.strip()).group(4).split()
            if len(toks) != len(orders):
                if i == cut:
                    skip(path, i, "the last line is cut short", raw)
                    continue
                raise ParseError(path, i, f"{len(toks)} counts for {len(orders)} orders", raw)
            capped = tuple(t.startswith(">") for t in toks)
            counts = tuple(to_int(t.lstrip(">"), path, i, "count") for t in toks)
            key = (int(m.group(1)), m.group(2), m.group(3))
            if key in seen:
                warn(path, i, "node, zone and type seen before (two copies in one file?): "
                              "their counts are added", raw.strip())
            seen.add(key)
            free.append(FreeRow(key[0], key[1], key[2], counts, capped))
        else:
            m = _BLOCK_ROW.match(line)
            if not m:
                skip(path, i, "not a block-count line", raw)
                continue
            toks = m.group(3).split()
            whole = _BLOCK_ROW.match(alone.strip())
            if alt is not None and whole and len(whole.group(3).split()) == len(types):
                skip(path, i, "whole row followed by a line of numbers (not its rest)", raw)
                toks = whole.group(3).split()
            elif len(toks) != len(types) and alt is not None:
                toks = _BLOCK_ROW.match(alt.strip()).group(3).split()
            if len(toks) != len(types):
                if i == cut:
                    skip(path, i, "the last line is cut short", raw)
                    continue
                raise ParseError(path, i, f"{len(toks)} block counts for {len(types)} types", raw)
            tables[table][(int(m.group(1)), m.group(2))] = {
                t: to_int(v, path, i, "block count") for t, v in zip(types, toks)}
    if not free and not tables["blocks"]:
        raise ParseError(path, 0, "no pagetypeinfo tables found")
    if pbo is None and ppb:
        pbo = ppb.bit_length() - 1
    if ppb is None and pbo is not None:
        ppb = 1 << pbo
    if pbo is not None and free and len(free[0].counts) <= pbo:
        warn(path, 0, f"{len(free[0].counts)} order columns but page block order {pbo}: a "
                      f"kernel prints more; are the rows cut short?", "")
    return PageTypeInfo(pbo, ppb, tuple(free), tables["blocks"], tables["mixed blocks"])


def read(root: str | Path = "/proc") -> PageTypeInfo:
    return parse(read_text(root, "pagetypeinfo"), str(Path(root) / "pagetypeinfo"))


def free_rows(p: PageTypeInfo) -> list[dict]:
    return [{"node": r.node, "zone": r.zone, "type": r.type, "order": o, "count": c,
             "capped": cap}
            for r in p.free for o, (c, cap) in enumerate(zip(r.counts, r.capped))]


def block_rows(p: PageTypeInfo, mixed: bool = False) -> list[dict]:
    t = p.mixed_blocks if mixed else p.blocks
    return [{"node": n, "zone": z, "type": ty, "count": c}
            for (n, z), d in t.items() for ty, c in d.items()]


def render(p: PageTypeInfo) -> str:
    """The kernel's own text (``%6lu`` columns), used by the model to emit bundles."""
    n = p.orders or 11
    out = [f"Page block order: {p.pageblock_order}\n", f"Pages per block:  {p.pages_per_block}\n",
           "\n", f"{'Free pages count per migrate type at order':<43} "
           + "".join(f"{o:6d} " for o in range(n)) + "\n"]
    for r in p.free:
        out.append(f"Node {r.node:4d}, zone {r.zone:>8}, type {r.type:>12} "
                   + "".join(f"{'>' if cap else ''}{c:6d} " for c, cap in zip(r.counts, r.capped))
                   + "\n")
    if p.blocks:
        types = list(next(iter(p.blocks.values())).keys())
        out.append(f"\n{'Number of blocks type ':<23}" + "".join(f"{t:>12} " for t in types) + "\n")
        for (node, zone), d in p.blocks.items():
            out.append(f"Node {node}, zone {zone:>8} " + "".join(f"{d[t]:12d} " for t in types) + "\n")
    return "".join(out)
