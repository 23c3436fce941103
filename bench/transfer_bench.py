"""Does a fit describe the host or only its run? Calibrate on one real lab bundle, hold its
workload fixed, and predict the failures of other runs (other sockets, memory, flood length,
kernel) from their own start state and send window: the transfer error.

    bench/transfer_bench.py SOURCE TARGET... [--params params.json] [--budget 60] [--seeds 4]

Each target must carry its failure counter (Icmp OutErrors); the send window (rate, start,
stop) is taken from the target's own send counters, everything else from the source's fit.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.calibrate import Fitter, calibrate, observe, send_window  # noqa: E402
from models.calibrate.observe import lab_workload  # noqa: E402
from models.calibrate.whatif import SYSCTLS, host_setting, setting_state  # noqa: E402
from parsers.bundle import load  # noqa: E402

WINDOW = ("net_rate", "net_start_s", "net_stop_s")  # the target's own, where its counters pin it


def describe(b) -> str:
    w = lab_workload(b)
    mem = (b.meta.get("captured_from") or "").split(" MiB")[0].split()[-1]
    return (f"{b.meta.get('kernel_release', '?')[:7]} dm{b.meta.get('defrag_mode', '?')}, {mem} MiB, "
            f"{w.get('nsock', '?')} sockets, {w.get('seconds', '?')} s")


def predict(target: Path, workload: dict, seeds, queues: bool = True) -> dict:
    with load(target) as b:
        obs = observe(b)
        win = send_window(obs)
        if win is None or obs.fail_series is None:
            raise SystemExit(f"{target}: no send or failure counters to compare with")
        fit = Fitter(b, [], {}, seeds)
        # the target's own recorded sysctls (written after its start snapshot), as a what-if
        # would replay them
        rec = b.meta.get("sysctls") or {}
        setting = {k: int(rec[v]) for k, v in SYSCTLS.items() if str(rec.get(v, "")).isdigit()}
        if setting:
            fit.base = setting_state(fit.base, setting, host_setting(b, fit.base.spec))
        if win["determined"]:
            p = {**workload, **{k: win[k] for k in WINDOW}}
        else:
            # the counters pin rate and stop once the start is known: the source's start
            # (the lab starts every flood the same way after its fragmented snapshot)
            p = {**workload, **fit.tie_window({**win, "net_start_s": workload["net_start_s"]})}
        # what the target's own sockets can hold (its meta.json pins it), never the source's
        p["net_hold_max"] = fit.obs.hold_max if queues else 0.0
        sims = fit.run_many(p, seeds)
        fails = np.array([s["failures"] for s in sims])
        return {"target": str(target), "what": describe(b) + "".join(
                    f", {k} {v}" for k, v in setting.items()), "observed": obs.failures,
                "predicted": float(fails.mean()), "low": float(fails.min()),
                "high": float(fails.max()),
                "error": float(fails.mean() / obs.failures - 1) if obs.failures else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", type=Path)
    ap.add_argument("targets", type=Path, nargs="+")
    ap.add_argument("--params", type=Path, help="the source's fit (calibrate --format json -o)")
    ap.add_argument("--budget", type=float, default=60.0)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--no-queue-limit", action="store_true",
                    help="the workload before net_hold_max: held objects never limited")
    ap.add_argument("--json", type=Path, help="write the rows here")
    a = ap.parse_args()
    if a.params:
        params = json.loads(a.params.read_text())
        params = params.get("params", params)
    else:
        with load(a.source) as b:
            params = calibrate(b, a.budget)["params"]
    workload = {k: v for k, v in params.items() if k not in ("net_rate", "net_stop_s")}
    print("workload fitted on", a.source, ":",
          ", ".join(f"{k} {v:.4g}" for k, v in workload.items()))
    seeds = tuple(range(1, a.seeds + 1))
    rows = [predict(t, workload, seeds, not a.no_queue_limit) for t in [a.source, *a.targets]]
    ww = max(len(r["what"]) for r in rows)
    print(f"{'target':34s} {'what':{ww}s} {'observed':>10s} {'predicted':>10s} {'range':>21s} "
          f"{'error':>7s}")
    for r in rows:
        print(f"{Path(r['target']).name:34s} {r['what']:{ww}s} {r['observed']:10,.0f} "
              f"{r['predicted']:10,.0f} {r['low']:10,.0f}-{r['high']:<10,.0f} "
              + (f"{r['error']:+7.0%}" if r["error"] is not None else "      –"))
    if a.json:
        a.json.write_text(json.dumps({"source": str(a.source), "workload": workload,
                                      "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
