"""The simulator acts on the engine's decisions and makes none of its own.

Over many random page-level states and every request class the scenarios make (all three
policies, the low and min watermarks, ALLOC_NO_WATERMARKS, with and without NOFRAGMENT), the
page the simulator's ``get_page_from_freelist`` takes is the one ``models.engine.plan``
predicted on the state before (zone, rmqueue mode, source order and type, refused claims), and
a request that fails in the simulator's slowpath gets the cause triage's ``classify_failure``
gives on the state the failure met. A simulator that re-decided anything (a zone walk of its
own, another list, a claim the engine refused) would fail here.
"""
import numpy as np
import pytest

from models import engine as E
from models.pages import free_block, get_page_from_freelist
from models import sim as S
from models.sim import NSTATS, ST_NOPAGE_FLAGS, alloc_pages
from models.state import HostSpec, State, ZoneSpec

ZONE = 1 << 16  # 256 MiB: big enough for a highatomic reserve (1 % >= one pageblock)
# Two nodes; node 0 has DMA32 and Normal (alloc_flags_nofragment's case), node 1 only Normal
# (a remote zone on node 0's Normal zonelist).
SPEC = HostSpec([ZoneSpec(0, E.ZONE_DMA32, ZONE, ZONE - 512), ZoneSpec(0, E.ZONE_NORMAL, ZONE, ZONE),
                 ZoneSpec(1, E.ZONE_NORMAL, ZONE, ZONE)])
PBO = SPEC.pageblock_order
SLUB_FIRST = E.GFP_NOWARN | E.GFP_NORETRY | E.GFP_COMP
QUIET = E.GFP_NOWARN | E.GFP_NOMEMALLOC | E.GFP_COMP
# Every GFP class the simulation allocates with, with the orders it uses: the page workloads
# (models.sim.WORKLOADS), SLUB's allocate_slab attempts for atomic and process-context rows,
# and the data-buffer rows calibration adds.
WORKLOAD_NAMES = {S.WL_PAGECACHE: "page cache", S.WL_ANON: "anon", S.WL_KERNEL: "kernel pages",
                  S.WL_RECLAIMABLE: "reclaimable", S.WL_ATOMIC_PAGES: "atomic pages",
                  S.WL_ATOMIC_BUFFERS: "atomic buffers", S.WL_THP: "THP"}
REQUESTS = {WORKLOAD_NAMES[w]: (int(S.WORKLOADS[w, S.WL_GFP]),
                                {S.ORDER_PARAM: (1, 2, 3), S.ORDER_PAGEBLOCK: (PBO,)}.get(
                                    int(S.WORKLOADS[w, S.WL_ORDER]),
                                    (int(S.WORKLOADS[w, S.WL_ORDER]),)))
            for w in range(len(S.WORKLOADS))}
REQUESTS.update({
    "GFP_NOWAIT": (E.GFP_NOWAIT, (0,)),
    "slab, atomic, default order": (E.GFP_ATOMIC | SLUB_FIRST, (1, 3)),
    "slab, atomic, min order": (E.GFP_ATOMIC | E.GFP_COMP, (0,)),
    "slab, kernel, default order": (((E.GFP_KERNEL | SLUB_FIRST | E.GFP_NOMEMALLOC)
                                     & ~(E.GFP_DIRECT_RECLAIM | E.GFP_KSWAPD_RECLAIM)), (1, 3)),
    "slab, kernel, stall probe": ((E.GFP_KERNEL & ~E.GFP_DIRECT_RECLAIM) | E.GFP_NOWARN
                                  | E.GFP_COMP, (0,)),
    "slab, kernel, min order": (E.GFP_KERNEL | E.GFP_COMP, (0,)),
    "data buffer, atomic": (E.GFP_ATOMIC | QUIET, (0, 3)),
    "data buffer, kernel": (E.GFP_KERNEL | QUIET, (0, 3)),
})
POLICIES = (E.LEGACY, E.DEFRAG, E.DEFRAG_FIXED)


