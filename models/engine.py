"""The page allocator, compiled with numba: buddy free lists per zone x order x migratetype,
pageblock labels, watermarks, rmqueue with its NORMAL/CLAIM/STEAL modes, the slowpath in
kernel order with the ``!can_direct_reclaim`` bailout, and the three policies.

Sources: kernel.md §4 (mm/page_alloc.c @ a211c655 and the patches it lists). Where the model
simplifies, the docstring of the function says so. All functions take plain numpy arrays so
that numba can cache them; :class:`models.state.State` bundles the arrays.

Decision functions (``zone_watermark_ok``, ``rmqueue_plan``) only read ``nr_free``/``zs``; the
simulation calls them and then moves pages; attribution calls them on an observed state.
"""
from __future__ import annotations

import numpy as np
from numba import njit

# Migratetypes (4.4+ enum order).
UNMOVABLE, MOVABLE, RECLAIMABLE, HIGHATOMIC, CMA, ISOLATE = 0, 1, 2, 3, 4, 5
NMT = 6
MT_NAMES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate")
MT_LETTERS = "UMEHCI"

# GFP bits, 6.3+ layout (parsers.gfp L5).
GFP_DMA, GFP_HIGHMEM, GFP_DMA32, GFP_MOVABLE, GFP_RECLAIMABLE = 0x1, 0x2, 0x4, 0x8, 0x10
GFP_HIGH, GFP_IO, GFP_FS, GFP_ZERO = 0x20, 0x40, 0x80, 0x100
GFP_DIRECT_RECLAIM, GFP_KSWAPD_RECLAIM = 0x400, 0x800
GFP_NOWARN, GFP_RETRY_MAYFAIL, GFP_NOFAIL, GFP_NORETRY = 0x2000, 0x4000, 0x8000, 0x10000
GFP_MEMALLOC, GFP_COMP, GFP_NOMEMALLOC, GFP_HARDWALL = 0x20000, 0x40000, 0x80000, 0x100000
GFP_ATOMIC = GFP_HIGH | GFP_KSWAPD_RECLAIM
GFP_NOWAIT = GFP_KSWAPD_RECLAIM | GFP_NOWARN
GFP_KERNEL = GFP_DIRECT_RECLAIM | GFP_KSWAPD_RECLAIM | GFP_IO | GFP_FS
GFP_HIGHUSER_MOVABLE = GFP_KERNEL | GFP_HARDWALL | GFP_HIGHMEM | GFP_MOVABLE
GFP_TRANSHUGE_LIGHT = (GFP_HIGHUSER_MOVABLE | GFP_COMP | GFP_NOMEMALLOC | GFP_NOWARN) & \
    ~(GFP_DIRECT_RECLAIM | GFP_KSWAPD_RECLAIM)

# alloc_flags (mm/internal.h, 6.15).
ALLOC_WMARK_MIN, ALLOC_WMARK_LOW, ALLOC_WMARK_HIGH, ALLOC_WMARK_MASK = 0, 1, 2, 3
ALLOC_NO_WATERMARKS, ALLOC_OOM, ALLOC_NON_BLOCK, ALLOC_MIN_RESERVE = 0x4, 0x8, 0x10, 0x20
ALLOC_CPUSET, ALLOC_CMA, ALLOC_NOFRAGMENT, ALLOC_HIGHATOMIC = 0x40, 0x80, 0x100, 0x200
ALLOC_KSWAPD = 0x800
ALLOC_RESERVES = ALLOC_NON_BLOCK | ALLOC_MIN_RESERVE | ALLOC_HIGHATOMIC | ALLOC_OOM

# Policies.
LEGACY, DEFRAG, DEFRAG_FIXED = 0, 1, 2
POLICY_NAMES = ("legacy", "defrag", "defrag-fixed")

# Zone types.
ZONE_DMA, ZONE_DMA32, ZONE_NORMAL, ZONE_MOVABLE = 0, 1, 2, 3
ZONE_NAMES = ("DMA", "DMA32", "Normal", "Movable")

# zs[z, field]
Z_START, Z_END, Z_FREE, Z_WMIN, Z_WLOW, Z_WHIGH, Z_BOOST, Z_MANAGED = 0, 1, 2, 3, 4, 5, 6, 7
Z_TYPE, Z_NODE, Z_FREE_BLOCKS, Z_HA_RESERVED, Z_HA_FREE, Z_BOOSTED, Z_PRESENT = 8, 9, 10, 11, 12, 13, 14
NZF = 16

