"""Fleet dataset: many hosts' bundles in hive-partitioned parquet, ingested idempotently and
crash-safely, reported with DuckDB.

Layout::

    DATASET/_schema.json                       schema version and table schemas
    DATASET/_manifest/batch-<id>.parquet       the commit record of one batch (one row a bundle)
    DATASET/<table>/host_bucket=NN/batch-<id>.parquet
    DATASET/events/date=YYYY-MM-DD/host_bucket=NN/batch-<id>.parquet

An ingest run works in batches. A batch's data files are written to a temporary folder and
renamed into place, and its manifest is written last: a batch without a manifest never
happened, and the next run deletes its files. A bundle whose content key (a hash of its files)
is in a manifest is skipped; a bundle with a known ``bundle_id`` (meta.json boot_id, else host
and name) but new content replaces the old one (readers see only the newest per bundle_id).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
import zlib
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from parsers.errors import ParseError
from parsers.schemas import DEFAULT_PARTITIONS, PARTITIONS, SCHEMA_VERSION, TABLES

BUCKETS = 16
MANIFEST = pa.schema([pa.field("batch", pa.string()), pa.field("bundle_key", pa.string()),
                      pa.field("bundle_id", pa.string()), pa.field("host", pa.string()),
                      pa.field("source_path", pa.string()),
                      pa.field("ingested_at", pa.timestamp("us", tz="UTC"))])


def host_bucket(host: str) -> str:
    return f"{zlib.crc32(host.encode()) % BUCKETS:02d}"


def content_key(path: str | Path) -> str:
    """sha256 of a bundle's files (relative names and bytes); a tarball hashes as one file."""
    p = Path(path)
    h = hashlib.sha256()
    if p.is_file():
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()[:32]
    for f in sorted(x for x in p.rglob("*") if x.is_file()):
        h.update(str(f.relative_to(p)).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()[:32]


def _ts(dt):
    return dt.astimezone(timezone.utc) if dt is not None else None


def bundle_rows(path: str, key: str) -> dict:
    """Parse, triage and flatten one bundle into rows per table (product of the worker)."""
    from analyzer.attribution import attribute
    from parsers.bundle import load
    with load(path) as b:
        doc = attribute(b)
        host = b.host
        bucket = host_bucket(host)
        bundle_id = str(b.meta.get("boot_id") or f"{host}:{Path(str(path)).name}")
        f = doc["failures"]
        est = f["by_cause_estimated"]
        times = [b.event_wall_time(e) for e in doc["events"]]
        times = [t for t in times if t is not None]
        corr = doc.get("corroboration") or {}
        rows = {t: [] for t in TABLES}
        rows["hosts"].append({
            "bundle_key": key, "host": host, "bundle_id": bundle_id, "source_path": str(path),
            "kernel_release": doc["kernel_release"]["value"],
            "kernel_release_source": doc["kernel_release"]["source"],
            "defrag_mode": doc["defrag_mode"].get("value"),
            "defrag_mode_source": doc["defrag_mode"].get("source"),
            "fix_status": doc["fix"]["status"], "policy": doc["policy"],
            "first_time": _ts(min(times)) if times else (_ts(b.snapshots[0].time) if b.snapshots else None),
            "last_time": _ts(max(times)) if times else (_ts(b.snapshots[-1].time) if b.snapshots else None),
            "span_hours": f["span_hours"],
            "slub_reports": doc["summary"]["slub_reports"],
            "page_alloc_reports": doc["summary"]["page_alloc_reports"],
            "oom_reports": doc["summary"]["oom_reports"],
            "suppressed": sum(doc["summary"]["suppressed"].values()),
            "failures_reported": f["reported"], "failures_estimated": f["estimated"],
            "failures_per_hour": f["estimated_per_hour"],
            "bailout_estimated": est["defrag_nofragment_bailout"],
            "low_memory_estimated": est["low_memory"],
            "high_order_estimated": est["high_order_fragmentation"],
            "speculative_estimated": est["speculative_expected"],
            "unknown_estimated": est["unknown"],
            "free_mib_other_types": doc["at_failure"]["free_mib_other_types_median"],
            "free_pageblocks_max": doc["at_failure"]["free_pageblocks_max"],
            "corroborated_errors": sum(corr.get("counters", {}).values()) if corr else None,
            "snapshots": len(b.snapshots), "partial_records": doc["summary"]["partial_records"],
            "verdict": doc["verdict"], "host_bucket": bucket})
        for e in doc["events"]:
            t = b.event_wall_time(e)
            ev = e.get("evidence", {})
            rows["events"].append({
                "bundle_key": key, "host": host, "source": e["source"], "line": e["line"],
                "kind": e["kind"], "time_s": e.get("time_s"), "time": _ts(t),
                "gfp_mask": e.get("gfp_mask"), "gfp_text": e.get("gfp_text"),
                "order": e.get("min_order") if e["kind"] == "slub" else e.get("order"),
                "migratetype": e.get("migratetype"), "cache": e.get("cache"), "comm": e.get("comm"),
                "slab_page": bool(e.get("slab_page")), "partial": bool(e.get("partial")),
                "cause": e["cause"], "confidence": e["confidence"],
                "evidence_source": ev.get("source"),
                "free_mib_other_types": ev.get("free_mib_other_types"),
                "free_pageblocks": ev.get("free_pageblocks"),
                "kernel_release": e.get("kernel_release"),
                "date": t.strftime("%Y-%m-%d") if t else "unknown", "host_bucket": bucket})
        for s in b.snapshots:
            st = _ts(s.time)
            if s.pagetypeinfo:
                for r in s.pagetypeinfo.free:
                    for o, (c, cap) in enumerate(zip(r.counts, r.capped)):
                        rows["pagetypeinfo"].append({
                            "bundle_key": key, "host": host, "time": st, "node": r.node,
                            "zone": r.zone, "type": r.type, "order": o, "count": c,
                            "capped": cap, "host_bucket": bucket})
            if s.buddyinfo:
                for r in s.buddyinfo:
                    for o, c in enumerate(r.free):
                        rows["buddyinfo"].append({"bundle_key": key, "host": host, "time": st,
                                                  "node": r.node, "zone": r.zone, "order": o,
                                                  "count": c, "host_bucket": bucket})
            if s.zoneinfo:
                for z in s.zoneinfo:
                    rows["zoneinfo"].append({
                        "bundle_key": key, "host": host, "time": st, "node": z.node,
                        "zone": z.zone, "pages_free": z.pages_free, "min": z.min, "low": z.low,
                        "high": z.high, "boost": z.boost, "managed": z.managed,
                        "present": z.present,
                        "nr_free_pages_blocks": z.stats.get("nr_free_pages_blocks"),
                        "host_bucket": bucket})
            if s.vmstat:
                for n, v in s.vmstat.items():
                    rows["vmstat"].append({"bundle_key": key, "host": host, "time": st,
                                           "name": n, "value": v, "host_bucket": bucket})
    tables = {name: pa.Table.from_pylist(r, schema=TABLES[name]) for name, r in rows.items()}
    return {"key": key, "bundle_id": bundle_id, "host": host, "path": str(path),
            "tables": tables}


def process(path: str, key: str) -> dict:
    """Worker entry: rows for one bundle, or the error that stopped it."""
    try:
        return bundle_rows(path, key)
    except (ParseError, OSError, ValueError) as err:
        return {"key": key, "path": str(path), "error": f"{err}"}


class Dataset:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    # -- layout --------------------------------------------------------------------------------
    def init(self) -> None:
        (self.root / "_manifest").mkdir(parents=True, exist_ok=True)
        schema = self.root / "_schema.json"
        doc = {"schema_version": SCHEMA_VERSION,
               "tables": {n: [f"{f.name}: {f.type}" for f in s] for n, s in TABLES.items()},
               "partitions": {n: PARTITIONS.get(n, DEFAULT_PARTITIONS) for n in TABLES}}
        if schema.exists():
            old = json.loads(schema.read_text())
            if old.get("schema_version") != SCHEMA_VERSION:
                raise ParseError(str(schema), 0, f"dataset schema version {old.get('schema_version')}"
                                                 f" != this mmtriage's {SCHEMA_VERSION}")
        else:
            _atomic_write(schema, json.dumps(doc, indent=1).encode())

    def manifests(self) -> list[Path]:
        return sorted((self.root / "_manifest").glob("batch-*.parquet"))

    def known_keys(self) -> set:
        keys = set()
        for m in self.manifests():
            keys.update(pq.read_table(m, columns=["bundle_key"]).column(0).to_pylist())
        return keys

    def committed_batches(self) -> set:
        return {m.stem for m in self.manifests()}

    def cleanup(self) -> int:
        """Delete what a killed run left: the temporary folder and data files of batches that
        never wrote a manifest. Returns the number of files removed."""
        shutil.rmtree(self.root / "_tmp", ignore_errors=True)
        live = self.committed_batches()
        removed = 0
        for table in TABLES:
            for f in (self.root / table).rglob("*.parquet") if (self.root / table).exists() else []:
                if f.stem not in live:
                    f.unlink()
                    removed += 1
        for f in (self.root / "_manifest").glob(".*"):
            f.unlink()
        return removed

    # -- writing -------------------------------------------------------------------------------
    def commit(self, results: list[dict]) -> str | None:
        """Write one batch: data files first (each renamed into place), the manifest last."""
        results = [r for r in results if "tables" in r]
        if not results:
            return None
        batch = f"batch-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        tmp = self.root / "_tmp" / batch
        tmp.mkdir(parents=True, exist_ok=True)
        moves = []
        for name, schema in TABLES.items():
            parts = [r["tables"][name] for r in results if r["tables"][name].num_rows]
            if not parts:
                continue
            table = pa.concat_tables(parts)
            pcols = PARTITIONS.get(name, DEFAULT_PARTITIONS)
            keys = table.select(pcols).to_pylist()
            groups: dict = {}
            for i, k in enumerate(keys):
                groups.setdefault(tuple(k[c] for c in pcols), []).append(i)
            for vals, idx in sorted(groups.items()):
                sub = table.take(pa.array(idx)).drop_columns(pcols)
                rel = Path(name, *[f"{c}={v}" for c, v in zip(pcols, vals)], f"{batch}.parquet")
                t = tmp / rel
                t.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(sub, t, compression="zstd")
                moves.append((t, self.root / rel))
        for src, dst in moves:
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
        if os.environ.get("MMTRIAGE_FLEET_CRASH_BEFORE_MANIFEST") == batch[-8:] or \
                os.environ.get("MMTRIAGE_FLEET_CRASH_BEFORE_MANIFEST") == "any":
            os._exit(137)  # tests: die like kill -9 between data files and the manifest
        now = datetime.now(timezone.utc)
        man = pa.Table.from_pylist([{"batch": batch, "bundle_key": r["key"],
                                     "bundle_id": r["bundle_id"], "host": r["host"],
                                     "source_path": r["path"], "ingested_at": now}
                                    for r in results], schema=MANIFEST)
        mtmp = self.root / "_manifest" / f".{batch}.parquet"
        pq.write_table(man, mtmp)
        _fsync(mtmp)
        os.replace(mtmp, self.root / "_manifest" / f"{batch}.parquet")
        shutil.rmtree(tmp, ignore_errors=True)
        return batch


def _fsync(p: Path) -> None:
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(p: Path, data: bytes) -> None:
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, p)