def flag_variants(st, gfp, order, node, policy):
    fast = int(E.fast_path_flags(st.A, gfp, node, policy))     # low watermark
    slow = int(E.gfp_to_alloc_flags(gfp, order, policy))       # min watermark, reserves
    return {"fast path": fast, "slowpath": slow,
            "slowpath without NOFRAGMENT": slow & ~E.ALLOC_NOFRAGMENT,
            "ALLOC_NO_WATERMARKS": slow | E.ALLOC_NO_WATERMARKS}


def random_state(seed):
    """A fragmented host after random churn by every request class and policy, with random
    watermarks (some zones below them) and boosts. Odd seeds are finely fragmented (free
    memory in small holes, every block pinned, low watermarks), even ones anything."""
    rng = np.random.default_rng(seed)
    st = State(SPEC)
    fine = seed % 2 == 1
    st.fragment(seed, unmovable_frac=rng.uniform(0, 0.2), reclaimable_frac=rng.uniform(0, 0.1),
                free_frac=rng.uniform(0.01, 0.08) if fine else rng.uniform(0.02, 0.6),
                pinned_per_block=1 if fine else int(rng.integers(0, 3)),
                pinned_frac=1.0 if fine else rng.uniform(0.3, 1.0),
                cluster=0.0 if fine else rng.uniform(0, 0.5))
    stats = np.zeros(NSTATS, dtype=np.int64)
    held = []
    classes = list(REQUESTS.values())
    for _ in range(400):
        if held and rng.random() < 0.4:
            pfn, order = held.pop(int(rng.integers(len(held))))
            free_block(st.A, pfn, order)
            continue
        gfp, orders = classes[int(rng.integers(len(classes)))]
        order = int(rng.choice(orders))
        pfn, _ = alloc_pages(st.A, st.L, st.W, order, gfp, int(rng.integers(3)),
                             int(rng.integers(2)), E.PK_UNMOVABLE, stats)
        if pfn >= 0:
            held.append((pfn, order))
    for z in range(len(SPEC.zones)):
        mn = int(st.zs[z, E.Z_FREE] * (rng.uniform(0.02, 0.5) if fine else rng.uniform(0.2, 2.0))) + 1
        st.zs[z, E.Z_WMIN], st.zs[z, E.Z_WLOW], st.zs[z, E.Z_WHIGH] = mn, mn * 5 // 4, mn * 3 // 2
        st.zs[z, E.Z_BOOST] = int(rng.integers(0, 2)) * int(rng.integers(0, mn))
    assert st.check() == []
    return st


class Seen:
    def __init__(self):
        self.modes, self.refused = set(), 0


def check_served_as_planned(st, order, gfp, flags, node, policy, seen, what):
    """Plan on the state, let the simulator serve the request, compare."""
    A = st.A
    z, mode, so, smt, f, refused, _ = E.plan(A, order, gfp, flags, node, policy)
    before = {"nr_free": A.nr_free.copy(), "counters": A.counters.copy(),
              "free": A.zs[:, E.Z_FREE].copy(),
              "head": int(A.heads[z, so, smt]) if z >= 0 else -1}
    if z >= 0:
        head_block = before["head"] >> PBO
        before["label"] = int(A.blk["mt"][head_block])
    if refused == 0:
        # triage's entry point on the same counts (no page detail) sees the same plan
        zl = np.zeros(len(SPEC.zones), dtype=np.int64)
        nzl = E.zonelist(st.zs, E.gfp_zone(gfp), node, zl)
        tri = E.plan_request(st.zs, st.nr_free, st.lowmem, order, gfp, flags, node, PBO,
                             policy, zl, nzl)
        assert tri[:4] == (z, mode, so, smt), what
    mt = E.gfp_migratetype(gfp)
    pfn, zz = get_page_from_freelist(A, order, gfp, flags, node, policy, E.PK_UNMOVABLE)
    seen.modes.add(int(mode))
    seen.refused += int(refused)
    assert zz == z, (what, "zone")
    d = A.counters - before["counters"]
    if z < 0:
        assert pfn == -1 and np.array_equal(A.nr_free, before["nr_free"]), what
        assert not d.any(), what
        return None
    per = 1 << PBO
    assert st.zs[z, E.Z_START] <= pfn < st.zs[z, E.Z_END], what
    assert pfn & ((1 << order) - 1) == 0, what
    assert (st.pkind[pfn:pfn + (1 << order)] == E.PK_UNMOVABLE).all(), what
    assert A.zs[z, E.Z_FREE] == before["free"][z] - (1 << order), what
    if mode == E.MODE_CLAIM:
        claimed = range(head_block, head_block + (1 << max(so - PBO, 0)))
        assert all(A.blk["mt"][b] in (mt, E.HIGHATOMIC) for b in claimed), what
        assert pfn >> PBO in claimed, what
    else:
        assert pfn == before["head"], (what, E.MT_NAMES[smt], so)
        if mode == E.MODE_STEAL:  # a steal leaves the block's label alone
            assert A.blk["mt"][head_block] in (before["label"], E.HIGHATOMIC), what
    assert d[E.C_FB_CLAIM] == (mode == E.MODE_CLAIM), what
    assert d[E.C_FB_STEAL] == (mode == E.MODE_STEAL), what
    assert d[E.C_FB_HIGHATOMIC] == (mode == E.MODE_HIGHATOMIC and
                                    not flags & E.ALLOC_HIGHATOMIC), what
    boosts = refused + (mode == E.MODE_CLAIM and so < PBO)  # try_to_claim_block's, below a block
    assert d[E.C_WMARK_BOOST] == boosts, what
    assert d[E.C_HA_RESERVE] <= (1 if f & E.ALLOC_HIGHATOMIC else 0), what
    assert d[E.C_PGALLOC] == 1 << order, what
    return pfn


