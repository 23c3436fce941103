"""Why each failure happened, decided by the model's own decision functions on the observed
free-memory state (not by a second rule set), with a confidence and the evidence.

For every record: build the request (order, GFP mask in the 6.3+ layout), the alloc_flags the
slowpath would use under the host's policy, and an observed state (the record's Mem-Info, else
the nearest snapshot, else vmstat). Then ``models.engine.classify_failure`` names the cause and
``plan_request`` says whether the fix or defrag_mode=0 would have let the request through.
A SLUB report and the warn_alloc report of its min-order page allocation are one failure.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from analyzer.kernels import matching_signatures
from analyzer.observe import Observed, free_kb_by_type, from_mem_info, from_snapshot
from models import engine as E
from models import policy as modelpolicy
from parsers import gfp as gfpmod

CAUSES = ("defrag_nofragment_bailout", "low_memory", "high_order_fragmentation",
          "speculative_expected", "unknown")
MT_INDEX = {"Unmovable": 0, "Movable": 1, "Reclaimable": 2}
MEMINFO_NEAR_S = 120.0    # a SLUB report may borrow a warn_alloc's Mem-Info this close in time
SNAPSHOT_NEAR_S = 900.0   # beyond this a snapshot says little about the moment of failure


@dataclass
class HostFacts:
    host: str
    kernel_release: dict
    defrag_mode: dict
    fix: dict
    policy: int
    policy_name: str
    signatures: list
    notes: list = field(default_factory=list)


def host_facts(bundle, fixed_in=None, inferred_defrag: int | None = None) -> HostFacts:
    sel = modelpolicy.for_bundle(bundle, fixed_in, inferred_defrag)
    fs = sel.fix
    return HostFacts(bundle.host, {"value": sel.release or "unknown",
                                   "source": bundle.kernel_release.get("source", "unknown")},
                     sel.defrag_mode, {"status": fs.status, "source": fs.source,
                                       "detail": fs.detail},
                     sel.policy, sel.policy_name,
                     matching_signatures(sel.release, sel.defrag_mode.get("value")), sel.notes)


def _request(ev: dict, release: str | None):
    """(order, canonical L5 gfp, decoded Gfp) of the page allocation that failed."""
    names = []
    text = ev.get("gfp_text") or ""
    if "(" in text:
        names = [n for n in text[text.index("(") + 1:-1].split("|") if n]
    mask = ev.get("gfp_mask")
    if mask is None:
        return None, None, None
    g = gfpmod.decode(mask, names, kernel=release, layout=ev.get("gfp_layout"))
    gfp = g.canonical_mask
    if ev["kind"] == "slub":
        order = ev.get("min_order")
        gfp |= E.GFP_COMP  # allocate_slab's min-order attempt carries s->allocflags
    else:
        order = ev.get("order")
    return order, gfp, g


def _nearest_snapshot(bundle, t: datetime | None):
    best, dist = None, None
    for s in bundle.snapshots:
        if s.pagetypeinfo is None:
            continue
        if t is None:
            d = math.inf
        else:
            d = abs((s.time - t).total_seconds())
        if best is None or d < dist:
            best, dist = s, d
    return best, dist


def _decide(obs: Observed, order: int, gfp: int, policy: int, can_direct: bool):
    """classify + counterfactuals. Returns (cause code, dict of would-succeed by policy)."""
    nz = obs.zs.shape[0]
    zl = np.zeros(max(nz, 1), dtype=np.int64)
    nzl = E.zonelist(obs.zs, E.gfp_zone(gfp), 0, zl)
    if nzl == 0:
        # single-node observation without zone types we know: try every zone
        nzl = nz
        zl[:nz] = np.arange(nz)
    pbo = obs.pageblock_order
    flags = E.gfp_to_alloc_flags(gfp, order, policy)
    if can_direct:
        flags &= ~E.ALLOC_NOFRAGMENT  # the "failed to prevent the fallback" retry clears it
    cause = E.classify_failure(obs.zs, obs.nr_free, obs.lowmem, order, gfp, flags, 0, pbo, zl, nzl)
    would = {}
    for pol in (E.DEFRAG, E.DEFRAG_FIXED, E.LEGACY):
        f = E.gfp_to_alloc_flags(gfp, order, pol)
        if pol == E.DEFRAG_FIXED and (gfp & E.GFP_KSWAPD_RECLAIM) and not can_direct:
            f &= ~E.ALLOC_NOFRAGMENT
        if can_direct:
            f &= ~E.ALLOC_NOFRAGMENT
        z, mode, so, smt, ok, _ = E.plan_request(obs.zs, obs.nr_free, obs.lowmem, order, gfp, f,
                                                 0, pbo, pol, zl, nzl)
        would[E.POLICY_NAMES[pol]] = bool(z >= 0)
    return cause, would, flags


def _tight(obs: Observed, gfp: int) -> bool:
    highest = E.gfp_zone(gfp)
    for i in range(obs.zs.shape[0]):
        if obs.zs[i, E.Z_TYPE] > highest:
            continue
        high = int(E.wmark_pages(obs.zs, i, E.ALLOC_WMARK_HIGH))
        if obs.zs[i, E.Z_FREE] - obs.lowmem[i, min(highest, 3)] > high:
            return False
    return True


def _evidence(obs: Observed, order: int, gfp: int, flags: int) -> dict:
    mt = E.gfp_migratetype(gfp)
    pbo = obs.pageblock_order
    ev: dict = {"zones": []}
    other_kb = 0
    other_by_order: dict = {}
    req_free = 0
    free_blocks = 0
    highest = E.gfp_zone(gfp)
    for i, name in enumerate(obs.zone_names):
        zs = obs.zs[i]
        mark = int(E.wmark_pages(obs.zs, i, flags & E.ALLOC_WMARK_MASK))
        usable = bool(E.zone_watermark_ok(obs.zs, obs.nr_free, obs.lowmem, i, 0, mark, highest,
                                          flags, int(zs[E.Z_FREE]))) and zs[E.Z_TYPE] <= highest
        eff = mark
        if flags & E.ALLOC_RESERVES:
            if flags & E.ALLOC_MIN_RESERVE:
                eff -= eff // 2
                if flags & E.ALLOC_NON_BLOCK:
                    eff -= eff // 4
        free_pages = int(zs[E.Z_FREE])
        zone_other = 0
        for o in range(order, obs.orders):
            if obs.nr_free[i, o, mt] > 0 and usable:
                req_free += 1
            others = [m for m in range(3) if m != mt and obs.nr_free[i, o, m] > 0]
            if others and obs.nr_free[i, o, mt] == 0:
                kb = int(obs.free_kb_by_order[i, o]) if not obs.exact else int(
                    sum(obs.nr_free[i, o, m] for m in others)) * (4 << o)
                zone_other += kb
                if usable:
                    other_by_order[o] = other_by_order.get(o, 0) + kb
        blocks = int(zs[E.Z_FREE_BLOCKS]) >> pbo
        lowmem = int(obs.lowmem[i, min(highest, obs.lowmem.shape[1] - 1)])
        if usable:
            free_blocks += blocks
            other_kb += zone_other
        ev["zones"].append({"zone": name, "usable": usable, "free_kb": free_pages * 4,
                            "watermark_kb": eff * 4, "lowmem_reserve_kb": lowmem * 4,
                            "margin_kb": (free_pages - eff - lowmem) * 4,
                            "free_pageblocks": blocks, "free_kb_other_types": zone_other})
    ev["requested_type"] = ("Unmovable", "Movable", "Reclaimable")[mt]
    ev["requested_type_free_at_order"] = bool(req_free)
    ev["free_pageblocks"] = free_blocks
    ev["free_mib_other_types"] = round(other_kb / 1024, 1)
    ev["free_mib_other_types_by_order"] = {str(o): round(v / 1024, 2)
                                           for o, v in sorted(other_by_order.items())}
    ev["free_by_type_kb"] = free_kb_by_type(obs)
    return ev


def attribute(bundle, fixed_in=None) -> dict:
    """Attribute every record of a loaded bundle. Returns the triage document (product.md §4)."""
    log = bundle.log
    events = [dict(e) for e in log.events if e["kind"] in ("slub", "page_alloc")]
    # A warn_alloc for a slab page and the SLUB report right after it are one failure.
    pending = None
    for e in events:
        if e["kind"] == "page_alloc" and e.get("slab_page"):
            pending = e
        elif e["kind"] == "slub" and pending is not None:
            dt = (e.get("time_s") or 0) - (pending.get("time_s") or 0)
            if 0 <= dt <= 1.0 and (pending.get("caller") == e.get("caller")):
                pending["paired_with_line"] = e["line"]
                e["paired_page_alloc_line"] = pending["line"]
            pending = None
    facts = host_facts(bundle, fixed_in)
    release = facts.kernel_release["value"] if facts.kernel_release["value"] != "unknown" else None
    inferred = False
    if facts.defrag_mode.get("value") is None:
        inferred = True
    mem_events = [e for e in events if e["kind"] == "page_alloc" and e.get("zones")]
    out_events = []
    for e in events:
        order, gfp, g = _request(e, e.get("kernel_release") or release)
        res = {"cause": "unknown", "confidence": 0.0, "evidence": {}}
        missing = []
        if gfp is None or order is None:
            missing.append("gfp mask" if gfp is None else "order")
            res["evidence"] = {"missing": missing}
            out_events.append({**e, **res})
            continue
        can_direct = bool(gfp & E.GFP_DIRECT_RECLAIM)
        obs, src, conf = None, None, 0.0
        if e.get("zones"):
            obs = from_mem_info(e)
            src, conf = f"own Mem-Info (line {e['line']})", 0.9
        if obs is None and mem_events:
            t = e.get("time_s")
            near = min(mem_events, key=lambda m: abs((m.get("time_s") or 0) - (t or 0))
                       if t is not None and m.get("time_s") is not None else math.inf)
            d = abs((near.get("time_s") or 0) - (t or 0)) if t is not None and near.get(
                "time_s") is not None else None
            if d is not None and d <= MEMINFO_NEAR_S:
                obs = from_mem_info(near)
                src = f"Mem-Info of the record at line {near['line']} ({d:.1f} s away)"
                conf = 0.85 if d <= 10 else 0.7
        if obs is None:
            snap, dist = _nearest_snapshot(bundle, bundle.event_wall_time(e))
            if snap is not None and (dist is None or dist <= SNAPSHOT_NEAR_S or math.isinf(dist)):
                obs = from_snapshot(snap)
                if math.isinf(dist):
                    src = f"snapshot {snap.name} (times not aligned: no boot_time)"
                    conf = 0.4
                else:
                    src = f"snapshot {snap.name} ({dist:.0f} s away)"
                    conf = 0.8 if dist <= 60 else 0.6
        if obs is None:
            missing.append("free-list state (no Mem-Info, no pagetypeinfo snapshot near it)")
            cause = _without_state(e, order, gfp, g, facts, bundle)
            res.update(cause=cause[0], confidence=cause[1],
                       evidence={"missing": missing, **cause[2]})
            out_events.append({**e, **res})
            continue
        code, would, flags = _decide(obs, order, gfp, facts.policy, can_direct)
        cause = E.CAUSE_NAMES[code] if code != E.CAUSE_NONE else "unknown"
        if cause == "unknown" and not src.startswith("own") and _tight(obs, gfp):
            # A borrowed state taken under memory pressure: free was within the unreduced
            # high watermark, and it moves fast there. Low memory, with less confidence.
            cause = "low_memory"
            conf = min(conf, 0.5)
            missing.append("the borrowed state is just above this request's watermark")
        elif cause == "unknown":
            missing.append("the observed state lets this request through: the state moved "
                           "between the failure and the observation")
        if cause == "defrag_nofragment_bailout" and facts.policy == E.LEGACY:
            cause = "unknown"  # never the bailout without defrag_mode
        evd = _evidence(obs, order, gfp, flags)
        evd.update(source=src, would_succeed=would, missing=missing + obs.missing,
                   request={"order": order, "gfp": gfpmod.render(gfp) if gfp else None,
                            "can_direct_reclaim": can_direct,
                            "kswapd_reclaim": bool(gfp & E.GFP_KSWAPD_RECLAIM)})
        if cause == "defrag_nofragment_bailout" and inferred:
            conf *= 0.8
        if obs.missing:
            conf *= 0.9
        res.update(cause=cause, confidence=round(conf if cause != "unknown" else 0.0, 2),
                   evidence=evd)
        out_events.append({**e, **res})
    if inferred:
        if any(e["cause"] == "defrag_nofragment_bailout" for e in out_events):
            facts.defrag_mode = {"value": 1, "source": "inferred from the failures"}
        else:
            for e in out_events:
                if e["cause"] == "defrag_nofragment_bailout":
                    e["cause"] = "unknown"
    return _summarise(bundle, facts, out_events)


def _without_state(e, order, gfp, g, facts, bundle):
    """No free-list state: only what the request itself says, plus vmstat if present."""
    if order and order > 0 and ((gfp & E.GFP_NORETRY) or not (gfp & (E.GFP_DIRECT_RECLAIM |
                                                                        E.GFP_KSWAPD_RECLAIM))):
        return "speculative_expected", 0.7, {"reason": "high-order request built to fail quietly"}
    vm = None
    for s in bundle.snapshots:
        if s.vmstat:
            vm = s.vmstat
    if vm and "nr_free_pages_blocks" in vm and facts.policy == E.DEFRAG:
        blocks = vm["nr_free_pages_blocks"]
        free = vm.get("nr_free_pages", 0)
        atomic = not (gfp & E.GFP_DIRECT_RECLAIM) and (gfp & E.GFP_KSWAPD_RECLAIM)
        if atomic and blocks < 512 and free > 4 * blocks + 25600:
            return ("defrag_nofragment_bailout", 0.4,
                    {"reason": "vmstat only: no free pageblock (nr_free_pages_blocks "
                               f"{blocks}) with {free * 4 // 1024} MiB free",
                     "source": "vmstat"})
    return "unknown", 0.0, {}


def _summarise(bundle, facts: HostFacts, events: list) -> dict:
    log = bundle.log
    summary = log.summary()
    # Failures: SLUB reports plus page_alloc reports that are not a SLUB report's own slab page.
    # A warn_alloc for a slab page is the same failure as its SLUB report (printed or
    # suppressed): it is evidence, not another failure, unless the log has no SLUB report.
    has_slub = any(e["kind"] == "slub" for e in events)
    failures = [e for e in events if not (has_slub and e.get("slab_page"))]
    attribution = {c: 0 for c in CAUSES}
    for e in failures:
        attribution[e["cause"]] += 1
    # Estimated: each suppression line's count goes to the cause of the nearest report of
    # its kind before it (the misses happened in the interval that report opened).
    est = dict(attribution)
    sup_unassigned = 0
    slub_events = [e for e in failures if e["kind"] == "slub"]
    page_events = [e for e in events if e["kind"] == "page_alloc"]
    paired_share = (sum(1 for e in page_events if e.get("slab_page")) / len(page_events)
                    if page_events and has_slub else 0.0)
    for sline in log.suppressions:
        func = sline["func"]
        if func == "slab_out_of_memory":
            pool = slub_events
            n = sline["count"]
        elif func in ("warn_alloc", "warn_alloc_failed"):
            pool = [e for e in page_events if not (has_slub and e.get("slab_page"))]
            # warn_alloc misses that were slab pages are already in the SLUB count
            n = int(round(sline["count"] * (1 - paired_share)))
        else:
            continue
        if not n:
            continue
        prior = [e for e in pool if e["source"] == sline["source"] and e["line"] < sline["line"]]
        ref = prior[-1] if prior else (pool[0] if pool else None)
        if ref is None:
            sup_unassigned += n
            est["unknown"] += n
        else:
            est[ref["cause"]] += n
    total_reported = len(failures)
    total_est = sum(est.values())
    hours = bundle.span_hours()
    snap_hours = None
    if len(bundle.snapshots) >= 2:
        snap_hours = (bundle.snapshots[-1].time - bundle.snapshots[0].time).total_seconds() / 3600
    span = hours if hours and hours > 0 else snap_hours
    corr = corroboration(bundle)
    doc = {
        "host": facts.host,
        "kernel_release": facts.kernel_release,
        "defrag_mode": facts.defrag_mode,
        "fix": facts.fix,
        "policy": facts.policy_name,
        "signatures": facts.signatures,
        "summary": summary,
        "failures": {"reported": total_reported, "estimated": total_est,
                     "span_hours": round(span, 4) if span else None,
                     "estimated_per_hour": round(total_est / span, 1) if span else None,
                     "lower_bound": True,
                     "by_cause_estimated": est, "suppressed_unassigned": sup_unassigned},
        "attribution": attribution,
        "corroboration": corr,
        "notes": facts.notes + list(bundle.notes),
        "events": events,
        "suppressions": log.suppressions,
    }
    doc["breakdown"] = breakdown(failures)
    doc["at_failure"] = at_failure(failures)
    doc["verdict"] = verdict(doc)
    return doc


def corroboration(bundle) -> dict | None:
    """Counters that count failed atomic allocations the log may never report."""
    snaps = [s for s in bundle.snapshots if s.net_snmp]
    if len(snaps) < 1:
        return None
    first, last = snaps[0].net_snmp, snaps[-1].net_snmp
    out = {}
    for proto, key in (("Icmp", "OutErrors"), ("Udp", "SndbufErrors"), ("Udp", "MemErrors"),
                       ("Tcp", "OutRsts")):
        if proto in last and key in last[proto]:
            a = first.get(proto, {}).get(key, 0) if len(snaps) > 1 else 0
            d = last[proto][key] - a
            if d > 0:
                out[f"{proto}.{key}"] = d
    if not out:
        return None
    return {"counters": out, "from": snaps[0].name if len(snaps) > 1 else "boot",
            "to": snaps[-1].name,
            "note": "send errors counted by the network stack over the snapshot span; "
                    "failed atomic skb allocations are among them"}


def breakdown(failures: list) -> dict:
    def count(key):
        d: dict = {}
        for e in failures:
            k = key(e)
            d[k] = d.get(k, 0) + 1
        return dict(sorted(d.items(), key=lambda kv: -kv[1]))
    return {"by_cache": count(lambda e: e.get("cache") or "(page allocation)"),
            "by_order": count(lambda e: str(e.get("min_order") if e["kind"] == "slub" else e.get("order"))),
            "by_gfp": count(lambda e: (e.get("gfp_text") or "?").split("(")[-1].rstrip(")") or "?"),
            "by_kind": count(lambda e: e["kind"])}


def at_failure(failures: list) -> dict:
    bail = [e for e in failures if e["cause"] == "defrag_nofragment_bailout"]
    pool = bail or failures
    mibs = [e["evidence"].get("free_mib_other_types") for e in pool
            if e.get("evidence", {}).get("free_mib_other_types") is not None]
    blocks = [e["evidence"].get("free_pageblocks") for e in pool
              if e.get("evidence", {}).get("free_pageblocks") is not None]
    margins = [z["margin_kb"] for e in pool for z in e.get("evidence", {}).get("zones", [])]
    by_order: dict = {}
    for e in pool:
        for o, v in e.get("evidence", {}).get("free_mib_other_types_by_order", {}).items():
            by_order.setdefault(o, []).append(v)
    return {"free_mib_other_types_median": float(np.median(mibs)) if mibs else None,
            "free_mib_other_types_max": float(max(mibs)) if mibs else None,
            "free_pageblocks_max": int(max(blocks)) if blocks else None,
            "watermark_margin_kb_min": int(min(margins)) if margins else None,
            "free_mib_other_types_by_order_median": {o: float(np.median(v))
                                                     for o, v in sorted(by_order.items(),
                                                                        key=lambda kv: int(kv[0]))}}


def _fmt_mib(m):
    if m is None:
        return "?"
    return f"{m / 1024:.1f} GiB" if m >= 1024 else f"{m:.0f} MiB"


def verdict(doc: dict) -> str:
    f = doc["failures"]
    est = f["by_cause_estimated"]
    rep = f["reported"]
    if rep == 0:
        base = "No allocation failure reports in this log."
        if doc["summary"].get("oom_reports"):
            base += f" {doc['summary']['oom_reports']} OOM-killer report(s) were seen."
        return base
    tot = f["estimated"]
    att = doc["attribution"]
    top = max(att, key=att.get)
    share = att[top] / rep
    rel = doc["kernel_release"]["value"]
    fix = doc["fix"]["status"]
    af = doc["at_failure"]
    parts = [f"{share:.0%} of {rep:,} reported failures (≈{tot:,} estimated, a lower bound) "
             f"{'match' if top != 'unknown' else 'have'} {_CAUSE_TEXT[top]}"]
    if top == "defrag_nofragment_bailout":
        ex = [e for e in doc["events"] if e.get("cause") == top]
        reqs = sorted({(e["evidence"]["request"]["gfp"], e["evidence"]["request"]["order"],
                        e["evidence"]["requested_type"]) for e in ex if e["evidence"].get("request")})
        desc = ", ".join(f"{g} order-{o} {t.lower()}" for g, o, t in reqs[:3])
        parts[0] += (f": {desc} requests failed with {_fmt_mib(af['free_mib_other_types_median'])} "
                     f"free in other migratetypes and "
                     f"{'no' if not af['free_pageblocks_max'] else af['free_pageblocks_max']} free "
                     f"pageblock{'s' if af['free_pageblocks_max'] not in (0, 1, None) else ''}.")
        if fix == "affected":
            parts.append(f"Kernel {rel} predates the fix; a kernel with \"mm/page_alloc: fix "
                         f"defrag_mode for non-reclaimable allocations\" or vm.defrag_mode=0 would "
                         f"have let these allocations fall back.")
        elif fix == "fixed":
            parts.append(f"Kernel {rel} is listed as fixed: check that the build really carries "
                         f"the fix (mmtriage lab).")
        else:
            parts.append(f"Kernel {rel}: fix status {fix}.")
        if doc["defrag_mode"].get("source") == "inferred from the failures":
            parts.append("defrag_mode was not recorded; it is inferred from the failures.")
    else:
        parts[0] += "."
    if doc.get("corroboration"):
        c = doc["corroboration"]["counters"]
        k, v = max(c.items(), key=lambda kv: kv[1])
        parts.append(f"{k} counted {v:,} over the snapshots: the log undercounts.")
    return " ".join(parts)


_CAUSE_TEXT = {
    "defrag_nofragment_bailout": "the defrag_mode NOFRAGMENT bailout",
    "low_memory": "genuinely low memory (free below the watermark that applies)",
    "high_order_fragmentation": "high-order fragmentation (no free block of the order)",
    "speculative_expected": "speculative allocations that are expected to fail",
    "unknown": "no decidable cause (evidence missing)",
}
