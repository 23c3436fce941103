"""Model benchmark: allocator operations per second (order-0 alloc/free through the full
__alloc_pages path, on one core) and peak RSS for a 64 GiB host; then seed-skbuff, 2 simulated
hours per policy. Prints figures with the previous ones beside them; asserts nothing.

``--quick`` runs the allocator part only (and a 10-minute seed-skbuff slice per policy)."""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models import engine as E  # noqa: E402
from models.engine import jit  # noqa: E402
from models.pages import free_block  # noqa: E402
from models.sim import NSTATS, alloc_pages  # noqa: E402
from models.state import HostSpec, State  # noqa: E402

# Figures before the allocator was rebuilt (docs/benchmarks.md, three runs; the same code on
# this machine on the day of the change: 1.20 M, 0.79 M ops/s and 47-50 s).
# Then, 2026-12-02, before the fast path's calls were inlined (engine.jit_inline_into), same
# sittings as the code after: 3.76-5.35 M, 2.12-2.39 M and 14.9-18.9 s.
PREVIOUS = {"movable": "1.55-1.7 M ops/s; 3.76-5.35 M before inlining",
            "unmovable": "0.88-0.9 M ops/s; 2.12-2.39 M before inlining",
            "seed-skbuff": "42-47 s (0.64-0.72 M ops/s in the loop); 14.9-18.9 s before inlining"}


@jit
def churn(A, L, W, n, seed, policy, gfp, held, stats):
    """n allocator operations: allocate order-0 pages into a ring of `held` slots, freeing the
    slot's old page first (steady state, random frees as the ring wraps out of order)."""
    np.random.seed(seed)
    m = held.shape[0]
    ops = 0
    fails = 0
    for i in range(n // 2):
        j = np.random.randint(0, m)
        if held[j] >= 0:
            free_block(A, held[j], 0)
            held[j] = -1
            ops += 1
        pfn, cause = alloc_pages(A, L, W, 0, gfp, policy, 0, E.PK_UNMOVABLE, stats)
        ops += 1
        if pfn >= 0:
            held[j] = pfn
        else:
            fails += 1
    return ops, fails


def allocator() -> None:
    t = time.perf_counter()
    st = State(HostSpec.x86_64(64))
    st.fragment(1, unmovable_frac=0.05, reclaimable_frac=0.02, free_frac=0.235,
                pinned_per_block=1, pinned_frac=0.985)
    build = time.perf_counter() - t
    held = np.full(1 << 20, -1, dtype=np.int64)
    stats = np.zeros(NSTATS, dtype=np.int64)
    churn(st.A, st.L, st.W, 1000, 0, E.LEGACY, E.GFP_HIGHUSER_MOVABLE, held, stats)  # compile
    for key, name, gfp, pol in (
            ("movable", "movable order-0 (GFP_HIGHUSER_MOVABLE, legacy)", E.GFP_HIGHUSER_MOVABLE,
             E.LEGACY),
            ("unmovable", "unmovable order-0 (GFP_KERNEL, defrag)", E.GFP_KERNEL, E.DEFRAG)):
        n = 20_000_000
        t = time.perf_counter()
        ops, fails = churn(st.A, st.L, st.W, n, 1, pol, gfp, held, stats)
        dt = time.perf_counter() - t
        print(f"model  {name}: {ops / dt / 1e6:.2f} M ops/s ({ops:,} ops in {dt:.2f} s, "
              f"{fails} failed; previously {PREVIOUS[key]})")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"model  64 GiB host ({st.npages:,} pages): built and fragmented in {build:.1f} s, "
          f"peak RSS {rss:.0f} MiB")


def seed_skbuff(hours: float | None) -> None:
    from models import scenarios
    from models.simulate import simulate
    sc = scenarios.get("seed-skbuff")
    simulate(sc, "defrag", seed=1, hours=0.001)  # compile
    for pol in ("defrag", "defrag-fixed", "legacy"):
        t = time.perf_counter()
        r = simulate(sc, pol, seed=1, hours=hours)
        s = r.summary()
        what = f"{r.seconds / 3600:g} h"
        print(f"model  seed-skbuff {pol:12s} {what} simulated in {time.perf_counter() - t:5.1f} s "
              f"(previously {PREVIOUS['seed-skbuff']} for 2 h): "
              f"{s['failures']['total']:,} failures {s['failures']['by_cause']}, "
              f"free {s['end_state']['free_mb_by_migratetype']}, "
              f"fallbacks {s['fallbacks']}, {s['ops_per_s']:,} ops/s in the loop")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"model  peak RSS over the benchmark {rss:.0f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    allocator()
    seed_skbuff(1 / 6 if a.quick else None)


if __name__ == "__main__":
    main()
