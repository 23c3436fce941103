"""Fleet report: DuckDB over the dataset's parquet files.

Hosts are distinct hosts: each is counted once, at its newest bundle (by the bundle's last event
or snapshot time, then by ingest time) among the bundles the filters keep; ``all_bundles``
counts every bundle instead. The report always says how many bundles stood behind the hosts.
"""
from __future__ import annotations

import base64
import html
import io
import math
import re
import time
from datetime import date, datetime, timezone
from pathlib import Path

from analyzer.fleet import connect

CAUSE_COLS = {"defrag_nofragment_bailout": "bailout_estimated", "low_memory": "low_memory_estimated",
              "high_order_fragmentation": "high_order_estimated",
              "speculative_expected": "speculative_estimated", "unknown": "unknown_estimated"}

# Column labels of the ranked tables as people read them (JSON keeps the keys).
LABELS = {"host": "host", "kernel_release": "kernel", "defrag_mode": "defrag_mode",
          "fix_status": "fix", "reported": "reported", "estimated": "estimated",
          "per_hour": "per hour", "bailout": "bailout", "free_mib_other_types": "free MiB elsewhere",
          "last_seen": "last seen", "hosts": "hosts", "bundles": "bundles", "failing": "failing",
          "mean_per_hour": "mean per hour"}
TEXT_COLS = ("host", "kernel", "fix", "defrag_mode", "last seen")  # left-aligned in Markdown


# -- options -----------------------------------------------------------------------------------

def parse_since(since: str | datetime | None) -> datetime | None:
    """``--since`` as an aware UTC datetime; a date or time without a zone is UTC."""
    if since is None:
        return None
    if isinstance(since, datetime):
        dt = since
    else:
        text = str(since).strip()
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError(f"--since: not an ISO 8601 date or time (e.g. 2026-11-25 or "
                             f"2026-11-25T20:00Z): {text!r}") from None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def check_top(top: int) -> int:
    if not isinstance(top, int) or isinstance(top, bool) or top < 0:
        raise ValueError(f"--top: must be a whole number 0 or more, got {top!r}")
    return top


def _where(kernel, since, host) -> tuple[str, list]:
    """Bound parameters only: a filter's text never becomes SQL."""
    conds, args = [], []
    if kernel:
        if "*" in kernel or "?" in kernel:
            conds.append("kernel_release GLOB ?")
            args.append(kernel)
        else:
            conds.append("starts_with(kernel_release, ?)")
            args.append(kernel)
    if since:
        conds.append("last_time >= ?")
        args.append(since)
    if host:
        conds.append("host GLOB ?")
        args.append(host)
    return ("WHERE " + " AND ".join(conds)) if conds else "", args


def _rows(con, sql, args=()):
    cur = con.execute(sql, list(args))
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def _filters_text(kernel, since, host) -> str:
    parts = []
    if kernel:
        parts.append(f"--kernel {kernel}")
    if since:
        parts.append(f"--since {since.isoformat().replace('+00:00', 'Z')}")
    if host:
        parts.append(f"--host {host}")
    return " ".join(parts)


