"""/proc/net/dev, softnet_stat and netstat: the demand and drop counters of hosts that have no
ICMP counter to corroborate their failures. Real files from a 6.18 host."""
from parsers import netdev, snmp, softnet
from parsers.bundle import load
from parsers.proc import detect, parse_file
from tests.conftest import FIXTURES, LAB1

D = FIXTURES / "proc-6.18"


def test_net_dev():
    devs = netdev.parse((D / "dev").read_text())
    lo = devs["lo"]
    assert set(lo) == set(netdev.COLUMNS) and lo["rx_packets"] == lo["tx_packets"] > 0
    assert detect((D / "dev").read_text()) == "net_dev"


def test_softnet_stat_per_cpu():
    rows = softnet.parse((D / "softnet_stat").read_text())
    assert [r["cpu"] for r in rows] == [0, 1]
    assert rows[0]["processed"] == int((D / "softnet_stat").read_text().split()[0], 16)
    assert softnet.totals(rows)["dropped"] == sum(r["dropped"] for r in rows)
    assert detect((D / "softnet_stat").read_text()) == "softnet_stat"


def test_old_softnet_without_cpu_column():
    rows = softnet.parse("0000a1b2 00000003 00000001 00000000 00000000 00000000 00000000 00000000 "
                         "00000000 00000000 00000000\n" * 2)
    assert [(r["cpu"], r["processed"], r["dropped"]) for r in rows] == [(0, 0xa1b2, 3), (1, 0xa1b2, 3)]


def test_netstat_is_read_like_snmp():
    ns = snmp.parse((D / "netstat").read_text())
    assert {"TcpExt", "IpExt"} <= set(ns) and "InOctets" in ns["IpExt"]
    assert parse_file(D / "netstat")["kind"] == "net_netstat"


def test_bundle_snapshots_carry_them(tmp_path):
    import shutil
    b = tmp_path / "b"
    shutil.copytree(LAB1, b)
    snap = sorted((b / "snapshots").iterdir())[-1]
    shutil.copy(D / "dev", snap / "net_dev")
    shutil.copy(D / "softnet_stat", snap / "softnet_stat")
    shutil.copy(D / "netstat", snap / "net_netstat")
    with load(b) as bundle:
        last = bundle.snapshots[-1]
        assert last.net_dev["lo"]["rx_bytes"] > 0 and len(last.softnet_stat) == 2
        assert "TcpExt" in last.net_netstat and bundle.snapshots[0].net_dev is None


def test_fleet_dataset_carries_the_network_counters(tmp_path):
    from analyzer.fleet import connect, ingest
    r = ingest([str(LAB1)], tmp_path / "ds", workers=1)
    assert r["ingested"] == 1
    (errs,) = connect(tmp_path / "ds").execute(
        "SELECT max(value) - min(value) FROM net_counters "
        "WHERE source = 'net_snmp' AND \"group\" = 'Icmp' AND name = 'OutErrors'").fetchone()
    assert errs == 293260  # the lab run's real count of failed echo replies
