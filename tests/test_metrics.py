"""`mmtriage metrics` on the real lab bundles and on this host, checked with the real programs:
node_exporter's textfile collector, promtool, systemd-analyze."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
from prometheus_client.parser import text_string_to_metric_families as text_families

from analyzer import metrics as M
from analyzer.attribution import attribute
from analyzer.observe import from_snapshot
from models import engine as E
from parsers.bundle import load
from tests.conftest import LAB0, LAB1, ROOT, SAMPLES, need

LAB1_TOOL = SAMPLES / "lab-6.16.3-defrag1-mmtriage-lab"   # 6.16.3, defrag_mode=1: affected
LAB_FIXED = SAMPLES / "lab-7.3.4-defrag1-mmtriage-lab"    # 7.3.4 carries the fix
DOCS = ROOT / "docs"
PAGE = 4096
CLI = [sys.executable, "-m", "analyzer.cli", "metrics"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
PROMTOOL = shutil.which("promtool")
needs_node_exporter = pytest.mark.skipif(
    NODE_EXPORTER is None, reason="node_exporter not installed (apt-get install "
                                  "prometheus-node-exporter; .ci/run does)")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install prometheus; .ci/run does)")


def series(text: str, openmetrics: bool = False) -> dict:
    """{(sample name, sorted labels): value} from an exposition."""
    parse = om_families if openmetrics else text_families
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in parse(text) for s in fam.samples}


def val(sr: dict, name: str, **labels):
    return sr[(name, tuple(sorted(labels.items())))]


def view(bundle: Path, snap: str | None = None) -> M.View:
    return M.bundle_view(str(need(bundle)), snap)


def zone(v: M.View, name: str) -> M.ZoneRisk:
    return next(z for z in v.risk[0] if z.zone == name)


def first_failure(bundle: Path):
    with load(bundle) as b:
        return min(b.event_wall_time(e) for e in b.log.events
                   if e["kind"] in ("slub", "page_alloc"))


def snap_time(bundle: Path, name: str):
    with load(bundle, parse_logs=False) as b:
        return next(s.time for s in b.snapshots if s.name == name)


# --- the bailout risk on the real lab captures ------------------------------------------------

def test_risk_is_1_at_the_last_snapshot_before_the_first_failure():
    # 6.16.3, defrag_mode=1: the snapshot 1.9 s before the first GFP_ATOMIC failure.
    snap = "20261125T200043Z"
    gap = (first_failure(LAB1) - snap_time(LAB1, snap)).total_seconds()
    assert 0 < gap < 3
    v = view(LAB1, snap)
    assert v.facts.policy == E.DEFRAG and v.facts.fix["status"] == "affected"
    dma32 = zone(v, "DMA32")
    # no free pageblock left to claim, 1.3 GiB free elsewhere, 1922 unmovable pages to go
    sr = series(M.render(v, "prometheus"))
    assert val(sr, "mmtriage_free_pageblocks", node="0", zone="DMA32") == 0
    assert val(sr, "mmtriage_free_bytes", node="0", zone="DMA32", migratetype="Movable") > 1.3e9
    assert (dma32.risk, dma32.margin_pages, dma32.cause_when_drained) == \
        (1, 1922, "defrag_nofragment_bailout")
    assert val(sr, "mmtriage_bailout_risk", node="0", zone="DMA32") == 1
    assert val(sr, "mmtriage_bailout_margin_bytes", node="0", zone="DMA32") == 1922 * PAGE
    assert val(sr, "mmtriage_node_bailout_risk", node="0") == 1
    assert val(sr, "mmtriage_node_bailout_now", node="0") == 0      # not yet: 1922 pages left
    # DMA is below the atomic watermark plus its lowmem reserve: low memory, not the bailout
    assert zone(v, "DMA").risk == 0 and zone(v, "DMA").watermark_margin_pages < 0
    assert dma32.watermark_margin_pages > 300_000
    # and nothing had failed yet at that snapshot
    assert sum(v.failures["estimated"].values()) == 0


def test_risk_is_1_during_the_flood_before_the_later_failures():
    snap = "20261125T223851Z"
    with load(need(LAB1_TOOL)) as b:
        t = snap_time(LAB1_TOOL, snap)
        later = [e for e in b.log.events if e["kind"] == "slub" and b.event_wall_time(e) > t]
    assert len(later) >= 10
    v = view(LAB1_TOOL, snap)
    assert (zone(v, "DMA32").risk, zone(v, "DMA32").margin_pages) == (1, 392)
    assert [(n.node, n.risk, n.now) for n in v.risk[1]] == [(0, 1, 0)]


def test_risk_reads_the_state_not_the_load_to_come():
    # Before the flood began the zone had 36 free pageblocks that ALLOC_NOFRAGMENT may claim:
    # the gauge says 0. The flood used them up within 2 s and the failures began.
    snap = "20261125T223831Z"
    gap = (first_failure(LAB1_TOOL) - snap_time(LAB1_TOOL, snap)).total_seconds()
    assert 0 < gap < 3
    v = view(LAB1_TOOL, snap)
    sr = series(M.render(v, "prometheus"))
    assert val(sr, "mmtriage_free_pageblocks", node="0", zone="DMA32") == 36
    assert val(sr, "mmtriage_node_bailout_risk", node="0") == 0


@pytest.mark.parametrize("bundle,snap", [(LAB1, "20261125T200104Z"),
                                         (LAB1_TOOL, "20261125T223911Z")])
def test_failing_now_when_the_unmovable_lists_are_empty(bundle, snap):
    v = view(bundle, snap)
    assert (zone(v, "DMA32").risk, zone(v, "DMA32").margin_pages) == (1, 0)
    assert [(n.risk, n.now, n.margin_pages) for n in v.risk[1]] == [(1, 1, 0)]


@pytest.mark.parametrize("bundle,policy", [(LAB_FIXED, E.DEFRAG_FIXED), (LAB0, E.LEGACY)])
def test_risk_is_0_on_the_fixed_kernel_and_with_defrag_mode_0(bundle, policy):
    with load(need(bundle), parse_logs=False) as b:
        names = [s.name for s in b.snapshots]
    risky_states = 0
    for name in names:
        v = view(bundle, name)
        assert v.facts.policy == policy
        assert [z.risk for z in v.risk[0]] == [0, 0]
        assert [(n.risk, n.now) for n in v.risk[1]] == [(0, 0)]
        # The same state under the unfixed defrag_mode=1 policy: the gauge would say 1 in the
        # DMA32 zone whenever it had no free pageblock, so the 0 above is the kernel's doing.
        with load(need(bundle), parse_logs=False) as b:
            obs = from_snapshot(next(s for s in b.snapshots if s.name == name))
        zones, _ = M.bailout_risk(obs, E.DEFRAG)
        dma32 = next(z for z in zones if z.zone == "DMA32")
        if int(obs.zs[1, E.Z_FREE_BLOCKS]) == 0:
            risky_states += 1
            assert dma32.risk == 1
    assert risky_states >= 2  # the load did reach the state in which the bailout bites


def test_fixed_kernel_counterfactual_at_the_node():
    with load(need(LAB_FIXED), parse_logs=False) as b:
        obs = from_snapshot(next(s for s in b.snapshots if s.name == "20261125T224016Z"))
    assert [n.risk for n in M.bailout_risk(obs, E.DEFRAG)[1]] == [1]
    assert [n.risk for n in M.bailout_risk(obs, E.DEFRAG_FIXED)[1]] == [0]
    assert [n.risk for n in M.bailout_risk(obs, E.LEGACY)[1]] == [0]


def test_watermark_margin_is_the_decision_functions_boundary():
    v = view(LAB1, "20261125T200043Z")
    with load(LAB1, parse_logs=False) as b:
        obs = from_snapshot(next(s for s in b.snapshots if s.name == "20261125T200043Z"))
    flags = E.gfp_to_alloc_flags(E.GFP_ATOMIC, 0, E.DEFRAG)
    for i, z in enumerate(v.risk[0]):
        mark = int(E.wmark_pages(obs.zs, i, flags & E.ALLOC_WMARK_MASK))
        free = int(obs.zs[i, E.Z_FREE])
        ok = lambda f: bool(E.zone_watermark_ok(obs.zs, obs.nr_free, obs.lowmem, i, 0, mark,
                                                E.ZONE_NORMAL, flags, f))
        m = z.watermark_margin_pages
        # m pages can go and the check still passes; one more and it refuses
        assert ok(free - m + 1) and not ok(free - m)


# --- failure counters ---------------------------------------------------------------------------

def test_failure_counters_at_the_last_snapshot_are_triages():
    v = view(LAB1_TOOL)
    sr = series(M.render(v, "prometheus"))
    bail = "defrag_nofragment_bailout"
    assert val(sr, "mmtriage_allocation_failures_printed_total", cause=bail) == 50
    assert val(sr, "mmtriage_allocation_failures_estimated_total", cause=bail) == 126_355
    with load(LAB1) as b:
        doc = attribute(b)
    sr1 = series(M.render(view(LAB1), "prometheus"))
    for cause, n in doc["failures"]["by_cause"].items():
        assert val(sr1, "mmtriage_allocation_failures_estimated_total", cause=cause) == n["estimated"]
    for cause, n in doc["attribution"].items():
        assert val(sr1, "mmtriage_allocation_failures_printed_total", cause=cause) == n
    assert doc["attribution"][bail] > 0
    # the corroborating counter as the kernel had it at the last snapshot (since boot)
    with load(LAB1_TOOL, parse_logs=False) as b:
        first, last = b.snapshots[0].net_snmp, b.snapshots[-1].net_snmp
    icmp = val(sr, "mmtriage_net_snmp_total", protocol="Icmp", counter="OutErrors")
    assert icmp == last["Icmp"]["OutErrors"]
    assert icmp - first["Icmp"]["OutErrors"] == 953_445   # meta.json's ground truth


def test_counters_at_an_earlier_snapshot_count_what_came_before_it():
    with load(LAB1) as b:
        whole = {c: v["estimated"] for c, v in attribute(b)["failures"]["by_cause"].items()}
    # every printed failure of this run is before 20:01:04 (the last at 59.98 s after boot)
    assert view(LAB1, "20261125T200104Z").failures["estimated"] == whole
    assert view(LAB1, "20261125T200022Z").failures["estimated"] == {c: 0 for c in whole}


# --- exposition formats ---------------------------------------------------------------------------

def test_openmetrics_and_text_carry_the_same_series():
    v = view(LAB1_TOOL)
    om = M.render(v, "openmetrics")
    assert om.endswith("# EOF\n")
    assert "# UNIT mmtriage_free_bytes bytes" in om
    a, b = series(om, openmetrics=True), series(M.render(v, "prometheus"))
    assert a == b
    names = {n for n, _ in a}
    for must in ("mmtriage_free_bytes", "mmtriage_free_pageblocks", "mmtriage_watermark_bytes",
                 "mmtriage_defrag_mode", "mmtriage_kernel_fix_status", "mmtriage_bailout_risk",
                 "mmtriage_bailout_margin_bytes", "mmtriage_node_bailout_risk",
                 "mmtriage_allocation_failures_printed_total",
                 "mmtriage_allocation_failures_estimated_total", "mmtriage_net_snmp_total"):
        assert must in names
    # every family has HELP and TYPE
    fams = list(om_families(om))
    assert all(f.documentation and f.type for f in fams)
    doc = json.loads(M.render(v, "json"))
    # the node's margin: the own lists of DMA32 and of DMA, which passes the watermark here
    margins = {z["zone"]: z["margin_pages"] for z in doc["risk"]["zones"]}
    assert margins == {"DMA": 3261, "DMA32": 58328}
    assert doc["risk"]["nodes"] == [{"node": 0, "risk": 1, "now": 0, "margin_pages": 3261 + 58328}]


def test_free_bytes_and_watermarks_are_pagetypeinfo_and_zoneinfo():
    v = view(LAB1_TOOL, "20261125T223831Z")
    sr = series(M.render(v, "prometheus"))
    pt = v.snapshot.pagetypeinfo
    for r in pt.free:
        assert val(sr, "mmtriage_free_bytes", node=str(r.node), zone=r.zone,
                   migratetype=r.type) == pt.free_pages(r.node, r.zone, r.type) * PAGE
    # /proc/zoneinfo of that snapshot: DMA32 min 1183, low 1554, high 1925, promo 2296 pages
    assert [val(sr, "mmtriage_watermark_bytes", node="0", zone="DMA32", watermark=w) / PAGE
            for w in ("min", "low", "high", "promo")] == [1183, 1554, 1925, 2296]
    assert val(sr, "mmtriage_pageblocks", node="0", zone="DMA32", migratetype="Movable") == 744


# --- CLI ------------------------------------------------------------------------------------------

def run_cli(*args, timeout=120):
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True,
                          env=ENV, cwd=ROOT, timeout=timeout)


def test_cli_writes_the_textfile_atomically_and_nothing_on_stdout(tmp_path):
    d = tmp_path / "textfile"
    r = run_cli(LAB1_TOOL, "--textfile-dir", d)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    assert sorted(p.name for p in d.iterdir()) == ["mmtriage.prom"]   # no temporary left
    assert val(series((d / "mmtriage.prom").read_text()), "mmtriage_node_bailout_risk",
               node="0") == 1


@pytest.mark.parametrize("args,message", [
    (["--snapshot", "nope"], "no such snapshot"),
    (["--state", "x.json"], "--state is for the live host"),
])
def test_cli_bad_input_is_one_error_line(args, message):
    r = run_cli(LAB1, *args)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("Error: ") and message in r.stderr


def test_cli_snapshot_needs_a_bundle():
    r = run_cli("--snapshot", "20261125T200043Z", "--kmsg", "")
    assert r.returncode == 1 and "--snapshot needs a BUNDLE" in r.stderr


# --- the real programs ------------------------------------------------------------------------------

@needs_promtool
@pytest.mark.parametrize("bundle", [LAB1, LAB1_TOOL, LAB_FIXED, LAB0])
def test_promtool_check_metrics_accepts_the_textfile(bundle, tmp_path):
    path = M.write_textfile(view(bundle), tmp_path)
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=path.read_text(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


@needs_promtool
def test_promtool_check_metrics_is_a_real_check():
    bad = "# HELP x_bytes counted\n# TYPE x_bytes counter\nx_bytes 1\n"
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=bad, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0 and "_total" in r.stdout + r.stderr


@needs_promtool
def test_promtool_accepts_and_unit_tests_the_alerting_rules():
    d = need(DOCS / "prometheus")
    r = subprocess.run([PROMTOOL, "check", "rules", "mmtriage-alerts.yml"], cwd=d,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "SUCCESS: 5 rules found" in r.stdout, r.stdout + r.stderr
    # risk held 10 minutes, failing now, failures by cause rising, stale textfile
    r = subprocess.run([PROMTOOL, "test", "rules", "mmtriage-alerts.test.yml"], cwd=d,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scrape(url: str, deadline: float) -> str:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@needs_node_exporter
def test_node_exporter_serves_the_textfile(tmp_path):
    d = tmp_path / "textfile"
    r = run_cli(LAB1_TOOL, "--textfile-dir", d)
    assert r.returncode == 0, r.stderr
    port = _free_port()
    proc = subprocess.Popen([NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}",
                             "--collector.disable-defaults", "--collector.textfile",
                             f"--collector.textfile.directory={d}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        sr = series(_scrape(url, time.monotonic() + 20))
        assert val(sr, "node_textfile_scrape_error") == 0
        bail = "defrag_nofragment_bailout"
        assert val(sr, "mmtriage_node_bailout_risk", node="0") == 1
        assert val(sr, "mmtriage_bailout_risk", node="0", zone="DMA32") == 1
        assert val(sr, "mmtriage_bailout_margin_bytes", node="0", zone="DMA32") == 58328 * PAGE
        assert val(sr, "mmtriage_free_pageblocks", node="0", zone="DMA32") == 37
        assert val(sr, "mmtriage_defrag_mode") == 1
        assert val(sr, "mmtriage_kernel_fix_status", mmtriage_kernel_fix_status="affected") == 1
        assert val(sr, "mmtriage_allocation_failures_printed_total", cause=bail) == 50
        assert val(sr, "mmtriage_allocation_failures_estimated_total", cause=bail) == 126_355
        # The fixed kernel's capture replaces the file under the running exporter.
        r = run_cli(LAB_FIXED, "--textfile-dir", d)
        assert r.returncode == 0, r.stderr
        sr = series(_scrape(url, time.monotonic() + 20))
        assert val(sr, "node_textfile_scrape_error") == 0
        assert val(sr, "mmtriage_node_bailout_risk", node="0") == 0
        assert val(sr, "mmtriage_kernel_fix_status", mmtriage_kernel_fix_status="fixed") == 1
        assert val(sr, "mmtriage_allocation_failures_estimated_total", cause=bail) == 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_units_verify(tmp_path):
    for name in ("mmtriage-metrics.service", "mmtriage-metrics.timer"):
        text = need(DOCS / "systemd" / name).read_text()
        # the documented install path does not exist here: run this checkout's CLI instead
        text = re.sub(r"(?m)^ExecStart=\S+", f"ExecStart={sys.executable} -m analyzer.cli", text)
        (tmp_path / name).write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "mmtriage-metrics.service"),
                        str(tmp_path / "mmtriage-metrics.timer")],
                       capture_output=True, text=True, timeout=60)
    ours = [ln for ln in (r.stdout + r.stderr).splitlines() if "mmtriage-metrics" in ln]
    assert r.returncode == 0 and not ours, r.stdout + r.stderr


def _proc_tree(tmp_path: Path, snap: Path, defrag_mode: str, release: str) -> Path:
    """A /proc tree holding one captured snapshot, as `collect` reads a live host."""
    root = tmp_path / "proc"
    (root / "net").mkdir(parents=True)
    for f in ("vmstat", "pagetypeinfo", "zoneinfo", "buddyinfo", "meminfo", "slabinfo"):
        shutil.copy(snap / f, root / f)
    shutil.copy(snap / "net_snmp", root / "net/snmp")
    (root / "sys/vm").mkdir(parents=True)
    (root / "sys/vm/defrag_mode").write_text(defrag_mode + "\n")
    (root / "sys/kernel").mkdir(parents=True)
    (root / "sys/kernel/osrelease").write_text(release + "\n")
    (root / "stat").write_text("cpu 1 2 3\nbtime 1795636800\n")
    return root


@pytest.mark.parametrize("defrag_mode,release,risk", [
    ("1", "6.16.3+deb13-amd64", 1), ("0", "6.16.3+deb13-amd64", 0), ("1", "7.3.4+deb13-amd64", 0)])
def test_proc_root_is_read_like_the_live_host(tmp_path, defrag_mode, release, risk):
    root = _proc_tree(tmp_path, need(LAB1) / "snapshots/20261125T200043Z", defrag_mode, release)
    r = run_cli("--proc-root", root, "--kmsg", "", "--format", "prometheus")
    assert r.returncode == 0, r.stderr
    sr = series(r.stdout)
    assert val(sr, "mmtriage_defrag_mode") == int(defrag_mode)
    assert val(sr, "mmtriage_node_bailout_risk", node="0") == risk
    assert val(sr, "mmtriage_bailout_margin_bytes", node="0", zone="DMA32") == 1922 * PAGE
    assert val(sr, "mmtriage_source_available", source="kernel_log") == 0
    assert not any(k[0].startswith("mmtriage_allocation_failures") for k in sr)


def test_without_pagetypeinfo_the_rest_is_still_exported(tmp_path):
    # pagetypeinfo is root-only since ~5.4: a non-root run gets zoneinfo but no free lists
    root = _proc_tree(tmp_path, need(LAB1) / "snapshots/20261125T200043Z", "1", "6.16.3")
    (root / "pagetypeinfo").unlink()
    r = run_cli("--proc-root", root, "--kmsg", "", "--format", "prometheus")
    assert r.returncode == 0
    assert r.stderr == f"warning: {root}: no pagetypeinfo (root-only since ~5.4): free memory " \
                       "by migratetype and the bailout risk are left out\n"
    sr = series(r.stdout)
    assert val(sr, "mmtriage_source_available", source="pagetypeinfo") == 0
    assert val(sr, "mmtriage_watermark_bytes", node="0", zone="DMA32", watermark="min") > 0
    assert not any("bailout" in k[0] or k[0] == "mmtriage_free_bytes" for k in sr)


def test_kmsg_must_be_a_character_device(tmp_path):
    root = _proc_tree(tmp_path, need(LAB1) / "snapshots/20261125T200043Z", "1", "6.16.3")
    r = run_cli("--proc-root", root, "--kmsg", need(LAB1) / "dmesg")
    assert r.returncode == 1 and "not a character device" in r.stderr and r.stdout == ""


# --- /dev/kmsg counting -----------------------------------------------------------------------------

def _kmsg_records(bundle: Path) -> list[bytes]:
    """The bundle's dmesg as /dev/kmsg records (prio,seq,usec,flags;text), one per line."""
    out = []
    for seq, line in enumerate((bundle / "dmesg").read_text().splitlines()):
        m = re.match(r"^\[\s*(\d+)\.(\d{6})\] (.*)$", line)
        out.append(f"4,{seq},{int(m.group(1)) * 10**6 + int(m.group(2))},-;{m.group(3)}\n".encode())
    return out


