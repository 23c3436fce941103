"""``mmtriage collect``: snapshot a live host's /proc and kernel log into a bundle.

Read only: it opens /proc files and /dev/kmsg for reading and never writes to /proc or /sys.
Each snapshot is written to a hidden folder and renamed into ``snapshots/`` when complete, and
kernel log records are appended as they are read, so a collect stopped at any moment (Ctrl-C)
leaves a valid bundle. /dev/kmsg records keep their sequence numbers; a gap (the ring buffer
overwrote records before we read them) is counted in meta.json.

Everything it is given is checked before the bundle folder is made, so a bad option or an
unusable /proc (a btime no calendar holds, a "/proc file" that never ends) is one error line and
no empty bundle. Reads are bounded: a /proc file at ``MAX_PROC_BYTES``, a kmsg record at
``KMSG_RECORD`` bytes, one pass over the log device at ``MAX_KMSG_DRAIN`` bytes (more than the
largest kernel ring buffer, 32 MiB); a device whose first record is not a /dev/kmsg record
(``prio,seq,usec,flags;text``) is refused.
"""
from __future__ import annotations

import errno
import json
import math
import os
import re
import platform
import shutil
import socket
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

from analyzer.output import write_atomic
from parsers._util import MAX_PROC_BYTES, read_capped
from parsers.errors import ParseError

PROC_FILES = {"vmstat": "vmstat", "pagetypeinfo": "pagetypeinfo", "zoneinfo": "zoneinfo",
              "buddyinfo": "buddyinfo", "meminfo": "meminfo", "slabinfo": "slabinfo",
              "net_snmp": "net/snmp", "net_netstat": "net/netstat", "net_dev": "net/dev",
              "softnet_stat": "net/softnet_stat"}

KMSG_RECORD = 8192            # /dev/kmsg hands out one record per read, at most ~1 KiB of text
MAX_KMSG_DRAIN = 64 << 20     # per pass; the kernel's ring buffer is at most 32 MiB
BTIME_MAX = 7_258_118_400     # 2200-01-01: a boot time past it is not a clock reading
_KMSG_HEAD = re.compile(rb"^\d+,\d+,\d+,[^;,]*(?:,[^;]*)?;")


def _read(p: Path) -> bytes | None:
    try:
        with open(p, "rb") as fh:
            data = read_capped(fh)
    except OSError:
        return None
    if len(data) > MAX_PROC_BYTES:
        raise ParseError(str(p), 0, f"larger than {MAX_PROC_BYTES >> 20} MiB: not a /proc file")
    return data


def _btime(stat: bytes | None, path: Path) -> datetime | None:
    """/proc/stat's btime line as a UTC time; a value no clock gives is an error."""
    if not stat:
        return None
    for no, line in enumerate(stat.decode("utf-8", "replace").splitlines(), 1):
        if line.startswith("btime"):
            f = line.split()
            if len(f) != 2 or not f[1].isdigit() or not 0 < int(f[1]) < BTIME_MAX:
                raise ParseError(str(path), no, "btime is not a boot time (seconds since 1970, "
                                                "before 2200)", line[:80])
            return datetime.fromtimestamp(int(f[1]), timezone.utc)
    return None


def check_options(interval: float, count: int | None, duration: float | None) -> None:
    if not (math.isfinite(interval) and 0 <= interval <= 86400):
        raise ValueError(f"--interval {interval}: expected seconds between 0 and 86400")
    if count is not None and not 1 <= count <= 10_000_000:
        raise ValueError(f"--count {count}: expected a number of snapshots from 1")
    if duration is not None and not (math.isfinite(duration) and 0 < duration <= 366 * 86400):
        raise ValueError(f"--duration {duration}: expected seconds, more than 0 and at most "
                         "a year")


def _utc_name(t: datetime) -> str:
    return t.strftime("%Y%m%dT%H%M%SZ")


class KmsgReader:
    """Non-blocking reader of /dev/kmsg that remembers the last sequence number."""

    def __init__(self, path: str = "/dev/kmsg"):
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self.last_seq: int | None = None
        self.lost = 0
        self.checked = False
        self.capped = 0   # passes that stopped at MAX_KMSG_DRAIN

    def read_new(self) -> list[bytes]:
        out = []
        size = 0
        while True:
            if size >= MAX_KMSG_DRAIN:
                self.capped += 1  # the rest waits for the next pass: memory stays bounded
                break
            try:
                rec = os.read(self.fd, KMSG_RECORD)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EPIPE:  # overwritten before we read it; next read resyncs
                    continue
                if e.errno == errno.EINTR:
                    continue
                raise ParseError(self.path, 0, f"cannot read the kernel log: "
                                               f"{e.strerror or e}") from None
            if not rec:
                break
            if not self.checked:
                if not _KMSG_HEAD.match(rec):
                    raise ParseError(self.path, 0, "not a /dev/kmsg device: its first record "
                                                   "does not start 'prio,seq,usec,flags;'",
                                     rec[:40].decode("utf-8", "replace"))
                self.checked = True
            size += len(rec)
            head = rec.split(b";", 1)[0].split(b",")
            if len(head) >= 2 and head[1].isdigit():
                seq = int(head[1])
                if self.last_seq is not None:
                    if seq <= self.last_seq:
                        continue
                    self.lost += max(0, seq - self.last_seq - 1)
                self.last_seq = seq
            out.append(rec if rec.endswith(b"\n") else rec + b"\n")
        return out

    def close(self) -> None:
        os.close(self.fd)


