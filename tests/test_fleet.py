"""Fleet: idempotent, crash-safe ingest; a real Dask scheduler and workers; DuckDB reports."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from analyzer.cli import app
from analyzer.fleet import connect, ingest
from tests.conftest import LAB0, LAB1, ROOT, need

runner = CliRunner()


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """Twelve hosts: copies of the real lab captures under other host names."""
    root = tmp_path_factory.mktemp("bundles")
    out = []
    for i in range(12):
        src = need(LAB1 if i % 3 else LAB0)
        d = root / f"host{i:02d}"
        shutil.copytree(src, d)
        for p in [d] + list(d.rglob("*")):
            p.chmod(0o755 if p.is_dir() else 0o644)
        meta = json.loads((d / "meta.json").read_text())
        meta["host"] = f"web-{i:02d}"
        (d / "meta.json").write_text(json.dumps(meta))
        out.append(str(d))
    return out


def table_rows(ds):
    con = connect(ds)
    res = {}
    for t in ("hosts", "events", "pagetypeinfo", "zoneinfo", "buddyinfo", "vmstat", "net_counters"):
        res[t] = sorted(tuple(str(x) for x in r) for r in con.execute(f"SELECT * FROM {t}").fetchall())
    return res


def test_ingest_report_and_idempotence(bundles, tmp_path):
    ds = tmp_path / "ds"
    r = ingest(bundles, ds, workers=2, batch_size=5)
    assert r["ingested"] == 12 and r["errors"] == []
    first = table_rows(ds)
    assert len(first["hosts"]) == 12
    assert len(first["events"]) == 8 * 32  # 8 defrag_mode=1 hosts x 32 records
    r2 = ingest(bundles, ds, workers=2)
    assert r2["ingested"] == 0 and r2["skipped"] == 12
    assert table_rows(ds) == first
    from analyzer.fleet_report import report
    doc = report(ds)
    assert doc["totals"]["hosts"] == 12 and doc["totals"]["hosts_failing"] == 8
    assert doc["totals"]["estimated"] == 8 * 2975
    assert doc["share_by_cause"]["defrag_nofragment_bailout"] == 1.0
    assert doc["patch_first"]["hosts"] == 8
    assert doc["top_hosts"][0]["kernel_release"] == "6.16.3+deb13-amd64"
    filt = report(ds, host="web-0*")
    assert filt["totals"]["hosts"] == 10
    assert report(ds, kernel="7.")["totals"]["hosts"] == 0
    # pandas reads the hive-partitioned tables as they are
    import pandas as pd
    df = pd.read_parquet(ds / "events")
    assert len(df) == 8 * 32 and set(df["host_bucket"].astype(int)) <= set(range(16))


def test_updated_bundle_replaces_its_rows(bundles, tmp_path):
    ds = tmp_path / "ds"
    b = tmp_path / "b"
    shutil.copytree(bundles[1], b)
    ingest([str(b)], ds, workers=1)
    assert len(table_rows(ds)["events"]) == 32
    # the same host and bundle, re-collected: one record more in its log
    with open(b / "dmesg", "a") as fh:
        fh.write("[   61.000000] SLUB: Unable to allocate memory on CPU 0 (of node 0) on node -1, "
                 "gfp=0x820(GFP_ATOMIC)\n[   61.000000]   cache: skbuff_head_cache, object size: 232,"
                 " buffer size: 256, default order: 0, min order: 0\n")
    r = ingest([str(b)], ds, workers=1)
    assert r["ingested"] == 1
    rows = table_rows(ds)
    assert len(rows["hosts"]) == 1 and len(rows["events"]) == 33


def test_bad_bundle_is_reported_and_skipped(bundles, tmp_path):
    bad = tmp_path / "bad.tgz"
    bad.write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    r = ingest([bundles[1], str(bad), str(tmp_path / "missing")], tmp_path / "ds", workers=1)
    assert r["ingested"] == 1 and len(r["errors"]) == 2
    assert any(str(bad) in e["error"] for e in r["errors"])


def _run_ingest(paths, ds, env=None, batch=1):
    return subprocess.Popen([sys.executable, "-m", "analyzer.cli", "fleet", "ingest", *paths,
                             "--dataset", str(ds), "--workers", "1", "--batch-size", str(batch)],
                            cwd=ROOT, env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_crash_between_data_and_manifest(bundles, tmp_path):
    clean = tmp_path / "clean"
    ingest(bundles[:4], clean, workers=1, batch_size=1)
    ds = tmp_path / "ds"
    p = _run_ingest(bundles[:4], ds, {"MMTRIAGE_FLEET_CRASH_BEFORE_MANIFEST": "any"})
    p.wait(timeout=120)
    assert p.returncode == 137
    assert list((ds / "_manifest").glob("batch-*.parquet")) == []
    assert list(ds.rglob("batch-*.parquet"))  # orphans on disk...
    assert table_rows(ds)["hosts"] == []      # ...that readers never see
    p = _run_ingest(bundles[:4], ds)
    assert p.wait(timeout=120) == 0
    assert table_rows(ds) == table_rows(clean)
    orphans = [f for f in ds.rglob("batch-*.parquet")
               if f.stem not in {m.stem for m in (ds / "_manifest").glob("batch-*.parquet")}]
    assert orphans == []


@pytest.fixture(scope="module")
def clean12(bundles, tmp_path_factory):
    """One clean ingest of the twelve hosts, batch by batch as the killed runs do."""
    clean = tmp_path_factory.mktemp("clean12") / "ds"
    ingest(bundles, clean, workers=1, batch_size=1)
    return table_rows(clean)


@pytest.mark.parametrize("stage,n", [("tmp", 1), ("data", 3), ("tmp", 7)])
def test_kill_9_mid_batch(bundles, clean12, tmp_path, stage, n):
    """kill -9 while batch n is half-done (its files in _tmp, or in place without a manifest):
    readers see only the n-1 committed batches, and the re-run gives the clean dataset."""
    ds = tmp_path / "ds"
    flag = tmp_path / "paused"
    p = _run_ingest(bundles, ds, {"MMTRIAGE_FLEET_TEST_PAUSE": f"{stage}:{n}",
                                  "MMTRIAGE_FLEET_TEST_PAUSE_FLAG": str(flag)})
    try:
        deadline = time.time() + 180
        while not flag.exists():
            assert p.poll() is None, p.stderr.read()
            assert time.time() < deadline, "the ingest never reached the pause"
            time.sleep(0.05)
        p.send_signal(signal.SIGKILL)
        assert p.wait(timeout=30) == -signal.SIGKILL
    finally:
        if p.poll() is None:
            p.kill()
    from analyzer.fleet import Dataset
    d = Dataset(ds)
    # the kill landed mid-batch: n-1 batches committed, the nth on disk without its manifest
    assert len(d.manifests()) == n - 1
    left = d.uncommitted()
    assert left and all(f.stem not in d.committed_batches() for f in left)
    assert any("_tmp" in f.parts for f in left) == (stage == "tmp")
    assert len(table_rows(ds)["hosts"]) == n - 1      # readers never see the half batch
    p = _run_ingest(bundles, ds)
    out, errs = p.communicate(timeout=300)
    assert p.returncode == 0, errs
    r = json.loads(out)
    assert r["ingested"] == 12 - (n - 1) and r["skipped"] == n - 1 and r["orphans_removed"] > 0
    assert table_rows(ds) == clean12
    assert d.uncommitted() == []


def test_dask_real_scheduler_and_workers(bundles, tmp_path):
    port = 18786 + os.getpid() % 1000
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    sched = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host",
                              "127.0.0.1", "--port", str(port), "--dashboard-address", ":0"],
                             cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker",
                                 f"tcp://127.0.0.1:{port}", "--nthreads", "1", "--no-dashboard",
                                 "--host", "127.0.0.1"], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for _ in range(2)]
    try:
        from distributed import Client
        deadline = time.time() + 60
        while True:
            try:
                with Client(f"tcp://127.0.0.1:{port}", timeout=5) as c:
                    if len(c.scheduler_info()["workers"]) >= 2:
                        break
            except OSError:
                pass
            assert time.time() < deadline, "dask cluster did not come up"
            time.sleep(0.5)
        ds = tmp_path / "ds"
        r = runner.invoke(app, ["fleet", "ingest", *bundles[:6], "--dataset", str(ds),
                                "--engine", "dask", "--scheduler", f"tcp://127.0.0.1:{port}"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["ingested"] == 6
        clean = tmp_path / "clean"
        ingest(bundles[:6], clean, workers=1)
        assert table_rows(ds) == table_rows(clean)
    finally:
        for w in workers:
            w.terminate()
        sched.terminate()
        for p in workers + [sched]:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def test_query_and_report_cli(bundles, tmp_path):
    ds = tmp_path / "ds"
    ingest(bundles[:3], ds, workers=1)
    r = runner.invoke(app, ["fleet", "query", "--dataset", str(ds), "-f", "json",
                            "SELECT cause, count(*) AS n FROM events GROUP BY 1"])
    assert r.exit_code == 0 and json.loads(r.stdout) == [{"cause": "defrag_nofragment_bailout", "n": 64}]
    r = runner.invoke(app, ["fleet", "query", "--dataset", str(ds), "SELECT * FROM nope"])
    assert r.exit_code == 1 and r.stderr.startswith("Error: <sql>:1:")
    for fmt in ("json", "markdown", "html", "table"):
        r = runner.invoke(app, ["fleet", "report", "--dataset", str(ds), "-f", fmt,
                                "--plots", str(tmp_path / "p")])
        assert r.exit_code == 0, r.output
    assert (tmp_path / "p/failures_per_host.png").stat().st_size > 3000


def test_fleet_validate_pairs_hosts_across_kernels(tmp_path):
    from tests.conftest import SAMPLES
    before = tmp_path / "b"
    after = tmp_path / "a"
    shutil.copytree(SAMPLES / "lab-6.16.3-defrag1-mmtriage-lab", before)
    shutil.copytree(SAMPLES / "lab-7.3.4-defrag1-mmtriage-lab", after)
    for d in (before, after):
        meta = json.loads((d / "meta.json").read_text())
        meta["host"] = "db-01"
        (d / "meta.json").write_text(json.dumps(meta))
    ds = tmp_path / "ds"
    ingest([str(before), str(after)], ds, workers=1)
    r = runner.invoke(app, ["fleet", "validate", "--dataset", str(ds), "--before-kernel", "6.16",
                            "--after-kernel", "7.3", "-f", "json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["summary"] == {"fixed": 1, "not_fixed": 0, "inconclusive": 0}
    assert d["hosts"][0]["host"] == "db-01"
