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

from analyzer import counts
from analyzer.kernels import matching_signatures
from analyzer.observe import Observed, free_kb_by_type, from_mem_info, from_snapshot
from models import engine as E
from models import policy as modelpolicy
from parsers import gfp as gfpmod
from parsers.ratelimit import saturation

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


def _zones_for(obs: Observed, gfp: int, order: int) -> np.ndarray:
    """The zone fields as this request's watermark test sees them: free CMA pages do not count
    for a request without ALLOC_CMA (``__zone_watermark_unusable_free``); only movable requests
    may use CMA."""
    zs = obs.zs
    if obs.free_cma is not None and obs.free_cma.any() and \
            not (E.gfp_to_alloc_flags(gfp, order, E.LEGACY) & E.ALLOC_CMA):
        zs = zs.copy()
        zs[:, E.Z_FREE] = np.maximum(zs[:, E.Z_FREE] - obs.free_cma, 0)
    return zs


def _slowpath_flags(gfp: int, order: int, policy: int, can_direct: bool) -> int:
    """The alloc_flags of the slowpath's last attempt, as the engine's retry rules leave them:
    a request that reclaimed retries without NOFRAGMENT when the fallback was not prevented; one
    that cannot reclaim keeps it at the bailout unless the 2026 fix retries without it."""
    flags = E.gfp_to_alloc_flags(gfp, order, policy)
    if (E.fallback_retries(flags, policy) if can_direct else E.bailout_retries(gfp, flags, policy)):
        flags &= ~E.ALLOC_NOFRAGMENT
    return flags


def _decide(obs: Observed, order: int, gfp: int, policy: int, can_direct: bool):
    """classify + counterfactuals. Returns (cause code, dict of would-succeed by policy)."""
    zs = _zones_for(obs, gfp, order)
    nz = zs.shape[0]
    zl = np.zeros(max(nz, 1), dtype=np.int64)
    nzl = E.zonelist(zs, E.gfp_zone(gfp), 0, zl)
    if nzl == 0:
        # single-node observation without zone types we know: try every zone
        nzl = nz
        zl[:nz] = np.arange(nz)
    pbo = obs.pageblock_order
    flags = _slowpath_flags(gfp, order, policy, can_direct)
    cause = E.classify_failure(zs, obs.nr_free, obs.lowmem, order, gfp, flags, 0, pbo, zl, nzl)
    would = {}
    for pol in (E.DEFRAG, E.DEFRAG_FIXED, E.LEGACY):
        f = _slowpath_flags(gfp, order, pol, can_direct)
        z, mode, so, smt, ok, _ = E.plan_request(zs, obs.nr_free, obs.lowmem, order, gfp, f,
                                                 0, pbo, pol, zl, nzl)
        would[E.POLICY_NAMES[pol]] = bool(z >= 0)
    return cause, would, flags


