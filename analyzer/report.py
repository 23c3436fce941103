"""The per-host triage report: table (terminal), JSON, Markdown and one self-contained HTML file
with its plots embedded. Everything that came from a log is escaped in HTML."""
from __future__ import annotations

import base64
import html
import io
from datetime import timedelta
from pathlib import Path

import numpy as np

from analyzer.attribution import CAUSES

COLORS = {"defrag_nofragment_bailout": "#d62728", "low_memory": "#1f77b4",
          "high_order_fragmentation": "#ff7f0e", "speculative_expected": "#7f7f7f",
          "unknown": "#bcbd22"}
MT_COLORS = {"Unmovable": "#9467bd", "Movable": "#2ca02c", "Reclaimable": "#8c564b",
             "HighAtomic": "#e377c2", "CMA": "#17becf", "Isolate": "#7f7f7f"}


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


def plots(doc: dict, bundle, outdir: Path | None = None, fmt: str = "png") -> dict:
    """Render the three figures. Returns {name: bytes}; also writes them to outdir if given."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = {}
    # 1. failures over time: printed reports, and estimated (printed + suppressed) by cause
    times = _event_times(doc, bundle)
    evs = [(t, e) for t, e in zip(times, doc["events"]) if t is not None and "cause" in e]
    fig, ax = plt.subplots(figsize=(9, 3.6))
    if evs:
        tmin = min(t for t, _ in evs)
        tmax = max(t for t, _ in evs)
        span = max(tmax - tmin, 1.0)
        nb = 60
        edges = np.linspace(tmin, tmin + span * 1.0001, nb + 1)
        bottom = np.zeros(nb)
        for cause in CAUSES:
            ts = [t for t, e in evs if e["cause"] == cause and not e.get("slab_page")]
            if not ts:
                continue
            h, _ = np.histogram(ts, edges)
            ax.bar(edges[:-1], h, width=np.diff(edges), bottom=bottom, align="edge",
                   color=COLORS[cause], label=f"printed: {cause}")
            bottom += h
        sup = [(s["time_s"], s["count"]) for s in doc.get("suppressions", [])
               if s.get("time_s") is not None and s["func"] in ("slab_out_of_memory", "warn_alloc")]
        if sup:
            st = np.array([x for x, _ in sup])
            sc = np.array([c for _, c in sup], dtype=float)
            h, _ = np.histogram(st, edges, weights=sc)
            ax2 = ax.twinx()
            ax2.step(edges[:-1], np.cumsum(h) + np.cumsum(bottom), where="post", color="black",
                     lw=1.2, label="estimated, cumulative")
            ax2.set_ylabel("estimated failures (cumulative)")
            ax2.legend(loc="upper left", fontsize=8)
        ax.set_xlabel("seconds since boot")
        ax.set_ylabel("printed reports per bin")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no failures with a timestamp", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_title("Allocation failures over time")
    fig.tight_layout()
    figs["failures_over_time"] = fig

    # 2. free memory by migratetype x order at the failures (from evidence)
    fig, ax = plt.subplots(figsize=(9, 3.2))
    rows: dict = {}
    norders = 0
    for e in doc["events"]:
        fb = e.get("evidence", {}).get("free_by_type_kb")
        bo = e.get("evidence", {}).get("free_mib_other_types_by_order")
        if bo:
            for o, v in bo.items():
                rows.setdefault("other types", {}).setdefault(int(o), []).append(v)
                norders = max(norders, int(o) + 1)
    snap_mat = _snapshot_matrix(bundle, doc)
    if snap_mat is not None:
        from matplotlib.colors import LogNorm
        mat, types, orders, name = snap_mat
        im = ax.imshow(np.where(mat > 0, mat, np.nan), aspect="auto", cmap="viridis",
                       norm=LogNorm(vmin=max(mat[mat > 0].min(), 0.01) if (mat > 0).any() else 0.01,
                                    vmax=max(mat.max(), 0.02)))
        for (i, j), v in np.ndenumerate(mat):
            if v > 0:
                ax.text(j, i, f"{v:.0f}" if v >= 10 else f"{v:.1f}", ha="center", va="center",
                        fontsize=7, color="white" if v < mat.max() / 3 else "black")
        ax.set_yticks(range(len(types)), types)
        ax.set_xticks(range(orders), [str(o) for o in range(orders)])
        ax.set_title(f"Free MiB by migratetype x order (snapshot {name}, nearest the failures)")
        fig.colorbar(im, ax=ax, label="MiB (log scale)")
    elif rows:
        mat = np.zeros((1, norders))
        for o, v in rows["other types"].items():
            mat[0, o] = float(np.median(v))
        im = ax.imshow(mat, aspect="auto", cmap="viridis")
        ax.set_yticks([0], ["free in other types"])
        ax.set_xticks(range(norders), [str(o) for o in range(norders)])
        ax.set_title("Free MiB in other migratetypes by order at the failures (Mem-Info)")
        fig.colorbar(im, ax=ax, label="MiB (median)")
    else:
        ax.text(0.5, 0.5, "no free-list state recorded", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("order")
    fig.tight_layout()
    figs["free_by_type_order"] = fig

    # 3. free pages by migratetype over time (snapshots), failures marked
    fig, ax = plt.subplots(figsize=(9, 3.4))
    if bundle is not None and bundle.snapshots and any(s.pagetypeinfo for s in bundle.snapshots):
        t0 = bundle.boot_time or bundle.snapshots[0].time
        xs = [(s.time - t0).total_seconds() for s in bundle.snapshots if s.pagetypeinfo]
        by: dict = {}
        for s in bundle.snapshots:
            if not s.pagetypeinfo:
                continue
            tot: dict = {}
            for r in s.pagetypeinfo.free:
                tot[r.type] = tot.get(r.type, 0) + sum(c << o for o, c in enumerate(r.counts))
            for k in set(by) | set(tot):
                by.setdefault(k, []).append(tot.get(k, 0) * 4 / 1024)
        for k, v in by.items():
            if max(v) > 0:
                ax.plot(xs, v, marker="o", label=k, color=MT_COLORS.get(k))
        fts = [t for t, e in evs if not e.get("slab_page")]
        if fts:
            ymax = max(max(v) for v in by.values()) or 1
            ax.vlines(fts, 0, ymax * 0.05, color="red", lw=0.6, label="failure (printed)")
        ax.set_xlabel("seconds since boot" if bundle.boot_time else "seconds since first snapshot")
        ax.set_ylabel("free MiB")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no pagetypeinfo snapshots", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_title("Free memory by migratetype over time")
    fig.tight_layout()
    figs["free_over_time"] = fig

    out = {}
    for name, f in figs.items():
        for ext in ("png", "svg"):
            buf = io.BytesIO()
            f.savefig(buf, format=ext, dpi=110)
            out[f"{name}.{ext}"] = buf.getvalue()
            if outdir is not None:
                Path(outdir).mkdir(parents=True, exist_ok=True)
                (Path(outdir) / f"{name}.{ext}").write_bytes(buf.getvalue())
        plt.close(f)
    return out


def _snapshot_matrix(bundle, doc=None):
    if bundle is None:
        return None
    snaps = [s for s in bundle.snapshots if s.pagetypeinfo]
    if not snaps:
        return None
    # the snapshot nearest the failures in time; without aligned times, the one with the
    # fewest free pageblocks (the state failures meet)
    times = []
    for e in (doc or {}).get("events", []):
        w = bundle.event_wall_time(e)
        if w is not None:
            times.append(w.timestamp())
    if times:
        mid = float(np.median(times))
        s = min(snaps, key=lambda x: abs(x.time.timestamp() - mid))
    else:
        pbo = snaps[0].pagetypeinfo.pageblock_order or 9
        s = min(snaps, key=lambda x: sum(sum(c << (o - pbo) for o, c in enumerate(r.counts)
                                             if o >= pbo) for r in x.pagetypeinfo.free))
    types = []
    for r in s.pagetypeinfo.free:
        if r.type not in types:
            types.append(r.type)
    orders = s.pagetypeinfo.orders
    mat = np.zeros((len(types), orders))
    for r in s.pagetypeinfo.free:
        for o, c in enumerate(r.counts):
            mat[types.index(r.type), o] += (c << o) * 4 / 1024
    return mat, types, orders, s.name


def _kv(d):
    if isinstance(d, dict):
        return f"{d.get('value')} (from {d.get('source')})"
    return str(d)


def markdown(doc: dict, images: dict | None = None) -> str:
    f = doc["failures"]
    lines = [f"# mmtriage: {doc['host']}", "", f"**{doc['verdict']}**", "",
             "| | |", "|---|---|",
             f"| kernel | {_kv(doc['kernel_release'])} |",
             f"| defrag_mode | {_kv(doc['defrag_mode'])} |",
             f"| fix status | {doc['fix']['status']} ({doc['fix']['detail']}) |",
             f"| failures reported | {f['reported']:,} |",
             f"| failures estimated (printed + suppressed, a lower bound) | {f['estimated']:,} |",
             f"| per hour (estimated) | {f['estimated_per_hour'] if f['estimated_per_hour'] is not None else '?'} |",
             ""]
    lines += ["## By cause", "", "| cause | reported | estimated |", "|---|---:|---:|"]
    for c in CAUSES:
        lines.append(f"| {c} | {doc['attribution'][c]:,} | {f['by_cause_estimated'][c]:,} |")
    for title, key in (("By cache", "by_cache"), ("By order", "by_order"), ("By GFP", "by_gfp")):
        lines += ["", f"## {title}", "", "| | reported |", "|---|---:|"]
        for k, v in doc["breakdown"][key].items():
            lines.append(f"| {k} | {v:,} |")
    af = doc["at_failure"]
    lines += ["", "## At the failures", "",
              f"- free in other migratetypes (median): {af['free_mib_other_types_median']} MiB",
              f"- free pageblocks (max): {af['free_pageblocks_max']}",
              f"- smallest watermark margin: {af['watermark_margin_kb_min']} kB"]
    if af["free_mib_other_types_by_order_median"]:
        lines.append("- by order (MiB): " + ", ".join(
            f"{o}: {v}" for o, v in af["free_mib_other_types_by_order_median"].items()))
    if doc.get("corroboration"):
        lines += ["", "## Corroborating counters", ""]
        for k, v in doc["corroboration"]["counters"].items():
            lines.append(f"- {k}: {v:,} ({doc['corroboration']['note']})")
    if doc["signatures"]:
        lines += ["", "## Known signatures for this kernel", ""]
        for s in doc["signatures"]:
            lines.append(f"- **{s['id']}**: {s['title']} — fixed by {s['fixed_by']}")
    if doc["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in doc["notes"]]
    if images:
        lines += ["", "## Plots", ""]
        for name in images:
            lines.append(f"![{name}]({name})")
    lines += ["", "## Records", "", "| line | kind | time | cause | conf. | request | evidence |",
              "|---:|---|---:|---|---:|---|---|"]
    for e in doc["events"][:500]:
        req = e.get("evidence", {}).get("request", {})
        lines.append(f"| {e['line']} | {e['kind']} | {e.get('time_s') or e.get('time_wall') or ''} "
                     f"| {e['cause']} | {e['confidence']} | {req.get('gfp', '')} o{req.get('order', '')} "
                     f"| {_md_escape(e.get('evidence', {}).get('source', ''))} |")
    return "\n".join(lines) + "\n"


def _md_escape(s: str) -> str:
    return str(s).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def html_report(doc: dict, images: dict) -> str:
    esc = html.escape
    f = doc["failures"]
    parts = ["<!doctype html><html><head><meta charset='utf-8'>",
             f"<title>mmtriage: {esc(doc['host'])}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;"
             "font-size:13px}th{background:#f4f4f4}.verdict{font-size:1.15em;background:#fff4e5;"
             "padding:1em;border-left:5px solid #d62728}</style></head><body>",
             f"<h1>mmtriage: {esc(doc['host'])}</h1>",
             f"<p class='verdict'>{esc(doc['verdict'])}</p>", "<table>"]
    for k, v in (("kernel", _kv(doc["kernel_release"])), ("defrag_mode", _kv(doc["defrag_mode"])),
                 ("fix status", f"{doc['fix']['status']} ({doc['fix']['detail']})"),
                 ("failures reported", f"{f['reported']:,}"),
                 ("failures estimated (lower bound)", f"{f['estimated']:,}"),
                 ("per hour (estimated)", str(f["estimated_per_hour"]))):
        parts.append(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>")
    parts.append("</table><h2>By cause</h2><table><tr><th>cause</th><th>reported</th>"
                 "<th>estimated</th></tr>")
    for c in CAUSES:
        parts.append(f"<tr><td>{esc(c)}</td><td>{doc['attribution'][c]:,}</td>"
                     f"<td>{f['by_cause_estimated'][c]:,}</td></tr>")
    parts.append("</table>")
    for title, key in (("By cache", "by_cache"), ("By order", "by_order"), ("By GFP", "by_gfp")):
        parts.append(f"<h2>{title}</h2><table>")
        for k, v in doc["breakdown"][key].items():
            parts.append(f"<tr><td>{esc(str(k))}</td><td>{v:,}</td></tr>")
        parts.append("</table>")
    if doc.get("corroboration"):
        parts.append("<h2>Corroborating counters</h2><ul>")
        for k, v in doc["corroboration"]["counters"].items():
            parts.append(f"<li>{esc(k)}: {v:,}</li>")
        parts.append("</ul>")
    for name, data in images.items():
        if name.endswith(".png"):
            parts.append(f"<h3>{esc(name[:-4].replace('_', ' '))}</h3><img alt='{esc(name)}' "
                         f"src='data:image/png;base64,{base64.b64encode(data).decode()}'>")
    if doc["signatures"]:
        parts.append("<h2>Known signatures</h2><ul>")
        for s in doc["signatures"]:
            parts.append(f"<li><b>{esc(s['id'])}</b>: {esc(s['title'])} (fixed by "
                         f"{esc(s['fixed_by'])})</li>")
        parts.append("</ul>")
    if doc["notes"]:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in doc["notes"])
                     + "</ul>")
    parts.append("<h2>Records</h2><table><tr><th>line</th><th>kind</th><th>time</th><th>comm</th>"
                 "<th>cache</th><th>gfp</th><th>cause</th><th>confidence</th><th>evidence</th></tr>")
    for e in doc["events"][:1000]:
        parts.append(
            "<tr>" + "".join(f"<td>{esc(str(x))}</td>" for x in (
                e["line"], e["kind"], e.get("time_s") or e.get("time_wall") or "",
                e.get("comm") or "", e.get("cache") or "", e.get("gfp_text") or "", e["cause"],
                e["confidence"], e.get("evidence", {}).get("source", ""))) + "</tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts)


def table(doc: dict) -> str:
    from analyzer.output import table_text
    f = doc["failures"]
    head = [{"field": "verdict", "value": doc["verdict"]},
            {"field": "kernel", "value": _kv(doc["kernel_release"])},
            {"field": "defrag_mode", "value": _kv(doc["defrag_mode"])},
            {"field": "fix", "value": f"{doc['fix']['status']}: {doc['fix']['detail']}"},
            {"field": "reported", "value": f["reported"]},
            {"field": "estimated (lower bound)", "value": f["estimated"]},
            {"field": "per hour (estimated)", "value": f["estimated_per_hour"]}]
    out = table_text(head, title=f"mmtriage: {doc['host']}")
    out += table_text([{"cause": c, "reported": doc["attribution"][c],
                        "estimated": f["by_cause_estimated"][c]} for c in CAUSES], title="by cause")
    return out
