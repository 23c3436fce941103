"""Model benchmark: allocator operations per second (order-0 alloc/free through the full
__alloc_pages path, on one core) and peak RSS for a 64 GiB host; then a scenario run.
Prints figures; asserts nothing."""
from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models import engine as E  # noqa: E402
from models.sim import alloc_pages, free_block  # noqa: E402
from models.state import HostSpec, State  # noqa: E402


@njit(cache=True)
def churn(S, L, W, n, seed, policy, gfp, held):
    """n allocator operations: allocate order-0 pages into a ring of `held` slots, freeing the
    slot's old page first (steady state, random frees as the ring wraps out of order)."""
    np.random.seed(seed)
    zl = np.empty(8, dtype=np.int64)
    stats = np.zeros(4, dtype=np.int64)
    fixed = np.zeros(1, dtype=np.int64)
    m = held.shape[0]
    ops = 0
    fails = 0
    for i in range(n // 2):
        j = np.random.randint(0, m)
        if held[j] >= 0:
            free_block(S, held[j], 0, 9, 11)
            held[j] = -1
            ops += 1
        pfn, cause = alloc_pages(S, L, W, 0, gfp, policy, 0, 9, 11, E.PK_UNMOVABLE, zl, stats,
                                 fixed)
        ops += 1
        if pfn >= 0:
            held[j] = pfn
        else:
            fails += 1
    return ops, fails


def main() -> None:
    t = time.perf_counter()
    st = State(HostSpec.x86_64(64))
    st.fragment(1, unmovable_frac=0.05, reclaimable_frac=0.02, free_frac=0.235,
                pinned_per_block=1, pinned_frac=0.985)
    build = time.perf_counter() - t
    held = np.full(1 << 20, -1, dtype=np.int64)
    churn(st.S, st.L, st.W, 1000, 0, E.LEGACY, E.GFP_HIGHUSER_MOVABLE, held)  # compile
    for name, gfp, pol in (("movable order-0 (GFP_HIGHUSER_MOVABLE, legacy)", E.GFP_HIGHUSER_MOVABLE, E.LEGACY),
                           ("unmovable order-0 (GFP_KERNEL, defrag)", E.GFP_KERNEL, E.DEFRAG)):
        n = 20_000_000
        t = time.perf_counter()
        ops, fails = churn(st.S, st.L, st.W, n, 1, pol, gfp, held)
        dt = time.perf_counter() - t
        print(f"model  {name}: {ops / dt / 1e6:.2f} M ops/s ({ops:,} ops in {dt:.2f} s, "
              f"{fails} failed)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"model  64 GiB host ({st.npages:,} pages): built and fragmented in {build:.1f} s, "
          f"peak RSS {rss:.0f} MiB")
    from models import scenarios
    from models.simulate import simulate
    for pol in ("defrag", "defrag-fixed", "legacy"):
        t = time.perf_counter()
        r = simulate(scenarios.get("seed-skbuff"), pol, seed=1)
        s = r.summary()
        print(f"model  seed-skbuff {pol:12s} 2 h simulated in {time.perf_counter() - t:5.1f} s: "
              f"{s['failures']['total']:,} failures {s['failures']['by_cause']}, "
              f"free {s['end_state']['free_mb_by_migratetype']}, "
              f"fallbacks {s['fallbacks']}, {s['ops_per_s']:,} ops/s in the loop")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"model  peak RSS over the benchmark {rss:.0f} MiB")


if __name__ == "__main__":
    main()
