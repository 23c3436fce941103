"""Calibration benchmark: wall time for one host at the default 60 s budget on the real lab
bundles, and parameter recovery on bundles emitted from known workloads. Prints figures;
asserts nothing."""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.calibrate import calibrate, observe, whatif  # noqa: E402
from models.calibrate.recovery import emit_on_host  # noqa: E402
from parsers.bundle import load  # noqa: E402

REAL = ["sample_logs/lab-6.16.3-defrag1", "sample_logs/lab-6.16.3-defrag1-mmtriage-lab"]
# (workload, snapshot interval): A is the test's; B holds fewer objects for longer
WORKLOADS = {
    ("A", 1.0): {"net_rate": 25000.0, "net_obj_life_s": 1.0, "net_hold_frac": 0.3,
                 "kernel_share": 1.0, "data_share": 0.9, "reclaim_stall_s": 0.3,
                 "net_start_s": 4.5, "net_stop_s": 33.5},
    ("A", 3.0): {"net_rate": 25000.0, "net_obj_life_s": 1.0, "net_hold_frac": 0.3,
                 "kernel_share": 1.0, "data_share": 0.9, "reclaim_stall_s": 0.3,
                 "net_start_s": 4.5, "net_stop_s": 33.5},
    ("B", 1.0): {"net_rate": 20000.0, "net_obj_life_s": 1.5, "net_hold_frac": 0.2,
                 "kernel_share": 1.0, "data_share": 0.8, "reclaim_stall_s": 0.5,
                 "net_start_s": 3.5, "net_stop_s": 34.5},
}


def real(path: str, seeds: tuple) -> None:
    with load(ROOT / path) as b:
        t0 = time.perf_counter()
        r = calibrate(b, seeds=seeds)
        wall = time.perf_counter() - t0
        fixed = whatif(b, r["params"], "defrag-fixed", seeds=range(1, 4))
        legacy = whatif(b, r["params"], "legacy", seeds=range(1, 4))
    f = r["fit"][0]
    print(f"calibrate {path}: {wall:.1f} s wall at the 60 s budget ({r['compile_s']:.0f} s of it "
          f"the model's first-use compile), {r['evaluations']} evaluations of {len(seeds)} seeds "
          f"({r['per_evaluation_s']:.3f} s each); search {r['search_s']:.0f} s, end {r['end_s']:.0f} s")
    print(f"  failures observed {f['observed']:,.0f}, simulated {f['simulated']:,.0f} "
          f"({f['rel_error']:+.1%}); whatif defrag-fixed {fixed['failures']['mean']:,.0f}, "
          f"legacy {legacy['failures']['mean']:,.0f}")
    for row in r["fit"]:
        if row["observable"].startswith(("free MiB", "Unmovable pageblocks", "skbuff")) and \
                row["rel_error"] is not None:
            print(f"    {row['observable']:<44} {row['observed']:>12,.1f} {row['simulated']:>12,.1f} "
                  f"{row['rel_error']:+.1%}")
    print("  params " + ", ".join(f"{k}={v:.4g}" for k, v in r["params"].items()))


def recovery(key: tuple, truth: dict, tmp: Path, seeds: tuple) -> None:
    name = f"{key[0]}-every-{key[1]:g}s"
    with load(ROOT / REAL[0]) as host:
        _, res = emit_on_host(host, tmp / name, truth, f"recovery-{name}", snap_every_s=key[1],
                              corroborate_icmp=True)
    with load(tmp / name) as b:
        o = observe(b)
        t_start = (b.snapshots[o.start_index].time - b.snapshots[0].time).total_seconds()
        t0 = time.perf_counter()
        r = calibrate(b, evals=400, seeds=seeds)
        wall = time.perf_counter() - t0
    got = dict(r["params"])
    got["net_start_s"] += t_start
    got["net_stop_s"] += t_start
    errs = {k: (got[k] - v) / v for k, v in truth.items()}
    f = r["fit"][0]
    print(f"recovery {name}: {wall:.1f} s, 400 evaluations of {len(seeds)} seeds; failures {f['observed']:,.0f} observed, "
          f"{f['simulated']:,.0f} simulated ({f['rel_error']:+.1%}); worst parameter "
          f"{max(errs, key=lambda k: abs(errs[k]))} {max(abs(e) for e in errs.values()):.1%}")
    for k, v in truth.items():
        tag = "fitted" if k in r["fitted"] else "measured/fixed"
        print(f"    {k:<16} true {v:10.4g}  got {got[k]:10.4g}  {errs[k]:+.1%}  ({tag})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=2, help="seeds per evaluation")
    ap.add_argument("--only", choices=("real", "recovery"), help="one half of the benchmark")
    a = ap.parse_args()
    seeds = tuple(range(1, a.seeds + 1))
    if a.only != "recovery":
        for path in REAL:
            real(path, seeds)
    if a.only != "real":
        with tempfile.TemporaryDirectory() as d:
            for key, truth in WORKLOADS.items():
                recovery(key, truth, Path(d), seeds)


if __name__ == "__main__":
    main()