def collect(out: Path, interval: float = 5.0, count: int | None = 1, duration: float | None = None,
            proc_root: Path = Path("/proc"), kmsg: str | None = "/dev/kmsg",
            progress=None) -> dict:
    """Write a bundle to ``out``. Returns meta.json's contents."""
    check_options(interval, count, duration)
    proc_root = Path(proc_root)
    if not proc_root.is_dir():
        raise ParseError(str(proc_root), 0, "--proc-root is not a directory")
    if out.exists() and not out.is_dir():
        raise ParseError(str(out), 0, "--out exists and is not a directory")
    live = proc_root == Path("/proc")
    btime = _btime(_read(proc_root / "stat"), proc_root / "stat")
    defrag = _read(proc_root / "sys/vm/defrag_mode")
    if defrag is not None and defrag.strip() not in (b"0", b"1"):
        raise ParseError(str(proc_root / "sys/vm/defrag_mode"), 1, "defrag_mode is not 0 or 1",
                         defrag[:40].decode("utf-8", "replace"))
    boot_id = _read(proc_root / "sys/kernel/random/boot_id")
    release = (_read(proc_root / "sys/kernel/osrelease") or b"").decode("utf-8", "replace").strip() \
        or (platform.release() if live else None)
    host = (_read(proc_root / "sys/kernel/hostname") or b"").decode("utf-8", "replace").strip() \
        or socket.gethostname()
    meta = {
        "host": host[:255],
        "kernel_release": release[:64] if release else None,
        "defrag_mode": int(defrag) if defrag is not None else None,
        "boot_id": boot_id.decode("utf-8", "replace").strip()[:128] if boot_id else None,
        "boot_time": btime.strftime("%Y-%m-%dT%H:%M:%SZ") if btime else None,
        "captured_from": f"mmtriage collect of {proc_root}" + (" (live host)" if live else ""),
        "collector": {"interval_s": interval, "started": _now_iso(), "snapshots": 0,
                      "kmsg_lost": 0, "log_source": None, "missing": []},
    }
    reader = None
    log_path = None
    if kmsg:
        try:
            reader = KmsgReader(kmsg)
            log_path = out / "kmsg"
            meta["collector"]["log_source"] = kmsg
        except OSError:
            reader = None
    if reader is None and live and shutil.which("dmesg"):
        log_path = out / "dmesg"
        meta["collector"]["log_source"] = "dmesg"
    for src in PROC_FILES.values():  # a runaway "/proc file" fails here, before any folder
        _read(proc_root / src)
    made = not out.exists()
    try:
        if reader is not None:
            # the first pass now: a device that is not /dev/kmsg fails before a folder exists
            first = reader.read_new()
        out.mkdir(parents=True, exist_ok=True)
        (out / "snapshots").mkdir(exist_ok=True)
        if defrag is not None:
            (out / "proc/sys/vm").mkdir(parents=True, exist_ok=True)
            write_atomic(out / "proc/sys/vm/defrag_mode", defrag)
        if live:
            u = platform.uname()
            write_atomic(out / "uname", f"{u.system} {u.node} {u.release} {u.version} {u.machine}\n")
        write_atomic(out / "meta.json", json.dumps(meta, indent=1) + "\n")
        if reader is not None:
            _append(log_path, first)
    except BaseException:
        if reader is not None:
            reader.close()
        if made:
            shutil.rmtree(out, ignore_errors=True)
        raise

    deadline = time.monotonic() + duration if duration else None
    n = 0
    removed = False
    try:
        while True:
            t = datetime.now(timezone.utc)
            _snapshot(out, proc_root, t, meta)
            n += 1
            meta["collector"]["snapshots"] = n
            _drain_log(reader, log_path)
            if progress:
                progress(n)
            if count is not None and n >= count:
                break
            if deadline is not None and time.monotonic() + interval > deadline:
                break
            time.sleep(interval)
    except Exception:
        if n == 0 and made:  # an error before the first snapshot: no empty bundle stays
            removed = True
            if reader is not None:
                reader.close()
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        if not removed:
            _finish(out, meta, reader, log_path)
    return meta


def _finish(out: Path, meta: dict, reader, log_path) -> None:
    try:
        _drain_log(reader, log_path)
    finally:
        if reader is not None:
            meta["collector"]["kmsg_lost"] = reader.lost
            if reader.capped:
                meta["collector"]["kmsg_capped_passes"] = reader.capped
            reader.close()
        meta["collector"]["finished"] = _now_iso()
        write_atomic(out / "meta.json", json.dumps(meta, indent=1) + "\n")


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _snapshot(out: Path, proc_root: Path, t: datetime, meta: dict) -> None:
    name = _utc_name(t)
    final = out / "snapshots" / name
    if final.exists():  # a second snapshot within the second: its name carries milliseconds
        name = t.strftime("%Y%m%dT%H%M%S.") + f"{t.microsecond // 1000:03d}Z"
        final = out / "snapshots" / name
        if final.exists():
            return
    tmp = out / "snapshots" / f".{name}.tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        for dest, src in PROC_FILES.items():
            data = _read(proc_root / src)
            if data is None:
                if dest not in meta["collector"]["missing"]:
                    meta["collector"]["missing"].append(dest)
                continue
            (tmp / dest).write_bytes(data)
        dm = _read(proc_root / "sys/vm/defrag_mode")
        if dm is not None:  # per snapshot, so that a change during the capture can be found
            (tmp / "defrag_mode").write_bytes(dm)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _append(log_path: Path, recs: list[bytes]) -> None:
    if recs:
        with open(log_path, "ab") as fh:
            fh.writelines(recs)
    elif not log_path.exists():
        log_path.touch()


def _drain_log(reader: KmsgReader | None, log_path: Path | None) -> None:
    if log_path is None:
        return
    if reader is not None:
        _append(log_path, reader.read_new())
        return
    try:
        data = subprocess.run(["dmesg"], capture_output=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return
    write_atomic(log_path, data)
