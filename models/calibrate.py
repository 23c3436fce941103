"""Fit the model's workload to a host bundle, and replay the fit under another policy.

Observations (from the bundle): the failure count (the corroborated one, ICMP OutErrors, when the
snapshots carry it; else printed + suppressed), the printed SLUB reports, free memory by
migratetype at every snapshot (pagetypeinfo), objects in use of the failing cache (slabinfo),
and when the first failure came.

The model starts from the last snapshot before the first failure (the first snapshot if none
precedes it), rebuilt page by page with exactly its free counts (``state.from_snapshot``), and
runs to the last snapshot under the host's policy. The loss is a weighted sum of squared
errors on those summaries (log scale for counts, relative for memory), averaged over seeds;
scipy's Nelder-Mead moves the parameters (in log space, within bounds) until the time budget.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

from analyzer.attribution import host_facts
from models.engine import C_NET_DEMAND, C_NET_FAILED, C_NET_INUSE, NMT, POLICY_NAMES
from models.scenarios import Cache, Scenario, _p
from models.simulate import simulate
from models.state import from_snapshot

GFP_KERNEL = 0xcc0
LINEAR = ("kernel_share", "data_share", "net_start_s", "net_stop_s")  # fitted as they are, not in log space
TYPES = ("Unmovable", "Movable", "Reclaimable")
BOUNDS = {"net_rate": (100.0, 500_000.0), "net_obj_life_s": (0.01, 600.0),
          "net_start_s": (0.0, 1e6), "net_stop_s": (0.0, 1e6), "kernel_share": (0.0, 0.95),
          "data_share": (0.0, 1.0),
          "pagecache_rate": (1.0, 1e6), "anon_rate": (1.0, 1e6),
          "kcompactd_rate": (0.0, 1e6), "atomic_high_rate": (0.1, 1e5)}


@dataclass
class Observations:
    start_snapshot: str
    start_index: int
    times: np.ndarray            # seconds after the start snapshot, one per later snapshot
    free_mb: np.ndarray          # [snapshot, type] free MiB (Unmovable, Movable, Reclaimable)
    inuse: np.ndarray | None     # objects of the failing cache in use at each snapshot
    demand: np.ndarray | None    # cumulative send attempts since the start (ICMP OutMsgs)
    failures: float
    failures_source: str
    printed: int
    suppressed: int
    first_failure_s: float | None
    window_s: float
    caches: list
    policy: str
    notes: list = field(default_factory=list)


def _free_mb(snap) -> np.ndarray:
    out = np.zeros(3)
    for r in snap.pagetypeinfo.free:
        if r.type in TYPES:
            out[TYPES.index(r.type)] += sum(c << o for o, c in enumerate(r.counts)) * 4 / 1024
    return out


def observe(bundle) -> Observations:
    snaps = [s for s in bundle.snapshots if s.pagetypeinfo is not None and s.zoneinfo]
    if len(snaps) < 2:
        raise ValueError(f"{bundle.path}: calibration needs at least two pagetypeinfo + zoneinfo "
                         f"snapshots")
    log = bundle.log
    slub = [e for e in log.events if e["kind"] == "slub"]
    times = [bundle.event_wall_time(e) for e in log.events]
    times = [t for t in times if t is not None]
    first = min(times) if times else None
    start = 0
    if first is not None:
        for i, s in enumerate(snaps):
            if s.time <= first:
                start = i
    # Prefer a start before the load came (send counters still at their first value): the
    # model then sees the onset, not just the tail of it.
    if snaps[0].net_snmp and "Icmp" in snaps[0].net_snmp:
        base = snaps[0].net_snmp["Icmp"].get("OutMsgs", 0)
        quiet = [i for i, s in enumerate(snaps[: start + 1])
                 if s.net_snmp and s.net_snmp.get("Icmp", {}).get("OutMsgs", 0) == base]
        if quiet:
            start = quiet[-1]
    s0 = snaps[start]
    later = snaps[start + 1:] if start + 1 < len(snaps) else snaps[start:]
    rel = np.array([(s.time - s0.time).total_seconds() for s in later])
    free = np.array([_free_mb(s) for s in later])
    notes = []
    # The head cache: skbuff_head_cache when it failed, else the cache that failed most.
    freq: dict = {}
    for e in slub:
        freq[e["cache"]] = freq.get(e["cache"], 0) + 1
    order = sorted(freq, key=lambda c: (c != "skbuff_head_cache", -freq[c]))
    slub = sorted(slub, key=lambda e: order.index(e["cache"]))
    cache_name = order[0] if order else None
    inuse = None
    if cache_name and all(s.slabinfo and cache_name in s.slabinfo for s in later):
        inuse = np.array([s.slabinfo[cache_name]["active_objs"] for s in later], dtype=float)
    demand = None
    if s0.net_snmp and all(s.net_snmp and "Icmp" in s.net_snmp for s in later):
        base = s0.net_snmp.get("Icmp", {}).get("OutMsgs", 0)
        demand = np.array([s.net_snmp["Icmp"]["OutMsgs"] - base for s in later], dtype=float)
    fails, src = None, None
    if s0.net_snmp and later[-1].net_snmp and "Icmp" in later[-1].net_snmp:
        fails = float(max(s.net_snmp["Icmp"]["OutErrors"] for s in later if s.net_snmp)
                      - s0.net_snmp["Icmp"]["OutErrors"])
        src = "Icmp OutErrors (corroborated)"
    if not fails:
        summ = log.summary()
        fails = float(summ["slub_failures_estimated"] or summ["page_alloc_failures_estimated"])
        src = "printed + suppressed reports (a lower bound)"
        notes.append("no corroborating counter: fitted to the log's lower bound")
    caches = []
    seen = set()
    for e in slub:
        if e["cache"] in seen:
            continue
        seen.add(e["cache"])
        caches.append(Cache(e["cache"], e["buffer_size"] or 256, e["default_order"] or 0,
                            e["min_order"] or 0, gfp=0x820))
    facts = host_facts(bundle)
    ff = (first - s0.time).total_seconds() if first is not None else None
    sup = log.summary()["suppressed"].get("slab_out_of_memory", 0)
    return Observations(s0.name, bundle.snapshots.index(s0), rel, free, inuse, demand, fails, src,
                        len(slub), sup, ff, float(rel[-1]) if len(rel) else 0.0, caches,
                        facts.policy_name, notes)


def scenario_for(bundle, obs: Observations, params: dict, spec) -> Scenario:
    caches = list(obs.caches) or [Cache("skbuff_head_cache", 256, 0, 0)]
    share = params.get("kernel_share", 0.0)
    # net_rate is the atomic objects' rate (what the send counters count); the process-context
    # share and the data buffers come on top of it
    caches = [Cache(caches[0].name, caches[0].object_size, caches[0].default_order,
                    caches[0].min_order, 0x820, 1.0)]
    if share > 0:
        # the same objects allocated in process context (GFP_KERNEL): the slowpath's last
        # retry drops NOFRAGMENT for them, so they convert blocks the atomic ones then use
        caches.append(Cache(caches[0].name + "#kernel", caches[0].object_size,
                            caches[0].default_order, caches[0].min_order, GFP_KERNEL, share))
    data = params.get("data_share", 0.0)
    if data > 0:
        # the data buffer each network object carries (1400-byte payloads: kmalloc-2k, order-3
        # slabs), allocated in the same atomic context as the head
        caches.append(Cache("kmalloc-2k", 2048, 3, 0, 0x820, data))
    p = _p(kswapd_rate=0.0, kcompactd_rate=0.0)
    p.update({k: v for k, v in params.items() if k not in ("kernel_share", "data_share")})
    return Scenario("calibrated", f"fitted to {bundle.host}", spec, p, caches, {},
                    hours=(obs.window_s + 0.05) / 3600, dt=0.005 if obs.window_s < 600 else 0.01,
                    snap_every_s=0.0, kernel_release={})


class Fitter:
    def __init__(self, bundle, names: list[str], fixed: dict | None = None, seeds=(1, 2)):
        self.bundle = bundle
        self.obs = observe(bundle)
        self.names = names
        self.fixed = dict(fixed or {})
        self.seeds = seeds
        snap = bundle.snapshots[self.obs.start_index]
        self.base = from_snapshot(snap.pagetypeinfo, snap.zoneinfo)
        self.evals = 0

    def params(self, x) -> dict:
        p = dict(self.fixed)
        for n, v in zip(self.names, x):
            lo, hi = BOUNDS[n]
            if n in LINEAR:
                p[n] = float(min(max(v, lo), hi))
            else:
                p[n] = float(min(max(math.exp(v), lo), hi))
        return p

    def encode(self, p: dict) -> np.ndarray:
        return np.array([p[n] if n in LINEAR else math.log(p[n]) for n in self.names])

    def run(self, params: dict, seed: int, policy: str | None = None):
        st = _copy_state(self.base)
        sc = scenario_for(self.bundle, self.obs, params, self.base.spec)
        return simulate(sc, policy or self.obs.policy, seed=seed, params=sc.params, state=st,
                        snap_times=self.obs.times)

    def observables(self, res) -> dict:
        k = len(res.snaps_t)
        free = np.zeros((k, 3))
        for i in range(k):
            pages = (res.snaps_nr[i] * (1 << np.arange(res.snaps_nr.shape[2]))[None, :, None]).sum(axis=(0, 1))
            free[i] = pages[:3] * 4 / 1024
        fails = float(res.snaps_cnt[-1][C_NET_FAILED]) if k else float(res.fail_sec.sum())
        inuse = res.snaps_cnt[:, C_NET_INUSE].astype(float) if k else None
        demand = res.snaps_cnt[:, C_NET_DEMAND].astype(float) if k else None
        rc = res.report_counts()
        first = None
        t = res.truth
        if len(t):
            first = float(t[:, 0].min())
        return {"failures": fails, "free_mb": free, "inuse": inuse, "demand": demand,
                "printed": rc["slub_printed"],
                "suppressed": rc["suppressed"].get("slab_out_of_memory", 0), "first": first}

    def loss_of(self, sims: list[dict]) -> float:
        o = self.obs
        f = np.mean([s["failures"] for s in sims])
        loss = 4.0 * (math.log1p(f) - math.log1p(o.failures)) ** 2
        fm = np.mean([s["free_mb"] for s in sims], axis=0)
        if fm.shape == o.free_mb.shape:
            loss += float(np.mean(((fm - o.free_mb) / (o.free_mb + 50.0)) ** 2))
        if o.inuse is not None:
            iu = np.mean([s["inuse"] for s in sims], axis=0)
            if iu is not None and iu.shape == o.inuse.shape:
                loss += float(np.mean((np.log1p(iu) - np.log1p(o.inuse)) ** 2))
        if o.demand is not None:
            dm = np.mean([s["demand"] for s in sims], axis=0)
            if dm is not None and dm.shape == o.demand.shape:
                loss += 2.0 * float(np.mean((np.log1p(dm) - np.log1p(o.demand)) ** 2))
        pr = np.mean([s["printed"] for s in sims])
        loss += 0.5 * (math.log1p(pr) - math.log1p(o.printed)) ** 2
        if o.first_failure_s is not None:
            fs = [s["first"] for s in sims if s["first"] is not None]
            ff = np.mean(fs) if fs else o.window_s
            loss += ((ff - o.first_failure_s) / max(o.window_s, 1.0)) ** 2
        return float(loss)

    def objective(self, x) -> float:
        p = self.params(x)
        self.evals += 1
        sims = [self.observables(self.run(p, s)) for s in self.seeds]
        return self.loss_of(sims)


def _copy_state(st):
    import copy
    new = copy.copy(st)
    for name in ("zs", "nr_free", "heads", "nxt", "prv", "forder", "pkind", "bmt", "bfree", "bmov",
                 "counters", "pool_pfn", "pool_n", "ppos", "ppool", "W"):
        setattr(new, name, getattr(st, name).copy())
    return new


def default_start(obs: Observations, bundle=None) -> tuple[list[str], dict]:
    """Which parameters to fit for what the bundle shows, and where to start: the send rate
    from the load counters, object lifetime from objects in use, the load's window from when
    the counters moved."""
    if not obs.caches:
        return ["atomic_high_rate"], {"atomic_high_rate": 100.0}
    names = ["net_rate", "net_obj_life_s", "kernel_share", "data_share"]
    rate = max(obs.failures / max(obs.window_s, 1.0), 1000.0)
    start_s, stop_s = 0.0, None
    if bundle is not None:
        snaps = bundle.snapshots[obs.start_index:]
        msgs = [(s.time - snaps[0].time).total_seconds() for s in snaps]
        out = [s.net_snmp.get("Icmp", {}).get("OutMsgs") if s.net_snmp else None for s in snaps]
        if all(v is not None for v in out) and out[-1] > out[0]:
            moving = [i for i in range(1, len(out)) if out[i] > out[i - 1]]
            t_on = msgs[moving[0] - 1]
            t_off = msgs[moving[-1]]
            rate = (out[-1] - out[0]) / max(t_off - t_on, 1.0)
            start_s = t_on
            stop_s = t_off
    life = 5.0
    if obs.inuse is not None and obs.inuse.max() > 0:
        life = max(obs.inuse.max() / rate, 0.05)
    p = {"net_rate": rate, "net_obj_life_s": life, "kernel_share": 0.3, "data_share": 0.8}
    if obs.first_failure_s is not None:
        names.append("net_start_s")
        p["net_start_s"] = min(start_s, obs.first_failure_s)
    if stop_s is not None:
        names.append("net_stop_s")
        p["net_stop_s"] = stop_s
    return names, p


def calibrate(bundle, budget_s: float = 60.0, seeds=(1, 2), names=None, start=None,
              fixed: dict | None = None, progress=None) -> dict:
    t0 = time.perf_counter()
    obs = observe(bundle)
    dnames, dstart = default_start(obs, bundle)
    names = names or dnames
    start = {**dstart, **(start or {})}
    fit = Fitter(bundle, names, fixed, seeds)
    x0 = fit.encode(start)
    fit.objective(x0)  # compile and time one evaluation
    t1 = time.perf_counter()
    f0 = fit.objective(x0)
    per_eval = time.perf_counter() - t1
    scale = np.array([0.7 if n not in LINEAR else (0.2 if n.endswith("_share") else
                                                   max(obs.window_s * 0.1, 1.0)) for n in names])
    # A coarse random search first (the loss is flat where nothing fails), then Nelder-Mead
    # from the best point.
    rng = np.random.default_rng(0)
    best = {"x": x0, "f": f0}
    n_search = int(min(48, max(4, budget_s * 0.3 / max(per_eval, 1e-3))))
    for _ in range(n_search):
        x = x0 + rng.uniform(-2.0, 2.0, len(x0)) * scale
        f = fit.objective(x)
        if f < best["f"]:
            best = {"x": x, "f": f}
        if time.perf_counter() - t0 > budget_s * 0.3:
            break

    def cb(xk):
        if progress:
            progress(time.perf_counter() - t0, budget_s)

    # Nelder-Mead, restarted from the best point with a smaller simplex while budget remains
    # (the loss is noisy: one simplex collapses early).
    shrink = 1.0
    while True:
        left = budget_s * 0.7 - (time.perf_counter() - t0)  # the rest: profile and checks
        maxfev = int(left / max(per_eval, 1e-3))
        if maxfev < 2 * len(x0) + 4:
            break
        simplex = [best["x"]] + [best["x"] + np.eye(len(x0))[i] * scale[i] * shrink
                                 for i in range(len(x0))]
        res = optimize.minimize(fit.objective, best["x"], method="Nelder-Mead", callback=cb,
                                options={"maxfev": maxfev, "initial_simplex": np.array(simplex),
                                         "xatol": 1e-3, "fatol": 1e-4})
        if res.fun < best["f"]:
            best = {"x": res.x, "f": float(res.fun)}
        shrink *= 0.5
    params = fit.params(best["x"])
    # Uncertainty: the fitted parameters' effect over more seeds, and a one-dimensional
    # profile (the range within which the loss grows by at most 10 %).
    check_seeds = tuple(range(101, 101 + max(3, len(seeds) + 1)))
    sims = [fit.observables(fit.run(params, s)) for s in check_seeds]
    unc = {}
    base_loss = fit.loss_of(sims)
    for i, n in enumerate(names):
        lo_hi = []
        for direction in (-1, 1):
            step = 0.15 if n not in LINEAR else (
                0.05 if n.endswith("_share") else max(1.0, obs.window_s * 0.03))
            x = best["x"].copy()
            x[i] += direction * step
            f = fit.objective(x)
            lo_hi.append(fit.params(x)[n] if f <= base_loss * 1.1 + 0.01 else None)
        unc[n] = {"value": params[n], "profile_low": lo_hi[0], "profile_high": lo_hi[1],
                  "note": "None = the loss rose by more than 10 % one step away (well determined)"}
    fitrows = _fit_table(obs, sims)
    series = _series(obs, sims)
    wall = time.perf_counter() - t0
    return {"host": bundle.host, "policy": obs.policy, "start_snapshot": obs.start_snapshot,
            "window_s": obs.window_s, "failures_source": obs.failures_source,
            "params": params, "fitted": names, "uncertainty": unc, "loss": best["f"],
            "evaluations": fit.evals, "per_evaluation_s": round(per_eval, 3),
            "fit": fitrows, "notes": obs.notes, "wall_s": round(wall, 2),
            "caches": [c.__dict__ for c in obs.caches], "seeds": list(seeds),
            "series": series}


def _series(obs: Observations, sims: list[dict]) -> dict:
    """Observed vs simulated at each snapshot time, for plots and for the JSON."""
    out = {"time_s": [float(t) for t in obs.times]}
    for j, ty in enumerate(TYPES):
        out[f"free_mib_{ty.lower()}_observed"] = [float(v) for v in obs.free_mb[:, j]]
        out[f"free_mib_{ty.lower()}_simulated"] = [float(np.mean([s["free_mb"][k, j] for s in sims]))
                                                  for k in range(len(obs.times))]
    if obs.inuse is not None:
        out["objects_in_use_observed"] = [float(v) for v in obs.inuse]
        out["objects_in_use_simulated"] = [float(np.mean([s["inuse"][k] for s in sims]))
                                           for k in range(len(obs.times))]
    return out


def plot_fit(result: dict, outdir) -> list:
    """observed vs simulated over time (PNG and SVG). Returns the files written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pathlib import Path
    s = result["series"]
    t = s["time_s"]
    n = 2 if "objects_in_use_observed" in s else 1
    fig, axes = plt.subplots(1, n, figsize=(6 * n, 3.6))
    axes = np.atleast_1d(axes)
    for ty, color in (("unmovable", "#9467bd"), ("movable", "#2ca02c"), ("reclaimable", "#8c564b")):
        axes[0].plot(t, s[f"free_mib_{ty}_observed"], "o-", color=color, label=f"{ty} observed")
        axes[0].plot(t, s[f"free_mib_{ty}_simulated"], "x--", color=color, label=f"{ty} simulated")
    axes[0].set_xlabel(f"seconds after {result['start_snapshot']}")
    axes[0].set_ylabel("free MiB")
    axes[0].set_title("Free memory by migratetype")
    axes[0].legend(fontsize=7)
    if n == 2:
        axes[1].plot(t, s["objects_in_use_observed"], "o-", label="observed (slabinfo)")
        axes[1].plot(t, s["objects_in_use_simulated"], "x--", label="simulated")
        axes[1].set_xlabel(f"seconds after {result['start_snapshot']}")
        axes[1].set_title("Objects in use, failing cache")
        axes[1].legend(fontsize=7)
    f = result["fit"][0]
    fig.suptitle(f"{result['host']}: failures observed {f['observed']:,.0f}, simulated "
                 f"{f['simulated']:,.0f} ({f['rel_error']:+.1%})", fontsize=10)
    fig.tight_layout()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    files = []
    for ext in ("png", "svg"):
        p = outdir / f"calibration_fit.{ext}"
        fig.savefig(p, dpi=110)
        files.append(str(p))
    plt.close(fig)
    return files


