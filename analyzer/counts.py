"""The failure counts, defined once. Every output (table, JSON, Markdown, HTML, plots, validate,
docs) names them with these keys and labels, so that "30", "2,975" and "293,260" for the same
host are never read as disagreeing numbers for one thing.

- ``printed``: failures the kernel printed a report for. A SLUB ``slab_out_of_memory`` report
  and the ``warn_alloc`` report of its slab page are one failure.
- ``suppressed``: the N of ``<function>: N callbacks suppressed``, per function, as printed.
- ``estimated``: printed + suppressed, with the page-allocation misses of slab pages counted
  once (they are the SLUB misses). A lower bound: the kernel prints a suppressed count only
  when the next report gets through, and not every failure reaches a report at all.
- ``corroborated``: a kernel counter that counts the failed allocations' effect (ICMP
  OutErrors: echo replies whose skb could not be allocated) between two snapshots. Other
  causes feed it too; it is shown beside the log's count, never added to it.
- ``model``: the calibrated model's failures over the same window, when a fit was made.

Rates: a per-hour figure only over a window long enough to mean one (``RATE_MIN_WINDOW_S``),
with an exact Poisson interval; otherwise the reason it is not given.
"""
from __future__ import annotations

from scipy import stats

LABELS = {
    "printed": "printed",
    "suppressed": "suppressed",
    "estimated": "estimated (lower bound)",
    "corroborated": "corroborated",
    "model": "model estimate",
}
DEFINITIONS = {
    "printed": "failures the kernel printed a report for (a SLUB report and the page-allocation "
               "report of its slab page are one failure)",
    "suppressed": "the N of '<function>: N callbacks suppressed', per function",
    "estimated": "printed + suppressed, a slab page's page-allocation misses counted once; "
                 "a lower bound",
    "corroborated": "failed allocations a kernel counter saw between snapshots (e.g. ICMP "
                    "OutErrors), beside the log's count, never added to it",
    "model": "the calibrated model's failures over the same window",
}
RATE_MIN_WINDOW_S = 600.0   # below this a per-hour figure extrapolates a burst, not a rate
CONFIDENCE = 0.95


def poisson_ci(n: int, t: float, conf: float = CONFIDENCE):
    """Exact (Garwood) interval for a Poisson rate n / t."""
    if not t or t <= 0:
        return None, None
    a = 1 - conf
    lo = 0.0 if n == 0 else stats.chi2.ppf(a / 2, 2 * n) / 2
    hi = stats.chi2.ppf(1 - a / 2, 2 * n + 2) / 2
    return float(lo / t), float(hi / t)


def rate(n: int | None, window_s: float | None, count: str = "estimated") -> dict:
    """Failures per hour over the window with a 95 % exact Poisson interval, or why not."""
    out = {"count": count, "window_s": round(window_s, 3) if window_s else window_s,
           "per_hour": None, "low": None, "high": None, "confidence": CONFIDENCE}
    if n is None:
        out["why_not"] = "no count"
    elif not window_s or window_s <= 0:
        out["why_not"] = "the log carries no timestamps: no window to divide by"
    elif window_s < RATE_MIN_WINDOW_S:
        out["why_not"] = (f"the window is {window_s:,.0f} s; a per-hour rate needs at least "
                          f"{RATE_MIN_WINDOW_S / 60:.0f} min of observation")
    else:
        lo, hi = poisson_ci(n, window_s / 3600)
        out.update(per_hour=n / (window_s / 3600), low=lo, high=hi)
    return out
