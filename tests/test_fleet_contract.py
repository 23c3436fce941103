"""Fleet under attack and in a person's hands: bad bundles among good ones, two writers at once,
hostile SQL, hostile names, huge numbers, options out of range, and reports that say plainly
when there is nothing to say. Every fleet here is built from the real sample bundles."""
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analyzer.cli import app
from analyzer.fleet import Dataset, DatasetLock, connect, ingest
from tests.conftest import LAB0, LAB1, ROOT, SAMPLES, need

runner = CliRunner()
LAB7 = SAMPLES / "lab-7.3.4-defrag1-mmtriage-lab"
LAB1_ESTIMATED = 2975      # the real defrag1 capture: 30 reported, 4,531 suppressed
LAB1_SUPPRESSED = 4531


def copy_bundle(src, dst, **meta_changes):
    shutil.copytree(need(src), dst)
    for p in [dst] + list(Path(dst).rglob("*")):
        p.chmod(0o755 if p.is_dir() else 0o644)
    meta = json.loads((dst / "meta.json").read_text())
    meta.update(meta_changes)
    (dst / "meta.json").write_text(json.dumps(meta))
    return dst


def rows(ds):
    con = connect(ds)
    out = {}
    for t in ("hosts", "events", "pagetypeinfo", "zoneinfo", "buddyinfo", "vmstat"):
        out[t] = sorted(tuple(str(x) for x in r) for r in con.execute(f"SELECT * FROM {t}").fetchall())
    return out


def files_under(*roots):
    return {str(f): f.stat().st_mtime_ns for r in roots for f in Path(r).rglob("*") if f.is_file()}


def cli(*args, env=None):
    """The real command in its own process (stdout and stderr apart, as a user sees them)."""
    return subprocess.run([sys.executable, "-m", "analyzer.cli", *map(str, args)], cwd=ROOT,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=300)


def one_error_line(stderr: str, *words) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: "), stderr
    for w in words:
        assert w in lines[0], (w, stderr)
    return lines[0]


# -- one bad bundle must not lose the batch ---------------------------------------------------

