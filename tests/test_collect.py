"""collect on this machine's real /proc (read only) and on a fixture tree."""
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from analyzer.collect import collect
from parsers.bundle import load
from tests.conftest import LAB1, need


@pytest.mark.live
@pytest.mark.skipif(not sys.platform.startswith("linux") or not Path("/proc/vmstat").exists(),
                    reason="needs a Linux /proc")
def test_collect_live_proc(tmp_path):
    kmsg = "/dev/kmsg" if os.access("/dev/kmsg", os.R_OK) else None
    meta = collect(tmp_path / "b", interval=0.5, count=2, kmsg=kmsg)
    assert meta["kernel_release"] == os.uname().release
    assert meta["boot_time"] and meta["collector"]["snapshots"] == 2
    dm = Path("/proc/sys/vm/defrag_mode")
    if dm.exists():  # a sysctl file: read in small pieces (a 64 MiB read fails with ENOMEM)
        assert meta["defrag_mode"] == int(dm.read_text())
    assert meta["boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    with load(tmp_path / "b") as b:
        assert len(b.snapshots) == 2
        s = b.snapshots[-1]
        assert s.vmstat["nr_free_pages"] > 0 and s.zoneinfo and s.buddyinfo
        assert s.net_dev["lo"]["rx_packets"] >= 0 and s.softnet_stat and "TcpExt" in s.net_netstat
        if dm.exists():
            assert s.defrag_mode == int(dm.read_text())
        if os.geteuid() == 0:
            assert s.pagetypeinfo is not None and s.pagetypeinfo.pageblock_order >= 9
        if kmsg:
            assert b.logs == ["kmsg"] and b.log.lines > 10
            assert b.log.kernel_release == os.uname().release


def test_collect_fixture_root(tmp_path):
    root = tmp_path / "proc"
    snap = need(LAB1) / "snapshots/20261125T200043Z"
    (root / "net").mkdir(parents=True)
    for f in ("vmstat", "pagetypeinfo", "zoneinfo", "buddyinfo", "meminfo", "slabinfo"):
        shutil.copy(snap / f, root / f)
    shutil.copy(snap / "net_snmp", root / "net/snmp")
    (root / "sys/vm").mkdir(parents=True)
    (root / "sys/vm/defrag_mode").write_text("1\n")
    (root / "stat").write_text("cpu 1 2 3\nbtime 1764100800\n")
    meta = collect(tmp_path / "out", interval=0, count=1, proc_root=root, kmsg=None)
    assert meta["defrag_mode"] == 1 and meta["boot_time"] == "2025-11-25T20:00:00Z"
    with load(tmp_path / "out") as b:
        assert b.snapshots[0].net_snmp["Icmp"]["OutErrors"] == 173507
        assert b.defrag_mode == {"value": 1, "source": "meta.json"}
    assert not list((tmp_path / "out/snapshots").glob(".*"))


@pytest.mark.live
@pytest.mark.skipif(not Path("/proc/vmstat").exists(), reason="needs a Linux /proc")
def test_ctrl_c_leaves_a_valid_bundle(tmp_path):
    import signal
    import subprocess
    import time
    from tests.conftest import ROOT
    out = tmp_path / "b"
    from tests.conftest import interruptible
    p = subprocess.Popen([sys.executable, "-m", "analyzer.cli", "collect", "--out", str(out),
                          "--interval", "0.3", "--duration", "60", "--kmsg", ""], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=interruptible)
    deadline = time.time() + 30
    while time.time() < deadline and len(list((out / "snapshots").glob("2*"))) < 3:
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    p.wait(timeout=30)
    assert p.returncode == 130
    meta = json.loads((out / "meta.json").read_text())
    assert meta["collector"]["snapshots"] >= 3 and "finished" in meta["collector"]
    assert not list((out / "snapshots").glob(".*"))  # no half-written snapshot
    with load(out) as b:
        assert len(b.snapshots) >= 3 and all(s.vmstat for s in b.snapshots)


def _fake_proc(root: Path, stat: str = "cpu 1 2 3\nbtime 1764100800\n") -> Path:
    snap = need(LAB1) / "snapshots/20261125T200043Z"
    (root / "net").mkdir(parents=True)
    for f in ("vmstat", "pagetypeinfo", "zoneinfo", "buddyinfo", "meminfo", "slabinfo"):
        shutil.copy(snap / f, root / f)
    shutil.copy(snap / "net_snmp", root / "net/snmp")
    (root / "stat").write_text(stat)
    return root


@pytest.mark.parametrize("btime", ["100000000000000000000", "abc", "-5", "0", "1 2"])
def test_btime_no_clock_gives_is_an_error_and_no_bundle(tmp_path, btime):
    from parsers.errors import ParseError
    root = _fake_proc(tmp_path / "proc", f"cpu 1\nbtime {btime}\nctxt 5\n")
    with pytest.raises(ParseError) as ei:
        collect(tmp_path / "out", interval=0, count=1, proc_root=root, kmsg=None)
    assert str(ei.value).startswith(f"{root}/stat:2: btime is not a boot time")
    assert not (tmp_path / "out").exists()


def test_kmsg_that_is_not_kmsg(tmp_path):
    from parsers.errors import ParseError
    root = _fake_proc(tmp_path / "proc")
    with pytest.raises(ParseError, match="/dev/zero: not a /dev/kmsg device"):
        collect(tmp_path / "out", interval=0, count=1, proc_root=root, kmsg="/dev/zero")
    assert not (tmp_path / "out").exists()


def test_runaway_proc_file(tmp_path, monkeypatch):
    import analyzer.collect as ac
    from parsers.errors import ParseError
    monkeypatch.setattr(ac, "MAX_PROC_BYTES", 1 << 20)
    root = _fake_proc(tmp_path / "proc")
    (root / "slabinfo").unlink()
    (root / "slabinfo").symlink_to("/dev/zero")
    with pytest.raises(ParseError, match="slabinfo: larger than 1 MiB: not a /proc file"):
        collect(tmp_path / "out", interval=0, count=1, proc_root=root, kmsg=None)
    assert not (tmp_path / "out").exists()


def test_kmsg_reads_are_bounded(tmp_path, monkeypatch):
    import analyzer.collect as ac
    monkeypatch.setattr(ac, "MAX_KMSG_DRAIN", 64 << 10)
    root = _fake_proc(tmp_path / "proc")
    records = b"".join(b"6,%d,%d,-;line %d\n" % (i, i * 1000, i) for i in range(50_000))
    (tmp_path / "kmsg").write_bytes(records)  # far more than one pass may take
    meta = collect(tmp_path / "out", interval=0, count=1, proc_root=root, kmsg=str(tmp_path / "kmsg"))
    # three passes (before the folder, after the snapshot, at the end), each stopped at the cap
    assert meta["collector"]["kmsg_capped_passes"] == 3
    # (a regular file is read 8 KiB at a time, not a record at a time: some pieces are dropped
    # as repeats; only the bound matters here)
    assert 64 << 10 <= (tmp_path / "out/kmsg").stat().st_size <= 3 * ((64 << 10) + 8192 + 1)


@pytest.mark.parametrize("kw,what", [
    ({"interval": -1}, "--interval -1"), ({"interval": float("nan")}, "--interval nan"),
    ({"count": 0}, "--count 0"), ({"duration": float("inf")}, "--duration inf"),
])
def test_options_are_checked_first(tmp_path, kw, what):
    args = {"interval": 0, "count": 1, "duration": None, **kw}
    with pytest.raises(ValueError, match=what):
        collect(tmp_path / "out", proc_root=_fake_proc(tmp_path / "proc"), kmsg=None, **args)
    assert not (tmp_path / "out").exists()


def test_out_that_is_a_file_is_left_alone(tmp_path):
    from parsers.errors import ParseError
    (tmp_path / "out").write_text("keep")
    with pytest.raises(ParseError, match="--out exists and is not a directory"):
        collect(tmp_path / "out", interval=0, count=1, proc_root=_fake_proc(tmp_path / "proc"), kmsg=None)
    assert (tmp_path / "out").read_text() == "keep"
