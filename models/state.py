"""Model state: zones, pageblocks, free lists, page pools; construction, checks, observation.

A host is a list of zones (node, type, present and managed pages). Zones are laid out one
after another in pfn order, each aligned to a max-order block; the pages a zone has but does
not manage are allocated at its start as reserved. Watermarks and lowmem_reserve follow the
kernel's defaults (``min_free_kbytes = sqrt(16 x lowmem kB)``, watermark_scale_factor 10,
lowmem_reserve_ratio 256/256/32) unless given; :func:`zone_watermarks` is the kernel's
calculation, for any min_free_kbytes and watermark_scale_factor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from models.engine import (BLOCK_DTYPE, COUNTER_NAMES, HIGHATOMIC, MOVABLE, MT_NAMES,
                           NCOUNTERS, NMT, NZF, PAGE_DTYPE, PK_ANON, PK_FREE, PK_MOVABLE,
                           PK_RECLAIMABLE, PK_RESERVED, PK_THP, PK_UNMOVABLE, PK_PINNED,
                           RECLAIMABLE, UNMOVABLE, Z_END, Z_FREE, Z_FREE_BLOCKS, Z_HA_FREE,
                           Z_MANAGED, Z_NODE, Z_PRESENT, Z_START, Z_TYPE, Z_WHIGH, Z_WLOW, Z_WMIN,
                           Z_LOWMEM, ZONE_DMA, ZONE_DMA32, ZONE_MOVABLE, ZONE_NORMAL, NZT,
                           Allocator, zonelists)
from models.pages import add_free, free_pages
from models.sim import (NPOOLS, POOL_ANON, POOL_PAGECACHE, POOL_PINNED, Pools, pool_add,
                        pool_remove_at)

GIB_PAGES = 1 << 18  # 4 KiB pages per GiB


@dataclass
class ZoneSpec:
    node: int
    type: int              # ZONE_DMA / ZONE_DMA32 / ZONE_NORMAL
    present: int           # pages
    managed: int           # pages
    wmark: tuple | None = None  # (min, low, high) pages; None = kernel defaults


@dataclass
class HostSpec:
    zones: list
    pageblock_order: int = 9
    max_order: int = 11     # NR_PAGE_ORDERS
    min_free_kbytes: int | None = None
    name: str = "model"
    page_size: int = 4096
    watermark_scale_factor: int = 10
    watermark_boost_factor: int = 15000

    @staticmethod
    def x86_64(mem_gib: float, nodes: int = 1, reserved_frac: float = 0.02) -> "HostSpec":
        """A typical x86_64 layout: DMA 16 MiB, DMA32 up to 4 GiB, Normal above, per node."""
        total = int(mem_gib * GIB_PAGES)
        per_node = total // nodes
        zones = []
        for n in range(nodes):
            left = per_node
            if n == 0:
                zones.append(ZoneSpec(0, ZONE_DMA, 4096, 3840))
                left -= 4096
                d32 = min(left, (4 << 18) - 4096 - 65536)  # below 4 GiB minus the PCI hole
                zones.append(ZoneSpec(0, ZONE_DMA32, d32, int(d32 * (1 - reserved_frac))))
                left -= d32
            if left > 0:
                zones.append(ZoneSpec(n, ZONE_NORMAL, left, int(left * (1 - reserved_frac))))
        return HostSpec(zones)


# The kernel's defaults for the watermark sysctls (mm/page_alloc.c).
WATERMARK_SCALE_FACTOR = 10      # vm.watermark_scale_factor, 1 to 3000
WATERMARK_BOOST_FACTOR = 15000   # vm.watermark_boost_factor, 0 disables boosting
MIN_FREE_KBYTES_AUTO = (128, 262144)  # calculate_min_free_kbytes clamps its own value to this


def kernel_min_free_kbytes(lowmem_pages: int, page_size: int = 4096) -> int:
    """``calculate_min_free_kbytes``: int_sqrt(lowmem kB x 16), clamped to 128..262144.
    The kernel counts lowmem (nr_free_buffer_pages) once, at boot (postcore_initcall), when
    the zones manage fewer pages than a running host shows; so on a running host's zone
    sizes this gives a few percent more than the host has."""
    kb = int(lowmem_pages) * (page_size // 1024)
    lo, hi = MIN_FREE_KBYTES_AUTO
    return max(lo, min(hi, math.isqrt(kb * 16)))


def zone_watermarks(managed, types, min_free_kbytes: int,
                    watermark_scale_factor: int = WATERMARK_SCALE_FACTOR,
                    page_size: int = 4096) -> list[tuple[int, int, int]]:
    """``__setup_per_zone_wmarks`` for every zone of the host (all nodes): (min, low, high)
    in pages. min_free_kbytes is shared among the lowmem zones (all but Movable) in
    proportion to their managed pages; a Movable zone's min is managed/1024 clamped to
    32..128; low and high each add max(share/4, managed x watermark_scale_factor / 10000),
    share being the zone's proportional part of min_free_kbytes."""
    managed = [int(m) for m in managed]
    pages_min = int(min_free_kbytes) >> (page_size.bit_length() - 1 - 10)
    lowmem = sum(m for m, t in zip(managed, types) if t != ZONE_MOVABLE)
    out = []
    for m, t in zip(managed, types):
        share = pages_min * m // lowmem if lowmem else 0
        mn = min(max(m // 1024, 32), 128) if t == ZONE_MOVABLE else share
        gap = max(share >> 2, m * int(watermark_scale_factor) // 10000)
        out.append((mn, mn + gap, mn + 2 * gap))
    return out


def default_watermarks(spec: HostSpec) -> list[tuple[int, int, int]]:
    """Each zone's given watermarks, or the kernel's for the spec's min_free_kbytes (default:
    the kernel's own calculation) and watermark_scale_factor."""
    managed = [z.managed for z in spec.zones]
    types = [z.type for z in spec.zones]
    lowmem = sum(m for m, t in zip(managed, types) if t != ZONE_MOVABLE)
    mfk = spec.min_free_kbytes or kernel_min_free_kbytes(lowmem, spec.page_size)
    wm = zone_watermarks(managed, types, mfk, spec.watermark_scale_factor, spec.page_size)
    return [tuple(z.wmark) if z.wmark else w for z, w in zip(spec.zones, wm)]


def lowmem_reserve(spec: HostSpec) -> np.ndarray:
    ratio = {ZONE_DMA: 256, ZONE_DMA32: 256, ZONE_NORMAL: 32}
    nz = len(spec.zones)
    lr = np.zeros((nz, 4), dtype=np.int64)
    for i, zi in enumerate(spec.zones):
        for jt in range(zi.type + 1, 4):
            tot = sum(z.managed for z in spec.zones if z.node == zi.node and zi.type < z.type <= jt)
            lr[i, jt] = tot // ratio.get(zi.type, 32)
    return lr


@njit(cache=True)
def _init_free(A):
    """Every managed page free as the largest aligned buddies; unmanaged pages reserved."""
    per = 1 << A.pbo
    for z in range(A.zs.shape[0]):
        start = A.zs[z, Z_START]
        end = A.zs[z, Z_END]
        reserved = A.zs[z, Z_PRESENT] - A.zs[z, Z_MANAGED]
        for b in range(start >> A.pbo, end >> A.pbo):
            A.blk[b].free = 0
            A.blk[b].movable = 0
            A.blk[b].zone = z
        p = start
        first_free = start + reserved
        while p < first_free:
            A.pg[p].kind = PK_RESERVED
            p += 1
        # reserved pages live in unmovable blocks
        for b in range(start >> A.pbo, (first_free + per - 1) >> A.pbo):
            A.blk[b].mt = UNMOVABLE
        p = first_free
        while p < end:
            o = A.max_order - 1
            while o > 0 and ((p & ((1 << o) - 1)) != 0 or p + (1 << o) > end):
                o -= 1
            for q in range(p, p + (1 << o)):
                A.pg[q].kind = PK_FREE
            if o <= A.pbo:
                A.blk[p >> A.pbo].free += 1 << o
            else:
                for b in range(p >> A.pbo, (p + (1 << o)) >> A.pbo):
                    A.blk[b].free += per
            add_free(A, z, p, o)
            p += 1 << o


class State:
    """All arrays of one simulated host: ``A`` the allocator (:data:`models.engine.Allocator`),
    ``L`` the workload pools (:data:`models.sim.Pools`), ``W`` the daemons' wakeup orders. The
    old per-array names (``bmt``, ``forder``, ...) are views into them."""

    def __init__(self, spec: HostSpec):
        self.spec = spec
        pbo, max_order = spec.pageblock_order, spec.max_order
        align = 1 << (max_order - 1)
        nz = len(spec.zones)
        zs = np.zeros((nz, NZF), dtype=np.int64)
        pfn = 0
        wm = default_watermarks(spec)
        for i, z in enumerate(spec.zones):
            present = (z.present + align - 1) // align * align
            zs[i, Z_START] = pfn
            zs[i, Z_END] = pfn + present
            zs[i, Z_PRESENT] = present
            zs[i, Z_MANAGED] = min(z.managed + (present - z.present), present)
            zs[i, Z_TYPE] = z.type
            zs[i, Z_NODE] = z.node
            zs[i, Z_WMIN], zs[i, Z_WLOW], zs[i, Z_WHIGH] = wm[i]
            pfn += present
        self.npages = pfn
        self.nblocks = pfn >> pbo
        nnodes = max(z.node for z in spec.zones) + 1
        pg = np.zeros(pfn, dtype=PAGE_DTYPE)
        pg["nxt"] = pg["prv"] = pg["pos"] = pg["order"] = pg["pool"] = -1
        blk = np.zeros(self.nblocks, dtype=BLOCK_DTYPE)
        blk["mt"] = MOVABLE
        zs[:, Z_LOWMEM:Z_LOWMEM + NZT] = lowmem_reserve(spec)
        zls = zonelists(zs, nnodes)
        self.A = Allocator(zs, np.zeros((nz, max_order, NMT), dtype=np.int64),
                           np.full((nz, max_order, NMT), -1, dtype=np.int64), pg, blk,
                           np.zeros(NCOUNTERS, dtype=np.int64), zls, pbo, max_order,
                           spec.page_size, int(spec.watermark_boost_factor))
        self.L = Pools(np.zeros((NPOOLS, pfn), dtype=np.int32), np.zeros(NPOOLS, dtype=np.int64))
        self.W = np.full((nnodes, 2), -1, dtype=np.int64)
        _init_free(self.A)

    def __copy__(self):
        new = object.__new__(State)
        new.__dict__.update(self.__dict__)
        new.A = Allocator(*[a.copy() if isinstance(a, np.ndarray) else a for a in self.A])
        new.L = Pools(*[a.copy() for a in self.L])
        new.W = self.W.copy()
        return new

    @property
    def nnodes(self) -> int:
        return self.W.shape[0]

    # The arrays under their old names (views; assigning copies the values in).
    _VIEWS = {"zs": ("A", "zs", None), "nr_free": ("A", "nr_free", None),
              "heads": ("A", "heads", None),
              "counters": ("A", "counters", None), "nxt": ("A", "pg", "nxt"),
              "prv": ("A", "pg", "prv"), "forder": ("A", "pg", "order"),
              "pkind": ("A", "pg", "kind"), "ppos": ("A", "pg", "pos"),
              "ppool": ("A", "pg", "pool"), "bmt": ("A", "blk", "mt"),
              "bfree": ("A", "blk", "free"), "bmov": ("A", "blk", "movable"),
              "pool_pfn": ("L", "pfn", None), "pool_n": ("L", "n", None)}

    @property
    def lowmem(self) -> np.ndarray:
        """[zone, highest zone type] lowmem_reserve (a view of the zone fields)."""
        return self.A.zs[:, Z_LOWMEM:Z_LOWMEM + NZT]

    def __getattr__(self, name):
        if name in State._VIEWS:
            tup, arr, field = State._VIEWS[name]
            a = getattr(self.__dict__[tup], arr)
            return a if field is None else a[field]
        raise AttributeError(name)

    def __setattr__(self, name, value):
        if name in State._VIEWS:
            getattr(self, name)[...] = value
        else:
            object.__setattr__(self, name, value)

    def fragment(self, seed: int, unmovable_frac: float, reclaimable_frac: float,
                 free_frac: float, pinned_per_block: int = 0, zones=None,
                 cluster: float = 0.0, pinned_frac: float = 1.0, anon_share: float = 0.0,
                 keep_labels: bool = False) -> None:
        """Build a fragmented steady state directly: label a share of blocks unmovable and
        reclaimable and fill them, fill the rest with page cache, then free a random
        ``free_frac`` of the page-cache pages (scattered holes, so no pageblock is wholly
        free). ``pinned_per_block`` unmovable pages in a ``pinned_frac`` share of the movable
        blocks (mlocked pages, or old steals) pin those blocks against compaction.
        """
        zs_idx = np.array([i for i in range(len(self.spec.zones))
                           if zones is None or self.spec.zones[i].type in zones], dtype=np.int64)
        _fragment(self.A, self.L, zs_idx, seed, unmovable_frac, reclaimable_frac, free_frac,
                  pinned_per_block, cluster, pinned_frac, anon_share, keep_labels)

    # -- observation ---------------------------------------------------------------------------
    def block_counts(self) -> np.ndarray:
        pbo = self.spec.pageblock_order
        out = np.zeros((len(self.spec.zones), NMT), dtype=np.int64)
        for z in range(len(self.spec.zones)):
            b0, b1 = self.zs[z, Z_START] >> pbo, self.zs[z, Z_END] >> pbo
            out[z] = np.bincount(self.bmt[b0:b1], minlength=NMT)[:NMT]
        return out

    def free_mb_by_migratetype(self) -> dict:
        pages = (self.nr_free * (1 << np.arange(self.spec.max_order))[None, :, None]).sum(axis=(0, 1))
        return {MT_NAMES[m]: round(float(pages[m]) * self.spec.page_size / 2**20, 1)
                for m in range(NMT) if m < 4 or pages[m]}

    def free_pageblocks(self) -> int:
        return int(self.zs[:, Z_FREE_BLOCKS].sum() >> self.spec.pageblock_order)

    def counters_dict(self) -> dict:
        return {n: int(self.counters[i]) for i, n in enumerate(COUNTER_NAMES)}

    def check(self) -> list[str]:
        """Invariants: pages conserved, no buddies left unmerged, lists match labels, counters
        match recounts. Returns problems (empty = consistent)."""
        return check_state(self)


@njit(cache=True)
def _fragment(A, L, zidx, seed, unmov_frac, recl_frac, free_frac, pinned_per_block, cluster,
              pinned_frac, anon_share, keep_labels):
    np.random.seed(seed)
    per = 1 << A.pbo
    for zi in range(zidx.shape[0]):
        z = zidx[zi]
        start = A.zs[z, Z_START]
        end = A.zs[z, Z_END]
        # take every free page off the lists
        for o in range(A.max_order):
            for mt in range(A.nr_free.shape[2]):
                A.heads[z, o, mt] = -1
                A.nr_free[z, o, mt] = 0
        A.zs[z, Z_FREE] = 0
        A.zs[z, Z_FREE_BLOCKS] = 0
        A.zs[z, Z_HA_FREE] = 0
        for p in range(start, end):
            A.pg[p].order = -1
        b0 = start >> A.pbo
        b1 = end >> A.pbo
        for b in range(b0, b1):
            base = b << A.pbo
            if A.pg[base].kind == PK_RESERVED:
                # a block holding reserved pages is an unmovable block; fill its other pages
                A.blk[b].mt = UNMOVABLE
                A.blk[b].free = 0
                A.blk[b].movable = 0
                for p in range(base, base + per):
                    if A.pg[p].kind != PK_RESERVED:
                        A.pg[p].kind = PK_UNMOVABLE
                        pool_add(A, L, POOL_PINNED, p)
                continue
            r = np.random.random()
            if keep_labels:
                # labels were set by the caller: r selects the branch that matches
                if A.blk[b].mt == UNMOVABLE or A.blk[b].mt == HIGHATOMIC:
                    r = -1.0
                    unmov_frac = 0.0
                elif A.blk[b].mt == RECLAIMABLE:
                    r = 0.0
                    unmov_frac = 0.0
                    recl_frac = 1.0
                else:
                    r = 2.0
            # Long-lived kernel memory goes to the static pool: the kernel/reclaimable
            # workloads churn only what they allocate themselves.
            if r < unmov_frac or r < 0:
                mt = UNMOVABLE
                kind = PK_UNMOVABLE
                pool = POOL_PINNED
            elif r < unmov_frac + recl_frac or (keep_labels and A.blk[b].mt == RECLAIMABLE):
                mt = RECLAIMABLE
                kind = PK_RECLAIMABLE
                pool = POOL_PINNED
            else:
                mt = MOVABLE
                kind = PK_MOVABLE
                pool = POOL_PAGECACHE
            A.blk[b].mt = mt
            A.blk[b].free = 0
            A.blk[b].movable = 0
            npin = pinned_per_block if np.random.random() < pinned_frac else 0
            off = np.random.randint(0, per)
            for p in range(base, base + per):
                if A.pg[p].kind == PK_RESERVED:
                    continue
                k = kind
                pl = pool
                if mt == MOVABLE and ((p - base - off) % per) < npin:
                    k = PK_PINNED
                    pl = POOL_PINNED
                elif mt == MOVABLE and anon_share > 0 and np.random.random() < anon_share:
                    k = PK_ANON
                    pl = POOL_ANON
                A.pg[p].kind = k
                if k == PK_MOVABLE or k == PK_ANON:
                    A.blk[b].movable += 1
                pool_add(A, L, pl, p)
        # scatter frees among page-cache pages
        n = L.n[POOL_PAGECACHE]
        target = int(n * free_frac)
        done = 0
        tries = 0
        while done < target and tries < 4 * target + 100:
            tries += 1
            i = np.random.randint(0, L.n[POOL_PAGECACHE])
            pfn = L.pfn[POOL_PAGECACHE, i]
            if pfn < start or pfn >= end:
                continue
            # cluster > 0 frees whole aligned runs (bigger holes), still inside one block
            run = 1
            if cluster > 0 and np.random.random() < cluster:
                run = 1 << np.random.randint(1, A.pbo - 1)
                pfn = pfn & ~(run - 1)
            for q in range(pfn, pfn + run):
                if A.pg[q].kind == PK_MOVABLE and A.pg[q].pool == POOL_PAGECACHE:
                    pool_remove_at(A, L, POOL_PAGECACHE, A.pg[q].pos)
                    free_pages(A, z, q, 0)
                    done += 1


def check_state(st: State) -> list[str]:
    problems = []
    pbo, mo = st.spec.pageblock_order, st.spec.max_order
    free_pages_tot = 0
    nr = np.zeros_like(st.nr_free)
    for z in range(len(st.spec.zones)):
        for o in range(mo):
            for mt in range(NMT):
                p = st.heads[z, o, mt]
                seen = 0
                prev = -1
                while p >= 0:
                    if st.forder[p] != o:
                        problems.append(f"zone {z} list o{o} mt{mt}: page {p} has order {st.forder[p]}")
                        break
                    if st.bmt[p >> pbo] != mt:
                        problems.append(f"zone {z}: page {p} on list {MT_NAMES[mt]} in a "
                                        f"{MT_NAMES[st.bmt[p >> pbo]]} block")
                    if st.prv[p] != prev:
                        problems.append(f"zone {z}: broken prev link at {p}")
                        break
                    seen += 1
                    prev = p
                    p = st.nxt[p]
                    if seen > st.npages:
                        problems.append("list cycle")
                        break
                nr[z, o, mt] = seen
                free_pages_tot += seen << o
    if not np.array_equal(nr, st.nr_free):
        problems.append("nr_free counters differ from list lengths")
    heads_pfn = np.nonzero(st.forder >= 0)[0]
    covered = np.zeros(st.npages, dtype=bool)
    for p in heads_pfn:
        o = int(st.forder[p])
        if p & ((1 << o) - 1):
            problems.append(f"free buddy {p} order {o} not aligned")
        covered[p:p + (1 << o)] = True
        if o < mo - 1:
            buddy = p ^ (1 << o)
            z = int(np.searchsorted(st.zs[:, Z_END], p, side="right"))
            if st.zs[z, Z_START] <= buddy < st.zs[z, Z_END] and st.forder[buddy] == o:
                mt_a, mt_b = st.bmt[p >> pbo], st.bmt[buddy >> pbo]
                if o < pbo or (mt_a == mt_b) or (mt_a <= RECLAIMABLE and mt_b <= RECLAIMABLE):
                    problems.append(f"free buddies {p} and {buddy} of order {o} not merged")
    if covered.sum() != free_pages_tot:
        problems.append("free buddies overlap")
    if np.any(covered != (st.pkind == PK_FREE)):
        problems.append("page kinds disagree with free buddies")
    if int(st.zs[:, Z_FREE].sum()) != free_pages_tot:
        problems.append(f"zone free {int(st.zs[:, Z_FREE].sum())} != recount {free_pages_tot}")
    allocated = int((st.pkind != PK_FREE).sum())
    if allocated + free_pages_tot != st.npages:
        problems.append("pages not conserved")
    fb = sum(1 << int(st.forder[p]) for p in heads_pfn if st.forder[p] >= pbo)
    if fb != int(st.zs[:, Z_FREE_BLOCKS].sum()):
        problems.append("nr_free_pages_blocks differs from recount")
    per = 1 << pbo
    bf = covered.reshape(-1, per).sum(axis=1) if st.npages % per == 0 else None
    if bf is not None and not np.array_equal(bf, st.bfree):
        problems.append("per-block free counts differ from recount")
    movable = np.isin(st.pkind, [PK_MOVABLE, PK_ANON, PK_THP])
    if st.npages % per == 0 and not np.array_equal(movable.reshape(-1, per).sum(axis=1), st.bmov):
        problems.append("per-block movable counts differ from recount")
    pools = int(st.pool_n.sum())
    in_pool = int((st.ppool >= 0).sum())
    if pools != in_pool:
        problems.append(f"pool sizes {pools} != pages marked in pools {in_pool}")
    return problems


@njit(cache=True)
def _place_free(A, L, z, mt, counts, seed):
    """Carve free buddies of type ``mt`` with ``counts[order]`` out of the zone's blocks of that
    type (which start fully allocated), never next to an equal free buddy (they would merge).
    Returns how many buddies could not be placed."""
    np.random.seed(seed)
    per = 1 << A.pbo
    start = A.zs[z, Z_START]
    end = A.zs[z, Z_END]
    blocks = []
    for b in range(start >> A.pbo, end >> A.pbo):
        if A.blk[b].mt == mt and A.pg[b << A.pbo].kind != PK_RESERVED:
            blocks.append(b)
    nb = len(blocks)
    if nb == 0:
        return counts.sum()
    unplaced = 0
    cursor = np.random.randint(0, nb)
    for o in range(A.max_order - 1, -1, -1):
        size = 1 << o
        need = counts[o]
        tries = 0
        while need > 0 and tries < 4 * nb + 8:
            if o >= A.pbo:
                # whole blocks (or runs of them): find an aligned run of allocated blocks
                nblk = size // per
                placed = False
                for k in range(nb):
                    b = blocks[(cursor + k) % nb]
                    base = b << A.pbo
                    if base & (size - 1):
                        continue
                    ok = True
                    for q in range(base, base + size, per):
                        bb = q >> A.pbo
                        if q >= end or A.blk[bb].mt != mt or A.pg[q].kind == PK_FREE or A.blk[bb].free != 0:
                            ok = False
                            break
                    bud = base ^ size
                    if ok and bud >= start and bud < end and A.pg[bud].order == o:
                        ok = False
                    if ok:
                        _release(A, L, z, base, o)
                        need -= 1
                        cursor = (cursor + k + 1) % nb
                        placed = True
                        break
                if not placed:
                    break
                continue
            b = blocks[cursor % nb]
            cursor += 1
            tries += 1
            base = b << A.pbo
            slots = per // size
            s0 = np.random.randint(0, slots)
            for k in range(slots):
                p = base + ((s0 + k) % slots) * size
                free_here = False
                for q in range(p, p + size):
                    if A.pg[q].kind == PK_FREE or A.pg[q].kind == PK_RESERVED or A.pg[q].pool < 0:
                        free_here = True
                        break
                if free_here:
                    continue
                bud = p ^ size
                if A.pg[bud].order == o:
                    continue
                _release(A, L, z, p, o)
                need -= 1
                tries = 0
                break
        unplaced += need
    return unplaced


@njit(cache=True)
def _release(A, L, z, p, o):
    """Take the pages p..p+2^o out of their pools and free them as one buddy (no merge: the
    caller made sure the buddy is not free at this order)."""
    n = 1 << o
    for q in range(p, p + n):
        if A.pg[q].pool >= 0:
            pool_remove_at(A, L, A.pg[q].pool, A.pg[q].pos)
        if A.pg[q].kind == PK_MOVABLE or A.pg[q].kind == PK_ANON:
            A.blk[q >> A.pbo].movable -= 1
        A.pg[q].kind = PK_FREE
        A.blk[q >> A.pbo].free += 1
    add_free(A, z, p, o)


def from_snapshot(pagetypeinfo, zoneinfo, seed: int = 0, pinned_per_block: int = 0,
                  meminfo: dict | None = None) -> State:
    """A page-level state that shows exactly the observed free counts per zone x migratetype x
    order and pageblocks per type: blocks are labelled by the observed counts, filled (movable
    blocks with page cache, others with static kernel memory), then the observed free buddies
    are carved out of blocks of their own type. Buddies that cannot be placed are reported in
    ``State.placement_unplaced``. The page size comes from the snapshot's ``meminfo`` with
    the zones' free counts (4 KiB without one)."""
    from parsers.bundle import page_size, pageblock_order
    psize = page_size(meminfo, zoneinfo)
    pbo = pageblock_order(psize, pagetypeinfo)
    orders = pagetypeinfo.orders
    zmap = {(z.node, z.zone): z for z in zoneinfo if z.populated}
    keys = []
    for r in pagetypeinfo.free:
        if (r.node, r.zone) not in keys and (r.node, r.zone) in zmap:
            keys.append((r.node, r.zone))
    specs = []
    for node, zone in keys:
        z = zmap[(node, zone)]
        boost = z.boost or 0
        specs.append(ZoneSpec(node, {"DMA": ZONE_DMA, "DMA32": ZONE_DMA32}.get(zone, ZONE_NORMAL),
                              z.present or z.managed, z.managed,
                              ((z.min or 0) - boost, (z.low or 0) - boost, (z.high or 0) - boost)))
    spec = HostSpec(specs, pageblock_order=pbo, max_order=orders, name="observed", page_size=psize)
    st = State(spec)
    names = {"Unmovable": UNMOVABLE, "Movable": MOVABLE, "Reclaimable": RECLAIMABLE,
             "HighAtomic": HIGHATOMIC, "Reserve": HIGHATOMIC}
    unplaced = 0
    for zi, (node, zone) in enumerate(keys):
        blocks = pagetypeinfo.blocks.get((node, zone), {})
        counts = {names[t]: c for t, c in blocks.items() if t in names and c}
        # label blocks: unmovable first (after reserved ones), then reclaimable, highatomic, movable
        b0, b1 = int(st.zs[zi, Z_START]) >> pbo, int(st.zs[zi, Z_END]) >> pbo
        order_types = [UNMOVABLE, RECLAIMABLE, HIGHATOMIC]
        labels = []
        for t in order_types:
            labels += [t] * counts.get(t, 0)
        res_blocks = [b for b in range(b0, b1) if st.pkind[b << pbo] == PK_RESERVED]
        n_unmov = counts.get(UNMOVABLE, 0)
        labels = labels[len(res_blocks):] if n_unmov >= len(res_blocks) else labels
        free_blocks = [b for b in range(b0, b1) if b not in set(res_blocks)]
        for b, t in zip(free_blocks, labels):
            st.bmt[b] = t
        for b in free_blocks[len(labels):]:
            st.bmt[b] = MOVABLE
        st.fragment(seed, 0.0, 0.0, 0.0, pinned_per_block=pinned_per_block,
                    zones=(st.spec.zones[zi].type,), keep_labels=True)
        for r in pagetypeinfo.free:
            if (r.node, r.zone) != (node, zone) or r.type not in names:
                continue
            c = np.array(r.counts, dtype=np.int64)
            unplaced += int(_place_free(st.A, st.L, zi, names[r.type], c, seed + zi))
    st.placement_unplaced = unplaced
    return st