@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Two good bundles and four that cannot be read, each in its own way."""
    root = tmp_path_factory.mktemp("mixed")
    good = [copy_bundle(LAB1, root / "good-a", host="good-a"),
            copy_bundle(LAB0, root / "good-b", host="good-b")]
    bad_json = copy_bundle(LAB1, root / "bad-json", host="bad-json")
    (bad_json / "meta.json").write_text('{"host": "bad-json", "defrag_mode": ')
    bad_types = copy_bundle(LAB1, root / "bad-types", host="bad-types")
    (bad_types / "meta.json").write_text(json.dumps({"host": "bad-types", "defrag_mode": [1]}))
    corrupt = root / "corrupt.tar.gz"
    with tarfile.open(corrupt, "w:gz") as tf:
        tf.add(LAB1, arcname="lab")
    data = corrupt.read_bytes()
    corrupt.write_bytes(data[: len(data) // 2])     # a real tarball, cut in half
    missing = root / "gone"
    return {"good": [str(g) for g in good],
            "bad": [str(bad_json), str(bad_types), str(corrupt), str(missing)]}


def test_bad_bundles_are_listed_and_skipped_the_good_land(mixed, tmp_path):
    ds = tmp_path / "ds"
    paths = [mixed["bad"][0], mixed["good"][0], *mixed["bad"][1:], mixed["good"][1]]
    r = cli("fleet", "ingest", *paths, "--dataset", ds, "--workers", "2", "--batch-size", "1")
    assert r.returncode == 3, r.stderr                   # partial: documented in --help
    doc = json.loads(r.stdout)
    assert doc["ingested"] == 2 and doc["skipped"] == 0
    assert sorted(e["path"] for e in doc["errors"]) == sorted(mixed["bad"])
    for e in doc["errors"]:
        assert e["error"].startswith(e["path"]), e     # every error names its bundle
    err_lines = [ln for ln in r.stderr.splitlines() if ln.startswith("Error: ")]
    assert len(err_lines) == 4 and len(r.stderr.splitlines()) == 4
    for b in mixed["bad"]:
        assert sum(b in ln for ln in err_lines) == 1
    assert "bad JSON" in next(e["error"] for e in doc["errors"] if "bad-json" in e["path"])
    hosts = sorted(h[1] for h in rows(ds)["hosts"])
    assert hosts == ["good-a", "good-b"]
    # the same set again: the good ones are there, the bad ones still named, exit still 3
    r = cli("fleet", "ingest", *paths, "--dataset", ds, "--workers", "1")
    assert r.returncode == 3 and json.loads(r.stdout)["skipped"] == 2
    helptext = " ".join(cli("fleet", "ingest", "--help").stdout.replace("│", " ").split())
    assert "3 some bundles could not be read" in helptext and "75 another ingest" in helptext


def test_nothing_ingested_leaves_no_dataset_behind(mixed, tmp_path):
    ds = tmp_path / "new" / "ds"
    r = cli("fleet", "ingest", *mixed["bad"], "--dataset", ds, "--workers", "1")
    assert r.returncode == 1
    assert len(json.loads(r.stdout)["errors"]) == 4
    assert not (tmp_path / "new").exists()              # the folders it made are gone too
    # an empty folder the user made stays, and stays empty
    empty = tmp_path / "empty"
    empty.mkdir()
    r = cli("fleet", "ingest", *mixed["bad"], "--dataset", empty, "--workers", "1")
    assert r.returncode == 1 and list(empty.iterdir()) == []
    # a dataset that holds data keeps it, untouched
    ds = tmp_path / "full"
    ingest(mixed["good"][:1], ds, workers=1)
    before = rows(ds)
    r = cli("fleet", "ingest", *mixed["bad"], "--dataset", ds, "--workers", "1")
    assert r.returncode == 1 and rows(ds) == before
    # no bundle at all: said so, nothing created
    nothing = tmp_path / "no-bundles"
    nothing.mkdir()
    r = cli("fleet", "ingest", nothing, "--dataset", tmp_path / "ds2")
    one_error_line(r.stderr, str(nothing), "no bundles found")
    assert r.returncode == 1 and not (tmp_path / "ds2").exists()


def test_ingest_refuses_a_folder_that_is_not_a_dataset(mixed, tmp_path):
    """ingest deletes parquet files no manifest names; in someone's folder they are data."""
    home = tmp_path / "home"
    (home / "events").mkdir(parents=True)
    (home / "events" / "mine.parquet").write_bytes(b"PAR1 not ours")
    before = files_under(home)
    r = cli("fleet", "ingest", mixed["good"][0], "--dataset", home)
    one_error_line(r.stderr, str(home), "not an mmtriage dataset")
    assert r.returncode == 1 and files_under(home) == before


def test_an_exception_in_one_bundle_stays_with_that_bundle(mixed, tmp_path, monkeypatch):
    """Even a bug of ours (any exception, not only ParseError) costs one bundle, not the run."""
    import analyzer.fleet as fleet
    real = fleet.bundle_rows

    def flaky(path, key):
        if path.endswith("good-b"):
            raise ZeroDivisionError("boom")
        return real(path, key)
    monkeypatch.setattr(fleet, "bundle_rows", flaky)
    r = ingest(mixed["good"], tmp_path / "ds", workers=1)
    assert r["ingested"] == 1 and len(r["errors"]) == 1
    assert r["errors"][0]["error"] == f"{mixed['good'][1]}: internal error: ZeroDivisionError: boom"


# -- two writers -------------------------------------------------------------------------------

