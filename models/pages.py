"""Page-level buddy operations (numba): free lists as doubly linked lists through ``nxt``/``prv``,
merging on free, splitting on allocation, pageblock relabelling on claim, highatomic reserve.

Free-list hygiene (6.10+): a free buddy always sits on the list of its pageblock's label, so
the list of a page is ``bmt[pfn >> pbo]``; relabelling a block moves its free pages.
"""
from __future__ import annotations

from numba import njit

from models.engine import (ALLOC_HIGHATOMIC, ALLOC_KSWAPD, ALLOC_NOFRAGMENT, ALLOC_NON_BLOCK,
                           ALLOC_OOM, FALLBACKS, _smallest, should_try_claim_block, C_CLAIMED_BLOCKS, C_FB_CLAIM,
                           C_FB_HIGHATOMIC, C_FB_STEAL, C_HA_RESERVE, C_HA_UNRESERVE,
                           C_PGALLOC, C_PGFREE, C_WMARK_BOOST, HIGHATOMIC, MODE_CLAIM,
                           MODE_HIGHATOMIC, MODE_NONE, MODE_NORMAL, MODE_STEAL, MOVABLE,
                           PK_ANON, PK_FREE, PK_MOVABLE, PK_THP, UNMOVABLE, RECLAIMABLE, Z_BOOST, Z_BOOSTED,
                           Z_END, Z_FREE, Z_FREE_BLOCKS, Z_HA_FREE, Z_HA_RESERVED, Z_MANAGED,
                           Z_START, Z_WHIGH, rmqueue_plan, steal_plan)


@njit(cache=True)
def list_add(heads, nxt, prv, z, o, mt, pfn):
    h = heads[z, o, mt]
    nxt[pfn] = h
    prv[pfn] = -1
    if h >= 0:
        prv[h] = pfn
    heads[z, o, mt] = pfn


@njit(cache=True)
def list_del(heads, nxt, prv, z, o, mt, pfn):
    p = prv[pfn]
    n = nxt[pfn]
    if p >= 0:
        nxt[p] = n
    else:
        heads[z, o, mt] = n
    if n >= 0:
        prv[n] = p
    nxt[pfn] = -1
    prv[pfn] = -1


@njit(cache=True)
def add_free(zs, nr_free, heads, nxt, prv, forder, bmt, z, pfn, o, pbo):
    mt = bmt[pfn >> pbo]
    list_add(heads, nxt, prv, z, o, mt, pfn)
    forder[pfn] = o
    nr_free[z, o, mt] += 1
    n = 1 << o
    zs[z, Z_FREE] += n
    if o >= pbo:
        zs[z, Z_FREE_BLOCKS] += n
    if mt == HIGHATOMIC:
        zs[z, Z_HA_FREE] += n


@njit(cache=True)
def del_free(zs, nr_free, heads, nxt, prv, forder, bmt, z, pfn, pbo):
    o = forder[pfn]
    mt = bmt[pfn >> pbo]
    list_del(heads, nxt, prv, z, o, mt, pfn)
    forder[pfn] = -1
    nr_free[z, o, mt] -= 1
    n = 1 << o
    zs[z, Z_FREE] -= n
    if o >= pbo:
        zs[z, Z_FREE_BLOCKS] -= n
    if mt == HIGHATOMIC:
        zs[z, Z_HA_FREE] -= n
    return o


@njit(cache=True)
def mark_alloc(pkind, bfree, bmov, pfn, order, kind, pbo):
    n = 1 << order
    for p in range(pfn, pfn + n):
        pkind[p] = kind
    if order <= pbo:
        b = pfn >> pbo
        bfree[b] -= n
        if kind == PK_MOVABLE or kind == PK_ANON or kind == PK_THP:
            bmov[b] += n
    else:
        per = 1 << pbo
        for b in range(pfn >> pbo, (pfn + n) >> pbo):
            bfree[b] -= per
            if kind == PK_MOVABLE or kind == PK_ANON or kind == PK_THP:
                bmov[b] += per


@njit(cache=True)
def take(zs, nr_free, heads, nxt, prv, forder, bmt, pkind, bfree, bmov, z, pfn, order, kind,
         pbo):
    """Remove the free buddy at ``pfn`` and split it down to ``order`` (``expand``); the halves
    go back on the lists of their own blocks. Returns the allocated pfn (the low end)."""
    high = del_free(zs, nr_free, heads, nxt, prv, forder, bmt, z, pfn, pbo)
    while high > order:
        high -= 1
        add_free(zs, nr_free, heads, nxt, prv, forder, bmt, z, pfn + (1 << high), high, pbo)
    mark_alloc(pkind, bfree, bmov, pfn, order, kind, pbo)
    return pfn


