"""Kernel log -> allocation-failure records (kernel.md §1).

Records assembled here:

* ``slub``: ``slab_out_of_memory()`` reports (``SLUB: Unable to allocate memory on ...``, all three
  header forms), with the ``cache:`` line, the optional debugging line and ``node N:`` lines;
* ``page_alloc``: ``warn_alloc()`` / ``warn_alloc_failed()`` ``page allocation failure`` reports
  (2.6 period form, <=4.5 plain mask, 4.6+ ``%pGg``, 4.10-4.20 separate cpuset line, 5.0+ one line)
  with their Mem-Info block: global counters, node lines, zone lines, ``lowmem_reserve[]`` and
  buddy lines with migratetype letters;
* ``oom``, ``vmalloc`` and ``stall`` reports are counted apart, so that their Mem-Info is not taken
  for an allocation failure's.

``<func>: N callbacks suppressed`` lines are summed per function; ``** N printk messages dropped **``
is counted. Every header seen becomes a record; a record whose parts could not be assembled is
``partial``. Lines are streamed in chunks and ordinary stretches are skipped with ``bytes.find``,
so memory stays bounded and most of a large log is never decoded.
"""
from __future__ import annotations

import binascii
import contextlib
import functools
import gc
import io
import json
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from parsers import gfp as gfpmod
from parsers.errors import ParseError
from parsers.framing import ExportReader, Framer, split_midline
from parsers.grepscan import GrepHits, Lost
from parsers.logio import (LineError, PrettyJson, Upto, cr_only, decodes_ahead, head_of,
                           iter_chunks, journal_json, json_strings, open_binary, prefetched,
                           quoted_printable, rewritten, sniff)
from parsers.scan import Candidates

# Anything that can start or feed a record. Chunks without any of these are skipped unread.
# "allocat" covers SLUB, warn_alloc, vmalloc and stall headers; "Linux version" marks each boot.
# "Unable" and "failure" keep a header that a wrap cut inside "allocat" (the scan starts one line
# early, so the wrapped head is read too).
TRIGGERS = (b"allocat", b"suppressed", b"Mem-", b"invoked oom-killer", b"messages dropped",
            b"Linux version", b"Unable", b"failure")

_SLUB = re.compile(
    r"SLUB: Unable to allocate memory on (?:CPU (\d+) \(of node (-?\d+)\) on )?node (-?\d+)"
    r"(?:, gfp=| \(gfp=)(0x[0-9a-fA-F]+)(?:\(([^)]*)\))?")
_SLUB_LOOSE = re.compile(r"SLUB: Unable to allocate memory")
_CACHE = re.compile(r"^\s*cache: (.+?),\s*object size:\s*(\d+),\s*buffer size:\s*(\d+),\s*"
                    r"default order:\s*(\d+),\s*min order:\s*(\d+)")
# The start of a cache or node line whose rest a mailer or terminal wrapped onto the next line.
_SLUB_CUT = re.compile(r"^\s*(?:cache:(?:\s|$)|node\s+\d+:)")
_SLUB_DEBUG = re.compile(r"^\s*(\S+) debugging increased min order")
_SLUB_NODE = re.compile(r"^\s*node\s+(\d+):\s*slabs:\s*(\d+),\s*objs:\s*(\d+),\s*free:\s*(\d+)")
_PAGE = re.compile(
    r"page allocation failure[:.] order:(-?\d+)(\d*\*\d+kB\s*)?,? ?(?:mode:?\s?(0x[0-9a-fA-F]+)"
    r"(?:\(([^)]*)\))?)?")
_COMM_START = re.compile(r"^(\S(?:.{0,15}?)): (?:page allocation|vmalloc)")
_COMM_ANY = re.compile(r"([^\s\]]{1,64}): (?:page allocation|vmalloc)")
_NODEMASK = re.compile(r"nodemask=([^,\s]+)")
_CPUSET_INLINE = re.compile(r"cpuset=([^,\s]*),mems_allowed=(\S+)")
_CPUSET_LINE = re.compile(r"^(\S.*?) cpuset=(\S*) mems_allowed=(\S+)")
_STALL = re.compile(r"page allocation stalls? for (\d+)ms, order:(\d+)")
# 4.12-5.x: "vmalloc: allocation failure, allocated N of M bytes" (a partial area)
_VMALLOC = re.compile(r"vmalloc(?: error: size (\d+)|: allocation failure: (\d+) bytes|"
                      r": allocation failure, allocated \d+ of (\d+) bytes)")
_OOM = re.compile(r"(\S{1,64}) invoked oom-killer: (?:gfp_mask=(0x[0-9a-fA-F]+)(?:\(([^)]*)\))?)?"
                  r"(?:.*?order=(-?\d+))?")
_SUPPRESSED = re.compile(r"(\w{1,64}): (\d+) callbacks suppressed")
_DROPPED = re.compile(r"\*\* (\d+) printk messages dropped \*\*\s?")
# Two CPUs' headers in one line are cut apart here, each with the comm just before it.
_HEADERS = re.compile(r"(?:[\w/:.@#+\-]{1,15}: )?(?:page allocation failure|SLUB: Unable to allocate)")
_LINUX_VERSION = re.compile(r"Linux version (\S+)")
# 2.6's dump_stack printed "Pid: 52, comm: kswapd0 Not tainted 2.6.32-431.el6.x86_64 #1"
_CPU_LINE = re.compile(r"(?:CPU: \d+ (?:UID: \d+ )?PID: \d+ Comm: |Pid: \d+, comm: )"
                       r".*?(?:Not tainted|Tainted: .*?) (\d+\.\d+\S*) #")
_CPU_COMM = re.compile(r"[Cc]omm: (\S.{0,14}?) (?:Not tainted|Tainted:)")
_MEMINFO = re.compile(r"^\s*Mem-[Ii]nfo:")
_KV = re.compile(r"([A-Za-z_()?]{1,64}):\s?(-?\d+)(kB|KB)?")
_COUNTERS = re.compile(r"^\s*[a-z_]+:\d+(?: [a-z_]+:\d+)*\s*$")
_NODE_LINE = re.compile(r"^\s*Node (\d+) (?:active_anon|inactive_anon):")
_ZONE_LINE = re.compile(r"^\s*(?:Node (\d+) )?(DMA32|DMA|Normal|HighMem|Movable|Device) free:(\d+)kB")
_LOWMEM = re.compile(r"^\s*lowmem_reserve\[\]:((?:\s+-?\d+)*)")
_BUDDY = re.compile(r"^\s*(?:Node (\d+) )?(DMA32|DMA|Normal|HighMem|Movable|Device): "
                    r"(?=\d+\*\d+kB)")
_BUDDY_TOK = re.compile(r"(\d+)\*(\d+)kB\s*(?:\(([A-Z]+)\))?")
_BUDDY_TOTAL = re.compile(r"= ?(\d+)kB")
_BUDDY_FRAGMENT = re.compile(r"^\s*(?:\(([A-Z]+)\)\s*)?(?:\d+\*\d+kB)")
_MEMINFO_END = re.compile(r"^\s*\d+ pages (?:hwpoisoned|reserved)")
_RECORD_START = re.compile(r"SLUB: Unable|page allocation|invoked oom-killer|Mem-[Ii]nfo|"
                           r"^\s*(?:Node \d+ )?(?:DMA32|DMA|Normal|HighMem|Movable|Device)(?: free:|: \d)|"
                           r"^\s*lowmem_reserve|^\s*(?:cache|node \d+): ")

# A line that ends in the first words of a header was cut there: its rest is on the next line.
_HEAD_TAIL = re.compile(r"(?:^|[\s\]:])(?:%s" % "|".join(
    re.escape(p[:k]) for p in ("SLUB: Unable to allocate memory on", "page allocation failure: order:")
    for k in range(len(p), 0, -1)) + r"|Linux version)$")

# A kernel line is at most ~1 KiB; rsyslog's #012 joins a whole Mem-Info into a few. Longer
# is junk: its head is read, the rest is not searched.
MAX_LOGICAL = 1 << 16

