"""The simulation loop (numba): workloads, the slowpath, kswapd, kcompactd, SLUB, rate limits.

State is a few namedtuples of arrays, each with its columns named next to it and built by
:mod:`models.simulate`: the allocator (:data:`models.engine.Allocator`), :data:`Pools` (which
workload owns which page), :data:`Slub` (the SLUB cache rows), :data:`Daemons` (kswapd and
kcompactd, rate limits, the network load's state), :data:`Record` (snapshots, reports, ground
truth) and :data:`Config`; :data:`Sim` carries them all. One call of :func:`run` simulates
``seconds`` in ticks of ``dt``; each tick is a sequence of phases (:func:`tick`).

Simplifications (documented in docs/model.md): no per-CPU page lists; objects of a SLUB cache
are fungible (a slab is discarded once enough objects are free, see :func:`slub_frees`);
lifetimes are exponential, so frees per tick are Poisson(in use x dt / life); reclaim takes
random page-cache pages (an approximate LRU); compaction migrates movable pages out of the
lowest candidate block into free pages found from the top of the zone.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

from models.engine import (ALLOC_KSWAPD, ALLOC_NOFRAGMENT, ALLOC_WMARK_HIGH, C_ALLOCSTALL,
                           C_COMPACT_DAEMON_MIGRATE, C_COMPACT_FAIL, C_COMPACT_MIGRATE,
                           C_COMPACT_STALL, C_COMPACT_SUCCESS, C_FAIL_TOTAL, C_KCOMPACTD_WAKE,
                           C_KSWAPD_WAKE, C_NET_DEMAND, C_NET_FAILED, C_NET_INUSE, C_OPS,
                           C_PAGEOUTRUN, C_PGSCAN_DIRECT, C_PGSCAN_KSWAPD, C_PGSTEAL_DIRECT,
                           C_PGSTEAL_KSWAPD, C_THP_FAULT_ALLOC, C_THP_FAULT_FALLBACK,
                           CAUSE_NONE, CAUSE_UNKNOWN, GFP_ATOMIC, GFP_COMP, GFP_DIRECT_RECLAIM,
                           GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_KSWAPD_RECLAIM, GFP_NOFAIL,
                           GFP_NOMEMALLOC, GFP_NORETRY, GFP_NOWARN, GFP_RECLAIMABLE,
                           GFP_RETRY_MAYFAIL, GFP_TRANSHUGE_LIGHT, LEGACY, MOVABLE, NMT, PK_ANON,
                           PK_FREE, PK_MOVABLE, PK_RECLAIMABLE, PK_SLAB, PK_THP, PK_UNMOVABLE,
                           Z_BOOST, Z_BOOSTED, Z_END, Z_FREE, Z_FREE_BLOCKS, Z_MANAGED, Z_NODE,
                           Z_START, Z_TYPE, ZONE_DMA32, bailout_retries, classify,
                           fallback_retries, fast_path_flags, gfp_migratetype, gfp_to_alloc_flags,
                           gfp_zone, jit, jit_entry, jit_inline, kswapd_wake_order, pgdat_balanced,
                           wmark_pages)
from models.pages import (free_block, free_pages, get_page_from_freelist, take,
                          unreserve_highatomic)
from parsers import ratelimit as ratelimits

# ---------------------------------------------------------------------------------------------
# Workload parameters (one float vector; scenarios and calibration set them by name)

PARAMS = ("net_rate", "net_burst_mult", "net_burst_frac", "net_burst_len_s", "net_obj_life_s",
          "kernel_rate", "kernel_life_s", "reclaimable_rate", "reclaimable_life_s",
          "pagecache_rate", "pagecache_life_s", "anon_rate", "anon_life_s", "thp_rate",
          "thp_life_s", "kswapd_rate", "kcompactd_rate", "atomic_page_rate",
          "atomic_high_rate", "atomic_high_order", "net_start_s", "net_stop_s", "net_hold_frac",
          "reclaim_stall_s", "net_hold_max", "net_release_s")
P_IDX = {n: i for i, n in enumerate(PARAMS)}
(P_NET, P_BMULT, P_BFRAC, P_BLEN, P_NLIFE, P_KRATE, P_KLIFE, P_RRATE, P_RLIFE, P_PCRATE, P_PCLIFE,
 P_ARATE, P_ALIFE, P_THPRATE, P_THPLIFE, P_KSWAPD, P_KCOMPACTD, P_ATOMPG, P_ATOMHI,
 P_ATOMHI_ORDER, P_NSTART, P_NSTOP, P_HOLD, P_STALL, P_HOLD_MAX, P_RELEASE) = range(len(PARAMS))

# ---------------------------------------------------------------------------------------------
# Pools: which workload owns an allocated page (for frees, reclaim and compaction)

POOL_PAGECACHE, POOL_ANON, POOL_KERNEL, POOL_RECLAIMABLE, POOL_THP, POOL_PINNED, POOL_ATOMIC = \
    0, 1, 2, 3, 4, 5, 6
POOL_ATOMIC_HI = 7
NPOOLS = 8

Pools = namedtuple("Pools", (
    "pfn",  # [pool, i] the pages each workload pool holds (a page's slot: Allocator.pg.pos)
    "n",    # [pool] how many
))

# ---------------------------------------------------------------------------------------------
# Page workloads: one row each, what it allocates (its rate and lifetime are parameters)

(WL_PAGECACHE, WL_ANON, WL_KERNEL, WL_RECLAIMABLE, WL_ATOMIC_PAGES, WL_ATOMIC_BUFFERS,
 WL_THP) = range(7)
WL_POOL, WL_GFP, WL_KIND, WL_RATE, WL_LIFE, WL_ORDER, WL_NET = range(7)
ORDER_PARAM, ORDER_PAGEBLOCK = -1, -2  # WL_ORDER: atomic_high_order; the pageblock order
WORKLOADS = np.array([
    # pool              gfp                            page kind       rate       lifetime   order  net*
    [POOL_PAGECACHE, GFP_HIGHUSER_MOVABLE, PK_MOVABLE, P_PCRATE, P_PCLIFE, 0, 0],
    [POOL_ANON, GFP_HIGHUSER_MOVABLE, PK_ANON, P_ARATE, P_ALIFE, 0, 0],
    [POOL_KERNEL, GFP_KERNEL, PK_UNMOVABLE, P_KRATE, P_KLIFE, 0, 0],
    [POOL_RECLAIMABLE, GFP_KERNEL | GFP_RECLAIMABLE, PK_RECLAIMABLE, P_RRATE, P_RLIFE, 0, 0],
    [POOL_ATOMIC, GFP_ATOMIC, PK_UNMOVABLE, P_ATOMPG, P_NLIFE, 0, 1],
    # order-N atomic buffers (page_frag / jumbo rx style)
    [POOL_ATOMIC_HI, GFP_ATOMIC | GFP_COMP, PK_UNMOVABLE, P_ATOMHI, P_NLIFE, ORDER_PARAM, 1],
    # THP faults: expected to fail quietly without a free block
    [POOL_THP, GFP_TRANSHUGE_LIGHT, PK_THP, P_THPRATE, P_THPLIFE, ORDER_PAGEBLOCK, 0],
], dtype=np.int64)  # * net: the rate follows the network load (bursts, window)

# ---------------------------------------------------------------------------------------------
# SLUB cache rows. A row is a cache allocated from one context: a network object's head
# (no parent, atomic), its data buffer (a child row: allocated for a share of the parent's
# objects), or the same cache from process context ("name#kernel": GFP_KERNEL). Rows of one
# cache share the first row's slabs and free objects (CA_OWNER).

CA_OBJ_SIZE, CA_ORDER, CA_MIN_ORDER, CA_GFP, CA_PER_SLAB, CA_SHARE, CA_PARENT, CA_OWNER = range(8)
NCA = 8                 # caches[row, CA_*]; CA_SHARE in thousandths, CA_PARENT -1: none
(OB_FREE, OB_INUSE, OB_FAILED, OB_HELD, OB_STALL_UNTIL, OB_NOPAGE, OB_TICK_OK) = range(7)
NOB = 7
# objs[row, OB_*]: free objects (on the owner row), in use, failed; atomic rows: objects held
# until the load stops; process-context rows: when their reclaim wait ends (us + 1, 0 none);
# this tick: the cause a slab allocation failed with (-1 none), a child's successes.
Slub = namedtuple("Slub", (
    "caches",      # [row, CA_*]
    "objs",        # [row, OB_*]
    "slab_pfn",    # [owner row, i] its slabs, oldest first
    "slab_order",  # [owner row, i]
    "nslabs",      # [owner row]
))
MIN_PARTIAL = 5     # SLUB's floor of partial slabs kept per node (mm/slub.c MIN_PARTIAL)
SKB_CHUNK = 16      # objects allocated head-then-data before the next chunk

# ---------------------------------------------------------------------------------------------
# Daemons, rate limits and the network load

KSWAPD, KCOMPACTD = 0, 1            # W[node, *]: the order the daemon was woken for, -1 asleep
RL_SLUB, RL_WARN = 0, 1             # ratelimit rows: slab_out_of_memory, warn_alloc
RL_BEGIN, RL_PRINTED, RL_MISSED = 0, 1, 2
SLUB_RL_INTERVAL, SLUB_RL_BURST = ratelimits.SLUB   # slab_out_of_memory: 10 per 5 s, all caches
LOAD_QUIET, LOAD_BURST, LOAD_STOPPED = 0, 1, 2  # the network load's on/off Markov chain
Daemons = namedtuple("Daemons", (
    "W",            # [node, KSWAPD/KCOMPACTD]
    "comp_cursor",  # [zone] where kcompactd's migration scanner resumes
    "ratelimit",    # [RL_*, RL_BEGIN/PRINTED/MISSED]
    "load",         # [0]: LOAD_*
))
# alloc_pages' scratch array ``stats``
ST_RECLAIMED = 0      # pages direct reclaim freed
ST_NOPAGE_FLAGS = 1   # the alloc_flags the last failed request reached nopage with
ST_FIX_RETRIES = 2    # how often the 2026 fix's retry ran
ST_TOUCHED = 3        # (a sum of memory touched ahead, kept so the touches are not dropped)
NSTATS = 4

# ---------------------------------------------------------------------------------------------
# What a run records

R_SLUB, R_WARN, R_SUPP_SLUB, R_SUPP_WARN = 0, 1, 2, 3      # report kinds
REP_T, REP_KIND, REP_A, REP_B, REP_C, REP_CACHE = range(6)  # rep[i, *]; a/b/c per kind
NREP = 6
TRUTH_SLUB, TRUTH_PAGE = 0, 1                               # what failed
TR_T, TR_KIND, TR_ORDER, TR_CAUSE, TR_CACHE = range(5)     # truth[i, *]
NTR = 5
FILL_SNAPS, FILL_REPORTS, FILL_CAPTURES, FILL_TRUTH = range(4)  # fill[*]: rows used
Record = namedtuple("Record", (
    "snap_times",    # [k] when to snapshot
    "snaps_nr",      # [k, zone, order, type] nr_free
    "snaps_zs",      # [k, zone, Z_*]
    "snaps_cnt",     # [k, C_*]
    "snaps_blocks",  # [k, zone, type] pageblocks
    "snaps_inuse",   # [k, row] SLUB objects in use
    "rep",           # [i, REP_*] printed reports and suppressed-callback lines
    "caps",          # [i, zone, order, type] nr_free at each printed warn_alloc
    "cap_zs",        # [i, zone, Z_*]
    "truth",         # [i, TR_*] every failure
    "fail_sec",      # [second, cause] failures
    "fill",          # [FILL_*]
))
# Report fields: R_SLUB (a=row, b=gfp, c=slabs), R_WARN (a=order, b=gfp, c=capture),
# R_SUPP_* (a=callbacks suppressed).

Config = namedtuple("Config", ("policy", "dt", "nnodes", "warn_interval", "warn_burst"))
Sim = namedtuple("Sim", (
    "A",      # models.engine.Allocator
    "L",      # Pools
    "slub",   # Slub
    "d",      # Daemons
    "rec",    # Record
    "stats",  # [ST_*] scratch
    "picks",  # [i] scratch: random picks drawn ahead (free_random)
    "P",      # [P_*] workload parameters
    "cfg",    # Config
))


@jit
def _poisson(lam):
    if lam <= 0.0:
        return 0
    if lam > 1e6:
        return int(lam + np.sqrt(lam) * np.random.standard_normal())
    return np.random.poisson(lam)


@jit
def pool_add(A, L, pool, pfn):
    i = L.n[pool]
    L.pfn[pool, i] = pfn
    A.pg[pfn].pos = i
    A.pg[pfn].pool = pool
    L.n[pool] = i + 1


@jit
def pool_remove_at(A, L, pool, i):
    pfn = L.pfn[pool, i]
    last = L.n[pool] - 1
    lp = L.pfn[pool, last]
    L.pfn[pool, i] = lp
    A.pg[lp].pos = i
    L.n[pool] = last
    A.pg[pfn].pos = -1
    A.pg[pfn].pool = -1
    return pfn


@jit
def pool_move(A, L, src, dst):
    """A migrated page: ``dst`` takes ``src``'s slot in its pool."""
    pl = A.pg[src].pool
    if pl >= 0:
        i = A.pg[src].pos
        L.pfn[pl, i] = dst
        A.pg[dst].pos = i
        A.pg[dst].pool = pl
        A.pg[src].pos = -1
        A.pg[src].pool = -1


