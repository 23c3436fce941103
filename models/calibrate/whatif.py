"""Replay a fitted workload under another policy or setting.

A setting is the watermark sysctls and the load: ``min_free_kbytes`` and
``watermark_scale_factor`` recompute every zone's watermarks as the kernel does when either is
written (``state.zone_watermarks``); ``watermark_boost_factor`` caps ``boost_watermark``
(0: no boosting) and leaves the watermarks alone, as in the kernel; ``load_scale``
multiplies the workload's rates. A setting is compared with a baseline: the same seeds and
policy with the host's own setting (the watermarks its zoneinfo shows).
"""
from __future__ import annotations

import copy
import math

import numpy as np

from models.calibrate.fitter import Fitter, model_pool
from models.calibrate.observe import observe
from models.engine import C_NET_FAILED, ZONE_NAMES
from models.state import (WATERMARK_BOOST_FACTOR, WATERMARK_SCALE_FACTOR, kernel_min_free_kbytes,
                          zone_watermarks)

KNOBS = ("min_free_kbytes", "watermark_scale_factor", "watermark_boost_factor", "load_scale")
SYSCTLS = {"min_free_kbytes": "vm.min_free_kbytes",
           "watermark_scale_factor": "vm.watermark_scale_factor",
           "watermark_boost_factor": "vm.watermark_boost_factor"}
# What each knob may be: the kernel's sysctl bounds (min_free_kbytes from 128, the floor of the
# kernel's own value; at most half the host's lowmem, checked per host), and a load up to 100x.
KNOB_RANGES = {"min_free_kbytes": (128, 2**31 - 1), "watermark_scale_factor": (1, 3000),
               "watermark_boost_factor": (0, 2**31 - 1), "load_scale": (0.0, 100.0)}
INTEGER_KNOBS = ("min_free_kbytes", "watermark_scale_factor", "watermark_boost_factor")
WMARK_KNOBS = ("min_free_kbytes", "watermark_scale_factor")  # writing these recomputes them
LOAD_RATES = ("net_rate", "atomic_high_rate")  # the fitted workload's arrival rates


def knob_problem(name: str, value) -> str | None:
    """Why ``value`` cannot be knob ``name`` (host-independent bounds), or None."""
    if name not in KNOB_RANGES:
        return f"unknown setting {name}; choose from {', '.join(KNOBS)}"
    lo, hi = KNOB_RANGES[name]
    if name in INTEGER_KNOBS:
        if isinstance(value, float) and not value.is_integer():
            return f"{name} {value:g}: expected an integer"
        if not lo <= value <= hi:
            return f"{name} {value:g}: expected an integer from {lo} to {hi}"
        return None
    if not math.isfinite(value) or not lo < value <= hi:
        return f"{name} {value:g}: expected a finite number above {lo:g} and at most {hi:g}"
    return None


# -- the host's own setting ---------------------------------------------------------------------

def _zones(spec):
    return [z.managed for z in spec.zones], [z.type for z in spec.zones]


def _lowmem(spec) -> int:
    managed, types = _zones(spec)
    return sum(m for m, t in zip(managed, types) if ZONE_NAMES[t] != "Movable")


def infer_min_free_kbytes(spec) -> int | None:
    """The min_free_kbytes the zones' min watermarks were computed from (to the page the
    kernel's division drops), or None when no value reproduces every zone's."""
    managed, types = _zones(spec)
    have = [z.wmark[0] for z in spec.zones]
    if any(z.wmark is None for z in spec.zones):
        return None
    first = sum(m for m, t in zip(have, types) if ZONE_NAMES[t] != "Movable")
    shift = spec.page_size.bit_length() - 1 - 10
    for pages_min in range(first, first + len(managed) + 2):
        mfk = pages_min << shift
        wm = zone_watermarks(managed, types, mfk, WATERMARK_SCALE_FACTOR, spec.page_size)
        if [w[0] for w in wm] == have:
            return mfk
    return None