# Outcomes and causes (the codes triage and the model share).
OK, FAIL = 0, 1
CAUSE_NONE, CAUSE_BAILOUT, CAUSE_LOW, CAUSE_FRAG, CAUSE_SPEC, CAUSE_UNKNOWN = 0, 1, 2, 3, 4, 5
CAUSE_NAMES = ("none", "defrag_nofragment_bailout", "low_memory", "high_order_fragmentation",
               "speculative_expected", "unknown")

# rmqueue modes
MODE_NONE, MODE_NORMAL, MODE_CLAIM, MODE_STEAL, MODE_HIGHATOMIC = 0, 1, 2, 3, 4

# Page kinds (what an allocated page is, for reclaim and compaction).
PK_FREE, PK_UNMOVABLE, PK_MOVABLE, PK_RECLAIMABLE, PK_SLAB, PK_PINNED, PK_RESERVED, PK_ANON = \
    0, 1, 2, 3, 4, 5, 6, 7
PK_THP = 8  # head of an order-9 anonymous THP (movable)

# Counters (vmstat-like).
(C_PGALLOC, C_PGFREE, C_ALLOCSTALL, C_COMPACT_STALL, C_COMPACT_FAIL, C_COMPACT_SUCCESS,
 C_PGSCAN_KSWAPD, C_PGSTEAL_KSWAPD, C_PGSCAN_DIRECT, C_PGSTEAL_DIRECT, C_KSWAPD_WAKE,
 C_KCOMPACTD_WAKE, C_COMPACT_MIGRATE, C_FB_CLAIM, C_FB_STEAL, C_FB_HIGHATOMIC, C_FAIL_TOTAL,
 C_OPS, C_CLAIMED_BLOCKS, C_THP_FAULT_ALLOC, C_THP_FAULT_FALLBACK, C_COMPACT_DAEMON_MIGRATE,
 C_PAGEOUTRUN, C_HA_RESERVE, C_HA_UNRESERVE, C_WMARK_BOOST, C_NET_DEMAND, C_NET_INUSE,
 C_NET_FAILED) = range(29)
NCOUNTERS = 32
COUNTER_NAMES = ("pgalloc", "pgfree", "allocstall", "compact_stall", "compact_fail",
                 "compact_success", "pgscan_kswapd", "pgsteal_kswapd", "pgscan_direct",
                 "pgsteal_direct", "kswapd_wake", "compact_daemon_wake", "compact_migrate_scanned",
                 "fallback_claim", "fallback_steal", "fallback_highatomic", "alloc_fail", "ops",
                 "claimed_blocks", "thp_fault_alloc", "thp_fault_fallback",
                 "compact_daemon_migrate_scanned", "pageoutrun", "highatomic_reserve",
                 "highatomic_unreserve", "watermark_boost", "net_objects_demanded",
                 "net_objects_in_use", "net_objects_failed")

