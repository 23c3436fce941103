"""Did the change fix the host? Before/after failure rates with exact Poisson intervals and a
conditional binomial test, weighed by exposure: how much of each window the host spent where
the bailout bites (no free pageblock, memory free in other migratetypes, atomic allocation load).
No failures and no exposure proves nothing: that is ``inconclusive``.

Counts compared are "target" failures: requests of the class that failed through the bailout
before (cannot direct-reclaim, wake kswapd, unmovable), whatever cause they get after.
"""
from __future__ import annotations

from scipy import stats

from analyzer.attribution import attribute, snapshot_state
from analyzer.counts import poisson_ci, rate as rate_of
from analyzer.output import num

P_FIXED = 0.01         # significance for "the rate went down"
RESIDUAL_SHARE = 0.05  # after rate at most 5 % of before


def _target(e: dict) -> bool:
    req = e.get("evidence", {}).get("request")
    if req:
        return (not req["can_direct_reclaim"]) and req["kswapd_reclaim"] and \
            e.get("evidence", {}).get("requested_type", "Unmovable") == "Unmovable"
    flags = set(e.get("gfp_flags") or [])
    return "__GFP_DIRECT_RECLAIM" not in flags and "__GFP_KSWAPD_RECLAIM" in flags and \
        e.get("migratetype") in (None, "Unmovable")


def _load_deltas(bundle) -> list[float | None]:
    """Per snapshot interval: allocation load seen (ICMP/IP sends, else vmstat pgalloc)."""
    snaps = bundle.snapshots
    out = []
    for a, b in zip(snaps, snaps[1:]):
        d = None
        if a.net_snmp and b.net_snmp:
            d = 0
            for proto, key in (("Icmp", "OutMsgs"), ("Ip", "OutRequests"), ("Udp", "OutDatagrams"),
                               ("Tcp", "OutSegs")):
                try:
                    d += b.net_snmp[proto][key] - a.net_snmp[proto][key]
                except KeyError:
                    pass
        elif a.vmstat and b.vmstat:
            d = sum(v - a.vmstat.get(k, 0) for k, v in b.vmstat.items() if k.startswith("pgalloc_"))
        out.append(d)
    return out


def exposure(bundle, doc: dict) -> dict:
    """Share of snapshot intervals in the risky state with load, plus what the failures saw."""
    snaps = bundle.snapshots
    # the same state test triage's exposure uses (attribution.snapshot_state)
    frag = [None if st is None else st["risky"] for st in map(snapshot_state, snaps)]
    loads = _load_deltas(bundle)
    intervals = []
    for k, ld in enumerate(loads):
        r = frag[k + 1] if frag[k + 1] is not None else frag[k]
        intervals.append({"from": snaps[k].name, "to": snaps[k + 1].name, "fragmented": r,
                          "load": ld})
    known = [iv for iv in intervals if iv["fragmented"] is not None and iv["load"] is not None]
    exposed = [iv for iv in known if iv["fragmented"] and iv["load"] > 0]
    failures_saw = sum(1 for e in doc["events"] if e.get("cause") == "defrag_nofragment_bailout")
    share = (len(exposed) / len(known)) if known else None
    return {"snapshots": len(snaps), "intervals_known": len(known),
            "intervals_exposed": len(exposed), "share": share,
            "fragmented_snapshots": sum(1 for f in frag if f),
            "records_in_bailout_state": failures_saw,
            "exposed": bool(exposed) or failures_saw > 0,
            "intervals": intervals}


def window(bundle, fixed_in=None) -> dict:
    doc = attribute(bundle, fixed_in)
    f = doc["failures"]
    hours = f["window_s"] / 3600 if f["window_s"] else None
    if len(bundle.snapshots) >= 2:
        sh = (bundle.snapshots[-1].time - bundle.snapshots[0].time).total_seconds() / 3600
        hours = max(hours or 0, sh)
    events = [e for e in doc["events"] if not e.get("slab_page") or not any(
        x["kind"] == "slub" for x in doc["events"])]
    target_printed = sum(1 for e in events if _target(e))
    share = target_printed / len(events) if events else 0.0
    target_est = int(round(f["estimated"] * share)) if events else 0
    exp = exposure(bundle, doc)
    # The counts carry triage's names (analyzer/counts.py): printed, suppressed (per
    # function), estimated, corroborated; "target" is the part of the estimate compared.
    return {"host": doc["host"], "kernel_release": doc["kernel_release"],
            "defrag_mode": doc["defrag_mode"], "fix": doc["fix"], "policy": doc["policy"],
            "hours": hours, "log": doc["log"], "printed": f["printed"],
            "suppressed": f["suppressed"], "estimated": f["estimated"],
            "by_cause_estimated": {c: v["estimated"] for c, v in f["by_cause"].items()},
            "target_printed": target_printed, "target_estimated": target_est,
            "rate_per_hour": (target_est / hours) if hours else None,
            "rate_ci": poisson_ci(target_est, hours) if hours else (None, None),
            "rate": rate_of(target_est, hours * 3600 if hours else None, "target_estimated"),
            "corroborated": f["corroborated"],
            "exposure": exp, "verdict_text": doc["verdict"], "_doc": doc}