def infer_scale_factor(spec, min_free_kbytes: int) -> int | None:
    """The watermark_scale_factor the zones' low and high watermarks were computed with
    (the kernel's default when it is one of those that fit), or None."""
    managed, types = _zones(spec)
    have = [tuple(z.wmark) for z in spec.zones]
    fits = [w for w in range(KNOB_RANGES["watermark_scale_factor"][0],
                             KNOB_RANGES["watermark_scale_factor"][1] + 1)
            if zone_watermarks(managed, types, min_free_kbytes, w, spec.page_size) == have]
    if not fits:
        return None
    return WATERMARK_SCALE_FACTOR if WATERMARK_SCALE_FACTOR in fits else fits[0]


def host_setting(bundle, spec) -> dict:
    """The host's current value of each knob and where it comes from: the bundle's recorded
    sysctls (meta.json), else what its zoneinfo watermarks were computed from, else the
    kernel's default."""
    recorded = (getattr(bundle, "meta", None) or {}).get("sysctls") or {}
    out = {}
    for name, key in SYSCTLS.items():
        v = recorded.get(key)
        try:
            out[name] = {"value": int(str(v).strip()), "source": "meta.json sysctls"}
        except (TypeError, ValueError):
            pass
    if "min_free_kbytes" not in out:
        v = infer_min_free_kbytes(spec)
        out["min_free_kbytes"] = (
            {"value": v, "source": "zoneinfo watermarks"} if v is not None else
            {"value": kernel_min_free_kbytes(_lowmem(spec), spec.page_size),
             "source": "kernel default (int_sqrt(lowmem kB x 16))"})
    if "watermark_scale_factor" not in out:
        v = infer_scale_factor(spec, out["min_free_kbytes"]["value"])
        out["watermark_scale_factor"] = (
            {"value": v, "source": "zoneinfo watermarks"} if v is not None else
            {"value": WATERMARK_SCALE_FACTOR, "source": "kernel default"})
    if "watermark_boost_factor" not in out:
        out["watermark_boost_factor"] = {"value": WATERMARK_BOOST_FACTOR,
                                         "source": "kernel default"}
    out["load_scale"] = {"value": 1.0, "source": "the fitted workload"}
    return out


# -- a setting applied ----------------------------------------------------------------------------

def watermark_rows(spec, wm) -> list[dict]:
    return [{"zone": f"Node {z.node} {ZONE_NAMES[z.type]}", "managed": int(z.managed),
             "min": int(w[0]), "low": int(w[1]), "high": int(w[2])}
            for z, w in zip(spec.zones, wm)]


def setting_watermarks(spec, setting: dict, host: dict) -> list[tuple[int, int, int]]:
    """The zones' watermarks under ``setting``: the zoneinfo's unless it writes
    min_free_kbytes or watermark_scale_factor, then the kernel's calculation with the host's
    value for the knob it leaves."""
    if not any(k in setting for k in WMARK_KNOBS):
        return [tuple(int(x) for x in z.wmark) for z in spec.zones]
    managed, types = _zones(spec)
    mfk = setting.get("min_free_kbytes", host["min_free_kbytes"]["value"])
    wsf = setting.get("watermark_scale_factor", host["watermark_scale_factor"]["value"])
    return zone_watermarks(managed, types, int(mfk), int(wsf), spec.page_size)


def setting_state(base, setting: dict, host: dict):
    """A copy of the start state with ``setting``'s watermarks and boost factor."""
    from models.engine import Z_BOOST, Z_BOOSTED, Z_WHIGH, Z_WLOW, Z_WMIN
    st = copy.copy(base)
    if any(k in setting for k in WMARK_KNOBS):
        wm = np.array(setting_watermarks(base.spec, setting, host), dtype=np.int64)
        st.A.zs[:, Z_WMIN], st.A.zs[:, Z_WLOW], st.A.zs[:, Z_WHIGH] = wm.T
        st.A.zs[:, Z_BOOST] = 0  # __setup_per_zone_wmarks resets the boost
        st.A.zs[:, Z_BOOSTED] = 0
    if "watermark_boost_factor" in setting:
        st.A = st.A._replace(boost_factor=int(setting["watermark_boost_factor"]))
    return st


def scaled_params(fitted: dict, k: float) -> dict:
    """The fitted parameters with the workload's arrival rates times ``k``."""
    p = dict(fitted)
    rates = [n for n in LOAD_RATES if n in p]
    if not rates and k != 1.0:
        raise ValueError(f"--load-scale: the parameters have no rate to scale "
                         f"({' or '.join(LOAD_RATES)})")
    for n in rates:
        p[n] = p[n] * k
    return p