FALLBACKS = np.array([[RECLAIMABLE, MOVABLE], [RECLAIMABLE, UNMOVABLE], [UNMOVABLE, MOVABLE]],
                     dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# GFP -> zone, migratetype, alloc_flags (kernel.md §4.1-4.2, §4.6 step 1)

@njit(cache=True)
def gfp_migratetype(gfp):
    m = (gfp & (GFP_RECLAIMABLE | GFP_MOVABLE)) >> 3
    if m == 1:
        return MOVABLE
    if m == 2:
        return RECLAIMABLE
    return UNMOVABLE


@njit(cache=True)
def gfp_zone(gfp):
    if gfp & GFP_DMA:
        return ZONE_DMA
    if gfp & GFP_DMA32:
        return ZONE_DMA32
    if (gfp & GFP_HIGHMEM) and (gfp & GFP_MOVABLE):
        return ZONE_MOVABLE
    return ZONE_NORMAL


@njit(cache=True)
def alloc_flags_nofragment(zs, pref_zone, gfp, policy, has_dma32):
    """Fast-path flags. 6.15+ defrag_mode: NOFRAGMENT always; otherwise (5.0+) only when the
    preferred zone is Normal and the node's DMA32 is populated (kernel.md §4.2)."""
    flags = 0
    if gfp & GFP_KSWAPD_RECLAIM:
        flags |= ALLOC_KSWAPD
    if policy != LEGACY:
        return flags | ALLOC_NOFRAGMENT
    if pref_zone >= 0 and zs[pref_zone, Z_TYPE] == ZONE_NORMAL and has_dma32:
        flags |= ALLOC_NOFRAGMENT
    return flags


@njit(cache=True)
def gfp_to_alloc_flags(gfp, order, policy):
    flags = ALLOC_WMARK_MIN | ALLOC_CPUSET
    if gfp & GFP_HIGH:
        flags |= ALLOC_MIN_RESERVE
    if gfp & GFP_KSWAPD_RECLAIM:
        flags |= ALLOC_KSWAPD
    if not (gfp & GFP_DIRECT_RECLAIM):
        if not (gfp & GFP_NOMEMALLOC):
            flags |= ALLOC_NON_BLOCK
            if order > 0:
                flags |= ALLOC_HIGHATOMIC
        if flags & ALLOC_MIN_RESERVE:
            flags &= ~ALLOC_CPUSET
    if gfp_migratetype(gfp) == MOVABLE:
        flags |= ALLOC_CMA
    if policy != LEGACY:
        flags |= ALLOC_NOFRAGMENT
    return flags


# ---------------------------------------------------------------------------------------------
# Watermarks (kernel.md §4.4, 6.12+ semantics)

@njit(cache=True)
def wmark_pages(zs, z, idx):
    base = zs[z, Z_WMIN] if idx == ALLOC_WMARK_MIN else (
        zs[z, Z_WLOW] if idx == ALLOC_WMARK_LOW else zs[z, Z_WHIGH])
    return base + zs[z, Z_BOOST]


@njit(cache=True)
def zone_watermark_ok(zs, nr_free, lowmem, z, order, mark, highest_zt, flags, free):
    """``__zone_watermark_ok``: free minus unusable must exceed the (reduced) mark plus the
    lowmem reserve; for order > 0 some list of that order or above must be non-empty."""
    unusable = (1 << order) - 1
    if not (flags & ALLOC_RESERVES):
        unusable += zs[z, Z_HA_FREE]
    free -= unusable
    mn = mark
    if flags & ALLOC_RESERVES:
        if flags & ALLOC_MIN_RESERVE:
            mn -= mn // 2
            if flags & ALLOC_NON_BLOCK:
                mn -= mn // 4
        if flags & ALLOC_OOM:
            mn -= mn // 2
    if free <= mn + lowmem[z, highest_zt]:
        return False
    if order == 0:
        return True
    norders = nr_free.shape[1]
    for o in range(order, norders):
        for mt in range(3):
            if nr_free[z, o, mt] > 0:
                return True
        if (flags & ALLOC_CMA) and nr_free[z, o, CMA] > 0:
            return True
        if (flags & (ALLOC_HIGHATOMIC | ALLOC_OOM)) and nr_free[z, o, HIGHATOMIC] > 0:
            return True
    return False


# ---------------------------------------------------------------------------------------------
# rmqueue decision (what the allocator would take), without moving pages

@njit(cache=True)
def _smallest(nr_free, z, order, mt):
    for o in range(order, nr_free.shape[1]):
        if nr_free[z, o, mt] > 0:
            return o
    return -1


@njit(cache=True)
def should_try_claim_block(order, start_mt, pbo):
    if order >= pbo:
        return True
    if order >= pbo // 2:
        return True
    if start_mt == RECLAIMABLE or start_mt == UNMOVABLE:
        return True
    return False


@njit(cache=True)
def rmqueue_plan(nr_free, z, order, mt, flags, pbo):
    """Which free list ``rmqueue_buddy`` takes from: (mode, source order, source type).

    6.15 ``__rmqueue``: NORMAL (own type, smallest order) -> CLAIM (top-down over fallback
    types, min order = pageblock order under NOFRAGMENT) -> STEAL (smallest fallback buddy,
    only without NOFRAGMENT); highatomic first for ALLOC_HIGHATOMIC and as the last resort for
    ALLOC_NON_BLOCK/OOM. A CLAIM below pageblock order may be refused page-level (half-block
    rule); the simulation then continues with STEAL, as the kernel does."""
    norders = nr_free.shape[1]
    if flags & ALLOC_HIGHATOMIC:
        o = _smallest(nr_free, z, order, HIGHATOMIC)
        if o >= 0:
            return MODE_HIGHATOMIC, o, HIGHATOMIC
    o = _smallest(nr_free, z, order, mt)
    if o >= 0:
        return MODE_NORMAL, o, mt
    if mt < 3:
        min_order = order
        if order < pbo and (flags & ALLOC_NOFRAGMENT):
            min_order = pbo
        for co in range(norders - 1, min_order - 1, -1):
            if not should_try_claim_block(co, mt, pbo):
                break
            for k in range(2):
                fmt = FALLBACKS[mt, k]
                if nr_free[z, co, fmt] > 0:
                    return MODE_CLAIM, co, fmt
        if not (flags & ALLOC_NOFRAGMENT):
            for co in range(order, norders):
                for k in range(2):
                    fmt = FALLBACKS[mt, k]
                    if nr_free[z, co, fmt] > 0:
                        return MODE_STEAL, co, fmt
    if flags & (ALLOC_OOM | ALLOC_NON_BLOCK):
        o = _smallest(nr_free, z, order, HIGHATOMIC)
        if o >= 0:
            return MODE_HIGHATOMIC, o, HIGHATOMIC
    return MODE_NONE, -1, -1


@njit(cache=True)
def steal_plan(nr_free, z, order, mt):
    """``__rmqueue_steal``: the smallest buddy of a fallback type."""
    for co in range(order, nr_free.shape[1]):
        for k in range(2):
            fmt = FALLBACKS[mt, k]
            if nr_free[z, co, fmt] > 0:
                return co, fmt
    return -1, -1


@njit(cache=True)
def zonelist(zs, highest_zt, node, out):
    """Zones to try in order: the local node's zones from highest_zt down, then other nodes'."""
    n = 0
    nz = zs.shape[0]
    for pass_ in range(2):
        for zt in range(highest_zt, -1, -1):
            for z in range(nz):
                if zs[z, Z_TYPE] != zt or zs[z, Z_MANAGED] <= 0:
                    continue
                local = zs[z, Z_NODE] == node
                if (pass_ == 0 and local) or (pass_ == 1 and not local):
                    out[n] = z
                    n += 1
    return n


@njit(cache=True)
def plan_request(zs, nr_free, lowmem, order, gfp, flags, node, pbo, policy, zl, nzl):
    """One ``get_page_from_freelist`` pass as a decision: the zone, mode, source order and type
    it would use, or z = -1. Also reports whether any zone passed its watermark."""
    mt = gfp_migratetype(gfp)
    highest = gfp_zone(gfp)
    any_wm_ok = False
    no_fallback = flags & ALLOC_NOFRAGMENT
    for attempt in range(2):
        for i in range(nzl):
            z = zl[i]
            if no_fallback and policy == LEGACY and zs[z, Z_NODE] != node:
                # Locality beats fragmentation avoidance (not in defrag_mode).
                break
            mark = wmark_pages(zs, z, flags & ALLOC_WMARK_MASK)
            if not (flags & ALLOC_NO_WATERMARKS):
                if not zone_watermark_ok(zs, nr_free, lowmem, z, order, mark, highest, flags,
                                         zs[z, Z_FREE]):
                    continue
            any_wm_ok = True
            mode, so, smt = rmqueue_plan(nr_free, z, order, mt, flags, pbo)
            if mode != MODE_NONE:
                return z, mode, so, smt, any_wm_ok, flags
        if no_fallback and policy == LEGACY:
            flags &= ~ALLOC_NOFRAGMENT  # UMA "all zones fragmented" retry (not in defrag_mode)
            no_fallback = 0
            continue
        break
    return -1, MODE_NONE, -1, -1, any_wm_ok, flags


@njit(cache=True)
def classify_failure(zs, nr_free, lowmem, order, gfp, flags, node, pbo, zl, nzl):
    """Why a request that reached ``nopage`` failed (the model's ground truth, and the
    attribution rule on an observed state). Order of tests: speculative by construction; below
    the watermark; only NOFRAGMENT stood in the way (a pass without it would succeed); no block
    of that order anywhere; otherwise unknown."""
    if order > 0 and ((gfp & GFP_NORETRY) or not (gfp & (GFP_DIRECT_RECLAIM | GFP_KSWAPD_RECLAIM))):
        return CAUSE_SPEC
    if order > 0 and (gfp & GFP_COMP) and (gfp & GFP_NOWARN) and not (gfp & GFP_DIRECT_RECLAIM) \
            and not (gfp & GFP_KSWAPD_RECLAIM):
        return CAUSE_SPEC
    highest = gfp_zone(gfp)
    wm_any = False
    for i in range(nzl):
        z = zl[i]
        mark = wmark_pages(zs, z, flags & ALLOC_WMARK_MASK)
        # watermark on free pages only (the order-0 part of the check)
        if zone_watermark_ok(zs, nr_free, lowmem, z, 0, mark, highest, flags, zs[z, Z_FREE]):
            wm_any = True
    if not wm_any:
        return CAUSE_LOW
    if flags & ALLOC_NOFRAGMENT:
        z, mode, so, smt, ok, f2 = plan_request(zs, nr_free, lowmem, order, gfp,
                                                flags & ~ALLOC_NOFRAGMENT, node, pbo, LEGACY, zl, nzl)
        if z >= 0:
            return CAUSE_BAILOUT
    if order > 0:
        return CAUSE_FRAG
    return CAUSE_UNKNOWN
