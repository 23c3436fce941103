"""Hostile inputs for every command, generated (nothing stored): broken, truncated, oversized and
malicious logs, /proc files, bundles, tarballs, meta.json, option values.

Each ``Case`` is a command line over inputs that ``build`` writes into a work folder, and what
the contract says must come of it (README: bad input -> one ``Error: <where>: <what>`` line on
stderr and exit 1; never exit 70 or a traceback; nothing half-written; every failure header the
input still holds is counted). ``tests/test_hostile.py`` runs them; run this file to write the
inputs out and print the command lines, e.g. to try them by hand or against another build::

    python tests/hostile.py /tmp/hostile [--long]

``--long`` (``MMTRIAGE_HOSTILE_LONG=1`` in the tests) adds the big ones: 50 MB lines, a
100,001-member tarball, a 4.5 GiB decompression bomb, a 70 MB "/proc file", more random flips.
"""
from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import random
import shutil
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import zstandard

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "sample_logs" / "lab-6.16.3-defrag1"      # a real capture: 30 SLUB + 2 page
LOG = BUNDLE / "dmesg"                                    # allocation failure reports
SNAP = BUNDLE / "snapshots" / "20261125T200043Z"
PROC_KINDS = ("vmstat", "pagetypeinfo", "zoneinfo", "buddyinfo", "meminfo", "slabinfo", "net_snmp")


@dataclass
class Case:
    id: str
    argv: list[str]                       # "{d}" stands for the case's work folder
    build: Callable[[Path], None] | None = None
    exit: tuple[int, ...] = (1,)          # allowed exit codes
    names: str | None = None              # the error line must name this ("{d}" expanded)
    counts: bool = False                  # parse JSON summary == the real log's
    out: bool = False                     # add -o {d}/out/result.json and check it
    stdin: bytes | None = None
    stdin_file: str | None = None         # a file (a device) as stdin; isolated cases only
    isolate: bool = False                 # a subprocess with a memory limit and a timeout
    patch: dict = field(default_factory=dict)   # "module:NAME" -> value (in-process limits)
    owner: str | None = None              # known failure outside this branch: xfail(strict)
    check: Callable[[Path, "object"], None] | None = None   # more assertions (work dir, result)
    long: bool = False


# -- input builders --------------------------------------------------------------------------
def log() -> bytes:
    return LOG.read_bytes()


