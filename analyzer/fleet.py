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

One writer at a time: an ingest holds an exclusive ``flock`` on ``DATASET/_lock`` for the whole
run (a second one waits ``wait`` seconds, then gives up with :class:`DatasetBusy`). A bundle that
cannot be read is listed with its error and skipped; the others land. A run that commits nothing
removes the dataset folder (or the dataset skeleton) it created.

Readers never give DuckDB file access: the tables are pyarrow datasets registered as views,
and the connection runs with external access off and its configuration locked, so a query
cannot write, attach, export, install or read any other file.
"""
from __future__ import annotations

import errno
import fcntl
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


def _int_range(t) -> tuple[int, int] | None:
    if pa.types.is_integer(t):
        bits = t.bit_width
        return (0, 2 ** bits - 1) if pa.types.is_unsigned_integer(t) else \
            (-2 ** (bits - 1), 2 ** (bits - 1) - 1)
    return None


def _net_counters(s):
    """(source, group, name, value) of a snapshot's network files, in one long table."""
    for source in ("net_snmp", "net_netstat"):
        for proto, counters in (getattr(s, source) or {}).items():
            for n, v in counters.items():
                yield source, proto, n, v
    for iface, counters in (s.net_dev or {}).items():
        for n, v in counters.items():
            yield "net_dev", iface, n, v
    for row in s.softnet_stat or ():
        for n, v in row.items():
            if n != "cpu":
                yield "softnet_stat", f"cpu{row['cpu']}", n, v


def _fit(rows: list[dict], schema: pa.Schema, table: str, path: str, warnings: list) -> None:
    """Integers beyond their column's type (a corrupt or hostile log: ``2**70 callbacks
    suppressed``) are not numbers to store: they become NULL, with a warning naming the bundle."""
    ranges = {f.name: r for f in schema if (r := _int_range(f.type))}
    for row in rows:
        for name, (lo, hi) in ranges.items():
            v = row.get(name)
            if isinstance(v, int) and not isinstance(v, bool) and not lo <= v <= hi:
                row[name] = None
                warnings.append(f"{path}: {table}.{name} = {v} does not fit its column "
                                f"({schema.field(name).type}); stored as unknown")


def _suppressed_total(sup: dict, path: str, warnings: list) -> int:
    big = {k: v for k, v in sup.items() if not 0 <= v < 2 ** 63}
    for k, v in big.items():
        warnings.append(f"{path}: suppressed count {v} for {k} is beyond int64; left out of the "
                        "host's suppressed total")
    return sum(v for k, v in sup.items() if k not in big)


def bundle_rows(path: str, key: str) -> dict:
    """Parse, triage and flatten one bundle into rows per table (product of the worker)."""
    from analyzer.attribution import attribute
    from parsers.bundle import load
    path = os.path.abspath(path)
    warnings: list[str] = []
    with load(path) as b:
        doc = attribute(b)
        host = str(b.host)
        bucket = host_bucket(host)
        bundle_id = str(b.meta.get("boot_id") or f"{host}:{Path(str(path)).name}")
        f = doc["failures"]
        est = {c: v["estimated"] for c, v in f["by_cause"].items()}
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
            "span_hours": f["window_s"] / 3600 if f["window_s"] else None,
            "slub_reports": doc["summary"]["slub_reports"],
            "page_alloc_reports": doc["summary"]["page_alloc_reports"],
            "oom_reports": doc["summary"]["oom_reports"],
            "suppressed": _suppressed_total(doc["summary"]["suppressed"], path, warnings),
            "failures_reported": f["printed"], "failures_estimated": f["estimated"],
            "failures_per_hour": f["rate"]["per_hour"],
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
            for source, group, n, v in _net_counters(s):
                rows["net_counters"].append({"bundle_key": key, "host": host, "time": st,
                                             "source": source, "group": group, "name": n,
                                             "value": v, "host_bucket": bucket})
    for name, r in rows.items():
        _fit(r, TABLES[name], name, path, warnings)
    if rows["hosts"][0]["failures_estimated"] is None:
        rows["hosts"][0]["failures_per_hour"] = None  # a rate of an unknown count is unknown
    if len(warnings) > 20:
        warnings = warnings[:20] + [f"{path}: {len(warnings) - 20} more values beyond their columns"]
    tables = {name: pa.Table.from_pylist(r, schema=TABLES[name]) for name, r in rows.items()}
    return {"key": key, "bundle_id": bundle_id, "host": host, "path": str(path),
            "tables": tables, "warnings": warnings}


