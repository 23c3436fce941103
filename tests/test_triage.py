"""Triage: attribution on real captures and public logs, accuracy against the model's ground
truth, HTML escaping, the command."""
import csv
import gzip
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from analyzer.attribution import attribute
from analyzer.cli import app
from models import scenarios
from models.emit import emit
from models.simulate import simulate
from parsers.bundle import load
from tests.conftest import LAB0, LAB1, PUBLIC, SAMPLES, need

runner = CliRunner()


def test_lab_defrag1_is_the_bailout():
    with load(need(LAB1)) as b:
        d = attribute(b)
    assert d["attribution"]["defrag_nofragment_bailout"] == 30
    assert d["failures"]["reported"] == 30 and d["failures"]["estimated"] == 2975
    assert d["fix"]["status"] == "affected" and d["policy"] == "defrag"
    assert d["corroboration"]["counters"]["Icmp.OutErrors"] == 293260
    assert d["at_failure"]["free_pageblocks_max"] == 0
    assert d["at_failure"]["free_mib_other_types_median"] > 1000
    assert {s["id"] for s in d["signatures"]} == {"defrag-mode-nonreclaimable-bailout"}
    pa = [e for e in d["events"] if e["kind"] == "page_alloc"][0]
    ev = pa["evidence"]
    assert ev["would_succeed"] == {"defrag": False, "defrag-fixed": True, "legacy": True}
    dma = [z for z in ev["zones"] if z["zone"].endswith("DMA")][0]
    assert dma["usable"] is False  # 1406 free pages under a 1414-page lowmem reserve
    assert d["verdict"].startswith("100% of 30 reported failures (≈2,975 estimated")
    assert "predates the fix" in d["verdict"]


def test_lab_defrag0_has_nothing():
    with load(need(LAB0)) as b:
        d = attribute(b)
    assert d["failures"]["reported"] == 0 and d["policy"] == "legacy"
    assert d["verdict"].startswith("No allocation failure reports")


@pytest.mark.parametrize("name", sorted(p.name for p in PUBLIC.glob("*.txt")
                                        if p.name.split("-")[0] in ("slub", "allocfail", "mixed")))
def test_every_public_log_gets_a_cause_and_renders(name, tmp_path):
    with load(PUBLIC / name) as b:
        d = attribute(b)
        for e in d["events"]:
            assert e["cause"] in d["attribution"] and 0 <= e["confidence"] <= 1
            if e["kernel_release"] and e["kernel_release"] < "6.15" and not e[
                    "kernel_release"].startswith(("6.15", "6.16", "6.17", "6.18", "6.19", "7")):
                assert e["cause"] != "defrag_nofragment_bailout"
        assert d["attribution"]["defrag_nofragment_bailout"] == 0  # all pre-6.15 kernels
        from analyzer import report
        imgs = report.plots(d, b, tmp_path)
        assert report.html_report(d, imgs).startswith("<!doctype html>")
        assert report.markdown(d).startswith("# mmtriage")


def _accuracy(sc, policy, seed, tmp_path):
    res = simulate(sc, policy, seed=seed)
    out = tmp_path / f"{sc.name}-{policy}"
    emit(res, out)
    truth = {}
    with gzip.open(out / "truth.csv.gz", "rt") as fh:
        for row in csv.DictReader(fh):
            truth.setdefault((row["kind"], row["time_s"]), row["cause"])
    with load(out) as b:
        d = attribute(b)
    right = total = 0
    for e in d["events"]:
        kind = "slub" if e["kind"] == "slub" or e.get("slab_page") else "page_alloc"
        key = (kind, f"{e['time_s']:.6f}")
        if key not in truth:
            continue
        total += 1
        right += truth[key] == e["cause"]
    return right, total, d, res


@pytest.mark.parametrize("name,gib", [("seed-skbuff", 2), ("high-order", 2), ("low-memory", 1),
                                      ("lab", None)])
@pytest.mark.parametrize("policy", ["defrag", "defrag-fixed", "legacy"])
def test_attribution_accuracy_on_model_bundles(name, gib, policy, tmp_path):
    sc = scenarios.get(name, mem_gib=gib)
    sc.hours = min(sc.hours, 0.05)
    right, total, d, res = _accuracy(sc, policy, 3, tmp_path)
    printed = res.report_counts()
    assert total == printed["slub_printed"] + printed["page_alloc_printed"]
    if total:
        assert right / total >= 0.95, (right, total, d["attribution"])
    if policy == "legacy":
        assert d["attribution"]["defrag_nofragment_bailout"] == 0


def test_html_escapes_log_text(tmp_path):
    log = tmp_path / "kern.log"
    log.write_text(
        "[ 1.000000] <script>alert(1)</script>: page allocation failure: order:0, "
        "mode:0x820(GFP_ATOMIC), nodemask=(null),cpuset=/,mems_allowed=0\n"
        "[ 1.000100] SLUB: Unable to allocate memory on node -1, gfp=0x820(GFP_ATOMIC)\n"
        "[ 1.000100]   cache: <img src=x onerror=alert(2)>, object size: 232, buffer size: 256, "
        "default order: 0, min order: 0\n")
    out = tmp_path / "r.html"
    r = runner.invoke(app, ["triage", str(log), "--format", "html", "--output", str(out)])
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert "<script>alert" not in text and "<img src=x" not in text
    assert "&lt;img src=x onerror=alert(2)&gt;" in text


def test_triage_json_contract():
    r = runner.invoke(app, ["triage", str(need(LAB1)), "--format", "json"])
    assert r.exit_code == 0
    d = json.loads(r.stdout)
    for k in ("host", "kernel_release", "defrag_mode", "summary", "attribution", "events"):
        assert k in d
    assert set(d["attribution"]) == {"defrag_nofragment_bailout", "low_memory",
                                     "high_order_fragmentation", "speculative_expected", "unknown"}
    e = d["events"][0]
    assert {"cause", "confidence", "evidence"} <= set(e)
    assert d["summary"]["slub_reports"] == 30


def test_triage_markdown_writes_plots(tmp_path):
    out = tmp_path / "r.md"
    r = runner.invoke(app, ["triage", str(need(LAB1)), "-f", "markdown", "-o", str(out)])
    assert r.exit_code == 0
    assert (tmp_path / "failures_over_time.png").stat().st_size > 5000
    assert "![failures_over_time.png]" in out.read_text()


def test_every_sample_bundle_triages():
    for d in SAMPLES.iterdir():
        if d.is_dir():
            r = runner.invoke(app, ["triage", str(d), "-f", "json"])
            assert r.exit_code == 0, (d, r.stderr)