def put(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def zst(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def zst_frames(data: bytes, n: int = 3) -> bytes:
    step = len(data) // n + 1
    return b"".join(zst(data[i:i + step]) for i in range(0, len(data), step))


def cut(data: bytes, frac: float = 0.6) -> bytes:
    return data[: int(len(data) * frac)]


def cut_mid_line(data: bytes) -> bytes:
    """Cut near the middle, inside a line (a cut at a line's end leaves no trace)."""
    pos = len(data) // 2
    while pos > 1 and (data[pos - 1:pos] == b"\n" or data[pos:pos + 1] == b"\n"):
        pos -= 1
    return data[:pos]


COMPRESS = {"gz": gzip.compress, "xz": lzma.compress, "bz2": bz2.compress, "zst": zst}


def replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data, old
    return data.replace(old, new, 1)


def flip(data: bytes, seed: int, frac: float = 0.01) -> bytes:
    rng = random.Random(seed)
    b = bytearray(data)
    for _ in range(int(len(b) * frac)):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def copy_bundle(dest: Path, meta: dict | str | bytes | None = None) -> Path:
    shutil.copytree(BUNDLE, dest)
    if meta is not None:
        data = meta if isinstance(meta, (str, bytes)) else json.dumps(meta)
        put(dest / "meta.json", data)
    return dest


def real_meta() -> dict:
    return json.loads((BUNDLE / "meta.json").read_text())


class Zeros(io.RawIOBase):
    """n zero bytes, read in pieces (a big member without a big buffer)."""

    def __init__(self, n: int):
        self.left = n

    def readable(self):
        return True

    def readinto(self, b):
        k = min(len(b), self.left)
        b[:k] = bytes(k)
        self.left -= k
        return k


def tar_bundle(src: Path, dest: Path, mode: str = "w:gz", top: str = "host1") -> Path:
    with tarfile.open(dest, mode) as tar:
        tar.add(src, arcname=top)
    return dest


def tar_members(dest: Path, members: list[tuple], mode: str = "w:gz") -> Path:
    """members: (name, kind, data) with kind file/sym/lnk/dir/chr/fifo/zeros/header-only."""
    stream = None
    if mode == "w|zst":
        stream = zstandard.ZstdCompressor(level=1).stream_writer(open(dest, "wb"))
        tar = tarfile.open(fileobj=stream, mode="w|")
    else:
        tar = tarfile.open(dest, mode)
    with tar:
        for name, kind, data in members:
            ti = tarfile.TarInfo(name)
            ti.mode = 0o644
            if kind == "file":
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
            elif kind == "zeros":
                ti.size = data
                tar.addfile(ti, io.BufferedReader(Zeros(data), 1 << 20))
            elif kind == "header-only":   # a header claiming ``data`` bytes, and no data
                ti.size = data
                tar.fileobj.write(ti.tobuf(tar.format, tar.encoding, tar.errors))
            elif kind in ("sym", "lnk"):
                ti.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                ti.linkname = data
                tar.addfile(ti)
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
                tar.addfile(ti)
            elif kind == "chr":
                ti.type, ti.devmajor, ti.devminor = tarfile.CHRTYPE, 1, 5
                tar.addfile(ti)
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
                tar.addfile(ti)
    if stream is not None:
        stream.close()
    return dest


def _tar_bytes(members: list[tuple]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, _kind, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def bundle_members(extra: list[tuple] = ()) -> list[tuple]:
    """The real bundle as tar members under host1/, plus ``extra``."""
    out = [("host1/dmesg", "file", log()), ("host1/meta.json", "file", (BUNDLE / "meta.json").read_bytes())]
    for f in PROC_KINDS:
        out.append((f"host1/snapshots/{SNAP.name}/{f}", "file", (SNAP / f).read_bytes()))
    return out + list(extra)


def fake_proc(root: Path, stat: str = "cpu 1 2 3\nbtime 1764100800\n") -> Path:
    for f in PROC_KINDS:
        put(root / ("net/snmp" if f == "net_snmp" else f), (SNAP / f).read_bytes())
    put(root / "sys/vm/defrag_mode", "1\n")
    put(root / "stat", stat)
    return root


def nested(depth: int) -> str:
    return '{"host": "h", "x": ' + "[" * depth + "]" * depth + "}"


# -- the cases -------------------------------------------------------------------------------
def _log_cases(long: bool) -> list[Case]:
    c: list[Case] = []
    P = ["parse", "{d}/in", "-f", "json"]

    def L(id, data_fn, **kw):
        c.append(Case(f"log-{id}", P, lambda d, f=data_fn: put(d / "in", f()), out=True, **kw))

    L("plain", log, exit=(0,), counts=True)
    for ext, fn in COMPRESS.items():
        L(ext, lambda fn=fn: fn(log()), exit=(0,), counts=True)
        L(f"{ext}-truncated", lambda fn=fn: cut(fn(log())), names="{d}/in")
    L("zst-multiframe", lambda: zst_frames(log()), exit=(0,), counts=True)
    L("zst-multiframe-truncated", lambda: cut(zst_frames(log()), 0.5), names="{d}/in")
    L("gz-magic-garbage", lambda: b"\x1f\x8b" + os.urandom(4000), names="{d}/in")
    L("zst-magic-garbage", lambda: b"\x28\xb5\x2f\xfd" + os.urandom(4000), names="{d}/in")
    L("crlf", lambda: log().replace(b"\n", b"\r\n"), exit=(0,), counts=True)
    L("cr-only", lambda: log().replace(b"\n", b"\r"), exit=(0,), counts=True)
    L("nul-lines", lambda: log().replace(b"\n[", b"\n\0\0\0\n["), exit=(0,), counts=True)
    L("invalid-utf8", lambda: log().replace(b"\n[", b"\n\xff\xfe\xc3(\x80\n[", 50),
      exit=(0,), counts=True)
    big = (50 if long else 5) << 20
    L("long-line", lambda: replace_once(log(), b"\n", b"\n" + b"A" * big + b"\n"),
      exit=(0,), counts=True, long=long)
    L("long-line-no-newline", lambda: log() + b"B" * big, exit=(0,), counts=True)
    L("cut-mid-line", lambda: log()[: log().rindex(b"\n", 0, len(log()) - 10) + 20], exit=(0,))
    L("empty", lambda: b"", exit=(0,))
    L("random-binary", lambda: random.Random(7).randbytes(1 << 20), exit=(0, 1))
    for seed in range(20 if long else 3):
        L(f"flipped-{seed}", lambda seed=seed: flip(log(), seed), exit=(0, 1))
    L("suppressed-2e70", lambda: replace_once(log(), b"1586 callbacks", f"{2**70} callbacks".encode()),
      exit=(0,))
    L("order-huge", lambda: replace_once(log(), b"order:0, mode", b"order:99999999999999999999, mode"),
      exit=(0,), check=_page_allocs(2))
    L("order-negative", lambda: replace_once(log(), b"order:0, mode", b"order:-1, mode"),
      exit=(0,), check=_page_allocs(2))
    # triage over the same numbers (the parse is fine; what is computed with them is not)
    T = ["triage", "{d}/b", "-f", "json"]

    def TB(id, data_fn, **kw):
        def build(d, f=data_fn):
            copy_bundle(d / "b")
            put(d / "b" / "dmesg", f())
        c.append(Case(f"triage-{id}", T, build, out=True, **kw))

    TB("order-huge", lambda: replace_once(log(), b"order:0, mode", b"order:99999999999999999999, mode"),
       exit=(0, 1))
    TB("suppressed-2e70", lambda: replace_once(log(), b"1586 callbacks", f"{2**70} callbacks".encode()),
       exit=(0, 1))
    TB("timestamp-1e20", lambda: replace_once(log(), b"[   44.948454]", b"[100000000000000000000.000000]"),
       exit=(0, 1))
    TB("meminfo-zone-huge", lambda: replace_once(log(), b"DMA free:5624kB", b"DMA free:99999999999999999999999kB"),
       exit=(0, 1))
    TB("plain", log, exit=(0,))
    c.append(Case("triage-plots-over-file", ["triage", str(BUNDLE), "--plots", "{d}/f"],
                  lambda d: put(d / "f", "keep"), names="{d}/f"))
    # an empty prefix matches every release: the host is reported fixed whatever it runs
    c.append(Case("triage-fixed-in-empty", ["triage", str(BUNDLE), "--fixed-in", ""], names="--fixed-in"))
    # stdin and things that are not files
    c.append(Case("log-stdin", ["parse", "-", "-f", "json"], stdin=log(), exit=(0,), counts=True))
    c.append(Case("log-stdin-devzero", ["parse", "-"], isolate=True, stdin_file="/dev/zero",
                  exit=(1,)))
    c.append(Case("log-devzero-path", ["parse", "/dev/zero"], names="/dev/zero", isolate=True))
    c.append(Case("log-missing", ["parse", "{d}/nope"], names="{d}/nope"))
    c.append(Case("log-empty-dir", ["parse", "{d}/e"], lambda d: (d / "e").mkdir(), names="{d}/e"))
    for fmt in ("table", "csv", "ndjson"):
        c.append(Case(f"log-format-{fmt}", ["parse", "{d}/in", "-f", fmt],
                      lambda d: put(d / "in", log()), exit=(0,)))
    c.append(Case("log-output-is-dir", ["parse", "{d}/in", "-o", "{d}/o"],
                  lambda d: (put(d / "in", log()), (d / "o").mkdir()), names="{d}/o",
                  check=_no_temp_left("o")))
    return c


def _page_allocs(n: int):
    def check(d, r):
        assert json.loads(r.doc)["summary"]["page_alloc_reports"] == n
    return check


def _no_temp_left(sub: str):
    def check(d, r):
        left = [p.name for p in (d / sub).iterdir()] if (d / sub).is_dir() else []
        assert not left, left
    return check


def _proc_cases(long: bool) -> list[Case]:
    c: list[Case] = []
    P = ["proc", "{d}/in", "-f", "json"]

    def C(id, data_fn, **kw):
        c.append(Case(f"proc-{id}", P, lambda d, f=data_fn: put(d / "in", f()), out=True, **kw))

    for k in PROC_KINDS:
        C(k, lambda k=k: (SNAP / k).read_bytes(), exit=(0,))
        # cut mid-line: at least a warning naming the file, or an error
        C(f"{k}-cut-mid-line", lambda k=k: cut_mid_line((SNAP / k).read_bytes()), exit=(0, 1),
          check=_warned("{d}/in"))
        C(f"{k}-nul", lambda k=k: (SNAP / k).read_bytes().replace(b"\n", b"\n\0", 3), exit=(0, 1))
    C("empty", lambda: b"", names="{d}/in")
    C("random-binary", lambda: random.Random(3).randbytes(100_000), names="{d}/in")
    C("zoneinfo-extra-column", lambda: replace_once((SNAP / "zoneinfo").read_bytes(),
                                                    b"pages free     1399\n", b"pages free     1399 12345\n"),
      exit=(0,), check=_zone_free(1399))
    C("vmstat-2e70", lambda: replace_once((SNAP / "vmstat").read_bytes(), b"nr_free_pages ",
                                          f"nr_free_pages {2**70}\nx ".encode()), exit=(0, 1))
    c.append(Case("proc-pageblock-order-huge", ["proc", "{d}/in"],
                  lambda d: put(d / "in", replace_once((SNAP / "pagetypeinfo").read_bytes(),
                                                       b"Page block order: 9", b"Page block order: 1000000000000")),
                  isolate=True, names="{d}/in"))
    c.append(Case("proc-devzero", ["proc", "/dev/zero"], isolate=True, names="/dev/zero"))
    c.append(Case("proc-missing", ["proc", "{d}/nope"], names="{d}/nope"))
    return c


def _warned(where: str):
    def check(d, r):
        if r.exit_code == 0:
            assert where.format(d=d) in r.stderr, "a file cut mid-line must at least warn"
    return check


def _zone_free(n: int):
    def check(d, r):
        assert json.loads(r.doc)["files"][0]["zones"][0]["pages_free"] == n
    return check


def _gfp_cases() -> list[Case]:
    c = []
    for id, mask, ok in [("empty", "", (1,)), ("0x", "0x", (1,)), ("bogus-flag", "GFP_BOGUS", (1,)),
                         ("huge-hex", "0x" + "f" * 40, (0, 1)), ("unbalanced", "0xa20(GFP_ATOMIC", (0, 1)),
                         ("trailing-bar", "GFP_ATOMIC|", (0, 1)), ("long", "GFP_ATOMIC|" * 50_000, (0, 1)),
                         ("nul", "0xa20\0", (0, 1)), ("negative", "-0x20", (0, 1))]:
        c.append(Case(f"gfp-{id}", ["gfp", "--", mask], exit=ok))
    c.append(Case("gfp-kernel-garbage", ["gfp", "0xa20", "--kernel", "x" * 5000], exit=(0, 1)))
    return c


META_CASES = [
    # (id, meta.json text, exit, the error names this field)
    ("defrag-list", {"defrag_mode": [1]}, (1,), "defrag_mode"),
    ("defrag-yes", {"defrag_mode": "yes"}, (1,), "defrag_mode"),
    ("defrag-2", {"defrag_mode": 2}, (1,), "defrag_mode"),
    ("defrag-true", {"defrag_mode": True}, (1,), "defrag_mode"),
    ("defrag-float", {"defrag_mode": 1.0}, (1,), "defrag_mode"),
    ("defrag-null", {"defrag_mode": None}, (0,), None),
    ("release-int", {"kernel_release": 12}, (1,), "kernel_release"),
    ("release-long", {"kernel_release": "6." * 100}, (1,), "kernel_release"),
    ("host-object", {"host": {}}, (1,), "host"),
    ("host-int", {"host": 12}, (1,), "host"),
    ("boot-id-list", {"boot_id": [1]}, (1,), "boot_id"),
    ("boot-time-int", {"boot_time": 12}, (1,), "boot_time"),
    ("boot-time-garbage", {"boot_time": "yesterday"}, (0,), None),
    ("boot-time-year-9999", {"boot_time": "9999-12-31T23:59:59Z"}, (0,), None),
    ("boot-time-year-1", {"boot_time": "0001-01-01T00:00:00"}, (0,), None),
    ("ground-truth-str", {"ground_truth": "x"}, (1,), "ground_truth"),
    ("ground-truth-negative", {"ground_truth": {"failed_echo_replies": -1}}, (1,), "ground_truth"),
    ("captured-from-list", {"captured_from": [1]}, (1,), "captured_from"),
    ("extra-fields-kept", {"workload": {"a": [1, 2]}, "phases": {}}, (0,), None),
]


def _bundle_cases(long: bool) -> list[Case]:
    c: list[Case] = []
    T = ["triage", "{d}/b", "-f", "json"]
    for id, patch, ok, field_ in META_CASES:
        def build(d, patch=patch):
            copy_bundle(d / "b", {**real_meta(), **patch})
        c.append(Case(f"meta-{id}", T, build, exit=ok, out=True,
                      names="{d}/b/meta.json:" if ok == (1,) else None,
                      check=_error_mentions(field_) if field_ else None))
    raw = [("nested-200k", nested(200_000), "nested"), ("nested-40", nested(40), "nested"),
           ("array", "[1, 2, 3]", "object"), ("string", '"x"', "object"),
           ("bad-json", '{"host": "h",\n "defrag_mode": }', "JSON"), ("empty", "", "JSON"),
           ("nan", '{"defrag_mode": NaN}', "defrag_mode"), ("int-5000-digits", '{"x": ' + "9" * 5000 + "}", "JSON"),
           ("2mb", '{"x": "' + "a" * (2 << 20) + '"}', "MiB"), ("utf16", '{"host": "h"}'.encode("utf-16"), "JSON")]
    for id, text, word in raw:
        c.append(Case(f"meta-{id}", T, lambda d, text=text: copy_bundle(d / "b", text), out=True,
                      names="{d}/b/meta.json", check=_error_mentions(word)))
    c.append(Case("meta-is-dir", T, lambda d: (copy_bundle(d / "b"), (d / "b/meta.json").unlink(),
                                               (d / "b/meta.json").mkdir()), names="{d}/b/meta.json"))
    c.append(Case("meta-line-number", T, lambda d: copy_bundle(d / "b", '{\n "host": "h",\n\n "defrag_mode": "yes"\n}'),
                  names="{d}/b/meta.json:4:"))
    # the rest of a bundle folder
    c.append(Case("bundle-plain-parse", ["parse", "{d}/b", "-f", "json"], lambda d: copy_bundle(d / "b"),
                  exit=(0,), counts=True))
    c.append(Case("bundle-snapshot-name", T, lambda d: (copy_bundle(d / "b"),
                                                        (d / "b/snapshots/yesterday").mkdir()),
                  names="{d}/b/snapshots/yesterday"))
    c.append(Case("bundle-snapshot-defrag-abc", T, lambda d: (copy_bundle(d / "b"),
                                                              put(d / "b/snapshots" / SNAP.name / "defrag_mode", "abc")),
                  names="defrag_mode"))
    c.append(Case("bundle-snapshot-vmstat-binary", T, lambda d: (copy_bundle(d / "b"),
                                                                 put(d / "b/snapshots" / SNAP.name / "vmstat",
                                                                     random.Random(5).randbytes(50_000))),
                  exit=(0, 1)))
    big = 70 << 20 if long else 2 << 20
    c.append(Case("bundle-snapshot-huge", T, lambda d: (copy_bundle(d / "b"),
                                                        put(d / "b/snapshots" / SNAP.name / "zoneinfo", b"x" * big)),
                  names="zoneinfo", patch={} if long else {"parsers.bundle:MAX_SMALL_BYTES": 1 << 20}, long=long))
    c.append(Case("bundle-snapshot-devzero", T, lambda d: (copy_bundle(d / "b"),
                                                           (d / "b/snapshots" / SNAP.name / "vmstat").unlink(),
                                                           (d / "b/snapshots" / SNAP.name / "vmstat").symlink_to("/dev/zero")),
                  exit=(0,), isolate=True))
    c.append(Case("bundle-defrag-file-7", T, lambda d: (copy_bundle(d / "b", {"host": "h"}),
                                                        put(d / "b/proc/sys/vm/defrag_mode", "7\n")),
                  names="{d}/b/proc/sys/vm/defrag_mode"))
    c.append(Case("meta-utf8-bom", ["parse", "{d}/b", "-f", "json"],
                  lambda d: copy_bundle(d / "b", b"\xef\xbb\xbf" + json.dumps(real_meta()).encode()),
                  exit=(0,), counts=True))
    c.append(Case("bundle-newline-in-path", ["parse", "{d}/a\nb"], names="no such file"))
    c.append(Case("bundle-empty-dir", T, lambda d: (d / "b").mkdir(), names="{d}/b"))
    c.append(Case("bundle-only-meta", T, lambda d: put(d / "b/meta.json", "{}"), names="{d}/b"))
    return c


def _error_mentions(word: str):
    def check(d, r):
        if r.exit_code == 1:
            assert word in r.stderr, (word, r.stderr)
    return check


def _tar_cases(long: bool) -> list[Case]:
    c: list[Case] = []
    T = ["triage", "{d}/b.tgz", "-f", "json"]
    for ext, mode in [("tgz", "w:gz"), ("tar", "w"), ("tar.xz", "w:xz"), ("tar.bz2", "w:bz2")]:
        c.append(Case(f"tar-{ext}", ["parse", f"{{d}}/b.{ext}", "-f", "json"],
                      lambda d, ext=ext, mode=mode: tar_bundle(BUNDLE, d / f"b.{ext}", mode),
                      exit=(0,), counts=True))
    c.append(Case("tar-zst", ["parse", "{d}/b.tar.zst", "-f", "json"],
                  lambda d: tar_members(d / "b.tar.zst", bundle_members(), "w|zst"), exit=(0,), counts=True))
    c.append(Case("tar-triage", T, lambda d: tar_bundle(BUNDLE, d / "b.tgz"), exit=(0,), out=True))
    bad = [("dotdot", [("../evil", "file", b"x")], "escapes"),
           ("absolute", [("/tmp/evil", "file", b"x")], "escapes"),
           ("dotdot-deep", [("host1/a/../../../evil", "file", b"x")], "escapes"),
           ("symlink-out", [("host1/dmesg2", "sym", "../../etc/passwd")], "outside"),
           ("symlink-abs", [("host1/dmesg2", "sym", "/etc/passwd")], "outside"),
           ("hardlink-out", [("host1/dmesg2", "lnk", "../etc/passwd")], "outside"),
           ("member-100GiB-header", [("host1/kern.log", "header-only", 100 << 30)], "at most"),
           ("meta-member-2MiB", [("host1/meta.json", "zeros", 2 << 20)], "at most")]
    for id, extra, word in bad:
        c.append(Case(f"tar-{id}", T, lambda d, extra=extra: tar_members(d / "b.tgz", bundle_members(extra)),
                      names="{d}/b.tgz", out=True, check=_error_mentions(word)))
    c.append(Case("tar-devices-skipped", ["parse", "{d}/b.tgz", "-f", "json"],
                  lambda d: tar_members(d / "b.tgz", bundle_members(
                      [("host1/kmsg", "chr", None), ("host1/messages", "fifo", None),
                       ("host1/link", "sym", "dmesg")])), exit=(0,), counts=True))
    c.append(Case("tar-junk-not-written", ["parse", "{d}/b.tgz", "-f", "json"],
                  lambda d: tar_members(d / "b.tgz", bundle_members([("host1/core.dump", "zeros", 1 << 20)])),
                  exit=(0,), counts=True, patch={"parsers.bundle:MAX_BYTES": 512 << 10}))
    n = 100_001 if long else 101
    c.append(Case("tar-too-many-members", T,
                  lambda d: tar_members(d / "b.tgz", [(f"host1/x{i}", "file", b"") for i in range(n)]),
                  names="{d}/b.tgz", check=_error_mentions("members"), long=long,
                  patch={} if long else {"parsers.bundle:MAX_MEMBERS": 100}))
    each = (1536 << 20) if long else (400 << 10)
    c.append(Case("tar-bomb", T,
                  lambda d: tar_members(d / "b.tgz", [(f"host1/{n}", "zeros", each) for n in
                                                      ("dmesg", "kern.log", "messages")], "w|zst"),
                  names="{d}/b.tgz", check=_error_mentions("decompression bomb"), long=long,
                  patch={} if long else {"parsers.bundle:MAX_BYTES": 1 << 20}))
    c.append(Case("tar-no-space", T, lambda d: tar_bundle(BUNDLE, d / "b.tgz"), names="{d}/b.tgz",
                  check=_error_mentions("free"), patch={"parsers.bundle:FREE_MARGIN": 1 << 60}))
    c.append(Case("tar-gz-truncated", T, lambda d: put(d / "b.tgz", cut(tar_bundle(BUNDLE, d / "x.tgz").read_bytes())),
                  names="{d}/b.tgz", out=True))
    c.append(Case("tar-zst-truncated", ["triage", "{d}/b.tar.zst"],
                  lambda d: put(d / "b.tar.zst", cut(zst(tar_bundle(BUNDLE, d / "x.tar", "w").read_bytes()))),
                  names="{d}/b.tar.zst"))
    c.append(Case("tar-cut-at-member-boundary", T, lambda d: put(d / "b.tgz", gzip.compress(
        _tar_bytes(bundle_members())[:512 + -(-len(log()) // 512) * 512])), names="{d}/b.tgz",
        check=_error_mentions("truncated")))
    c.append(Case("tar-empty", T, lambda d: tar_members(d / "b.tgz", []), names="{d}/b.tgz"))
    c.append(Case("tar-name-too-long", T, lambda d: tar_members(d / "b.tgz", [(f"{'h' * 300}/dmesg", "file", log())]),
                  names="{d}/b.tgz["))
    c.append(Case("tar-file-where-a-folder-goes", ["parse", "{d}/b.tgz"],
                  lambda d: tar_members(d / "b.tgz", [("dmesg", "file", log()), ("dmesg/dmesg", "file", log())]),
                  names="{d}/b.tgz["))
    c.append(Case("tar-bad-meta", T, lambda d: tar_members(d / "b.tgz", bundle_members() + [
        ("host1/meta.json", "file", b'{"defrag_mode": "yes"}')]), names="{d}/b.tgz[host1/meta.json]"))
    c.append(Case("tar-not-a-tar", T, lambda d: put(d / "b.tgz", gzip.compress(os.urandom(3000))),
                  exit=(0, 1)))
    return c


def _validate_cases(long: bool) -> list[Case]:
    c = []
    L0, L1 = str(ROOT / "sample_logs/lab-6.16.3-defrag0"), str(BUNDLE)
    c.append(Case("validate-two-bundles", ["validate", "--before", L1, "--after", L0, "-f", "json"],
                  exit=(0, 3, 4), out=True))
    c.append(Case("validate-missing-before", ["validate", "--before", "{d}/nope", "--after", L0],
                  names="{d}/nope"))
    c.append(Case("validate-both-forms", ["validate", L1, "--before", L0]))
    c.append(Case("validate-nothing", ["validate"]))
    c.append(Case("validate-calibrate-nan", ["validate", "--before", L1, "--after", L0, "--calibrate", "nan"],
                  names="--calibrate"))
    # (runs a whole calibration before it fails: long mode only)
    c.append(Case("validate-calibrate-negative", ["validate", "--before", L1, "--after", L0, "--calibrate", "-5"],
                  names="--calibrate", long=True))
    c.append(Case("validate-bad-meta", ["validate", "--before", "{d}/b", "--after", L0],
                  lambda d: copy_bundle(d / "b", {"defrag_mode": "yes"}), names="{d}/b/meta.json"))
    return c


def _collect_cases() -> list[Case]:
    c = []
    A = ["collect", "--out", "{d}/out", "--proc-root", "{d}/proc", "--kmsg", "", "--interval", "0"]

    def C(id, argv, build=None, **kw):
        c.append(Case(f"collect-{id}", argv, build or (lambda d: fake_proc(d / "proc")),
                      check=kw.pop("check", _no_out_dir), **kw))

    C("fake-proc", A, exit=(0,), check=_collected)
    for id, stat in [("btime-1e20", "btime 100000000000000000000\n"), ("btime-abc", "btime abc\n"),
                     ("btime-negative", "btime -5\n"), ("btime-zero", "btime 0\n"),
                     ("btime-two-fields", "btime 1 2\n")]:
        C(id, A, lambda d, stat=stat: fake_proc(d / "proc", stat), names="{d}/proc/stat")
    C("defrag-mode-7", A, lambda d: (fake_proc(d / "proc"), put(d / "proc/sys/vm/defrag_mode", "7\n")),
      names="{d}/proc/sys/vm/defrag_mode")
    C("kmsg-devzero", [*A[:6], "/dev/zero", *A[7:]], names="/dev/zero", isolate=True)
    C("kmsg-is-a-folder", [*A[:6], "{d}", *A[7:]], names="{d}")
    C("kmsg-missing", [*A[:6], "{d}/nokmsg", *A[7:]], exit=(0,), check=_collected)
    C("vmstat-devzero", A, lambda d: (fake_proc(d / "proc"), (d / "proc/vmstat").unlink(),
                                      (d / "proc/vmstat").symlink_to("/dev/zero")),
      names="{d}/proc/vmstat", isolate=True)
    for opt, val in [("--interval", "-1"), ("--interval", "nan"), ("--count", "0"), ("--count", "-3"),
                     ("--duration", "nan"), ("--duration", "-1"), ("--interval", "inf")]:
        C(f"{opt[2:]}{val}", [*A, opt, val], names=opt)
    C("out-is-file", A, lambda d: (fake_proc(d / "proc"), put(d / "out", "keep")), names="{d}/out",
      check=_unchanged("out"))
    C("proc-root-missing", A, lambda d: None, names="{d}/proc")
    return c


def _unchanged(rel: str):
    def check(d, r):
        assert (d / rel).read_text() == "keep", f"{rel} was changed"
    return check


def _no_out_dir(d, r):
    assert not (d / "out").exists(), "an empty or half bundle was left behind"


def _collected(d, r):
    from parsers.bundle import load
    with load(d / "out") as b:
        assert len(b.snapshots) == 1 and b.snapshots[0].net_snmp["Icmp"]["OutErrors"] == 173507


def _model_cases() -> list[Case]:
    c = []
    S = ["model", "simulate"]
    for id, args, opt in [("seed-2e70", ["--seed", str(2**70)], "--seed"), ("seed-negative", ["--seed", "-1"], "--seed"),
                          ("hours-1e9", ["--hours", "1e9"], "--hours"), ("hours-0", ["--hours", "0"], "--hours"),
                          ("hours-negative", ["--hours", "-1"], "--hours"), ("hours-nan", ["--hours", "nan"], "--hours"),
                          ("hours-inf", ["--hours", "inf"], "--hours"),
                          ("param-nan", ["--param", "net_rate=nan"], "--param"),
                          ("param-inf", ["--param", "net_rate=inf"], "--param"),
                          ("param-abc", ["--param", "net_rate=abc"], "--param"),
                          ("param-unknown", ["--param", "bogus=1"], "--param"),
                          ("param-no-equals", ["--param", "net_rate"], "--param"),
                          ("param-fraction-2", ["--param", "net_burst_frac=2"], "--param"),
                          ("param-rate-1e12", ["--param", "net_rate=1e12"], "--param"),
                          ("param-order-11", ["--param", "atomic_high_order=11"], "--param"),
                          ("scenario-unknown", ["--scenario", "bogus"], "--scenario"),
                          ("policy-unknown", ["--policy", "bogus"], "--policy"),
                          ("scenario-newline", ["--scenario", "a\nb"], "--scenario")]:
        c.append(Case(f"simulate-{id}", S + args, names=opt, out=True))
    c.append(Case("simulate-emit-over-file", S + ["--emit", "{d}/f", "--scenario", "lab", "--hours", "0.001"],
                  lambda d: put(d / "f", "keep"), names="--emit", check=_unchanged("f")))
    c.append(Case("simulate-emit-over-folder", S + ["--emit", "{d}/f", "--scenario", "lab", "--hours", "0.001"],
                  lambda d: put(d / "f/precious.txt", "keep"), names="--emit",
                  check=_unchanged("f/precious.txt")))
    c.append(Case("simulate-tiny", S + ["--scenario", "lab", "--hours", "0.003", "--seed", str(2**32 - 1)],
                  exit=(0,), out=True))
    C = ["model", "calibrate", str(BUNDLE), "--evals", "1"]
    for id, args, opt in [("seeds-0", ["--seeds", "0"], "--seeds"), ("seeds-1e6", ["--seeds", "1000000"], "--seeds"),
                          ("fit-unknown", ["--fit", "bogus_param"], "--fit"),
                          ("fit-no-start", ["--fit", "pagecache_rate"], "--fit"),
                          ("fix-abc", ["--fix", "net_rate=abc"], "--fix"), ("fix-nan", ["--fix", "net_rate=nan"], "--fix"),
                          ("fix-unknown", ["--fix", "bogus=1"], "--fix"),
                          ("fix-and-fit", ["--fix", "net_rate=1000", "--fit", "net_rate"], "--fix"),
                          ("budget-negative", ["--budget", "-1"], "--budget"), ("budget-nan", ["--budget", "nan"], "--budget"),
                          ("evals-0", ["--evals", "0"], "--evals"), ("seed-2e70", ["--seed", str(2**70)], "--seed")]:
        c.append(Case(f"calibrate-{id}", C + args, names=opt, out=True))
    c.append(Case("calibrate-one-snapshot", ["model", "calibrate", "{d}/b"],
                  lambda d: (copy_bundle(d / "b"), [shutil.rmtree(p) for p in sorted((d / "b/snapshots").iterdir())[1:]]),
                  names="{d}/b"))
    c.append(Case("calibrate-plain-log", ["model", "calibrate", str(LOG)], names=str(LOG)))
    W = ["model", "whatif", str(BUNDLE), "--params", "{d}/p.json"]
    for id, text, word in [("list", "[1,2,3]", "object"), ("str-value", '{"net_rate": "abc"}', "net_rate"),
                           ("nan-value", '{"net_rate": NaN}', "net_rate"), ("bool-value", '{"net_rate": true}', "net_rate"),
                           ("unknown", '{"bogus": 1}', "bogus"), ("empty-object", "{}", "no parameters"),
                           ("not-json", "{net_rate: 1", "JSON"), ("params-int", '{"params": 5}', "object"),
                           ("nested", nested(100_000), "params"), ("negative-rate", '{"net_rate": -5}', "net_rate"),
                           ("huge", '{"net_rate": 1' + "0" * 400 + "}", "net_rate")]:
        c.append(Case(f"whatif-params-{id}", W, lambda d, text=text: put(d / "p.json", text),
                      names="{d}/p.json", out=True, check=_error_mentions(word)))
    c.append(Case("whatif-params-missing", W, names="{d}/p.json"))
    for id, args, opt in [("seeds-0", ["--seeds", "0"], "--seeds"), ("policy-unknown", ["--policy", "x"], "--policy"),
                          ("budget-nan", ["--budget", "nan"], "--budget")]:
        c.append(Case(f"whatif-{id}", ["model", "whatif", str(BUNDLE)] + args, names=opt))
    # typer's own usage errors stay exit 2 (README): no traceback, the option named
    c.append(Case("usage-seed-not-int", S + ["--seed", "abc"], exit=(2,), names="--seed"))
    c.append(Case("usage-format-unknown", ["parse", str(LOG), "-f", "xml"], exit=(2,), names="--format"))
    return c


def _fleet_cases() -> list[Case]:
    c = []

    def ingest(d, ds="ds"):
        from typer.testing import CliRunner
        from analyzer.cli import app
        r = CliRunner().invoke(app, ["fleet", "ingest", str(BUNDLE), "--dataset", str(d / ds), "--workers", "1"])
        assert r.exit_code == 0, r.stderr

    c.append(Case("fleet-ingest-good-and-bad", ["fleet", "ingest", str(BUNDLE), "{d}/bad", "--dataset", "{d}/ds",
                                                "--workers", "1"],
                  lambda d: copy_bundle(d / "bad", {"defrag_mode": "yes"}), exit=(3,)))  # the good one landed, the bad one is listed
    c.append(Case("fleet-ingest-missing", ["fleet", "ingest", "{d}/nope", "--dataset", "{d}/ds"], names="{d}/nope"))
    c.append(Case("fleet-report-since-garbage", ["fleet", "report", "--dataset", "{d}/ds", "--since", "not-a-date"],
                  ingest, names="--since"))
    c.append(Case("fleet-report-top-negative", ["fleet", "report", "--dataset", "{d}/ds", "--top", "-1"],
                  ingest, names="--top"))
    c.append(Case("fleet-validate-not-a-dataset", ["fleet", "validate", "--dataset", "{d}/nope", "--before-kernel",
                                                   "6.16", "--after-kernel", "7.2"], names="{d}/nope"))
    c.append(Case("fleet-report-not-a-dataset", ["fleet", "report", "--dataset", "{d}"], names="{d}"))
    c.append(Case("fleet-quote-in-path", ["fleet", "report", "--dataset", "{d}/it's", "-f", "json"],
                  lambda d: ingest(d, "it's"), exit=(0,)))
    for id, sql in [("copy-to", "COPY (SELECT 1) TO '{d}/leak.csv'"),
                    ("export-database", "EXPORT DATABASE '{d}/leak'"),
                    ("attach", "ATTACH '{d}/leak.duckdb' AS x"),
                    ("read-csv-passwd", "SELECT * FROM read_csv('/etc/passwd')")]:
        c.append(Case(f"fleet-query-{id}", ["fleet", "query", sql, "--dataset", "{d}/ds"], ingest,
                      check=_nothing_written))
    return c


def _nothing_written(d, r):
    left = [p.name for p in d.iterdir() if p.name.startswith("leak")]
    assert not left, left


def _lab_cases() -> list[Case]:
    c = []
    K = ["--kernel", "{d}/vmlinuz"]

    def kernel(d):
        put(d / "vmlinuz", b"\0" * 100)

    for cmd in ("run", "check"):
        for id, args, opt in [("memory-0", ["--memory", "0"], "--memory"),
                              ("memory-huge", ["--memory", str(1 << 40)], "--memory"),
                              ("seconds-0", ["--seconds", "0"], "--seconds"),
                              ("seconds-negative", ["--seconds", "-5"], "--seconds"),
                              ("accel-unknown", ["--accel", "bogus"], "--accel")]:
            c.append(Case(f"lab-{cmd}-{id}", ["lab", cmd, *K, *args], kernel, names=opt))
        c.append(Case(f"lab-{cmd}-kernel-missing", ["lab", cmd, "--kernel", "{d}/nope"], names="--kernel"))
        c.append(Case(f"lab-{cmd}-kernel-dir", ["lab", cmd, "--kernel", "{d}"], names="--kernel"))
        c.append(Case(f"lab-{cmd}-out-is-file", ["lab", cmd, *K, "--out", "{d}/vmlinuz"], kernel, names="--out"))
    c.append(Case("lab-run-out-over-folder", ["lab", "run", *K, "--out", "{d}/home"],
                  lambda d: (kernel(d), put(d / "home/precious.txt", "keep")), names="--out",
                  check=_unchanged("home/precious.txt")))
    c.append(Case("lab-check-out-over-folder", ["lab", "check", *K, "--out", "{d}/home"],
                  lambda d: (kernel(d), put(d / "home/defrag1/precious.txt", "keep")), names="--out",
                  check=_unchanged("home/defrag1/precious.txt")))
    c.append(Case("lab-run-defrag-2", ["lab", "run", *K, "--defrag-mode", "2"], kernel, names="--defrag-mode"))
    return c


def cases(long: bool = False) -> list[Case]:
    every = (_log_cases(long) + _proc_cases(long) + _gfp_cases() + _bundle_cases(long) + _tar_cases(long)
             + _validate_cases(long) + _collect_cases() + _model_cases() + _fleet_cases() + _lab_cases())
    return [c for c in every if long or not c.long]


def expand(args: list[str], d: Path) -> list[str]:
    return [a.replace("{d}", str(d)) for a in args]


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(__doc__)
        return 2
    out = Path(argv[0])
    long = "--long" in argv
    for case in cases(long):
        d = out / case.id
        d.mkdir(parents=True, exist_ok=True)
        if case.build:
            case.build(d)
        line = " ".join(repr(a) if (" " in a or not a or not a.isprintable()) else a
                        for a in expand(case.argv, d))
        notes = [f"known: {case.owner}"] if case.owner else []
        notes += [f"with {k.split(':')[1]}={v} (the tests lower the limit in process)"
                  for k, v in case.patch.items()]
        print(f"{case.id}\texit {'/'.join(map(str, case.exit))}\tmmtriage {line}"
              + "".join(f"\t({n})" for n in notes))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
