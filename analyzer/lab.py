"""The kernel lab: boot a kernel build in a small QEMU guest, recreate the bailout's conditions
(fragmented memory, a flood of GFP_ATOMIC skb allocations) and write what the guest saw as a
host bundle. The guest's userspace is busybox plus two static programs built from
``analyzer/lab_src`` (a fragmenter and an ICMP flood); snapshots and the kernel log come back
over the second serial port. The lab never touches this host's sysctls: everything runs in the
guest's own memory.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

SRC = Path(__file__).resolve().parent / "lab_src"
CACHE = Path(os.environ.get("MMTRIAGE_LAB_CACHE", Path.home() / ".cache" / "mmtriage" / "lab"))
BUSYBOX = ("/bin/busybox", "/usr/bin/busybox")
NEEDS = {"qemu-system-x86_64": "qemu-system-x86", "gcc": "gcc (and libc6-dev for -static)",
         "busybox": "busybox-static"}


class LabError(RuntimeError):
    pass


def _which_busybox() -> str:
    for b in BUSYBOX:
        if Path(b).exists():
            out = subprocess.run(["file", b], capture_output=True, text=True).stdout \
                if shutil.which("file") else "static"
            if "dynamically" not in out:
                return b
    raise LabError("a static busybox is needed: apt-get install busybox-static")


def check_tools() -> None:
    missing = [pkg for tool, pkg in NEEDS.items() if tool != "busybox" and not shutil.which(tool)]
    try:
        _which_busybox()
    except LabError:
        missing.append(NEEDS["busybox"])
    if missing:
        raise LabError("missing tools for the lab; install: apt-get install " + " ".join(
            m.split(" ")[0] for m in missing))


def _cpio(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A newc cpio archive: (name, mode, data); directories have mode 0o40755 and no data."""
    out = io.BytesIO()
    ino = 1
    for name, mode, data in entries + [("TRAILER!!!", 0, b"")]:
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{v:08x}" for v in (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0,
                                                     len(nb), 0))
        out.write(hdr.encode() + nb)
        out.write(b"\0" * ((4 - (110 + len(nb)) % 4) % 4))
        out.write(data)
        out.write(b"\0" * ((4 - len(data) % 4) % 4))
        ino += 1
    return out.getvalue()


def build_initramfs(progress=None) -> Path:
    """Build (once, cached by source hash) the guest's initramfs."""
    check_tools()
    bb = _which_busybox()
    h = hashlib.sha256()
    for f in sorted(SRC.iterdir()):
        h.update(f.name.encode() + f.read_bytes())
    h.update(Path(bb).read_bytes()[:4096])
    out = CACHE / f"initramfs-{h.hexdigest()[:12]}.cpio.gz"
    if out.exists():
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as td:
        bins = {}
        for prog in ("fragmenter", "pingflood"):
            exe = Path(td) / prog
            r = subprocess.run(["gcc", "-static", "-O2", "-o", str(exe), str(SRC / f"{prog}.c")],
                               capture_output=True, text=True)
            if r.returncode:
                raise LabError(f"{SRC / prog}.c: could not build it statically "
                               f"(apt-get install libc6-dev): {r.stderr.strip().splitlines()[-1:]}")
            bins[prog] = exe.read_bytes()
        entries = [(d, 0o40755, b"") for d in ("bin", "dev", "proc", "sys", "tmp")]
        entries += [("bin/busybox", 0o100755, Path(bb).read_bytes()),
                    ("init", 0o100755, (SRC / "init").read_bytes()),
                    ("fragmenter", 0o100755, bins["fragmenter"]),
                    ("pingflood", 0o100755, bins["pingflood"])]
        tmp = out.with_suffix(".tmp")
        tmp.write_bytes(gzip.compress(_cpio(entries), 6))
        os.replace(tmp, out)
    if progress:
        progress(f"initramfs built: {out}")
    return out


