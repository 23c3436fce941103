"""The page allocator's state and its decisions, compiled with numba.

Every decision the allocator makes is made here and only here: the alloc_flags a request
carries, the zone ``get_page_from_freelist`` serves it from (watermarks, ALLOC_NO_WATERMARKS,
the NOFRAGMENT retries), the rmqueue mode, source order and source type, whether a claim takes
the block (the half-block rule), whether the highatomic reserve grows, the slowpath's retries,
and why a request that reached ``nopage`` failed. :mod:`models.pages` and :mod:`models.sim` act
on these plans (take the page, split, relabel, count); triage calls the same functions on an
observed state (:func:`view`), where page-level detail is absent and claims are assumed to
succeed.

The state is :data:`Allocator`, a namedtuple of arrays whose columns are named below. Sources:
kernel.md §4 (mm/page_alloc.c @ a211c655 and the patches it lists). Where the model simplifies,
the docstring of the function says so.
"""
from __future__ import annotations

import hashlib
import os
from collections import namedtuple
from pathlib import Path

import numpy as np
from numba import njit
from numba.core import config as _numba_config


def _use_source_keyed_cache() -> None:
    """numba checks a cached function only against its own file's time stamp, but a function
    carries the code of those it calls and inlines from other files (``plan`` from here into
    :mod:`models.pages` and :mod:`models.sim`): after an update of this file alone, they would
    run the old decisions. The cache therefore lives in a directory named by a hash of every
    compiled module's source, under ``NUMBA_CACHE_DIR`` when it is set."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for name in ("engine.py", "pages.py", "sim.py", "state.py"):
        h.update((here / name).read_bytes())
    base = os.environ.get("NUMBA_CACHE_DIR") or str(here / "__pycache__" / "numba")
    try:
        os.makedirs(base, exist_ok=True)
        writable = os.access(base, os.W_OK)
    except OSError:
        writable = False
    if not writable:  # an installed, read-only tree: numba's own fallback would not be keyed
        base = os.path.join(os.path.expanduser("~"), ".cache", "mmtriage", "numba")
    _numba_config.CACHE_DIR = os.path.join(base, h.hexdigest()[:16])


_use_source_keyed_cache()

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
Z_NODE_DMA32 = 15  # the zone's node has a populated DMA32 zone (alloc_flags_nofragment)
Z_LOWMEM = 16      # Z_LOWMEM + t: lowmem_reserve for requests whose highest zone type is t
NZF = 20

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


# The allocator's and the simulation's functions are compiled without numba's reference
# counting (``_nrt=False``, as numba's own hot helpers are): with it, a function that calls
# another increfs and decrefs every array of its state tuples on entry and exit, two atomic
# operations per array, which was more than half of a simulation's time. These functions
# allocate nothing; the arrays they get live as long as their Python caller holds them.
jit = njit(cache=True, _nrt=False)
# The allocation and free fast paths are inlined into their callers (numba IR inlining): a
# call passing the whole state costs more than the fast path itself.
jit_inline = njit(cache=True, _nrt=False, inline="always")


def jit_inline_into(*callers):
    """Compiled, and inlined (numba IR) only where the functions named ``callers`` call it:
    the fast path's chain of calls (alloc_pages -> get_page_from_freelist -> plan ->
    rmqueue_plan, rmqueue -> take; free_block -> free_pages) becomes one body, without a copy
    in every other caller, each of which costs compile time. Measured on the allocator
    benchmark: 1.16-1.77x the operations a second, compile time unchanged; inline="always"
    on the same functions gave 1.1x and 50 s more compiling (docs/benchmarks.md)."""
    def decide(expr, caller_info, callee_info):
        return caller_info.func_id.func_name in callers
    return njit(cache=True, _nrt=False, inline=decide)


# An entry point called from Python lets go of the GIL: independent runs (seeds) share the cores
# from threads. numba's random state is per thread, so a run seeded in its thread is the same.
jit_entry = njit(cache=True, _nrt=False, nogil=True)

# ---------------------------------------------------------------------------------------------
# The state (one namedtuple of arrays; numba specialises on its type, so the simulator's state
# and an observed view share the compiled decisions)

NZT = 4  # zone types a zonelist is indexed by (DMA, DMA32, Normal, Movable)

# One record per page frame (empty in an observed view).
PAGE_DTYPE = np.dtype([
    ("nxt", np.int32),    # next page on its free list (-1: last)
    ("prv", np.int32),    # previous page on its free list (-1: first)
    ("pos", np.int32),    # slot in its workload pool (models.sim), -1 if in none
    ("order", np.int8),   # order of the free buddy starting here, -1 if not a free buddy head
    ("kind", np.int8),    # PK_*: what the page holds
    ("pool", np.int8),    # workload pool holding the page, -1 if none
    ("spare", np.int8)])
# One record per pageblock (empty in an observed view).
BLOCK_DTYPE = np.dtype([
    ("free", np.int32),     # free pages in the block
    ("movable", np.int32),  # allocated movable pages (LRU-like: what compaction can move)
    ("mt", np.int8),        # migratetype label
    ("zone", np.int8),      # zone index
    ("spare", np.int16)])

# Numba passes tuples to functions by value, flattened (an array is 5 + 2 x ndim words).
# Beyond ~110 words LLVM's call lowering turns pathological (measured: a call costs ~240 ns
# instead of ~12 ns), so this state stays small: STATE_WORDS_MAX, checked by a test.
STATE_WORDS_MAX = 96
Allocator = namedtuple("Allocator", (
    "zs",          # [zone, Z_*] zone fields (columns above)
    "nr_free",     # [zone, order, migratetype] free buddies on each list
    "heads",       # [zone, order, migratetype] first page of each free list, -1 if empty
    "pg",          # [pfn] PAGE_DTYPE
    "blk",         # [pageblock] BLOCK_DTYPE
    "counters",    # [C_*]
    "zonelists",   # [node, highest zone type, i] the zones to try, in order; -1 ends the list
    "pbo",         # pageblock order
    "max_order",   # NR_PAGE_ORDERS: orders 0 .. max_order - 1
    "page_size",   # bytes
    "boost_factor",  # vm.watermark_boost_factor (boost_watermark; 0: no boosting)
), defaults=(15000,))


def state_words(x) -> int:
    """How many machine words numba passes for ``x`` (a state tuple) in a call."""
    if isinstance(x, tuple):
        return sum(state_words(v) for v in x)
    if isinstance(x, np.ndarray):
        return 5 + 2 * x.ndim
    return 1


@jit
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


def zonelists(zs: np.ndarray, nnodes: int) -> np.ndarray:
    """The zonelist of every node and highest zone type (-1 terminated); also marks each
    zone whose node has a populated DMA32 zone (Z_NODE_DMA32)."""
    nz = zs.shape[0]
    zl = np.full((nnodes, NZT, nz + 1), -1, dtype=np.int64)
    for node in range(nnodes):
        for zt in range(NZT):
            zonelist(zs, zt, node, zl[node, zt])
    for z in range(nz):
        zs[z, Z_NODE_DMA32] = int(any(zs[y, Z_TYPE] == ZONE_DMA32 and
                                      zs[y, Z_NODE] == zs[z, Z_NODE] and zs[y, Z_MANAGED] > 0
                                      for y in range(nz)))
    return zl


def with_lowmem(zs, lowmem) -> np.ndarray:
    """A copy of an observed state's zone fields with its lowmem_reserve in Z_LOWMEM."""
    out = np.zeros((zs.shape[0], NZF), dtype=np.int64)
    out[:, :min(zs.shape[1], NZF)] = zs[:, :NZF]
    n = min(lowmem.shape[1], NZT) if lowmem.ndim == 2 else 0
    out[:, Z_LOWMEM:Z_LOWMEM + n] = lowmem[:, :n]
    return out