@jit
def wake_kswapd(A, W, node, order, policy):
    o = kswapd_wake_order(order, policy, A.pbo)
    if W[node, KSWAPD] < o:
        if W[node, KSWAPD] < 0:
            A.counters[C_KSWAPD_WAKE] += 1
        W[node, KSWAPD] = o


@jit
def reclaim(A, L, node, nr, direct):
    """Free up to ``nr`` page-cache pages of this node (random pick: an approximate LRU)."""
    done = 0
    tries = 0
    while done < nr and L.n[POOL_PAGECACHE] > 0 and tries < 4 * nr + 16:
        tries += 1
        i = np.random.randint(0, L.n[POOL_PAGECACHE])
        pfn = L.pfn[POOL_PAGECACHE, i]
        if A.zs[A.blk[pfn >> A.pbo].zone, Z_NODE] != node:
            continue
        pool_remove_at(A, L, POOL_PAGECACHE, i)
        free_block(A, pfn, 0)
        done += 1
    if direct:
        A.counters[C_PGSCAN_DIRECT] += tries
        A.counters[C_PGSTEAL_DIRECT] += done
    else:
        A.counters[C_PGSCAN_KSWAPD] += tries
        A.counters[C_PGSTEAL_KSWAPD] += done
    return done


@jit
def _migration_target(A, z, b):
    """Compaction's free scanner: the smallest free movable buddy outside block ``b`` (holes
    elsewhere are filled first), looking at up to four per list. -1 if none."""
    for o in range(A.max_order):
        h = A.heads[z, o, MOVABLE]
        tries = 0
        while h >= 0 and tries < 4:
            if (h >> A.pbo) != b:
                return h
            h = A.pg[h].nxt
            tries += 1
    return -1