def report(dataset: str | Path, kernel: str | None = None, since: str | datetime | None = None,
           host: str | None = None, top: int = 20, all_bundles: bool = False) -> dict:
    t0 = time.perf_counter()
    since = parse_since(since)
    top = check_top(top)
    con = connect(dataset)
    where, args = _where(kernel, since, host)
    # One row per live bundle matching the filters, with its ingest time for the tie-break.
    con.execute(f"""CREATE TEMP TABLE b AS SELECT hosts.*, m.ingested_at FROM hosts
        LEFT JOIN (SELECT bundle_key, max(ingested_at) AS ingested_at FROM manifest GROUP BY 1) m
        USING (bundle_key) {where}""", args)
    if all_bundles:
        con.execute("CREATE TEMP TABLE h AS SELECT * FROM b")
    else:
        con.execute("""CREATE TEMP TABLE h AS SELECT * EXCLUDE (rn) FROM (
            SELECT *, row_number() OVER (PARTITION BY host ORDER BY last_time DESC NULLS LAST,
                   ingested_at DESC NULLS LAST, bundle_key DESC) AS rn FROM b) WHERE rn = 1""")
    everything = _rows(con, "SELECT count(DISTINCT host) AS hosts, count(*) AS bundles FROM hosts")[0]
    tot = _rows(con, """SELECT (SELECT count(DISTINCT host) FROM b) AS hosts,
        (SELECT count(*) FROM b) AS bundles,
        count(DISTINCT host) FILTER (WHERE failures_reported > 0) AS hosts_failing,
        coalesce(sum(failures_reported), 0) AS reported,
        coalesce(sum(failures_estimated), 0) AS estimated,
        coalesce(sum(corroborated_errors), 0) AS corroborated,
        count(*) FILTER (WHERE failures_estimated IS NULL AND failures_reported > 0)
            AS estimate_unknown FROM h""")[0]
    causes = _rows(con, "SELECT " + ", ".join(f"coalesce(sum({c}), 0) AS \"{k}\""
                                              for k, c in CAUSE_COLS.items()) + " FROM h")[0]
    causes = {k: int(v) for k, v in causes.items()}
    est = sum(causes.values()) or 1
    share = {k: round(v / est, 4) for k, v in causes.items()}
    ranked = _rows(con, """SELECT host, kernel_release, defrag_mode, fix_status,
        failures_reported AS reported, failures_estimated AS estimated,
        round(failures_per_hour, 1) AS per_hour, bailout_estimated AS bailout,
        free_mib_other_types, last_time AS last_seen, verdict FROM h WHERE failures_estimated > 0
        ORDER BY failures_per_hour DESC NULLS LAST, failures_estimated DESC, host LIMIT ?""", [top])
    matrix = _rows(con, f"""SELECT kernel_release, defrag_mode, fix_status,
        count(DISTINCT host) AS hosts, {"count(*) AS bundles, " if all_bundles else ""}
        count(DISTINCT host) FILTER (WHERE failures_reported > 0) AS failing,
        sum(failures_estimated) AS estimated,
        round(avg(coalesce(failures_per_hour, 0)), 1) AS mean_per_hour,
        sum(bailout_estimated) AS bailout FROM h GROUP BY ALL
        ORDER BY estimated DESC NULLS LAST, kernel_release""")
    patch_first = _rows(con, """SELECT host, kernel_release, fix_status, bailout_estimated AS bailout,
        failures_estimated AS estimated, round(failures_per_hour, 1) AS per_hour
        FROM h WHERE bailout_estimated > 0 AND bailout_estimated >= 0.5 * failures_estimated
        ORDER BY bailout_estimated DESC, host LIMIT ?""", [top])
    n_patch = _rows(con, """SELECT count(DISTINCT host) AS n FROM h WHERE bailout_estimated > 0
        AND bailout_estimated >= 0.5 * failures_estimated""")[0]["n"]
    dist = _rows(con, """SELECT failures_estimated AS f, coalesce(failures_per_hour, 0) AS r,
        free_mib_other_types AS free FROM h ORDER BY host, bundle_key""")
    note = None
    filt = _filters_text(kernel, since, host)
    if not everything["bundles"]:
        note = "The dataset holds no bundles yet: nothing to report."
    elif not tot["bundles"]:
        note = (f"No bundle matches {filt}: the dataset holds {everything['hosts']:,} "
                f"host{'s' * (everything['hosts'] != 1)} in {everything['bundles']:,} "
                f"bundle{'s' * (everything['bundles'] != 1)}.")
    wall = time.perf_counter() - t0
    return {"dataset": str(dataset),
            "filters": {"kernel": kernel, "since": since, "host": host},
            "counting": "every bundle" if all_bundles else "newest bundle per host",
            "note": note, "dataset_totals": everything,
            "totals": tot, "by_cause_estimated": causes, "share_by_cause": share,
            "top_hosts": ranked, "kernel_matrix": matrix,
            "patch_first": {"hosts": n_patch, "top": patch_first},
            "distribution": dist, "wall_s": round(wall, 3)}


# -- numbers and text for people ---------------------------------------------------------------

def human(v, none: str = "—") -> str:
    """A value as a person reads it: thousands separators, no scientific notation, no Python
    reprs. Machines get the JSON."""
    if v is None:
        return none
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return none
        a = abs(v)
        if v == int(v):
            return f"{v:,.0f}"
        if a >= 100:
            return f"{v:,.1f}"
        if a >= 1:
            return f"{v:,.2f}"
        if a >= 0.001:
            return f"{v:.3f}".rstrip("0").rstrip(".")
        return "< 0.001" if v > 0 else "> -0.001"
    if type(v).__name__ == "Decimal":
        return human(float(v), none)
    if isinstance(v, datetime):
        v = v.astimezone(timezone.utc) if v.tzinfo else v
        return v.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if v.tzinfo else "")
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, (dict, list, tuple)):
        from analyzer.output import dumps
        return dumps(v, None)
    return str(v)


_MD_SPECIAL = re.compile(r"([\\`*_\[\]{}|#~!])")


def md(text) -> str:
    """Text from a bundle (host names, kernel strings, cache names) made inert in Markdown:
    HTML escaped (Markdown is often rendered as HTML), Markdown punctuation backslashed, one
    line."""
    s = " ".join(str(text).split())
    return _MD_SPECIAL.sub(r"\\\1", html.escape(s, quote=True))


def _people_rows(rows: list[dict], cols: list[str]) -> list[dict]:
    out = []
    for r in rows:
        d = {}
        for c in cols:
            v = r.get(c)
            if c == "defrag_mode":
                d[LABELS.get(c, c)] = "unknown" if v is None else str(v)
            else:
                d[LABELS.get(c, c)] = human(v)
        out.append(d)
    return out


def _cols(rows: list[dict]) -> list[str]:
    return [c for c in (rows[0] if rows else {}) if c != "verdict"]