def view(zs, nr_free, lowmem, pbo: int, node: int = 0, highest: int | None = None, zl=None,
         nzl: int | None = None, page_size: int = 4096) -> Allocator:
    """An observed state as the decisions read it: zone fields and free-list counts, no pages.
    ``zl``/``nzl`` (with ``highest``) replace the zonelist the zone
    types would give."""
    zs = with_lowmem(zs, lowmem)
    nnodes = max(int(node) + 1, int(zs[:, Z_NODE].max()) + 1 if len(zs) else 1)
    zls = zonelists(zs, nnodes)
    if zl is not None:
        zls[node, highest, :] = -1
        zls[node, highest, :nzl] = zl[:nzl]
    nz = zs.shape[0]
    return Allocator(zs, nr_free, np.full(nr_free.shape, -1, dtype=np.int64),
                     np.zeros(0, dtype=PAGE_DTYPE), np.zeros(0, dtype=BLOCK_DTYPE),
                     np.zeros(NCOUNTERS, dtype=np.int64), zls, int(pbo),
                     int(nr_free.shape[1]), int(page_size))


# ---------------------------------------------------------------------------------------------
# GFP -> zone, migratetype, alloc_flags (kernel.md §4.1-4.2, §4.6 step 1)

@jit
def gfp_migratetype(gfp):
    m = (gfp & (GFP_RECLAIMABLE | GFP_MOVABLE)) >> 3
    if m == 1:
        return MOVABLE
    if m == 2:
        return RECLAIMABLE
    return UNMOVABLE


