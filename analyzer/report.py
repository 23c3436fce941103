"""The per-host triage report: table (terminal), JSON, Markdown and one self-contained HTML file
with its plots embedded.

All three human formats are built from the same blocks (``blocks``), so a count is named the
same way everywhere (the names are defined once in ``analyzer.counts``). A block with nothing
to say is left out, and so is a plot without data. Everything that came from a log or a
bundle's meta.json is escaped: HTML entities in HTML, and in Markdown as well as its own
punctuation (a cache name or host name cannot inject markup into either).
"""
from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path

import numpy as np

from analyzer import counts as C
from analyzer.attribution import CAUSES, exposure_text
from analyzer.output import duration, kib, mib, num

COLORS = {"defrag_nofragment_bailout": "#d62728", "low_memory": "#1f77b4",
          "high_order_fragmentation": "#ff7f0e", "speculative_expected": "#7f7f7f",
          "unknown": "#bcbd22"}
MT_COLORS = {"Unmovable": "#9467bd", "Movable": "#2ca02c", "Reclaimable": "#8c564b",
             "HighAtomic": "#e377c2", "CMA": "#17becf", "Isolate": "#7f7f7f"}
LEVEL_COLORS = {"bailout": "#d62728", "failures": "#ff7f0e", "exposed": "#e6a700",
                "healthy": "#2ca02c", "no_log": "#7f7f7f"}
LEVEL_TITLES = {"bailout": "Failures: the defrag_mode bailout", "failures": "Failures",
                "exposed": "No failures reported; exposed", "healthy": "No failures; not exposed",
                "no_log": "No kernel log: cannot tell"}
PLOT_TITLES = {"failures_over_time": "Failures over time",
               "free_by_type_order": "Free memory by migratetype and order",
               "free_over_time": "Free memory by migratetype over time"}
CAUSE_LABELS = {"defrag_nofragment_bailout": "defrag_mode NOFRAGMENT bailout",
                "low_memory": "low memory", "high_order_fragmentation": "high-order fragmentation",
                "speculative_expected": "speculative (expected to fail)",
                "unknown": "no decidable cause"}


# ---------------------------------------------------------------------------------------------
# Words and numbers shared by every format

def kernel_text(doc) -> str:
    k = doc["kernel_release"]
    return f"{k['value']} (from {k['source']})" if k["value"] != "unknown" else "unknown"


def defrag_text(doc) -> str:
    d = doc["defrag_mode"]
    if d.get("value") is None:
        return d["source"] if d["source"].startswith("not in this kernel") else "not recorded"
    return f"{d['value']} (from {d['source']})"


def fix_text(doc) -> str:
    f = doc["fix"]
    if f["status"] == "unknown":
        return "unknown: the kernel release is unknown"
    text = f["detail"]
    if f["status"] == "affected" and doc["defrag_mode"].get("value") == 0:
        text += "; harmless while vm.defrag_mode=0"
    return text


def log_text(doc) -> str:
    lg = doc["log"]
    if not lg["found"]:
        return lg["why"]
    files = ", ".join(lg["files"]) or "?"
    out = f"{files}: {lg['lines']:,} lines"
    if lg["first_time_s"] is not None and lg["last_time_s"] is not None:
        out += f", {num(lg['first_time_s'])}–{num(lg['last_time_s'])} s after boot"
    elif lg["first_time_wall"]:
        out += f", {lg['first_time_wall']} to {lg['last_time_wall']}"
    return out


def rate_text(r: dict) -> str:
    if r.get("per_hour") is None:
        return f"not given: {r['why_not']}"
    return (f"{num(r['per_hour'])} per hour ({r['confidence']:.0%} interval "
            f"{num(r['low'])}–{num(r['high'])}) over {duration(r['window_s'])}; "
            f"a lower bound, like the count")


