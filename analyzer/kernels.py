"""Kernel releases: which carry defrag_mode, which carry the 2026 fix, known signatures.

The fix ("mm/page_alloc: fix defrag_mode for non-reclaimable allocations") is known to be in
Debian's 7.2 builds and not in 7.1.13 or earlier (kernel.md, "Observed on real kernels").
Stable and vendor kernels may carry it earlier: extend the table with ``--fixed-in`` (a release
prefix such as ``6.18.40-acme``) or ``MMTRIAGE_FIXED_IN`` (comma-separated).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

_REL = re.compile(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?(?:-rc(\d+))?")


def version(release: str | None) -> tuple | None:
    """``6.16.3+deb13-amd64`` -> (6, 16, 3, 99); ``6.15.0-rc2`` -> (6, 15, 0, 2)."""
    if not release:
        return None
    m = _REL.match(release)
    if not m:
        return None
    rc = int(m.group(4)) if m.group(4) else 99
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0), rc)


DEFRAG_MODE_SINCE = (6, 15, 0, 1)
FIXED_SINCE = (7, 2, 0, 1)
RETRY_HANG_FIXED = (6, 15, 0, 4)   # 7a95a05f15d5 landed during the 6.15-rc cycle [P, rc uncertain]


@dataclass
class FixStatus:
    status: str        # "fixed", "affected", "not_applicable" (no defrag_mode), "unknown"
    source: str
    detail: str


def fix_status(release: str | None, fixed_in: list[str] | None = None) -> FixStatus:
    extra = list(fixed_in or []) + [s for s in os.environ.get("MMTRIAGE_FIXED_IN", "").split(",")
                                    if s.strip()]
    if release and any(release.startswith(p.strip()) for p in extra):
        return FixStatus("fixed", "--fixed-in table", f"{release} is listed as carrying the fix")
    v = version(release)
    if v is None:
        return FixStatus("unknown", "unknown", "kernel release unknown")
    if v < DEFRAG_MODE_SINCE:
        return FixStatus("not_applicable", "release", f"{release} predates vm.defrag_mode (6.15)")
    if v >= FIXED_SINCE:
        return FixStatus("fixed", "release", f"{release} is 7.2 or later, which carries the fix")
    return FixStatus("affected", "release",
                     f"{release} has vm.defrag_mode and predates the fix (first in 7.2 builds)")


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
