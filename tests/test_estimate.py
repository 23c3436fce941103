"""The failures a host really had, estimated from its log and snapshots when no counter saw
them: the real lab runs with their network counters removed."""
import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from analyzer import report
from analyzer.cli import app
from models.calibrate import default_start, observe
from parsers.bundle import load
from tests.conftest import LAB1, SAMPLES, need

LAB_RUN = SAMPLES / "lab-6.16.3-defrag1-mmtriage-lab"


def hidden(src, dst):
    """A copy of a lab bundle without its network counters (only the log and /proc left)."""
    shutil.copytree(need(src), dst)
    for f in dst.glob("snapshots/*/net_*"):
        f.unlink()
    meta = json.loads((dst / "meta.json").read_text())
    meta.pop("ground_truth", None)
    (dst / "meta.json").write_text(json.dumps(meta))
    return dst


@pytest.mark.parametrize("src", [LAB1, LAB_RUN], ids=["corpus", "mmtriage-lab"])
def test_without_counters_the_start_and_the_log_shape_come_from_slabinfo_and_the_log(src, tmp_path):
    with load(need(src)) as b:
        full = observe(b)
        log = b.log.summary()
    with load(hidden(src, tmp_path / "h")) as b:
        o = observe(b)
    assert full.corroborated and not o.corroborated
    # the load's onset found from the failing cache's objects in use, as from the send counter
    assert o.start_snapshot == full.start_snapshot
    assert o.lower_bound == full.lower_bound == log["slub_failures_estimated"]
    # every SLUB report and suppressed count of the log falls in the window, in time order
    slub = o.reports["slab_out_of_memory"]
    assert np.all(np.diff(slub) >= 0)
    assert slub[-1] == log["slub_reports"] + log["suppressed"].get("slab_out_of_memory", 0)
    assert o.reports["warn_alloc"][-1] == (log["page_alloc_reports"]
                                           + log["suppressed"].get("warn_alloc", 0))
    names, start, measured = default_start(o)
    # no counter pins the load: its rate and window are fitted, from a start taken from how
    # fast objects in use grew, and the process-context share with them
    assert {"net_rate", "net_start_s", "net_stop_s", "kernel_share"} <= set(names)
    assert start["net_rate"] >= o.lower_bound / o.window_s
    assert 0 < start["net_stop_s"] <= o.window_s