@jit
def compact(A, L, z, budget, cursor, direct):
    """Migrate movable pages out of candidate pageblocks (movable label, nothing but free and
    movable pages in them) from the bottom of the zone, into free pages taken from the top.
    Returns (pages migrated, blocks freed, new cursor)."""
    per = 1 << A.pbo
    b0 = A.zs[z, Z_START] >> A.pbo
    b1 = A.zs[z, Z_END] >> A.pbo
    migrated = 0
    freed = 0
    b = max(cursor, b0)
    scanned = 0
    nb = b1 - b0
    while migrated < budget and scanned < nb:
        if b >= b1:
            b = b0
        scanned += 1
        cand = A.blk[b].mt == MOVABLE and A.blk[b].free < per and \
            A.blk[b].free + A.blk[b].movable == per
        if not cand:
            b += 1
            continue
        # Migrate every movable page in block b.
        p = b << A.pbo
        ok = True
        while p < (b << A.pbo) + per:
            o = A.pg[p].order
            if o >= 0:
                p += 1 << o
                continue
            k = A.pg[p].kind
            if k == PK_FREE:
                p += 1  # inside a buddy that merged after an earlier migration
                continue
            if k != PK_MOVABLE and k != PK_ANON:
                # THPs move as a unit and everything else cannot move: skip the block
                ok = False
                break
            dest = _migration_target(A, z, b)
            if dest < 0:
                ok = False
                break
            take(A, z, dest, 0, k)
            pool_move(A, L, p, dest)
            free_pages(A, z, p, 0)
            migrated += 1
            p += 1
            if migrated >= budget:
                break
        if not ok:
            b += 1
            continue
        if A.blk[b].free == per:
            freed += 1
            b += 1
    if direct:
        A.counters[C_COMPACT_MIGRATE] += migrated
    else:
        A.counters[C_COMPACT_DAEMON_MIGRATE] += migrated
    return migrated, freed, b


