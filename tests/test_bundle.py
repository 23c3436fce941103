import io
import json
import os
import shutil
import tarfile

import pytest
import zstandard

from parsers.bundle import load, parse_snapshot_time
from parsers.errors import BundleError
from tests.conftest import LAB1, SAMPLES, need


def test_lab_bundle():
    with load(need(LAB1)) as b:
        assert b.host == "lab-6.16.3-defrag1"
        assert b.kernel_release == {"value": "6.16.3+deb13-amd64", "source": "meta.json"}
        assert b.defrag_mode == {"value": 1, "source": "meta.json"}
        assert len(b.snapshots) == 6 and b.snapshots[0].name == "20261125T200005Z"
        assert b.snapshots[2].net_snmp["Icmp"]["OutErrors"] == 173507
        assert b.log.summary()["slub_reports"] == 30
        t = b.event_wall_time(b.log.events[0])
        assert t.isoformat() == "2026-11-25T20:00:44.948454+00:00"


def test_sources_fall_back_without_meta(tmp_path):
    d = tmp_path / "b"
    shutil.copytree(need(LAB1), d)
    os.chmod(d, 0o755)
    (d / "meta.json").chmod(0o644)
    (d / "meta.json").unlink()
    with load(d) as b:
        assert b.kernel_release == {"value": "6.16.3+deb13-amd64", "source": "uname"}
        assert b.defrag_mode["source"] == "proc/sys/vm/defrag_mode"
        assert any("boot_time" in n for n in b.notes)
    (d / "uname").unlink()
    with load(d) as b:
        assert b.kernel_release["source"].startswith("log")


def _tar(path, members, mode="w:gz"):
    with tarfile.open(path, mode) as tar:
        for name, data, kind in members:
            ti = tarfile.TarInfo(name)
            if kind == "sym":
                ti.type = tarfile.SYMTYPE
                ti.linkname = data
                tar.addfile(ti)
            else:
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))


def test_tarball_bundles(tmp_path):
    dm = (need(LAB1) / "dmesg").read_bytes()
    for ext, mode in [("tar", "w"), ("tgz", "w:gz"), ("tar.gz", "w:gz")]:
        p = tmp_path / f"b.{ext}"
        _tar(p, [("host1/dmesg", dm, "f"), ("host1/meta.json", b'{"host": "h1"}', "f")], mode)
        with load(p) as b:
            assert b.host == "h1" and b.log.summary()["slub_reports"] == 30
            root = b.root
        assert not root.exists()  # temporary extraction removed on close
    raw = tmp_path / "b.tar"
    zst = tmp_path / "b.tar.zst"
    zst.write_bytes(zstandard.ZstdCompressor().compress(raw.read_bytes()))
    with load(zst) as b:
        assert b.log.summary()["page_alloc_reports"] == 2


@pytest.mark.parametrize("members,what", [
    ([("../evil", b"x", "f")], "escapes"),
    ([("/etc/evil", b"x", "f")], "escapes"),
    ([("b/link", "../../etc/passwd", "sym")], "outside"),
    ([("b/link", "/etc/passwd", "sym")], "outside"),
], ids=["dotdot", "absolute", "symlink-out", "symlink-abs"])
def test_unsafe_tarballs(tmp_path, members, what):
    p = tmp_path / "bad.tgz"
    _tar(p, members)
    with pytest.raises(BundleError) as ei:
        load(p)
    assert what in str(ei.value) and str(p) in str(ei.value)
    assert not (tmp_path / "evil").exists()


def test_decompression_bomb(tmp_path, monkeypatch):
    import parsers.bundle as pb
    monkeypatch.setattr(pb, "MAX_BYTES", 1 << 20)
    p = tmp_path / "bomb.tgz"
    _tar(p, [("b/dmesg", b"\0" * (2 << 20), "f")])
    assert p.stat().st_size < 20_000
    with pytest.raises(BundleError, match="decompression bomb"):
        load(p)


def test_truncated_tarball(tmp_path):
    p = tmp_path / "t.tgz"
    _tar(p, [("b/dmesg", os.urandom(200_000), "f")])
    p.write_bytes(p.read_bytes()[:5000])
    with pytest.raises(BundleError):
        load(p)


def test_sosreport_layout(tmp_path):
    s = tmp_path / "sosreport-h-2026"
    (s / "sos_commands/kernel").mkdir(parents=True)
    (s / "proc/sys/vm").mkdir(parents=True)
    shutil.copy(need(LAB1) / "dmesg", s / "sos_commands/kernel/dmesg")
    for f in ("vmstat", "pagetypeinfo", "zoneinfo", "buddyinfo"):
        shutil.copy(LAB1 / "snapshots/20261125T200043Z" / f, s / "proc" / f)
    (s / "proc/sys/vm/defrag_mode").write_text("1\n")
    (s / "sos_commands/kernel/uname_-a").write_text("Linux h 6.16.3+deb13-amd64 #1 SMP x86_64\n")
    (s / "hostname").write_text("sos-host\n")
    with load(s) as b:
        assert b.host == "sos-host" and b.defrag_mode["value"] == 1
        assert b.kernel_release == {"value": "6.16.3+deb13-amd64", "source": "uname"}
        assert len(b.snapshots) == 1 and b.snapshots[0].pagetypeinfo.pageblock_order == 9
        assert b.log.summary()["slub_reports"] == 30


def test_snapshot_names():
    assert parse_snapshot_time("20260522T093804Z").isoformat() == "2026-05-22T09:38:04+00:00"
    assert parse_snapshot_time("2026-05-22T09:38:04Z").isoformat() == "2026-05-22T09:38:04+00:00"
    assert parse_snapshot_time("yesterday") is None


def test_bad_snapshot_folder(tmp_path):
    (tmp_path / "snapshots/yesterday").mkdir(parents=True)
    with pytest.raises(BundleError, match="snapshot folder"):
        load(tmp_path)


def test_every_sample_bundle_loads():
    n = 0
    for d in SAMPLES.iterdir():
        if d.is_dir():
            with load(d) as b:
                assert b.snapshots or b.logs
                n += 1
    assert n >= 4
