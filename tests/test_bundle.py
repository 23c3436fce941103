import io
import json
import os
import shutil
import tarfile
import tempfile

import pytest
import zstandard
from pathlib import Path

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
    _tar(p, [("b/dmesg", b"\0" * (600 << 10), "f"), ("b/kern.log", b"\0" * (600 << 10), "f")])
    assert p.stat().st_size < 20_000
    with pytest.raises(BundleError, match="decompression bomb"):
        load(p)


def _no_writes(monkeypatch):
    import parsers.bundle as pb
    writes = []
    real = pb.shutil.copyfileobj
    monkeypatch.setattr(pb.shutil, "copyfileobj", lambda *a, **k: (writes.append(a), real(*a, **k)))
    return writes


@pytest.mark.parametrize("bad,what", [
    (("b/kern.log", b"\0" * (3 << 20), "f"), "a log may have at most 2 MiB"),
    (("b/../evil", b"x", "f"), "escapes"),
    (("b/link", "/etc/passwd", "sym"), "outside"),
], ids=["member-too-big", "escape", "link-out"])
def test_limits_are_checked_before_anything_is_written(tmp_path, monkeypatch, bad, what):
    # the bad member comes after good ones: a one-pass extraction would have written those
    import parsers.bundle as pb
    monkeypatch.setattr(pb, "MAX_MEMBER_BYTES", 2 << 20)
    writes = _no_writes(monkeypatch)
    p = tmp_path / "b.tgz"
    _tar(p, [("b/dmesg", (need(LAB1) / "dmesg").read_bytes(), "f"),
             ("b/meta.json", b'{"host": "h"}', "f"), bad])
    with pytest.raises(BundleError, match=what):
        load(p)
    assert writes == []


def test_member_size_from_the_header_alone(tmp_path, monkeypatch):
    # a header that claims 100 GiB with no data behind it: refused at the header
    writes = _no_writes(monkeypatch)
    p = tmp_path / "b.tar"
    with tarfile.open(p, "w") as tar:
        ti = tarfile.TarInfo("b/kern.log")
        ti.size = 100 << 30
        tar.fileobj.write(ti.tobuf(tar.format, tar.encoding, tar.errors))
    with pytest.raises(BundleError, match="member is 102,400 MiB; a log may have at most"):
        load(p)
    assert writes == []


def test_only_bundle_files_are_extracted(tmp_path, monkeypatch):
    import parsers.bundle as pb
    monkeypatch.setattr(pb, "MAX_BYTES", 1 << 20)  # the junk alone is over the limit
    p = tmp_path / "b.tgz"
    _tar(p, [("b/dmesg", (need(LAB1) / "dmesg").read_bytes(), "f"), ("b/core.1234", b"\0" * (2 << 20), "f"),
             ("b/var/cache/big", b"\0" * (2 << 20), "f")])
    with load(p) as b:
        assert b.log.summary()["slub_reports"] == 30
        assert sorted(x.name for x in b.root.rglob("*")) == ["dmesg"]


def test_no_space_for_the_extraction(tmp_path, monkeypatch):
    import parsers.bundle as pb
    monkeypatch.setattr(pb, "FREE_MARGIN", 1 << 60)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    p = tmp_path / "b.tgz"
    _tar(p, [("b/dmesg", b"x\n", "f")])
    with pytest.raises(BundleError, match="is free"):
        load(p)
    assert not list(tmp_path.glob("mmtriage-*"))


def test_errors_inside_a_tarball_name_the_member(tmp_path):
    p = tmp_path / "b.tgz"
    _tar(p, [("host1/dmesg", b"x\n", "f"), ("host1/meta.json", b'{\n"defrag_mode": "yes"}', "f")])
    with pytest.raises(BundleError) as ei:
        load(p)
    assert str(ei.value).startswith(f"{p}[host1/meta.json]:2: defrag_mode: ")


def test_temp_space_and_signal_handlers_are_given_back(tmp_path, monkeypatch):
    import signal
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    before = signal.getsignal(signal.SIGTERM)
    p = tmp_path / "b.tgz"
    _tar(p, [("b/dmesg", (need(LAB1) / "dmesg").read_bytes(), "f")])
    b = load(p)
    assert len(list(tmp_path.glob("mmtriage-*"))) == 1
    if before == signal.SIG_DFL:
        assert signal.getsignal(signal.SIGTERM) is not before  # SIGTERM now unwinds and cleans
    b.close()
    assert not list(tmp_path.glob("mmtriage-*"))
    assert signal.getsignal(signal.SIGTERM) == before


def test_interrupt_during_extraction_removes_it(tmp_path, monkeypatch):
    import parsers.bundle as pb
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(pb.shutil, "copyfileobj", interrupted)
    p = tmp_path / "b.tgz"
    _tar(p, [("b/dmesg", b"x\n", "f")])
    with pytest.raises(KeyboardInterrupt):
        load(p)
    assert not list(tmp_path.glob("mmtriage-*"))


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


def _meta(tmp_path, meta) -> Path:
    d = tmp_path / "b"
    d.mkdir()
    (d / "dmesg").write_bytes((need(LAB1) / "dmesg").read_bytes())
    (d / "meta.json").write_text(meta if isinstance(meta, str) else json.dumps(meta, indent=1))
    return d