STALE_LINES = 400  # a record still waiting for its Mem-Info after this many lines is closed
# Valid ranges, decided once: a value outside them is a malformed field (the record is partial),
# never a number to compute with.
MAX_ORDER = 20                # MAX_PAGE_ORDER is 10 on x86, at most ~15 elsewhere
MAX_COUNT = 1 << 53           # counts, sizes in kB, suppressed and dropped messages
MAX_GFP = (1 << 40) - 1

ZONE_KEYS = {"free": "free_kb", "boost": "boost_kb", "min": "min_kb", "low": "low_kb",
             "high": "high_kb", "reserved_highatomic": "reserved_highatomic_kb",
             "free_highatomic": "free_highatomic_kb", "present": "present_kb",
             "managed": "managed_kb", "free_pcp": "free_pcp_kb", "free_cma": "free_cma_kb",
             "mlocked": "mlocked_kb"}


# A record already rendered as the UTF-8 JSON the ``parse`` command writes for it (see
# ``parse_log(raw_json=True)``): the fast path's SLUB reports and suppression lines, which then
# never exist as dicts. Dict records are never bytes.
RawJson = bytes


_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
_KR_NULL = b', "kernel_release": null, "node_requested": '


def _utf8(text: str) -> bytes:
    # a file name that is not UTF-8 keeps its bytes, as stdout's surrogateescape writes them
    return text.encode("utf-8", "surrogateescape")


