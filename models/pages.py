"""Page-level buddy operations (numba) on :data:`models.engine.Allocator`: free lists as doubly
linked lists through the page records (``nxt``/``prv``), splitting on allocation, merging on
free, pageblock relabelling on claim, the highatomic reserve.

Nothing here decides: :func:`rmqueue` takes the page :func:`models.engine.plan` chose, and the
claim, reserve and unreserve moves happen where the engine's rules said they do.

Free-list hygiene (6.10+): a free buddy always sits on the list of its pageblock's label, so
the list of a page is ``blk[pfn >> pbo].mt``; relabelling a block moves its free pages.
"""
from __future__ import annotations


from models.engine import (ALLOC_HIGHATOMIC, ALLOC_KSWAPD, C_CLAIMED_BLOCKS, C_FB_CLAIM,
                           C_FB_HIGHATOMIC, C_FB_STEAL, C_HA_RESERVE, C_HA_UNRESERVE, C_PGALLOC,
                           C_PGFREE, C_WMARK_BOOST, HIGHATOMIC, MODE_CLAIM, MODE_HIGHATOMIC,
                           MODE_STEAL, PK_ANON, PK_FREE, PK_MOVABLE, PK_THP, RECLAIMABLE,
                           Z_BOOST, Z_BOOSTED, Z_END, Z_FREE, Z_FREE_BLOCKS, Z_HA_FREE,
                           Z_HA_RESERVED, Z_MANAGED, Z_START, Z_WHIGH, gfp_migratetype,
                           highatomic_reserve_ok, highatomic_unreserve_block, jit, jit_inline,
                           jit_inline_into, plan, rmqueue_smallest)


@jit
def is_movable_kind(kind):
    """Pages compaction can migrate and ``try_to_claim_block`` counts as movable."""
    return kind == PK_MOVABLE or kind == PK_ANON or kind == PK_THP


@jit
def list_add(A, z, o, mt, pfn):
    h = A.heads[z, o, mt]
    A.pg[pfn].nxt = h
    A.pg[pfn].prv = -1
    if h >= 0:
        A.pg[h].prv = pfn
    A.heads[z, o, mt] = pfn


@jit
def list_del(A, z, o, mt, pfn):
    p = A.pg[pfn].prv
    n = A.pg[pfn].nxt
    if p >= 0:
        A.pg[p].nxt = n
    else:
        A.heads[z, o, mt] = n
    if n >= 0:
        A.pg[n].prv = p
    A.pg[pfn].nxt = -1
    A.pg[pfn].prv = -1


@jit
def add_free(A, z, pfn, o):
    """Put the free buddy (pfn, o) on its block's list and count it."""
    mt = A.blk[pfn >> A.pbo].mt
    list_add(A, z, o, mt, pfn)
    A.pg[pfn].order = o
    A.nr_free[z, o, mt] += 1
    n = 1 << o
    A.zs[z, Z_FREE] += n
    if o >= A.pbo:
        A.zs[z, Z_FREE_BLOCKS] += n
    if mt == HIGHATOMIC:
        A.zs[z, Z_HA_FREE] += n


@jit
def del_free(A, z, pfn):
    """Take the free buddy at pfn off its list; returns its order."""
    o = A.pg[pfn].order
    mt = A.blk[pfn >> A.pbo].mt
    list_del(A, z, o, mt, pfn)
    A.pg[pfn].order = -1
    A.nr_free[z, o, mt] -= 1
    n = 1 << o
    A.zs[z, Z_FREE] -= n
    if o >= A.pbo:
        A.zs[z, Z_FREE_BLOCKS] -= n
    if mt == HIGHATOMIC:
        A.zs[z, Z_HA_FREE] -= n
    return o


@jit
def _count_blocks(A, pfn, order, free_delta, movable):
    """Per-block free and movable counts for 2^order pages at pfn becoming allocated
    (free_delta -1) or free (+1)."""
    n = 1 << order
    per = 1 << A.pbo
    if order <= A.pbo:
        b = pfn >> A.pbo
        A.blk[b].free += free_delta * n
        if movable:
            A.blk[b].movable -= free_delta * n
    else:
        for b in range(pfn >> A.pbo, (pfn + n) >> A.pbo):
            A.blk[b].free += free_delta * per
            if movable:
                A.blk[b].movable -= free_delta * per


@jit
def mark_alloc(A, pfn, order, kind):
    for p in range(pfn, pfn + (1 << order)):
        A.pg[p].kind = kind
    _count_blocks(A, pfn, order, -1, is_movable_kind(kind))


@jit_inline_into("rmqueue")
def take(A, z, pfn, order, kind):
    """Remove the free buddy at ``pfn`` and split it down to ``order`` (``expand``); the halves
    go back on the lists of their own blocks. Returns the allocated pfn (the low end)."""
    high = del_free(A, z, pfn)
    while high > order:
        high -= 1
        add_free(A, z, pfn + (1 << high), high)
    mark_alloc(A, pfn, order, kind)
    return pfn