def _fit_table(obs: Observations, sims: list[dict]) -> list[dict]:
    rows = []

    def row(name, o, vals):
        m = float(np.mean(vals))
        rows.append({"observable": name, "observed": round(float(o), 2), "simulated": round(m, 2),
                     "simulated_min": round(float(np.min(vals)), 2),
                     "simulated_max": round(float(np.max(vals)), 2),
                     "rel_error": round((m - o) / o, 4) if o else None})
    row(f"failures ({obs.failures_source})", obs.failures, [s["failures"] for s in sims])
    row("SLUB reports printed", obs.printed, [s["printed"] for s in sims])
    row("slab_out_of_memory suppressed", obs.suppressed, [s["suppressed"] for s in sims])
    if obs.first_failure_s is not None:
        row("first failure (s after start)", obs.first_failure_s,
            [s["first"] if s["first"] is not None else obs.window_s for s in sims])
    for k, t in enumerate(obs.times):
        for j, ty in enumerate(TYPES):
            if obs.free_mb[k, j] > 1 or any(s["free_mb"][k, j] > 1 for s in sims):
                row(f"free MiB {ty} at +{t:.0f} s", obs.free_mb[k, j],
                    [s["free_mb"][k, j] for s in sims])
        if obs.inuse is not None:
            row(f"objects in use at +{t:.0f} s", obs.inuse[k], [s["inuse"][k] for s in sims])
        if obs.demand is not None:
            row(f"send attempts by +{t:.0f} s", obs.demand[k], [s["demand"][k] for s in sims])
    return rows


