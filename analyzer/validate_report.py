"""``validate`` as a table, a Markdown document and an HTML page: the verdict, its reasons, and
the before and after windows side by side with the counts named as in triage
(analyzer/counts.py)."""
from __future__ import annotations

import html

from analyzer import counts as C
from analyzer.output import duration, num, table_text
from analyzer.report import _CSS, _h_table, _md_table, md

TITLES = {"fixed": "FIXED", "not_fixed": "NOT FIXED", "inconclusive": "INCONCLUSIVE"}
COLORS = {"fixed": "#2ca02c", "not_fixed": "#d62728", "inconclusive": "#7f7f7f"}
EXIT_TEXT = {"fixed": "exit 0", "not_fixed": "exit 3", "inconclusive": "exit 4"}


def _window_rows(doc: dict) -> list[tuple[str, str, str]]:
    b, a = doc["before"], doc["after"]

    def both(fn):
        return fn(b), fn(a)

    def dm(w):
        d = w["defrag_mode"]
        return "not recorded" if d.get("value") is None else f"{d['value']} (from {d['source']})"

    def sup(w):
        return ", ".join(f"{k} {v:,}" for k, v in w["suppressed"].items()) or "none"

    def corr(w):
        c = w.get("corroborated")
        return f"{c['count']:,} ({c['counter']})" if c else "none"

    def rate(w):
        r = w["rate"]
        if r.get("per_hour") is None:
            return f"not given: {r['why_not']}"
        return f"{num(r['per_hour'])}/h (95% {num(r['low'])}–{num(r['high'])})"

    def exp(w):
        e = w["exposure"]
        if not e["intervals_known"]:
            return "unknown: no snapshot pairs with load counters"
        return (f"{e['intervals_exposed']:,} of {e['intervals_known']:,} snapshot intervals in "
                f"the bailout's state with allocation load")

    def log(w):
        lg = w.get("log") or {}
        if not lg.get("found", True):
            return "none found"
        return ", ".join(lg.get("files") or []) or "?"

    def counted(fn):
        # without a kernel log nothing was counted: say so rather than print a 0
        return lambda w: fn(w) if (w.get("log") or {}).get("found", True) else "no log"

    rows = [("host", *both(lambda w: w["host"])),
            ("kernel", *both(lambda w: w["kernel_release"]["value"])),
            ("vm.defrag_mode", *both(dm)),
            ("fix", *both(lambda w: w["fix"]["detail"])),
            ("kernel log", *both(log)),
            ("window", *both(lambda w: duration(w["hours"] * 3600) if w["hours"] else "?")),
            (C.LABELS["printed"], *both(counted(lambda w: f"{w['printed']:,}"))),
            (C.LABELS["suppressed"], *both(counted(sup))),
            (C.LABELS["estimated"], *both(counted(lambda w: f"{w['estimated']:,}"))),
            ("of the bailout's kind (compared)",
             *both(counted(lambda w: f"{w['target_estimated']:,}"))),
            ("rate (of the bailout's kind)", *both(counted(rate))),
            (C.LABELS["corroborated"], *both(corr)),
            ("exposure", *both(exp))]
    return rows


def _model_rows(doc: dict) -> list[tuple[str, str]]:
    m = doc["model_check"]
    rows = []
    if m.get("would_succeed_share") is not None:
        rows.append(("decision model", f"under {m['after_policy']}, "
                                       f"{m['would_succeed_share']:.0%} of the before failures "
                                       f"would have succeeded"))
    cal = m.get("calibrated")
    if cal:
        rows.append(("calibrated model", f"{C.LABELS['model']}: "
                                         f"{num(cal['predicted_in_after_window'])} failures in "
                                         f"the after window under {cal['after_policy']}"
                                         + (" (agrees)" if cal.get("agrees") else
                                            " (disagrees)" if "agrees" in cal else "")))
    return rows


def table(doc: dict) -> str:
    v = doc["verdict"]
    out = table_text([{"": f"{TITLES[v]} ({EXIT_TEXT[v]})", "why": r} for r in doc["reasons"]],
                     title="mmtriage validate")
    out += table_text([{"": k, "before": x, "after": y} for k, x, y in _window_rows(doc)],
                      title="windows")
    mr = _model_rows(doc)
    if mr:
        out += table_text([{"model check": k, "result": x} for k, x in mr])
    return out


def markdown(doc: dict) -> str:
    v = doc["verdict"]
    L = [f"# mmtriage validate: {md(doc['before']['host'])} → {md(doc['after']['host'])}", "",
         f"**{TITLES[v]}** ({EXIT_TEXT[v]})", ""]
    L += [f"- {md(r)}" for r in doc["reasons"]]
    L += ["", "## Before and after", ""]
    L += _md_table(["", "before", "after"], [(md(k), md(x), md(y)) for k, x, y in _window_rows(doc)])
    mr = _model_rows(doc)
    if mr:
        L += ["", "## Model check", ""] + [f"- {md(k)}: {md(x)}" for k, x in mr]
    L += ["", "Counts: " + "; ".join(f"**{md(C.LABELS[k])}**: {md(C.DEFINITIONS[k])}"
                                      for k in ("printed", "suppressed", "estimated",
                                                "corroborated")) + "."]
    return "\n".join(L) + "\n"


def html_report(doc: dict) -> str:
    e = html.escape
    v = doc["verdict"]
    col = COLORS[v]
    P = ["<!doctype html>", "<html lang='en'><head><meta charset='utf-8'>",
         f"<title>mmtriage validate: {e(doc['before']['host'])} → {e(doc['after']['host'])}</title>",
         f"<style>{_CSS}</style></head><body>",
         f"<h1>mmtriage validate: {e(doc['before']['host'])} → {e(doc['after']['host'])}</h1>",
         f"<div class='verdict' style='border-color:{col};background:{col}14'>"
         f"<b style='color:{col}'>{TITLES[v]} ({EXIT_TEXT[v]})</b><ul>"
         + "".join(f"<li>{e(r)}</li>" for r in doc["reasons"]) + "</ul></div>",
         "<h2>Before and after</h2>",
         _h_table(["", "before", "after"], _window_rows(doc))]
    mr = _model_rows(doc)
    if mr:
        P += ["<h2>Model check</h2>", _h_table(None, mr, cls="facts")]
    P.append("<h2>What the counts count</h2><ul>" + "".join(
        f"<li><b>{e(C.LABELS[k])}</b>: {e(C.DEFINITIONS[k])}</li>"
        for k in ("printed", "suppressed", "estimated", "corroborated")) + "</ul>")
    P.append("</body></html>")
    return "\n".join(P)