@jit_inline
def alloc_pages(A, L, W, order, gfp, policy, node, kind, stats):
    """``__alloc_pages``: fast path, then the slowpath in kernel order (kernel.md §4.6). The
    engine decides (flags, zone, list, retries, cause); this acts (reclaims, compacts, takes
    the page). Returns (pfn, cause); ``stats`` collects the ST_* figures."""
    A.counters[C_OPS] += 1
    if A.zonelists[node, gfp_zone(gfp), 0] < 0:
        return -1, CAUSE_UNKNOWN
    pfn, z = get_page_from_freelist(A, order, gfp, fast_path_flags(A, gfp, node, policy), node,
                                    policy, kind)
    if pfn >= 0:
        return pfn, CAUSE_NONE
    return alloc_slowpath(A, L, W, order, gfp, policy, node, kind, stats)


@jit
def alloc_slowpath(A, L, W, order, gfp, policy, node, kind, stats):
    """``__alloc_pages_slowpath`` (kernel.md §4.6)."""
    highest = gfp_zone(gfp)
    # -- slowpath
    flags = gfp_to_alloc_flags(gfp, order, policy)
    can_direct = (gfp & GFP_DIRECT_RECLAIM) != 0
    if flags & ALLOC_KSWAPD:
        wake_kswapd(A, W, node, order, policy)
    pfn, z = get_page_from_freelist(A, order, gfp, flags, node, policy, kind)
    if pfn >= 0:
        return pfn, CAUSE_NONE
    retries = 0
    while True:
        # retry: (kswapd woken again; reserve_flags not modelled: no MEMALLOC users)
        if retries > 0:
            pfn, z = get_page_from_freelist(A, order, gfp, flags, node, policy, kind)
            if pfn >= 0:
                return pfn, CAUSE_NONE
        if not can_direct:
            if bailout_retries(gfp, flags, policy):
                flags &= ~ALLOC_NOFRAGMENT
                stats[ST_FIX_RETRIES] += 1
                retries += 1
                continue
            break
        A.counters[C_ALLOCSTALL] += 1
        got = reclaim(A, L, node, 32 << min(order, 4), True)
        stats[ST_RECLAIMED] += got
        pfn, z = get_page_from_freelist(A, order, gfp, flags, node, policy, kind)
        if pfn >= 0:
            return pfn, CAUSE_NONE
        if got == 0:
            for i in range(A.zonelists.shape[2]):
                if A.zonelists[node, highest, i] < 0:
                    break
                unreserve_highatomic(A, A.zonelists[node, highest, i], gfp_migratetype(gfp),
                                     False)
        if order > 0:
            A.counters[C_COMPACT_STALL] += 1
            compact(A, L, A.zonelists[node, highest, 0], 2 << order, 0, True)
            pfn, z = get_page_from_freelist(A, order, gfp, flags, node, policy, kind)
            if pfn >= 0:
                A.counters[C_COMPACT_SUCCESS] += 1
                return pfn, CAUSE_NONE
            A.counters[C_COMPACT_FAIL] += 1
        if gfp & GFP_NORETRY:
            break
        if order > 3 and not (gfp & GFP_RETRY_MAYFAIL):
            break
        if got > 0 and retries < 16:
            retries += 1
            continue
        if fallback_retries(flags, policy):
            flags &= ~ALLOC_NOFRAGMENT
            retries += 1
            continue
        break
    A.counters[C_FAIL_TOTAL] += 1
    stats[ST_NOPAGE_FLAGS] = flags
    return -1, classify(A, order, gfp, flags, node)


# ---------------------------------------------------------------------------------------------
# Reports, rate limits, ground truth

@jit
def record_report(rec, t, kind, a, b, c, row):
    i = rec.fill[FILL_REPORTS]
    if i < rec.rep.shape[0]:
        rec.rep[i, REP_T] = t
        rec.rep[i, REP_KIND] = kind
        rec.rep[i, REP_A] = a
        rec.rep[i, REP_B] = b
        rec.rep[i, REP_C] = c
        rec.rep[i, REP_CACHE] = row
        rec.fill[FILL_REPORTS] = i + 1


@jit
def ratelimit(S, k, t, interval, burst, row):
    """lib/ratelimit.c for one call at time t: whether it may print. When an interval has
    passed with misses, the ``callbacks suppressed`` line is recorded first."""
    rs = S.d.ratelimit
    if rs[k, RL_BEGIN] < 0:
        rs[k, RL_BEGIN] = t
    if t > rs[k, RL_BEGIN] + interval:
        if rs[k, RL_MISSED] > 0:
            record_report(S.rec, t, R_SUPP_SLUB if k == RL_SLUB else R_SUPP_WARN,
                          rs[k, RL_MISSED], row, -1, row)
            rs[k, RL_MISSED] = 0
        rs[k, RL_BEGIN] = t
        rs[k, RL_PRINTED] = 0
    if rs[k, RL_PRINTED] < burst:
        rs[k, RL_PRINTED] += 1
        return True
    rs[k, RL_MISSED] += 1
    return False


@jit
def save_free_lists(A, nr, zs, i):
    """nr[i] = A.nr_free, zs[i] = A.zs (element by element: no temporary)."""
    for z in range(A.nr_free.shape[0]):
        for o in range(A.nr_free.shape[1]):
            for mt in range(A.nr_free.shape[2]):
                nr[i, z, o, mt] = A.nr_free[z, o, mt]
        for f in range(A.zs.shape[1]):
            zs[i, z, f] = A.zs[z, f]


@jit
def capture(S):
    """The free lists and zone fields a printed warn_alloc shows (its Mem-Info)."""
    i = S.rec.fill[FILL_CAPTURES]
    if i < S.rec.caps.shape[0]:
        save_free_lists(S.A, S.rec.caps, S.rec.cap_zs, i)
        S.rec.fill[FILL_CAPTURES] = i + 1
        return i
    return -1


