"""The simulation loop (numba): workloads, the slowpath, kswapd, kcompactd, SLUB, rate limits.

State travels as two tuples of arrays: ``S`` the allocator (see :mod:`models.pages`) and ``L``
the page pools (which allocated page belongs to which workload, for frees, reclaim and
compaction). One call of :func:`run` simulates ``seconds`` in ticks of ``dt``.

Simplifications (documented in docs/model.md): no per-CPU page lists; objects of a SLUB cache
are fungible (a cache frees its newest slab once a slab's worth of objects is free beyond
two spare slabs); lifetimes are exponential, so frees per tick are Poisson(in use x dt / life);
reclaim takes random page-cache pages (an approximate LRU); compaction migrates movable pages
out of the lowest candidate block into free pages found from the top of the zone.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from collections import namedtuple

from models.engine import (ALLOC_KSWAPD, ALLOC_NOFRAGMENT, ALLOC_WMARK_HIGH, C_ALLOCSTALL,
                           C_COMPACT_DAEMON_MIGRATE, C_COMPACT_FAIL, C_COMPACT_MIGRATE,
                           C_COMPACT_STALL, C_COMPACT_SUCCESS, C_FAIL_TOTAL, C_KCOMPACTD_WAKE,
                           C_KSWAPD_WAKE, C_NET_DEMAND, C_NET_FAILED, C_NET_INUSE, C_OPS,
                           C_PAGEOUTRUN, C_PGSCAN_DIRECT, C_PGSCAN_KSWAPD, C_PGSTEAL_DIRECT,
                           C_PGSTEAL_KSWAPD, C_THP_FAULT_ALLOC, C_THP_FAULT_FALLBACK,
                           CAUSE_NONE, CAUSE_UNKNOWN, GFP_COMP, GFP_DIRECT_RECLAIM, GFP_KSWAPD_RECLAIM,
                           GFP_NOFAIL, GFP_NOMEMALLOC, GFP_NORETRY, GFP_NOWARN,
                           GFP_RETRY_MAYFAIL, LEGACY, MOVABLE, NMT, PK_ANON, PK_FREE, PK_MOVABLE,
                           PK_SLAB, PK_THP, Z_BOOST, Z_BOOSTED, Z_END, Z_FREE, Z_FREE_BLOCKS, Z_MANAGED,
                           Z_NODE, Z_START, Z_TYPE, ZONE_DMA32, bailout_retries, classify,
                           fallback_retries, fast_path_flags, gfp_migratetype, gfp_to_alloc_flags,
                           gfp_zone, kswapd_wake_order, pgdat_balanced, wmark_pages)
from models.pages import (free_block, free_pages, get_page_from_freelist, take,
                          unreserve_highatomic)

# Pools (which workload owns a page).
POOL_PAGECACHE, POOL_ANON, POOL_KERNEL, POOL_RECLAIMABLE, POOL_THP, POOL_PINNED, POOL_ATOMIC = \
    0, 1, 2, 3, 4, 5, 6
POOL_ATOMIC_HI = 7
NPOOLS = 8

# Workload parameter vector.
PARAMS = ("net_rate", "net_burst_mult", "net_burst_frac", "net_burst_len_s", "net_obj_life_s",
          "kernel_rate", "kernel_life_s", "reclaimable_rate", "reclaimable_life_s",
          "pagecache_rate", "pagecache_life_s", "anon_rate", "anon_life_s", "thp_rate",
          "thp_life_s", "kswapd_rate", "kcompactd_rate", "atomic_page_rate",
          "atomic_high_rate", "atomic_high_order", "net_start_s", "net_stop_s", "net_hold_frac",
          "reclaim_stall_s")
P_IDX = {n: i for i, n in enumerate(PARAMS)}
(P_NET, P_BMULT, P_BFRAC, P_BLEN, P_NLIFE, P_KRATE, P_KLIFE, P_RRATE, P_RLIFE, P_PCRATE, P_PCLIFE,
 P_ARATE, P_ALIFE, P_THPRATE, P_THPLIFE, P_KSWAPD, P_KCOMPACTD, P_ATOMPG, P_ATOMHI,
 P_ATOMHI_ORDER, P_NSTART, P_NSTOP, P_HOLD, P_STALL) = range(len(PARAMS))

# The alloc_pages scratch array ``stats``.
ST_RECLAIMED = 0     # pages direct reclaim freed
ST_NOPAGE_FLAGS = 1  # the alloc_flags the last failed request reached nopage with
NSTATS = 4

MIN_PARTIAL = 5  # SLUB's floor of partial slabs kept per node (mm/slub.c MIN_PARTIAL)

# Report kinds in the event log.
R_SLUB, R_WARN, R_SUPP_SLUB, R_SUPP_WARN = 0, 1, 2, 3
# Ratelimit state columns.
RL_BEGIN, RL_PRINTED, RL_MISSED = 0, 1, 2


@njit(cache=True)
def _poisson(lam):
    if lam <= 0.0:
        return 0
    if lam > 1e6:
        return int(lam + np.sqrt(lam) * np.random.standard_normal())
    return np.random.poisson(lam)


Pools = namedtuple("Pools", (
    "pfn",  # [pool, i] the pages each workload pool holds (a page's slot: Allocator.pg.pos)
    "n",    # [pool] how many
))


@njit(cache=True)
def pool_add(A, L, pool, pfn):
    i = L.n[pool]
    L.pfn[pool, i] = pfn
    A.pg[pfn].pos = i
    A.pg[pfn].pool = pool
    L.n[pool] = i + 1


@njit(cache=True)
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


@njit(cache=True)
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


@njit(cache=True)
def wake_kswapd(A, W, node, order, policy):
    o = kswapd_wake_order(order, policy, A.pbo)
    if W[node, 0] < o:
        if W[node, 0] < 0:
            A.counters[C_KSWAPD_WAKE] += 1
        W[node, 0] = o


@njit(cache=True)
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


@njit(cache=True)
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


@njit(cache=True)
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


@njit(cache=True)
def alloc_pages(A, L, W, order, gfp, policy, node, kind, stats, fixed_used):
    """``__alloc_pages``: fast path, then the slowpath in kernel order (kernel.md §4.6). The
    engine decides (flags, zone, list, retries, cause); this acts. Returns (pfn, cause).
    ``stats`` collects ST_* figures, ``fixed_used[0]`` how often the 2026 fix's retry ran."""
    A.counters[C_OPS] += 1
    highest = gfp_zone(gfp)
    nzl = A.nzonelist[node, highest]
    if nzl == 0:
        return -1, CAUSE_UNKNOWN
    flags = fast_path_flags(A, gfp, node, policy)
    pfn, z = get_page_from_freelist(A, order, gfp, flags, node, policy, kind)
    if pfn >= 0:
        return pfn, CAUSE_NONE
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
                fixed_used[0] += 1
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
            for i in range(nzl):
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