@njit(cache=True)
def free_pages(zs, nr_free, heads, nxt, prv, forder, bmt, pkind, bfree, bmov, z, pfn, order,
               pbo, max_order):
    """``__free_one_page``: merge with free buddies of the same order while they are free;
    above pageblock order only mergeable types merge, and the buddy takes this block's type."""
    n = 1 << order
    k0 = pkind[pfn]
    was_movable = k0 == PK_MOVABLE or k0 == PK_ANON or k0 == PK_THP
    for p in range(pfn, pfn + n):
        pkind[p] = PK_FREE
    if order <= pbo:
        b = pfn >> pbo
        bfree[b] += n
        if was_movable:
            bmov[b] -= n
    else:
        per = 1 << pbo
        for b in range(pfn >> pbo, (pfn + n) >> pbo):
            bfree[b] += per
            if was_movable:
                bmov[b] -= per
    start = zs[z, Z_START]
    end = zs[z, Z_END]
    mt = bmt[pfn >> pbo]
    while order < max_order - 1:
        buddy = pfn ^ (1 << order)
        if buddy < start or buddy + (1 << order) > end:
            break
        if forder[buddy] != order:
            break
        if order >= pbo:
            bmt_b = bmt[buddy >> pbo]
            if bmt_b != mt:
                if mt > RECLAIMABLE or bmt_b > RECLAIMABLE:
                    break
        del_free(zs, nr_free, heads, nxt, prv, forder, bmt, z, buddy, pbo)
        if order >= pbo:
            for b in range(buddy >> pbo, (buddy + (1 << order)) >> pbo):
                bmt[b] = mt
        if buddy < pfn:
            pfn = buddy
        order += 1
    add_free(zs, nr_free, heads, nxt, prv, forder, bmt, z, pfn, order, pbo)


@njit(cache=True)
def relabel_block(zs, nr_free, heads, nxt, prv, forder, bmt, z, b, new_mt, pbo):
    """``move_freepages_block`` + ``set_pageblock_migratetype``."""
    old = bmt[b]
    if old == new_mt:
        return
    base = b << pbo
    end = base + (1 << pbo)
    p = base
    while p < end:
        o = forder[p]
        if o >= 0:
            del_free(zs, nr_free, heads, nxt, prv, forder, bmt, z, p, pbo)
            bmt[b] = new_mt
            add_free(zs, nr_free, heads, nxt, prv, forder, bmt, z, p, o, pbo)
            bmt[b] = old
            p += 1 << o
        else:
            p += 1
    bmt[b] = new_mt


@njit(cache=True)
def boost_watermark(zs, z, flags, pbo, counters):
    """``boost_watermark``: one pageblock per fallback, capped at high * 15000 / 10000."""
    cap = zs[z, Z_WHIGH] * 15000 // 10000
    if cap <= 0:
        return
    zs[z, Z_BOOST] = min(zs[z, Z_BOOST] + (1 << pbo), cap)
    counters[C_WMARK_BOOST] += 1
    if flags & ALLOC_KSWAPD:
        zs[z, Z_BOOSTED] = 1


@njit(cache=True)
def try_claim_block(zs, nr_free, heads, nxt, prv, forder, bmt, bfree, bmov, z, pfn, cur_order,
                    order, start_mt, flags, pbo, counters):
    """``try_to_claim_block``: a whole free pageblock (or larger) is taken outright; below that
    the block is converted only if free + compatible pages are at least half of it."""
    b = pfn >> pbo
    if cur_order >= pbo:
        nb = 1 << (cur_order - pbo)
        for k in range(nb):
            relabel_block(zs, nr_free, heads, nxt, prv, forder, bmt, z, b + k, start_mt, pbo)
        counters[C_CLAIMED_BLOCKS] += nb
        return True
    boost_watermark(zs, z, flags, pbo, counters)
    per = 1 << pbo
    free = bfree[b]
    if start_mt == MOVABLE:
        alike = bmov[b]
    elif bmt[b] == MOVABLE:
        alike = per - free - bmov[b]
    else:
        alike = 0
    if free + alike >= per // 2:
        relabel_block(zs, nr_free, heads, nxt, prv, forder, bmt, z, b, start_mt, pbo)
        counters[C_CLAIMED_BLOCKS] += 1
        return True
    return False