@jit
def record_failures(S, t, nfail, kind, order, cause, row):
    """Ground truth: ``nfail`` failures spread over the tick starting at t."""
    rec = S.rec
    sec = int(t)
    if sec < rec.fail_sec.shape[0]:
        rec.fail_sec[sec, cause] += nfail
    for j in range(nfail):
        i = rec.fill[FILL_TRUTH]
        if i < rec.truth.shape[0]:
            rec.truth[i, TR_T] = t + S.cfg.dt * j / nfail
            rec.truth[i, TR_KIND] = kind
            rec.truth[i, TR_ORDER] = order
            rec.truth[i, TR_CAUSE] = cause
            rec.truth[i, TR_CACHE] = row
        rec.fill[FILL_TRUTH] = i + 1


@jit
def warn_alloc(S, t, order, gfp, row):
    """A failed page allocation's report, if the ratelimit lets it through."""
    if ratelimit(S, RL_WARN, t, S.cfg.warn_interval, S.cfg.warn_burst, row):
        record_report(S.rec, t, R_WARN, order, gfp, capture(S), row)


# ---------------------------------------------------------------------------------------------
# SLUB

@jit
def is_atomic(S, row):
    return not (S.slub.caches[row, CA_GFP] & GFP_DIRECT_RECLAIM)


@jit
def stalled(S, row, t):
    """A process-context row waiting out direct reclaim and compaction allocates nothing."""
    return not is_atomic(S, row) and S.slub.objs[row, OB_STALL_UNTIL] > 0 and \
        t * 1e6 < S.slub.objs[row, OB_STALL_UNTIL] - 1


@jit
def new_slab(S, row, node, t):
    """``allocate_slab``: the default order without reclaim, then the minimum order as asked.
    Returns (pfn, cause, order); pfn -2 when a process-context row starts its reclaim wait."""
    ca = S.slub.caches
    gfp = ca[row, CA_GFP]
    g1 = (gfp | GFP_NOWARN | GFP_NORETRY) & ~GFP_NOFAIL
    if (g1 & GFP_DIRECT_RECLAIM) and ca[row, CA_ORDER] > ca[row, CA_MIN_ORDER]:
        g1 = (g1 | GFP_NOMEMALLOC) & ~(GFP_DIRECT_RECLAIM | GFP_KSWAPD_RECLAIM)
    order = ca[row, CA_ORDER]
    pfn, cause = alloc_pages(S.A, S.L, S.d.W, order, g1 | GFP_COMP, S.cfg.policy, node,
                             PK_SLAB, S.stats)
    if pfn >= 0:
        return pfn, cause, order
    order = ca[row, CA_MIN_ORDER]
    atomic = is_atomic(S, row)
    if not atomic and S.P[P_STALL] > 0 and S.slub.objs[row, OB_STALL_UNTIL] == 0:
        # what the slowpath finds before it reclaims: on a miss the context waits
        # reclaim_stall_s, then makes the full attempt
        pfn, cause = alloc_pages(S.A, S.L, S.d.W, order,
                                 (gfp & ~GFP_DIRECT_RECLAIM) | GFP_NOWARN | GFP_COMP,
                                 S.cfg.policy, node, PK_SLAB, S.stats)
        if pfn < 0:
            S.slub.objs[row, OB_STALL_UNTIL] = int((t + S.P[P_STALL]) * 1e6) + 1
            return -2, cause, order
        return pfn, cause, order
    if not atomic:
        S.slub.objs[row, OB_STALL_UNTIL] = 0
    pfn, cause = alloc_pages(S.A, S.L, S.d.W, order, gfp | GFP_COMP, S.cfg.policy, node,
                             PK_SLAB, S.stats)
    return pfn, cause, order


@jit
def slab_failed(S, row, nfail, cause, t):
    """``nfail`` objects of ``row`` found no slab: ground truth, then the reports (the
    min-order page allocation's warn_alloc, then slab_out_of_memory), rate-limited."""
    ca = S.slub.caches
    record_failures(S, t, nfail, TRUTH_SLUB, ca[row, CA_MIN_ORDER], cause, row)
    S.slub.objs[row, OB_FAILED] += nfail
    gfp = ca[row, CA_GFP]
    if gfp & GFP_NOWARN:
        return
    for j in range(nfail):
        tj = t + S.cfg.dt * j / nfail
        warn_alloc(S, tj, ca[row, CA_MIN_ORDER], gfp | GFP_COMP, row)
        if ratelimit(S, RL_SLUB, tj, SLUB_RL_INTERVAL, SLUB_RL_BURST, row):
            record_report(S.rec, tj, R_SLUB, row, gfp, S.slub.nslabs[ca[row, CA_OWNER]], row)


@jit
def slab_take(S, row, n, node, t):
    """Allocate ``n`` objects of ``row``: free objects first, then new slabs. Returns how many
    succeeded; failures are recorded here. A process-context row that finds no page starts
    its direct-reclaim wait and returns -1 when nothing was allocated."""
    sl = S.slub
    q = sl.caches[row, CA_OWNER]
    use = min(n, sl.objs[q, OB_FREE])
    sl.objs[q, OB_FREE] -= use
    sl.objs[row, OB_INUSE] += use
    ok = use
    need = n - use
    while need > 0:
        if sl.objs[row, OB_NOPAGE] >= 0:
            # a slab allocation of this row already failed this tick and the allocator's
            # state has not changed since: it fails the same way
            pfn, cause, order = -1, sl.objs[row, OB_NOPAGE], sl.caches[row, CA_MIN_ORDER]
        else:
            pfn, cause, order = new_slab(S, row, node, t)
            if pfn == -2:
                return ok if ok > 0 else -1
            if pfn < 0:
                sl.objs[row, OB_NOPAGE] = cause
        if pfn < 0:
            # the rest of the chunk meets the same state and fails the same way
            slab_failed(S, row, need, cause, t)
            return ok
        if sl.nslabs[q] < sl.slab_pfn.shape[1]:
            sl.slab_pfn[q, sl.nslabs[q]] = pfn
            sl.slab_order[q, sl.nslabs[q]] = order
            sl.nslabs[q] += 1
        objs = ((1 << order) * S.A.page_size) // sl.caches[row, CA_OBJ_SIZE]
        got = min(need, objs)
        sl.objs[q, OB_FREE] += objs - got
        sl.objs[row, OB_INUSE] += got
        ok += got
        need -= got
    return ok


