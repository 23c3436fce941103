"""Replay a fitted workload under another policy or setting."""
from __future__ import annotations

import numpy as np

from models.calibrate.fitter import Fitter
from models.calibrate.observe import observe
from models.engine import C_NET_FAILED


def whatif(bundle, fitted: dict, policy: str, seeds=range(1, 9)) -> dict:
    """Replay the fitted workload under ``policy``; failures with their spread over seeds, and
    the price: fallbacks, pageblocks converted, free pageblocks left."""
    obs = observe(bundle)
    fit = Fitter(bundle, [], fitted)
    out = []
    for s in seeds:
        r = fit.run(dict(fitted), s, policy)
        summ = r.summary()
        out.append({"failures": float(r.snaps_cnt[-1][C_NET_FAILED]) if len(r.snaps_t) else
                    float(r.fail_sec.sum()),
                    "claims": summ["fallbacks"]["claim"], "steals": summ["fallbacks"]["steal"],
                    "blocks_converted": summ["counters"]["claimed_blocks"],
                    "free_pageblocks": summ["end_state"]["free_pageblocks"],
                    "by_cause": summ["failures"]["by_cause"]})
    f = np.array([o["failures"] for o in out])

    def stat(key):
        v = np.array([o[key] for o in out], dtype=float)
        return {"mean": float(v.mean()), "p5": float(np.percentile(v, 5)),
                "p95": float(np.percentile(v, 95))}
    return {"host": bundle.host, "policy": policy, "seeds": len(out),
            "window_s": obs.window_s, "observed_failures": obs.failures,
            "failures": {"mean": float(f.mean()), "p5": float(np.percentile(f, 5)),
                         "p95": float(np.percentile(f, 95))},
            "price": {"claims": stat("claims"), "steals": stat("steals"),
                      "blocks_converted": stat("blocks_converted"),
                      "free_pageblocks_left": stat("free_pageblocks")},
            "runs": out}
