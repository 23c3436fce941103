"""/proc/zoneinfo (mm/vmstat.c ``zoneinfo_show_print``): watermarks, sizes and counters per zone.

Handles per-node stats (the first populated zone of a node, ~4.8+), unpopulated zones (they stop
after ``protection:``), pagesets (skipped), and fields that came and went (``boost`` ~5.14,
``promo`` ~6.1, ``cma``, ``nr_free_pages_blocks`` 6.15+, ``reserved/free_highatomic`` ~7.x, 3.x
``scanned``). Values are pages. Fields a kernel did not print are ``None``, never 0.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from parsers._util import data_lines, read_text, skip, to_int
from parsers.errors import ParseError, warn

_HDR = re.compile(r"^Node\s+(\d+),\s+zone\s+(\S+)\s*$")
_KV = re.compile(r"^\s*([A-Za-z_][\w ]*?):?\s+(-?\d+)\s*$")
_PROT = re.compile(r"^\s*protection:\s*\(([^)]*)\)")
WMARK = ("min", "low", "high", "promo", "boost", "spanned", "present", "managed", "cma")
TAIL = ("scanned", "node_unreclaimable", "start_pfn", "reserved_highatomic", "free_highatomic",
        "all_unreclaimable", "prev_priority", "inactive_ratio")


@dataclass(slots=True)
class Zone:
    node: int
    zone: str
    pages_free: int | None = None
    min: int | None = None
    low: int | None = None
    high: int | None = None
    promo: int | None = None
    boost: int | None = None
    spanned: int | None = None
    present: int | None = None
    managed: int | None = None
    cma: int | None = None
    protection: tuple[int, ...] = ()
    stats: dict = field(default_factory=dict)
    node_stats: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @property
    def populated(self) -> bool:
        return bool(self.present) or bool(self.managed)

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("node", "zone", "pages_free", "min", "low", "high",
                                           "promo", "boost", "spanned", "present", "managed", "cma")}
        d["populated"] = self.populated
        d["protection"] = list(self.protection)
        d["nr_free_pages_blocks"] = self.stats.get("nr_free_pages_blocks")
        d.update({k: v for k, v in self.extra.items()})
        d["stats"] = dict(self.stats)
        if self.node_stats:
            d["node_stats"] = dict(self.node_stats)
        return d


def parse(text: str, path: str = "zoneinfo") -> list[Zone]:
    zones: list[Zone] = []
    z: Zone | None = None
    state = "zone"
    for i, raw in data_lines(text, path):
        m = _HDR.match(raw.strip())
        if m:
            z = Zone(int(m.group(1)), m.group(2))
            if any(o.node == z.node and o.zone == z.zone for o in zones):
                warn(path, i, "node and zone seen before (two copies in one file?)", raw.strip())
            zones.append(z)
            state = "zone"
            continue
        if z is None:
            skip(path, i, "line before the first 'Node N, zone X' header", raw)
            continue
        s = raw.strip()
        if s == "per-node stats":
            state = "pernode"
            continue
        if s == "pagesets":
            state = "pagesets"
            continue
        if s.startswith("pages free"):
            toks = s.split()[2:]
            if toks and toks[0].lstrip("-").isdigit():
                z.pages_free = to_int(toks[0], path, i, "pages free")
                if len(toks) > 1:  # the kernel prints one: the first is the count
                    warn(path, i, "'pages free' with more than one number: the first is read",
                         raw.strip())
            else:
                skip(path, i, "'pages free' without a number", raw)
            state = "zone"
            continue
        pm = _PROT.match(raw)
        if pm:
            z.protection = tuple(to_int(x.strip(), path, i, "protection")
                                 for x in pm.group(1).split(",") if x.strip())
            continue
        km = _KV.match(raw)
        if state == "pagesets":
            if km and km.group(1) in TAIL:
                z.extra[km.group(1)] = to_int(km.group(2), path, i, km.group(1))
            continue
        if not km:
            if ":" in s:  # e.g. "cpu: 0" / "vm stats threshold: 125" outside pagesets
                continue
            # RHEL 9's 5.14 kernels print one counter with an empty name: a bare number.
            skip(path, i, "a counter with no name" if s.lstrip("-").isdigit()
                 else "not a zoneinfo line", raw)
            continue
        key, val = km.group(1), to_int(km.group(2), path, i, km.group(1))
        if state == "pernode":
            z.node_stats[key] = val
        elif key in WMARK:
            setattr(z, key, val)
        elif key in TAIL:
            z.extra[key] = val
        else:
            z.stats[key] = val
    if not zones:
        raise ParseError(path, 0, "no zones found (no 'Node N, zone X' header)")
    return zones


def read(root: str | Path = "/proc") -> list[Zone]:
    return parse(read_text(root, "zoneinfo"), str(Path(root) / "zoneinfo"))


def render(zones: list[Zone]) -> str:
    """Kernel text for the fields the model knows; stats in insertion order."""
    out = []
    for z in zones:
        out.append(f"Node {z.node}, zone {z.zone:>8}\n")
        if z.node_stats:
            out.append("  per-node stats\n")
            out += [f"      {k:<12} {v}\n" for k, v in z.node_stats.items()]
        out.append(f"  pages free     {z.pages_free}\n")
        for k in ("boost", "min", "low", "high", "promo", "spanned", "present", "managed", "cma"):
            v = getattr(z, k)
            if v is not None:
                out.append(f"        {k:<8} {v}\n")
        out.append(f"        protection: ({', '.join(str(p) for p in z.protection)})\n")
        if z.populated:
            out += [f"      {k:<12} {v}\n" for k, v in z.stats.items()]
            out.append("  pagesets\n")
            for k, v in z.extra.items():
                out.append(f"  {k + ':':<20} {v}\n")
    return "".join(out)
