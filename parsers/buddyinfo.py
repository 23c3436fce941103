"""/proc/buddyinfo (mm/vmstat.c ``frag_show_print``): free blocks per order, all migratetypes.

``Node 0, zone   Normal   2345   1234 ...``: one line per populated zone, NR_PAGE_ORDERS columns
(11 on x86_64; other arches differ, so columns are counted, and must agree between lines).
https://www.kernel.org/doc/html/latest/admin-guide/mm/index.html
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from parsers._util import data_lines, last_cut, read_text, skip, to_int, unwrapped
from parsers.errors import ParseError, warn

_LINE = re.compile(r"^Node\s+(\d+),\s+zone\s+(\S+)\s+(.*)$")


@dataclass(frozen=True, slots=True)
class BuddyInfo:
    node: int
    zone: str
    free: tuple[int, ...]  # free blocks per order


def parse(text: str, path: str = "buddyinfo") -> list[BuddyInfo]:
    lines = data_lines(text, path)
    rows = unwrapped(lines)
    cut = last_cut(text, lines)
    # wrapped rows: joined at a space (a mailer's break) unless that leaves the rows' widths
    # unequal and the joins as cut (a terminal's) do not
    if all(a is None for _, _, a, _ in rows):
        return _parse(rows, path, cut, False, last=True)
    with warnings.catch_warnings(record=True) as said:  # said again if this join is kept
        warnings.simplefilter("always")
        try:
            out = _parse(rows, path, cut, False, last=False)
        except _Widths:
            out = None
    if out is None:
        return _parse(rows, path, cut, True, last=True)
    for w in said:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return out


class _Widths(Exception):
    pass


def _parse(rows, path: str, cut, tight: bool, last: bool) -> list[BuddyInfo]:
    out: list[BuddyInfo] = []
    width = None
    seen: set = set()
    for i, spaced, alt, alone in rows:
        line = alt if tight and alt is not None else spaced
        m0 = _LINE.match(alone.strip()) if alt is not None and width is not None else None
        if m0 and len(m0.group(3).split()) == width:  # whole; a stray number after it
            skip(path, i, "whole row followed by a line of numbers (not its rest)", spaced)
            line = alone
        m = _LINE.match(line.strip())
        if not m or not all(t.isdigit() for t in m.group(3).split()):
            skip(path, i, "not a buddyinfo line", line)
            continue
        counts = tuple(to_int(t, path, i, "count") for t in m.group(3).split())
        if not counts:
            skip(path, i, "no order columns", line)
            continue
        if width is not None and len(counts) != width:
            if i == cut:
                skip(path, i, "the last line is cut short", line)
                continue
            if not last:
                raise _Widths()
            raise ParseError(path, i, f"{len(counts)} order columns where earlier lines had {width}", line)
        width = len(counts)
        if (int(m.group(1)), m.group(2)) in seen:
            warn(path, i, "node and zone seen before (two copies in one file?)", line.strip())
        seen.add((int(m.group(1)), m.group(2)))
        out.append(BuddyInfo(int(m.group(1)), m.group(2), counts))
    if not out:
        raise ParseError(path, 0, "no 'Node N, zone X counts...' lines: not a buddyinfo file")
    return out


def read(root: str | Path = "/proc") -> list[BuddyInfo]:
    return parse(read_text(root, "buddyinfo"), str(Path(root) / "buddyinfo"))


def to_rows(recs: list[BuddyInfo]) -> list[dict]:
    return [{"node": r.node, "zone": r.zone, "order": o, "count": c}
            for r in recs for o, c in enumerate(r.free)]


def render(recs: list[BuddyInfo]) -> str:
    return "".join(f"Node {r.node}, zone {r.zone:>8} " + "".join(f"{c:6d} " for c in r.free) + "\n"
                   for r in recs)
