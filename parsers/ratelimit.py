"""The kernel's rate limits on allocation-failure reports, and how much of a log's window each
one spent saturated (every report it allowed printed, the rest suppressed). Where a limit was
saturated the log's printed and suppressed counts are a floor: they say only that more failed.

Limits (lib/ratelimit.c; each interval begins at the first call after the last one expired, and
that call always prints):

* ``slab_out_of_memory`` (mm/slub.c ``slub_oom_rs``): 10 reports per 5 s, shared by all caches.
* ``warn_alloc`` (mm/page_alloc.c ``nopage_rs``): 1 per 10 s since 5.4 (and 4.19.y, 5.3.y
  stable); the default 10 per 5 s before. ``warn_alloc_failed`` (<= 4.9): 10 per 5 s.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

# function -> (interval in seconds, burst)
SLUB = (5.0, 10)
WARN_ALLOC = (10.0, 1)
WARN_ALLOC_OLD = (5.0, 10)
KIND_FUNC = {"slub": "slab_out_of_memory", "page_alloc": "warn_alloc"}


def limit(func: str, kernel: str | None = None) -> tuple[float, int]:
    if func == "slab_out_of_memory":
        return SLUB
    if func == "warn_alloc_failed":
        return WARN_ALLOC_OLD
    m = re.match(r"(\d+)\.(\d+)", kernel or "")
    if m and (int(m.group(1)), int(m.group(2))) < (4, 19):
        return WARN_ALLOC_OLD
    return WARN_ALLOC


@dataclass
class Saturation:
    func: str
    interval_s: float
    burst: int
    intervals: int          # rate-limit intervals that printed at least one report
    saturated: int          # of them, those that printed their whole burst or suppressed calls
    window_s: float         # from the first printed report to the end of the last interval
    saturated_s: float
    printed: int
    suppressed: int
    untimed: int            # reports without a time stamp (not placed in an interval)

    def add(self, other: "Saturation") -> "Saturation":
        return Saturation(self.func, self.interval_s, self.burst,
                          self.intervals + other.intervals, self.saturated + other.saturated,
                          self.window_s + other.window_s, self.saturated_s + other.saturated_s,
                          self.printed + other.printed, self.suppressed + other.suppressed,
                          self.untimed + other.untimed)

    @property
    def share(self) -> float | None:
        return self.saturated_s / self.window_s if self.window_s > 0 else None

    def to_dict(self) -> dict:
        return {"func": self.func, "interval_s": self.interval_s, "burst": self.burst,
                "intervals": self.intervals, "saturated_intervals": self.saturated,
                "window_s": round(self.window_s, 3), "saturated_s": round(self.saturated_s, 3),
                "saturated_share": None if self.share is None else round(self.share, 4),
                "printed": self.printed, "suppressed": self.suppressed, "untimed": self.untimed,
                "floor": self.saturated > 0}


def saturation(events: list, suppressions: list, kernel: str | None = None) -> dict:
    """Per rate limit (``slab_out_of_memory``, ``warn_alloc``), how its reports filled its
    intervals, from the events and suppression lines the parser gives. Each log (source) has its
    own clock, so intervals are rebuilt per source and the figures added up; reports without a
    monotonic stamp are counted as untimed."""
    out = {}
    for kind, func in KIND_FUNC.items():
        mine = [e for e in events if e["kind"] == kind]
        if not mine:
            continue
        if kind == "page_alloc" and any(s["func"] == "warn_alloc_failed" for s in suppressions):
            func = "warn_alloc_failed"
        interval, burst = limit(func, kernel)
        total = None
        for src in dict.fromkeys(e["source"] for e in mine):
            times = [e["time_s"] for e in mine if e["source"] == src]
            timed = sorted(t for t in times if t is not None)
            supp = [(s["time_s"], s["count"]) for s in suppressions if s["func"] == func
                    and s.get("source") == src and s.get("time_s") is not None]
            part = _fill(func, interval, burst, timed, supp, len(times) - len(timed))
            total = part if total is None else total.add(part)
        out[func] = total.to_dict()
    return out


def _fill(func, interval, burst, times, supp, untimed) -> Saturation:
    starts, counts = [], []
    for t in times:
        if not starts or t >= starts[-1] + interval:
            starts.append(t)
            counts.append(0)
        counts[-1] += 1
    # A "callbacks suppressed" line is printed by the call that opens an interval (just before
    # its report) and counts the misses of the interval before.
    missed = [0] * len(starts)
    for t, n in supp:
        k = bisect.bisect_left(starts, t - 1e-3)
        if k > 0 and n > 0:
            missed[k - 1] += n
    full = [c >= burst or m > 0 for c, m in zip(counts, missed)]
    ends = [min(s + interval, starts[i + 1]) if i + 1 < len(starts) else s + interval
            for i, s in enumerate(starts)]
    window = (ends[-1] - starts[0]) if starts else 0.0
    sat_s = sum(e - s for s, e, f in zip(starts, ends, full) if f)
    return Saturation(func, interval, burst, len(starts), sum(full), window, sat_s,
                      len(times) + untimed, sum(n for _, n in supp), untimed)