def _would_succeed_share(doc: dict, policy: str) -> float | None:
    vals = [e["evidence"]["would_succeed"].get(policy) for e in doc["events"]
            if e.get("evidence", {}).get("would_succeed") and _target(e)]
    return (sum(1 for v in vals if v) / len(vals)) if vals else None


def calibrated_check(before, after_policy: str, after_hours: float, budget_s: float) -> dict:
    """Fit the model to the before window and replay it under the after window's policy."""
    from models.calibrate import calibrate, whatif
    fit = calibrate(before, budget_s=budget_s)
    w = whatif(before, fit["params"], after_policy, seeds=range(1, 6))
    scale = after_hours * 3600 / max(w["window_s"], 1e-9)
    est = fit["estimated_failures"]
    # the share of the real failures the before window's log let out: a prediction of real
    # failures is compared with an after log's count through it
    shown = min(1.0, est["log_floor"] / est["value"]) if est["value"] else None
    return {"fitted": fit["params"], "fit_failures_rel_error": fit["fit"][0]["rel_error"]
            if fit["fit"][0]["in_loss"] else None,
            "before_estimated_failures": est, "log_share_shown": shown,
            "after_policy": after_policy,
            "predicted_failures_per_hour": w["failures"]["mean"] / max(w["window_s"], 1e-9) * 3600,
            "predicted_p95_per_hour": w["failures"]["p95"] / max(w["window_s"], 1e-9) * 3600,
            "predicted_in_after_window": w["failures"]["mean"] * scale}