@njit(cache=True)
def ratelimit(RS, k, t, interval, burst, n, rep, rep_n, cache_id):
    """lib/ratelimit.c for ``n`` calls at time t. Emits the ``callbacks suppressed`` line when an
    interval has passed with misses. Returns how many of the n calls may print."""
    if RS[k, RL_BEGIN] < 0:
        RS[k, RL_BEGIN] = t
    if t > RS[k, RL_BEGIN] + interval:
        if RS[k, RL_MISSED] > 0:
            _record(rep, rep_n, t, R_SUPP_SLUB if k == 0 else R_SUPP_WARN, RS[k, RL_MISSED],
                    cache_id, -1, cache_id)
            RS[k, RL_MISSED] = 0
        RS[k, RL_BEGIN] = t
        RS[k, RL_PRINTED] = 0
    room = burst - RS[k, RL_PRINTED]
    if room < 0:
        room = 0
    allowed = n if n < room else room
    RS[k, RL_PRINTED] += allowed
    RS[k, RL_MISSED] += n - allowed
    return allowed


@njit(cache=True)
def _record(rep, rep_n, t, kind, a, b, c, cache_id):
    i = rep_n[0]
    if i < rep.shape[0]:
        rep[i, 0] = t
        rep[i, 1] = kind
        rep[i, 2] = a
        rep[i, 3] = b
        rep[i, 4] = c
        rep[i, 5] = cache_id
        rep_n[0] = i + 1