def count_rows(doc) -> list[tuple[str, str, str]]:
    """(name, value, what it counts) for the failure counts; empty when there is nothing."""
    f = doc["failures"]
    if not doc["log"]["found"] and not f["corroborated"]:
        return []
    if not (f["printed"] or f["estimated"] or f["corroborated"]):
        return []
    rows = []
    c = f["corroborated"]
    if not doc["log"]["found"]:
        # nothing was counted from a log; a counter may still have seen failures
        return [(C.LABELS["corroborated"], f"{c['count']:,}",
                 f"{c['counter']} between snapshots {c['from']} and {c['to']}; the bundle has "
                 f"no kernel log to count reports from")]
    rep = f["reports"]
    parts = []
    if rep["slub"]:
        parts.append(f"{rep['slub']:,} SLUB report{'s' if rep['slub'] != 1 else ''}")
    if rep["page_alloc"]:
        n, k = rep["page_alloc"], rep["page_alloc_of_slab_pages"]
        pa = f"{n:,} page-allocation report{'s' if n != 1 else ''}"
        if k == n:
            pa += " for the SLUB failures' slab pages (the same failures)"
        elif k:
            pa += f" ({k:,} of them for the SLUB failures' slab pages)"
        parts.append(pa)
    rows.append((C.LABELS["printed"], f"{f['printed']:,}",
                 C.DEFINITIONS["printed"] + (f": {'; '.join(parts)}" if parts else "")))
    sup = f["suppressed"]
    if sup:
        rows.append((C.LABELS["suppressed"], ", ".join(f"{k} {v:,}" for k, v in sup.items()),
                     C.DEFINITIONS["suppressed"] + f"; {f['suppressed_counted']:,} of them "
                     f"counted in the estimate"))
    rows.append((C.LABELS["estimated"], f"{f['estimated']:,}", C.DEFINITIONS["estimated"]))
    if c:
        rows.append((C.LABELS["corroborated"], f"{c['count']:,}",
                     f"{c['counter']} between snapshots {c['from']} and {c['to']}"
                     + (f" ({duration(c['window_s'])})" if c.get("window_s") else "")
                     + "; beside the log's count, never added to it"))
    if f.get("model") is not None:
        rows.append((C.LABELS["model"], f"{f['model']:,.0f}", C.DEFINITIONS["model"]))
    rows.append(("rate", rate_text(f["rate"]), "estimated failures per hour"))
    sat = saturation_text(f.get("saturation") or {})
    if sat:
        rows.append(("rate limits", sat, "the share of the window in which a rate limit printed "
                     "all it allows: there the printed and suppressed counts are a floor"))
    return rows


def saturation_text(sat: dict) -> str:
    parts = []
    for func, s in sat.items():
        if s["saturated_share"] is None:
            continue
        text = (f"{func} ({s['burst']} per {s['interval_s']:g} s) saturated "
                f"{s['saturated_share']:.0%} of {duration(s['window_s'])} "
                f"({s['saturated_intervals']:,} of {s['intervals']:,} intervals)")
        if s["floor"]:
            text += ": its counts are a floor"
        parts.append(text)
    return "; ".join(parts)


def cause_rows(doc) -> list[tuple[str, int, int]]:
    f = doc["failures"]["by_cause"]
    return [(CAUSE_LABELS[c], f[c]["printed"], f[c]["estimated"]) for c in CAUSES
            if f[c]["printed"] or f[c]["estimated"]]


def at_failure_rows(doc) -> list[tuple[str, str]]:
    af = doc["at_failure"]
    rows = []
    if af["free_mib_other_types_median"] is not None:
        rows.append(("free in other migratetypes (median)", mib(af["free_mib_other_types_median"])))
    if af["free_pageblocks_max"] is not None:
        rows.append(("free pageblocks (most seen)", f"{af['free_pageblocks_max']:,}"))
    if af["watermark_margin_kb_min"] is not None:
        m = af["watermark_margin_kb_min"]
        rows.append(("smallest watermark margin of a zone it could use",
                     (kib(m) if m >= 0 else f"{kib(-m)} below the watermark")))
    if af.get("free_cma_kb_median"):
        rows.append(("free CMA (median; serves only movable requests)",
                     kib(af["free_cma_kb_median"])))
    bo = af["free_mib_other_types_by_order_median"]
    if bo:
        rows.append(("free in other migratetypes by order (median)",
                     ", ".join(f"order {o}: {mib(v)}" for o, v in bo.items())))
    return rows


def snapshot_rows(doc) -> list[tuple[str, str]]:
    ex = doc["exposure"]
    low = ex.get("fewest_free_pageblocks")
    if not low:
        return []
    rows = [("snapshots with free-list state", f"{ex['snapshots']:,}"),
            ("in the bailout's state (no free pageblock, memory free in other types)",
             f"{ex['risky_snapshots']:,}"),
            ("fewest free pageblocks", f"{low['free_pageblocks']:,} (snapshot {low['snapshot']})"),
            ("free then (DMA32 and up)", f"{mib(low['free_mib'])}, of it "
                                         f"{mib(low['free_mib_other_types'])} in Movable and "
                                         f"Reclaimable")]
    return rows