@jit
def gfp_zone(gfp):
    if gfp & GFP_DMA:
        return ZONE_DMA
    if gfp & GFP_DMA32:
        return ZONE_DMA32
    if (gfp & GFP_HIGHMEM) and (gfp & GFP_MOVABLE):
        return ZONE_MOVABLE
    return ZONE_NORMAL


@jit
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


@jit
def fast_path_flags(A, gfp, node, policy):
    """``prepare_alloc_pages`` + ``alloc_flags_nofragment``: the flags of the first
    ``get_page_from_freelist`` (low watermark)."""
    highest = gfp_zone(gfp)
    pref = A.zonelists[node, highest, 0]
    flags = ALLOC_WMARK_LOW | alloc_flags_nofragment(A.zs, pref, gfp, policy,
                                                     pref >= 0 and A.zs[pref, Z_NODE_DMA32] > 0)
    if gfp_migratetype(gfp) == MOVABLE:
        flags |= ALLOC_CMA
    return flags


@jit
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
# The slowpath's decisions (kernel.md §4.6-4.8)

@jit
def kswapd_wake_order(order, policy, pbo):
    """``wake_all_kswapds``: defrag_mode wakes kswapd for a whole pageblock."""
    if policy != LEGACY and order < pbo:
        return pbo
    return order


@jit
def bailout_retries(gfp, flags, policy):
    """At ``!can_direct_reclaim``: the 2026 fix clears NOFRAGMENT and retries for requests
    that may wake kswapd, instead of going to nopage with it still set."""
    return policy == DEFRAG_FIXED and (flags & ALLOC_NOFRAGMENT) != 0 and \
        (gfp & GFP_KSWAPD_RECLAIM) != 0


@jit
def fallback_retries(flags, policy):
    """"Reclaim/compaction failed to prevent the fallback" (7a95a05f15d5): in defrag_mode,
    one more pass without NOFRAGMENT."""
    return policy != LEGACY and (flags & ALLOC_NOFRAGMENT) != 0


# ---------------------------------------------------------------------------------------------
# Watermarks (kernel.md §4.4, 6.12+ semantics)

@jit
def wmark_pages(zs, z, idx):
    base = zs[z, Z_WMIN] if idx == ALLOC_WMARK_MIN else (
        zs[z, Z_WLOW] if idx == ALLOC_WMARK_LOW else zs[z, Z_WHIGH])
    return base + zs[z, Z_BOOST]