@njit(cache=True)
def _capture(A, caps, cap_zs, cap_n):
    i = cap_n[0]
    if i < caps.shape[0]:
        caps[i] = A.nr_free
        cap_zs[i] = A.zs
        cap_n[0] = i + 1
        return i
    return -1


@njit(cache=True)
def _fail(t, dt, nfail, kind, order, cause, cache_id, fail_sec, truth, truth_n):
    """Ground truth: ``nfail`` failures spread over the tick starting at t."""
    sec = int(t)
    if sec < fail_sec.shape[0]:
        fail_sec[sec, cause] += nfail
    for j in range(nfail):
        ti = truth_n[0]
        if ti < truth.shape[0]:
            truth[ti, 0] = t + dt * j / nfail
            truth[ti, 1] = kind
            truth[ti, 2] = order
            truth[ti, 3] = cause
            truth[ti, 4] = cache_id
        truth_n[0] = ti + 1


SKB_CHUNK = 16  # objects allocated head-then-data before the next chunk


@njit(cache=True)
def _stalled(caches, cstate, c, t):
    """A process-context row waiting out direct reclaim and compaction allocates nothing
    (cstate[c, 3] holds when the wait ends, in microseconds, plus one)."""
    return (caches[c, 3] & GFP_DIRECT_RECLAIM) != 0 and cstate[c, 3] > 0 and \
        t * 1e6 < cstate[c, 3] - 1


@njit(cache=True)
def _new_slab(A, L, W, P, caches, cstate, c, gfp, atomic, policy, node, stats, fixed_used, t):
    """allocate_slab: the default order without reclaim, then the minimum order as asked.
    Returns (pfn, cause, order); pfn -2 when a process-context row starts its reclaim wait."""
    g1 = (gfp | GFP_NOWARN | GFP_NORETRY) & ~GFP_NOFAIL
    if (g1 & GFP_DIRECT_RECLAIM) and caches[c, 1] > caches[c, 2]:
        g1 = (g1 | GFP_NOMEMALLOC) & ~(GFP_DIRECT_RECLAIM | GFP_KSWAPD_RECLAIM)
    order = caches[c, 1]
    pfn, cause = alloc_pages(A, L, W, order, g1 | GFP_COMP, policy, node, PK_SLAB, stats,
                             fixed_used)
    if pfn >= 0:
        return pfn, cause, order
    order = caches[c, 2]
    if not atomic and P[P_STALL] > 0 and cstate[c, 3] == 0:
        # what the slowpath finds before it reclaims: on a miss the context waits
        # reclaim_stall_s, then makes the full attempt
        pfn, cause = alloc_pages(A, L, W, order,
                                 (gfp & ~GFP_DIRECT_RECLAIM) | GFP_NOWARN | GFP_COMP, policy,
                                 node, PK_SLAB, stats, fixed_used)
        if pfn < 0:
            cstate[c, 3] = int((t + P[P_STALL]) * 1e6) + 1
            return -2, cause, order
        return pfn, cause, order
    if not atomic:
        cstate[c, 3] = 0
    pfn, cause = alloc_pages(A, L, W, order, gfp | GFP_COMP, policy, node, PK_SLAB, stats,
                             fixed_used)
    return pfn, cause, order