def validate(before, after, fixed_in=None, calibrated_budget: float | None = None) -> dict:
    b = window(before, fixed_in)
    a = window(after, fixed_in)
    reasons = []
    n1, n2 = b["target_estimated"], a["target_estimated"]
    t1, t2 = b["hours"] or 0, a["hours"] or 0
    ratio = p = None
    if t1 > 0 and t2 > 0 and n1 > 0:
        ratio = (n2 / t2) / (n1 / t1)
        p = float(stats.binomtest(n2, n1 + n2, t2 / (t1 + t2), alternative="less").pvalue)
    # Model check: the decision functions on the before window's own states, under the after
    # window's policy. Share of the before failures the after kernel would have let through.
    after_policy = a["policy"]
    ws = _would_succeed_share(b["_doc"], after_policy)
    predicted = None
    if ws is not None and b["rate_per_hour"] is not None:
        predicted = b["rate_per_hour"] * (1 - ws)
    mitigated = a["defrag_mode"].get("value") == 0 and b["defrag_mode"].get("value") == 1
    exposed_after = a["exposure"]["exposed"]
    for side, w in (("before", b), ("after", a)):
        if not w["log"]["found"]:
            reasons.append(f"the {side} window has no kernel log ({w['log']['why']}): its "
                           f"failures cannot be counted")
    if n1 == 0:
        verdict = "inconclusive"
        if b["log"]["found"]:
            reasons.append("the before window has no failures of the bailout's kind: nothing "
                           "to fix")
    elif not exposed_after:
        verdict = "inconclusive"
        why = []
        if a["exposure"]["intervals_known"] == 0:
            why.append("no snapshot pairs with load counters")
        elif a["exposure"]["fragmented_snapshots"] == 0:
            why.append("memory never reached the risky state (a free pageblock was always there)")
        else:
            why.append("the allocation load did not come back")
        reasons.append(f"after the change the host was not exposed to the conditions of the "
                       f"bailout ({'; '.join(why)}): no failures proves nothing")
    elif n2 == 0 or (p is not None and p < P_FIXED and ratio is not None and ratio <= RESIDUAL_SHARE):
        verdict = "fixed"
        lo, hi = a["rate_ci"]
        reasons.append(f"estimated failures of the bailout's kind went from {_per(n1, t1)} to "
                       f"{_per(n2, t2, upper=hi)}, {_p(p)}" if p is not None else
                       f"estimated failures of the bailout's kind went from {n1:,} to {n2:,}")
        share = a["exposure"]["share"]
        reasons.append(f"the after window was exposed: {a['exposure']['intervals_exposed']} of "
                       f"{a['exposure']['intervals_known']} snapshot intervals had no free "
                       f"pageblock, free memory in other migratetypes and allocation load"
                       + (f" ({share:.0%})" if share is not None else ""))
        if mitigated:
            reasons.append("mitigated by vm.defrag_mode=0, not by a fixed kernel: the fix is "
                           "still needed before defrag_mode can be turned back on")
    else:
        verdict = "not_fixed"
        reasons.append(f"estimated failures of the bailout's kind continue: {_per(n2, t2)} "
                       f"against {_per(n1, t1)} before"
                       + (f", rate ratio {num(ratio)}, {_p(p)}" if p is not None else ""))
        if a["by_cause_estimated"].get("defrag_nofragment_bailout"):
            reasons.append(f"{a['by_cause_estimated']['defrag_nofragment_bailout']:,} after-window "
                           f"failures still match the bailout on kernel "
                           f"{a['kernel_release']['value']}")
    if predicted is not None:
        obs_rate = a["rate_per_hour"]
        agree = (predicted < 1e-9 and n2 == 0) or (
            predicted > 0 and obs_rate is not None and
            poisson_ci(n2, t2)[0] <= predicted <= poisson_ci(n2, t2)[1])
        reasons.append(f"model check: under the after policy ({after_policy}) the decision model "
                       f"lets {ws:.0%} of the before failures through, predicting "
                       f"{num(predicted * t2)} in the after window; observed {n2:,}: "
                       f"{'agrees' if agree else 'disagrees'}")
    cal = None
    if calibrated_budget:
        try:
            cal = calibrated_check(before, after_policy, t2, calibrated_budget)
            lo, hi = poisson_ci(n2, t2) if t2 else (0, 0)
            share = cal["log_share_shown"] if cal["log_share_shown"] is not None else 1.0
            pred = cal["predicted_failures_per_hour"] * share
            agree = (pred <= (hi or 0) * 1.0 + 1e-9
                     and cal["predicted_p95_per_hour"] * share >= (lo or 0))
            est = cal["before_estimated_failures"]
            fitq = (f"failures within {abs(cal['fit_failures_rel_error']):.0%} of the counter"
                    if cal["fit_failures_rel_error"] is not None else "no failure counter")
            reasons.append(f"calibrated model check: fitted to the before window ({fitq}), it "
                           f"estimates {est['value']:,} failures there ({est['low']:,}-"
                           f"{est['high']:,}) where the log counts {est['log_floor']:,.0f}; "
                           f"replayed under {after_policy}: "
                           f"{num(cal['predicted_failures_per_hour'] * t2)} model-estimated "
                           f"failures in the after window, ≈{num(pred * t2)} of them the log "
                           f"would count, {n2:,} counted: {'agrees' if agree else 'disagrees'}")
            cal["agrees"] = bool(agree)
        except ValueError as e:
            reasons.append(f"calibrated model check not possible: {e}")
    if a["corroborated"] or b["corroborated"]:
        reasons.append(f"corroborated (counters, not mixed into the rates): before "
                       f"{_corr(b['corroborated'])}, after {_corr(a['corroborated'])}")
    strip = lambda w: {k: v for k, v in w.items() if k != "_doc"}
    return {"verdict": verdict, "before": strip(b), "after": strip(a), "rate_ratio": ratio,
            "p_value": p, "exposure": {"before": b["exposure"], "after": a["exposure"]},
            "model_check": {"after_policy": after_policy, "would_succeed_share": ws,
                            "predicted_per_hour": predicted, "calibrated": cal},
            "mitigated_by_defrag_mode_0": mitigated, "reasons": reasons}


EXIT = {"fixed": 0, "not_fixed": 3, "inconclusive": 4}


def _per(n: int, hours: float, upper: float | None = None) -> str:
    """'2,975 in 65 s' — with a per-hour figure only over a window long enough for one."""
    from analyzer.counts import RATE_MIN_WINDOW_S
    from analyzer.output import duration
    s = f"{n:,} in {duration(hours * 3600)}"
    if hours * 3600 >= RATE_MIN_WINDOW_S:
        s += f" ({num(n / hours)}/h" + (f", 95% upper bound {num(upper)}/h" if upper is not None
                                        else "") + ")"
    return s


def _p(p: float) -> str:
    return "p < 0.0001" if p < 1e-4 else f"p = {p:.4f}"


def _corr(c: dict | None) -> str:
    return f"{c['count']:,} ({c['counter']})" if c else "none"


