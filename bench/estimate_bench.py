"""The failures a log hides, estimated without counters: each real lab bundle is copied with
its network counters removed (``--hide``), calibrated from its log and snapshots alone, and the estimate
set beside the hidden Icmp OutErrors. Also the recovery case: a bundle emitted from known
parameters with no counters, and one whose only counter is eth0's packets (a receiving host),
the estimate against the model's own truth. Prints a table;
asserts nothing.

    .venv/bin/python bench/estimate_bench.py [--evals N] [BUNDLE ...]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.calibrate import calibrate  # noqa: E402
from models.calibrate.recovery import emit_on_host  # noqa: E402
from parsers.bundle import load  # noqa: E402
from parsers import snmp  # noqa: E402

REAL = ["sample_logs/lab-6.16.3-defrag1", "sample_logs/lab-6.16.3-defrag1-mmtriage-lab",
        "sample_logs/lab-7.3.4-defrag1-mmtriage-lab"]
TRUTH = {"net_rate": 25000.0, "net_obj_life_s": 1.0, "net_hold_frac": 0.3, "kernel_share": 1.0,
         "data_share": 0.9, "reclaim_stall_s": 0.3, "net_start_s": 4.5, "net_stop_s": 33.5}
# a receiving host: heads only (tests/test_estimate.py)
NIC_TRUTH = {**TRUTH, "net_rate": 300000.0, "data_share": 0.0}


def hidden_truth(src: Path) -> float | None:
    snaps = sorted(p for p in (src / "snapshots").iterdir() if (p / "net_snmp").exists())
    if len(snaps) < 2:
        return None
    a, b = (snmp.parse((s / "net_snmp").read_text())["Icmp"]["OutErrors"] for s in (snaps[0], snaps[-1]))
    return float(b - a)


def hide(src: Path, dst: Path, files: str = "*net*") -> Path:
    shutil.copytree(src, dst)
    for f in dst.glob(f"snapshots/*/{files}"):
        f.unlink()
    meta = json.loads((dst / "meta.json").read_text())
    meta.pop("ground_truth", None)
    (dst / "meta.json").write_text(json.dumps(meta))
    return dst


def row(name, truth, r):
    e = r["estimated_failures"]
    inside = truth is not None and e["low"] <= truth <= e["high"]
    ratio = e["value"] / truth if truth else None
    print(f"{name:40} {e['value']:>10,} {e['low']:>10,}-{e['high']:<10,} {truth or 0:>10,.0f} "
          f"{'' if ratio is None else f'{ratio:8.3f}':>8} {'yes' if inside else 'no':>6} "
          f"{e['log_floor']:>9,.0f} {r['evaluations']:>5}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--evals", type=int, default=150)
    ap.add_argument("--no-recovery", action="store_true")
    ap.add_argument("--hide", default="*net*",
                    help="snapshot files to remove (default every network counter: net_snmp, "
                         "net_netstat, net_dev, softnet_stat; net_snmp keeps /proc/net/dev and "
                         "softnet_stat, which a host without ICMP counters still has; net_* "
                         "keeps softnet_stat)")
    ap.add_argument("bundles", nargs="*")
    a = ap.parse_args()
    print(f"{'bundle (counters removed)':40} {'estimate':>10} {'interval':^21} {'hidden':>10} "
          f"{'ratio':>8} {'inside':>6} {'log floor':>9} {'evals':>5}")
    with tempfile.TemporaryDirectory() as td:
        for src in [Path(b) for b in (a.bundles or REAL)]:
            truth = hidden_truth(src)
            with load(hide(src, Path(td) / src.name, a.hide)) as b:
                row(src.name, truth, calibrate(b, budget_s=3600, evals=a.evals))
        if a.no_recovery:
            return
        for label, truth, nic in (("recovery (model truth, no counters)", TRUTH, False),
                                  ("recovery (model truth, eth0 packets only)", NIC_TRUTH, True)):
            with load(ROOT / REAL[0]) as host:
                out, res = emit_on_host(host, Path(td) / ("recovery-nic" if nic else "recovery"),
                                        truth, "recovery", nic_rx=nic)
            with load(out) as b:
                row(label, float(res.summary()["failures"]["total"]),
                    calibrate(b, budget_s=3600, evals=a.evals))


if __name__ == "__main__":
    main()