def evidence_examples(doc) -> list[dict]:
    """One failure per cause, the first with a free-list state, to show its evidence."""
    out = []
    seen = set()
    for e in doc["events"]:
        c = e.get("cause")
        if c in seen or (e.get("slab_page") and any(x["kind"] == "slub" for x in doc["events"])):
            continue
        ev = e.get("evidence") or {}
        if not ev.get("zones") and c != "unknown":
            continue
        seen.add(c)
        out.append(e)
    return out


def zone_rows(ev: dict) -> list[list[str]]:
    rows = []
    for z in ev.get("zones", []):
        rows.append([z["zone"], "yes" if z["usable"] else "no", kib(z["free_kb"]),
                     kib(z["watermark_kb"]), kib(z["lowmem_reserve_kb"]),
                     (kib(z["margin_kb"]) if z["margin_kb"] >= 0 else "−" + kib(-z["margin_kb"])),
                     f"{z['free_pageblocks']:,}", kib(z["free_kb_other_types"]),
                     kib(z["free_cma_kb"]) if z.get("free_cma_kb") else "—"])
    return rows


ZONE_HEAD = ["zone", "usable", "free", "watermark", "lowmem reserve", "margin",
             "free pageblocks", "free in other types", "free CMA"]


def _would(ev):
    w = ev.get("would_succeed")
    if not w:
        return ""
    return ", ".join(f"{k}: {'succeeds' if v else 'fails'}" for k, v in w.items())


def event_time(e) -> str:
    if e.get("time_wall"):
        return str(e["time_wall"])
    if e.get("time_s") is not None:
        return f"{e['time_s']:,.3f} s"
    return ""


def request_text(e) -> str:
    req = (e.get("evidence") or {}).get("request") or {}
    if req:
        return f"{req.get('gfp') or '?'} order-{req.get('order')}"
    return f"{e.get('gfp_text') or '?'} order-{e.get('order') if e.get('order') is not None else '?'}"


def evidence_items(e) -> list[tuple[str, str]]:
    """(label, text) of one failure's evidence, for the Markdown and HTML pages alike."""
    ev = e.get("evidence") or {}
    items = [("request", request_text(e) + (f", {ev['requested_type']}"
                                            if ev.get("requested_type") else "")),
             ("confidence", f"{e['confidence']:.2f}")]
    if evidence_line(e):
        items.append(("evidence", evidence_line(e)))
    if _would(ev):
        items.append(("the same request would", _would(ev)))
    if ev.get("cma_note"):
        items.append(("CMA", ev["cma_note"]))
    return items


def evidence_line(e) -> str:
    ev = e.get("evidence") or {}
    bits = []
    if ev.get("source"):
        bits.append(str(ev["source"]))
    if ev.get("reason"):
        bits.append(str(ev["reason"]))
    if ev.get("missing"):
        bits.append("missing: " + "; ".join(str(m) for m in ev["missing"]))
    return " — ".join(bits)


# ---------------------------------------------------------------------------------------------
# Plots

def _event_times(doc, bundle):
    out = []
    for e in doc["events"]:
        t = e.get("time_s")
        if t is None and bundle is not None:
            w = bundle.event_wall_time(e)
            if w is not None and bundle.boot_time is not None:
                t = (w - bundle.boot_time).total_seconds()
        out.append(t)
    return out


def _time_axis(tmin: float, tmax: float, since: str = "boot"):
    """(origin, divisor, label) so that a time axis reads in s, min or h from a sensible
    origin: since boot, or, when the window is short against the uptime (seven seconds on a
    host up for 446 days), since the first point, with the uptime in the label."""
    span = tmax - tmin
    unit, div = ("hours", 3600.0) if span >= 3 * 3600 else \
        ("minutes", 60.0) if span >= 3 * 60 else ("seconds", 1.0)
    if tmin > 3600 and tmin > 10 * span:
        return tmin, div, f"{unit} after {duration(tmin)} since {since}"
    return 0.0, div, f"{unit} since {since}"


def _plain(ax, axis="both"):
    """Tick labels with thousands separators and as many decimals as the tick step needs:
    never scientific notation or an offset."""
    from matplotlib.ticker import Formatter

    class Thousands(Formatter):
        ticks = np.zeros(0)

        def set_locs(self, locs):
            self.ticks = np.asarray(locs, dtype=float)

        def __call__(self, v, pos=None):
            locs = self.ticks
            step = float(np.min(np.abs(np.diff(locs)))) if len(locs) > 1 else 1.0
            d = 0 if step >= 1 or step <= 0 else min(6, int(np.ceil(-np.log10(step))))
            return f"{v:,.{d}f}"
    if axis in ("both", "y"):
        ax.yaxis.set_major_formatter(Thousands())
    if axis in ("both", "x"):
        ax.xaxis.set_major_formatter(Thousands())


