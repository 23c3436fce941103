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
    with load(tmp_path / "b") as b:
        assert len(b.snapshots) >= 1
        s = b.snapshots[-1]
        assert s.vmstat["nr_free_pages"] > 0 and s.zoneinfo and s.buddyinfo
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
    p = subprocess.Popen([sys.executable, "-m", "analyzer.cli", "collect", "--out", str(out),
                          "--interval", "0.3", "--duration", "60", "--kmsg", ""], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
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