def _summary(doc: dict, mark=lambda s: s) -> list[str]:
    t = doc["totals"]
    per = ("each counted at its newest bundle" if doc["counting"] != "every bundle"
           else "every bundle counted")
    hosts = f"{t['hosts']:,} host" + "s" * (t["hosts"] != 1)
    lines = [f"{mark(hosts)} ({per}; {t['bundles']:,} bundle"
             f"{'s' * (t['bundles'] != 1)}), {t['hosts_failing']:,} with failures: "
             f"{t['reported']:,} failures reported (printed in the logs), "
             f"≈{t['estimated']:,} estimated (a lower bound, counting suppressed reports)"
             + (f", {t['corroborated']:,} counted by kernel error counters" if t["corroborated"]
                else "") + "."
             + (f" The estimate of {t['estimate_unknown']:,} failing host"
                f"{'s' * (t['estimate_unknown'] != 1)} is unknown (a count too large to be real "
                "at ingest) and not in the sum." if t["estimate_unknown"] else ""),
             f"{doc['patch_first']['hosts']:,} host"
             f"{' is' if doc['patch_first']['hosts'] == 1 else 's are'} dominated by the "
             "defrag_mode bailout."]
    return lines


def markdown(doc: dict) -> str:
    f = _filters_text(doc["filters"]["kernel"], doc["filters"]["since"], doc["filters"]["host"])
    lines = [f"# Fleet report: {md(doc['dataset'])}", ""]
    if f:
        lines += [f"Filters: {md(f)}", ""]
    if doc["note"]:
        return "\n".join(lines + [md(doc["note"])]) + "\n"
    lines += [" ".join(_summary(doc, lambda s: f"**{s}**")), "",
              "## Share of estimated failures by cause", "", "| cause | estimated | share |",
              "|---|---:|---:|"]
    for k, v in doc["by_cause_estimated"].items():
        lines.append(f"| {md(k)} | {human(v)} | {doc['share_by_cause'][k]:.1%} |")
    for title, key in (("Hosts ranked by estimated failures per hour", "top_hosts"),
                       ("Kernel x defrag_mode x fix status", "kernel_matrix")):
        rows = _people_rows(doc[key], _cols(doc[key]))
        if not rows:
            continue
        cols = list(rows[0])
        lines += ["", f"## {title}", "", "| " + " | ".join(cols) + " |",
                  "|" + "|".join("---" if c in TEXT_COLS else "---:" for c in cols) + "|"]
        for r in rows:
            lines.append("| " + " | ".join(md(r[c]) for c in cols) + " |")
    if doc["patch_first"]["top"]:
        lines += ["", "## Patch first (bailout dominates)", ""]
        for r in doc["patch_first"]["top"]:
            lines.append(f"- {md(r['host'])} ({md(r['kernel_release'])}): {human(r['bailout'])} "
                         f"of {human(r['estimated'])} estimated failures are the bailout")
    return "\n".join(lines) + "\n"


def table(doc: dict) -> str:
    from analyzer.output import table_text
    f = _filters_text(doc["filters"]["kernel"], doc["filters"]["since"], doc["filters"]["host"])
    head = [f"Fleet report: {doc['dataset']}"] + ([f"Filters: {f}"] if f else [])
    if doc["note"]:
        return "\n".join(head + [doc["note"]]) + "\n"
    text = "\n".join(head + _summary(doc)) + "\n"
    text += table_text([{"cause": k, "estimated": human(v),
                         "share": f"{doc['share_by_cause'][k]:.1%}"}
                        for k, v in doc["by_cause_estimated"].items()], title="by cause")
    for title, key in (("top hosts", "top_hosts"), ("kernel x defrag_mode x fix", "kernel_matrix")):
        rows = _people_rows(doc[key], _cols(doc[key]))
        if rows:
            text += table_text(rows, title=title)
    return text


# -- pictures ----------------------------------------------------------------------------------

def plots(doc: dict) -> dict:
    """PNG and SVG of the distributions; a plot with nothing to draw is left out."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    out = {}
    d = doc["distribution"]
    vals = np.array([r["f"] or 0 for r in d], dtype=float)
    if len(vals):
        fig, ax = plt.subplots(figsize=(7, 3.2))
        ax.hist(np.log10(vals + 1), bins=40, color="#1f77b4")
        ax.set_xlabel("log10(estimated failures + 1) per host")
        ax.set_ylabel("hosts")
        ax.set_title("Failures per host")
        fig.tight_layout()
        out["failures_per_host"] = fig
    pts = [(r["free"], r["r"]) for r in d if r["free"] is not None and r["r"]]
    if pts:
        fig, ax = plt.subplots(figsize=(7, 3.6))
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


def html_report(doc: dict, images: dict) -> str:
    """The Markdown rendered as an HTML document (raw HTML in it is not passed through)."""
    from markdown_it import MarkdownIt
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown(doc))
    imgs = "".join(f"<figure><img alt='{html.escape(n)}' src='data:image/png;base64,"
                   f"{base64.b64encode(v).decode()}'></figure>"
                   for n, v in images.items() if n.endswith(".png"))
    style = ("body{font-family:sans-serif;max-width:72em;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}"
             "td{text-align:right}td:first-child{text-align:left}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>mmtriage fleet report"
            f"</title><style>{style}</style></head><body>{body}{imgs}</body></html>")