@jit
def watermark_ok(zs, nr_free, z, order, mark, highest_zt, flags, free):
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
    if free <= mn + zs[z, Z_LOWMEM + highest_zt]:
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


def zone_watermark_ok(zs, nr_free, lowmem, z, order, mark, highest_zt, flags, free):
    """:func:`watermark_ok` on an observed state with a separate lowmem_reserve array."""
    return bool(watermark_ok(with_lowmem(zs, lowmem), nr_free, z, order, mark, highest_zt,
                             flags, free))


@jit
def pgdat_balanced(A, node, order, policy):
    """kswapd's ``pgdat_balanced``: any eligible zone at its high mark; in defrag_mode with
    order > 0 the free count is NR_FREE_PAGES_BLOCKS (whole free pageblocks). A boosted zone
    is not balanced."""
    for z in range(A.zs.shape[0]):
        if A.zs[z, Z_NODE] != node or A.zs[z, Z_MANAGED] <= 0:
            continue
        mark = wmark_pages(A.zs, z, ALLOC_WMARK_HIGH)
        free = A.zs[z, Z_FREE]
        if policy != LEGACY and order > 0:
            free = A.zs[z, Z_FREE_BLOCKS]
        if watermark_ok(A.zs, A.nr_free, z, order, mark, A.zs[z, Z_TYPE], 0, free):
            if A.zs[z, Z_BOOST] == 0:
                return True
    return False


# ---------------------------------------------------------------------------------------------
# rmqueue: which free list a request is served from (kernel.md §4.5)

@jit
def rmqueue_smallest(nr_free, z, order, mt):
    """``__rmqueue_smallest``: the lowest order >= ``order`` with a free ``mt`` buddy, or -1."""
    for o in range(order, nr_free.shape[1]):
        if nr_free[z, o, mt] > 0:
            return o
    return -1


@jit
def should_try_claim_block(order, start_mt, pbo):
    if order >= pbo:
        return True
    if order >= pbo // 2:
        return True
    if start_mt == RECLAIMABLE or start_mt == UNMOVABLE:
        return True
    return False


@jit
def find_suitable_fallback(nr_free, z, order, mt):
    """The first type in ``fallbacks[mt]`` with a free buddy of exactly this order, or -1."""
    for k in range(2):
        fmt = FALLBACKS[mt, k]
        if nr_free[z, order, fmt] > 0:
            return fmt
    return -1


@jit
def claim_accepts(cur_order, start_mt, block_mt, free, movable, pbo):
    """``try_to_claim_block``: a buddy of pageblock order or more is taken outright; below
    that the block converts only if its free pages plus the pages compatible with the request
    are at least half of it (movable pages for a movable request; for others, the non-free
    non-movable pages of a movable block)."""
    if cur_order >= pbo:
        return True
    per = 1 << pbo
    if start_mt == MOVABLE:
        alike = movable
    elif block_mt == MOVABLE:
        alike = per - free - movable
    else:
        alike = 0
    return free + alike >= per // 2


@jit
def claim_refused(A, z, cur_order, fmt, start_mt):
    """Whether claiming the block of the first page on list (z, cur_order, fmt) is refused.
    Without page-level detail (an observed view) claims are assumed to succeed."""
    pfn = A.heads[z, cur_order, fmt]
    if cur_order >= A.pbo or pfn < 0:
        return False
    b = pfn >> A.pbo
    return not claim_accepts(cur_order, start_mt, A.blk[b].mt, A.blk[b].free, A.blk[b].movable,
                             A.pbo)


