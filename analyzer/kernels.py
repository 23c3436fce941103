"""Kernel releases: known failure signatures by release. Which releases carry defrag_mode and
the 2026 fix, and so which policy a host runs, is the model's (:mod:`models.policy`); the
names are re-exported here for the analyzer.
"""
from __future__ import annotations

from dataclasses import dataclass

from models.policy import (DEFRAG_MODE_SINCE, FIXED_SINCE, FixStatus, fix_status,  # noqa: F401
                           version)

RETRY_HANG_FIXED = (6, 15, 0, 4)   # 7a95a05f15d5 landed during the 6.15-rc cycle [P, rc uncertain]


@dataclass
class Signature:
    id: str
    title: str
    since: tuple
    until: tuple | None
    fixed_by: str
    symptom: str

    def applies(self, release: str | None) -> bool | None:
        v = version(release)
        if v is None:
            return None
        return v >= self.since and (self.until is None or v < self.until)


SIGNATURES = [
    Signature("defrag-mode-nonreclaimable-bailout",
              "defrag_mode: GFP_ATOMIC/GFP_NOWAIT fail at the !can_direct_reclaim bailout with "
              "ALLOC_NOFRAGMENT still set", DEFRAG_MODE_SINCE, FIXED_SINCE,
              "mm/page_alloc: fix defrag_mode for non-reclaimable allocations (2026)",
              "order-0 unmovable atomic failures with free memory only in other migratetypes "
              "and no free pageblock"),
    Signature("defrag-mode-retry-oom-hang",
              "defrag_mode: the 'failed to prevent the fallback' retry masked the wrong bits and "
              "looped instead of reaching OOM", DEFRAG_MODE_SINCE, RETRY_HANG_FIXED,
              "7a95a05f15d5 mm: page_alloc: fix defrag_mode's retry & OOM path",
              "allocation stalls / soft lockups in __alloc_pages_slowpath, no OOM kill"),
]


def matching_signatures(release: str | None, defrag_mode: int | None) -> list[dict]:
    out = []
    for s in SIGNATURES:
        ok = s.applies(release)
        if ok and defrag_mode != 0:
            out.append({"id": s.id, "title": s.title, "fixed_by": s.fixed_by,
                        "symptom": s.symptom,
                        "condition": "defrag_mode=1" if defrag_mode == 1 else
                        "defrag_mode unknown"})
    return out