# -- replays ------------------------------------------------------------------------------------

def _one(res) -> dict:
    summ = res.summary()
    return {"failures": float(res.snaps_cnt[-1][C_NET_FAILED]) if len(res.snaps_t) else
            float(res.fail_sec.sum()),
            "claims": summ["fallbacks"]["claim"], "steals": summ["fallbacks"]["steal"],
            "blocks_converted": summ["counters"]["claimed_blocks"],
            "free_pageblocks": summ["end_state"]["free_pageblocks"],
            "by_cause": summ["failures"]["by_cause"]}


def _stat(out: list[dict], key: str) -> dict:
    v = np.array([o[key] for o in out], dtype=float)
    return {"mean": float(v.mean()), "p5": float(np.percentile(v, 5)),
            "p95": float(np.percentile(v, 95))}


def _summary(out: list[dict]) -> dict:
    return {"failures": _stat(out, "failures"),
            "price": {"claims": _stat(out, "claims"), "steals": _stat(out, "steals"),
                      "blocks_converted": _stat(out, "blocks_converted"),
                      "free_pageblocks_left": _stat(out, "free_pageblocks")}}


def _replay(fit: Fitter, params: dict, policy: str, seeds, state=None, tick=None) -> list[dict]:
    """One run per seed of ``fit``'s own replay (``Fitter.run``), from ``state`` when given."""
    f = fit
    if state is not None:
        f = copy.copy(fit)
        f.base = state
    out = []
    for res in model_pool().map(lambda s: _one(f.run(dict(params), s, policy)), seeds):
        out.append(res)
        if tick:
            tick()
    return out