@njit(cache=True)
def rmqueue(zs, nr_free, heads, nxt, prv, forder, bmt, pkind, bfree, bmov, z, order, mt, flags,
            kind, pbo, counters):
    """Take a page following :func:`models.engine.rmqueue_plan`. Returns pfn or -1."""
    mode, so, smt = rmqueue_plan(nr_free, z, order, mt, flags, pbo)
    if mode == MODE_NONE:
        return -1, MODE_NONE
    if mode == MODE_NORMAL or mode == MODE_HIGHATOMIC:
        pfn = heads[z, so, smt]
        if mode == MODE_HIGHATOMIC and not (flags & ALLOC_HIGHATOMIC):
            counters[C_FB_HIGHATOMIC] += 1
        return take(zs, nr_free, heads, nxt, prv, forder, bmt, pkind, bfree, bmov, z, pfn, order,
                    kind, pbo), mode
    if mode == MODE_CLAIM:
        # __rmqueue_claim: top-down over orders and fallback types; a refused claim (half-block
        # rule) moves on to the next candidate.
        min_order = order
        if order < pbo and (flags & ALLOC_NOFRAGMENT):
            min_order = pbo
        for co in range(so, min_order - 1, -1):
            if not should_try_claim_block(co, mt, pbo):
                break
            for k in range(2):
                fmt = FALLBACKS[mt, k]
                if nr_free[z, co, fmt] <= 0:
                    continue
                pfn = heads[z, co, fmt]
                if try_claim_block(zs, nr_free, heads, nxt, prv, forder, bmt, bfree, bmov, z, pfn,
                                   co, order, mt, flags, pbo, counters):
                    counters[C_FB_CLAIM] += 1
                    o2 = _smallest(nr_free, z, order, mt)
                    if o2 >= 0:
                        return take(zs, nr_free, heads, nxt, prv, forder, bmt, pkind, bfree,
                                    bmov, z, heads[z, o2, mt], order, kind, pbo), MODE_CLAIM
        if flags & ALLOC_NOFRAGMENT:
            if flags & (ALLOC_OOM | ALLOC_NON_BLOCK):
                o = _smallest(nr_free, z, order, HIGHATOMIC)
                if o >= 0:
                    counters[C_FB_HIGHATOMIC] += 1
                    return take(zs, nr_free, heads, nxt, prv, forder, bmt, pkind, bfree, bmov,
                                z, heads[z, o, HIGHATOMIC], order, kind, pbo), MODE_HIGHATOMIC
            return -1, MODE_NONE
        so, smt = steal_plan(nr_free, z, order, mt)
        if so < 0:
            return -1, MODE_NONE
        mode = MODE_STEAL
    if mode == MODE_STEAL:
        pfn = heads[z, so, smt]
        counters[C_FB_STEAL] += 1
        if so < pbo:
            boost_watermark(zs, z, flags, pbo, counters)
        return take(zs, nr_free, heads, nxt, prv, forder, bmt, pkind, bfree, bmov, z, pfn, order,
                    kind, pbo), MODE_STEAL
    return -1, MODE_NONE


@njit(cache=True)
def reserve_highatomic(zs, nr_free, heads, nxt, prv, forder, bmt, z, pfn, pbo, counters):
    """After an ALLOC_HIGHATOMIC success: relabel the block HIGHATOMIC while the reserve is
    under ~1% of the zone (none if 1% is less than a pageblock)."""
    per = 1 << pbo
    max_managed = (zs[z, Z_MANAGED] // 100) // per * per + per
    if zs[z, Z_MANAGED] // 100 < per:
        return
    if zs[z, Z_HA_RESERVED] >= max_managed:
        return
    b = pfn >> pbo
    if bmt[b] == HIGHATOMIC or bmt[b] > RECLAIMABLE:
        return
    relabel_block(zs, nr_free, heads, nxt, prv, forder, bmt, z, b, HIGHATOMIC, pbo)
    zs[z, Z_HA_RESERVED] += per
    counters[C_HA_RESERVE] += 1


@njit(cache=True)
def unreserve_highatomic(zs, nr_free, heads, nxt, prv, forder, bmt, z, to_mt, force, pbo,
                         counters):
    """Give one highatomic block back (keeping one unless forced)."""
    per = 1 << pbo
    if not force and zs[z, Z_HA_RESERVED] <= per:
        return False
    if zs[z, Z_HA_RESERVED] <= 0:
        return False
    start = zs[z, Z_START] >> pbo
    end = zs[z, Z_END] >> pbo
    for b in range(start, end):
        if bmt[b] == HIGHATOMIC:
            relabel_block(zs, nr_free, heads, nxt, prv, forder, bmt, z, b, to_mt, pbo)
            zs[z, Z_HA_RESERVED] -= per
            counters[C_HA_UNRESERVE] += 1
            return True
    return False