def corroborated_series(bundle, counter: str):
    """(seconds since boot, cumulative count from the first snapshot) of a counter such as
    Icmp.OutErrors, or None when the snapshots lack it or cannot be aligned with the log."""
    if bundle is None or bundle.boot_time is None:
        return None
    proto, key = counter.split(".")
    pts = [((s.time - bundle.boot_time).total_seconds(), s.net_snmp[proto][key])
           for s in bundle.snapshots if s.net_snmp and key in s.net_snmp.get(proto, {})]
    if len(pts) < 2:
        return None
    base = pts[0][1]
    return [t for t, _ in pts], [v - base for _, v in pts]


def plots(doc: dict, bundle, outdir: Path | None = None) -> dict:
    """Render the figures that have data. Returns {file name: bytes}; also writes them to
    outdir if given. A figure without data is not drawn at all."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"svg.fonttype": "none"}):  # SVG text stays text
        return _plots(doc, bundle, outdir, plt)


def _plots(doc, bundle, outdir, plt) -> dict:
    figs = {}
    times = _event_times(doc, bundle)
    has_slub = any(e["kind"] == "slub" for e in doc["events"])
    evs = [(t, e) for t, e in zip(times, doc["events"])
           if t is not None and "cause" in e and not (has_slub and e.get("slab_page"))]
    f = doc["failures"]
    corr = corroborated_series(bundle, f["corroborated"]["counter"]) if f["corroborated"] else None

    # 1. Failures over time: printed per bin by cause; cumulative estimated and corroborated.
    if evs or corr:
        fig, ax = plt.subplots(figsize=(9, 3.8))
        pts = [t for t, _ in evs] + (corr[0] if corr else [])
        tmin, tmax = min(pts), max(pts)
        x0, div, xlabel = _time_axis(tmin, tmax)
        span = max(tmax - tmin, 1.0)
        nb = 60
        edges = np.linspace(tmin, tmin + span * 1.0001, nb + 1)
        bottom = np.zeros(nb)
        for cause in CAUSES:
            ts = [t for t, e in evs if e["cause"] == cause]
            if not ts:
                continue
            h, _ = np.histogram(ts, edges)
            ax.bar((edges[:-1] - x0) / div, h, width=np.diff(edges) / div, bottom=bottom, align="edge",
                   color=COLORS[cause], label=f"{C.LABELS['printed']}: {CAUSE_LABELS[cause]}")
            bottom += h
        ax.set_xlabel(xlabel)
        _plain(ax)
        bar_handles = ax.get_legend_handles_labels()[0]
        if evs:
            ax.set_ylabel(f"{C.LABELS['printed']} failures per bin")
            ax2 = ax.twinx()
        else:
            ax2 = ax   # only a counter: one axis, no empty per-bin scale
        sup = [(s["time_s"], s["count"]) for s in doc.get("suppressions", [])
               if s.get("time_s") is not None and s["func"] in ("slab_out_of_memory",
                                                                 "warn_alloc", "warn_alloc_failed")]
        lines = []
        if evs:
            # the estimate as it accrues: printed failures plus the suppressed counts the
            # estimate takes (slab pages' warn_alloc misses are the SLUB misses, not added)
            counted = f["suppressed_counted"]
            total_sup = sum(c for _, c in sup) or 1
            st = np.array([x for x, _ in sup]) if sup else np.zeros(0)
            sc = np.array([c for _, c in sup], dtype=float) * counted / total_sup
            h, _ = np.histogram(st, edges, weights=sc)
            cum = np.cumsum(h) + np.cumsum(bottom)
            lines += ax2.step((edges[1:] - x0) / div, cum, where="post", color="black", lw=1.4,
                              label=f"{C.LABELS['estimated']}, cumulative "
                                    f"({f['estimated']:,})")
        if corr:
            lines += ax2.plot((np.array(corr[0]) - x0) / div, corr[1], color="#17becf", marker="o",
                              lw=1.4, label=f"{C.LABELS['corroborated']} "
                                            f"({f['corroborated']['counter']}, "
                                            f"{f['corroborated']['count']:,})")
        ax2.set_ylabel("cumulative failures")
        _plain(ax2, "y")
        handles = bar_handles + lines
        ax.legend(handles=handles, loc="upper left", fontsize=8)
        ax.set_title("Allocation failures over time")
        fig.tight_layout()
        figs["failures_over_time"] = fig

    # 2. Free memory by migratetype x order: the snapshot nearest the failures, or the one
    # with the fewest free pageblocks; else what the failures' Mem-Info showed.
    snap_mat = _snapshot_matrix(bundle, doc)
    mem_rows = [e["evidence"]["free_mib_other_types_by_order"] for e in doc["events"]
                if (e.get("evidence") or {}).get("free_mib_other_types_by_order")]
    if snap_mat is not None or mem_rows:
        fig, ax = plt.subplots(figsize=(9, 3.2))
        if snap_mat is not None:
            from matplotlib.colors import LogNorm
            mat, types, orders, name, why = snap_mat
            pos = mat[mat > 0]
            im = ax.imshow(np.where(mat > 0, mat, np.nan), aspect="auto", cmap="viridis",
                           norm=LogNorm(vmin=max(pos.min(), 0.01) if pos.size else 0.01,
                                        vmax=max(mat.max(), 0.02)))
            for (i, j), v in np.ndenumerate(mat):
                if v > 0:
                    label = f"{v:,.0f}" if v >= 10 else f"{v:.1f}" if v >= 0.1 else "<0.1"
                    ax.text(j, i, label, ha="center",
                            va="center", fontsize=7, color="white" if v < mat.max() / 3 else "black")
            ax.set_yticks(range(len(types)), types)
            ax.set_xticks(range(orders), [str(o) for o in range(orders)])
            ax.set_title(f"Free MiB by migratetype and order (snapshot {name}, {why})")
            fig.colorbar(im, ax=ax, label="MiB (log scale)")
        else:
            norders = max(int(o) for r in mem_rows for o in r) + 1
            mat = np.zeros((1, norders))
            for o in range(norders):
                vals = [r[str(o)] for r in mem_rows if str(o) in r]
                mat[0, o] = float(np.median(vals)) if vals else 0.0
            im = ax.imshow(mat, aspect="auto", cmap="viridis")
            ax.set_yticks([0], ["free in other types"])
            ax.set_xticks(range(norders), [str(o) for o in range(norders)])
            ax.set_title("Free MiB in other migratetypes by order at the failures (Mem-Info)")
            fig.colorbar(im, ax=ax, label="MiB (median)")
        ax.set_xlabel("order")
        fig.tight_layout()
        figs["free_by_type_order"] = fig

    # 3. Free memory by migratetype over time (two or more snapshots), failures marked.
    pt_snaps = [s for s in (bundle.snapshots if bundle is not None else []) if s.pagetypeinfo]
    if len(pt_snaps) >= 2:
        fig, ax = plt.subplots(figsize=(9, 3.4))
        t0 = bundle.boot_time or pt_snaps[0].time
        xs = np.array([(s.time - t0).total_seconds() for s in pt_snaps])
        x0, div, xlabel = _time_axis(xs.min(), xs.max(), "boot" if bundle.boot_time else
                                     "the first snapshot")
        xs = xs - x0
        series = []
        for s in pt_snaps:
            tot: dict = {}
            for r in s.pagetypeinfo.free:
                tot[r.type] = tot.get(r.type, 0) + sum(c << o for o, c in enumerate(r.counts))
            series.append(tot)
        types = [t for t in MT_COLORS if any(t in x for x in series)] + sorted(
            {k for x in series for k in x} - set(MT_COLORS))
        by = {k: [x.get(k, 0) * 4 / 1024 for x in series] for k in types}
        for k, v in by.items():
            if max(v) > 0:
                ax.plot(xs / div, v, marker="o", label=k, color=MT_COLORS.get(k))
        fts = [t for t, _ in evs] if bundle.boot_time is not None else []
        if fts:
            ymax = max(max(v) for v in by.values()) or 1
            ax.vlines((np.array(fts) - x0) / div, 0, ymax * 0.05, color="red", lw=0.6,
                      label=f"{C.LABELS['printed']} failure")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("free MiB")
        _plain(ax)
        ax.legend(fontsize=8)
        ax.set_title("Free memory by migratetype over time")
        fig.tight_layout()
        figs["free_over_time"] = fig

    out = {}
    for name, fg in figs.items():
        for ext in ("png", "svg"):
            buf = io.BytesIO()
            fg.savefig(buf, format=ext, dpi=110)
            out[f"{name}.{ext}"] = buf.getvalue()
            if outdir is not None:
                Path(outdir).mkdir(parents=True, exist_ok=True)
                (Path(outdir) / f"{name}.{ext}").write_bytes(buf.getvalue())
        plt.close(fg)
    return out


def _snapshot_matrix(bundle, doc=None):
    if bundle is None:
        return None
    snaps = [s for s in bundle.snapshots if s.pagetypeinfo]
    if not snaps:
        return None
    # the snapshot nearest the failures in time; without failures or aligned times, the one
    # with the fewest free pageblocks (the state failures would meet)
    times = []
    for e in (doc or {}).get("events", []):
        w = bundle.event_wall_time(e)
        if w is not None:
            times.append(w.timestamp())
    if times:
        mid = float(np.median(times))
        s = min(snaps, key=lambda x: abs(x.time.timestamp() - mid))
        why = "nearest the failures"
    else:
        pbo = snaps[0].pagetypeinfo.pageblock_order or 9
        s = min(snaps, key=lambda x: sum(sum(c << (o - pbo) for o, c in enumerate(r.counts)
                                             if o >= pbo) for r in x.pagetypeinfo.free))
        why = "fewest free pageblocks"
    types = []
    for r in s.pagetypeinfo.free:
        if r.type not in types:
            types.append(r.type)
    orders = s.pagetypeinfo.orders
    mat = np.zeros((len(types), orders))
    for r in s.pagetypeinfo.free:
        for o, c in enumerate(r.counts):
            mat[types.index(r.type), o] += (c << o) * 4 / 1024
    keep = [i for i in range(len(types)) if mat[i].sum() > 0]
    if not keep:
        return None
    return mat[keep], [types[i] for i in keep], orders, s.name, why


# ---------------------------------------------------------------------------------------------
# Markdown

_MD_SPECIAL = "\\`*_[]|~"   # with < > & as entities: no markup, no raw HTML survives


def md(s) -> str:
    """Text from a log or meta.json made inert in Markdown: no raw HTML, no markup."""
    s = html.escape(str(s), quote=False)
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in s)


def _md_table(head, rows, right=()) -> list[str]:
    out = ["| " + " | ".join(head) + " |",
           "|" + "|".join("---:" if i in right else "---" for i in range(len(head))) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def markdown(doc: dict, images: dict | None = None) -> str:
    lv = doc["verdict_level"]
    L = [f"# mmtriage: {md(doc['host'])}", "", f"**{LEVEL_TITLES[lv]}.** {md(doc['verdict'])}", ""]
    L += _md_table(["", ""], [(k, md(x)) for k, x in fact_rows(doc)])
    rows = count_rows(doc)
    if rows:
        L += ["", "## Failure counts", ""]
        L += _md_table(["count", "value", "what it counts"],
                       [(md(a), md(b), md(c)) for a, b, c in rows], right=(1,))
    crows = cause_rows(doc)
    if crows:
        L += ["", "## By cause", ""]
        L += _md_table(["cause", C.LABELS["printed"], C.LABELS["estimated"]],
                       [(md(c), f"{p:,}", f"{e:,}") for c, p, e in crows], right=(1, 2))
    if doc.get("unknown_why"):
        L += ["", "## No decidable cause: what was missing", ""]
        L += [f"- {w['failures']:,} failure{'s' if w['failures'] != 1 else ''}: {md(w['missing'])}"
              for w in doc["unknown_why"]]
    arows = at_failure_rows(doc)
    if arows:
        L += ["", "## At the failures", ""] + [f"- {md(a)}: {md(b)}" for a, b in arows]
    srows = snapshot_rows(doc)
    if srows:
        L += ["", "## What the snapshots show", ""] + [f"- {md(a)}: {md(b)}" for a, b in srows]
    for title, key in (("By cache", "by_cache"), ("By order", "by_order"), ("By GFP", "by_gfp")):
        items = doc["breakdown"][key]
        if items:
            L += ["", f"## {title}", ""]
            L += _md_table([title[3:], C.LABELS["printed"]],
                           [(md(k), f"{v:,}") for k, v in items.items()], right=(1,))
    ex = evidence_examples(doc)
    if ex:
        L += ["", "## Evidence (one failure per cause)"]
        for e in ex:
            ev = e.get("evidence") or {}
            L += ["", f"### {md(CAUSE_LABELS[e['cause']])}: line {e['line']:,} of "
                      f"{md(e['source'])}", ""]
            L += [f"- {label}: {md(text)}" for label, text in evidence_items(e)]
            if ev.get("zones"):
                L += [""] + _md_table(ZONE_HEAD, [[md(c) for c in r] for r in zone_rows(ev)],
                                      right=tuple(range(2, 9)))
    corr = doc.get("corroboration")
    if corr:
        L += ["", "## Corroborating counters", ""]
        L += [f"- {md(k)}: {v:,}" for k, v in corr["counters"].items()]
        L.append(f"- {md(corr['note'])}")
    if doc["signatures"]:
        L += ["", "## Known issues for this kernel", ""]
        L += [f"- **{md(s['id'])}**: {md(s['title'])} (fixed by {md(s['fixed_by'])})"
              for s in doc["signatures"]]
    if doc["notes"]:
        L += ["", "## Notes", ""] + [f"- {md(n)}" for n in doc["notes"]]
    if images:
        L += ["", "## Plots", ""]
        L += [f"![{md(PLOT_TITLES.get(n.rsplit('.', 1)[0], n))}]({n})" for n in images]
    shown = doc["events"][:500]
    if shown:
        L += ["", "## Records", ""]
        if len(doc["events"]) > len(shown):
            L += [f"The first {len(shown):,} of {len(doc['events']):,}.", ""]
        L += _md_table(["line", "kind", "time", "cache", "request", "cause", "confidence",
                        "evidence"],
                       [(f"{e['line']:,}", md(e["kind"]), md(event_time(e)), md(e.get("cache") or ""),
                         md(request_text(e)), md(CAUSE_LABELS[e["cause"]]),
                         f"{e['confidence']:.2f}", md(evidence_line(e))) for e in shown],
                       right=(0, 6))
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------------------------------------
# HTML

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;
 padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em} h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;padding:3px 8px;
 font-size:13px;vertical-align:top;text-align:left} th{background:#f4f4f4}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.verdict{font-size:1.08em;padding:.8em 1em;border-left:6px solid;margin:1em 0}
.verdict b{display:block;margin-bottom:.3em}
.facts th{width:11em} .muted{color:#666} img{max-width:100%}
"""


