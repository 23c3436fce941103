"""Fleet report: DuckDB over the dataset's parquet files."""
from __future__ import annotations

import base64
import html
import io
import time
from pathlib import Path

from analyzer.fleet import connect

CAUSE_COLS = {"defrag_nofragment_bailout": "bailout_estimated", "low_memory": "low_memory_estimated",
              "high_order_fragmentation": "high_order_estimated",
              "speculative_expected": "speculative_estimated", "unknown": "unknown_estimated"}


def _where(kernel, since, host) -> tuple[str, list]:
    conds, args = [], []
    if kernel:
        conds.append("kernel_release LIKE ?")
        args.append(kernel.replace("*", "%") + ("%" if "%" not in kernel and "*" not in kernel else ""))
    if since:
        conds.append("last_time >= CAST(? AS TIMESTAMPTZ)")
        args.append(since)
    if host:
        conds.append("host LIKE ?")
        args.append(host.replace("*", "%"))
    return ("WHERE " + " AND ".join(conds)) if conds else "", args


def _rows(con, sql, args=()):
    cur = con.execute(sql, list(args))
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def report(dataset: str | Path, kernel: str | None = None, since: str | None = None,
           host: str | None = None, top: int = 20) -> dict:
    t0 = time.perf_counter()
    con = connect(dataset)
    where, args = _where(kernel, since, host)
    con.execute(f"CREATE TEMP TABLE h AS SELECT * FROM hosts {where}", args)
    tot = _rows(con, """SELECT count(*) AS hosts, count(*) FILTER (WHERE failures_reported > 0)
        AS hosts_failing, coalesce(sum(failures_reported), 0) AS reported,
        coalesce(sum(failures_estimated), 0) AS estimated,
        coalesce(sum(corroborated_errors), 0) AS corroborated FROM h""")[0]
    causes = _rows(con, "SELECT " + ", ".join(f"coalesce(sum({c}), 0) AS \"{k}\""
                                              for k, c in CAUSE_COLS.items()) + " FROM h")[0]
    est = sum(causes.values()) or 1
    share = {k: round(v / est, 4) for k, v in causes.items()}
    ranked = _rows(con, f"""SELECT host, kernel_release, defrag_mode, fix_status,
        failures_reported AS reported, failures_estimated AS estimated,
        round(failures_per_hour, 1) AS per_hour, bailout_estimated AS bailout,
        free_mib_other_types, verdict FROM h WHERE failures_estimated > 0
        ORDER BY failures_per_hour DESC NULLS LAST, failures_estimated DESC, host LIMIT {int(top)}""")
    matrix = _rows(con, """SELECT kernel_release, defrag_mode, fix_status, count(*) AS hosts,
        count(*) FILTER (WHERE failures_reported > 0) AS failing,
        sum(failures_estimated) AS estimated,
        round(avg(coalesce(failures_per_hour, 0)), 1) AS mean_per_hour,
        sum(bailout_estimated) AS bailout FROM h GROUP BY ALL
        ORDER BY estimated DESC, kernel_release""")
    patch_first = _rows(con, f"""SELECT host, kernel_release, fix_status, bailout_estimated AS bailout,
        failures_estimated AS estimated, round(failures_per_hour, 1) AS per_hour
        FROM h WHERE bailout_estimated > 0 AND bailout_estimated >= 0.5 * failures_estimated
        ORDER BY bailout_estimated DESC, host LIMIT {int(top)}""")
    n_patch = _rows(con, """SELECT count(*) AS n FROM h WHERE bailout_estimated > 0
        AND bailout_estimated >= 0.5 * failures_estimated""")[0]["n"]
    dist = _rows(con, """SELECT failures_estimated AS f, coalesce(failures_per_hour, 0) AS r,
        free_mib_other_types AS free FROM h""")
    wall = time.perf_counter() - t0
    return {"dataset": str(dataset), "filters": {"kernel": kernel, "since": since, "host": host},
            "totals": tot, "by_cause_estimated": causes, "share_by_cause": share,
            "top_hosts": ranked, "kernel_matrix": matrix,
            "patch_first": {"hosts": n_patch, "top": patch_first},
            "distribution": dist, "wall_s": round(wall, 3)}


def plots(doc: dict) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    out = {}
    d = doc["distribution"]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    vals = np.array([r["f"] or 0 for r in d], dtype=float)
    if len(vals):
        ax.hist(np.log10(vals + 1), bins=40, color="#1f77b4")
    ax.set_xlabel("log10(estimated failures + 1) per host")
    ax.set_ylabel("hosts")
    ax.set_title("Failures per host")
    fig.tight_layout()
    out["failures_per_host"] = fig
    fig, ax = plt.subplots(figsize=(7, 3.6))
    pts = [(r["free"], r["r"]) for r in d if r["free"] is not None and r["r"]]
    if pts:
        x, y = zip(*pts)
        ax.scatter(np.array(x) / 1024, y, s=8, alpha=0.6, color="#d62728")
        ax.set_yscale("log")
    ax.set_xlabel("free GiB in other migratetypes at failure (median)")
    ax.set_ylabel("estimated failures / hour")
    ax.set_title("Free memory elsewhere vs failure rate")
    fig.tight_layout()
    out["free_vs_rate"] = fig
    res = {}
    for name, f in out.items():
        for ext in ("png", "svg"):
            buf = io.BytesIO()
            f.savefig(buf, format=ext, dpi=110)
            res[f"{name}.{ext}"] = buf.getvalue()
        plt.close(f)
    return res


def markdown(doc: dict) -> str:
    t = doc["totals"]
    lines = [f"# Fleet report: {doc['dataset']}", "",
             f"{t['hosts']:,} hosts, {t['hosts_failing']:,} with failures; "
             f"{t['reported']:,} failures reported, ≈{t['estimated']:,} estimated (a lower bound). "
             f"{doc['patch_first']['hosts']:,} hosts are dominated by the defrag_mode bailout.", "",
             "## Share of estimated failures by cause", "", "| cause | estimated | share |",
             "|---|---:|---:|"]
    for k, v in doc["by_cause_estimated"].items():
        lines.append(f"| {k} | {v:,} | {doc['share_by_cause'][k]:.1%} |")
    for title, key in (("Hosts ranked by estimated failures per hour", "top_hosts"),
                       ("Kernel x defrag_mode x fix status", "kernel_matrix")):
        rows = doc[key]
        lines += ["", f"## {title}", ""]
        if rows:
            cols = [c for c in rows[0] if c != "verdict"]
            lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            for r in rows:
                lines.append("| " + " | ".join(str(r[c]).replace("|", "\\|") for c in cols) + " |")
    lines += ["", "## Patch first (bailout dominates)", ""]
    for r in doc["patch_first"]["top"]:
        lines.append(f"- {r['host']} ({r['kernel_release']}): {r['bailout']:,} of {r['estimated']:,}")
    return "\n".join(lines) + "\n"


def html_report(doc: dict, images: dict) -> str:
    md = markdown(doc)
    body = "<pre>" + html.escape(md) + "</pre>"
    imgs = "".join(f"<h3>{html.escape(n)}</h3><img src='data:image/png;base64,"
                   f"{base64.b64encode(v).decode()}'>" for n, v in images.items() if n.endswith(".png"))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>mmtriage fleet</title></head>"
            f"<body>{body}{imgs}</body></html>")