def ingest(paths: list[str], dataset: str | Path, engine: str = "local", scheduler: str | None = None,
           workers: int | None = None, batch_size: int = 500, progress=None, log=None) -> dict:
    """Ingest bundles. Returns counts: ingested, skipped (already there), errors."""
    ds = Dataset(dataset)
    ds.init()
    removed = ds.cleanup()
    known = ds.known_keys()
    todo = []
    skipped = 0
    seen = set()
    for p in paths:
        if not Path(p).exists():
            todo.append((str(p), "missing"))
            continue
        k = content_key(p)
        if k in known or k in seen:
            skipped += 1
            continue
        seen.add(k)
        todo.append((str(p), k))
    errors = []
    ingested = 0
    batch: list = []
    t0 = time.perf_counter()

    def take(res):
        nonlocal ingested, batch
        if "error" in res:
            errors.append({"path": res["path"], "error": res["error"]})
            if log:
                log(f"Error: {res['error']} (skipped {res['path']})")
        else:
            batch.append(res)
            ingested += 1
        if len(batch) >= batch_size:
            ds.commit(batch)
            batch = []
        if progress:
            progress(ingested + len(errors), len(todo))

    missing = [p for p, k in todo if k == "missing"]
    for p in missing:
        take({"key": "", "path": p, "error": f"{p}: no such file or directory"})
    work = [(p, k) for p, k in todo if k != "missing"]
    if engine == "dask":
        from distributed import Client, LocalCluster, as_completed
        cluster = None
        if scheduler:
            client = Client(scheduler)
        else:
            cluster = LocalCluster(n_workers=workers or os.cpu_count() or 2, threads_per_worker=1,
                                   processes=True, host="127.0.0.1", dashboard_address=None)
            client = Client(cluster)
        try:
            futs = client.map(process, [p for p, _ in work], [k for _, k in work], pure=False)
            for fut in as_completed(futs):
                take(fut.result())
                fut.release()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    elif engine == "local":
        n = workers or os.cpu_count() or 1
        if n <= 1 or len(work) <= 1:
            for p, k in work:
                take(process(p, k))
        else:
            from concurrent.futures import ProcessPoolExecutor
            import multiprocessing as mp
            with ProcessPoolExecutor(n, mp_context=mp.get_context("spawn")) as ex:
                for res in ex.map(process, [p for p, _ in work], [k for _, k in work],
                                  chunksize=max(1, min(32, len(work) // (n * 8) or 1))):
                    take(res)
    else:
        raise ValueError(f"unknown engine {engine!r}: local or dask")
    if batch:
        ds.commit(batch)
    return {"dataset": str(dataset), "ingested": ingested, "skipped": skipped,
            "errors": errors, "orphans_removed": removed, "engine": engine,
            "wall_s": round(time.perf_counter() - t0, 3)}


# -- reading -----------------------------------------------------------------------------------

def connect(dataset: str | Path):
    """A DuckDB connection with one view per table, showing only live bundles."""
    import duckdb
    root = Path(dataset)
    if not (root / "_manifest").is_dir():
        raise ParseError(str(root), 0, "not an mmtriage dataset (no _manifest/)")
    con = duckdb.connect()
    man = sorted((root / "_manifest").glob("batch-*.parquet"))
    if man:
        con.execute(f"CREATE VIEW manifest AS SELECT * FROM read_parquet("
                    f"'{root}/_manifest/batch-*.parquet')")
    else:
        con.execute("CREATE VIEW manifest AS SELECT NULL::VARCHAR AS batch, NULL::VARCHAR AS "
                    "bundle_key, NULL::VARCHAR AS bundle_id, NULL::VARCHAR AS host, NULL::VARCHAR "
                    "AS source_path, NULL::TIMESTAMPTZ AS ingested_at WHERE false")
    con.execute("""CREATE VIEW live AS SELECT bundle_key FROM (
        SELECT bundle_key, row_number() OVER (PARTITION BY bundle_id
               ORDER BY ingested_at DESC, batch DESC) AS rn FROM manifest) WHERE rn = 1""")
    for name, schema in TABLES.items():
        files = list((root / name).rglob("*.parquet")) if (root / name).exists() else []
        if files:
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{root}/{name}/**/*.parquet',"
                        f" hive_partitioning = true, union_by_name = true) "
                        f"WHERE bundle_key IN (SELECT bundle_key FROM live)")
        else:
            cols = ", ".join(f"NULL::{_duck_type(f.type)} AS \"{f.name}\"" for f in schema)
            con.execute(f"CREATE VIEW {name} AS SELECT {cols} WHERE false")
    return con


def _duck_type(t) -> str:
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ"
    if pa.types.is_integer(t):
        return "BIGINT"
    if pa.types.is_floating(t):
        return "DOUBLE"
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    return "VARCHAR"
