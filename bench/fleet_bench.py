"""Fleet benchmark: N synthetic bundles (variations of a few model-emitted ones; documented as
synthetic), ingested with the local engine on this machine, then the DuckDB report, compared
with a plain pandas pass over the same parquet files. Prints figures; asserts nothing.

    python bench/fleet_bench.py --bundles 10000
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH = ROOT / ".bench"

KERNELS = ["6.16.3+deb13-amd64", "6.17.13+deb13-amd64", "6.18.15+deb13-amd64",
           "7.1.13+deb13-amd64", "7.2.6+deb13-amd64", "6.12.48+deb13-amd64"]


def templates() -> list[Path]:
    from models import scenarios
    from models.emit import emit
    from models.simulate import simulate
    out = []
    for name, pol, gib, hours in (("lab", "defrag", None, None), ("lab", "legacy", None, None),
                                  ("seed-skbuff", "defrag", 2, 0.1), ("high-order", "legacy", 2, 0.1),
                                  ("low-memory", "defrag", 1, 0.05)):
        d = BENCH / "templates" / f"{name}-{pol}"
        if not (d / "meta.json").exists():
            sc = scenarios.get(name, mem_gib=gib)
            if hours:
                sc.hours = hours
            emit(simulate(sc, pol, seed=7), d)
        out.append(d)
    return out


def make_fleet(n: int) -> Path:
    fleet = BENCH / f"fleet-{n}"
    if (fleet / ".done").exists():
        return fleet
    shutil.rmtree(fleet, ignore_errors=True)
    tpl = templates()
    for i in range(n):
        src = tpl[i % len(tpl)]
        d = fleet / f"host-{i:05d}"
        d.mkdir(parents=True)
        for f in src.rglob("*"):
            rel = f.relative_to(src)
            if f.is_dir():
                (d / rel).mkdir(parents=True, exist_ok=True)
            elif f.name != "meta.json":
                (d / rel).parent.mkdir(parents=True, exist_ok=True)
                os.symlink(f, d / rel)
        meta = json.loads((src / "meta.json").read_text())
        meta.update(host=f"host-{i:05d}", kernel_release=KERNELS[i % len(KERNELS)],
                    boot_id=f"synthetic-{i:05d}")
        meta.pop("model", None)
        meta["captured_from"] = f"synthetic fleet member (template {src.name})"
        (d / "meta.json").write_text(json.dumps(meta))
    (fleet / ".done").touch()
    return fleet


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundles", type=int, default=int(os.environ.get("FLEET_BUNDLES", 10000)))
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    a = ap.parse_args()
    t = time.perf_counter()
    fleet = make_fleet(a.bundles)
    print(f"fleet  {a.bundles:,} synthetic bundles ready in {time.perf_counter() - t:.1f} s")
    from analyzer.fleet import ingest
    ds = BENCH / f"ds-{a.bundles}"
    shutil.rmtree(ds, ignore_errors=True)
    paths = sorted(str(p) for p in fleet.iterdir() if p.is_dir())
    t = time.perf_counter()
    r = ingest(paths, ds, workers=a.workers, batch_size=1000)
    dt = time.perf_counter() - t
    print(f"fleet  ingest ({a.workers} workers): {r['ingested']:,} bundles in {dt:.1f} s "
          f"({r['ingested'] / dt:.1f} bundles/s), {len(r['errors'])} errors")
    t = time.perf_counter()
    r2 = ingest(paths, ds, workers=a.workers)
    print(f"fleet  re-ingest (idempotent): skipped {r2['skipped']:,} in {time.perf_counter() - t:.1f} s")
    from analyzer.fleet_report import report
    t = time.perf_counter()
    doc = report(ds)
    rt = time.perf_counter() - t
    print(f"fleet  DuckDB report: {rt:.2f} s for {doc['totals']['hosts']:,} hosts, "
          f"{doc['totals']['estimated']:,} estimated failures")
    import pandas as pd
    t = time.perf_counter()
    hosts = pd.read_parquet(ds / "hosts")
    man = pd.read_parquet(ds / "_manifest")
    live = man.sort_values("ingested_at").groupby("bundle_id").tail(1)["bundle_key"]
    hosts = hosts[hosts["bundle_key"].isin(live)]
    ranked = hosts.sort_values("failures_per_hour", ascending=False).head(20)
    matrix = hosts.groupby(["kernel_release", "defrag_mode", "fix_status"]).agg(
        hosts=("host", "count"), est=("failures_estimated", "sum"))
    ev = pd.read_parquet(ds / "events", columns=["bundle_key", "cause"])
    by_cause = ev[ev["bundle_key"].isin(live)].groupby("cause").size()
    pt = time.perf_counter() - t
    print(f"fleet  plain pandas, same questions: {pt:.2f} s (ratio DuckDB/pandas {rt / pt:.2f})")
    print(f"fleet  peak RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    _ = (ranked, matrix, by_cause)


if __name__ == "__main__":
    main()