_NUMERIC = re.compile(r"^[−\-]?[\d,.]+( (kB|MiB|GiB|s))?$")


def _h_table(head, rows, num_cols=(), cls="") -> str:
    """An HTML table; cells of ``num_cols`` that hold a number are right-aligned."""
    e = html.escape

    def td(i, c):
        right = i in num_cols and _NUMERIC.match(str(c))
        return f"<td{' class=n' if right else ''}>{e(str(c))}</td>"
    out = [f"<table{f' class={cls!r}' if cls else ''}>"]
    if head:
        out.append("<tr>" + "".join(f"<th{' class=n' if i in num_cols else ''}>{e(str(h))}</th>"
                                    for i, h in enumerate(head)) + "</tr>")
    for r in rows:
        out.append("<tr>" + "".join(td(i, c) for i, c in enumerate(r)) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def html_report(doc: dict, images: dict) -> str:
    e = html.escape
    lv = doc["verdict_level"]
    color = LEVEL_COLORS[lv]
    P = ["<!doctype html>", "<html lang='en'><head><meta charset='utf-8'>",
         f"<title>mmtriage: {e(doc['host'])}</title>", f"<style>{_CSS}</style></head><body>",
         f"<h1>mmtriage: {e(doc['host'])}</h1>",
         f"<div class='verdict' style='border-color:{color};background:{color}14'>"
         f"<b style='color:{color}'>{e(LEVEL_TITLES[lv])}</b>{e(doc['verdict'])}</div>",
         "<table class='facts'>"]
    for k, v in fact_rows(doc):
        P.append(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>")
    P.append("</table>")
    rows = count_rows(doc)
    if rows:
        P += ["<h2>Failure counts</h2>",
              _h_table(["count", "value", "what it counts"], rows, num_cols=(1,))]
    crows = cause_rows(doc)
    if crows:
        P += ["<h2>By cause</h2>",
              _h_table(["cause", C.LABELS["printed"], C.LABELS["estimated"]],
                       [(c, f"{p:,}", f"{x:,}") for c, p, x in crows], num_cols=(1, 2))]
    if doc.get("unknown_why"):
        P += ["<h2>No decidable cause: what was missing</h2><ul>"]
        P += [f"<li>{w['failures']:,} failure{'s' if w['failures'] != 1 else ''}: "
              f"{e(w['missing'])}</li>" for w in doc["unknown_why"]]
        P.append("</ul>")
    arows = at_failure_rows(doc)
    if arows:
        P += ["<h2>At the failures</h2>", _h_table(None, arows, cls="facts")]
    srows = snapshot_rows(doc)
    if srows:
        P += ["<h2>What the snapshots show</h2>", _h_table(None, srows, cls="facts")]
    pngs = {n: d for n, d in images.items() if n.endswith(".png")}
    if pngs:
        P.append("<h2>Plots</h2>")
    for name, data in pngs.items():
        title = PLOT_TITLES.get(name[:-4], name[:-4])
        P.append(f"<h3>{e(title)}</h3><img alt='{e(title)}' "
                 f"src='data:image/png;base64,{base64.b64encode(data).decode()}'>")
    for title, key in (("By cache", "by_cache"), ("By order", "by_order"), ("By GFP", "by_gfp")):
        items = doc["breakdown"][key]
        if items:
            P += [f"<h2>{title}</h2>",
                  _h_table([title[3:], C.LABELS["printed"]],
                           [(k, f"{v:,}") for k, v in items.items()], num_cols=(1,))]
    ex = evidence_examples(doc)
    if ex:
        P.append("<h2>Evidence (one failure per cause)</h2>")
        for ev_e in ex:
            ev = ev_e.get("evidence") or {}
            P.append(f"<h3>{e(CAUSE_LABELS[ev_e['cause']])}: line {ev_e['line']:,} of "
                     f"{e(str(ev_e['source']))}</h3><ul>")
            P += [f"<li>{label}: {e(text)}</li>" for label, text in evidence_items(ev_e)]
            P.append("</ul>")
            if ev.get("zones"):
                P.append(_h_table(ZONE_HEAD, zone_rows(ev), num_cols=tuple(range(2, 9))))
    corr = doc.get("corroboration")
    if corr:
        P += ["<h2>Corroborating counters</h2>",
              _h_table(["counter", "count"], [(k, f"{v:,}") for k, v in corr["counters"].items()],
                       num_cols=(1,)),
              f"<p class='muted'>{e(corr['note'])}</p>"]
    if doc["signatures"]:
        P.append("<h2>Known issues for this kernel</h2><ul>")
        P += [f"<li><b>{e(s['id'])}</b>: {e(s['title'])} (fixed by {e(s['fixed_by'])})</li>"
              for s in doc["signatures"]]
        P.append("</ul>")
    if doc["notes"]:
        P.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in doc["notes"]) + "</ul>")
    shown = doc["events"][:1000]
    if shown:
        P.append("<h2>Records</h2>")
        if len(doc["events"]) > len(shown):
            P.append(f"<p>The first {len(shown):,} of {len(doc['events']):,}.</p>")
        P.append(_h_table(["line", "kind", "time", "comm", "cache", "request", "cause",
                           "confidence", "evidence"],
                          [(f"{x['line']:,}", x["kind"], event_time(x), x.get("comm") or "",
                            x.get("cache") or "", request_text(x), CAUSE_LABELS[x["cause"]],
                            f"{x['confidence']:.2f}", evidence_line(x)) for x in shown],
                          num_cols=(0, 2, 7)))
    P.append("</body></html>")
    return "\n".join(P)