def whatif(bundle, fitted: dict, policy: str, seeds=range(1, 9)) -> dict:
    """Replay the fitted workload under ``policy``; failures with their spread over seeds, and
    the price: fallbacks, pageblocks converted, free pageblocks left."""
    obs = observe(bundle)
    fit = Fitter(bundle, [], fitted)
    out = []
    for s in seeds:
        r = fit.run(dict(fitted), s, policy)
        summ = r.summary()
        out.append({"failures": float(r.snaps_cnt[-1][C_NET_FAILED]) if len(r.snaps_t) else
                    float(r.fail_sec.sum()),
                    "claims": summ["fallbacks"]["claim"], "steals": summ["fallbacks"]["steal"],
                    "blocks_converted": summ["counters"]["claimed_blocks"],
                    "free_pageblocks": summ["end_state"]["free_pageblocks"],
                    "by_cause": summ["failures"]["by_cause"]})
    f = np.array([o["failures"] for o in out])

    def stat(key):
        v = np.array([o[key] for o in out], dtype=float)
        return {"mean": float(v.mean()), "p5": float(np.percentile(v, 5)),
                "p95": float(np.percentile(v, 95))}
    return {"host": bundle.host, "policy": policy, "seeds": len(out),
            "window_s": obs.window_s, "observed_failures": obs.failures,
            "failures": {"mean": float(f.mean()), "p5": float(np.percentile(f, 5)),
                         "p95": float(np.percentile(f, 95))},
            "price": {"claims": stat("claims"), "steals": stat("steals"),
                      "blocks_converted": stat("blocks_converted"),
                      "free_pageblocks_left": stat("free_pageblocks")},
            "runs": out}