@jit
def slub_frees(S):
    """Objects freed this tick, then empty slabs discarded. Atomic objects held until the
    load stops (replies queued on sockets nobody reads) are not freed; the rest live
    net_obj_life_s on average. Objects are freed at random, so a slab is empty with
    probability free_share ** objects_per_slab; SLUB keeps MIN_PARTIAL partial slabs."""
    sl = S.slub
    ncache = sl.caches.shape[0]
    for c in range(ncache):
        q = sl.caches[c, CA_OWNER]
        loose = sl.objs[c, OB_INUSE] - (sl.objs[c, OB_HELD] if is_atomic(S, c) else 0)
        if loose > 0 and S.P[P_NLIFE] > 0:
            nf = min(_poisson(loose * S.cfg.dt / S.P[P_NLIFE]), loose)
            sl.objs[c, OB_INUSE] -= nf
            sl.objs[q, OB_FREE] += nf
        while q == c and sl.nslabs[c] > 0:
            top = sl.nslabs[c] - 1
            objs = ((1 << sl.slab_order[c, top]) * S.A.page_size) // sl.caches[c, CA_OBJ_SIZE]
            total = sl.objs[c, OB_FREE]
            for r in range(ncache):
                if sl.caches[r, CA_OWNER] == c:
                    total += sl.objs[r, OB_INUSE]
            if sl.objs[c, OB_FREE] < objs or total <= 0:
                break
            if sl.nslabs[c] * (sl.objs[c, OB_FREE] / total) ** objs < 1.0 + MIN_PARTIAL:
                break
            sl.objs[c, OB_FREE] -= objs
            free_block(S.A, sl.slab_pfn[c, top], sl.slab_order[c, top])
            sl.nslabs[c] -= 1


@jit
def data_buffers(S, head, ok, done, node, t):
    """A chunk of ``ok`` objects of ``head`` got their heads: each child row (a data buffer)
    allocates for its share of them; an object whose buffer failed is dropped and its head
    goes back at once. Returns the head's objects still complete."""
    sl = S.slub
    for ch in range(head + 1, sl.caches.shape[0]):
        if sl.caches[ch, CA_PARENT] != head or ok <= 0 or stalled(S, ch, t):
            continue
        share = sl.caches[ch, CA_SHARE] / 1000.0
        m = ok if share >= 1.0 else np.random.binomial(ok, share)
        if m <= 0:
            continue
        got = slab_take(S, ch, m, node, t)
        if got < 0:  # the data's context went into direct reclaim: not failed
            continue
        sl.objs[ch, OB_TICK_OK] += got
        back = min(m - got, done)
        sl.objs[head, OB_INUSE] -= back
        sl.objs[sl.caches[head, CA_OWNER], OB_FREE] += back
        done -= back
    return done


@jit
def network_objects(S, head, node, t, mult):
    """This tick's network objects of a head row, as ``__alloc_skb`` makes them: the head,
    then its data buffer, in chunks of SKB_CHUNK while a slab may be needed (in one go while
    free objects cover the demand). Then the share of complete objects that stays queued."""
    sl = S.slub
    ncache = sl.caches.shape[0]
    demand = _poisson(S.P[P_NET] * sl.caches[head, CA_SHARE] / 1000.0 * mult * S.cfg.dt)
    if head == 0:
        S.A.counters[C_NET_DEMAND] += demand  # objects of the first (reported) cache
    leaf = True
    for ch in range(head + 1, ncache):
        if sl.caches[ch, CA_PARENT] == head:
            leaf = False
            sl.objs[ch, OB_TICK_OK] = 0
    left = demand
    done = 0
    while left > 0:
        n = left
        if not leaf:
            short = sl.objs[sl.caches[head, CA_OWNER], OB_FREE] < left
            for ch in range(head + 1, ncache):
                if sl.caches[ch, CA_PARENT] == head and \
                        sl.objs[sl.caches[ch, CA_OWNER], OB_FREE] < left:
                    short = True
            if short and left > SKB_CHUNK:
                n = SKB_CHUNK
        left -= n
        ok = slab_take(S, head, n, node, t)
        if ok > 0:
            done += ok
        done = data_buffers(S, head, ok, done, node, t)
        if stalled(S, head, t):
            break  # went into direct reclaim: the rest waits
    if S.P[P_HOLD] > 0 and is_atomic(S, head):  # one draw per row and tick
        h = min(S.P[P_HOLD], 1.0)
        if done > 0:
            add = np.random.binomial(done, h)
            if S.P[P_HOLD_MAX] > 0:  # the unread queues are full: the rest is dropped, freed
                add = min(add, max(int(S.P[P_HOLD_MAX]) - sl.objs[head, OB_HELD], 0))
            sl.objs[head, OB_HELD] += add
        for ch in range(head + 1, ncache):
            if sl.caches[ch, CA_PARENT] == head and sl.objs[ch, OB_TICK_OK] > 0 and \
                    is_atomic(S, ch):
                add = np.random.binomial(sl.objs[ch, OB_TICK_OK], h)
                if S.P[P_HOLD_MAX] > 0:  # a queued buffer belongs to a queued head
                    add = min(add, max(sl.objs[head, OB_HELD] - sl.objs[ch, OB_HELD], 0))
                sl.objs[ch, OB_HELD] += add


# ---------------------------------------------------------------------------------------------
# The phases of a tick