def _tight(obs: Observed, gfp: int, order: int) -> bool:
    highest = E.gfp_zone(gfp)
    zs = _zones_for(obs, gfp, order)
    for i in range(zs.shape[0]):
        if zs[i, E.Z_TYPE] > highest:
            continue
        high = int(E.wmark_pages(zs, i, E.ALLOC_WMARK_HIGH))
        if zs[i, E.Z_FREE] - obs.lowmem[i, min(highest, 3)] > high:
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
    zall = _zones_for(obs, gfp, order)
    cma_ok = bool(flags & E.ALLOC_CMA)
    cma_total = 0
    for i, name in enumerate(obs.zone_names):
        zs = zall[i]
        mark = int(E.wmark_pages(zall, i, flags & E.ALLOC_WMARK_MASK))
        usable = bool(E.zone_watermark_ok(zall, obs.nr_free, obs.lowmem, i, 0, mark, highest,
                                          flags, int(zs[E.Z_FREE]))) and zs[E.Z_TYPE] <= highest
        cma_pages = int(obs.free_cma[i]) if obs.free_cma is not None else 0
        cma_total += cma_pages
        eff = mark
        if flags & E.ALLOC_RESERVES:
            if flags & E.ALLOC_MIN_RESERVE:
                eff -= eff // 2
                if flags & E.ALLOC_NON_BLOCK:
                    eff -= eff // 4
        free_pages = int(zs[E.Z_FREE])   # without free CMA when the request may not use it
        zone_other = 0
        for o in range(order, obs.orders):
            if obs.nr_free[i, o, mt] > 0 and usable:
                req_free += 1
            others = [m for m in range(3) if m != mt and obs.nr_free[i, o, m] > 0]
            if others and obs.nr_free[i, o, mt] == 0:
                kb = int(obs.free_kb_by_order[i, o]) if not obs.exact else int(
                    sum(obs.nr_free[i, o, m] for m in others)) * (obs.page_kb << o)
                zone_other += kb
                if usable:
                    other_by_order[o] = other_by_order.get(o, 0) + kb
        blocks = int(zs[E.Z_FREE_BLOCKS]) >> pbo
        lowmem = int(obs.lowmem[i, min(highest, obs.lowmem.shape[1] - 1)])
        if usable:
            free_blocks += blocks
            other_kb += zone_other
        pk = obs.page_kb
        zrow = {"zone": name, "usable": usable, "free_kb": free_pages * pk,
                "watermark_kb": eff * pk, "lowmem_reserve_kb": lowmem * pk,
                "margin_kb": (free_pages - eff - lowmem) * pk,
                "free_pageblocks": blocks, "free_kb_other_types": zone_other}
        if cma_pages:
            zrow["free_cma_kb"] = cma_pages * pk
            zrow["free_kb_with_cma"] = int(obs.zs[i, E.Z_FREE]) * pk
        ev["zones"].append(zrow)
    ev["requested_type"] = ("Unmovable", "Movable", "Reclaimable")[mt]
    if cma_total:
        ev["free_cma_kb"] = cma_total * obs.page_kb
        ev["cma_usable"] = cma_ok
        ev["cma_note"] = ("free CMA counts for this movable request" if cma_ok else
                          "free CMA serves only movable requests (ALLOC_CMA): not counted "
                          "for this one")
    ev["requested_type_free_at_order"] = bool(req_free)
    ev["free_pageblocks"] = free_blocks
    ev["free_mib_other_types"] = round(other_kb / 1024, 1)
    ev["free_mib_other_types_by_order"] = {str(o): round(v / 1024, 2)
                                           for o, v in sorted(other_by_order.items())}
    ev["free_by_type_kb"] = free_kb_by_type(obs)
    return ev