@jit_inline_into("rmqueue_plan")
def rmqueue_fallback_plan(A, z, order, mt, flags):
    """6.15 ``__rmqueue``: NORMAL (own type, smallest order) -> CLAIM (top-down over orders, at
    each the first fallback type with a free buddy (``find_suitable_fallback``); min order =
    pageblock order under NOFRAGMENT; a claim the half-block rule refuses moves on to the next
    order) -> STEAL (smallest fallback buddy, only without NOFRAGMENT). Returns (mode, source
    order, source type, claims refused before the chosen one; each boosted the watermark)."""
    norders = A.nr_free.shape[1]
    pbo = A.pbo
    refused = 0
    o = rmqueue_smallest(A.nr_free, z, order, mt)
    if o >= 0:
        return MODE_NORMAL, o, mt, 0
    if mt < 3:
        min_order = order
        if order < pbo and (flags & ALLOC_NOFRAGMENT):
            min_order = pbo
        for co in range(norders - 1, min_order - 1, -1):
            if not should_try_claim_block(co, mt, pbo):
                break
            fmt = find_suitable_fallback(A.nr_free, z, co, mt)
            if fmt < 0:
                continue
            if not claim_refused(A, z, co, fmt, mt):
                return MODE_CLAIM, co, fmt, refused
            refused += 1  # the next candidate is the next order down, as in the kernel
        if not (flags & ALLOC_NOFRAGMENT):
            for co in range(order, norders):
                fmt = find_suitable_fallback(A.nr_free, z, co, mt)
                if fmt >= 0:
                    return MODE_STEAL, co, fmt, refused
    return MODE_NONE, -1, -1, refused


@jit_inline_into("plan")
def rmqueue_plan(A, z, order, mt, flags):
    """``rmqueue_buddy`` as a decision: (mode, source order, source type, claims refused).
    Highatomic first for ALLOC_HIGHATOMIC, then ``__rmqueue``, then the highatomic reserve as
    the last resort for ALLOC_NON_BLOCK/OOM. (The model has no per-CPU lists.)"""
    if flags & ALLOC_HIGHATOMIC:
        o = rmqueue_smallest(A.nr_free, z, order, HIGHATOMIC)
        if o >= 0:
            return MODE_HIGHATOMIC, o, HIGHATOMIC, 0
    mode, so, smt, refused = rmqueue_fallback_plan(A, z, order, mt, flags)
    if mode != MODE_NONE:
        return mode, so, smt, refused
    if flags & (ALLOC_OOM | ALLOC_NON_BLOCK):
        o = rmqueue_smallest(A.nr_free, z, order, HIGHATOMIC)
        if o >= 0:
            return MODE_HIGHATOMIC, o, HIGHATOMIC, refused
    return MODE_NONE, -1, -1, refused