def _error_text(path: str, err: BaseException) -> str:
    """The error of one bundle as one line that names the bundle."""
    msg = " ".join(str(err).split()) or type(err).__name__
    if not isinstance(err, (ParseError, OSError, ValueError)):
        msg = f"internal error: {type(err).__name__}: {msg}"
    if len(msg) > 300:  # a numba or pyarrow message can run to a page: the start says what
        msg = msg[:297] + "..."
    if isinstance(err, OSError) and err.filename and str(err.filename) not in msg:
        msg = f"{err.filename}: {err.strerror or msg}"
    return msg if msg.startswith(str(path)) or isinstance(err, ParseError) else f"{path}: {msg}"


def process(path: str, key: str) -> dict:
    """Worker entry: rows for one bundle, or the error that stopped it. Any exception stays
    with its bundle: one unreadable bundle must not cost the others their place."""
    try:
        return bundle_rows(path, key)
    except Exception as err:  # noqa: BLE001 - reported per bundle, never swallowed
        return {"key": key, "path": str(path), "error": _error_text(str(path), err)}


class DatasetBusy(RuntimeError):
    """Another ingest holds the dataset's lock."""


class DatasetLock:
    """An exclusive advisory lock (``flock``) on ``DATASET/_lock``, held for one ingest.

    The kernel drops it when the holder exits, however it exits (kill -9 included), so a stale
    lock cannot outlive its process. The holder's pid is written into the file for the message
    the next writer prints."""

    NAME = "_lock"

    def __init__(self, root: Path, wait: float = 0.0, log=None):
        self.root = Path(root)
        self.wait = wait
        self.log = log
        self.fd: int | None = None
        self.created: Path | None = None  # the topmost folder this lock had to create

    def _holder(self) -> str:
        try:
            pid = (self.root / self.NAME).read_text().strip()
            return f"pid {pid}" if pid.isdigit() else "another process"
        except OSError:
            return "another process"

    def acquire(self) -> "DatasetLock":
        deadline = time.monotonic() + self.wait
        told = False
        path = self.root / self.NAME
        while True:
            top = _mkdirs(self.root)
            self.created = self.created or top
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except FileNotFoundError:
                continue  # the folder went away between mkdir and open: make it again
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DatasetBusy(
                        f"{self.root}: another fleet ingest ({self._holder()}) is writing this "
                        f"dataset; wait for it or pass --wait SECONDS") from None
                if not told and self.log:
                    self.log(f"Waiting up to {self.wait:g} s for the fleet ingest "
                             f"({self._holder()}) writing {self.root}")
                    told = True
                time.sleep(min(0.2, left))
                continue
            # A run that failed on a dataset it had created removes the folder, lock file and
            # all: a lock taken on that unlinked file guards nothing. Take the new one.
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self.fd = fd
            return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the only descriptor drops the flock
            self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _mkdirs(p: Path) -> Path | None:
    """mkdir -p; returns the topmost folder it created (None if p existed)."""
    missing = []
    q = p
    while not q.exists():
        missing.append(q)
        if q.parent == q:
            break
        q = q.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            missing.remove(d)  # someone else made it: not ours to remove
    return missing[-1] if missing else None