@njit(cache=True)
def _slab_take(A, L, W, RS, P, caches, cstate, slab_pfn, slab_ord, nslabs, c, n, policy,
               node, stats, fixed_used, t, dt, rep, rep_n, caps, cap_zs,
               cap_n, truth, truth_n, fail_sec, rl_interval, rl_burst, nopage):
    """Allocate ``n`` objects of cache row ``c``: free objects first, then new slabs. Returns
    how many succeeded; failures are recorded and reported (rate-limited) here. A
    process-context row that finds no page starts its direct-reclaim wait and returns -1 when
    nothing was allocated."""
    q = caches[c, 7]
    atomic = not (caches[c, 3] & GFP_DIRECT_RECLAIM)
    use = n if n < cstate[q, 0] else cstate[q, 0]
    cstate[q, 0] -= use
    cstate[c, 1] += use
    ok = use
    need = n - use
    gfp = caches[c, 3]
    while need > 0:
        if nopage[c] >= 0:
            # a slab allocation of this row already failed this tick and the allocator's
            # state has not changed since: it fails the same way
            pfn, cause, order = -1, nopage[c], caches[c, 2]
        else:
            pfn, cause, order = _new_slab(A, L, W, P, caches, cstate, c, gfp, atomic, policy,
                                          node, stats, fixed_used, t)
            if pfn == -2:
                return ok if ok > 0 else -1
            if pfn < 0:
                nopage[c] = cause
        if pfn >= 0:
            if nslabs[q] < slab_pfn.shape[1]:
                slab_pfn[q, nslabs[q]] = pfn
                slab_ord[q, nslabs[q]] = order
                nslabs[q] += 1
            objs = ((1 << order) * A.page_size) // caches[c, 0]
            take_n = need if need < objs else objs
            cstate[q, 0] += objs - take_n
            cstate[c, 1] += take_n
            ok += take_n
            need -= take_n
            continue
        # The rest of the chunk meets the same state and fails the same way.
        nfail = need
        need = 0
        _fail(t, dt, nfail, 0, caches[c, 2], cause, c, fail_sec, truth, truth_n)
        cstate[c, 2] += nfail
        for j in range(nfail):
            tj = t + dt * j / nfail
            if not (gfp & GFP_NOWARN):
                # the min-order page allocation warns first (warn_alloc, 1 per 10 s)
                if ratelimit(RS, 1, tj, rl_interval, rl_burst, 1, rep, rep_n, c):
                    ci = _capture(A, caps, cap_zs, cap_n)
                    _record(rep, rep_n, tj, R_WARN, caches[c, 2], gfp | GFP_COMP, ci, c)
                # then slab_out_of_memory (10 per 5 s, shared by all caches)
                if ratelimit(RS, 0, tj, 5.0, 10, 1, rep, rep_n, c):
                    _record(rep, rep_n, tj, R_SLUB, c, gfp, nslabs[q], c)
    return ok


