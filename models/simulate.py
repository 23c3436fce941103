"""Run a scenario under a policy: build the state, run the compiled loop, collect results."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from models.engine import (CAUSE_NAMES, C_FB_CLAIM, C_FB_STEAL, NCOUNTERS, NMT, NZF,
                           POLICY_NAMES)
from models.scenarios import Scenario, param_problem
from models.sim import (CA_OWNER, FILL_CAPTURES, FILL_REPORTS, FILL_SNAPS, FILL_TRUTH, NCA,
                        NOB, NREP, NSTATS, NTR, OB_FAILED, R_SLUB, R_SUPP_SLUB, R_SUPP_WARN,
                        R_WARN, REP_A, REP_KIND, TR_CACHE, TR_KIND, TRUTH_PAGE, TRUTH_SLUB,
                        Config, Daemons, Record, Sim, Slub, run)
from models.state import State
from parsers import ratelimit as ratelimits

POLICIES = {n: i for i, n in enumerate(POLICY_NAMES)}
REPORT_CAP = 2_000_000
TRUTH_CAP = 5_000_000
CAPTURE_CAP = 4096
SEED_MAX = 2**32 - 1              # seeds are mixed into int64 (seed * 1_000_003 + slice)
MAX_RUN_BYTES = 1 << 30           # the arrays a run sizes by its length (per second, per snapshot)


@dataclass
class SimResult:
    scenario: Scenario
    policy: str
    seed: int
    state: State
    params: np.ndarray
    seconds: float
    wall_s: float
    ops: int
    reports: np.ndarray          # [t, kind, a, b, c, cache (-1: not a slab)]
    captures_nr: np.ndarray      # nr_free at each printed warn_alloc
    captures_zs: np.ndarray
    snaps_t: np.ndarray
    snaps_nr: np.ndarray
    snaps_zs: np.ndarray
    snaps_cnt: np.ndarray
    snaps_blocks: np.ndarray
    truth: np.ndarray            # [t, kind(0 slub/1 page), order, cause, cache]
    truth_total: int
    fail_sec: np.ndarray
    extra: dict = field(default_factory=dict)

    # -- summaries ---------------------------------------------------------------------------
    def failures_by_cause(self) -> dict:
        tot = self.fail_sec.sum(axis=0)
        return {CAUSE_NAMES[i]: int(tot[i]) for i in range(1, len(CAUSE_NAMES)) if tot[i]}

    def failures_by_cache(self) -> dict:
        out: dict = {}
        t = self.truth[: min(self.truth_total, len(self.truth))]
        for ci, c in enumerate(self.scenario.caches):
            n = int(((t[:, TR_KIND] == TRUTH_SLUB) & (t[:, TR_CACHE] == ci)).sum())
            if n:
                out[c.name] = n
        pages = int((t[:, TR_KIND] == TRUTH_PAGE).sum())
        if pages:
            out["(page allocations)"] = pages
        return out

    def report_counts(self) -> dict:
        k = self.reports[:, REP_KIND]
        supp_slub = int(self.reports[k == R_SUPP_SLUB, REP_A].sum())
        supp_warn = int(self.reports[k == R_SUPP_WARN, REP_A].sum())
        sup = {}
        if supp_slub:
            sup["slab_out_of_memory"] = supp_slub
        if supp_warn:
            sup["warn_alloc"] = supp_warn
        return {"slub_printed": int((k == R_SLUB).sum()), "page_alloc_printed": int((k == R_WARN).sum()),
                "suppressed": sup}

    def summary(self) -> dict:
        st = self.state
        c = st.counters
        return {
            "scenario": self.scenario.name, "policy": self.policy, "seed": self.seed,
            "simulated_s": round(self.seconds, 3),
            "failures": {"total": int(self.fail_sec.sum()), "by_cause": self.failures_by_cause(),
                         "by_cache": self.failures_by_cache()},
            "reports": self.report_counts(),
            "end_state": {"free_mb_by_migratetype": st.free_mb_by_migratetype(),
                          "free_pageblocks": st.free_pageblocks(),
                          "pageblocks_by_migratetype": {
                              n: int(v) for n, v in zip(("Unmovable", "Movable", "Reclaimable",
                                                         "HighAtomic", "CMA", "Isolate"),
                                                        st.block_counts().sum(axis=0)) if v}},
            "fallbacks": {"claim": int(c[C_FB_CLAIM]), "steal": int(c[C_FB_STEAL])},
            "counters": st.counters_dict(),
            "ops": int(self.ops), "wall_s": round(self.wall_s, 3),
            "ops_per_s": round(self.ops / self.wall_s) if self.wall_s > 0 else None,
            "params": {n: float(v) for n, v in zip(_param_names(), self.params)},
        }


def _check_vector(vec: np.ndarray, max_order: int) -> None:
    from models.sim import PARAMS
    if vec.shape != (len(PARAMS),):
        raise ValueError(f"expected {len(PARAMS)} workload parameters, got {vec.shape}")
    for name, v in zip(PARAMS, vec.tolist()):
        why = param_problem(name, v)
        if why:
            raise ValueError(why)
    order = int(vec[PARAMS.index("atomic_high_order")])
    if order >= max_order:
        raise ValueError(f"atomic_high_order={order}: this host's orders go up to {max_order - 1}")


def check_size(sc: Scenario, hours: float, nsnap: int | None = None) -> None:
    """Refuse a run whose length-sized arrays (failures per second, snapshots) would take more
    than ``MAX_RUN_BYTES``, before anything is allocated."""
    seconds = hours * 3600.0
    if nsnap is None:
        nsnap = int(seconds // sc.snap_every_s) + 1 if sc.snap_every_s > 0 else 0
    nz, mo = len(sc.host.zones), sc.host.max_order
    need = 8 * ((seconds + 2) * len(CAUSE_NAMES)
                + max(nsnap, 1) * (nz * mo * NMT + nz * NZF + NCOUNTERS + nz * NMT
                                   + len(sc.caches) + 2))
    if need > MAX_RUN_BYTES:
        raise ValueError(f"a run of {hours:g} hours needs {need / (1 << 30):,.1f} GiB for its "
                         f"per-second and per-snapshot arrays, over the {MAX_RUN_BYTES >> 30} GiB "
                         f"a run may take; simulate fewer hours (the {sc.name} scenario's "
                         f"default is {sc.hours:g})")


def _param_names():
    from models.sim import PARAMS
    return PARAMS


def _slub(sc: Scenario, st: State) -> Slub:
    """The SLUB rows of a scenario (models.sim.Slub). "name#context" rows are the same kernel
    cache allocated from another context: they share the first row's slabs and free objects."""
    ncache = len(sc.caches)
    caches = np.zeros((ncache, NCA), dtype=np.int64)
    names = [c.name for c in sc.caches]
    bases = [n.split("#")[0] for n in names]
    for i, c in enumerate(sc.caches):
        parent = names.index(c.parent) if c.parent in names[:i] else -1
        caches[i] = (c.object_size, c.default_order, c.min_order, c.gfp,
                     (st.spec.page_size << c.default_order) // c.object_size,
                     int(round(c.share * 1000)), parent, bases.index(bases[i]))
    assert (caches[:, CA_OWNER] <= np.arange(ncache)).all()
    slab_cap = max(1, st.npages // 4) if ncache else 1
    return Slub(caches, np.zeros((ncache, NOB), dtype=np.int64),
                np.zeros((ncache, slab_cap), dtype=np.int64),
                np.zeros((ncache, slab_cap), dtype=np.int64), np.zeros(ncache, dtype=np.int64))


def _daemons(st: State) -> Daemons:
    ratelimit = np.array([[-1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]], dtype=np.float64)
    return Daemons(st.W, np.zeros(len(st.spec.zones), dtype=np.int64), ratelimit,
                   np.zeros(1, dtype=np.int64))


def build_state(sc: Scenario, seed: int) -> State:
    st = State(sc.host)
    if sc.start:
        st.fragment(seed=seed * 7919 + 1, **sc.start)
    return st


def simulate(sc: Scenario, policy: str, seed: int = 0, hours: float | None = None,
             params: dict | np.ndarray | None = None, state: State | None = None,
             snap_every_s: float | None = None, progress=None,
             snap_times: np.ndarray | None = None) -> SimResult:
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or \
            not 0 <= seed <= SEED_MAX:
        raise ValueError(f"seed {seed!r}: expected an integer from 0 to {SEED_MAX}")
    h = hours if hours is not None else sc.hours
    if not (isinstance(h, (int, float)) and math.isfinite(h) and h > 0):
        raise ValueError(f"hours {h!r}: expected a finite number above 0")
    seconds = h * 3600.0
    vec = np.array(sc.vector(), dtype=np.float64)
    if isinstance(params, dict):
        from models.sim import P_IDX
        for k, v in params.items():
            why = param_problem(k, v)
            if why:
                raise ValueError(why)
            vec[P_IDX[k]] = float(v)
    elif params is not None:
        vec = np.asarray(params, dtype=np.float64)
    _check_vector(vec, sc.host.max_order)
    spec = sc.host
    nz = len(spec.zones)
    mo = spec.max_order
    snap_every = snap_every_s if snap_every_s is not None else sc.snap_every_s
    nsnap = len(snap_times) if snap_times is not None else \
        (int(seconds // snap_every) + 1 if snap_every > 0 else 0)
    check_size(sc, h, nsnap)
    if snap_times is None:
        snap_times = (np.arange(0.0, seconds + 1e-9, snap_every) if snap_every > 0
                      else np.zeros(0))
    snap_times = np.asarray(snap_times, dtype=np.float64)
    nsnap = max(len(snap_times), 1)
    st = state if state is not None else build_state(sc, seed)
    ncache = len(sc.caches)
    rec = Record(snap_times, np.zeros((nsnap, nz, mo, NMT), dtype=np.int64),
                 np.zeros((nsnap, nz, NZF), dtype=np.int64),
                 np.zeros((nsnap, NCOUNTERS), dtype=np.int64),
                 np.zeros((nsnap, nz, NMT), dtype=np.int64),
                 np.zeros((nsnap, max(ncache, 1)), dtype=np.int64),
                 np.zeros((REPORT_CAP, NREP), dtype=np.float64),
                 np.zeros((CAPTURE_CAP, nz, mo, NMT), dtype=np.int64),
                 np.zeros((CAPTURE_CAP, nz, NZF), dtype=np.int64),
                 np.zeros((TRUTH_CAP, NTR), dtype=np.float64),
                 np.zeros((int(seconds) + 2, len(CAUSE_NAMES)), dtype=np.int64),
                 np.zeros(4, dtype=np.int64))
    S = Sim(st.A, st.L, _slub(sc, st), _daemons(st), rec,
            np.zeros(NSTATS, dtype=np.int64), np.zeros(256, dtype=np.int64), vec,
            Config(POLICIES[policy], float(sc.dt), st.nnodes, *ratelimits.WARN_ALLOC))
    t0 = time.perf_counter()
    # Run in slices so a progress callback can report; the loop state carries over. The
    # slicing does not depend on the callback, so results are the same with or without it.
    slices = max(1, min(60, int(seconds // 120)))
    done = 0.0
    ops = 0
    for i in range(slices):
        length = seconds / slices
        ops += run(S, seed * 1_000_003 + i, done, length)
        done += length
        if progress:
            progress(done, seconds)
    wall = time.perf_counter() - t0
    k, nrep, ncap, ntr = (int(rec.fill[f]) for f in (FILL_SNAPS, FILL_REPORTS, FILL_CAPTURES,
                                                     FILL_TRUTH))
    res = SimResult(sc, policy, seed, st, vec, seconds, wall, ops, rec.rep[:nrep].copy(),
                    rec.caps[:ncap].copy(), rec.cap_zs[:ncap].copy(), snap_times[:k].copy(),
                    rec.snaps_nr[:k].copy(), rec.snaps_zs[:k].copy(), rec.snaps_cnt[:k].copy(),
                    rec.snaps_blocks[:k].copy(), rec.truth[:min(ntr, TRUTH_CAP)].copy(), ntr,
                    rec.fail_sec[: int(seconds) + 1].copy())
    res.extra["inuse"] = rec.snaps_inuse[:k, :ncache].copy()  # objects in use, per cache
    res.extra["slabs_end"] = [int(x) for x in S.slub.nslabs]
    res.extra["objects_failed"] = [int(x) for x in S.slub.objs[:, OB_FAILED]]
    return res
