"""The commands as a user runs them: JSON shapes, errors, exit codes, help."""
import gzip
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from analyzer.cli import app
from tests.conftest import LAB1, PUBLIC, ROOT, SAMPLES, need

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_parse_json_shape():
    r = run("parse", need(LAB1), "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    s = doc["summary"]
    for k in ("slub_reports", "page_alloc_reports", "oom_reports", "suppressed",
              "slub_failures_estimated", "page_alloc_failures_estimated", "partial_records", "lines"):
        assert k in s
    assert s["slub_failures_estimated"] == 2975
    e = doc["events"][0]
    for k in ("kind", "source", "line", "time_s", "time_wall", "gfp_mask", "gfp_flags", "order",
              "migratetype", "cache", "object_size", "buffer_size", "default_order", "min_order",
              "nodes", "comm", "zones", "partial"):
        assert k in e
    z = e["zones"][1]
    assert {"node", "zone", "free_kb", "min_kb", "low_kb", "high_kb", "buddy"} <= set(z)
    assert {"order", "count", "types"} <= set(z["buddy"][0])


def test_parse_several_files_and_stdin(tmp_path):
    r = run("parse", PUBLIC / "slub-gh-moby35545-1.txt", PUBLIC / "slub-lkml-wujing-1.txt")
    assert json.loads(r.stdout)["summary"]["slub_reports"] == 10
    p = subprocess.run([sys.executable, "-m", "analyzer.cli", "parse", "-"],
                       input=(PUBLIC / "slub-gh-moby35545-1.txt").read_bytes(),
                       capture_output=True, cwd=ROOT)
    assert p.returncode == 0 and json.loads(p.stdout)["summary"]["slub_reports"] == 4


@pytest.mark.parametrize("fmt", ["table", "csv", "ndjson"])
def test_parse_other_formats(fmt):
    r = run("parse", need(LAB1) / "dmesg", "--format", fmt)
    assert r.exit_code == 0 and "skbuff_head_cache" in r.stdout


def test_parse_output_file(tmp_path):
    out = tmp_path / "o.json"
    r = run("parse", need(LAB1), "-o", out)
    assert r.exit_code == 0 and r.stdout == ""
    assert json.loads(out.read_text())["summary"]["slub_reports"] == 30


def test_proc_json():
    r = run("proc", PUBLIC / "pagetypeinfo-chromeos66-1.txt", PUBLIC / "buddyinfo-procfs-1.txt",
            PUBLIC / "zoneinfo-procfs-1.txt", PUBLIC / "vmstat-jmr540arm-1.txt",
            SAMPLES / "host-6.18-x86_64-corpus/snapshots/20261125T195929Z/meminfo")
    assert r.exit_code == 0
    files = json.loads(r.stdout)["files"]
    assert [f["kind"] for f in files] == ["pagetypeinfo", "buddyinfo", "zoneinfo", "vmstat", "meminfo"]
    assert files[0]["pageblock_order"] == 10
    assert files[1]["free"][0] == {"node": 0, "zone": "DMA", "order": 0, "count": 1}
    assert "counters" in files[3] and "fields_kb" in files[4]


def test_gfp_json():
    r = run("gfp", "0xa20(GFP_ATOMIC)", "--format", "json")
    d = json.loads(r.stdout)
    assert d["layout"] == "L4" and d["can_direct_reclaim"] is False and d["kswapd_reclaim"] is True
    r = run("gfp", "GFP_ATOMIC|__GFP_NOWARN", "--kernel", "6.16.3", "-f", "json")
    assert json.loads(r.stdout)["mask"] == 0x2820


@pytest.mark.parametrize("args,needle", [
    (["proc", "{p}/slub-lkml-wujing-1.txt"], "slub-lkml-wujing-1.txt:1: not a /proc file"),
    (["parse", "/nonexistent/log"], "/nonexistent/log: no such file"),
    (["gfp", "0xZZ"], "Error: 0xZZ: not a GFP mask"),
])
def test_errors_are_one_line(args, needle):
    args = [a.format(p=PUBLIC) for a in args]
    r = run(*args)
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and needle in lines[0], r.stderr
    assert r.stdout == ""


def test_bad_proc_line_is_skipped_with_its_number(tmp_path):
    p = tmp_path / "vmstat"
    p.write_text("nr_free_pages 10\nnr_bogus abc\n")
    r = subprocess.run([sys.executable, "-m", "analyzer.cli", "proc", str(p)], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == f"Warning: {p}:2: skipped: not a 'name value' line: 'nr_bogus abc'"
    doc = json.loads(r.stdout)["files"][0]
    assert doc["counters"] == {"nr_free_pages": 10} and len(doc["warnings"]) == 1


def test_proc_file_with_no_table_is_an_error(tmp_path):
    p = tmp_path / "vmstat"
    p.write_text("nr_bogus abc\n")
    r = run("proc", p)
    assert r.exit_code == 1
    assert r.stderr.strip() == f"Error: {p}:1: not a /proc file this tool knows (vmstat, pagetypeinfo, " \
        "buddyinfo, zoneinfo, meminfo, slabinfo, net/snmp, net/netstat, net/dev, softnet_stat): " \
        "'nr_bogus abc'"


def test_truncated_gzip(tmp_path):
    p = tmp_path / "kern.log.gz"
    p.write_bytes(gzip.compress((need(LAB1) / "dmesg").read_bytes())[:3000])
    out = tmp_path / "out.json"
    r = run("parse", p, "-o", out)
    assert r.exit_code == 1 and "cannot decompress" in r.stderr and str(p) in r.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [p]


def test_every_command_has_help_with_example():
    names = [[c.name or c.callback.__name__] for c in app.registered_commands]
    for group in app.registered_groups:
        names += [[group.name, c.name or c.callback.__name__]
                  for c in group.typer_instance.registered_commands]
    assert len(names) >= 12
    for n in names:
        r = run(*n, "--help")
        assert r.exit_code == 0 and "Example" in r.stdout, n
        assert "--format" in r.stdout, n


def test_docs_cover_every_command():
    text = (ROOT / "docs" / "cli.md").read_text()
    for c in app.registered_commands:
        assert f"mmtriage {c.name or c.callback.__name__}" in text
    for group in app.registered_groups:
        for c in group.typer_instance.registered_commands:
            assert f"mmtriage {group.name} {c.name or c.callback.__name__}" in text


@pytest.mark.slow
def test_model_calibrate_then_whatif_as_a_user_runs_them(tmp_path):
    fit = tmp_path / "params.json"
    r = run("model", "calibrate", need(LAB1), "--evals", "40", "--output", fit,
            "--plots", tmp_path / "plots")
    assert r.exit_code == 0, r.output
    doc = json.loads(fit.read_text())
    assert doc["fit"][0]["observed"] == 293260 and doc["evaluations"] >= 40
    # an echo load on unread sockets: the held share, the life and the data buffer per reply
    # are measured, not fitted
    assert "reclaim_stall_s" in doc["fitted"] and "data_share" not in doc["fitted"]
    assert "net_hold_frac" in doc["measured"] and doc["params"]["net_hold_frac"] == 1.0
    assert doc["params"]["data_share"] == 1.0
    assert {"low", "high", "value"} <= set(doc["uncertainty"]["reclaim_stall_s"])
    for ext in ("png", "svg"):
        assert (tmp_path / "plots" / f"calibration_fit.{ext}").stat().st_size > 10_000
    r = run("model", "whatif", need(LAB1), "--params", fit, "--policy", "defrag-fixed",
            "--seeds", "2")
    assert r.exit_code == 0, r.output
    w = json.loads(r.stdout)
    assert w["policy"] == "defrag-fixed" and w["failures"]["mean"] == 0
    assert w["answer"].startswith("under defrag-fixed: 0 failures predicted")


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_parse_csv_and_ndjson_lead_with_the_summary(fmt, tmp_path):
    import csv as _csv
    out = tmp_path / f"r.{fmt}"
    r = run("parse", need(LAB1), "-f", fmt, "-o", out)
    assert r.exit_code == 0 and r.stdout == ""
    if fmt == "ndjson":
        recs = [json.loads(ln) for ln in out.read_text().splitlines()]
    else:
        recs = list(_csv.DictReader(out.open()))
    assert recs[0]["kind"] == "summary" and int(recs[0]["slub_failures_estimated"]) == 2975
    assert [r["kind"] for r in recs[1:]].count("slub") == 30 and len(recs) == 33
    # the failure records' own columns come first in csv
    if fmt == "csv":
        assert list(recs[0])[:3] == ["kind", "source", "line"]


@pytest.mark.parametrize("args,needle", [
    (["triage"], "Error: Missing argument 'path'. (see '"),
    (["triage", "x", "--format", "bogus"], "Error: Invalid value for '--format' / '-f': 'bogus' "
                                           "is not one of"),
    (["bogus"], "Error: No such command 'bogus'."),
])
def test_usage_errors_are_one_line(args, needle):
    r = run(*args)
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(needle), r.stderr
    assert r.stdout == ""


def test_version():
    from importlib.metadata import version
    r = run("--version")
    assert r.exit_code == 0 and r.stdout == f"mmtriage {version('mmtriage')}\n"


def test_gfp_writes_where_asked(tmp_path):
    out = tmp_path / "g.json"
    r = run("gfp", "0xa20(GFP_ATOMIC)", "-f", "json", "-o", out)
    assert r.exit_code == 0 and r.stdout == ""
    assert json.loads(out.read_text())["layout"] == "L4"


def test_output_to_a_pipe_or_device_is_written_in_place(tmp_path):
    """-o /dev/null or a FIFO is written into, never renamed over (a temp file renamed onto
    /dev/null would replace the device with a file)."""
    import os
    import stat
    import threading
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    r = subprocess.run([sys.executable, "-m", "analyzer.cli", "parse", str(LAB1), "-o", str(fifo)],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    reader.join(timeout=60)
    assert r.returncode == 0, r.stderr
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert json.loads(got[0])["summary"]["slub_reports"] == 30


def test_model_calibrate_fix_holds_a_parameter_it_would_fit(tmp_path):
    fit = tmp_path / "params.json"
    r = run("model", "calibrate", need(LAB1), "--evals", "4", "--fix", "reclaim_stall_s=0.5",
            "--output", fit)
    assert r.exit_code == 0, r.output
    doc = json.loads(fit.read_text())
    assert "reclaim_stall_s" not in doc["fitted"] and doc["params"]["reclaim_stall_s"] == 0.5
    r = run("model", "calibrate", need(LAB1), "--evals", "4", "--fix", "reclaim_stall_s=0.5",
            "--fix", "data_share=0.9", "--fix", "net_start_s=2")
    assert r.exit_code == 1 and "nothing left to fit" in r.output and "Traceback" not in r.output
