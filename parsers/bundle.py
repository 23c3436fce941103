"""Host bundles (product.md §3): a directory, a tarball of one, an sosreport, or a bare log.

::

    meta.json                      optional {"host", "kernel_release", "defrag_mode", "boot_time", ...}
    dmesg | dmesg.txt | kern.log | messages | journal.json | kmsg      kernel logs
    snapshots/<UTC ISO 8601 time>/{vmstat,pagetypeinfo,zoneinfo,buddyinfo,meminfo,slabinfo,net_snmp}
    proc/sys/vm/defrag_mode, uname                                    optional

Tarballs are extracted into a private temporary directory with limits: no absolute or ``..``
paths, no links, devices or FIFOs, at most ``MAX_MEMBERS`` files and ``MAX_BYTES`` bytes
(decompression bombs stop there).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from parsers import (buddyinfo, meminfo, netdev, pagetypeinfo, slabinfo, snmp, softnet, vmstat,
                     zoneinfo)
from parsers.dmesg import ParseResult, parse_log
from parsers.errors import BundleError, ParseError
from parsers.logio import open_binary, sniff

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
MAX_BYTES = 4 << 30
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
            shutil.rmtree(self._tmp, ignore_errors=True)
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
            return self.boot_time + timedelta(seconds=ev["time_s"])
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


def _safe_extract(src: Path, dest: Path) -> None:
    stream = open_binary(src)
    total = 0
    count = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                count += 1
                if count > MAX_MEMBERS:
                    raise BundleError(str(src), 0, f"more than {MAX_MEMBERS} members")
                name = member.name
                if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or \
                        ".." in Path(name).parts:
                    raise BundleError(str(src), 0, "member path escapes the bundle", name)
                if member.issym() or member.islnk():
                    target = Path(name).parent / member.linkname if member.issym() else Path(member.linkname)
                    if member.linkname.startswith("/") or ".." in Path(os.path.normpath(target)).parts:
                        raise BundleError(str(src), 0, "link points outside the bundle",
                                          f"{name} -> {member.linkname}")
                    continue  # links inside are skipped too: bundles are plain files
                if member.isdir():
                    (dest / name).mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isfile():
                    continue  # devices and FIFOs are never extracted
                total += member.size
                if total > MAX_BYTES:
                    raise BundleError(str(src), 0, f"more than {MAX_BYTES >> 20} MiB unpacked "
                                                   "(decompression bomb?)")
                target = dest / name
                target.parent.mkdir(parents=True, exist_ok=True)
                fh = tar.extractfile(member)
                if fh is None:
                    continue
                with open(target, "wb") as out:
                    shutil.copyfileobj(fh, out, 1 << 20)
    except tarfile.TarError as err:
        raise BundleError(str(src), 0, f"not a readable tarball: {err}") from err
    except (EOFError, OSError) as err:
        raise BundleError(str(src), 0, f"truncated or corrupt archive: {err}") from err
    finally:
        stream.close()


def is_tarball(path: Path) -> bool:
    if not path.is_file():
        return False
    n = path.name.lower()
    if n.endswith((".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.xz", ".tar.bz2", ".tzst")):
        return True
    try:
        with open_binary(path) as s:
            head = s.read(512)
    except (ParseError, OSError, EOFError):
        return False
    return len(head) >= 262 and head[257:262] == b"ustar"


def _find_root(d: Path) -> Path:
    """A tarball usually wraps one top folder; descend into it."""
    entries = [e for e in d.iterdir() if not e.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return d


def _read_small(p: Path) -> str | None:
    try:
        return p.read_text(errors="replace").strip()
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
        text = p.read_bytes().decode("utf-8", "replace")
        setattr(snap, name, mod.parse(text, str(p)))
    dm = d / "defrag_mode"
    if dm.is_file():
        raw = dm.read_text(errors="replace").strip()
        if not raw.isdigit():
            raise BundleError(str(dm), 1, "defrag_mode is not a number", raw)
        snap.defrag_mode = int(raw)
    return snap


def load(path: str | Path, *, parse_logs: bool = True) -> Bundle:
    """Open a bundle, a tarball of one, an sosreport, or a single log file."""
    p = Path(path)
    tmp = None
    if str(path) != "-" and not p.exists():
        raise BundleError(str(path), 0, "no such file or directory")
    if str(path) != "-" and p.is_file() and is_tarball(p):
        tmp = tempfile.mkdtemp(prefix="mmtriage-")
        try:
            _safe_extract(p, Path(tmp))
        except Exception:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        root = _find_root(Path(tmp))
    elif str(path) == "-" or p.is_file():
        return _single_log(str(path), parse_logs)
    else:
        root = p
    try:
        return _load_dir(str(path), root, tmp, parse_logs)
    except Exception:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def _single_log(path: str, parse_logs: bool) -> Bundle:
    res = parse_log(path) if parse_logs else ParseResult()
    kr = {"value": res.kernel_release, "source": "log"} if res.kernel_release else \
        {"value": _record_release(res), "source": "log (CPU: line)"} if _record_release(res) else \
        {"value": "unknown", "source": "unknown"}
    return Bundle(path, None, Path(path).name if path != "-" else "stdin", {}, kr,
                  {"value": None, "source": "unknown"}, None, [path], [], res)


def _record_release(res: ParseResult) -> str | None:
    for ev in res.events:
        if ev.get("kernel_release"):
            return ev["kernel_release"]
    return None


def _load_dir(path: str, root: Path, tmp, parse_logs: bool) -> Bundle:
    meta: dict = {}
    notes: list[str] = []
    mp = root / "meta.json"
    if mp.is_file():
        try:
            meta = json.loads(mp.read_text(errors="replace"))
        except ValueError as err:
            raise BundleError(str(mp), getattr(err, "lineno", 0), f"bad JSON: {err.args[0]}") from err
        if not isinstance(meta, dict):
            raise BundleError(str(mp), 1, "meta.json must hold an object")
    logs = find_logs(root)
    res = ParseResult()
    year = None
    bt = None
    if meta.get("boot_time"):
        try:
            bt = datetime.fromisoformat(str(meta["boot_time"]).replace("Z", "+00:00"))
            if bt.tzinfo is None:
                bt = bt.replace(tzinfo=timezone.utc)
            year = bt.year
        except ValueError:
            notes.append(f"meta.json boot_time {meta['boot_time']!r} is not ISO 8601")
    snaps = load_snapshots(root)
    if year is None and snaps:
        year = snaps[0].time.year
    release_hint = meta.get("kernel_release")
    if parse_logs:
        for lp in logs:
            rel = str(lp.relative_to(root))
            r = parse_log(lp, source=rel, kernel_hint=release_hint, year=year)
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
        dm = {"value": int(meta["defrag_mode"]), "source": "meta.json"}
    else:
        raw = _read_small(root / "proc/sys/vm/defrag_mode")
        if raw is not None and raw.strip().isdigit():
            dm = {"value": int(raw), "source": "proc/sys/vm/defrag_mode"}
        else:
            dm = {"value": None, "source": "unknown"}
    host = meta.get("host") or _read_small(root / "hostname") or \
        _read_small(root / "etc/hostname") or root.name
    if bt is None and meta.get("boot_time") is None:
        notes.append("no boot_time: log times could not be aligned with snapshot times")
    return Bundle(path, root, str(host), meta, kr, dm, bt, [str(x.relative_to(root)) for x in logs],
                  snaps, res, notes, tmp)