@jit
def snapshot(S, t):
    """At a snapshot time: counters of the network objects, then the state."""
    rec = S.rec
    sl = S.slub
    k = rec.fill[FILL_SNAPS]
    if k >= rec.snap_times.shape[0] or t < rec.snap_times[k] - 1e-9:
        return
    ncache = sl.caches.shape[0]
    if ncache > 0:
        S.A.counters[C_NET_INUSE] = sl.objs[0, OB_INUSE]  # objects of the first cache
        # a network object fails once: its head failed, or its data buffer did (a child
        # row); unrelated atomic caches count the one that failed most
        worst = 0
        for c in range(ncache):
            if sl.caches[c, CA_PARENT] >= 0 or not is_atomic(S, c):
                continue
            failed = sl.objs[c, OB_FAILED]
            for ch in range(ncache):
                if sl.caches[ch, CA_PARENT] == c:
                    failed += sl.objs[ch, OB_FAILED]
            worst = max(worst, failed)
        S.A.counters[C_NET_FAILED] = worst
    if k < rec.snaps_nr.shape[0]:
        save_free_lists(S.A, rec.snaps_nr, rec.snaps_zs, k)
        for c in range(S.A.counters.shape[0]):
            rec.snaps_cnt[k, c] = S.A.counters[c]
        for c in range(ncache):
            rec.snaps_inuse[k, c] = sl.objs[c, OB_INUSE]
        for z in range(S.A.zs.shape[0]):
            for mt in range(NMT):
                rec.snaps_blocks[k, z, mt] = 0
            for b in range(S.A.zs[z, Z_START] >> S.A.pbo, S.A.zs[z, Z_END] >> S.A.pbo):
                rec.snaps_blocks[k, z, S.A.blk[b].mt] += 1
        rec.fill[FILL_SNAPS] = k + 1


@jit
def network_load(S, t):
    """The network load's multiplier this tick: bursts (an on/off Markov chain), its window
    (net_start_s, net_stop_s); when it stops, its sockets close and the objects they queued
    are freed."""
    P = S.P
    load = S.d.load
    dt = S.cfg.dt
    if P[P_BFRAC] > 0 and P[P_BLEN] > 0 and load[0] != LOAD_STOPPED:
        if load[0] == LOAD_BURST:
            if np.random.random() < dt / P[P_BLEN]:
                load[0] = LOAD_QUIET
        else:
            quiet_len = P[P_BLEN] * (1 - P[P_BFRAC]) / max(P[P_BFRAC], 1e-9)
            if np.random.random() < dt / max(quiet_len, dt):
                load[0] = LOAD_BURST
    mult = P[P_BMULT] if load[0] == LOAD_BURST else 1.0
    if load[0] == LOAD_STOPPED:
        mult = 0.0
    if t < P[P_NSTART] or (P[P_NSTOP] > 0 and t >= P[P_NSTOP]):
        mult = 0.0
        if P[P_NSTOP] > 0 and t >= P[P_NSTOP] and load[0] != LOAD_STOPPED:
            _free_objects(S, t < P[P_RELEASE])
            load[0] = LOAD_STOPPED
        elif load[0] == LOAD_STOPPED and P[P_RELEASE] > 0 and t >= P[P_RELEASE]:
            _free_objects(S, False)  # the queues' owner let go (a no-op once they are empty)
    return mult


@jit
def _free_objects(S, keep_held):
    """The load's objects go back to their slabs; the queued ones stay while ``keep_held``."""
    sl = S.slub
    for c in range(sl.caches.shape[0]):
        held = sl.objs[c, OB_HELD] if keep_held else 0
        sl.objs[sl.caches[c, CA_OWNER], OB_FREE] += sl.objs[c, OB_INUSE] - held
        sl.objs[c, OB_INUSE] = held
        sl.objs[c, OB_HELD] = held
        sl.objs[c, OB_STALL_UNTIL] = 0


@jit
def free_random(S, pool, n, order):
    """Free ``n`` pages of a pool picked at random, one after another. The picks are drawn
    first (the same draws: the pool shrinks by one per free) and their pool slots, page
    records and free buddies' list neighbours read together, so that their cache misses
    overlap instead of queueing."""
    done = 0
    while done < n:
        m = min(n - done, S.picks.shape[0])
        n0 = S.L.n[pool]
        for k in range(m):
            S.picks[k] = np.random.randint(0, n0 - k)
        touched = 0
        for k in range(m):
            touched += S.L.pfn[pool, S.picks[k]]
        for k in range(m):
            pfn = S.L.pfn[pool, S.picks[k]]
            touched += S.A.pg[pfn].kind
            buddy = pfn ^ (1 << order)  # if free, its list neighbours are unlinked
            if S.A.pg[buddy].order == order:
                touched += S.A.pg[max(S.A.pg[buddy].prv, 0)].kind + \
                    S.A.pg[max(S.A.pg[buddy].nxt, 0)].kind
        S.stats[ST_TOUCHED] += touched
        for k in range(m):
            free_block(S.A, pool_remove_at(S.A, S.L, pool, S.picks[k]), order)
        done += m