SAMPLE_DIRS = sorted(p for p in SAMPLES.iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def clean_samples(tmp_path_factory):
    ds = tmp_path_factory.mktemp("clean") / "ds"
    r = ingest([str(p) for p in SAMPLE_DIRS], ds, workers=1)
    assert r["ingested"] == len(SAMPLE_DIRS) == 6 and not r["errors"]
    return rows(ds)


def _ingest_proc(ds, *extra):
    return subprocess.Popen([sys.executable, "-m", "analyzer.cli", "fleet", "ingest", str(SAMPLES),
                             "--dataset", str(ds), "--workers", "1", "--batch-size", "2", *extra],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_ingests_at_once_equal_one_clean_ingest(clean_samples, tmp_path):
    ds = tmp_path / "ds"
    procs = [_ingest_proc(ds, "--wait", "300") for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    docs = [json.loads(o) for o, _ in outs]
    # one of them wrote everything; the other found every bundle already there
    assert sorted(d["ingested"] for d in docs) == [0, 6]
    assert sorted(d["skipped"] for d in docs) == [0, 6]
    got = rows(ds)
    assert got == clean_samples
    assert len(got["hosts"]) == 6 and len(got["events"]) == len(clean_samples["events"]) > 0
    con = connect(ds)
    assert con.execute("SELECT count(*), count(DISTINCT bundle_key) FROM manifest").fetchone() == (6, 6)
    assert con.execute("SELECT sum(failures_reported) FROM hosts").fetchone()[0] == \
        _reported(clean_samples) > 0


def _reported(table_rows):
    from parsers.schemas import HOSTS
    i = HOSTS.names.index("failures_reported")
    return sum(int(h[i]) for h in table_rows["hosts"])


def test_second_writer_refuses_or_waits(clean_samples, tmp_path):
    ds = tmp_path / "ds"
    ingest([str(SAMPLE_DIRS[0])], ds, workers=1)
    before = rows(ds)
    with DatasetLock(ds):                                # this test is the first writer
        r = cli("fleet", "ingest", SAMPLES, "--dataset", ds, "--workers", "1")
        assert r.returncode == 75 and r.stdout == ""
        one_error_line(r.stderr, str(ds), f"pid {os.getpid()}", "--wait")
        assert rows(ds) == before
        p = _ingest_proc(ds, "--wait", "120")
        line = p.stderr.readline()                       # it says it waits, and for whom
        assert line.startswith("Waiting up to 120 s") and f"pid {os.getpid()}" in line
        time.sleep(1.0)
        assert p.poll() is None and rows(ds) == before   # still waiting, nothing written
    out, errs = p.communicate(timeout=300)
    assert p.returncode == 0, errs
    assert json.loads(out)["ingested"] == 5 and rows(ds) == clean_samples
    # a wait that runs out is the same refusal
    with DatasetLock(ds):
        t0 = time.monotonic()
        r = cli("fleet", "ingest", SAMPLES, "--dataset", ds, "--wait", "1.5")
        assert r.returncode == 75 and time.monotonic() - t0 >= 1.5
        assert "Waiting up to 1.5 s" in r.stderr and r.stderr.splitlines()[-1].startswith("Error: ")


# -- fleet query is read-only -------------------------------------------------------------------

@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A dataset whose path has both quotes in it (a path never becomes SQL text)."""
    root = tmp_path_factory.mktemp("q")
    ds = root / "it's a \"fleet\""
    r = cli("fleet", "ingest", LAB1, LAB0, "--dataset", ds, "--workers", "1")
    assert r.returncode == 0, r.stderr
    return ds


HOSTILE = [
    "COPY hosts TO '{ds}/hosts/host_bucket=00/batch-evil.parquet' (FORMAT parquet)",
    "COPY (SELECT 1 AS x) TO '{out}/x.csv'",
    "COPY hosts FROM '/etc/passwd'",
    "ATTACH '{out}/x.duckdb' AS x",
    "EXPORT DATABASE '{out}/export'",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM read_blob('/etc/passwd')",
    "SELECT * FROM sniff_csv('/etc/passwd')",
    "SELECT * FROM glob('{ds}/**')",
    "SELECT * FROM read_parquet('{ds}/hosts/**/*.parquet')",
    "SELECT * FROM parquet_metadata('{ds}/_manifest/*.parquet')",
    "SELECT * FROM '/etc/passwd'",
    "SET enable_external_access = true",
    "SET disabled_filesystems = ''",
    "SET lock_configuration = false",
    "SET temp_directory = '{out}'",
    "PRAGMA enable_profiling",
    "SELECT 1; COPY (SELECT 1) TO '{out}/y.csv'",
]


@pytest.mark.parametrize("sql", HOSTILE)
def test_query_cannot_write_or_read_other_files(small, tmp_path, sql):
    out = tmp_path / "out"
    out.mkdir()
    before = files_under(small, out)
    report_before = _report_doc(small)
    r = runner.invoke(app, ["fleet", "query", "--dataset", str(small),
                            sql.format(ds=small, out=out)])
    assert r.exit_code == 1, (sql, r.output)
    one_error_line(r.stderr, "<sql>")
    assert r.stdout == ""
    assert files_under(small, out) == before             # nothing written anywhere
    assert _report_doc(small) == report_before


def _report_doc(ds):
    from analyzer.fleet_report import report
    doc = report(ds)
    doc.pop("wall_s")
    return doc


def test_query_over_the_views_works_on_a_quoted_path(small):
    r = cli("fleet", "query", "--dataset", small, "-f", "json",
            "SELECT host, failures_reported, host_bucket FROM hosts ORDER BY host")
    assert r.returncode == 0, r.stderr
    assert [(d["host"], d["failures_reported"]) for d in json.loads(r.stdout)] == \
        [("lab-6.16.3-defrag0", 0), ("lab-6.16.3-defrag1", 30)]
    # in-memory scratch is allowed: it cannot reach the disk
    r = cli("fleet", "query", "--dataset", small, "-f", "json",
            "CREATE TEMP TABLE t AS SELECT count(*) AS n FROM events; SELECT n FROM t")
    assert r.returncode == 0 and json.loads(r.stdout) == [{"n": 32}]
    for cmd in (["report", "-f", "markdown"], ["validate", "--before-kernel", "6.16",
                                               "--after-kernel", "6.16.3", "-f", "json"]):
        r = cli("fleet", *cmd, "--dataset", small)
        assert r.returncode in (0, 4) and "Error" not in r.stderr, r.stderr


# -- options at the boundary ---------------------------------------------------------------

@pytest.mark.parametrize("args,option", [
    (["report", "--since", "not-a-date"], "--since"),
    (["report", "--since", "2026-13-45"], "--since"),
    (["report", "--top", "-1"], "--top"),
    (["ingest", str(LAB1), "--wait", "-1"], "--wait"),
    (["ingest", str(LAB1), "--batch-size", "0"], "--batch-size"),
    (["ingest", str(LAB1), "--workers", "0"], "--workers"),
    (["ingest", str(LAB1), "--engine", "spark"], "--engine"),
])
def test_bad_options_give_one_line_naming_the_option(small, tmp_path, args, option):
    ds = small if args[0] == "report" else tmp_path / "ds"
    r = cli("fleet", *args, "--dataset", ds)
    assert r.returncode == 1 and r.stdout == ""
    one_error_line(r.stderr, option)
    assert not (tmp_path / "ds").exists()


def test_since_filters_on_a_parsed_time(small):
    r = cli("fleet", "report", "--dataset", small, "-f", "json", "--since", "2026-11-25T20:01:05Z")
    assert json.loads(r.stdout)["totals"]["hosts"] == 1    # defrag0's last snapshot is 20:01:10
    r = cli("fleet", "report", "--dataset", small, "-f", "json", "--since", "2026-11-25")
    assert json.loads(r.stdout)["totals"]["hosts"] == 2


# -- numbers beyond their columns -------------------------------------------------------------

def test_suppressed_count_beyond_int64_is_a_warning_not_a_crash(tmp_path):
    b = copy_bundle(LAB1, tmp_path / "huge", host="huge")
    log = (b / "dmesg").read_text()
    assert "slab_out_of_memory: 16 callbacks suppressed" in log
    (b / "dmesg").write_text(log.replace("slab_out_of_memory: 16 callbacks suppressed",
                                         f"slab_out_of_memory: {2 ** 70} callbacks suppressed"))
    good = copy_bundle(LAB1, tmp_path / "good", host="good")
    ds = tmp_path / "ds"
    r = cli("fleet", "ingest", b, good, "--dataset", ds, "--workers", "1")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ingested"] == 2 and doc["errors"] == []
    con = connect(ds)
    got = dict(con.execute("SELECT host, suppressed FROM hosts").fetchall())
    est = dict(con.execute("SELECT host, failures_estimated FROM hosts").fetchall())
    assert got["good"] == LAB1_SUPPRESSED and est["good"] == LAB1_ESTIMATED
    slab = sum(int(n) for n in re.findall(r"slab_out_of_memory: (\d+) callbacks suppressed", log))
    if doc["warnings"]:                                  # the fleet boundary caught it
        # the parser sums per function: slab_out_of_memory's sum is unknown, warn_alloc's stays
        assert got["huge"] == LAB1_SUPPRESSED - slab == 1586
        assert all(w.startswith(str(b)) for w in doc["warnings"])
        assert any("beyond int64" in w and str(2 ** 70)[:12] in w for w in doc["warnings"])
        warn = [ln for ln in r.stderr.splitlines() if ln.startswith("Warning: ")]
        assert len(warn) == len(doc["warnings"])
        assert est["huge"] is None
        r = cli("fleet", "report", "--dataset", ds)
        assert r.returncode == 0 and f"≈{LAB1_ESTIMATED:,} estimated" in r.stdout
        assert "estimate of 1 failing host is unknown" in " ".join(r.stdout.split())
    else:                                                # the parser rejected the line
        assert got["huge"] == LAB1_SUPPRESSED - 16 and 0 <= est["huge"] < 2 ** 63


def test_fleet_boundary_keeps_int64_columns_in_range():
    """Whatever a parser lets through, the dataset's columns hold only numbers that fit."""
    from analyzer.fleet import _fit, _suppressed_total
    from parsers.schemas import EVENTS, HOSTS
    warnings = []
    assert _suppressed_total({"a": 2 ** 70, "b": 5, "c": -1}, "/b", warnings) == 5
    assert len(warnings) == 2 and all(w.startswith("/b: suppressed count") for w in warnings)
    row = {"suppressed": 2 ** 63, "failures_estimated": 2 ** 63 - 1, "defrag_mode": 300,
           "oom_reports": -2 ** 63 - 1}
    warnings = []
    _fit([row], HOSTS, "hosts", "/b", warnings)
    assert row == {"suppressed": None, "failures_estimated": 2 ** 63 - 1, "defrag_mode": None,
                   "oom_reports": None}
    assert len(warnings) == 3 and any("hosts.defrag_mode = 300 " in w for w in warnings)
    ev = {"order": 99999999999999999999, "gfp_mask": 2 ** 64, "line": 7}
    _fit([ev], EVENTS, "events", "/b", [])
    assert ev == {"order": None, "gfp_mask": None, "line": 7}


# -- hostile names in Markdown and HTML ------------------------------------------------------

EVIL_HOST = "<script>alert(1)</script>|x"
EVIL_HOST2 = "<img src=x onerror=alert(2)>"
EVIL_KERNEL = "6.16.3<b onmouseover=alert(3)>"


@pytest.fixture(scope="module")
def evil(tmp_path_factory):
    root = tmp_path_factory.mktemp("evil")
    a = copy_bundle(LAB1, root / "a", host=EVIL_HOST, kernel_release=EVIL_KERNEL)
    b = copy_bundle(LAB1, root / "b", host=EVIL_HOST2)
    ds = root / "ds"
    assert ingest([str(a), str(b)], ds, workers=1)["ingested"] == 2
    return ds


def test_markdown_and_html_escape_names_from_bundles(evil, tmp_path):
    r = cli("fleet", "report", "--dataset", evil, "-f", "markdown")
    assert r.returncode == 0
    md = r.stdout
    for raw in ("<script", "<img", "<b ", "onerror=alert(2)>"):
        assert raw not in md
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\|x" in md
    assert "&lt;img src=x onerror=alert(2)&gt;" in md
    # the host with a pipe stays in its cell: every table row has as many cells as its header
    table = [ln for ln in md.splitlines() if ln.startswith("| ") and "alert(1)" in ln]
    head = next(ln for ln in md.splitlines() if ln.startswith("| host |"))
    assert table and all(len(re.split(r"(?<!\\)\|", ln)) == len(re.split(r"(?<!\\)\|", head))
                         for ln in table)
    out = tmp_path / "r.html"
    r = cli("fleet", "report", "--dataset", evil, "-f", "html", "-o", out)
    assert r.returncode == 0
    page = out.read_text()
    assert "<script" not in page and "<img src=x" not in page and "<b " not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;|x" in page     # shown, as text
    assert "<table>" in page and "<pre>" not in page             # a real document


# -- distinct hosts, bundles counted too -------------------------------------------------------

@pytest.fixture(scope="module")
def several(tmp_path_factory):
    """Three hosts in six bundles, each host's newest bundle chosen by its own times:
    db-1: failing on 2026-11-20, healthy at its newest (the defrag0 capture, 2026-11-25);
    db-2: failing twice (11-01, 11-30); db-3: the 7.3.4 capture (11-25), then failing on 6.16
    (12-05)."""
    r = tmp_path_factory.mktemp("several")
    bs = [copy_bundle(LAB1, r / "db1-old", host="db-1", boot_time="2026-11-20T00:00:00Z"),
          copy_bundle(LAB0, r / "db1-new", host="db-1"),
          copy_bundle(LAB1, r / "db2-old", host="db-2", boot_time="2026-11-01T00:00:00Z"),
          copy_bundle(LAB1, r / "db2-new", host="db-2", boot_time="2026-11-30T00:00:00Z"),
          copy_bundle(LAB7, r / "db3-old", host="db-3"),
          copy_bundle(LAB1, r / "db3-new", host="db-3", boot_time="2026-12-05T00:00:00Z")]
    ds = r / "ds"
    res = ingest([str(b) for b in bs], ds, workers=2, batch_size=2)
    assert res["ingested"] == 6 and not res["errors"]
    return ds


def _totals(ds, *args):
    r = cli("fleet", "report", "--dataset", ds, "-f", "json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_report_counts_distinct_hosts_at_their_newest_bundle(several):
    lab7 = _totals(several, "--kernel", "7.3")["totals"]
    assert lab7["hosts"] == 1 and lab7["bundles"] == 1
    lab7_est = lab7["estimated"]
    doc = _totals(several)
    t = doc["totals"]
    assert (t["hosts"], t["bundles"]) == (3, 6)
    assert t["hosts_failing"] == 2                       # db-1's newest bundle is healthy
    assert t["estimated"] == 2 * LAB1_ESTIMATED          # db-2 and db-3 at their newest
    assert sorted(h["host"] for h in doc["top_hosts"]) == ["db-2", "db-3"]
    assert all(h["last_seen"].startswith(d) for h, d in
               zip(sorted(doc["top_hosts"], key=lambda h: h["host"]), ("2026-11-30", "2026-12-05")))
    assert sum(m["hosts"] for m in doc["kernel_matrix"]) == 3
    every = _totals(several, "--all-bundles")
    assert (every["totals"]["hosts"], every["totals"]["bundles"]) == (3, 6)
    assert every["totals"]["estimated"] == 4 * LAB1_ESTIMATED + lab7_est
    assert every["totals"]["hosts_failing"] == 3
    # filters first, then each host's newest among what they kept
    since = _totals(several, "--since", "2026-11-26")["totals"]
    assert (since["hosts"], since["bundles"]) == (2, 2)
    old = _totals(several, "--kernel", "6.16", "--host", "db-[12]")["totals"]
    assert (old["hosts"], old["bundles"], old["hosts_failing"]) == (2, 4, 1)
    # people see both counts
    for fmt, needle in (("table", "3 hosts (each counted at its newest bundle; 6 bundles)"),
                        ("markdown", "**3 hosts** (each counted at its newest bundle; 6 bundles)")):
        r = cli("fleet", "report", "--dataset", several, "-f", fmt)
        assert needle in " ".join(r.stdout.split()), r.stdout


# -- honest when there is nothing to say -----------------------------------------------------

def test_report_with_a_filter_that_matches_nothing_says_so(several):
    for fmt in ("table", "markdown"):
        r = cli("fleet", "report", "--dataset", several, "-f", fmt, "--kernel", "9.")
        assert r.returncode == 0
        assert "No bundle matches --kernel 9.: the dataset holds 3 hosts in 6 bundles." in r.stdout
        assert "by cause" not in r.stdout.lower()        # no empty tables after it
    r = cli("fleet", "report", "--dataset", several, "-f", "json", "--host", "nobody")
    assert r.returncode == 0 and json.loads(r.stdout)["totals"]["hosts"] == 0
    assert json.loads(r.stdout)["note"].startswith("No bundle matches --host nobody")
    assert r.stderr.startswith("Note: No bundle matches")


def test_empty_dataset_query_and_report_say_so(tmp_path):
    ds = tmp_path / "empty"
    Dataset(ds).init()                                   # a dataset with no bundle yet
    r = cli("fleet", "query", "--dataset", ds, "-f", "json", "SELECT host FROM hosts")
    assert r.returncode == 0 and json.loads(r.stdout) == []
    assert "holds no bundles yet" in r.stderr
    r = cli("fleet", "query", "--dataset", ds, "SELECT host, kernel_release FROM hosts")
    assert r.returncode == 0 and "host" in r.stdout and "kernel_release" in r.stdout
    assert "no rows" in r.stderr
    r = cli("fleet", "report", "--dataset", ds)
    assert r.returncode == 0 and "The dataset holds no bundles yet" in r.stdout
    r = cli("fleet", "query", "--dataset", tmp_path / "nope", "SELECT 1")
    one_error_line(r.stderr, str(tmp_path / "nope"), "no such dataset folder")


def test_fleet_validate_with_no_host_on_both_kernels_says_so(several):
    r = cli("fleet", "validate", "--dataset", several, "--before-kernel", "6.16",
            "--after-kernel", "8.0")
    assert r.returncode == 4
    assert ("No host has bundles on both kernels 6.16* and 8.0*: 3 of 3 hosts on 6.16* only, "
            "0 on 8.0* only.") in r.stdout
    r = cli("fleet", "validate", "--dataset", several, "--before-kernel", "6.16",
            "--after-kernel", "8.0", "-f", "json")
    assert r.returncode == 4 and json.loads(r.stdout)["hosts_paired"] == 0
    assert r.stderr.startswith("Note: No host has bundles on both kernels")


def test_fleet_validate_table_reads_as_text(several):
    r = cli("fleet", "validate", "--dataset", several, "--before-kernel", "7.3",
            "--after-kernel", "6.16")
    assert r.returncode == 0, r.stderr
    assert "db-3" in r.stdout
    assert re.search(r"summary: \d+ fixed, \d+ not fixed, \d+ inconclusive, of 1 host paired",
                     r.stdout)
    assert "{" not in r.stdout and "None" not in r.stdout


# -- numbers for people ------------------------------------------------------------------------

SCI = re.compile(r"\d\.?\d*e[+-]?\d", re.I)


def test_report_numbers_have_separators_and_no_reprs(several, tmp_path):
    every = " ".join(cli("fleet", "report", "--dataset", several, "--all-bundles").stdout.split())
    assert f"≈{4 * LAB1_ESTIMATED:,} estimated" in every and "11,900" in every
    for fmt in ("table", "markdown"):
        r = cli("fleet", "report", "--dataset", several, "-f", fmt)
        assert r.returncode == 0
        text = r.stdout
        assert "5,950" in text                          # 2 x 2,975, with its separator
        assert not SCI.search(text), SCI.search(text)
        assert "None" not in text and "{'" not in text and "nan" not in text.lower()
        assert "1,256.9" in text                        # free MiB elsewhere, one decimal
    r = cli("fleet", "query", "--dataset", several,
            "SELECT host, free_mib_other_types, failures_estimated * 1000000 AS big, "
            "failures_per_hour, NULL AS nothing FROM hosts WHERE host = 'db-2' LIMIT 1")
    assert r.returncode == 0
    assert "2,975,000,000" in r.stdout and "1,256.9" in r.stdout
    assert not SCI.search(r.stdout) and "None" not in r.stdout
    r = cli("fleet", "ingest", LAB1, "--dataset", tmp_path / "ds", "-f", "table")
    assert r.returncode == 0 and "skipped" in r.stdout and "[" not in r.stdout