SEEDS = range(6)


def test_simulator_serves_what_the_engine_plans():
    seen = Seen()
    for seed in SEEDS:
        st = random_state(seed)
        rng = np.random.default_rng(1000 + seed)
        held = []
        for name, (gfp, orders) in REQUESTS.items():
            for policy in POLICIES:
                node = int(rng.integers(2))
                order = int(rng.choice(orders))
                for variant, flags in flag_variants(st, gfp, order, node, policy).items():
                    what = (seed, name, E.POLICY_NAMES[policy], variant, order, node)
                    pfn = check_served_as_planned(st, order, gfp, flags, node, policy, seen,
                                                  what)
                    if pfn is not None:
                        held.append((pfn, order))
                    if held and rng.random() < 0.3:  # keep the state moving
                        free_block(st.A, *held.pop(int(rng.integers(len(held)))))
        assert st.check() == [], seed
    # the random states reached every rmqueue mode and refused claims
    assert seen.modes == {E.MODE_NONE, E.MODE_NORMAL, E.MODE_CLAIM, E.MODE_STEAL,
                          E.MODE_HIGHATOMIC}
    assert seen.refused > 0


def test_a_failure_has_the_cause_triage_finds_on_the_state_it_met():
    stats = np.zeros(NSTATS, dtype=np.int64)
    causes = set()
    for seed in SEEDS:
        st = random_state(100 + seed)
        rng = np.random.default_rng(2000 + seed)
        for name, (gfp, orders) in REQUESTS.items():
            for policy in POLICIES:
                node = int(rng.integers(2))
                order = int(max(orders))
                for attempt in range(40):  # until the supply runs out
                    pfn, cause = alloc_pages(st.A, st.L, st.W, order, gfp, policy, node,
                                             E.PK_UNMOVABLE, stats)
                    if pfn < 0:
                        break
                if pfn >= 0:
                    continue
                flags = int(stats[ST_NOPAGE_FLAGS])
                zl = np.zeros(len(SPEC.zones), dtype=np.int64)
                nzl = E.zonelist(st.zs, E.gfp_zone(gfp), node, zl)
                assert E.classify_failure(st.zs, st.nr_free, st.lowmem, order, gfp, flags,
                                          node, PBO, zl, nzl) == cause, (seed, name, policy)
                causes.add(int(cause))
        assert st.check() == [], seed
    assert causes == {E.CAUSE_BAILOUT, E.CAUSE_LOW, E.CAUSE_FRAG, E.CAUSE_SPEC}