@jit_inline_into("free_block")
def free_pages(A, z, pfn, order):
    """``__free_one_page``: merge with free buddies of the same order while they are free;
    above pageblock order only mergeable types merge, and the buddy takes this block's type."""
    movable = is_movable_kind(A.pg[pfn].kind)
    for p in range(pfn, pfn + (1 << order)):
        A.pg[p].kind = PK_FREE
    _count_blocks(A, pfn, order, 1, movable)
    pbo = A.pbo
    start = A.zs[z, Z_START]
    end = A.zs[z, Z_END]
    mt = A.blk[pfn >> pbo].mt
    while order < A.max_order - 1:
        buddy = pfn ^ (1 << order)
        if buddy < start or buddy + (1 << order) > end:
            break
        if A.pg[buddy].order != order:
            break
        if order >= pbo:
            bmt = A.blk[buddy >> pbo].mt
            if bmt != mt and (mt > RECLAIMABLE or bmt > RECLAIMABLE):  # U/M/E merge across
                break
        del_free(A, z, buddy)
        if order >= pbo:
            for b in range(buddy >> pbo, (buddy + (1 << order)) >> pbo):
                A.blk[b].mt = mt
        if buddy < pfn:
            pfn = buddy
        order += 1
    add_free(A, z, pfn, order)


@jit_inline
def free_block(A, pfn, order):
    """Free an allocated 2^order block (any zone)."""
    free_pages(A, A.blk[pfn >> A.pbo].zone, pfn, order)
    A.counters[C_PGFREE] += 1 << order


@jit
def relabel_block(A, z, b, new_mt):
    """``move_freepages_block`` + ``set_pageblock_migratetype``."""
    old = A.blk[b].mt
    if old == new_mt:
        return
    base = b << A.pbo
    end = base + (1 << A.pbo)
    p = base
    while p < end:
        o = A.pg[p].order
        if o >= 0:
            del_free(A, z, p)
            A.blk[b].mt = new_mt
            add_free(A, z, p, o)
            A.blk[b].mt = old
            p += 1 << o
        else:
            p += 1
    A.blk[b].mt = new_mt


@jit
def boost_watermark(A, z, flags):
    """``boost_watermark``: one pageblock per fallback, up to high x watermark_boost_factor /
    10000 (at least a pageblock); none with the factor 0, a high watermark of 0, or a zone
    smaller than four pageblocks."""
    if A.boost_factor <= 0 or (4 << A.pbo) > A.zs[z, Z_MANAGED]:
        return
    cap = A.zs[z, Z_WHIGH] * A.boost_factor // 10000
    if cap <= 0:
        return
    cap = max(cap, 1 << A.pbo)
    A.zs[z, Z_BOOST] = min(A.zs[z, Z_BOOST] + (1 << A.pbo), cap)
    A.counters[C_WMARK_BOOST] += 1
    if flags & ALLOC_KSWAPD:
        A.zs[z, Z_BOOSTED] = 1


@jit
def claim_block(A, z, pfn, cur_order, start_mt):
    """``try_to_claim_block`` once the engine accepted the claim: relabel the pageblock(s)
    under the buddy at pfn, moving their free pages to ``start_mt``."""
    b = pfn >> A.pbo
    nb = 1 << (cur_order - A.pbo) if cur_order >= A.pbo else 1
    for k in range(nb):
        relabel_block(A, z, b + k, start_mt)
    A.counters[C_CLAIMED_BLOCKS] += nb


@jit_inline_into("get_page_from_freelist")
def rmqueue(A, z, order, mt, flags, kind, mode, so, smt, refused):
    """``rmqueue_buddy`` acting on the engine's plan (mode, source order and type, claims
    refused before it): ``__rmqueue_smallest``, a claim, a steal, the highatomic reserve.
    Returns the pfn."""
    for _ in range(refused):
        boost_watermark(A, z, flags)  # each refused claim boosted before it was refused
    pfn = A.heads[z, so, smt]
    if mode == MODE_CLAIM:
        if so < A.pbo:
            boost_watermark(A, z, flags)
        claim_block(A, z, pfn, so, mt)
        A.counters[C_FB_CLAIM] += 1
        so = rmqueue_smallest(A.nr_free, z, order, mt)  # the claimed block's pages
        pfn = A.heads[z, so, mt]
    elif mode == MODE_STEAL:
        A.counters[C_FB_STEAL] += 1  # 6.15's __rmqueue_steal does not boost the watermark
    elif mode == MODE_HIGHATOMIC and not (flags & ALLOC_HIGHATOMIC):
        A.counters[C_FB_HIGHATOMIC] += 1
    return take(A, z, pfn, order, kind)


@jit_inline_into("alloc_pages")
def get_page_from_freelist(A, order, gfp, flags, node, policy, kind):
    """Serve the request where :func:`models.engine.plan` says. Returns (pfn, zone), -1s when
    the plan found no zone."""
    z, mode, so, smt, f, refused, _ok = plan(A, order, gfp, flags, node, policy)
    if z < 0:
        return -1, -1
    pfn = rmqueue(A, z, order, gfp_migratetype(gfp), f, kind, mode, so, smt, refused)
    A.counters[C_PGALLOC] += 1 << order
    if f & ALLOC_HIGHATOMIC:
        reserve_highatomic(A, z, pfn)
    return pfn, z


@jit
def reserve_highatomic(A, z, pfn):
    """After an ALLOC_HIGHATOMIC success: the block becomes HIGHATOMIC if the engine allows."""
    b = pfn >> A.pbo
    if not highatomic_reserve_ok(A, z, b):
        return
    relabel_block(A, z, b, HIGHATOMIC)
    A.zs[z, Z_HA_RESERVED] += 1 << A.pbo
    A.counters[C_HA_RESERVE] += 1


@jit
def unreserve_highatomic(A, z, to_mt, force):
    """Give one highatomic block back to ``to_mt`` (the engine picks it). Returns whether one
    was."""
    b = highatomic_unreserve_block(A, z, force)
    if b < 0:
        return False
    relabel_block(A, z, b, to_mt)
    A.zs[z, Z_HA_RESERVED] -= 1 << A.pbo
    A.counters[C_HA_UNRESERVE] += 1
    return True