def _replay_root(bundle: Path, tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(bundle / "meta.json", root / "meta.json")
    shutil.copytree(bundle / "snapshots", root / "snapshots")
    return root


def test_kmsg_runs_count_each_record_once(tmp_path):
    bundle = need(LAB1_TOOL)
    recs = _kmsg_records(bundle)
    root = _replay_root(bundle, tmp_path)
    whole = M.count_records(root, recs)
    assert whole["printed"]["defrag_nofragment_bailout"] == 50
    assert whole["estimated"]["defrag_nofragment_bailout"] == 126_355

    def usec(r):
        return int(r.split(b",")[2]) / 1e6
    state = M._read_state(tmp_path / "absent.json", "boot-1")
    header = next(i for i, r in enumerate(recs) if b"page allocation failure" in r)
    # Runs every second from 15 s to 60 s after boot, each seeing what the kernel had printed.
    held = 0
    for now in sorted([15.0 + k for k in range(46)] + [17.5]) + [1e9]:
        visible = [r for r in recs if usec(r) <= now]
        chosen, lost, seen = M.select_records(visible, state, now)
        if now == 17.5:
            # the first report began at 17.10 s and may still be printing: it waits
            assert header in [int(r.split(b",")[1]) for r in visible]
            assert header not in [int(r.split(b",")[1]) for r in chosen]
            held = len(visible) - len(chosen) - (state["last_seq"] + 1)
        state = M.update_state(state, chosen, lost, seen, M.count_records(root, chosen))
        if now == 18.0:
            # ... and is counted by the next run, whatever the clocks say
            assert state["last_seq"] >= header
    assert held > 0
    assert state["printed"] == whole["printed"]
    assert state["estimated"] == whole["estimated"]
    assert state["records"] == len(recs) and state["lost"] == 0
    assert state["last_seq"] == len(recs) - 1


def test_kmsg_ring_buffer_wrap_is_counted_as_lost(tmp_path):
    recs = _kmsg_records(need(LAB1_TOOL))
    state = M._read_state(tmp_path / "absent.json", "boot-1")
    chosen, lost, seen = M.select_records(recs[:100], state, 1e9)
    state = M.update_state(state, chosen, lost, seen, M._empty_counts())
    # 50 records were overwritten before the next run read the buffer
    chosen, lost, seen = M.select_records(recs[150:], state, 1e9)
    assert lost == 50 and len(chosen) == len(recs) - 150
    # first run on a buffer that lost its first 10 records since boot
    fresh = M._read_state(tmp_path / "absent.json", "boot-1")
    assert M.select_records(recs[10:], fresh, 1e9)[1] == 10


def test_kmsg_state_starts_again_after_a_reboot(tmp_path):
    p = tmp_path / "state.json"
    st = M._read_state(p, "boot-1")
    st = M.update_state(st, [b"4,0,1,-;x\n"], 0, 0, {
        "printed": {c: 1 for c in st["printed"]}, "estimated": {c: 2 for c in st["printed"]}})
    p.write_text(json.dumps(st))
    assert M._read_state(p, "boot-1")["last_seq"] == 0
    again = M._read_state(p, "boot-2")
    assert again["last_seq"] is None and set(again["printed"].values()) == {0}


# --- this host ----------------------------------------------------------------------------------------

live = pytest.mark.skipif(not Path("/proc/zoneinfo").exists(), reason="needs a Linux /proc")


@pytest.mark.live
@live
def test_live_host(tmp_path):
    d = tmp_path / "textfile"
    kmsg = "/dev/kmsg" if os.access("/dev/kmsg", os.R_OK) else ""
    runs = []
    for _ in range(2):
        # a timeout here would mean a blocking read of /dev/kmsg
        r = run_cli("--textfile-dir", d, "--kmsg", kmsg, timeout=120)
        assert r.returncode == 0, r.stderr
        runs.append(series((d / "mmtriage.prom").read_text()))
    sr = runs[-1]
    page = os.sysconf("SC_PAGE_SIZE")
    info = next(k for k in sr if k[0] == "mmtriage_host_info")
    assert dict(info[1])["kernel_release"] == os.uname().release
    from parsers import zoneinfo
    zones = [z for z in zoneinfo.parse(Path("/proc/zoneinfo").read_text()) if z.populated]
    for z in zones:
        assert val(sr, "mmtriage_zone_managed_bytes", node=str(z.node), zone=z.zone) == \
            z.managed * page
    dm = Path("/proc/sys/vm/defrag_mode")
    if dm.exists():
        assert val(sr, "mmtriage_defrag_mode") == int(dm.read_text())
    if os.access("/proc/pagetypeinfo", os.R_OK):
        assert val(sr, "mmtriage_source_available", source="pagetypeinfo") == 1
        risk = {dict(k[1])["zone"] for k in sr if k[0] == "mmtriage_bailout_risk"}
        assert risk == {z.zone for z in zones}
        if dm.exists() and int(dm.read_text()) == 0:
            assert all(v == 0 for k, v in sr.items() if k[0].endswith("bailout_risk"))
    if kmsg:
        st = json.loads((d / M.STATE_NAME).read_text())
        # every sequence number since boot is counted once or known lost
        assert st["records"] + st["lost"] == st["last_seq"] + 1
        for cause in M.CAUSES:
            a = val(runs[0], "mmtriage_allocation_failures_estimated_total", cause=cause)
            assert val(sr, "mmtriage_allocation_failures_estimated_total", cause=cause) >= a
    if PROMTOOL:
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=(d / "mmtriage.prom").read_text(),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