@pytest.mark.parametrize("meta,message", [
    ({"defrag_mode": [1]}, ":2: defrag_mode: input should be a valid integer, got an array: '[1]'"),
    ({"defrag_mode": "yes"}, ":2: defrag_mode: input should be a valid integer, got a string"),
    ({"defrag_mode": 2}, ":2: defrag_mode: input should be less than or equal to 1, got an integer"),
    ({"defrag_mode": True}, ":2: defrag_mode: input should be a valid integer, got a boolean"),
    ({"host": "h", "kernel_release": 12}, ":3: kernel_release: input should be a valid string"),
    ({"kernel_release": "6" * 65}, ":2: kernel_release: string should have at most 64 characters"),
    ({"host": {}}, ":2: host: input should be a valid string, got an object"),
    ({"boot_id": 5}, ":2: boot_id: input should be a valid string"),
    ({"boot_time": 1764100800}, ":2: boot_time: input should be a valid string"),
    ({"ground_truth": {"failed_echo_replies": "many"}}, ":2: ground_truth.failed_echo_replies: "),
    ('{"x": ' + "[" * 200_000 + "]" * 200_000 + "}", ":1: JSON nested too deep"),
    ('{"x": ' + "[" * 33 + "]" * 33 + "}", ":1: JSON nested 34 levels deep (at most 32)"),
    ("[1]", ":1: meta.json must hold an object, not an array"),
    ('{"host": "h",\n "x": }', ":2: bad JSON: Expecting value"),
], ids=["list", "yes", "two", "bool", "release-int", "release-long", "host-object", "boot-id",
        "boot-time-number", "ground-truth", "nested-200k", "nested-34", "array", "syntax"])
def test_meta_json_schema(tmp_path, meta, message):
    d = _meta(tmp_path, meta)
    with pytest.raises(BundleError) as ei:
        load(d)
    assert str(ei.value).startswith(str(d / "meta.json") + message), str(ei.value)


@pytest.mark.parametrize("boot_time", ["yesterday", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00"])
def test_meta_unusable_boot_time_is_a_note(tmp_path, boot_time):
    with load(_meta(tmp_path, {"boot_time": boot_time, "defrag_mode": None})) as b:
        assert b.boot_time is None and b.defrag_mode == {"value": None, "source": "unknown"}
        assert any("boot time unknown" in n for n in b.notes)
        assert b.log.summary()["slub_reports"] == 30


def test_meta_extra_fields_are_kept(tmp_path):
    with load(_meta(tmp_path, {"host": "h", "workload": {"a": [1]}, "boot_time": "2026-11-25T20:00:00"})) as b:
        assert b.meta["workload"] == {"a": [1]} and b.host == "h"
        assert b.boot_time.isoformat() == "2026-11-25T20:00:00+00:00"


def test_event_time_beyond_the_calendar(tmp_path):
    with load(_meta(tmp_path, {"boot_time": "2026-11-25T20:00:00Z"})) as b:
        assert b.event_wall_time({"time_wall": None, "time_s": 1e20}) is None
        assert b.event_wall_time({"time_wall": None, "time_s": 1.5}).isoformat() == \
            "2026-11-25T20:00:01.500000+00:00"


def test_paths_that_are_not_bundles(tmp_path):
    with pytest.raises(BundleError, match="not a regular file or a directory"):
        load("/dev/zero")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="not a host bundle"):
        load(tmp_path / "empty")


def test_runaway_snapshot_file(tmp_path, monkeypatch):
    import parsers.bundle as pb
    monkeypatch.setattr(pb, "MAX_SMALL_BYTES", 1 << 20)
    d = tmp_path / "b"
    shutil.copytree(need(LAB1), d)
    snap = sorted((d / "snapshots").iterdir())[0]
    (snap / "vmstat").write_bytes(b"nr_free_pages 1\n" * 100_000)
    with pytest.raises(BundleError, match="vmstat: larger than 1 MiB"):
        load(d)


@pytest.mark.parametrize("compress", [None, "zst", "gz"])
def test_tarball_cut_at_a_member_boundary(tmp_path, compress):
    # tarfile ends the listing quietly when the data stops where a header should be: the
    # snapshots after the cut would be lost without a word
    import gzip as _gzip
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in [("b/dmesg", (need(LAB1) / "dmesg").read_bytes()), ("b/meta.json", b"{}")]:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    whole = raw.getvalue()
    first = 512 + -(-len((need(LAB1) / "dmesg").read_bytes()) // 512) * 512
    data = whole[:first]
    name, data = {None: ("b.tar", data), "zst": ("b.tar.zst", zstandard.ZstdCompressor().compress(data)),
                  "gz": ("b.tgz", _gzip.compress(data))}[compress]
    p = tmp_path / name
    p.write_bytes(data)
    with pytest.raises(BundleError, match="truncated archive: it stops after 1 members"):
        load(p)
    (tmp_path / "whole.tar").write_bytes(whole)
    with load(tmp_path / "whole.tar") as b:
        assert b.log.summary()["slub_reports"] == 30