def _qemu(kernel: Path, initrd: Path, append: str, memory: int, workdir: Path, accel: str,
          timeout: float, stall: float, progress=None) -> tuple[bool, str]:
    console = workdir / "console.txt"
    data = workdir / "data.txt"
    for f in (console, data):
        f.write_bytes(b"")
    cmd = ["qemu-system-x86_64", "-m", str(memory), "-smp", "2", "-kernel", str(kernel),
           "-initrd", str(initrd), "-append", append, "-nodefaults", "-display", "none",
           "-no-reboot", "-serial", f"file:{console}", "-serial", f"file:{data}"]
    cmd += ["-accel", "kvm", "-cpu", "host"] if accel == "kvm" else ["-accel", "tcg", "-cpu", "max"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    t0 = time.time()
    last = 0
    try:
        while p.poll() is None:
            time.sleep(1)
            size = data.stat().st_size
            if size != last:
                last = size
            if time.time() - t0 > stall and data.stat().st_size == 0:
                p.kill()
                return False, f"no data from the guest within {stall:.0f} s ({accel})"
            if time.time() - t0 > timeout:
                p.kill()
                return False, f"the guest did not finish within {timeout:.0f} s"
        ok = b"@@DONE" in data.read_bytes()
        if ok:
            return True, ""
        tail = console.read_bytes().decode("utf-8", "replace").strip().splitlines()[-5:]
        qemu = p.stdout.read().decode("utf-8", "replace").strip()[-300:]
        return False, ("the guest stopped early" + (f"; qemu: {qemu}" if qemu else "")
                       + (f"; console: {' | '.join(tail)}" if tail else "")
                       + f"; data: {data.stat().st_size} bytes")
    finally:
        if p.poll() is None:
            p.kill()


def _parse_stream(data: str, start: datetime, out: Path) -> dict:
    info = {"uname": None, "defrag": None, "phases": [], "sysctls": {}, "alive": {}}
    lines = data.replace("\r", "").split("\n")
    i = 0
    while i < len(lines):
        ln = lines[i]
        if ln.startswith("@@UNAME "):
            info["uname"] = ln.split(" ", 1)[1].strip()
        elif ln.startswith("@@DEFRAG "):
            info["defrag"] = ln.split(" ", 1)[1].strip()
        elif ln.startswith("@@SYSCTL "):
            _, name, value = (ln.split(" ", 2) + [""])[:3]
            info["sysctls"][name] = value.strip()
        elif ln.startswith("@@ALIVE "):
            _, name, flag = ln.split()
            info["alive"][name] = flag == "1"
        elif ln.startswith("@@FILE "):
            _, phase, up, name = ln.split()
            j = i + 1
            while j < len(lines) and lines[j] != "@@END":
                j += 1
            t = start + timedelta(seconds=float(up))
            d = out / "snapshots" / t.strftime("%Y%m%dT%H%M%SZ")
            if d.exists() and not (d / name).exists():
                pass
            elif d.exists() and (d / name).exists():
                t += timedelta(seconds=1)
                d = out / "snapshots" / t.strftime("%Y%m%dT%H%M%SZ")
            d.mkdir(parents=True, exist_ok=True)
            (d / name).write_text("\n".join(lines[i + 1:j]) + "\n")
            if phase not in [p[0] for p in info["phases"]]:
                info["phases"].append((phase, d.name))
            i = j
        elif ln.startswith("@@DMESG"):
            j = i + 1
            while j < len(lines) and lines[j] != "@@END":
                j += 1
            (out / "dmesg").write_text("\n".join(lines[i + 1:j]) + "\n")
            i = j
        i += 1
    return info


def run(kernel: str | Path, defrag_mode: int = 1, memory: int = 1536, seconds: int = 40,
        out: str | Path | None = None, nsock: int = 16, payload: int = 1400, reserve_mb: int = 48,
        rcvbuf: int = 16 << 20, accel: str = "auto", timeout: float = 900,
        progress=None, sysctls: dict | None = None, mid_snapshot: int | None = None) -> dict:
    """``mid_snapshot``: seconds into the flood of the snapshot taken during it (default half
    the flood; 0: none)."""
    kernel = Path(kernel)
    if not kernel.is_file():
        raise LabError(f"{kernel}: no such kernel image")
    initrd = build_initramfs(progress)
    out = Path(out or f"lab-{kernel.name}-defrag{defrag_mode}")
    mid = seconds // 2 if mid_snapshot is None else mid_snapshot
    append = (f"console=ttyS0 quiet panic=-1 mmtriage.defrag={defrag_mode} "
              f"mmtriage.seconds={seconds} mmtriage.nsock={nsock} mmtriage.payload={payload} "
              f"mmtriage.reserve={reserve_mb} mmtriage.rcvbuf={rcvbuf} mmtriage.midsnap={mid}"
              + (" mmtriage.sysctl=" + ",".join(f"{k}:{v}" for k, v in sysctls.items())
                 if sysctls else ""))
    tries = ["kvm", "tcg"] if accel == "auto" else [accel]
    if "kvm" in tries and not os.access("/dev/kvm", os.R_OK | os.W_OK):
        tries = ["tcg"]
    tries.append(tries[-1])  # one more go on the last accelerator: a guest can die by chance
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="mmtriage-lab-") as td:
        wd = Path(td)
        used = None
        reason = ""
        for acc in tries:
            if progress:
                progress(f"booting {kernel.name} under {acc} (defrag_mode={defrag_mode})")
            start = datetime.now(timezone.utc).replace(microsecond=0)
            ok, reason = _qemu(kernel, initrd, append, memory, wd, acc, timeout,
                               stall=60 if acc == "kvm" else 240, progress=progress)
            if ok:
                used = acc
                break
            if progress:
                progress(f"{acc}: {reason}; falling back" if acc != tries[-1] else reason)
        if used is None:
            raise LabError(f"{kernel}: the guest did not complete: {reason}")
        tmp = out.with_name(f".{out.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        info = _parse_stream((wd / "data.txt").read_text(errors="replace"), start, tmp)
        wall = time.time() - t0
        release = info["uname"] or "unknown"
        (tmp / "uname").write_text(f"Linux lab {release} #1 SMP x86_64 GNU/Linux\n")
        meta = {"host": f"lab-{release}-defrag{defrag_mode}", "kernel_release": release,
                "defrag_mode": int(info["defrag"]) if (info["defrag"] or "").isdigit() else None,
                "boot_time": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "captured_from": f"mmtriage lab run: {kernel} in a {memory} MiB, 2-vCPU QEMU "
                                 f"({used.upper()}) guest; one mlocked page per pageblock, then a "
                                 f"{seconds} s loopback ICMP flood with unread replies",
                "workload": {"seconds": seconds, "nsock": nsock, "payload": payload,
                             "reserve_mb": reserve_mb, "rcvbuf": rcvbuf,
                             "mid_snapshot_s": mid},
                "phases": dict(info["phases"]), "accel": used, "wall_s": round(wall, 1),
                "sysctls": info["sysctls"], "survived": info["alive"]}
        snaps = sorted((tmp / "snapshots").iterdir()) if (tmp / "snapshots").exists() else []
        if snaps:
            first = (snaps[0] / "net_snmp")
            last = (snaps[-1] / "net_snmp")
            if first.exists() and last.exists():
                from parsers import snmp
                a, b = snmp.parse(first.read_text()), snmp.parse(last.read_text())
                meta["ground_truth"] = {
                    "failed_echo_replies": b["Icmp"]["OutErrors"] - a["Icmp"]["OutErrors"],
                    # each request answered is one atomic reply, sent or failed
                    "echo_requests_answered": b["Icmp"]["InEchos"] - a["Icmp"]["InEchos"],
                    # ICMP messages sent: the requests (counted twice by the kernel) and the
                    # replies, as the first lab runs recorded them
                    "echo_replies_attempted": b["Icmp"]["OutMsgs"] - a["Icmp"]["OutMsgs"],
                    "source": "/proc/net/snmp Icmp OutErrors, InEchos, OutMsgs"}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        shutil.copy(wd / "console.txt", tmp / "console.txt")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    return {"bundle": str(out), **meta, "verdict": verdict(out)}


# Failed echo replies above this share of those attempted are failures, not noise
SILENT_FAILURE_SHARE = 0.001


def silent_failures(gt: dict) -> bool:
    """Whether the lab's counters saw more than noise fail (echo requests answered, else the
    older runs' ICMP messages sent, as the base)."""
    failed = gt.get("failed_echo_replies") or 0
    tried = gt.get("echo_requests_answered") or gt.get("echo_replies_attempted") or 0
    return tried > 0 and failed > SILENT_FAILURE_SHARE * tried


def verdict(bundle_path) -> dict:
    """AFFECTED / NOT AFFECTED / INCONCLUSIVE from triage and the pressure the run reached."""
    from analyzer.attribution import attribute
    from analyzer.validate import exposure
    from parsers.bundle import load
    with load(bundle_path) as b:
        doc = attribute(b)
        exp = exposure(b, doc)
        gt = b.meta.get("ground_truth", {})
        failed_sysctls = [k for k, v in (b.meta.get("sysctls") or {}).items() if v == "!failed"]
        dead = [k for k, v in (b.meta.get("survived") or {}).items() if not v]
    bail = doc["attribution"]["defrag_nofragment_bailout"]
    if failed_sysctls or dead:
        # the setting was not in force, or it removed the conditions instead of being tested
        word = "INCONCLUSIVE"
        why = "; ".join(([f"the guest refused sysctl {', '.join(failed_sysctls)}"]
                         if failed_sysctls else [])
                        + ([f"the lab's {' and '.join(dead)} did not live through the load (OOM "
                            f"killer?): the conditions were removed, not the setting tested"]
                           if dead else []))
    elif bail:
        word = "AFFECTED"
        why = (f"{bail} reported failures match the defrag_mode bailout (≈"
               f"{doc['failures']['by_cause']['defrag_nofragment_bailout']['estimated']:,} estimated; "
               f"{gt.get('failed_echo_replies', '?'):,} echo replies failed)")
    elif silent_failures(gt):
        # the counter saw failures the log never reported (a __GFP_NOWARN data buffer fails
        # silently): the allocations did not all fall back, and the log cannot say why
        word = "INCONCLUSIVE"
        why = (f"{gt['failed_echo_replies']:,} of "
               f"{gt.get('echo_requests_answered') or gt['echo_replies_attempted']:,} echo replies "
               f"failed but the kernel log reported no allocation failure: the cause cannot be "
               f"told from the log")
    elif exp["exposed"]:
        word = "NOT AFFECTED"
        why = (f"the pressure was reached ({exp['intervals_exposed']} of {exp['intervals_known']} "
               f"intervals with no free pageblock and load) and the allocations fell back: "
               f"{gt.get('failed_echo_replies', 0)} echo replies failed")
    else:
        word = "INCONCLUSIVE"
        if exp["fragmented_snapshots"] == 0:
            why = "memory was never fragmented enough (a free pageblock remained)"
        else:
            why = "no allocation load was seen during the fragmented phase"
    return {"result": word, "reason": why, "kernel": doc["kernel_release"]["value"],
            "defrag_mode": doc["defrag_mode"].get("value")}