def whatif(bundle, fitted: dict, policy: str, seeds=range(1, 9)) -> dict:
    """Replay the fitted workload under ``policy``; failures with their spread over seeds, and
    the price: fallbacks, pageblocks converted, free pageblocks left."""
    obs = observe(bundle)
    fit = Fitter(bundle, [], fitted)
    out = _replay(fit, fitted, policy, seeds)
    return {"host": bundle.host, "policy": policy, "seeds": len(out),
            "window_s": obs.window_s, "observed_failures": obs.failures,
            **_summary(out), "runs": out}


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def _check_host(setting: dict, spec, option: str = "--min-free-kbytes ") -> None:
    """Host-dependent bounds: a min watermark of half the lowmem puts the high one at 3/4."""
    mfk = setting.get("min_free_kbytes")
    cap = _lowmem(spec) * (spec.page_size // 1024) // 2
    if mfk is not None and mfk > cap:
        raise ValueError(f"{option}{mfk}: at most {cap} on this host (half its {2 * cap} kB "
                         f"of lowmem; above it the high watermark passes 3/4 of memory)")


class _Session:
    """The fit, the host's setting and the baseline, shared by the points of a sweep."""

    def __init__(self, bundle, fitted: dict, policy: str | None, seeds, progress=None,
                 runs_per_seed: int = 2):
        self.obs = observe(bundle)
        self.fit = Fitter(bundle, [], fitted)
        self.bundle = bundle
        self.fitted = dict(fitted)
        self.policy = policy or self.obs.policy
        self.seeds = list(seeds)
        self.host = host_setting(bundle, self.fit.base.spec)
        self.total = len(self.seeds) * runs_per_seed
        self.done = 0
        self.progress = progress
        self._base = None

    def tick(self):
        self.done += 1
        if self.progress:
            self.progress(self.done, self.total)

    def baseline(self) -> dict:
        if self._base is None:
            out = _replay(self.fit, self.fitted, self.policy, self.seeds, tick=self.tick)
            spec = self.fit.base.spec
            self._base = {"policy": self.policy, **_summary(out),
                          "watermarks": watermark_rows(spec, setting_watermarks(spec, {}, self.host)),
                          "runs": out}
        return self._base

    def point(self, setting: dict) -> dict:
        spec = self.fit.base.spec
        _check_host(setting, spec)
        params = scaled_params(self.fitted, setting.get("load_scale", 1.0))
        st = setting_state(self.fit.base, setting, self.host)
        out = _replay(self.fit, params, self.policy, self.seeds, state=st, tick=self.tick)
        used = {k: setting.get(k, self.host[k]["value"]) for k in KNOBS}
        return {"setting": dict(setting), "used": used, **_summary(out),
                "watermarks": watermark_rows(spec, setting_watermarks(spec, setting, self.host)),
                "runs": out}

    def head(self) -> dict:
        head = {"host": self.bundle.host, "policy": self.policy, "host_policy": self.obs.policy,
                "seeds": len(self.seeds), "window_s": self.obs.window_s,
                "observed_failures": self.obs.failures, "host_setting": self.host}
        bf = self.host["watermark_boost_factor"]
        if bf["source"] == "meta.json sysctls" and bf["value"] != WATERMARK_BOOST_FACTOR:
            head["note"] = (f"the host ran with watermark_boost_factor {bf['value']}; the fit "
                            f"and the baseline replay boost with the kernel's default "
                            f"{WATERMARK_BOOST_FACTOR}")
        return head


def whatif_setting(bundle, fitted: dict, setting: dict, policy: str | None = None,
                   seeds=range(1, 9), progress=None) -> dict:
    """Replay the fitted workload with ``setting`` (knob -> value, see ``KNOBS``) and without
    it (the baseline: same seeds, same policy: the host's unless ``policy``): failures, their
    spread, the price, the watermarks used, and failures(setting) / failures(baseline)."""
    for k, v in setting.items():
        why = knob_problem(k, v)
        if why:
            raise ValueError(why)
    s = _Session(bundle, fitted, policy, seeds, progress)
    pt = s.point(setting)
    base = s.baseline()
    return {**s.head(), "setting": pt["setting"], "used": pt["used"],
            "failures": pt["failures"], "price": pt["price"],
            "watermarks": pt["watermarks"], "baseline": base,
            "ratio": _ratio(pt["failures"]["mean"], base["failures"]["mean"]),
            "runs": pt["runs"]}


def sweep_values(name: str, a: float, b: float, n: int) -> list:
    """``n`` evenly spaced values from ``a`` to ``b`` (integers for the integer knobs, which
    must then stay distinct)."""
    vals = np.linspace(a, b, n)
    if name in INTEGER_KNOBS:
        ints = [int(round(v)) for v in vals]
        if len(set(ints)) < n:
            raise ValueError(f"--sweep {name}={a:g}:{b:g}:{n}: {n} integer values from "
                             f"{a:g} to {b:g} repeat; give at most {int(abs(b - a)) + 1} points")
        return ints
    return [float(round(v, 6)) for v in vals]


def sweep(bundle, fitted: dict, name: str, values: list, setting: dict | None = None,
          policy: str | None = None, seeds=range(1, 9), progress=None) -> dict:
    """``whatif_setting`` at each of ``values`` of knob ``name`` (the other knobs at
    ``setting`` or the host's), against one baseline."""
    setting = dict(setting or {})
    for v in values:
        why = knob_problem(name, v)
        if why:
            raise ValueError(why)
    s = _Session(bundle, fitted, policy, seeds, progress, runs_per_seed=len(values) + 1)
    _check_host(setting, s.fit.base.spec)  # every point's host bounds before the first run
    for v in values:
        _check_host({name: v}, s.fit.base.spec, f"--sweep {name}=")
    base = s.baseline()
    rows = []
    for v in values:
        pt = s.point({**setting, name: v})
        f, p = pt["failures"], pt["price"]
        rows.append({"value": v, "failures_mean": f["mean"], "failures_p5": f["p5"],
                     "failures_p95": f["p95"],
                     "ratio": _ratio(f["mean"], base["failures"]["mean"]),
                     "blocks_converted": p["blocks_converted"]["mean"],
                     "claims": p["claims"]["mean"], "steals": p["steals"]["mean"],
                     "free_pageblocks_left": p["free_pageblocks_left"]["mean"],
                     "watermarks": pt["watermarks"]})
    return {**s.head(), "knob": name, "setting": setting, "values": list(values),
            "baseline": base, "rows": rows}
