"""Host bundles (product.md §3): a directory, a tarball of one, an sosreport, or a bare log.

::

    meta.json                      optional {"host", "kernel_release", "defrag_mode", "boot_time", ...}
    dmesg | dmesg.txt | kern.log | messages | journal.json | kmsg      kernel logs
    snapshots/<UTC ISO 8601 time>/{vmstat,pagetypeinfo,zoneinfo,buddyinfo,meminfo,slabinfo,net_snmp}
    proc/sys/vm/defrag_mode, uname                                    optional

Tarballs are extracted into a private temporary directory in two passes: the first reads only
the tar headers and refuses the archive (nothing written yet) for an absolute or ``..`` path, a
link out, more than ``MAX_MEMBERS`` members, a member or a total over its limit, or less free
space than the files need; the second writes only the files the loader reads (logs, meta.json,
snapshots, the sosreport paths). The temporary directory is removed on every exit path: close(),
an exception, Ctrl-C, SIGTERM/SIGHUP while it exists, and interpreter exit.

meta.json is checked against ``meta_model()`` on load (see docs/contract.md): a field of the wrong
type or out of range is an error naming the file, its line and the field; an unreadable
``boot_time`` string is a note and the boot time is unknown.
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import json
import lzma
import math
import os
import re
import shutil
import signal
import stat
import tarfile
import tempfile
import threading
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Optional

from parsers import (buddyinfo, meminfo, netdev, pagetypeinfo, slabinfo, snmp, softnet, vmstat,
                     zoneinfo)
from parsers.dmesg import ParseResult, RawJson, parse_log
from parsers.errors import BundleError, ParseError
from parsers.logio import open_binary

LOG_NAMES = ("dmesg", "dmesg.txt", "kern.log", "messages", "journal.json", "journal.export",
             "kmsg", "syslog")
SOS_LOGS = ("sos_commands/kernel/dmesg", "sos_commands/kernel/dmesg_-T", "var/log/kern.log",
            "var/log/messages")
SNAP_FILES = {"vmstat": vmstat, "pagetypeinfo": pagetypeinfo, "zoneinfo": zoneinfo,
              "buddyinfo": buddyinfo, "meminfo": meminfo, "slabinfo": slabinfo, "net_snmp": snmp,
              "net_netstat": snmp, "net_dev": netdev, "softnet_stat": softnet}
# where an sosreport keeps the network files under proc/
SOS_NAMES = {"net_snmp": "net/snmp", "net_netstat": "net/netstat", "net_dev": "net/dev",
             "softnet_stat": "net/softnet_stat"}
MAX_MEMBERS = 100_000
MAX_BYTES = 4 << 30            # all files written from one tarball
MAX_MEMBER_BYTES = 2 << 30     # one log file
MAX_ARCHIVE_BYTES = 16 << 30   # all members, written or not (bounds the reading)
MAX_SMALL_BYTES = 64 << 20     # a /proc snapshot file, uname, hostname: real ones are < 1 MiB
MAX_META_BYTES = 1 << 20
MAX_META_DEPTH = 32
FREE_MARGIN = 256 << 20        # free space left in the temporary directory's filesystem
COMPRESSED_SUFFIXES = (".gz", ".xz", ".bz2", ".zst")
_SNAP_TIME = re.compile(r"^(\d{8}T\d{6}(?:\.\d+)?Z|\d{4}-\d\d-\d\dT\d\d[:_-]?\d\d[:_-]?\d\d(?:\.\d+)?Z?)$")


def parse_snapshot_time(name: str) -> datetime | None:
    if not _SNAP_TIME.match(name):
        return None
    s = name.rstrip("Z")
    for fmt in ("%Y%m%dT%H%M%S", "%Y%m%dT%H%M%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f",
                "%Y-%m-%dT%H-%M-%S", "%Y-%m-%dT%H_%M_%S"):
        try:
            return datetime.strptime(s, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    return None


PAGE_SIZES = (4096, 16384, 65536)   # the base page sizes Linux builds with (arm64 has all three)


def page_size(meminfo: dict | None, zoneinfo: list | None, vmstat: dict | None = None) -> int:
    """The host's page size in bytes, which no /proc file states: MemFree (kB) over the zones'
    free page count (vmstat's without zoneinfo) where that lands within 10 % of a size Linux
    has (the two files are read moments apart); else from the huge page size (a PMD maps
    PAGE_SIZE / 8 pages, so it is PAGE_SIZE**2 / 8); else 4 KiB. Some hosts' meminfo does not
    add up to their zones (a 6.18 VM here shows 24 GB MemFree over 4 GB of zone pages): the
    ratio is no evidence there and the huge page size decides."""
    mem = meminfo or {}
    pages = sum((z.stats.get("nr_free_pages", z.pages_free) or 0) for z in zoneinfo or ())
    if not pages and vmstat:
        pages = vmstat.get("nr_free_pages") or 0
    if (mem.get("MemFree") or 0) > 0 and pages > 0:
        ratio = math.log2(mem["MemFree"] * 1024 / pages)
        near = min(PAGE_SIZES, key=lambda s: abs(math.log2(s) - ratio))
        if abs(math.log2(near) - ratio) <= math.log2(1.1):
            return near
    by_pmd_kb = {pmd_kb(s): s for s in PAGE_SIZES}
    return by_pmd_kb.get(mem.get("Hugepagesize"), 4096)


def pmd_kb(page_size: int) -> int:
    """The huge (PMD) page size in kB for a page size: a PMD maps PAGE_SIZE / 8 pages."""
    return page_size * page_size // 8 // 1024


def pageblock_order(page_size: int, pagetypeinfo=None) -> int:
    """The order pagetypeinfo reports, else the PMD order of the page size (PAGE_SHIFT - 3:
    9 for 4 KiB, 11 for 16 KiB, 13 for 64 KiB pages)."""
    if pagetypeinfo is not None and pagetypeinfo.pageblock_order:
        return pagetypeinfo.pageblock_order
    return page_size.bit_length() - 1 - 3


@dataclass
class Snapshot:
    time: datetime
    path: Path
    vmstat: dict | None = None
    pagetypeinfo: pagetypeinfo.PageTypeInfo | None = None
    zoneinfo: list | None = None
    buddyinfo: list | None = None
    meminfo: dict | None = None
    slabinfo: dict | None = None
    net_snmp: dict | None = None
    net_netstat: dict | None = None
    net_dev: dict | None = None
    softnet_stat: list | None = None
    defrag_mode: int | None = None   # /proc/sys/vm/defrag_mode at this snapshot, if recorded

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def page_size(self) -> int:
        return page_size(self.meminfo, self.zoneinfo, self.vmstat)

    @property
    def pageblock_order(self) -> int:
        return pageblock_order(self.page_size, self.pagetypeinfo)


@dataclass
class Bundle:
    path: str
    root: Path | None
    host: str
    meta: dict
    kernel_release: dict          # {"value", "source"}
    defrag_mode: dict             # {"value", "source"}
    boot_time: datetime | None
    logs: list[str]
    snapshots: list[Snapshot]
    log: ParseResult
    notes: list[str] = field(default_factory=list)
    _tmp: str | None = None

    def close(self) -> None:
        if self._tmp:
            _remove_tmp(self._tmp)
            self._tmp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def event_wall_time(self, ev: dict) -> datetime | None:
        """UTC time of an event: its own wall stamp, else boot_time + monotonic seconds."""
        if ev.get("time_wall"):
            try:
                t = datetime.fromisoformat(ev["time_wall"].replace("Z", "+00:00"))
                return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
            except ValueError:
                pass
        if ev.get("time_s") is not None and self.boot_time is not None:
            try:
                return self.boot_time + timedelta(seconds=ev["time_s"])
            except (OverflowError, ValueError, TypeError):
                return None  # a stamp no calendar holds (1e20 s after boot): no wall time
        return None

    def span_hours(self) -> float | None:
        """Hours the log covers (first to last stamp); None if it carries no stamps."""
        lg = self.log
        if lg.first_time_s is not None and lg.last_time_s is not None:
            return max(lg.last_time_s - lg.first_time_s, 0.0) / 3600
        if lg.first_time_wall and lg.last_time_wall:
            try:
                a = datetime.fromisoformat(lg.first_time_wall.replace("Z", ""))
                b = datetime.fromisoformat(lg.last_time_wall.replace("Z", ""))
                return max((b - a).total_seconds(), 0.0) / 3600
            except ValueError:
                return None
        return None


# -- temporary extraction space: removed on every exit path ---------------------------------
_LIVE_TMP: set[str] = set()
_TMP_LOCK = threading.Lock()
_SAVED_HANDLERS: dict = {}
_EXIT_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


def _on_signal(signum, frame):
    # SystemExit unwinds like Ctrl-C does: the with-blocks and except clauses remove the
    # extraction, and atexit removes what an unwinding missed.
    raise SystemExit(128 + signum)


def _make_tmp() -> str:
    tmp = tempfile.mkdtemp(prefix="mmtriage-")
    with _TMP_LOCK:
        _LIVE_TMP.add(tmp)
        # Catch SIGTERM/SIGHUP only while there is something to remove, only where no one
        # else asked for them, and only from the main thread (where Python allows it).
        if not _SAVED_HANDLERS and threading.current_thread() is threading.main_thread():
            for sig in _EXIT_SIGNALS:
                if signal.getsignal(sig) == signal.SIG_DFL:
                    _SAVED_HANDLERS[sig] = signal.signal(sig, _on_signal)
    return tmp


def _remove_tmp(tmp: str | None) -> None:
    if not tmp:
        return
    shutil.rmtree(tmp, ignore_errors=True)
    with _TMP_LOCK:
        _LIVE_TMP.discard(tmp)
        if not _LIVE_TMP and _SAVED_HANDLERS and \
                threading.current_thread() is threading.main_thread():
            for sig, old in _SAVED_HANDLERS.items():
                if signal.getsignal(sig) is _on_signal:
                    signal.signal(sig, old)
            _SAVED_HANDLERS.clear()


@atexit.register
def _remove_all_tmp() -> None:
    for tmp in list(_LIVE_TMP):
        shutil.rmtree(tmp, ignore_errors=True)
    _LIVE_TMP.clear()


# -- tarballs -------------------------------------------------------------------------------
def _member_kind(parts: tuple[str, ...]) -> str | None:
    """What the loader reads at this path inside a bundle (``log``, ``meta``, ``small``), or
    None: the file is not extracted. The bundle may sit at the top or in one top folder."""
    for rel in (parts, parts[1:]):
        if not rel:
            continue
        n = len(rel)
        if n == 1:
            name = rel[0]
            if name == "meta.json":
                return "meta"
            if name in ("uname", "hostname"):
                return "small"
            base = name
            for suf in COMPRESSED_SUFFIXES:
                if name.endswith(suf):
                    base = name[: -len(suf)]
                    break
            if base in LOG_NAMES:
                return "log"
        if "/".join(rel) in SOS_LOGS:
            return "log"
        if rel in (("etc", "hostname"), ("sos_commands", "kernel", "uname_-a"),
                   ("proc", "sys", "vm", "defrag_mode"), ("proc", "net", "snmp")):
            return "small"
        if n == 3 and rel[0] == "snapshots":
            return "small"
        if n == 2 and rel[0] == "proc" and rel[1] in SNAP_FILES:
            return "small"
    return None


def _kind_limit(kind: str) -> tuple[str, int]:
    if kind == "log":
        return "log", min(MAX_MEMBER_BYTES, MAX_BYTES)
    if kind == "meta":
        return "meta.json", MAX_META_BYTES
    return "/proc snapshot or small file", MAX_SMALL_BYTES


def _check_member(src: Path, member: tarfile.TarInfo) -> str | None:
    """Refuse an unsafe member; the kind of a member to extract, else None."""
    name = member.name
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in Path(name).parts:
        raise BundleError(str(src), 0, "member path escapes the bundle", name)
    if member.issym() or member.islnk():
        target = Path(name).parent / member.linkname if member.issym() else Path(member.linkname)
        if member.linkname.startswith("/") or ".." in Path(os.path.normpath(target)).parts:
            raise BundleError(str(src), 0, "link points outside the bundle",
                              f"{name} -> {member.linkname}")
        return None  # links inside are skipped too: bundles are plain files
    if not member.isfile():
        return None  # directories are made as needed; devices and FIFOs are never extracted
    kind = _member_kind(Path(name).parts)
    if kind is None:
        return None
    what, limit = _kind_limit(kind)
    if member.size > limit:
        raise BundleError(str(src), 0, f"member is {_mib(member.size)}; a {what} may have at most "
                                       f"{_mib(limit)}", name)
    return kind


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.0f} MiB" if n >= 1 << 20 else f"{n:,} bytes"


@contextlib.contextmanager
def _archive_errors(src: Path):
    """A damaged archive (truncated, corrupt, not a tarball) becomes one BundleError."""
    try:
        yield
    except tarfile.TarError as err:
        raise BundleError(str(src), 0, f"not a readable tarball: {err}") from err
    except (EOFError, lzma.LZMAError, zlib.error) as err:
        raise BundleError(str(src), 0, f"truncated or corrupt archive: {err}") from err
    except OSError as err:
        if err.filename:  # our own write failed (disk full...): say so, not "corrupt"
            raise
        raise BundleError(str(src), 0, f"truncated or corrupt archive: {err}") from err
    except ParseError:
        raise
    except Exception as err:  # zstandard raises its own ZstdError
        if type(err).__name__ == "ZstdError":
            raise BundleError(str(src), 0, f"truncated or corrupt archive: {err}") from err
        raise


class _Counted:
    """A read-only stream that counts the bytes it hands out."""

    def __init__(self, raw):
        self.raw = raw
        self.n = 0

    def read(self, size=-1):
        data = self.raw.read(size)
        self.n += len(data)
        return data


def _members(src: Path):
    """The archive's members as a stream, with the member-count limit. An archive that stops
    where a header should be, without the end-of-archive block, is truncated: tarfile alone
    would end the listing there and lose the rest without a word."""
    stream = open_binary(src)
    counted = _Counted(stream)
    count = 0
    try:
        with tarfile.open(fileobj=counted, mode="r|") as tar:
            for member in tar:
                count += 1
                if count > MAX_MEMBERS:
                    raise BundleError(str(src), 0, f"more than {MAX_MEMBERS:,} members")
                yield tar, member
            end = tar.offset + tarfile.BLOCKSIZE  # the zero block that ended the listing
            while counted.n < end and counted.read(end - counted.n):
                pass
            if counted.n < end:
                raise BundleError(str(src), 0, "truncated archive: it stops after "
                                               f"{count:,} members without the end-of-archive block")
    finally:
        stream.close()


def _safe_extract(src: Path, dest: Path) -> None:
    # Pass 1: headers only, nothing written. Every limit is checked here.
    total = seen = 0
    with _archive_errors(src):
        for _tar, member in _members(src):
            kind = _check_member(src, member)
            seen += member.size  # what would be read through, written or not
            if seen > MAX_ARCHIVE_BYTES:
                raise BundleError(str(src), 0, f"members add up to more than "
                                               f"{_mib(MAX_ARCHIVE_BYTES)} (decompression bomb?)")
            if kind is not None:
                total += member.size
                if total > MAX_BYTES:
                    raise BundleError(str(src), 0, f"more than {_mib(MAX_BYTES)} to unpack "
                                                   "(decompression bomb?)")
    free = shutil.disk_usage(dest).free
    if total > free - FREE_MARGIN:
        raise BundleError(str(src), 0, f"unpacking needs {_mib(total)} in {dest.parent} and "
                                       f"only {_mib(max(free - FREE_MARGIN, 0))} is free "
                                       "(set TMPDIR elsewhere)")
    # Pass 2: write the files the loader reads, checking again (the stream is read anew).
    written = 0
    with _archive_errors(src):
        for tar, member in _members(src):
            if _check_member(src, member) is None:
                continue
            written += member.size
            if written > total:
                raise BundleError(str(src), 0, "the archive changed while it was read")
            target = dest / Path(member.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            fh = tar.extractfile(member)
            if fh is None:
                continue
            with open(target, "wb") as out:
                shutil.copyfileobj(fh, out, 1 << 20)


def is_tarball(path: Path) -> bool:
    if not path.is_file():
        return False
    n = path.name.lower()
    if n.endswith((".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.xz", ".tar.bz2", ".tzst")):
        return True
    try:
        with open_binary(path) as s:
            head = s.read(512)
    except (ParseError, OSError, EOFError, lzma.LZMAError, zlib.error):
        return False  # the log reader says what is wrong with it
    except Exception as err:  # zstandard's ZstdError
        if type(err).__name__ == "ZstdError":
            return False
        raise
    return len(head) >= 262 and head[257:262] == b"ustar"


def _find_root(d: Path) -> Path:
    """A tarball usually wraps one top folder; descend into it."""
    entries = [e for e in d.iterdir() if not e.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return d


def _read_capped(p: Path, limit: int | None = None) -> bytes:
    """A whole small file, refused past ``limit`` (default ``MAX_SMALL_BYTES``: a /proc file
    is far smaller; a device or a runaway file is not read to the end)."""
    limit = MAX_SMALL_BYTES if limit is None else limit
    with open(p, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise BundleError(str(p), 0, f"larger than {_mib(limit)}; not a /proc snapshot or "
                                     "bundle file")
    return data


def _read_small(p: Path) -> str | None:
    if not p.is_file():
        return None
    try:
        return _read_capped(p).decode("utf-8", "replace").strip()
    except OSError:
        return None


def find_logs(root: Path) -> list[Path]:
    logs = []
    for name in LOG_NAMES:
        for cand in [root / name] + [root / (name + s) for s in COMPRESSED_SUFFIXES]:
            if cand.is_file():
                logs.append(cand)
    for rel in SOS_LOGS:
        cand = root / rel
        if cand.is_file() and cand not in logs:
            logs.append(cand)
    return logs


def load_snapshots(root: Path, strict: bool = True) -> list[Snapshot]:
    snaps = []
    sdir = root / "snapshots"
    if sdir.is_dir():
        for d in sorted(sdir.iterdir()):
            if not d.is_dir():
                continue
            t = parse_snapshot_time(d.name)
            if t is None:
                raise BundleError(str(d), 0, "snapshot folder name is not a UTC ISO 8601 time",
                                  d.name)
            snaps.append(_load_snapshot(d, t))
    elif (root / "proc").is_dir() and any((root / "proc" / n).is_file() for n in SNAP_FILES):
        # sosreport: one snapshot from proc/, taken when the report was made.
        t = datetime.fromtimestamp((root / "proc").stat().st_mtime, timezone.utc)
        snaps.append(_load_snapshot(root / "proc", t, sos=True))
    snaps.sort(key=lambda s: s.time)
    return snaps


def _load_snapshot(d: Path, t: datetime, sos: bool = False) -> Snapshot:
    snap = Snapshot(t, d)
    for name, mod in SNAP_FILES.items():
        p = d / name
        if sos and name in SOS_NAMES:
            p = d / SOS_NAMES[name]
        if not p.is_file():
            continue
        text = _read_capped(p).decode("utf-8", "replace")
        setattr(snap, name, mod.parse(text, str(p)))
    dm = d / "defrag_mode"
    if dm.is_file():
        raw = _read_capped(dm).decode("utf-8", "replace").strip()
        if raw not in ("0", "1"):
            raise BundleError(str(dm), 1, "defrag_mode is not 0 or 1", raw)
        snap.defrag_mode = int(raw)
    return snap


def load(path: str | Path, *, parse_logs: bool = True, raw_json: bool = False) -> Bundle:
    """Open a bundle, a tarball of one, an sosreport, or a single log file. ``raw_json``: see
    :func:`parsers.dmesg.parse_log` (for a caller that only writes the records out)."""
    p = Path(path)
    if str(path) == "-":
        return _single_log(str(path), parse_logs, raw_json)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise BundleError(str(path), 0, "no such file or directory") from None
    except OSError as err:
        raise BundleError(str(path), 0, err.strerror or str(err)) from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        # the log parser opens a file twice (sniff, then read): a device or a pipe cannot be
        # read that way, and /dev/zero would never end
        raise BundleError(str(path), 0, "not a regular file or a directory (give a stream "
                                        "on stdin as '-')")
    if stat.S_ISDIR(mode):
        return _load_dir(str(path), p, None, parse_logs, raw_json)
    if not is_tarball(p):
        return _single_log(str(path), parse_logs, raw_json)
    tmp = _make_tmp()
    try:  # BaseException: Ctrl-C and SIGTERM (SystemExit) remove the extraction too
        _safe_extract(p, Path(tmp))
        return _load_dir(str(path), _find_root(Path(tmp)), tmp, parse_logs, raw_json)
    except ParseError as err:
        _remove_tmp(tmp)
        if err.path.startswith(tmp + os.sep):
            # the extraction is gone: name the member inside the archive instead
            err.path = f"{path}[{os.path.relpath(err.path, tmp)}]"
        raise
    except OSError as err:
        _remove_tmp(tmp)
        if err.filename and str(err.filename).startswith(tmp + os.sep):
            raise BundleError(f"{path}[{os.path.relpath(err.filename, tmp)}]", 0,
                              f"cannot unpack: {err.strerror or err}") from None
        raise
    except BaseException:
        _remove_tmp(tmp)
        raise


def _single_log(path: str, parse_logs: bool, raw_json: bool = False) -> Bundle:
    res = parse_log(path, raw_json=raw_json) if parse_logs else ParseResult()
    kr = {"value": res.kernel_release, "source": "log"} if res.kernel_release else \
        {"value": _record_release(res), "source": "log (CPU: line)"} if _record_release(res) else \
        {"value": "unknown", "source": "unknown"}
    return Bundle(path, None, Path(path).name if path != "-" else "stdin", {}, kr,
                  {"value": None, "source": "unknown"}, None, [path], [], res)


def _record_release(res: ParseResult) -> str | None:
    for ev in res.events:
        if type(ev) is not RawJson and ev.get("kernel_release"):
            return ev["kernel_release"]
    return None


# -- meta.json ------------------------------------------------------------------------------
@functools.cache
def meta_model():
    """The pydantic model of meta.json, built on the first meta.json read: pydantic and the
    model's schema cost ~90 ms at import, which a plain log never needs."""
    from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

    class GroundTruth(BaseModel):
        """What a lab run or a model run knows happened (lab verdicts print these counts)."""
        model_config = ConfigDict(extra="allow", strict=True)
        failed_echo_replies: Optional[StrictInt] = Field(None, ge=0)
        echo_replies_attempted: Optional[StrictInt] = Field(None, ge=0)
        echo_requests_answered: Optional[StrictInt] = Field(None, ge=0)
        source: Optional[StrictStr] = Field(None, max_length=4096)

    class MetaJson(BaseModel):
        """meta.json. The fields mmtriage reads are checked; any other field is kept as it
        is. ``null`` is the same as a missing field."""
        model_config = ConfigDict(extra="allow", strict=True)
        host: Optional[StrictStr] = Field(None, max_length=255)
        kernel_release: Optional[StrictStr] = Field(None, max_length=64)  # __NEW_UTS_LEN
        defrag_mode: Optional[StrictInt] = Field(None, ge=0, le=1)        # 0 or 1
        boot_id: Optional[StrictStr] = Field(None, max_length=128)
        boot_time: Optional[StrictStr] = Field(None, max_length=64)       # ISO 8601
        captured_from: Optional[StrictStr] = None
        ground_truth: Optional[GroundTruth] = None

    return MetaJson


BOOT_TIME_RANGE = (datetime(1970, 1, 1, tzinfo=timezone.utc),
                   datetime(2200, 1, 1, tzinfo=timezone.utc))


def parse_boot_time(text: str) -> datetime | None:
    """meta.json's boot_time as an aware UTC time, or None if it is not one we can use."""
    try:
        bt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if bt.tzinfo is None:
        bt = bt.replace(tzinfo=timezone.utc)
    if not BOOT_TIME_RANGE[0] <= bt < BOOT_TIME_RANGE[1]:
        return None
    return bt.astimezone(timezone.utc)


_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"\s*:?|[{}\[\]]')


def _json_shape(text: str) -> tuple[int, dict[str, int]]:
    """The nesting depth of a (valid) JSON text and the line of each top-level key."""
    depth = top = 0
    lines: dict[str, int] = {}
    for m in _JSON_TOKEN.finditer(text):
        tok = m.group()
        if tok in "{[":
            depth += 1
            top = max(top, depth)
        elif tok in "}]":
            depth -= 1
        elif depth == 1 and tok.endswith(":"):
            key = tok[1:tok.rindex('"')]
            lines[key] = text.count("\n", 0, m.start()) + 1  # json keeps the last duplicate
    return top, lines


def load_meta(mp: Path) -> dict:
    """meta.json, checked against ``meta_model()``; every error names the file, line and
    field."""
    if not mp.is_file():
        raise BundleError(str(mp), 0, "meta.json is not a regular file")
    raw = _read_capped(mp, MAX_META_BYTES)
    text = raw.decode("utf-8-sig", "replace")  # a BOM from a Windows editor is harmless
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as err:
        raise BundleError(str(mp), err.lineno, f"bad JSON: {err.msg}") from None
    except RecursionError:
        raise BundleError(str(mp), 1, f"JSON nested too deep (at most {MAX_META_DEPTH} "
                                      "levels)") from None
    except ValueError as err:  # e.g. an integer of 5,000 digits
        raise BundleError(str(mp), 1, f"bad JSON: {err}") from None
    depth, key_lines = _json_shape(text)  # valid JSON now: the scan is linear
    if depth > MAX_META_DEPTH:
        raise BundleError(str(mp), 1, f"JSON nested {depth:,} levels deep (at most "
                                      f"{MAX_META_DEPTH})")
    if not isinstance(meta, dict):
        raise BundleError(str(mp), 1, f"meta.json must hold an object, not {_json_type(meta)}")
    from pydantic import ValidationError
    try:
        meta_model().model_validate(meta)
    except ValidationError as err:
        e = err.errors()[0]
        loc = ".".join(str(x) for x in e["loc"])
        line = key_lines.get(str(e["loc"][0]), 1) if e["loc"] else 1
        raise BundleError(str(mp), line, f"{loc}: {e['msg'].lower()}, got {_json_type(e['input'])}",
                          json.dumps(e["input"])[:80]) from None
    return meta


def _json_type(v) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def _load_dir(path: str, root: Path, tmp, parse_logs: bool, raw_json: bool = False) -> Bundle:
    notes: list[str] = []
    mp = root / "meta.json"
    meta = load_meta(mp) if mp.exists() else {}
    logs = find_logs(root)
    res = ParseResult()
    year = None
    bt = None
    if meta.get("boot_time"):
        bt = parse_boot_time(meta["boot_time"])
        if bt is None:
            notes.append(f"meta.json boot_time {meta['boot_time']!r} is not an ISO 8601 time "
                         f"between {BOOT_TIME_RANGE[0].year} and {BOOT_TIME_RANGE[1].year}: "
                         "boot time unknown")
        else:
            year = bt.year
    snaps = load_snapshots(root)
    if not logs and not snaps:
        raise BundleError(path, 0, "no kernel log (" + ", ".join(LOG_NAMES[:4]) + ", ...) and "
                                   "no snapshots/ found: not a host bundle")
    if year is None and snaps:
        year = snaps[0].time.year
    release_hint = meta.get("kernel_release")
    if parse_logs:
        for lp in logs:
            rel = str(lp.relative_to(root))
            r = parse_log(lp, source=rel, kernel_hint=release_hint, year=year, raw_json=raw_json)
            res.merge(r)
    # Kernel release and defrag_mode: meta.json, else files, else the log, else unknown.
    if meta.get("kernel_release"):
        kr = {"value": str(meta["kernel_release"]), "source": "meta.json"}
    else:
        uname = _read_small(root / "uname") or _read_small(root / "sos_commands/kernel/uname_-a")
        if uname and len(uname.split()) >= 3:
            kr = {"value": uname.split()[2], "source": "uname"}
        elif res.kernel_release:
            kr = {"value": res.kernel_release, "source": "log (Linux version line)"}
        elif _record_release(res):
            kr = {"value": _record_release(res), "source": "log (CPU: line)"}
        else:
            kr = {"value": "unknown", "source": "unknown"}
    if meta.get("defrag_mode") is not None:
        dm = {"value": meta["defrag_mode"], "source": "meta.json"}
    else:
        raw = _read_small(root / "proc/sys/vm/defrag_mode")
        if raw is None:
            dm = {"value": None, "source": "unknown"}
        elif raw in ("0", "1"):
            dm = {"value": int(raw), "source": "proc/sys/vm/defrag_mode"}
        else:
            raise BundleError(str(root / "proc/sys/vm/defrag_mode"), 1, "defrag_mode is not 0 or 1",
                              raw[:40])
    host = meta.get("host") or _read_small(root / "hostname") or \
        _read_small(root / "etc/hostname") or root.name
    if bt is None and meta.get("boot_time") is None:
        notes.append("no boot_time: log times could not be aligned with snapshot times")
    return Bundle(path, root, str(host), meta, kr, dm, bt, [str(x.relative_to(root)) for x in logs],
                  snaps, res, notes, tmp)
