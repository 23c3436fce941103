"""``mmtriage collect``: snapshot a live host's /proc and kernel log into a bundle.

Read only: it opens /proc files and /dev/kmsg for reading and never writes to /proc or /sys.
Each snapshot is written to a hidden folder and renamed into ``snapshots/`` when complete, and
kernel log records are appended as they are read, so a collect stopped at any moment (Ctrl-C)
leaves a valid bundle. /dev/kmsg records keep their sequence numbers; a gap (the ring buffer
overwrote records before we read them) is counted in meta.json.
"""
from __future__ import annotations

import errno
import json
import os
import platform
import shutil
import socket
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

from analyzer.output import write_atomic

PROC_FILES = {"vmstat": "vmstat", "pagetypeinfo": "pagetypeinfo", "zoneinfo": "zoneinfo",
              "buddyinfo": "buddyinfo", "meminfo": "meminfo", "slabinfo": "slabinfo",
              "net_snmp": "net/snmp"}


def _read(p: Path) -> bytes | None:
    try:
        with open(p, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def _utc_name(t: datetime) -> str:
    return t.strftime("%Y%m%dT%H%M%SZ")


class KmsgReader:
    """Non-blocking reader of /dev/kmsg that remembers the last sequence number."""

    def __init__(self, path: str = "/dev/kmsg"):
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self.last_seq: int | None = None
        self.lost = 0

    def read_new(self) -> list[bytes]:
        out = []
        while True:
            try:
                rec = os.read(self.fd, 8192)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EPIPE:  # overwritten before we read it; next read resyncs
                    continue
                if e.errno == errno.EINTR:
                    continue
                raise
            if not rec:
                break
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
    out.mkdir(parents=True, exist_ok=True)
    (out / "snapshots").mkdir(exist_ok=True)
    live = Path(proc_root) == Path("/proc")
    btime = None
    stat = _read(proc_root / "stat")
    if stat:
        for line in stat.decode().splitlines():
            if line.startswith("btime "):
                btime = datetime.fromtimestamp(int(line.split()[1]), timezone.utc)
    defrag = _read(proc_root / "sys/vm/defrag_mode")
    boot_id = _read(proc_root / "sys/kernel/random/boot_id")
    release = (_read(proc_root / "sys/kernel/osrelease") or b"").decode().strip() or \
        (platform.release() if live else None)
    host = (_read(proc_root / "sys/kernel/hostname") or b"").decode().strip() or socket.gethostname()
    meta = {
        "host": host,
        "kernel_release": release,
        "defrag_mode": int(defrag) if defrag and defrag.strip().isdigit() else None,
        "boot_id": boot_id.decode().strip() if boot_id else None,
        "boot_time": btime.strftime("%Y-%m-%dT%H:%M:%SZ") if btime else None,
        "captured_from": f"mmtriage collect of {proc_root}" + (" (live host)" if live else ""),
        "collector": {"interval_s": interval, "started": _now_iso(), "snapshots": 0,
                      "kmsg_lost": 0, "log_source": None, "missing": []},
    }
    if defrag is not None:
        (out / "proc/sys/vm").mkdir(parents=True, exist_ok=True)
        write_atomic(out / "proc/sys/vm/defrag_mode", defrag)
    if live:
        u = platform.uname()
        write_atomic(out / "uname", f"{u.system} {u.node} {u.release} {u.version} {u.machine}\n")
    write_atomic(out / "meta.json", json.dumps(meta, indent=1) + "\n")

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

    deadline = time.monotonic() + duration if duration else None
    n = 0
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
    finally:
        _drain_log(reader, log_path)
        if reader is not None:
            meta["collector"]["kmsg_lost"] = reader.lost
            reader.close()
        meta["collector"]["finished"] = _now_iso()
        write_atomic(out / "meta.json", json.dumps(meta, indent=1) + "\n")
    return meta


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _snapshot(out: Path, proc_root: Path, t: datetime, meta: dict) -> None:
    name = _utc_name(t)
    final = out / "snapshots" / name
    if final.exists():  # two snapshots in one second: keep the first
        return
    tmp = out / "snapshots" / f".{name}.tmp"
    tmp.mkdir(parents=True, exist_ok=True)
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


def _drain_log(reader: KmsgReader | None, log_path: Path | None) -> None:
    if log_path is None:
        return
    if reader is not None:
        recs = reader.read_new()
        if recs:
            with open(log_path, "ab") as fh:
                fh.writelines(recs)
        elif not log_path.exists():
            log_path.touch()
        return
    try:
        data = subprocess.run(["dmesg"], capture_output=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return
    write_atomic(log_path, data)