# ---------------------------------------------------------------------------------------------
# Terminal table

def fact_rows(doc) -> list[tuple[str, str]]:
    """The host facts below the verdict, without what the verdict already says."""
    rows = [("kernel", kernel_text(doc)), ("vm.defrag_mode", defrag_text(doc)),
            ("fix", fix_text(doc)), ("exposure", exposure_text(doc)), ("kernel log", log_text(doc))]
    v = doc["verdict"].lower()
    return [(k, x) for k, x in rows if x.lower() not in v]


def table(doc: dict) -> str:
    from analyzer.output import table_text
    lv = doc["verdict_level"]
    head = [{"field": LEVEL_TITLES[lv], "value": doc["verdict"]}] + [
        {"field": k, "value": x} for k, x in fact_rows(doc)]
    out = table_text(head, title=f"mmtriage: {doc['host']}")
    rows = count_rows(doc)
    if rows:
        out += table_text([{"count": a, "value": b, "what it counts": c} for a, b, c in rows],
                          title="failure counts")
    crows = cause_rows(doc)
    if crows:
        out += table_text([{"cause": c, C.LABELS["printed"]: f"{p:,}", C.LABELS["estimated"]: f"{x:,}"}
                           for c, p, x in crows], title="by cause")
    if doc.get("unknown_why"):
        out += table_text([{"failures": f"{w['failures']:,}", "what was missing": w["missing"]}
                           for w in doc["unknown_why"]], title="no decidable cause")
    arows = at_failure_rows(doc)
    if arows:
        out += table_text([{"at the failures": a, "value": b} for a, b in arows])
    srows = snapshot_rows(doc)
    if srows:
        out += table_text([{"snapshots": a, "value": b} for a, b in srows])
    return out
