"""Every plot the tool draws, from the documents the commands build: the triage report's
(failures over time, free memory by migratetype and order), the calibration fit and the what-if
sweep. matplotlib is imported only when a plot is drawn (Agg backend; SVG text stays text).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from analyzer import counts as C
from analyzer.attribution import CAUSES
from analyzer.output import duration
from analyzer.report import CAUSE_LABELS, COLORS, MT_COLORS, PLOT_TITLES


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


# ---------------------------------------------------------------------------------------------
# Triage

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
            mib = s.page_size / 2**20
            for r in s.pagetypeinfo.free:
                tot[r.type] = tot.get(r.type, 0) + sum(c << o for o, c in enumerate(r.counts)) * mib
            series.append(tot)
        types = [t for t in MT_COLORS if any(t in x for x in series)] + sorted(
            {k for x in series for k in x} - set(MT_COLORS))
        by = {k: [x.get(k, 0) for x in series] for k in types}
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
        pbo = snaps[0].pageblock_order
        s = min(snaps, key=lambda x: sum(sum(c << (o - pbo) for o, c in enumerate(r.counts)
                                             if o >= pbo) for r in x.pagetypeinfo.free))
        why = "fewest free pageblocks"
    types = []
    for r in s.pagetypeinfo.free:
        if r.type not in types:
            types.append(r.type)
    orders = s.pagetypeinfo.orders
    mat = np.zeros((len(types), orders))
    mib = s.page_size / 2**20
    for r in s.pagetypeinfo.free:
        for o, c in enumerate(r.counts):
            mat[types.index(r.type), o] += (c << o) * mib
    keep = [i for i in range(len(types)) if mat[i].sum() > 0]
    if not keep:
        return None
    return mat[keep], [types[i] for i in keep], orders, s.name, why


# ---------------------------------------------------------------------------------------------
# Calibration

def plot_fit(result: dict, outdir) -> list:
    """Observed vs simulated over time (PNG and SVG): free memory and pageblocks by
    migratetype, objects in use. Returns the files written."""
    plt = _pyplot()
    s = result["series"]
    t = s["time_s"]
    caches = [k[len("objects_in_use_"):-len("_observed")] for k in s
              if k.startswith("objects_in_use_") and k.endswith("_observed")]
    counts = [k for k in ("failures", "send_attempts") if f"{k}_observed" in s]
    n = 2 + bool(caches) + bool(counts)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 3.8))
    colors = {"unmovable": "#9467bd", "movable": "#2ca02c", "reclaimable": "#8c564b"}
    for ty, color in colors.items():
        axes[0].plot(t, s[f"free_mib_{ty}_observed"], "o-", color=color, label=f"{ty} observed")
        axes[0].plot(t, s[f"free_mib_{ty}_simulated"], "x--", color=color, label=f"{ty} simulated")
        axes[1].plot(t, s[f"pageblocks_change_{ty}_observed"], "o-", color=color,
                     label=f"{ty} observed")
        axes[1].plot(t, s[f"pageblocks_change_{ty}_simulated"], "x--", color=color,
                     label=f"{ty} simulated")
    axes[0].set_ylabel("free MiB")
    axes[0].set_title("Free memory by migratetype")
    axes[1].set_ylabel("pageblocks, change since start")
    axes[1].set_title("Pageblocks by migratetype")
    for i, name in enumerate(caches):
        c = plt.cm.tab10(i)
        axes[2].plot(t, s[f"objects_in_use_{name}_observed"], "o-", color=c,
                     label=f"{name} observed")
        axes[2].plot(t, s[f"objects_in_use_{name}_simulated"], "x--", color=c,
                     label=f"{name} simulated")
    if caches:
        axes[2].set_title("Objects in use (slabinfo)")
    if counts:
        ax = axes[-1]
        for i, key in enumerate(counts):
            c = ("#d62728", "#1f77b4")[i]
            label = key.replace("_", " ")
            ax.plot(t, s[f"{key}_observed"], "o-", color=c, label=f"{label} observed")
            ax.plot(t, s[f"{key}_simulated"], "x--", color=c, label=f"{label} simulated")
        ax.set_title("Failures and send attempts (ICMP counters)")
        ax.set_ylabel("cumulative since start")
    for ax in axes:
        ax.set_xlabel(f"seconds after {result['start_snapshot']}")
        ax.legend(fontsize=7)
    f = result["fit"][0]
    rel = f" ({f['rel_error']:+.1%})" if f.get("rel_error") is not None else ""
    est = result.get("estimated_failures")
    fig.suptitle(f"{result['host']}: {f['observable']}: observed {f['observed']:,.0f}, simulated "
                 f"{f['simulated']:,.0f}{rel}"
                 + (f"; estimated {est['value']:,} ({est['low']:,}-{est['high']:,})" if est else ""),
                 fontsize=10)
    return _save(fig, outdir, "calibration_fit")


# What-if sweep

_KNOB_LABELS = {"min_free_kbytes": "vm.min_free_kbytes (kB)",
                "watermark_scale_factor": "vm.watermark_scale_factor",
                "watermark_boost_factor": "vm.watermark_boost_factor",
                "load_scale": "load (x the fitted rates)"}


def plot_sweep(result: dict, outdir) -> list:
    """A what-if sweep (PNG and SVG): failures (mean, 5-95 % band over seeds) and the price
    (pageblocks converted, steals, free pageblocks left) against the knob's value, the
    baseline (the host's setting) marked on both. Returns the files written."""
    plt = _pyplot()
    rows = result["rows"]
    knob = result["knob"]
    x = np.array([r["value"] for r in rows], dtype=float)
    base = result["baseline"]
    host_x = result["host_setting"][knob]["value"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11.5, 4.2))
    mean = np.array([r["failures_mean"] for r in rows])
    ax.fill_between(x, [r["failures_p5"] for r in rows], [r["failures_p95"] for r in rows],
                    color="#d62728", alpha=0.18, lw=0, label="5-95 % over seeds")
    ax.plot(x, mean, "o-", color="#d62728", label="failures (mean)")
    bm = base["failures"]["mean"]
    ax.axhspan(base["failures"]["p5"], base["failures"]["p95"], color="0.5", alpha=0.1, lw=0)
    ax.axhline(bm, color="0.35", ls="--", lw=1, label=f"baseline {bm:,.0f} (host's setting)")
    if x.min() <= host_x <= x.max():
        ax.axvline(host_x, color="0.6", ls=":", lw=1, label=f"host's {host_x:,g}")
    ax.set_ylim(bottom=0, top=max(float(np.max([r["failures_p95"] for r in rows])), bm, 1) * 1.12)
    ax.set_xlabel(_KNOB_LABELS.get(knob, knob))
    ax.set_ylabel("failures in the replayed window")
    ax.set_title("Failures")
    ax.legend(fontsize=8)
    price = (("blocks_converted", "pageblocks converted", "#9467bd", "o-"),
             ("steals", "steals", "#8c564b", "s-"),
             ("free_pageblocks_left", "free pageblocks left", "#2ca02c", "^-"))
    bp = base["price"]
    for key, label, color, style in price:
        ax2.plot(x, [r[key] for r in rows], style, color=color, label=label, ms=4)
        ax2.axhline(bp[key]["mean"], color=color, ls="--", lw=0.8, alpha=0.7)
    if x.min() <= host_x <= x.max():
        ax2.axvline(host_x, color="0.6", ls=":", lw=1)
    ax2.set_ylim(bottom=0)
    ax2.set_xlabel(_KNOB_LABELS.get(knob, knob))
    ax2.set_ylabel("count (mean over seeds; dashed: baseline)")
    ax2.set_title("Price")
    ax2.legend(fontsize=8)
    for a in (ax, ax2):
        _plain(a)
        a.grid(alpha=0.25)
    extra = f" with {', '.join(f'{k} {v:g}' for k, v in result['setting'].items())}" \
        if result.get("setting") else ""
    fig.suptitle(f"{result['host']}: {knob} swept under {result['policy']}{extra} "
                 f"({result['seeds']} seeds each)", fontsize=10)
    return _save(fig, outdir, f"whatif_sweep_{knob}")


def _save(fig, outdir, stem: str) -> list:
    """PNG and SVG of ``fig`` under ``outdir``; returns the files written."""
    plt = _pyplot()
    fig.tight_layout()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    files = []
    for ext in ("png", "svg"):
        p = outdir / f"{stem}.{ext}"
        fig.savefig(p, dpi=110)
        files.append(str(p))
    plt.close(fig)
    return files