@njit(cache=True)
def run(A, L, W, RS, P, caches, cstate, slab_pfn, slab_ord, nslabs, policy,
        seed, t0, seconds, dt, snap_times, snaps_nr, snaps_zs, snaps_cnt, snaps_blocks, snaps_inuse,
        snap_n,
        rep, rep_n, caps, cap_zs, cap_n, truth, truth_n, fail_sec, nnodes, burst_state,
        ratelimit_warn_interval, ratelimit_warn_burst):
    """Simulate ``seconds`` from ``t0``. Returns the number of allocator calls made."""
    np.random.seed(seed)
    stats = np.zeros(4, dtype=np.int64)
    fixed_used = np.zeros(1, dtype=np.int64)
    nticks = int(seconds / dt + 0.5)
    ncache = caches.shape[0]
    comp_cursor = np.zeros(A.zs.shape[0], dtype=np.int64)
    nopage = np.full(max(ncache, 1), -1, dtype=np.int64)  # cause of this tick's failed slab
    tick_ok = np.zeros(max(ncache, 1), dtype=np.int64)  # a child's successes this tick
    ops0 = A.counters[C_OPS]
    node_rr = 0
    for tick in range(nticks):
        t = t0 + tick * dt
        k = snap_n[0]
        if k < snap_times.shape[0] and t >= snap_times[k] - 1e-9:
            if ncache > 0:
                A.counters[C_NET_INUSE] = cstate[0, 1]  # objects of the first cache in use now
                # a network object fails once: its head failed, or its data buffer did (a
                # child cache); unrelated atomic caches count the one that failed most
                worst = 0
                for c in range(ncache):
                    if caches[c, 6] >= 0 or (caches[c, 3] & GFP_DIRECT_RECLAIM):
                        continue
                    nf_obj = cstate[c, 2]
                    for ch in range(ncache):
                        if caches[ch, 6] == c:
                            nf_obj += cstate[ch, 2]
                    if nf_obj > worst:
                        worst = nf_obj
                A.counters[C_NET_FAILED] = worst
            if k < snaps_nr.shape[0]:
                snaps_nr[k] = A.nr_free
                snaps_zs[k] = A.zs
                snaps_cnt[k] = A.counters
                for c in range(ncache):
                    snaps_inuse[k, c] = cstate[c, 1]
                for z in range(A.zs.shape[0]):
                    for mt in range(NMT):
                        snaps_blocks[k, z, mt] = 0
                    for b in range(A.zs[z, Z_START] >> A.pbo, A.zs[z, Z_END] >> A.pbo):
                        snaps_blocks[k, z, A.blk[b].mt] += 1
                snap_n[0] = k + 1
        node = node_rr % nnodes
        node_rr += 1
        # -- burst state (on/off Markov chain)
        if P[P_BFRAC] > 0 and P[P_BLEN] > 0 and burst_state[0] != 2:
            if burst_state[0] == 1:
                if np.random.random() < dt / P[P_BLEN]:
                    burst_state[0] = 0
            else:
                off_len = P[P_BLEN] * (1 - P[P_BFRAC]) / max(P[P_BFRAC], 1e-9)
                if np.random.random() < dt / max(off_len, dt):
                    burst_state[0] = 1
        mult = P[P_BMULT] if burst_state[0] == 1 else 1.0
        if burst_state[0] == 2:
            mult = 0.0
        if t < P[P_NSTART] or (P[P_NSTOP] > 0 and t >= P[P_NSTOP]):
            mult = 0.0  # network load is off outside its window
            if P[P_NSTOP] > 0 and t >= P[P_NSTOP] and burst_state[0] != 2:
                # the load stopped: its sockets close and the objects they queued are freed
                for c in range(ncache):
                    cstate[caches[c, 7], 0] += cstate[c, 1]
                    cstate[c, 1] = 0
                    cstate[c, 3] = 0
                burst_state[0] = 2
        # -- page workloads: (pool, rate, life, gfp, kind, order)
        for w in range(7):
            order = 0
            if w == 0:
                pool, rate, life, gfp, kind = POOL_PAGECACHE, P[P_PCRATE], P[P_PCLIFE], 0x100cca, PK_MOVABLE
            elif w == 1:
                pool, rate, life, gfp, kind = POOL_ANON, P[P_ARATE], P[P_ALIFE], 0x100cca, PK_ANON
            elif w == 2:
                pool, rate, life, gfp, kind = POOL_KERNEL, P[P_KRATE], P[P_KLIFE], 0xcc0, 1
            elif w == 3:
                pool, rate, life, gfp, kind = POOL_RECLAIMABLE, P[P_RRATE], P[P_RLIFE], 0xcd0, 3
            elif w == 4:
                pool, rate, life, gfp, kind = POOL_ATOMIC, P[P_ATOMPG] * mult, P[P_NLIFE], 0x820, 1
            elif w == 5:
                # order-N atomic buffers (page_frag/jumbo rx style)
                pool, rate, life, gfp, kind = POOL_ATOMIC_HI, P[P_ATOMHI] * mult, P[P_NLIFE], 0x40820, 1
                order = int(P[P_ATOMHI_ORDER])
            else:
                # THP faults: GFP_TRANSHUGE_LIGHT, expected to fail quietly without a free block
                pool, rate, life, gfp, kind = POOL_THP, P[P_THPRATE], P[P_THPLIFE], 0x1c20ca, PK_THP
                order = A.pbo
            if rate <= 0 and L.n[pool] == 0:
                continue
            if life > 0 and L.n[pool] > 0:
                nf = _poisson(L.n[pool] * dt / life)
                for j in range(min(nf, L.n[pool])):
                    i = np.random.randint(0, L.n[pool])
                    pfn = pool_remove_at(A, L, pool, i)
                    free_block(A, pfn, order)
            na = _poisson(rate * dt)
            for j in range(na):
                if L.n[pool] >= L.pfn.shape[1]:
                    break
                pfn, cause = alloc_pages(A, L, W, order, gfp, policy, node, kind, stats,
                                         fixed_used)
                if pfn >= 0:
                    pool_add(A, L, pool, pfn)
                    if w == 6:
                        A.counters[C_THP_FAULT_ALLOC] += 1
                    continue
                if w == 6:
                    A.counters[C_THP_FAULT_FALLBACK] += 1
                # The rest of this tick's demand meets the same state and fails the same way.
                nfail = na - j
                _fail(t, dt, nfail, 1, order, cause, -1, fail_sec, truth, truth_n)
                if not (gfp & GFP_NOWARN):
                    for k in range(nfail):
                        tk = t + dt * k / nfail
                        if ratelimit(RS, 1, tk, ratelimit_warn_interval, ratelimit_warn_burst, 1,
                                     rep, rep_n, -1):
                            ci = _capture(A, caps, cap_zs, cap_n)
                            _record(rep, rep_n, tk, R_WARN, order, gfp, ci, -1)
                break
        # -- SLUB caches (network objects)
        for c in range(ncache):
            q = caches[c, 7]  # the row whose slabs and free objects this one shares
            # object frees
            # atomic objects held until the load stops (replies queued on sockets nobody
            # reads) stay out of the frees; the rest live net_obj_life_s on average
            # (for a process-context row cstate[c, 3] is its reclaim wait, not a count)
            atomic = not (caches[c, 3] & GFP_DIRECT_RECLAIM)
            loose = cstate[c, 1] - cstate[c, 3] if atomic else cstate[c, 1]
            if loose > 0 and P[P_NLIFE] > 0:
                nf = _poisson(loose * dt / P[P_NLIFE])
                if nf > loose:
                    nf = loose
                cstate[c, 1] -= nf
                cstate[q, 0] += nf
            # shrink: objects are freed at random, so a slab is empty with probability
            # free_share ** objects_per_slab; SLUB discards empty slabs beyond min_partial
            while q == c and nslabs[c] > 0:
                top = nslabs[c] - 1
                objs = ((1 << slab_ord[c, top]) * A.page_size) // caches[c, 0]
                total = cstate[c, 0]
                for r in range(ncache):
                    if caches[r, 7] == c:
                        total += cstate[r, 1]
                if cstate[c, 0] < objs or total <= 0:
                    break
                if nslabs[c] * (cstate[c, 0] / total) ** objs < 1.0 + MIN_PARTIAL:
                    break
                cstate[c, 0] -= objs
                free_block(A, slab_pfn[c, top], slab_ord[c, top])
                nslabs[c] -= 1
        for c in range(ncache):
            nopage[c] = -1
        # demand comes to the rows without a parent; a child (an object's data buffer)
        # follows its parent object by object, in small chunks, as __alloc_skb does: the
        # head first, then the data, and a failed data buffer gives its head back at once
        for c in range(ncache):
            if caches[c, 6] >= 0 or _stalled(caches, cstate, c, t):
                continue
            demand = _poisson(P[P_NET] * caches[c, 5] / 1000.0 * mult * dt)
            if c == 0:
                A.counters[C_NET_DEMAND] += demand  # objects of the first (reported) cache
            left = demand
            leaf = True
            for ch in range(c + 1, ncache):
                if caches[ch, 6] == c:
                    leaf = False
                    tick_ok[ch] = 0
            done = 0
            while left > 0:
                # object by object matters only when a slab may be needed: while the free
                # objects cover all that is left, one call does it
                n = left
                if not leaf:
                    short = cstate[caches[c, 7], 0] < left
                    for ch in range(c + 1, ncache):
                        if caches[ch, 6] == c and cstate[caches[ch, 7], 0] < left:
                            short = True
                    if short and left > SKB_CHUNK:
                        n = SKB_CHUNK
                left -= n
                ok = _slab_take(A, L, W, RS, P, caches, cstate, slab_pfn, slab_ord, nslabs, c, n,
                                policy, node, stats, fixed_used, t, dt,
                                rep, rep_n, caps, cap_zs, cap_n, truth, truth_n, fail_sec,
                                ratelimit_warn_interval, ratelimit_warn_burst, nopage)
                if ok > 0:
                    done += ok
                for ch in range(c + 1, ncache):
                    if caches[ch, 6] != c or ok <= 0 or _stalled(caches, cstate, ch, t):
                        continue
                    share = caches[ch, 5] / 1000.0
                    m = ok if share >= 1.0 else np.random.binomial(ok, share)
                    if m <= 0:
                        continue
                    got = _slab_take(A, L, W, RS, P, caches, cstate, slab_pfn, slab_ord, nslabs,
                                     ch, m, policy, node, stats,
                                     fixed_used, t, dt, rep, rep_n, caps, cap_zs, cap_n, truth,
                                     truth_n, fail_sec, ratelimit_warn_interval,
                                     ratelimit_warn_burst, nopage)
                    if got < 0:  # the data's context went into direct reclaim: not failed
                        continue
                    tick_ok[ch] += got
                    back = m - got
                    if back > done:
                        back = done
                    # the object is dropped: its head goes back to the parent's free objects
                    cstate[c, 1] -= back
                    cstate[caches[c, 7], 0] += back
                    done -= back
                if _stalled(caches, cstate, c, t):
                    break  # went into direct reclaim: the rest waits
            # the queued share of this tick's complete objects (one draw per row and tick)
            if P[P_HOLD] > 0 and not (caches[c, 3] & GFP_DIRECT_RECLAIM):
                h = min(P[P_HOLD], 1.0)
                if done > 0:
                    cstate[c, 3] += np.random.binomial(done, h)
                for ch in range(c + 1, ncache):
                    if caches[ch, 6] == c and tick_ok[ch] > 0 and \
                            not (caches[ch, 3] & GFP_DIRECT_RECLAIM):
                        cstate[ch, 3] += np.random.binomial(tick_ok[ch], h)
        # -- kswapd and kcompactd, per node
        for nd in range(nnodes):
            if W[nd, 0] >= 0:
                order = W[nd, 0]
                if pgdat_balanced(A, nd, order, policy):
                    for z in range(A.zs.shape[0]):
                        if A.zs[z, Z_NODE] == nd:
                            A.zs[z, Z_BOOST] = 0
                            A.zs[z, Z_BOOSTED] = 0
                    W[nd, 0] = -1
                    if order > 0 and W[nd, 1] < order:
                        W[nd, 1] = order
                        A.counters[C_KCOMPACTD_WAKE] += 1
                else:
                    A.counters[C_PAGEOUTRUN] += 1
                    budget = int(P[P_KSWAPD] * dt + np.random.random())
                    got = reclaim(A, L, nd, budget, False)
                    # Enough free pages but not in blocks: hand over to kcompactd.
                    enough = True
                    for z in range(A.zs.shape[0]):
                        if A.zs[z, Z_NODE] == nd and A.zs[z, Z_MANAGED] > 0 and A.zs[z, Z_TYPE] >= ZONE_DMA32:
                            if A.zs[z, Z_FREE] < wmark_pages(A.zs, z, ALLOC_WMARK_HIGH) + (2 << order):
                                enough = False
                    if got == 0 or (enough and order > 0):
                        if order > 0 and W[nd, 1] < order:
                            W[nd, 1] = order
                            A.counters[C_KCOMPACTD_WAKE] += 1
                        if got == 0 or enough:
                            for z in range(A.zs.shape[0]):
                                if A.zs[z, Z_NODE] == nd:
                                    A.zs[z, Z_BOOST] = 0
                                    A.zs[z, Z_BOOSTED] = 0
                            W[nd, 0] = -1
            else:
                # boosted watermarks or low free pages wake kswapd by themselves
                for z in range(A.zs.shape[0]):
                    if A.zs[z, Z_NODE] == nd and A.zs[z, Z_MANAGED] > 0 and A.zs[z, Z_BOOSTED] == 1:
                        W[nd, 0] = 0
            if W[nd, 1] >= 0:
                order = W[nd, 1]
                done = True
                budget = int(P[P_KCOMPACTD] * dt + np.random.random())
                for z in range(A.zs.shape[0]):
                    if A.zs[z, Z_NODE] != nd or A.zs[z, Z_MANAGED] <= 0 or A.zs[z, Z_TYPE] < ZONE_DMA32:
                        continue
                    if policy != LEGACY:
                        target = A.zs[z, Z_FREE_BLOCKS] >= wmark_pages(A.zs, z, ALLOC_WMARK_HIGH)
                    else:
                        target = False
                        for o in range(order, A.max_order):
                            for mt in range(3):
                                if A.nr_free[z, o, mt] > 0:
                                    target = True
                    if target or budget <= 0:
                        continue
                    m, fr, comp_cursor[z] = compact(A, L, z, budget, comp_cursor[z], False)
                    budget -= m
                    if m > 0:
                        done = False
                if done:
                    W[nd, 1] = -1
    return A.counters[C_OPS] - ops0
