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
import re

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
    m = f.get("model")
    if m is not None:
        if m.get("value") is None:
            rows.append((C.LABELS["model"], "none", f"the model could not be fitted: {m['why']}"))
        else:
            rows.append((C.LABELS["model"], f"{m['value']:,} ({m['low']:,}–{m['high']:,})",
                         f"{C.DEFINITIONS['model']} ({duration(m['window_s'])} from snapshot "
                         f"{m['start_snapshot']}), with its interval; {m['basis']}"))
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
