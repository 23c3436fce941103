"""Which allocator policy a host runs: its kernel release, ``vm.defrag_mode`` and the table of
releases that carry the 2026 fix decide among ``legacy`` (defrag_mode=0, or a kernel before
6.15), ``defrag`` (defrag_mode=1 without the fix) and ``defrag-fixed`` (with it).

The fix ("mm/page_alloc: fix defrag_mode for non-reclaimable allocations") is known to be in
Debian's 7.2 builds and not in 7.1.13 or earlier (kernel.md, "Observed on real kernels").
Stable and vendor kernels may carry it earlier: extend the table with ``fixed_in`` (release
prefixes such as ``6.18.40-acme``, the CLI's ``--fixed-in``) or ``MMTRIAGE_FIXED_IN``
(comma-separated).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from models.engine import DEFRAG, DEFRAG_FIXED, LEGACY, POLICY_NAMES

_REL = re.compile(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?(?:-rc(\d+))?")

DEFRAG_MODE_SINCE = (6, 15, 0, 1)
FIXED_SINCE = (7, 2, 0, 1)


def version(release: str | None) -> tuple | None:
    """``6.16.3+deb13-amd64`` -> (6, 16, 3, 99); ``6.15.0-rc2`` -> (6, 15, 0, 2)."""
    if not release:
        return None
    m = _REL.match(release)
    if not m:
        return None
    rc = int(m.group(4)) if m.group(4) else 99
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0), rc)


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
class Selection:
    policy: int                  # models.engine.LEGACY / DEFRAG / DEFRAG_FIXED
    policy_name: str
    release: str | None
    defrag_mode: dict            # {"value": 0/1/None, "source": ...}
    fix: FixStatus
    notes: list = field(default_factory=list)


def select(release: str | None, defrag_mode: dict | None = None, fixed_in=None,
           inferred_defrag: int | None = None) -> Selection:
    """The policy for a release and ``defrag_mode`` (``{"value": 0/1/None, "source": ...}``).
    An unknown defrag_mode takes ``inferred_defrag`` when given; otherwise the host is
    modelled as if it were on (where the kernel has it), and a note says so."""
    dm = dict(defrag_mode) if defrag_mode is not None else {"value": None, "source": "unknown"}
    notes = []
    if dm.get("value") is None and inferred_defrag is not None:
        dm = {"value": inferred_defrag, "source": "inferred from the failures"}
    fs = fix_status(release, fixed_in)
    v = version(release)
    on = dm.get("value")
    predates = v is not None and v < DEFRAG_MODE_SINCE
    if predates:
        # no defrag_mode in this kernel: tested as it is, never "as if it were on"
        policy = LEGACY
        if on is None:
            dm = {"value": None, "source": f"not in this kernel ({release} predates "
                                           f"vm.defrag_mode, 6.15)"}
    elif on == 0:
        policy = LEGACY
    elif fs.status == "fixed":
        policy = DEFRAG_FIXED
    else:
        policy = DEFRAG if on == 1 else LEGACY
    if on is None and not predates:
        notes.append("defrag_mode unknown: failures are tested as if it were on, and said so")
        policy = DEFRAG if fs.status != "fixed" else DEFRAG_FIXED
    return Selection(policy, POLICY_NAMES[policy], release, dm, fs, notes)


def for_bundle(bundle, fixed_in=None, inferred_defrag: int | None = None) -> Selection:
    """:func:`select` for a loaded bundle (its kernel release and defrag_mode records)."""
    rel = bundle.kernel_release.get("value")
    rel = None if rel in (None, "unknown") else rel
    return select(rel, bundle.defrag_mode, fixed_in, inferred_defrag)