class Dataset:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    # -- layout --------------------------------------------------------------------------------
    def is_dataset(self) -> bool:
        return (self.root / "_schema.json").is_file() or (self.root / "_manifest").is_dir()

    def check_target(self) -> None:
        """Refuse a path that is neither a dataset nor an empty folder: ingest deletes parquet
        files no manifest names (a killed run's leftovers), which must never be someone's data."""
        if not self.root.exists():
            return
        if not self.root.is_dir():
            raise ParseError(str(self.root), 0, "not a folder (--dataset takes a dataset folder)")
        if not self.is_dataset() and any(x.name != DatasetLock.NAME for x in self.root.iterdir()):
            raise ParseError(str(self.root), 0, "not an mmtriage dataset and not empty; "
                                                "give a new or empty folder")

    def init(self) -> None:
        (self.root / "_manifest").mkdir(parents=True, exist_ok=True)
        schema = self.root / "_schema.json"
        doc = {"schema_version": SCHEMA_VERSION,
               "tables": {n: [f"{f.name}: {f.type}" for f in s] for n, s in TABLES.items()},
               "partitions": {n: PARTITIONS.get(n, DEFAULT_PARTITIONS) for n in TABLES}}
        if schema.exists():
            try:
                old = json.loads(schema.read_text())
            except ValueError as e:
                raise ParseError(str(schema), 0, f"unreadable dataset schema: {e}") from None
            if not isinstance(old, dict) or old.get("schema_version") != SCHEMA_VERSION:
                got = old.get("schema_version") if isinstance(old, dict) else old
                raise ParseError(str(schema), 0, f"dataset schema version {got}"
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

    def uncommitted(self) -> list[Path]:
        """Data files of batches without a manifest, and the temporary folder's files: what a
        killed run leaves behind (readers never see them)."""
        live = self.committed_batches()
        out = [f for t in TABLES for f in (self.root / t).rglob("*.parquet") if f.stem not in live]
        tmp = self.root / "_tmp"
        return out + ([f for f in tmp.rglob("*") if f.is_file()] if tmp.exists() else [])

    def cleanup(self) -> int:
        """Delete what a killed run left: the temporary folder and data files of batches that
        never wrote a manifest. Returns the number of files removed. Callers hold the lock."""
        tmp = self.root / "_tmp"
        removed = sum(1 for f in tmp.rglob("*") if f.is_file()) if tmp.exists() else 0
        shutil.rmtree(tmp, ignore_errors=True)
        live = self.committed_batches()
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
        self._batches = getattr(self, "_batches", 0) + 1
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
        _test_pause("tmp", self._batches)
        for src, dst in moves:
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
        if os.environ.get("MMTRIAGE_FLEET_CRASH_BEFORE_MANIFEST") == batch[-8:] or \
                os.environ.get("MMTRIAGE_FLEET_CRASH_BEFORE_MANIFEST") == "any":
            os._exit(137)  # tests: die like kill -9 between data files and the manifest
        _test_pause("data", self._batches)
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


def _test_pause(stage: str, n: int) -> None:
    """Tests: ``MMTRIAGE_FLEET_TEST_PAUSE=stage:N`` stops the Nth batch of this run at ``stage``
    (``tmp``: files written to _tmp; ``data``: data files in place, no manifest yet) so that a
    kill -9 lands there for certain. The pause ends by itself after 120 s."""
    want = os.environ.get("MMTRIAGE_FLEET_TEST_PAUSE")
    if want and want == f"{stage}:{n}":
        (Path(os.environ.get("MMTRIAGE_FLEET_TEST_PAUSE_FLAG", os.devnull))).touch()
        time.sleep(120)


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


ENGINES = ("local", "dask")


def ingest(paths: list[str], dataset: str | Path, engine: str = "local", scheduler: str | None = None,
           workers: int | None = None, batch_size: int = 500, progress=None, log=None,
           wait: float = 0.0) -> dict:
    """Ingest bundles. Returns counts: ingested, skipped (already there), errors (one per bundle
    that could not be read: skipped, the others land), warnings (values stored as unknown).

    Holds the dataset's lock for the run; raises :class:`DatasetBusy` if another ingest still
    holds it after ``wait`` seconds. A run that commits nothing leaves no dataset it created."""
    if engine not in ENGINES:
        raise ValueError(f"--engine: unknown engine {engine!r}: local or dask")
    if batch_size < 1:
        raise ValueError(f"--batch-size: must be 1 or more, got {batch_size}")
    if workers is not None and workers < 1:
        raise ValueError(f"--workers: must be 1 or more, got {workers}")
    if not wait >= 0:
        raise ValueError(f"--wait: must be 0 or more seconds, got {wait}")
    ds = Dataset(dataset)
    ds.check_target()
    lock = DatasetLock(ds.root, wait, log)
    lock.acquire()
    fresh = not (ds.root / "_schema.json").exists()
    committed: list[str] = []
    try:
        ds.check_target()  # again, under the lock: the first check raced with other writers
        ds.init()
        res = _ingest_locked(ds, paths, engine, scheduler, workers, batch_size, progress, log,
                             committed)
        return res
    finally:
        if not committed and fresh:
            _remove_skeleton(ds.root, lock.created)
        lock.release()


def _remove_skeleton(root: Path, created: Path | None) -> None:
    """A run that committed nothing into a dataset it started: remove what it made."""
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
        return
    for n in ("_tmp", "_manifest", *TABLES):
        shutil.rmtree(root / n, ignore_errors=True)
    for n in ("_schema.json", DatasetLock.NAME):
        try:
            (root / n).unlink()
        except FileNotFoundError:
            pass


def _ingest_locked(ds: Dataset, paths, engine, scheduler, workers, batch_size, progress, log,
                   committed: list) -> dict:
    removed = ds.cleanup()
    known = ds.known_keys()
    errors: list[dict] = []
    warnings: list[str] = []
    work: list[tuple[str, str]] = []
    skipped = 0
    seen = set()
    t0 = time.perf_counter()

    def fail(path: str, error: str) -> None:
        errors.append({"path": path, "error": error})
        if log:
            log(f"Error: {error} (bundle skipped)")

    for p in paths:
        if not Path(p).exists():
            fail(str(p), f"{p}: no such file or directory")
            continue
        try:
            k = content_key(p)
        except OSError as e:  # unreadable file or folder: that bundle, not the run
            fail(str(p), _error_text(str(p), e))
            continue
        if k in known or k in seen:
            skipped += 1
            continue
        seen.add(k)
        work.append((str(p), k))
    ingested = 0
    batch: list = []
    total = len(work) + len(errors)

    def take(res):
        nonlocal ingested, batch
        if "error" in res:
            fail(res["path"], res["error"])
        else:
            for w in res.get("warnings", []):
                warnings.append(w)
                if log:
                    log(f"Warning: {w}")
            batch.append(res)
            ingested += 1
        if len(batch) >= batch_size:
            committed.append(ds.commit(batch))
            batch = []
        if progress:
            progress(ingested + len(errors), total)

    if engine == "dask":
        from distributed import Client, LocalCluster, as_completed
        cluster = None
        if scheduler:
            client = Client(scheduler, timeout=30)
        else:
            cluster = LocalCluster(n_workers=workers or os.cpu_count() or 2, threads_per_worker=1,
                                   processes=True, host="127.0.0.1", dashboard_address=None)
            client = Client(cluster)
        try:
            futs = client.map(process, [p for p, _ in work], [k for _, k in work], pure=False)
            where = {f.key: (p, k) for f, (p, k) in zip(futs, work)}
            for fut in as_completed(futs):
                try:
                    res = fut.result()
                except Exception as e:  # noqa: BLE001 - a lost worker costs its bundle only
                    p, k = where[fut.key]
                    res = {"key": k, "path": p, "error": _error_text(p, e)}
                take(res)
                fut.release()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    else:
        n = workers or os.cpu_count() or 1
        if n <= 1 or len(work) <= 1:
            for p, k in work:
                take(process(p, k))
        else:
            from concurrent.futures import ProcessPoolExecutor, as_completed
            import multiprocessing as mp
            with ProcessPoolExecutor(n, mp_context=mp.get_context("spawn")) as ex:
                futs = {ex.submit(process, p, k): (p, k) for p, k in work}
                for fut in as_completed(futs):
                    p, k = futs.pop(fut)
                    try:
                        res = fut.result()
                    except Exception as e:  # noqa: BLE001 - a worker that died (OOM, signal)
                        res = {"key": k, "path": p, "error": _error_text(p, e)}
                    take(res)
    if batch:
        committed.append(ds.commit(batch))
    return {"dataset": str(ds.root), "ingested": ingested, "skipped": skipped,
            "errors": errors, "warnings": warnings, "orphans_removed": removed, "engine": engine,
            "wall_s": round(time.perf_counter() - t0, 3)}


# -- reading -----------------------------------------------------------------------------------

def _arrow_dataset(root: Path, name: str, schema: pa.Schema, pcols: list[str]):
    import pyarrow.dataset as pds
    folder = root / name
    if not folder.is_dir():
        return schema.empty_table()
    part = pds.partitioning(pa.schema([schema.field(c) for c in pcols]), flavor="hive") \
        if pcols else None
    # The schema is given, not inferred: files of an older schema read with NULL for a column
    # added since, and partition values stay strings ("07", not 7).
    return pds.dataset(str(folder), schema=schema, format="parquet", partitioning=part)


def connect(dataset: str | Path):
    """A read-only DuckDB connection with one view per table, showing only live bundles.

    The tables are pyarrow datasets registered with DuckDB; DuckDB itself gets no file access
    (external access off, the local file system disabled, no extension loading, no Python
    replacement scans) and its configuration is locked, so ``COPY ... TO``, ``ATTACH``,
    ``EXPORT DATABASE``, ``INSTALL``/``LOAD`` and ``read_csv('/etc/passwd')`` all fail.
    Paths never enter SQL text."""
    import duckdb
    root = Path(dataset)
    if not root.is_dir():
        raise ParseError(str(root), 0, "no such dataset folder")
    if not (root / "_manifest").is_dir():
        raise ParseError(str(root), 0, "not an mmtriage dataset (no _manifest/)")
    con = duckdb.connect(config={"enable_external_access": False,
                                 "autoinstall_known_extensions": False,
                                 "autoload_known_extensions": False,
                                 "python_enable_replacements": False})
    con.register("_raw_manifest", _arrow_dataset(root, "_manifest", MANIFEST, []))
    con.execute("CREATE VIEW manifest AS SELECT * FROM _raw_manifest")
    # The live bundles, once: the manifests as they are now, like the file lists above.
    con.execute("""CREATE TEMP TABLE live AS SELECT bundle_key FROM (
        SELECT bundle_key, row_number() OVER (PARTITION BY bundle_id
               ORDER BY ingested_at DESC, batch DESC) AS rn FROM manifest) WHERE rn = 1""")
    for name, schema in TABLES.items():
        con.register(f"_raw_{name}", _arrow_dataset(root, name, schema,
                                                     PARTITIONS.get(name, DEFAULT_PARTITIONS)))
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM _raw_{name} "
                    f"WHERE bundle_key IN (SELECT bundle_key FROM live)")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET disabled_filesystems = 'LocalFileSystem'")
    con.execute("SET lock_configuration = true")
    return con


def bundle_count(con) -> int:
    return con.execute("SELECT count(*) FROM live").fetchone()[0]