def attribute(bundle, fixed_in=None) -> dict:
    """Attribute every record of a loaded bundle. Returns the triage document (its shape is in
    docs/reference.md)."""
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
    by_line = {(e["source"], e["line"]): e for e in events}
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
        own = False
        if e.get("zones"):
            obs = from_mem_info(e)
            src, conf, own = f"own Mem-Info (line {e['line']})", 0.9, True
        pair = by_line.get((e["source"], e.get("paired_page_alloc_line")))
        if obs is None and pair is not None and pair.get("zones"):
            # The page-allocation report of this SLUB failure's slab page: the same failure.
            obs = from_mem_info(pair)
            src, conf, own = f"Mem-Info of its slab page's report (line {pair['line']})", 0.9, True
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
            missing.append(_no_state_reason(e, bundle))
            cause = _without_state(e, order, gfp, g, facts, bundle)
            res.update(cause=cause[0], confidence=cause[1],
                       evidence={"missing": missing, **cause[2]})
            out_events.append({**e, **res})
            continue
        code, would, flags = _decide(obs, order, gfp, facts.policy, can_direct)
        cause = E.CAUSE_NAMES[code] if code != E.CAUSE_NONE else "unknown"
        if cause == "unknown" and not own and _tight(obs, gfp, order):
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
    snap = None
    for s in bundle.snapshots:
        if s.vmstat:
            snap = s
    vm = snap.vmstat if snap is not None else None
    if vm and "nr_free_pages_blocks" in vm and facts.policy == E.DEFRAG:
        blocks = vm["nr_free_pages_blocks"]
        free = vm.get("nr_free_pages", 0)
        atomic = not (gfp & E.GFP_DIRECT_RECLAIM) and (gfp & E.GFP_KSWAPD_RECLAIM)
        page = snap.page_size
        if (atomic and blocks < 1 << snap.pageblock_order
                and free > 4 * blocks + (100 << 20) // page):
            return ("defrag_nofragment_bailout", 0.4,
                    {"reason": "vmstat only: no free pageblock (nr_free_pages_blocks "
                               f"{blocks}) with {free * page >> 20} MiB free",
                     "source": "vmstat"})
    return "unknown", 0.0, {}




def _no_state_reason(e: dict, bundle) -> str:
    """What was missing for a record with no free-list state, in words a reader can act on."""
    parts = ["no Mem-Info in this report"]
    snaps = [s for s in bundle.snapshots if s.pagetypeinfo is not None]
    if not snaps:
        parts.append("no pagetypeinfo snapshot in the bundle")
    elif bundle.event_wall_time(e) is None:
        parts.append("its time cannot be aligned with the snapshots")
    else:
        parts.append(f"no snapshot within {SNAPSHOT_NEAR_S:.0f} s")
    return " and ".join(parts)


ALLOC_FUNCS = ("slab_out_of_memory", "warn_alloc", "warn_alloc_failed")


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
    sup_counted = 0
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
        sup_counted += n
        prior = [e for e in pool if e["source"] == sline["source"] and e["line"] < sline["line"]]
        ref = prior[-1] if prior else (pool[0] if pool else None)
        if ref is None:
            sup_unassigned += n
            est["unknown"] += n
        else:
            est[ref["cause"]] += n
    total_printed = len(failures)
    total_est = sum(est.values())
    hours = bundle.span_hours()
    snap_s = None
    if len(bundle.snapshots) >= 2:
        snap_s = (bundle.snapshots[-1].time - bundle.snapshots[0].time).total_seconds()
    # the window observed: the log's span or the snapshots', whichever is longer (as validate)
    window_s, window_from = None, None
    if hours and hours > 0:
        window_s, window_from = hours * 3600, "log"
    if snap_s and snap_s > (window_s or 0):
        window_s, window_from = snap_s, "snapshots"
    corr = corroboration(bundle)
    suppressed = {k: v for k, v in log.suppressed.items() if k in ALLOC_FUNCS}
    corroborated = None
    if corr and corr.get("primary"):
        k = corr["primary"]
        corroborated = {"count": corr["counters"][k], "counter": k, "from": corr["from"],
                        "to": corr["to"], "window_s": corr.get("window_s")}
    log_info = log_status(bundle)
    notes = list(facts.notes) if failures else [
        n for n in facts.notes if not n.startswith("defrag_mode unknown")]
    doc = {
        "host": facts.host,
        "kernel_release": facts.kernel_release,
        "defrag_mode": facts.defrag_mode,
        "fix": facts.fix,
        "policy": facts.policy_name,
        "signatures": facts.signatures,
        "log": log_info,
        "summary": summary,
        "failures": {
            "printed": total_printed,
            "reports": {"slub": sum(1 for e in events if e["kind"] == "slub"),
                        "page_alloc": len(page_events),
                        "page_alloc_of_slab_pages": sum(1 for e in page_events
                                                        if has_slub and e.get("slab_page"))},
            "suppressed": suppressed,
            "suppressed_counted": sup_counted,
            "suppressed_unassigned": sup_unassigned,
            "estimated": total_est,
            "lower_bound": True,
            "corroborated": corroborated,
            "model": None,
            "by_cause": {c: {"printed": attribution[c], "estimated": est[c]} for c in CAUSES},
            "window_s": round(window_s, 3) if window_s else None,
            "window_from": window_from,
            "rate": counts.rate(total_est, window_s),
            "saturation": saturation(log.events, log.suppressions,
                                     facts.kernel_release.get("value")),
        },
        "attribution": attribution,
        "unknown_why": _unknown_why(failures),
        "corroboration": corr,
        "exposure": exposure(bundle, facts),
        "notes": notes + list(bundle.notes),
        "events": events,
        "suppressions": log.suppressions,
    }
    doc["breakdown"] = breakdown(failures)
    doc["at_failure"] = at_failure(failures)
    doc["verdict_level"] = verdict_level(doc)
    doc["verdict"] = verdict(doc)
    return doc


def _unknown_why(failures: list) -> list:
    """For failures without a decidable cause: what was missing, with how many it applies to."""
    why: dict = {}
    for e in failures:
        if e["cause"] != "unknown":
            continue
        miss = e.get("evidence", {}).get("missing") or ["no evidence recorded"]
        key = "; ".join(str(m) for m in miss)
        why[key] = why.get(key, 0) + 1
    return [{"missing": k, "failures": v} for k, v in sorted(why.items(), key=lambda kv: -kv[1])]


def log_status(bundle) -> dict:
    """Was a kernel log found, and did it hold kernel messages? A missing log is not "no
    failures": the reports say which files were looked for."""
    from parsers.bundle import COMPRESSED_SUFFIXES, LOG_NAMES, SOS_LOGS
    lg = bundle.log
    looked = list(LOG_NAMES) + list(SOS_LOGS)
    out = {"found": False, "files": list(bundle.logs), "lines": lg.lines,
           "looked_for": looked, "compressed_suffixes": list(COMPRESSED_SUFFIXES),
           "first_time_s": lg.first_time_s, "last_time_s": lg.last_time_s,
           "first_time_wall": lg.first_time_wall, "last_time_wall": lg.last_time_wall}
    if bundle.root is not None and not bundle.logs:
        out["why"] = (f"no kernel log in {bundle.path}: looked for "
                      f"{', '.join(LOG_NAMES)} (also {', '.join(COMPRESSED_SUFFIXES)}) and "
                      f"{', '.join(SOS_LOGS)}")
        return out
    recognised = (lg.events or lg.suppressions or lg.oom_reports or lg.stall_reports or
                  lg.vmalloc_reports or lg.printk_dropped or lg.boots or lg.kernel_release or
                  lg.first_time_s is not None or lg.first_time_wall)
    if not recognised:
        names = ", ".join(bundle.logs) or str(bundle.path)
        out["why"] = (f"no kernel log: {names} is empty" if not lg.lines else
                      f"no kernel log: {names} has {lg.lines:,} lines and none of them is a "
                      f"kernel message mmtriage recognises (no timestamps, no 'Linux version' "
                      f"line, no allocation report)")
        return out
    out["found"] = True
    return out


def snapshot_state(snap) -> dict | None:
    """The free-memory state a snapshot shows, as far as the bailout cares: free pageblocks and
    memory free in other migratetypes in the zones GFP_ATOMIC requests use (DMA32 and up)."""
    obs = from_snapshot(snap)
    if obs is None:
        return None
    blocks = 0
    other_pages = 0
    free_pages = 0
    risky = False
    for i in range(obs.zs.shape[0]):
        if obs.zs[i, E.Z_TYPE] < E.ZONE_DMA32 or obs.zs[i, E.Z_MANAGED] <= 0:
            continue
        b = int(obs.zs[i, E.Z_FREE_BLOCKS]) >> obs.pageblock_order
        other = int(sum((obs.nr_free[i, :, m] * (1 << np.arange(obs.orders))).sum()
                        for m in (E.MOVABLE, E.RECLAIMABLE)))
        blocks += b
        other_pages += other
        free_pages += int(obs.zs[i, E.Z_FREE])
        if b == 0 and other > int(E.wmark_pages(obs.zs, i, E.ALLOC_WMARK_HIGH)):
            risky = True
    return {"snapshot": snap.name, "free_pageblocks": blocks,
            "free_mib": round(free_pages * obs.page_kb / 1024, 1),
            "free_mib_other_types": round(other_pages * obs.page_kb / 1024, 1), "risky": risky}


def exposure(bundle, facts: HostFacts) -> dict:
    """Is this host exposed to the defrag_mode bailout, and did its memory reach the state the
    bailout needs (no free pageblock, memory free only in other migratetypes)?"""
    rel = facts.kernel_release["value"]
    dm = facts.defrag_mode.get("value")
    fix = facts.fix["status"]
    if fix == "not_applicable":
        status, reason = "not_exposed", f"kernel {rel} predates vm.defrag_mode (6.15)"
    elif dm == 0:
        status, reason = "not_exposed", "vm.defrag_mode=0"
    elif fix == "fixed":
        status, reason = "not_exposed", f"kernel {rel} carries the fix"
    elif dm == 1 and fix == "affected":
        status, reason = "exposed", f"vm.defrag_mode=1 on kernel {rel}, which predates the fix"
    elif dm == 1:
        status, reason = "unknown", "vm.defrag_mode=1 on a kernel whose fix status is unknown"
    else:
        status, reason = "unknown", "vm.defrag_mode was not recorded"
    states = [st for st in (snapshot_state(s) for s in bundle.snapshots) if st is not None]
    out = {"status": status, "reason": reason, "snapshots": len(states),
           "risky_snapshots": sum(1 for st in states if st["risky"])}
    if states:
        low = min(states, key=lambda st: (st["free_pageblocks"], -st["free_mib_other_types"]))
        out["fewest_free_pageblocks"] = low
    return out


def corroboration(bundle) -> dict | None:
    """Counters that count failed atomic allocations the log may never report: ICMP replies
    and UDP sends that failed for want of an skb. TCP resets are not such a counter."""
    snaps = [s for s in bundle.snapshots if s.net_snmp]
    if len(snaps) < 1:
        return None
    first, last = snaps[0].net_snmp, snaps[-1].net_snmp
    out = {}
    for proto, key in (("Icmp", "OutErrors"), ("Udp", "SndbufErrors"), ("Udp", "MemErrors")):
        if proto in last and key in last[proto]:
            a = first.get(proto, {}).get(key, 0) if len(snaps) > 1 else 0
            d = last[proto][key] - a
            if d > 0:
                out[f"{proto}.{key}"] = d
    if not out:
        return None
    primary = max(out, key=out.get)
    return {"counters": out, "primary": primary,
            "from": snaps[0].name if len(snaps) > 1 else "boot", "to": snaps[-1].name,
            "window_s": (snaps[-1].time - snaps[0].time).total_seconds() if len(snaps) > 1
            else None,
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
    # the margin of the zones the request could use; of every zone when none could
    margins = []
    for e in pool:
        zones = e.get("evidence", {}).get("zones", [])
        usable = [z for z in zones if z["usable"]]
        margins += [z["margin_kb"] for z in (usable or zones)]
    cma = [e["evidence"]["free_cma_kb"] for e in pool if e.get("evidence", {}).get("free_cma_kb")]
    by_order: dict = {}
    for e in pool:
        for o, v in e.get("evidence", {}).get("free_mib_other_types_by_order", {}).items():
            by_order.setdefault(o, []).append(v)
    return {"free_mib_other_types_median": float(np.median(mibs)) if mibs else None,
            "free_mib_other_types_max": float(max(mibs)) if mibs else None,
            "free_pageblocks_max": int(max(blocks)) if blocks else None,
            "watermark_margin_kb_min": int(min(margins)) if margins else None,
            "free_cma_kb_median": float(np.median(cma)) if cma else None,
            "free_mib_other_types_by_order_median": {o: float(np.median(v))
                                                     for o, v in sorted(by_order.items(),
                                                                        key=lambda kv: int(kv[0]))}}


def _fmt_mib(m):
    if m is None:
        return "?"
    return f"{m / 1024:.1f} GiB" if m >= 1024 else f"{m:.0f} MiB"


def verdict_level(doc: dict) -> str:
    """How loud the report should be: ``failures`` (``bailout`` when that is the cause),
    ``exposed``, ``healthy`` or ``no_log``."""
    f = doc["failures"]
    if not doc["log"]["found"]:
        return "no_log"
    if f["printed"] or f["estimated"]:
        return "bailout" if doc["attribution"]["defrag_nofragment_bailout"] else "failures"
    if doc["exposure"]["status"] != "not_exposed" or f["corroborated"]:
        return "exposed"
    return "healthy"


def exposure_text(doc: dict) -> str:
    """One or two sentences on exposure and the state the snapshots show."""
    ex = doc["exposure"]
    low = ex.get("fewest_free_pageblocks")
    state = ""
    if low is not None:
        if ex["risky_snapshots"]:
            state = (f" {ex['risky_snapshots']} of {ex['snapshots']} snapshots show the state "
                     f"the bailout needs: no free pageblock with "
                     f"{_fmt_mib(low['free_mib_other_types'])} free in other migratetypes "
                     f"(snapshot {low['snapshot']}).")
        else:
            state = (f" Every snapshot ({ex['snapshots']}) has a free pageblock (at least "
                     f"{low['free_pageblocks']:,}, snapshot {low['snapshot']}, "
                     f"{_fmt_mib(low['free_mib'])} free): the bailout needs none.")
    if ex["status"] == "not_exposed":
        return f"Not exposed to the defrag_mode bailout: {ex['reason']}." + state
    if ex["status"] == "exposed":
        return f"Exposed to the defrag_mode bailout: {ex['reason']}." + state
    return f"Exposure to the defrag_mode bailout unknown: {ex['reason']}." + state


def _counts_phrase(f: dict) -> str:
    s = f"{f['printed']:,} printed failure{'s' if f['printed'] != 1 else ''} " \
        f"({f['estimated']:,} estimated, a lower bound"
    c = f.get("corroborated")
    if c:
        s += f"; {c['count']:,} corroborated by {c['counter']}"
        if c["count"] > f["estimated"]:
            s += ": the log undercounts"
    return s + ")"


def verdict(doc: dict) -> str:
    f = doc["failures"]
    rep = f["printed"]
    lg = doc["log"]
    if not lg["found"]:
        base = lg["why"][0].upper() + lg["why"][1:] + \
            ". Without a kernel log, failures cannot be counted."
        c = f.get("corroborated")
        if c:
            base += (f" But {c['counter']} counted {c['count']:,} between snapshots {c['from']} "
                     f"and {c['to']}: failures happened.")
        if doc["exposure"]["snapshots"] or doc["exposure"]["status"] != "unknown":
            base += " " + exposure_text(doc)
        return base
    if rep == 0:
        base = "No allocation failure reports in the kernel log."
        if doc["summary"].get("oom_reports"):
            base += f" {doc['summary']['oom_reports']:,} OOM-killer report(s) were seen."
        if doc["summary"].get("orphan_meminfo"):
            base += (f" {doc['summary']['orphan_meminfo']:,} Mem-Info dump(s) without their "
                     f"report's first line (a failure or OOM report cut off) were seen.")
        c = f.get("corroborated")
        if c:
            base += (f" But {c['counter']} counted {c['count']:,} between snapshots "
                     f"{c['from']} and {c['to']}: failures the log did not report.")
        return base + " " + exposure_text(doc)
    att = doc["attribution"]
    top = max(att, key=att.get)
    share = att[top] / rep
    rel = doc["kernel_release"]["value"]
    fix = doc["fix"]["status"]
    af = doc["at_failure"]
    parts = [f"{share:.0%} of {_counts_phrase(f)} "
             f"{'match' if top != 'unknown' else 'have'} {_CAUSE_TEXT[top]}"]
    if top == "defrag_nofragment_bailout":
        ex = [e for e in doc["events"] if e.get("cause") == top]
        reqs = sorted({(e["evidence"]["request"]["gfp"], e["evidence"]["request"]["order"],
                        e["evidence"]["requested_type"]) for e in ex if e["evidence"].get("request")})
        desc = ", ".join(f"{g} order-{o} {t.lower()}" for g, o, t in reqs[:3])
        parts[0] += (f": {desc} requests failed with {_fmt_mib(af['free_mib_other_types_median'])} "
                     f"free in other migratetypes and "
                     f"{'no' if not af['free_pageblocks_max'] else format(af['free_pageblocks_max'], ',')} free "
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
    elif top == "unknown":
        why = doc.get("unknown_why") or []
        parts[0] += (": " + "; ".join(f"{w['missing']} ({w['failures']:,})" for w in why[:2])
                     + ".") if why else "."
    else:
        parts[0] += "."
        if top == "low_memory" and af.get("free_cma_kb_median"):
            parts.append(f"Most of the free memory was CMA ({_fmt_mib(af['free_cma_kb_median'] / 1024)}),"
                         f" which serves only movable requests.")
    if doc["summary"].get("orphan_meminfo"):
        parts.append(f"{doc['summary']['orphan_meminfo']:,} Mem-Info dump(s) without their "
                     f"report's first line were seen as well.")
    return " ".join(parts)


_CAUSE_TEXT = {
    "defrag_nofragment_bailout": "the defrag_mode NOFRAGMENT bailout",
    "low_memory": "genuinely low memory (free below the watermark that applies)",
    "high_order_fragmentation": "high-order fragmentation (no free block of the order)",
    "speculative_expected": "speculative allocations that are expected to fail",
    "unknown": "no decidable cause",
}