def test_calibrate_reports_an_estimate_with_its_interval_and_basis(tmp_path):
    h = hidden(LAB_RUN, tmp_path / "h")
    r = CliRunner().invoke(app, ["model", "calibrate", str(h), "--evals", "12", "-f", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    est = doc["estimated_failures"]
    assert est["low"] <= est["value"] <= est["high"]
    assert "no failure counter" in est["basis"] and "printed and suppressed" in est["basis"]
    assert doc["corroborated_failures"] is None
    assert doc["log_reports"]["lower_bound"] == est["log_floor"] > 0
    # never below what the log already counts; the model's own figure is kept beside it
    assert est["low"] >= est["log_floor"]
    assert est["value"] == max(est["model_value"], est["log_floor"])
    if est["model_value"] < est["log_floor"]:
        assert "raised to the log's floor" in est["basis"]
    rows = {x["observable"]: x for x in doc["fit"]}
    # the log's floor is shown, not fitted; the reports let out over time are fitted
    assert not rows["failures (the log's printed + suppressed: a floor)"]["in_loss"]
    assert rows["slab_out_of_memory reports let out (printed + suppressed)"]["in_loss"]
    assert "failures_over_time" not in doc["loss_terms_check"]
    assert any(k.startswith("reports slab_out_of_memory") for k in doc["loss_terms_check"])


def test_with_counters_the_estimate_is_fitted_to_them():
    r = CliRunner().invoke(app, ["model", "calibrate", str(need(LAB1)), "--evals", "12",
                                 "-f", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["corroborated_failures"] == 293260
    assert "Icmp OutErrors" in doc["estimated_failures"]["basis"]
    assert "failures" in doc["loss_terms_check"]


def test_triage_shows_the_model_estimate_beside_the_lower_bound(tmp_path):
    h = hidden(LAB_RUN, tmp_path / "h")
    r = CliRunner().invoke(app, ["triage", str(h), "-f", "json", "--calibrate", "3"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    f = doc["failures"]
    m = f["model"]
    assert m["low"] <= m["value"] <= m["high"] and m["basis"] and m["evaluations"] > 0
    assert f["estimated"] == m["log_floor"]
    rows = {name: (value, why) for name, value, why in report.count_rows(doc)}
    assert rows["model estimate"][0] == f"{m['value']:,} ({m['low']:,}–{m['high']:,})"
    assert "no failure counter" in rows["model estimate"][1]
    assert rows["estimated (lower bound)"][0] == f"{f['estimated']:,}"


@pytest.mark.parametrize("bad", ["-1", "nan", "4000"])
def test_triage_calibrate_refuses_bad_seconds(bad):
    r = CliRunner().invoke(app, ["triage", str(need(LAB1)), "--calibrate", bad])
    assert r.exit_code == 1
    assert "--calibrate" in r.output and "Traceback" not in r.output


@pytest.mark.slow
def test_hidden_counters_of_an_echo_load_are_estimated_within_a_factor_of_two(tmp_path):
    """A real run (6.16.3, 16 unread sockets) with its counters removed: the bundle still says
    how much its sockets hold, so the workload is the mechanism (all replies sent stay queued)
    and only the rate is unknown. Its estimate holds the hidden 457,006 failures (measured:
    531,425, 151,836-1,859,988, the interval widened by the model's log-only error). Across
    27 real runs the estimate is within 2x on 18 (docs/model.md)."""
    from models.calibrate import calibrate
    from tests.conftest import FIXTURES
    b = hidden(FIXTURES / "lab-runs" / "default", tmp_path / "b")
    with load(b) as bundle:
        o = observe(bundle)
        assert o.demand is None and o.hold_max == 233024
        names, start, measured = default_start(o)
        assert measured["net_hold_frac"] == 1.0 and "net_rate" in names
        r = calibrate(bundle, budget_s=60, evals=150)
    e = r["estimated_failures"]
    assert e["low"] <= 457006 <= e["high"], e
    assert 0.5 < e["value"] / 457006 < 2, e
    assert "error on real runs with their counters hidden" in e["basis"]


def test_without_icmp_counters_loopback_packets_give_the_echo_requests(tmp_path):
    """A real run that captured /proc/net/dev, its net_snmp removed: the packets received on lo
    are the requests plus the replies sent, and the replies sent stay queued, so the requests
    answered (the atomic replies attempted) are lo's packets less the objects held, within
    1 % of the hidden Icmp InEchos at every snapshot."""
    from tests.conftest import FIXTURES
    src = need(FIXTURES / "lab-runs" / "netdev")
    with load(src) as b:
        full = observe(b)
    assert full.demand_source == "Icmp InEchos"
    dst = tmp_path / "b"
    shutil.copytree(src, dst)
    for f in dst.glob("snapshots/*/net_snmp"):
        f.unlink()
    with load(dst) as b:
        o = observe(b)
        names, start, measured = default_start(o)
    assert o.demand_source.startswith("net/dev lo packets received")
    assert o.start_snapshot == full.start_snapshot
    assert np.allclose(o.demand, full.demand, rtol=0.01), (o.demand, full.demand)
    # the counters pin the window: not fitted
    assert measured["net_hold_frac"] == 1.0 and "net_rate" not in names


def test_without_net_dev_the_backlog_counts_the_loopback_packets(tmp_path):
    """The same run with net_snmp and net/dev both removed: every packet lo takes in goes
    through a CPU's backlog, so softnet_stat's packets processed give the same requests, within
    1 % of the hidden Icmp InEchos at every snapshot."""
    from tests.conftest import FIXTURES
    src = need(FIXTURES / "lab-runs" / "netdev")
    with load(src) as b:
        full = observe(b)
    dst = tmp_path / "b"
    shutil.copytree(src, dst)
    for f in [*dst.glob("snapshots/*/net_snmp"), *dst.glob("snapshots/*/net_dev")]:
        f.unlink()
    with load(dst) as b:
        o = observe(b)
    assert o.demand_source.startswith("softnet_stat packets processed")
    assert np.allclose(o.demand, full.demand, rtol=0.01), (o.demand, full.demand)


def _silent(tmp_path):
    """The netdev run with net_snmp removed and its log emptied of reports."""
    from tests.conftest import FIXTURES
    dst = tmp_path / "b"
    shutil.copytree(need(FIXTURES / "lab-runs" / "netdev"), dst)
    for f in dst.glob("snapshots/*/net_snmp"):
        f.unlink()
    (dst / "dmesg").write_text("[    0.000000] Linux version 6.16.3+deb13-amd64\n")
    return dst


def test_a_silent_log_with_a_known_echo_load_still_models_the_network_caches(tmp_path):
    """A silent log whose echo requests are still counted (lo's packets): the failing caches
    are assumed, not dropped, and the start is the last snapshot before the load (the
    fragmented one), not a snapshot after the queues were let go, whose objects in use are
    back near the first snapshot's."""
    dst = _silent(tmp_path)
    with load(dst) as b:
        o = observe(b)
        fragmented = b.meta["phases"]["01-fragmented"]
    assert [c.name for c in o.caches] == ["skbuff_head_cache"]
    assert "echo load's request count" in " ".join(o.notes)
    assert o.demand is not None and not o.corroborated
    assert o.start_snapshot == fragmented


@pytest.mark.slow
def test_a_silent_log_and_lo_packets_carry_the_estimate(tmp_path):
    """The same silent bundle calibrated: the failures no report showed come out within 10 % of
    the hidden 498,323 (measured 490,719). Before, the start was the boot snapshot and then the
    search never left the flat low end of the reclaim stall: 0 and 481."""
    from models.calibrate import calibrate
    with load(_silent(tmp_path)) as b:
        r = calibrate(b, budget_s=60, evals=150)
    e = r["estimated_failures"]
    assert abs(e["value"] / 498323 - 1) < 0.1, e
    assert "no report in the log" in e["basis"]


@pytest.mark.slow
def test_the_loopback_demand_carries_the_estimate(tmp_path):
    """The same run, net_snmp removed, calibrated from its log, snapshots and lo's packets:
    the estimate is within 10 % of the hidden 498,323 (measured 507,573)."""
    from models.calibrate import calibrate
    from tests.conftest import FIXTURES
    dst = tmp_path / "b"
    shutil.copytree(need(FIXTURES / "lab-runs" / "netdev"), dst)
    for f in dst.glob("snapshots/*/net_snmp"):
        f.unlink()
    with load(dst) as b:
        r = calibrate(b, budget_s=60, evals=150)
    e = r["estimated_failures"]
    assert abs(e["value"] / 498323 - 1) < 0.1, e


@pytest.mark.slow
@pytest.mark.parametrize("run,truth", [("payload0", 78892)])
def test_other_loads_with_net_snmp_removed_are_estimated_from_lo_packets(run, truth, tmp_path):
    """A run of another sitting, unlike the runs the fit was developed on: 0-byte echoes (the
    buffers from skbuff_small_head, 26 % of the replies failed). With net_snmp removed, as a
    host without ICMP counters is, the estimate holds the hidden OutErrors (measured 66,927,
    30,581-101,213; 64 unread sockets, kept beside it, gave 132,700, 115,056-152,700 for
    142,185); with every network counter removed it came out at 9.7x (docs/model.md)."""
    from models.calibrate import calibrate
    from tests.conftest import FIXTURES
    dst = tmp_path / "b"
    shutil.copytree(need(FIXTURES / "lab-runs" / run), dst)
    for f in dst.glob("snapshots/*/net_snmp"):
        f.unlink()
    with load(dst) as b:
        assert observe(b).demand_source.startswith("net/dev")
        r = calibrate(b, budget_s=60, evals=150)
    e = r["estimated_failures"]
    assert e["low"] <= truth <= e["high"], e
    assert 0.75 < e["value"] / truth < 1.33, e


@pytest.mark.parametrize("run", ["payload0", "sock64", "snap-at-10s", "snap-at-30s"])
def test_the_lab_s_first_report_follows_its_mid_load_snapshot(run):
    """In these lab runs the first head is reported 0.4-4 s after the guest's mid-load
    snapshot, wherever that snapshot is taken (+20 s as the lab does, +10 s and +30 s in two
    runs made to test it), though the counters show failures long before. The snapshot is not
    the only trigger (a run without it, no-mid-snapshot/, reported from +9.2 s), but where it
    is taken the first report's time mostly says when the guest was disturbed (docs/model.md)."""
    from tests.conftest import FIXTURES
    with load(FIXTURES / "lab-runs" / run) as b:
        o = observe(b)
    mid = o.times[0]  # the snapshot the flood is still running at (its name: whole seconds)
    assert 0.0 < o.first_failure_s - mid < 4.5, (o.first_failure_s, o.times)


def test_nic_interfaces_are_the_physical_devices_by_name():
    from models.calibrate.observe import nic_rx_interfaces
    physical = ["em1", "eno1", "enp0s31f6", "ens5", "eth0", "eth1", "ib0", "p1p1", "wlan0",
                "wlp2s0", "wwan0"]
    other = ["lo", "veth1a2b", "docker0", "br-4f1e", "br0", "virbr0", "cali12", "flannel.1",
             "vxlan.calico", "bond0", "team0", "eth0.100", "vlan100", "wg0", "cilium_host",
             "tun0", "tap0", "vnet0", "ifb0", "macvtap0", "ppp0", "podman0", "lxdbr0",
             "ovs-system", "dummy0", "gretap0", "erspan0", "ip_vti0", "sit0", "tunl0", "bat0"]
    assert nic_rx_interfaces(dict.fromkeys(physical + other)) == physical


def _snap(**rx):
    from types import SimpleNamespace
    return SimpleNamespace(net_dev={n: {"rx_packets": v} for n, v in rx.items()})


def test_nic_demand_sums_each_interface_s_increments_through_a_restart():
    from models.calibrate.observe import _nic_rx_demand
    s0 = _snap(lo=5, eth0=1000, eth1=50, tun0=7)
    later = [_snap(lo=9, eth0=3000, eth1=60, tun0=900),
             _snap(lo=9, eth0=400, eth1=70),          # eth0's driver reloaded; tun0 gone
             _snap(lo=9, eth0=1400, eth1=70)]
    d, src = _nic_rx_demand(s0, later, "skbuff_head_cache")
    assert src == "net/dev packets received on eth0, eth1"
    assert list(d) == [2010, 2420, 3420]
    # another cache, or no SLUB report at all: packets are not its demand
    assert _nic_rx_demand(s0, later, "kmalloc-2k") == (None, "")
    assert _nic_rx_demand(s0, later, None) == (None, "")
    assert _nic_rx_demand(s0, [_snap(eth0=1000)], "skbuff_head_cache") == (None, "")


def _nic_bundle(tmp_path, rate=300000.0):
    """A model-emitted host (the real lab host's state, a receive load of `rate` heads a second
    with no data buffer in the cache) whose only count of its load is eth0's packets in
    /proc/net/dev: no ICMP counters, no unread sockets."""
    from tests.conftest import emit_from_lab_host
    truth = {"net_rate": rate, "net_obj_life_s": 1.0, "net_hold_frac": 0.3, "kernel_share": 1.0,
             "data_share": 0.0, "reclaim_stall_s": 0.3, "net_start_s": 4.5, "net_stop_s": 33.5}
    return emit_from_lab_host(tmp_path / "nic", truth, "nic-rx", nic_rx=True)


def test_a_receiving_host_s_nic_packets_are_its_demand(tmp_path):
    """Without ICMP counters or an echo load, the packets the host's NICs received are the
    heads its softirq asked for: the fit measures the rate from them (within 1 % of the
    model's 300,000/s) and gives the load no data buffer in the slab (a received packet
    already had its page fragment)."""
    path, res = _nic_bundle(tmp_path)
    assert not list(path.glob("snapshots/*/net_snmp"))
    with load(path) as b:
        o = observe(b)
    assert o.demand_source == "net/dev packets received on eth0"
    assert not o.corroborated and o.hold_max == 0
    names, start, measured = default_start(o)
    assert "data_share" not in names and measured["data_share"] == 0.0
    assert abs(measured["net_rate"] / 300000 - 1) < 0.01, measured
    assert {"net_rate", "net_start_s", "net_stop_s"} <= set(measured)


def test_flat_icmp_counters_leave_the_demand_to_the_nics(tmp_path):
    """A host whose ICMP counters are there (collect always takes net/snmp) but counted no
    failure: the NIC packets are the demand, not the flat Icmp OutMsgs."""
    path, res = _nic_bundle(tmp_path)
    zero = ("Icmp: InMsgs InErrors InEchos OutMsgs OutErrors\nIcmp: 0 0 0 0 0\n")
    for d in path.glob("snapshots/*"):
        (d / "net_snmp").write_text(zero)
    with load(path) as b:
        o = observe(b)
    assert o.demand_source == "net/dev packets received on eth0"


@pytest.mark.slow
def test_a_silent_log_with_nothing_counted_starts_its_interval_at_zero(tmp_path):
    """A real run whose log reported none of its 334,602 failures (6.17.13,
    min_free_kbytes 65536), every network counter removed: the unread sockets still say it was
    an echo load, so the model is fitted to objects in use and free memory, and the estimate
    (measured 1,345,818, 4.0x) comes with an interval from 0: a silent log cannot say that
    anything failed. Before, the network caches were dropped and the answer was 0, 0-0."""
    from models.calibrate import calibrate
    from tests.conftest import FIXTURES
    b = hidden(FIXTURES / "lab-runs" / "k617-mfk65536", tmp_path / "b")
    with load(b) as bundle:
        r = calibrate(bundle, budget_s=60, evals=150)
    e = r["estimated_failures"]
    assert e["value"] > 0 and e["low"] == 0 and e["high"] >= 334602, e
    assert "does not rule out that none failed" in e["basis"]


@pytest.mark.slow
def test_a_silent_log_that_nothing_failed_behind_estimates_zero(tmp_path):
    """The same kind of bundle where nothing failed (4 unread sockets: a free pageblock always
    remained; 0 of 3,168,576 replies failed): the model fitted to the same observables finds
    no failure."""
    from models.calibrate import calibrate
    from tests.conftest import FIXTURES
    b = hidden(FIXTURES / "lab-runs" / "sock4", tmp_path / "b")
    with load(b) as bundle:
        # the caches are kept and the echo load modelled, as for the run that failed
        assert [c.name for c in observe(bundle).caches] == ["skbuff_head_cache"]
        r = calibrate(bundle, budget_s=60, evals=150)
    assert r["estimated_failures"]["value"] == 0, r["estimated_failures"]