@jit
def highatomic_reserve_ok(A, z, b):
    """``reserve_highatomic_pageblock`` after an ALLOC_HIGHATOMIC success in block ``b``: the
    reserve grows while under ~1 % of the zone (none if 1 % is less than a pageblock), and
    only from an ordinary (unmovable/movable/reclaimable) block."""
    per = 1 << A.pbo
    if A.zs[z, Z_MANAGED] // 100 < per:
        return False
    max_managed = (A.zs[z, Z_MANAGED] // 100) // per * per + per
    if A.zs[z, Z_HA_RESERVED] >= max_managed:
        return False
    return A.blk[b].mt <= RECLAIMABLE


@jit
def highatomic_unreserve_block(A, z, force):
    """``unreserve_highatomic_pageblock``: the first highatomic block of the zone to give
    back (keeping one unless forced), or -1."""
    per = 1 << A.pbo
    if not force and A.zs[z, Z_HA_RESERVED] <= per:
        return -1
    if A.zs[z, Z_HA_RESERVED] <= 0:
        return -1
    for b in range(A.zs[z, Z_START] >> A.pbo, A.zs[z, Z_END] >> A.pbo):
        if A.blk[b].mt == HIGHATOMIC:
            return b
    return -1


# ---------------------------------------------------------------------------------------------
# get_page_from_freelist: which zone (kernel.md §4.3)

@jit_inline_into("get_page_from_freelist")
def plan(A, order, gfp, flags, node, policy):
    """One ``get_page_from_freelist`` call as a decision. Returns (zone, mode, source order,
    source type, flags it ended with, claims refused, whether any zone was usable); zone -1
    when every zone fails. Zones are tried in zonelist order; a zone below its watermark is
    skipped unless ALLOC_NO_WATERMARKS; with NOFRAGMENT outside defrag_mode a remote zone, or
    the end of the list, restarts the walk without it."""
    mt = gfp_migratetype(gfp)
    highest = gfp_zone(gfp)
    any_ok = False
    for attempt in range(2):
        no_fallback = flags & ALLOC_NOFRAGMENT
        for i in range(A.zonelists.shape[2]):
            z = A.zonelists[node, highest, i]
            if z < 0:
                break
            if no_fallback and policy == LEGACY and A.zs[z, Z_NODE] != node:
                break  # locality beats fragmentation avoidance (not in defrag_mode)
            if not (flags & ALLOC_NO_WATERMARKS):
                mark = wmark_pages(A.zs, z, flags & ALLOC_WMARK_MASK)
                if not watermark_ok(A.zs, A.nr_free, z, order, mark, highest, flags,
                                    A.zs[z, Z_FREE]):
                    continue
            any_ok = True
            mode, so, smt, refused = rmqueue_plan(A, z, order, mt, flags)
            if mode != MODE_NONE:
                return z, mode, so, smt, flags, refused, any_ok
        if no_fallback and policy == LEGACY:
            flags &= ~ALLOC_NOFRAGMENT  # UMA "all zones fragmented" retry (not in defrag_mode)
            continue
        break
    return -1, MODE_NONE, -1, -1, flags, 0, any_ok


@jit
def classify(A, order, gfp, flags, node):
    """Why a request that reached ``nopage`` with ``flags`` failed (the model's ground truth,
    and the attribution rule on an observed state). Order of tests: speculative by
    construction; below the watermark; only NOFRAGMENT stood in the way (a pass without it
    would succeed); no block of that order anywhere; otherwise unknown."""
    if order > 0 and ((gfp & GFP_NORETRY) or not (gfp & (GFP_DIRECT_RECLAIM | GFP_KSWAPD_RECLAIM))):
        return CAUSE_SPEC
    highest = gfp_zone(gfp)
    wm_any = False
    for i in range(A.zonelists.shape[2]):
        z = A.zonelists[node, highest, i]
        if z < 0:
            break
        mark = wmark_pages(A.zs, z, flags & ALLOC_WMARK_MASK)
        # watermark on free pages only (the order-0 part of the check)
        if watermark_ok(A.zs, A.nr_free, z, 0, mark, highest, flags, A.zs[z, Z_FREE]):
            wm_any = True
    if not wm_any:
        return CAUSE_LOW
    if flags & ALLOC_NOFRAGMENT:
        if plan(A, order, gfp, flags & ~ALLOC_NOFRAGMENT, node, LEGACY)[0] >= 0:
            return CAUSE_BAILOUT
    if order > 0:
        return CAUSE_FRAG
    return CAUSE_UNKNOWN


# ---------------------------------------------------------------------------------------------
# The same decisions on plain arrays (triage's observed states)

def plan_request(zs, nr_free, lowmem, order, gfp, flags, node, pbo, policy, zl, nzl):
    """:func:`plan` on an observed state with the zonelist ``zl[:nzl]``. Returns (zone, mode,
    source order, source type, any zone usable, flags it ended with)."""
    A = view(zs, nr_free, lowmem, pbo, node, int(gfp_zone(gfp)), zl, nzl)
    z, mode, so, smt, f, refused, ok = plan(A, order, gfp, flags, node, policy)
    return z, mode, so, smt, ok, f


def classify_failure(zs, nr_free, lowmem, order, gfp, flags, node, pbo, zl, nzl):
    """:func:`classify` on an observed state with the zonelist ``zl[:nzl]``."""
    return classify(view(zs, nr_free, lowmem, pbo, node, int(gfp_zone(gfp)), zl, nzl), order,
                    gfp, flags, node)