def split_at_change(bundle):
    """One bundle whose log spans a reboot into another kernel -> (before, after, where).
    Events and suppression lines split at the new boot's line; snapshots at its wall time."""
    import dataclasses
    boots = bundle.log.boots
    dm_change = _defrag_mode_change(bundle)
    first = boots[0] if boots else None
    change = next((b for b in boots[1:] if b["release"] != first["release"]), None) if boots else None
    if change is None and dm_change is not None:
        return _split_by_time(bundle, *dm_change)
    if change is None:
        what = f"one kernel throughout ({first['release']})" if first else "no 'Linux version' line"
        where = f"{bundle.path}:{first['line']}" if first else str(bundle.path)
        raise ValueError(f"{where}: {what} and no defrag_mode change in the snapshots: "
                         f"no change to validate (give --before and --after)")
    src, line, wall = change["source"], change["line"], change["time_wall"]

    def part(after: bool):
        keep = (lambda e: (e["source"] == src and e["line"] >= line)) if after else \
            (lambda e: not (e["source"] == src and e["line"] >= line))
        res = _sub_result(bundle.log, keep)
        walls = [e["time_wall"] for e in res.events if e.get("time_wall")]
        if after:
            res.first_time_wall, res.last_time_wall = wall, bundle.log.last_time_wall
        else:
            res.first_time_wall, res.last_time_wall = bundle.log.first_time_wall, wall
        if not walls and res.events:
            res.first_time_s = min(e["time_s"] for e in res.events if e["time_s"] is not None)
        release = change["release"] if after else first["release"]
        res.kernel_release = release
        snaps = bundle.snapshots
        if wall:
            from datetime import datetime, timezone
            t = datetime.fromisoformat(wall.replace("Z", "+00:00"))
            t = t if t.tzinfo else t.replace(tzinfo=timezone.utc)
            snaps = [s for s in snaps if (s.time >= t) == after]
        else:
            snaps = []
        return dataclasses.replace(bundle, log=res, snapshots=snaps, _tmp=None,
                                   kernel_release={"value": release,
                                                   "source": f"log (boot at {src}:{change['line']})"
                                                   if after else f"log (boot at {src}:{first['line']})"})
    where = {"source": src, "line": line, "time_wall": wall, "before_kernel": first["release"],
             "after_kernel": change["release"]}
    return part(False), part(True), where


def _defrag_mode_change(bundle):
    """(time, old, new) of the first snapshot whose recorded defrag_mode differs, or None."""
    prev = None
    for s in bundle.snapshots:
        if s.defrag_mode is None:
            continue
        if prev is not None and s.defrag_mode != prev:
            return s.time, prev, s.defrag_mode
        prev = s.defrag_mode
    return None


def _split_by_time(bundle, t, old, new):
    """Split at a defrag_mode change seen between snapshots: events by their wall time."""
    import dataclasses

    def part(after: bool):
        keep = lambda e: (bundle.event_wall_time(e) is not None and
                          (bundle.event_wall_time(e) >= t) == after)
        res = _sub_result(bundle.log, keep)
        iso = t.strftime("%Y-%m-%dT%H:%M:%S")
        if after:
            res.first_time_wall, res.last_time_wall = iso, bundle.log.last_time_wall
        else:
            res.first_time_wall, res.last_time_wall = bundle.log.first_time_wall, iso
        snaps = [s for s in bundle.snapshots if (s.time >= t) == after]
        if snaps and not (res.first_time_wall and res.last_time_wall and
                          res.first_time_wall < res.last_time_wall):
            res.first_time_wall = snaps[0].time.strftime("%Y-%m-%dT%H:%M:%S")
            res.last_time_wall = snaps[-1].time.strftime("%Y-%m-%dT%H:%M:%S")
        res.kernel_release = bundle.log.kernel_release
        return dataclasses.replace(bundle, log=res, snapshots=snaps, _tmp=None,
                                   defrag_mode={"value": new if after else old,
                                                "source": "snapshots (defrag_mode recorded per snapshot)"})
    where = {"source": "snapshots", "line": None, "time_wall": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
             "before_kernel": bundle.kernel_release.get("value"),
             "after_kernel": bundle.kernel_release.get("value"),
             "defrag_mode": {"before": old, "after": new}}
    return part(False), part(True), where


def _sub_result(log, keep):
    """The records and suppression lines of a log that ``keep`` selects, with their counts."""
    from parsers.dmesg import ParseResult
    res = ParseResult()
    res.events = [e for e in log.events if keep(e)]
    res.suppressions = [s for s in log.suppressions if keep(s)]
    for s in res.suppressions:
        res.suppressed[s["func"]] = res.suppressed.get(s["func"], 0) + s["count"]
    res.slub_reports = sum(1 for e in res.events if e["kind"] == "slub")
    res.page_alloc_reports = sum(1 for e in res.events if e["kind"] == "page_alloc")
    return res