@jit
def page_workloads(S, t, node, mult):
    """Each page workload frees Poisson(held x dt / life) of its pages at random, then
    allocates Poisson(rate x dt). When an allocation fails, the rest of the tick's demand meets
    the same state and fails the same way."""
    for w in range(WORKLOADS.shape[0]):
        pool = WORKLOADS[w, WL_POOL]
        gfp = WORKLOADS[w, WL_GFP]
        rate = S.P[WORKLOADS[w, WL_RATE]] * (mult if WORKLOADS[w, WL_NET] else 1.0)
        life = S.P[WORKLOADS[w, WL_LIFE]]
        order = WORKLOADS[w, WL_ORDER]
        if order == ORDER_PARAM:
            order = int(S.P[P_ATOMHI_ORDER])
        elif order == ORDER_PAGEBLOCK:
            order = S.A.pbo
        if rate <= 0 and S.L.n[pool] == 0:
            continue
        if life > 0 and S.L.n[pool] > 0:
            nf = _poisson(S.L.n[pool] * S.cfg.dt / life)
            free_random(S, pool, min(nf, S.L.n[pool]), order)
        na = _poisson(rate * S.cfg.dt)
        for j in range(na):
            if S.L.n[pool] >= S.L.pfn.shape[1]:
                break
            pfn, cause = alloc_pages(S.A, S.L, S.d.W, order, gfp, S.cfg.policy, node,
                                     WORKLOADS[w, WL_KIND], S.stats)
            if w == WL_THP:
                S.A.counters[C_THP_FAULT_ALLOC if pfn >= 0 else C_THP_FAULT_FALLBACK] += 1
            if pfn >= 0:
                pool_add(S.A, S.L, pool, pfn)
                continue
            nfail = na - j
            record_failures(S, t, nfail, TRUTH_PAGE, order, cause, -1)
            if not (gfp & GFP_NOWARN):
                for k in range(nfail):
                    warn_alloc(S, t + S.cfg.dt * k / nfail, order, gfp, -1)
            break


@jit
def slub_demand(S, t, node, mult):
    """Network objects come to the head rows (those without a parent), not while stalled."""
    sl = S.slub
    for c in range(sl.caches.shape[0]):
        sl.objs[c, OB_NOPAGE] = -1
    for c in range(sl.caches.shape[0]):
        if sl.caches[c, CA_PARENT] < 0 and not stalled(S, c, t):
            network_objects(S, c, node, t, mult)


@jit
def _unboost(A, node):
    for z in range(A.zs.shape[0]):
        if A.zs[z, Z_NODE] == node:
            A.zs[z, Z_BOOST] = 0
            A.zs[z, Z_BOOSTED] = 0


@jit
def _wake_kcompactd(A, W, node, order):
    if order > 0 and W[node, KCOMPACTD] < order:
        W[node, KCOMPACTD] = order
        A.counters[C_KCOMPACTD_WAKE] += 1


@jit
def kswapd(S, nd):
    """One tick of kswapd on node ``nd``: sleep once balanced (handing a high order to
    kcompactd); else reclaim kswapd_rate pages a second, and hand over to kcompactd when
    there are enough free pages but not in blocks. Asleep, boosted watermarks wake it."""
    A = S.A
    W = S.d.W
    if W[nd, KSWAPD] < 0:
        for z in range(A.zs.shape[0]):
            if A.zs[z, Z_NODE] == nd and A.zs[z, Z_MANAGED] > 0 and A.zs[z, Z_BOOSTED] == 1:
                W[nd, KSWAPD] = 0
        return
    order = W[nd, KSWAPD]
    if pgdat_balanced(A, nd, order, S.cfg.policy):
        _unboost(A, nd)
        W[nd, KSWAPD] = -1
        _wake_kcompactd(A, W, nd, order)
        return
    A.counters[C_PAGEOUTRUN] += 1
    got = reclaim(A, S.L, nd, int(S.P[P_KSWAPD] * S.cfg.dt + np.random.random()), False)
    enough = True
    for z in range(A.zs.shape[0]):
        if A.zs[z, Z_NODE] == nd and A.zs[z, Z_MANAGED] > 0 and A.zs[z, Z_TYPE] >= ZONE_DMA32:
            if A.zs[z, Z_FREE] < wmark_pages(A.zs, z, ALLOC_WMARK_HIGH) + (2 << order):
                enough = False
    if got == 0 or (enough and order > 0):
        _wake_kcompactd(A, W, nd, order)
        if got == 0 or enough:
            _unboost(A, nd)
            W[nd, KSWAPD] = -1


@jit
def kcompactd(S, nd):
    """One tick of kcompactd on node ``nd``: migrate up to kcompactd_rate pages a second in
    zones short of their target (defrag_mode: the high watermark in whole free pageblocks;
    otherwise a free block of the order it was woken for); sleep when nothing moved."""
    A = S.A
    W = S.d.W
    if W[nd, KCOMPACTD] < 0:
        return
    order = W[nd, KCOMPACTD]
    done = True
    budget = int(S.P[P_KCOMPACTD] * S.cfg.dt + np.random.random())
    for z in range(A.zs.shape[0]):
        if A.zs[z, Z_NODE] != nd or A.zs[z, Z_MANAGED] <= 0 or A.zs[z, Z_TYPE] < ZONE_DMA32:
            continue
        if S.cfg.policy != LEGACY:
            target = A.zs[z, Z_FREE_BLOCKS] >= wmark_pages(A.zs, z, ALLOC_WMARK_HIGH)
        else:
            target = False
            for o in range(order, A.max_order):
                for mt in range(3):
                    if A.nr_free[z, o, mt] > 0:
                        target = True
        if target or budget <= 0:
            continue
        m, fr, S.d.comp_cursor[z] = compact(A, S.L, z, budget, S.d.comp_cursor[z], False)
        budget -= m
        if m > 0:
            done = False
    if done:
        W[nd, KCOMPACTD] = -1


@jit
def tick(S, t, node):
    snapshot(S, t)
    mult = network_load(S, t)
    page_workloads(S, t, node, mult)
    slub_frees(S)
    slub_demand(S, t, node, mult)
    for nd in range(S.cfg.nnodes):
        kswapd(S, nd)
        kcompactd(S, nd)


@jit_entry
def run(S, seed, t0, seconds):
    """Simulate ``seconds`` from ``t0``, allocations on the nodes in turn. Returns the number
    of allocator calls made."""
    np.random.seed(seed)
    S.stats[:] = 0
    S.d.comp_cursor[:] = 0
    ops0 = S.A.counters[C_OPS]
    for i in range(int(seconds / S.cfg.dt + 0.5)):
        tick(S, t0 + i * S.cfg.dt, i % S.cfg.nnodes)
    return S.A.counters[C_OPS] - ops0