@dataclass
class ParseResult:
    """What one or more logs said. ``events`` are dicts in product.md §4's shape."""
    events: list = field(default_factory=list)
    slub_reports: int = 0
    page_alloc_reports: int = 0
    oom_reports: int = 0
    vmalloc_reports: int = 0
    stall_reports: int = 0
    suppressed: dict = field(default_factory=dict)
    suppressions: list = field(default_factory=list)
    printk_dropped: int = 0
    printk_dropped_lines: int = 0
    orphan_meminfo: int = 0
    malformed_lines: int = 0     # a count or stamp out of range: the line is counted, not used
    internal_errors: list = field(default_factory=list)   # {"source", "line", "error"}
    lines: int = 0
    kernel_release: str | None = None
    kernel_release_source: str | None = None
    first_time_s: float | None = None
    last_time_s: float | None = None
    first_time_wall: str | None = None
    last_time_wall: str | None = None
    sources: list = field(default_factory=list)
    formats: dict = field(default_factory=dict)
    boots: list = field(default_factory=list)   # every "Linux version" line: a boot

    @property
    def partial_records(self) -> int:
        # RawJson records (the fast path's) are never partial
        return sum(1 for e in self.events if type(e) is not RawJson and e["partial"])

    def summary(self) -> dict:
        sup = self.suppressed
        slub_sup = sup.get("slab_out_of_memory", 0)
        page_sup = sup.get("warn_alloc", 0) + sup.get("warn_alloc_failed", 0)
        return {
            "slub_reports": self.slub_reports,
            "page_alloc_reports": self.page_alloc_reports,
            "oom_reports": self.oom_reports,
            "vmalloc_reports": self.vmalloc_reports,
            "stall_reports": self.stall_reports,
            "suppressed": dict(sorted(sup.items())),
            "slub_failures_estimated": self.slub_reports + slub_sup,
            "page_alloc_failures_estimated": self.page_alloc_reports + page_sup,
            "partial_records": self.partial_records,
            "printk_dropped": self.printk_dropped,
            "orphan_meminfo": self.orphan_meminfo,
            "malformed_lines": self.malformed_lines,
            "internal_errors": len(self.internal_errors),
            "lines": self.lines,
            "kernel_release": self.kernel_release,
            "first_time_s": self.first_time_s,
            "last_time_s": self.last_time_s,
            "first_time_wall": self.first_time_wall,
            "last_time_wall": self.last_time_wall,
        }

    def merge(self, other: "ParseResult") -> None:
        self.events.extend(other.events)
        for name in ("slub_reports", "page_alloc_reports", "oom_reports", "vmalloc_reports",
                     "stall_reports", "printk_dropped", "printk_dropped_lines",
                     "orphan_meminfo", "malformed_lines", "lines"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for k, v in other.suppressed.items():
            self.suppressed[k] = self.suppressed.get(k, 0) + v
        self.suppressions.extend(other.suppressions)
        self.internal_errors.extend(other.internal_errors)
        self.sources.extend(other.sources)
        self.boots.extend(other.boots)
        if other.kernel_release and not self.kernel_release:
            self.kernel_release = other.kernel_release
            self.kernel_release_source = other.kernel_release_source
        for a, pick in (("first_time_s", min), ("last_time_s", max)):
            vals = [v for v in (getattr(self, a), getattr(other, a)) if v is not None]
            setattr(self, a, pick(vals) if vals else None)
        for a, pick in (("first_time_wall", min), ("last_time_wall", max)):
            vals = [v for v in (getattr(self, a), getattr(other, a)) if v is not None]
            setattr(self, a, pick(vals) if vals else None)
        self.formats.update(other.formats)


def _in_range(v, lo: int, hi: int) -> bool:
    return v is None or (not isinstance(v, bool) and isinstance(v, int) and lo <= v <= hi)


def _nheads(text: str) -> int:
    """Headers whole enough to be read as one (what ``_logical`` would start a record for)."""
    return len(_SLUB_LOOSE.findall(text)) + len(_PAGE.findall(text)) if "allocat" in text else 0


_WHOLE = (_SLUB, _PAGE, _CACHE, _SLUB_NODE, _SUPPRESSED, _ZONE_LINE, _BUDDY_TOK)
# Words a report's lines are made of: a terminal's cut through one of them (GFP_ATO|MIC,
# presen|t:, 2048k|B) is undone without a space, where a mailer's break between words is not.
_WORDS = frozenset(
    [n for lay in gfpmod.LAYOUTS.values() for n in lay] + list(gfpmod.COMPOSITES["L5"])
    + list(ZONE_KEYS) + ["active_anon", "inactive_anon", "isolated_anon", "active_file",
                         "inactive_file", "isolated_file", "unevictable", "dirty", "writeback",
                         "slab_reclaimable", "slab_unreclaimable", "mapped", "shmem",
                         "pagetables", "sec_pagetables", "bounce", "kernel_stack", "local_pcp",
                         "writeback_tmp", "shmem_thp", "shmem_pmdmapped", "anon_thp",
                         "all_unreclaimable", "lowmem_reserve", "isolated", "nodemask", "cpuset",
                         "mems_allowed", "hwpoisoned", "pagecache", "swapcache", "reserved"])
_CUT_HEAD = re.compile(r"[\w]+$")
_CUT_TAIL = re.compile(r"^[\w]+")
_SIZE_WORD = re.compile(r"\d+kB")
_OPEN_AFTER = re.compile(r"(?:0x[0-9a-fA-F]+|[a-z_]*[a-jl-z_])$")  # not after "kB"
_COUNT_STAR = re.compile(r"\d*\*\d")
_TYPES_OPEN = re.compile(r"\d+kB \([UMERHCI]+$")
_TYPES_CLOSE = re.compile(r"^[UMERHCI]+\)")


def _word(w: str) -> bool:
    return w in _WORDS or _SIZE_WORD.fullmatch(w) is not None


def _rejoin(prev: str, cont: str, column: bool = False) -> str:
    """A wrapped line put back together. A mailer wraps at a space (and may drop it), a terminal
    cuts at a column, through a word or a number. Joined without a space where the text says
    the cut was not at one (a known word made whole, punctuation that never follows a space);
    otherwise whichever join makes more of the known line shapes whole wins, and on a tie a
    cut after ``key:`` or between digits is taken as a column's."""
    spaced = prev.rstrip() + " " + cont.strip()
    tight = prev + cont.rstrip()
    if spaced == tight:
        return spaced
    end = prev[-64:]  # the suffix patterns look at the cut only (a line may be 64 KiB)
    a, b = _CUT_HEAD.search(end), _CUT_TAIL.match(cont[:64])
    if ((a and b and _word(a.group() + b.group()) and not (_word(a.group()) and _word(b.group())))
            or (_TYPES_OPEN.search(end) and _TYPES_CLOSE.match(cont))     # a buddy entry's (ME)
            or (cont[:1] in (")", ",", "]", ":", "*", "/") and prev[-1:] not in (" ", ","))
            or prev[-1:] in ("(", "=", "[", "/", "*")
            or (cont[:1] == "(" and _OPEN_AFTER.search(end))    # mask(names, isolated(anon)
            or (prev[-1:].isdigit() and _COUNT_STAR.match(cont))):       # 67|4*512kB
        return tight

    def score(t):
        n = sum(1 for r in _WHOLE if r.search(t)) + _nheads(t)
        if "ainted" in t and _CPU_LINE.search(t):
            n += 1
        m = _PAGE.search(t)
        return n + (m is not None and m.group(3) is not None)
    st, ss = score(tight), score(spaced)
    if st != ss:
        return tight if st > ss else spaced
    # a mailer breaks after "key:" or between numbers too, dropping the space; only lines cut
    # at a known column say it was a terminal's cut through them
    return tight if column and (prev[-1:] == ":" or (prev[-1:].isdigit() and cont[:1].isdigit())) \
        else spaced


def check_ranges(ev: dict) -> None:
    """Values outside what a kernel can print become missing fields of a partial record, so
    that nothing downstream computes with them."""
    bad = []
    for key, lo, hi in (("order", 0, MAX_ORDER), ("default_order", 0, MAX_ORDER),
                        ("min_order", 0, MAX_ORDER), ("object_size", 0, MAX_COUNT),
                        ("buffer_size", 0, MAX_COUNT), ("gfp_mask", 0, MAX_GFP),
                        ("node_requested", -1, 1 << 16)):
        if not _in_range(ev.get(key), lo, hi):
            ev[key] = None
            bad.append(key)
    nodes = [n for n in ev.get("nodes", ()) if _in_range(n.get("node"), 0, 1 << 16)
             and all(_in_range(v, 0, MAX_COUNT) for k, v in n.items() if k != "fields_kb")]
    if len(nodes) != len(ev.get("nodes", ())):
        ev["nodes"] = nodes
        bad.append("nodes")
    for n in nodes:
        f = n.get("fields_kb")
        if f and not all(_in_range(v, -MAX_COUNT, MAX_COUNT) for v in f.values()):
            n["fields_kb"] = {k: v for k, v in f.items() if _in_range(v, -MAX_COUNT, MAX_COUNT)}
            bad.append("node fields")
    for z in ev.get("zones", ()):
        for k, v in list(z.items()):
            if k.endswith("_kb") and not _in_range(v, 0, MAX_COUNT):
                z[k] = None
                bad.append(f"{z.get('zone')} {k}")
        buddy = [b for b in z.get("buddy", ()) if _in_range(b["count"], 0, MAX_COUNT)
                 and _in_range(b["size_kb"], 1, MAX_COUNT) and _in_range(b.get("order"), 0, MAX_ORDER)]
        if len(buddy) != len(z.get("buddy", ())):
            z["buddy"] = buddy
            bad.append(f"{z.get('zone')} buddy")
        if not all(_in_range(v, -MAX_COUNT, MAX_COUNT) for v in z.get("lowmem_reserve", ())):
            z["lowmem_reserve"] = []
            bad.append(f"{z.get('zone')} lowmem_reserve")
    counters = ev.get("counters")
    if counters and not all(_in_range(v, -MAX_COUNT, MAX_COUNT) for v in counters.values()):
        ev["counters"] = {k: v for k, v in counters.items() if _in_range(v, -MAX_COUNT, MAX_COUNT)}
        bad.append("counters")
    if bad:
        ev["missing"] = ev.get("missing", []) + [f"out of range: {b}" for b in bad]
        ev["partial"] = True


@functools.lru_cache(maxsize=1024)
def _decode_cached(mask, names, kernel, layout):
    return gfpmod.decode(mask, names, kernel=kernel, layout=layout)


class _Record:
    __slots__ = ("ev", "caller", "last_line", "meminfo", "closed_meminfo", "kind", "zone_index",
                 "expect_cpuset")

    def __init__(self, ev: dict, caller, line: int, kind: str):
        self.ev = ev
        self.caller = caller
        self.last_line = line
        self.meminfo = False
        self.closed_meminfo = False
        self.kind = kind
        self.zone_index: dict = {}
        self.expect_cpuset = kind in ("page_alloc", "oom")


def _event(kind: str, source: str, line: int, time_s, wall, caller) -> dict:
    return {"kind": kind, "source": source, "line": line, "time_s": time_s, "time_wall": wall,
            "caller": caller, "gfp_mask": None, "gfp_text": None, "gfp_flags": [],
            "gfp_layout": None, "order": None, "migratetype": None, "cache": None,
            "object_size": None, "buffer_size": None, "default_order": None, "min_order": None,
            "nodes": [], "comm": None, "zones": [], "partial": True, "missing": [],
            "kernel_release": None}


class LogParser:
    """Streaming assembler for one log. ``feed_line`` takes a physical line; ``finish`` closes."""

    def __init__(self, source: str, kernel_hint: str | None = None, year: int | None = None,
                 raw_json: bool = False):
        self.source = source
        self.raw_json = raw_json    # the fast path's records as RawJson, not dicts
        self.res = ParseResult(sources=[source])
        self.framer = Framer(year)
        self.first_framer: Framer | None = None
        self.kernel_hint = kernel_hint
        self.open: dict = {}        # caller id (or None) -> open page_alloc/oom/... record
        self.last: _Record | None = None
        self.slubs: dict = {}       # caller id (or None) -> open SLUB record
        self.has_callers = False
        self.framed_seen = 0
        self.prev_text: str | None = None
        self.prev_ctx = None
        self.raw_len = 0            # the last physical line's length
        self.cut_lens: dict = {}    # physical lengths of lines a continuation was glued to
        self.max_len = 0            # the longest physical line so far
        self.n = 0                  # logical lines seen: staleness is counted in these
        self.fast_bodies: dict = {}  # a fast SLUB report's gfp and cache lines -> what they say
        self.raw_null_kr = False    # RawJson records were rendered before the release was known
        self.boots_seen = 0
        self.cut = False            # the last line stopped mid-field: the next may be its rest
        self.line_no = 0

    # -- state -------------------------------------------------------------------------------
    def idle(self) -> bool:
        return not self.open and not self.slubs and not self.cut

    def _close(self, rec: _Record) -> None:
        ev = rec.ev
        if "_gfp" in ev:
            self._set_gfp(ev, *ev.pop("_gfp"))
        check_ranges(ev)
        if rec.kind == "page_alloc":
            missing = ev["missing"]
            if ev["gfp_mask"] is None:
                missing.append("gfp")
            if ev["comm"] is None:
                missing.append("comm")
            if not ev["zones"]:
                missing.append("mem_info" if not rec.meminfo else "zones")
            else:
                if not any(z.get("buddy") for z in ev["zones"]):
                    missing.append("buddy")
            ev["partial"] = bool(missing)
        elif rec.kind == "slub":
            if ev["cache"] is None:
                ev["missing"].append("cache")
            if ev["gfp_mask"] is None and "out of range: gfp_mask" not in ev["missing"]:
                ev["missing"].append("gfp")
            ev["partial"] = bool(ev["missing"])
        for k in [k for k, r in self.open.items() if r is rec]:
            del self.open[k]
        for k in [k for k, r in self.slubs.items() if r is rec]:
            del self.slubs[k]
        if self.last is rec:
            self.last = None

    def _target(self, caller) -> _Record | None:
        if caller is not None and self.has_callers:
            return self.open.get(caller)
        return self.last

    # -- per line ----------------------------------------------------------------------------
    def feed_line(self, raw: str, line_no: int) -> None:
        self.line_no = line_no
        try:
            self._feed_line(raw, line_no)
        except Exception as e:  # a bug of ours must cost one record, never the whole log
            self._internal_error(e, line_no)

    def _internal_error(self, e: Exception, line_no: int) -> None:
        """Keep the record being read as a partial one with the error in ``missing``, count it,
        and start afresh with the next line."""
        what = f"{type(e).__name__}: {e}"
        self.res.internal_errors.append({"source": self.source, "line": line_no, "error": what})
        recs = {id(r): r for r in list(self.open.values()) + list(self.slubs.values())
                + [self.last] if r is not None}
        for rec in recs.values():
            rec.ev.setdefault("missing", []).append(f"internal error at line {line_no}: {what}")
            try:
                self._close(rec)
            except Exception:
                rec.ev["partial"] = True
        self.open.clear()
        self.slubs.clear()
        self.last = None
        self.cut = False

    def _feed_line(self, raw: str, line_no: int) -> None:
        prev_len, self.raw_len = self.raw_len, len(raw.rstrip("\r\n"))
        self.max_len = max(self.max_len, prev_len)
        if not raw or raw == "\n":
            return  # an empty line carries nothing (and must not age an open record)
        if len(raw) > MAX_LOGICAL:
            raw = raw[:MAX_LOGICAL]
        if "messages dropped" in raw:
            raw = self._dropped(raw)
            if not raw.strip():
                return
        for text, time_s, wall, caller, framed in self.framer.frame(raw):
            if framed:
                self.framed_seen += 1
                pieces = split_midline(text) if "[" in text[1:] else [text]
                for i, piece in enumerate(pieces):
                    if i == 0:
                        self._logical(piece, line_no, time_s, wall, caller)
                    else:
                        for t2, ts2, w2, c2, _ in self.framer.frame(piece):
                            self._logical(t2, line_no, ts2, w2, c2)
            else:
                # An unstamped line in a stamped file that does not start with white space was
                # wrapped by a mailer or terminal: glue it back unless it starts something. In
                # any file, the rest of a line that stopped mid-field is glued back too.
                pieces = split_midline(text) if "[" in text[1:] else [text]
                first = pieces[0]
                # Lines cut at a column (a terminal, fold -w) are all as long as the longest,
                # where a mailer's vary: once two rests were glued to lines of that length, a
                # cut at a space leaves that one space at the start of the rest (util-linux
                # indents a record's own lines by a stamp's width), and a cut after "key:" or
                # between digits was through a field.
                # A one-space rest after a line as long as the longest so far (60+) is such a
                # cut already: a serial console's indented line follows a shorter one.
                at_width = prev_len == self.max_len and prev_len >= 60
                column = at_width and self.cut_lens.get(prev_len, 0) >= 2
                if (self.prev_text is not None and first.strip()
                        and (self.cut or (self.framed_seen and (
                            first[:1] not in (" ", "\t")
                            or (at_width and first[:1] == " " and first[1:2] not in (" ", "\t")))))
                        and not _RECORD_START.search(first)):
                    self.cut_lens[prev_len] = self.cut_lens.get(prev_len, 0) + 1
                    self._relogical(_rejoin(self.prev_text, first, column), line_no)
                else:
                    ctx = self.prev_ctx or (None, None, None)
                    self._logical(first, line_no, ctx[0], ctx[1], ctx[2], framed=False)
                for piece in pieces[1:]:
                    for t2, ts2, w2, c2, _ in self.framer.frame(piece):
                        self._logical(t2, line_no, ts2, w2, c2)

    def _relogical(self, text: str, line_no: int) -> None:
        """Re-interpret the previous logical line after a wrapped continuation was glued on. A
        header the cut had split in two is only now whole: it is read as a new one."""
        ctx = self.prev_ctx or (None, None, None)
        new_header = _nheads(text) > _nheads(self.prev_text or "")
        self._logical(text, line_no, ctx[0], ctx[1], ctx[2], replace=not new_header)

    def _logical(self, text: str, line_no: int, time_s, wall, caller, framed=True,
                 replace=False) -> None:
        res = self.res
        if not replace:
            heads = [m.start() for m in _HEADERS.finditer(text)] if "allocat" in text else ()
            if len(heads) > 1:
                # Two CPUs wrote at once: each header is read with the text up to the next.
                for a, b in zip([0] + heads[1:], heads[1:] + [len(text)]):
                    self._logical(text[a:b], line_no, time_s, wall, caller, framed)
                return
        self.cut = False
        self.n += 1
        before = self.prev_text  # what a glued rest was joined to
        if not replace:
            self.prev_text = text
            self.prev_ctx = (time_s, wall, caller)
            if time_s is not None:
                if res.first_time_s is None:
                    res.first_time_s = time_s
                res.last_time_s = time_s
            if wall is not None:
                if res.first_time_wall is None:
                    res.first_time_wall = wall
                res.last_time_wall = wall
        else:
            self.prev_text = text
        if caller is not None:
            self.has_callers = True
        # Headers first: any of them may share a line with junk from another CPU.
        if "Unable to allocate" in text:
            m = _SLUB.search(text)
            if m or _SLUB_LOOSE.search(text):
                if not m:
                    self.cut = True
                if not replace:
                    self._slub_header(m, text, line_no, time_s, wall, caller)
                elif m and self.slubs:
                    self._slub_fill(list(self.slubs.values())[-1].ev, m)
                return
        if "page allocation" in text:
            if _STALL.search(text):
                if not replace:
                    self._other_header("stall", line_no, caller)
                    res.stall_reports += 1
                return
            m = _PAGE.search(text)
            if m:
                self.cut = m.group(3) is None and not text[m.end():].strip()
                if not replace:
                    self._page_header(m, text, line_no, time_s, wall, caller)
                elif self.last and self.last.kind == "page_alloc":
                    self._page_fill(self.last.ev, m, text)
                return
        if "oom-killer" in text:
            m = _OOM.search(text)
            if m and not replace:
                rec = self._other_header("oom", line_no, caller)
                rec.ev["comm"] = m.group(1)
                rec.ev["order"] = int(m.group(4)) if m.group(4) else None
                res.oom_reports += 1
                return
        if "vmalloc" in text and not replace:
            m = _VMALLOC.search(text)
            if m:
                self._other_header("vmalloc", line_no, caller)
                res.vmalloc_reports += 1
                return
        if "callbacks suppressed" in text:
            m = _SUPPRESSED.search(text)
            if m and not replace and int(m.group(2)) > MAX_COUNT:
                res.malformed_lines += 1
                return
            if m and not replace:
                func, n = m.group(1), int(m.group(2))
                res.suppressed[func] = res.suppressed.get(func, 0) + n
                res.suppressions.append({"func": func, "count": n, "line": line_no,
                                         "time_s": time_s, "time_wall": wall,
                                         "source": self.source})
                return
        if "Linux version" in text and (not replace or not _LINUX_VERSION.search(
                before or "")):  # (a wrap right after "Linux version": read it now)
            m = _LINUX_VERSION.search(text)
            if m:
                res.boots.append({"source": self.source, "line": line_no, "release": m.group(1),
                                  "time_wall": wall})
                if self.boots_seen and m.group(1) != self.kernel_hint:
                    self.kernel_hint = m.group(1)  # a reboot into another kernel
                self.boots_seen += 1
            if m and res.kernel_release is None:
                res.kernel_release = m.group(1)
                res.kernel_release_source = "log"
                if not self.kernel_hint:
                    self.kernel_hint = m.group(1)
        tail = text[-40:].rstrip()
        if tail[-1:].isalpha() or tail[-1:] == ":":
            self.cut = self.cut or bool(_HEAD_TAIL.search(tail))
        # SLUB continuation lines.
        srec = None
        if self.slubs:
            if self.has_callers and caller is not None:
                srec = self.slubs.get(caller)
            elif len(self.slubs) > 1:
                srec = self._interleaved(text)
            else:
                srec = list(self.slubs.values())[-1]
        if srec is not None:
            ev = srec.ev
            m = _SLUB_NODE.match(text)
            if m:
                ev["nodes"].append({"node": int(m.group(1)), "slabs": int(m.group(2)),
                                    "objs": int(m.group(3)), "free": int(m.group(4))})
                srec.last_line = self.n
                return
            m = _CACHE.match(text)
            if m:
                ev["cache"] = m.group(1)
                ev["object_size"], ev["buffer_size"] = int(m.group(2)), int(m.group(3))
                ev["default_order"], ev["min_order"] = int(m.group(4)), int(m.group(5))
                srec.last_line = self.n
                return
            m = _SLUB_DEBUG.match(text)
            if m:
                ev["slub_debug"] = True
                srec.last_line = self.n
                return
            if _SLUB_CUT.match(text):
                self.cut = True  # wrapped mid-field: its rest comes on the next line
                srec.last_line = self.n
                return
            if text.strip():
                for r in ([srec] if len(self.slubs) < 2 or self.has_callers
                          else list(self.slubs.values())):
                    self._close(r)
        rec = self._target(caller)
        if rec is None:
            if _MEMINFO.match(text):
                res.orphan_meminfo += 1
            return
        self._record_line(rec, text, line_no)
        if rec.kind != "slub" and not rec.closed_meminfo and self.n - rec.last_line > STALE_LINES:
            self._close(rec)

    def _interleaved(self, text: str):
        """Of several SLUB records open at once, the one a body line goes to: the latest, as
        for a report whose own body was lost; but a second cache line, or a second line of a
        node it has, shows two reports' bodies interleaved, and what it took before goes to
        the first open record that lacks it."""
        recs = list(self.slubs.values())
        last = recs[-1]
        m = _SLUB_NODE.match(text)
        if m:
            node = int(m.group(1))
            have = [j for j, n in enumerate(last.ev["nodes"]) if n["node"] == node]
            if have:
                for r in recs[:-1]:
                    if all(n["node"] != node for n in r.ev["nodes"]):
                        r.ev["nodes"].append(last.ev["nodes"].pop(have[0]))
                        break
        elif last.ev.get("cache") is not None and _CACHE.match(text):
            for r in recs[:-1]:
                if r.ev.get("cache") is None:
                    for key in ("cache", "object_size", "buffer_size", "default_order",
                                "min_order"):
                        r.ev[key] = last.ev.get(key)
                    break
        return last

    def _dropped(self, text: str) -> str:
        """Count ``** N printk messages dropped **`` wherever it was glued; the rest of the line
        is still read."""
        for m in _DROPPED.finditer(text):
            n = int(m.group(1))
            if n > MAX_COUNT:
                self.res.malformed_lines += 1
                continue
            self.res.printk_dropped += n
            self.res.printk_dropped_lines += 1
        return _DROPPED.sub("", text)

    # -- headers -----------------------------------------------------------------------------
    def _register(self, rec: _Record, caller) -> None:
        key = caller if self.has_callers else None
        if rec.kind == "slub":
            if key is None and self.slubs and all(
                    r.ev.get("cache") is None and not r.ev["nodes"] for r in self.slubs.values()):
                # two CPUs' headers in a row, their bodies to follow interleaved (no caller ids
                # to tell them apart): both stay open, each body line to the first that lacks it
                self.slubs[("interleaved", id(rec))] = rec
                return
            for old in ([self.slubs.get(key)] if key is not None else list(self.slubs.values())):
                if old is not None:
                    self._close(old)
            self.slubs[key] = rec
            return
        old = self.open.get(key) if key is not None else self.last
        if old is not None and old is not rec:
            self._close(old)
        for s in [s for k, s in self.slubs.items() if k == key or key is None]:
            self._close(s)
        self.open[key] = rec
        self.last = rec

    def _slub_header(self, m, text, line_no, time_s, wall, caller) -> None:
        ev = _event("slub", self.source, line_no, time_s, wall, caller)
        self.res.slub_reports += 1
        self.res.events.append(ev)
        rec = _Record(ev, caller, self.n, "slub")
        if m:
            self._slub_fill(ev, m)
        self._register(rec, caller)

    def _slub_fill(self, ev, m) -> None:
        if m.group(1) is not None:
            ev["cpu"] = int(m.group(1))
            ev["cpu_node"] = int(m.group(2))
        ev["node_requested"] = int(m.group(3))
        names = [n for n in (m.group(5) or "").split("|") if n]
        hint = None
        if m.group(5) is None:
            hint = "L0"  # "(gfp=0x%x)" without names: <= 4.5
        self._set_gfp(ev, int(m.group(4), 16), names, hint)

    def _set_gfp(self, ev, mask, names, layout_hint=None) -> None:
        if mask > MAX_GFP:
            ev.setdefault("missing", []).append("out of range: gfp_mask")
            return
        kernel = ev.get("kernel_release") or self.kernel_hint
        try:
            g = _decode_cached(mask, tuple(names), kernel, None if kernel else layout_hint)
        except ValueError:
            return
        ev["gfp_mask"] = mask
        ev["gfp_text"] = f"{mask:#x}" + (f"({'|'.join(names)})" if names else "")
        ev["gfp_flags"] = sorted(g.flags)
        ev["gfp_layout"] = g.layout
        ev["migratetype"] = g.migratetype
        if g.mismatch:
            ev["gfp_mismatch"] = g.mismatch

    def _page_header(self, m, text, line_no, time_s, wall, caller) -> None:
        ev = _event("page_alloc", self.source, line_no, time_s, wall, caller)
        self.res.page_alloc_reports += 1
        self.res.events.append(ev)
        rec = _Record(ev, caller, self.n, "page_alloc")
        self._page_fill(ev, m, text)
        self._register(rec, caller)

    def _page_fill(self, ev, m, text) -> None:
        order_digits, glued = m.group(1), m.group(2)
        if glued:
            # Another CPU's buddy token was glued to the order ("order:00*1024kB"): the order is
            # the leading digit(s) not claimed by the token's count.
            ev["order"] = int(order_digits[:1])
            if "interleaved_header" not in ev["missing"]:
                ev["missing"].append("interleaved_header")
        else:
            ev["order"] = int(order_digits)
        pre = text[:m.start()]
        cm = _COMM_START.match(text) if m.start() < 40 else None
        if cm and "]" not in cm.group(1):
            ev["comm"] = cm.group(1)
        else:
            cms = list(_COMM_ANY.finditer(pre + "page allocation"))
            if cms:
                ev["comm"] = cms[-1].group(1)
        if m.group(3):
            names = [n for n in (m.group(4) or "").split("|") if n]
            # Decoded at close time, when the record's own CPU: line has named the kernel.
            ev["_gfp"] = (int(m.group(3), 16), names, None if names else "L0")
        rest = text[m.end():]
        nm = _NODEMASK.search(rest)
        if nm:
            ev["nodemask"] = nm.group(1)
        cs = _CPUSET_INLINE.search(rest)
        if cs:
            ev["cpuset"], ev["mems_allowed"] = cs.group(1), cs.group(2)

    def _other_header(self, kind, line_no, caller) -> _Record:
        # Counted apart (not an allocation-failure event), but its Mem-Info is read into the
        # same shape, so that any line order a real log produces finds its place.
        ev = _event(kind, self.source, line_no, None, None, caller)
        rec = _Record(ev, caller, self.n, kind)
        self._register(rec, caller)
        return rec

    # -- record bodies -----------------------------------------------------------------------
    def _record_line(self, rec: _Record, text: str, line_no: int) -> None:
        ev = rec.ev
        if rec.expect_cpuset and "cpuset=" in text:
            m = _CPUSET_LINE.match(text.strip())
            if m:
                ev["cpuset"], ev["mems_allowed"] = m.group(2), m.group(3)
                rec.expect_cpuset = False
                rec.last_line = self.n
                if ev.get("comm") is None:
                    ev["comm"] = m.group(1)
                return
        if ("ainted" in text and ("CPU:" in text or "Pid:" in text)
                and ev.get("kernel_release") is None):
            m = _CPU_LINE.search(text)
            if m:
                ev["kernel_release"] = m.group(1)
                if ev.get("comm") is None and ev["kind"] == "page_alloc":
                    mc = _CPU_COMM.search(text)  # the header's comm was lost (interleaved)
                    if mc:
                        ev["comm"] = mc.group(1)
                if not self.kernel_hint:
                    self.kernel_hint = m.group(1)
                return
        if rec.closed_meminfo:
            return
        if not rec.meminfo and ("slab_alloc" in text or "allocate_slab" in text or
                                "new_slab" in text):
            ev["slab_page"] = True  # the failed pages were for a SLUB slab (stack frame)
        if not rec.meminfo:
            if _MEMINFO.match(text):
                rec.meminfo = True
                rec.last_line = self.n
                ev["counters"] = {}
            return
        # Inside the Mem-Info block.
        m = _ZONE_LINE.match(text)
        if m:
            zone = self._zone(rec, m.group(1), m.group(2))
            for k, v, unit in _KV.findall(text[m.start(2):]):
                key = ZONE_KEYS.get(k)
                if key:
                    zone[key] = int(v)
            rec.last_line = self.n
            rec.zone_index["_last"] = zone
            return
        m = _LOWMEM.match(text)
        if m:
            z = rec.zone_index.get("_last")
            if z is not None:
                z["lowmem_reserve"] = [int(x) for x in m.group(1).split()]
            rec.last_line = self.n
            return
        m = _BUDDY.match(text)
        if m:
            zone = self._zone(rec, m.group(1), m.group(2))
            zone["buddy"] = []  # a wrapped line is parsed again whole once glued back
            self._buddy(zone, text[m.end():])
            rec.zone_index["_buddy_open"] = zone if "=" not in text else None
            rec.last_line = self.n
            return
        m = _NODE_LINE.match(text)
        if m:
            fields = {k: int(v) for k, v, _u in _KV.findall(text[m.end(1):])}
            node = int(m.group(1))
            for entry in ev["nodes"]:
                if entry["node"] == node:
                    entry["fields_kb"].update(fields)
                    break
            else:
                ev["nodes"].append({"node": node, "fields_kb": fields})
            rec.last_line = self.n
            return
        if _COUNTERS.match(text):
            for k, v, _u in _KV.findall(text):
                ev["counters"][k] = int(v)
            rec.last_line = self.n
            return
        if _MEMINFO_END.match(text):
            rec.last_line = self.n
            if "hwpoisoned" in text or rec.kind != "page_alloc":
                rec.closed_meminfo = True
                if rec.kind == "page_alloc":
                    self._close(rec)
                else:
                    self._close(rec)
            return
        z = rec.zone_index.get("_buddy_open")
        if z is not None and _BUDDY_FRAGMENT.match(text):
            self._buddy(z, text)
            rec.last_line = self.n

    def _zone(self, rec: _Record, node, name) -> dict:
        node_i = int(node) if node is not None else None
        key = (node_i, name)
        z = rec.zone_index.get(key)
        if z is None:
            z = {"node": node_i, "zone": name, "free_kb": None, "min_kb": None, "low_kb": None,
                 "high_kb": None, "buddy": []}
            rec.zone_index[key] = z
            rec.ev["zones"].append(z)
        return z

    @staticmethod
    def _buddy_parse(zone: dict, body: str) -> None:
        for count, size, types in _BUDDY_TOK.findall(body):
            size = int(size)
            zone.setdefault("_sizes", []).append(size)
            zone["buddy"].append({"size_kb": size, "count": int(count), "types": types})
        t = _BUDDY_TOTAL.search(body)
        if t:
            zone["buddy_total_kb"] = int(t.group(1))

    def _buddy(self, zone: dict, body: str) -> None:
        self._buddy_parse(zone, body)
        # Orders from block sizes: the smallest size seen is order 0 (4 kB on most arches).
        sizes = zone.pop("_sizes", [])
        base = zone.get("page_kb") or (min(sizes) if sizes and sizes[0] == min(sizes) else 4)
        zone["page_kb"] = base
        for b in zone["buddy"]:
            if "order" not in b:
                b["order"] = int(round(math.log2(max(b["size_kb"], base) / base)))

    def finish(self) -> ParseResult:
        for rec in list({id(r): r for r in list(self.open.values()) + list(self.slubs.values())
                         + [self.last] if r is not None}.values()):
            self._close(rec)
        events = self.res.events
        kr = self.res.kernel_release
        for i, ev in enumerate(events):
            if type(ev) is RawJson:
                if self.raw_null_kr and kr is not None and _KR_NULL in ev:
                    events[i] = ev.replace(_KR_NULL, b', "kernel_release": ' + _utf8(_JSON(kr))
                                           + b', "node_requested": ', 1)
                continue
            if ev.get("kernel_release") is None:
                ev["kernel_release"] = self.res.kernel_release
            for z in ev["zones"]:
                z.pop("_sizes", None)
        return self.res


def _edge_times(parser: LogParser, chunk: bytes, first: bool) -> None:
    """The log's first and last stamps, which the fast path may have skipped over."""
    lines = chunk[:65536].split(b"\n")[:50] if first else chunk[-65536:].split(b"\n")[-50:][::-1]
    if first:
        framer = parser.first_framer = Framer(parser.framer.year if parser.framer.given else None)
    else:
        # years run on from the first stamp's: a log that crosses New Year ends in the next
        f0 = parser.first_framer
        framer = Framer(f0.year if f0 is not None else parser.framer.year)
        framer.last_mon = f0.last_mon if f0 is not None else None
    res = parser.res
    for raw in lines:
        for _t, ts, wall, _c, _f in framer.frame(raw.decode("utf-8", "replace")):
            if ts is None and wall is None:
                continue
            if first:
                if ts is not None and (res.first_time_s is None or ts < res.first_time_s):
                    res.first_time_s = ts
                if wall is not None and (res.first_time_wall is None or wall < res.first_time_wall):
                    res.first_time_wall = wall
            else:
                if ts is not None and (res.last_time_s is None or ts > res.last_time_s):
                    res.last_time_s = ts
                if wall is not None and (res.last_time_wall is None or wall > res.last_time_wall):
                    res.last_time_wall = wall
            return


# Numbers the fast path copies into JSON as they are written are canonical (no leading zeros)
# and bounded, so that the copy is the number and in range (15 digits stay below MAX_COUNT); a
# stamp has at most 9 + 6 digits, so that its text is the shortest repr of its float. Anything
# else is left to the slow path, which reads and flags it.
_N = rb"(0|[1-9]\d{0,14})"
_NC = rb"(?:0|[1-9]\d{0,14})"
_STAMP = rb"((?:0|[1-9]\d{0,8})\.\d{1,6})"
_FAST_NODE_LINE = rb"\[\s*\d+\.\d+\]   node %s: slabs: %s, objs: %s, free: %s(?:\n|\Z)"
_FAST_SLUB = re.compile(
    rb"\[\s*" + _STAMP + rb"\] SLUB: Unable to allocate memory on "
    rb"(?:CPU " + _N + rb" \(of node (0|-?[1-9]\d{0,14})\) on )?"
    rb"node (-1|0|[1-9]\d{0,4})(?:, gfp=| \(gfp=)(0x[0-9a-fA-F]+)(?:\(([^)\n]*)\))?\)?\n"
    rb"\[\s*\d+\.\d+\]   cache: ([^\n]+?), object size: (\d+), buffer size: (\d+), "
    rb"default order: (\d+), min order: (\d+)\n"
    # the first node line's numbers, then the other node lines whole
    rb"(?:" + _FAST_NODE_LINE % (rb"(0|[1-9]\d{0,4})", _N, _N, _N)
    + rb"((?:" + _FAST_NODE_LINE % (rb"(?:0|[1-9]\d{0,4})", _NC, _NC, _NC)
    + rb")*))?")
_FAST_NODE = re.compile(rb"node (\d+): slabs: (\d+), objs: (\d+), free: (\d+)")
# A record line the fast regex did not take (odd spacing, wrapped): the slow path reads it all.
_FAST_LEFT = re.compile(rb"\[\s*\d+\.\d+\](?:[^\n]{0,40}?(?:node|cache|\*\*)|\s+\S+ debugging "
                        rb"increased)|[^\[\n]")
_FAST_SUPP = re.compile(rb"\[\s*" + _STAMP + rb"\] (\w+): (\d+) callbacks suppressed\n")
_NODE_JSON = b'{"node": %s, "slabs": %s, "objs": %s, "free": %s}'
_SLUB_JSON = b'%s%d, "time_s": %s, "time_wall": null, "caller": null, %s, "nodes": [%s]%s%s}'
_SLUB_CPU_JSON = (b'%s%d, "time_s": %s, "time_wall": null, "caller": null, %s, "nodes": [%s]%s%s, '
                  b'"cpu": %s, "cpu_node": %s}')
_SUPP_JSON = (b'{"func": "%s", "count": %d, "line": %d, "time_s": %s, "time_wall": null, '
              b'"source": %s}')


def _stamp_json(t: bytes) -> bytes:
    """A stamp as ``_STAMP`` takes it -> the JSON of its float (what ``repr`` writes)."""
    if t[:2] == b"0.":
        return repr(float(t)).encode()  # below 1e-4 repr switches to an exponent
    s = t.rstrip(b"0")
    return s + b"0" if s[-1:] == b"." else s


def _fast_body(parser: LogParser, g):
    """What a fast SLUB report's gfp and cache lines say, decided once per distinct pair of
    lines: (dict items, their JSON text), or None when a value is one the slow path must see
    (out of range, a decode that disagrees with the names, an undecodable mask)."""
    try:
        mask = int(g[4], 16)
        names = [n for n in g[5].decode("utf-8", "replace").split("|") if n] if g[5] else []
        if mask > MAX_GFP:
            return None
        kernel = parser.kernel_hint
        dec = _decode_cached(mask, tuple(names), kernel,
                             None if kernel else (None if g[5] is not None else "L0"))
    except ValueError:
        return None
    if dec.mismatch:
        return None
    sizes = [int(x) for x in g[7:11]]
    if not (sizes[0] <= MAX_COUNT and sizes[1] <= MAX_COUNT and sizes[2] <= MAX_ORDER
            and sizes[3] <= MAX_ORDER):
        return None
    items = {"gfp_mask": mask, "gfp_text": f"{mask:#x}" + (f"({'|'.join(names)})" if names else ""),
             "gfp_flags": sorted(dec.flags), "gfp_layout": dec.layout, "order": None,
             "migratetype": dec.migratetype, "cache": g[6].decode("utf-8", "replace"),
             "object_size": sizes[0], "buffer_size": sizes[1], "default_order": sizes[2],
             "min_order": sizes[3]}
    return items, _utf8(_JSON(items)[1:-1])


def _fast_nodes(g) -> list | None:
    """The node lines of a fast SLUB report as (node, slabs, objs, free) canonical digit
    strings, or None when a node number is out of range."""
    if g[11] is None:
        return []
    nodes = [(g[11], g[12], g[13], g[14])]
    if g[15]:
        nodes += _FAST_NODE.findall(g[15])
    for n in nodes:
        if len(n[0]) == 5 and int(n[0]) > 1 << 16:
            return None
    return nodes


def _fast_record(parser: LogParser, chunk: bytes, pos: int, line_no: int):
    """Raw-dmesg SLUB reports and suppression lines, the bulk of a failure-dense log, matched
    whole by one regex each, as many in a row as there are. Returns (new pos, lines consumed),
    or None to take the slow path. A report with any value the slow path would flag is left to
    the slow path, so what is taken here is always whole and in range."""
    if chunk[pos:pos + 1] != b"[":
        return None
    res = parser.res
    events = res.events
    supp = res.suppressed
    suppressions = res.suppressions
    source = parser.source
    bodies = parser.fast_bodies.setdefault(parser.kernel_hint, {})
    raw = parser.raw_json
    if raw:
        src_json = _utf8(_JSON(source))
        head = b'{"kind": "slub", "source": ' + src_json + b', "line": '
        tail = (b', "comm": null, "zones": [], "partial": false, "missing": [], '
                b'"kernel_release": ' + _utf8(_JSON(res.kernel_release))
                + b', "node_requested": ')
        if res.kernel_release is None:
            parser.raw_null_kr = True
    used = 0
    slub_match = _FAST_SLUB.match
    supp_match = _FAST_SUPP.match
    left_match = _FAST_LEFT.match
    n_chunk = len(chunk)
    nxt = slub_match(chunk, pos)
    while True:
        m = nxt
        nxt = None
        if m is not None:
            end = m.end()
            g = m.groups()
            key = g[4:11]
            body = bodies.get(key)
            if body is None:
                if len(bodies) >= 4096:
                    bodies.clear()
                body = bodies[key] = _fast_body(parser, g) or False
            # one node line of a small node number (the common case) needs no more look
            single = g[15] == b"" and g[11] is not None and len(g[11]) < 5
            nodes = None if single else _fast_nodes(g)
            if (not body or end >= n_chunk or (nodes is None and not single)
                    or (len(g[3]) == 5 and int(g[3]) > 1 << 16)):
                m = None
            else:
                # the next line starts another report, or it must not be one of this one's
                # (odd spacing, wrapped): else the slow path reads it all
                nxt = slub_match(chunk, end)
                if nxt is None and left_match(chunk, end):
                    m = None
        if m is not None:
            if parser.slubs:
                for rec in list(parser.slubs.values()):
                    parser._close(rec)
            line = line_no + used + 1
            if raw:
                if single:
                    nodes_json = _NODE_JSON % (g[11], g[12], g[13], g[14])
                    used += 3
                else:
                    nodes_json = b", ".join([_NODE_JSON % n for n in nodes])
                    used += 2 + len(nodes)
                t = g[0]
                if t[:2] == b"0.":
                    t = _stamp_json(t)
                else:
                    t = t.rstrip(b"0")
                    if t[-1:] == b".":
                        t += b"0"
                if g[1] is not None:
                    events.append(_SLUB_CPU_JSON % (head, line, t, body[1], nodes_json, tail,
                                                    g[3], g[1], g[2]))
                else:
                    events.append(_SLUB_JSON % (head, line, t, body[1], nodes_json, tail, g[3]))
            else:
                if single:
                    nodes = [(g[11], g[12], g[13], g[14])]
                ev = {"kind": "slub", "source": source, "line": line,
                      "time_s": float(g[0]), "time_wall": None, "caller": None}
                ev.update(body[0])
                ev["gfp_flags"] = list(ev["gfp_flags"])
                ev["nodes"] = [{"node": int(a), "slabs": int(b), "objs": int(c), "free": int(d)}
                               for a, b, c, d in nodes]
                ev["comm"] = None
                ev["zones"] = []
                ev["partial"] = False
                ev["missing"] = []
                ev["kernel_release"] = None
                ev["node_requested"] = int(g[3])
                if g[1] is not None:
                    ev["cpu"], ev["cpu_node"] = int(g[1]), int(g[2])
                events.append(ev)
                used += 2 + len(nodes)
            res.slub_reports += 1
            pos = end
            continue
        m = supp_match(chunk, pos)
        if m:
            n = int(m.group(3))
            used += 1
            pos = m.end()
            nxt = slub_match(chunk, pos)
            if n > MAX_COUNT:
                res.malformed_lines += 1
                continue
            func = m.group(2).decode()
            supp[func] = supp.get(func, 0) + n
            line = line_no + used
            if raw:
                # \w in a bytes pattern is ASCII letters, digits and _: nothing to escape
                suppressions.append(_SUPP_JSON % (m.group(2), n, line, _stamp_json(m.group(1)),
                                                  src_json))
            else:
                suppressions.append({"func": func, "count": n, "line": line,
                                     "time_s": float(m.group(1)), "time_wall": None,
                                     "source": source})
            continue
        break
    if not used:
        return None
    parser.prev_text = None
    return pos, used


def _scan(parser: LogParser, chunks: Iterable[bytes], fast: bool = True,
          indexed: bool = False, hits: GrepHits | None = None) -> None:
    """Feed a parser from byte chunks, skipping stretches where nothing can start or continue.

    ``indexed``: one compiled pass per chunk finds every trigger line and counts lines
    (:mod:`parsers.scan`, for large files). ``hits``: grep, running over the file the chunks
    are read from, finds them (:mod:`parsers.grepscan`). Otherwise each trigger's next position
    in a chunk is remembered, so a chunk is searched once per trigger however many records it
    holds."""
    line_no = 0
    last_chunk = None
    for chunk in _numbered(chunks, lambda: line_no):
        if last_chunk is None:
            _edge_times(parser, chunk, True)
        # the log's last 64 KiB, whatever the chunk sizes, for its last stamp (a copy: the
        # chunk's buffer may be filled anew with the next)
        last_chunk = bytes(chunk[-65536:]) if len(chunk) >= 65536 or last_chunk is None else \
            (last_chunk + chunk)[-65536:]
        pos, n = 0, len(chunk)
        find = chunk.find
        nextpos: dict = {}
        base = line_no
        cands = (hits.block(chunk, base) if hits is not None else
                 Candidates(chunk, TRIGGERS) if indexed else None)
        while pos < n:
            if parser.idle() and cands is not None:
                got = cands.next(pos)
                if got is None:
                    line_no = cands.end(base, pos, line_no)
                    pos = n
                    break
                pos, before = got
                if before is not None:
                    line_no = base + before
            elif parser.idle():
                triggers = TRIGGERS
                nxt = n
                for trig in triggers:
                    p = nextpos.get(trig, -1)
                    if p < pos:
                        p = find(trig, pos)
                        if p < 0:
                            p = n + 1  # not in this chunk: never search it again here
                        nextpos[trig] = p
                    if p < nxt:
                        nxt = p
                if nxt >= n:
                    line_no += chunk.count(b"\n", pos, n)
                    if chunk[-1:] != b"\n":
                        line_no += 1
                    pos = n
                    break
                start = chunk.rfind(b"\n", pos, nxt) + 1
                if start > pos:
                    # from the line before: it may hold the head of a wrapped trigger line
                    back = chunk.rfind(b"\n", pos, start - 1)
                    start = back + 1 if back >= 0 else pos
                    line_no += chunk.count(b"\n", pos, start)
                    pos = start
            if fast and not parser.open:
                # Only SLUB records (or nothing) open: a whole report may follow.
                got = _fast_record(parser, chunk, pos, line_no)
                if got is not None:
                    pos, used = got
                    line_no += used
                    continue
            end = find(b"\n", pos)
            if end < 0:
                end = n
            line_no += 1
            parser.feed_line(chunk[pos:end].decode("utf-8", "replace"), line_no)
            pos = end + 1
        cands = None  # its views of the chunk go before the next chunk is read into it
    if hits is not None:
        hits.finish()
    parser.res.lines = line_no
    if last_chunk is not None:
        _edge_times(parser, last_chunk, False)


def _numbered(chunks: Iterable[bytes], lines_read):
    """The chunks; a bad line found while reading them gets its line number."""
    it = iter(chunks)
    while True:
        try:
            chunk = next(it)
        except StopIteration:
            return
        except LineError as e:
            raise e.at(lines_read() + 1) from None
        yield chunk


def parse_log(path: str | Path, *, source: str | None = None, kernel_hint: str | None = None,
              year: int | None = None, raw_json: bool = False) -> ParseResult:
    """Parse one kernel log file (any format, any compression; ``-`` is stdin).

    ``raw_json``: records the fast path takes whole (most of a failure-dense log) are kept as
    ``RawJson`` (bytes), their text in the ``parse`` command's JSON, instead of dicts; for a
    caller that only writes them out."""
    with _no_gc():
        try:
            return _parse_log(path, source, kernel_hint, year, raw_json)
        except Exception as e:
            # a bug of ours: the command line names where it happened
            if not isinstance(e, ParseError) and not hasattr(e, "mmtriage_where"):
                e.mmtriage_where = str(source or path)
            raise


@contextlib.contextmanager
def _no_gc():
    # Records are many small dicts with no cycles: the cyclic collector only costs time here.
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _parse_log(path, source, kernel_hint, year, raw_json=False) -> ParseResult:
    src = source or str(path)
    parser = LogParser(src, kernel_hint, year, raw_json)
    stream = open_binary(path)  # opened once: stdin cannot be read twice
    try:
        head = head_of(stream, path)
    except BaseException:
        if str(path) != "-":
            stream.close()
        raise
    if ExportReader.looks_like(head):
        data = b"".join(iter_chunks(path, stream=stream))
        _feed_export(parser, data)
        parser.res.formats[src] = "journal-export"
    elif _indexable(path, head):
        with stream:  # however the parse ends (the reader closes it too)
            # no further than its size now: a log still being written to is read as it was
            size = _plain_size(stream)
            if _grep_scan(parser, path, stream, size):
                return parser.finish()
            # grep could not be used or trusted: from the start with the compiled scan, on the
            # file already open (its path may name another file by now)
            parser = LogParser(src, kernel_hint, year, raw_json)
            if size is not None:
                stream.seek(0)
                stream = Upto(stream, size)
                chunks = iter_chunks(path, INDEXED_CHUNK, stream=stream, reuse=True)
            elif decodes_ahead(stream):  # the next chunk is decoded while this one is scanned
                chunks = prefetched(iter_chunks(path, INDEXED_CHUNK, stream=stream))
            else:
                chunks = iter_chunks(path, INDEXED_CHUNK, stream=stream, reuse=True)
            try:
                _scan(parser, chunks, indexed=True)
            finally:
                chunks.close()  # the decoding thread stops before the stream is closed
    else:
        _scan(parser, iter_chunks(path, stream=stream, reuse=True))
    return parser.finish()


INDEXED_MIN = 32 << 20
INDEXED_CHUNK = 16 << 20


def _grep_scan(parser: LogParser, path, stream, size: int | None) -> bool:
    """Parse the first ``size`` bytes of a large plain file (``stream``, left open) with grep
    finding its trigger lines (:mod:`parsers.grepscan`). False when grep is missing, fails, or
    does not agree with what was read: the parser has then been fed part of the file and is to
    be thrown away."""
    try:
        if size is None:
            raise Lost("compressed: grep would read other bytes than the parser")
        head = os.pread(stream.fileno(), 1 << 20, 0)
        if sniff(head) is not None or rewritten(head, stream):
            raise Lost("the reader rewrites this file: grep's offsets would not be its")
        with GrepHits(stream, TRIGGERS, size) as hits:
            chunks = hits.guard(iter_chunks(path, INDEXED_CHUNK, reuse=True,
                                            stream=Upto(stream, size, owns=False)))
            try:
                _scan(parser, chunks, hits=hits)
            finally:
                chunks.close()
    except Lost:
        return False
    return True


def _plain_size(stream) -> int | None:
    """The size of the plain regular file open in ``stream``; None for a decompressed stream."""
    if not isinstance(stream, io.BufferedReader) or not isinstance(stream.raw, io.FileIO):
        return None
    st = os.fstat(stream.fileno())
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _indexable(path, head: bytes) -> bool:
    """Large plain files have their trigger lines found in one pass, by grep or the compiled
    scan; small ones and streams do not pay for a process or numba's import."""
    if str(path) == "-" or sniff(head) is not None:
        return False
    try:
        return Path(path).stat().st_size >= INDEXED_MIN
    except OSError:
        return False


def parse_text(text: str, *, source: str = "<text>", kernel_hint: str | None = None,
               year: int | None = None) -> ParseResult:
    """Parse a log held in memory (tests, model output)."""
    parser = LogParser(source, kernel_hint, year)
    data = text.encode("utf-8", "surrogateescape")
    if cr_only(data):
        data = data.replace(b"\r", b"\n")
    if quoted_printable(data):
        data = binascii.a2b_qp(data)
    if PrettyJson.looks_like(data[:1 << 20]):
        data = PrettyJson()(data, final=True)
    elif journal_json(data[:1 << 20]):
        data = json_strings(data)
    if ExportReader.looks_like(data[:64]):
        _feed_export(parser, data)
    else:
        _scan(parser, [data])
    return parser.finish()


def _feed_export(parser: LogParser, data: bytes) -> None:
    import json as _json
    last = 0
    for line_no, entry in ExportReader.entries(data):
        last = line_no
        if entry.get("_TRANSPORT", "kernel") != "kernel":
            continue
        parser.feed_line(_json.dumps(entry), line_no)
    parser.res.lines = data.count(b"\n") or last
