"""``mmtriage lab ...``: does a kernel build still fail GFP_ATOMIC allocations in defrag_mode?"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Optional

import typer

from analyzer.output import Format, dumps, emit, err, handle_errors

app = typer.Typer(help="The kernel lab: boot a kernel build in QEMU and reproduce the bailout.",
                  no_args_is_help=True)


ACCELS = ("auto", "kvm", "tcg")
MIN_MEMORY = 512      # MiB: the kernel, the initramfs and the fragmenter's 48 MiB reserve
MAX_SECONDS = 3600
MAX_SOCKETS = 256     # the guest's flooder opens at most this many sockets
MAX_PAYLOAD = 8000    # bytes of echo data: the reply's buffer stays a slab object (kmalloc-8k)


def _host_mib() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >> 20
    except (ValueError, OSError, AttributeError):
        return 0


def check_options(kernel: Path, memory: int, seconds: int, accel: str,
                  out: Optional[Path], defrag_mode: int | None = None,
                  sockets: int | None = None, payload: int | None = None,
                  mid_snapshot: int | None = None) -> None:
    """Refuse bad options before anything is built or booted: one line naming the option."""
    if mid_snapshot is not None and not 0 <= mid_snapshot < seconds:
        raise ValueError(f"--mid-snapshot {mid_snapshot}: expected 0 (none) to {seconds - 1} "
                         f"seconds into the {seconds} s flood")
    if payload is not None and not 0 <= payload <= MAX_PAYLOAD:
        raise ValueError(f"--payload {payload}: expected 0 to {MAX_PAYLOAD} bytes")
    if defrag_mode is not None and defrag_mode not in (0, 1):
        raise ValueError(f"--defrag-mode {defrag_mode}: vm.defrag_mode is 0 or 1")
    if sockets is not None and not 1 <= sockets <= MAX_SOCKETS:
        raise ValueError(f"--sockets {sockets}: expected 1 to {MAX_SOCKETS}")
    # the guest fills its memory with page cache and mlocked pages: it must fit beside the host
    cap = _host_mib() // 2 or 65536
    if not MIN_MEMORY <= memory <= cap:
        raise ValueError(f"--memory {memory}: expected MiB from {MIN_MEMORY} to {cap} "
                         "(half this machine's memory)")
    if not 1 <= seconds <= MAX_SECONDS:
        raise ValueError(f"--seconds {seconds}: expected 1 to {MAX_SECONDS}")
    if accel not in ACCELS:
        raise ValueError(f"--accel {accel[:40]!r}: choose from {', '.join(ACCELS)}")
    if not kernel.is_file():
        raise ValueError(f"--kernel {kernel}: no such kernel image (a regular file)")
    if out is not None and out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a directory")


def check_replaceable(option: str, path: Path) -> None:
    """The bundle written replaces its folder: only an earlier bundle or an empty folder may go
    (``--out ~`` must not remove a home directory after the run)."""
    if path.exists() and not (path.is_dir() and ((path / "meta.json").is_file()
                                                 or not any(path.iterdir()))):
        raise ValueError(f"{option} {path}: exists and is not a bundle or an empty folder; "
                         "refusing to replace it")


_SYSCTL = re.compile(r"^([a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+)=([0-9-]{1,20})$")
# the guest owns these: the lab's own setup, or the experiment's subject
_RESERVED = {"vm.defrag_mode": "use --defrag-mode", "vm.compact_unevictable_allowed": "the lab sets it",
             "net.ipv4.ping_group_range": "the lab sets it"}


def parse_sysctls(values: list[str] | None) -> dict[str, str]:
    """--sysctl NAME=VALUE pairs (numeric values, as the allocator knobs take)."""
    out = {}
    for v in values or []:
        m = _SYSCTL.match(v.strip())
        if not m:
            raise ValueError(f"--sysctl {v[:60]!r}: expected NAME=NUMBER, e.g. "
                             "vm.min_free_kbytes=65536")
        if m.group(1) in _RESERVED:
            raise ValueError(f"--sysctl {m.group(1)}: {_RESERVED[m.group(1)]}")
        out[m.group(1)] = m.group(2)
    return out


def _run(kernel, defrag_mode, memory, seconds, out, accel, sysctl=None, sockets=16,
         payload=1400, mid_snapshot=None):
    from analyzer.lab import LabError, run
    check_options(kernel, memory, seconds, accel, out, defrag_mode, sockets, payload,
                  mid_snapshot)
    sysctls = parse_sysctls(sysctl)
    check_replaceable("--out", Path(out or f"lab-{kernel.name}-defrag{defrag_mode}"))
    try:
        return run(kernel, defrag_mode, memory, seconds, out, nsock=sockets, payload=payload,
                   accel=accel, progress=err, sysctls=sysctls, mid_snapshot=mid_snapshot)
    except LabError as e:
        raise ValueError(str(e)) from None


@app.command("run")
@handle_errors
def run_cmd(
    kernel: Annotated[Path, typer.Option(help="A kernel image (bzImage / vmlinuz).")],
    defrag_mode: Annotated[int, typer.Option(help="vm.defrag_mode in the guest (0 or 1).")] = 1,
    memory: Annotated[int, typer.Option(help=f"Guest RAM in MiB ({MIN_MEMORY} to half this "
                                             "machine's memory).")] = 1536,
    seconds: Annotated[int, typer.Option(help=f"Length of the ICMP flood (1 to {MAX_SECONDS}).")] = 40,
    sockets: Annotated[int, typer.Option(help=f"ICMP sockets the flood sends on and leaves "
                                              f"unread (1 to {MAX_SOCKETS}); recorded in "
                                              f"meta.json as workload.nsock.")] = 16,
    payload: Annotated[int, typer.Option(help=f"Bytes of data in each echo request (0 to "
                                              f"{MAX_PAYLOAD}); sets which cache the replies' "
                                              f"data buffers come from (1400: kmalloc-2k); "
                                              f"recorded as workload.payload.")] = 1400,
    mid_snapshot: Annotated[Optional[int], typer.Option(
        help="Seconds into the flood of the snapshot taken during it (default: half the "
             "flood; 0: none). Its processes disturb the guest: the first reported failure often "
             "follows it. Recorded as workload.mid_snapshot_s.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Bundle directory to write.")] = None,
    accel: Annotated[str, typer.Option(help="auto (KVM, falling back to TCG), kvm or tcg.")] = "auto",
    sysctl: Annotated[Optional[list[str]], typer.Option(
        "--sysctl", help="NAME=VALUE set in the guest after memory is fragmented, before "
                         "the load (repeatable), e.g. vm.min_free_kbytes=65536; read back into "
                         "meta.json. A setting the guest refuses, or one that kills the lab's "
                         "own processes, makes the run INCONCLUSIVE.")] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
):
    """Boot KERNEL in a small QEMU guest, fragment memory, flood GFP_ATOMIC skb allocations,
    and write a host bundle; prints AFFECTED, NOT AFFECTED or INCONCLUSIVE.

    Example:

        mmtriage lab run --kernel .lab/kernels/vmlinuz-6.16.3+deb13-amd64 --out out/lab-6.16.3
        mmtriage lab run --kernel .lab/kernels/vmlinuz-6.16.3+deb13-amd64 --sysctl vm.min_free_kbytes=65536
        mmtriage lab run --kernel .lab/kernels/vmlinuz-6.16.3+deb13-amd64 --sockets 64
        mmtriage lab run --kernel .lab/kernels/vmlinuz-6.16.3+deb13-amd64 --payload 56
    """
    r = _run(kernel, defrag_mode, memory, seconds, out, accel, sysctl, sockets, payload,
             mid_snapshot)
    v = r["verdict"]
    if fmt == Format.json:
        emit(dumps(r))
    else:
        emit(f"{v['result']}: {v['kernel']} defrag_mode={v['defrag_mode']}: {v['reason']} "
             f"(bundle {r['bundle']}, {r['wall_s']:.0f} s under {r['accel'].upper()})")


@app.command()
@handle_errors
def check(
    kernel: Annotated[Path, typer.Option(help="A kernel image (bzImage / vmlinuz).")],
    memory: Annotated[int, typer.Option(help=f"Guest RAM in MiB ({MIN_MEMORY} to half this "
                                             "machine's memory).")] = 1536,
    seconds: Annotated[int, typer.Option(help=f"Length of the ICMP flood (1 to {MAX_SECONDS}).")] = 40,
    out: Annotated[Optional[Path], typer.Option(help="Folder for the two bundles.")] = None,
    accel: Annotated[str, typer.Option(help="auto, kvm or tcg.")] = "auto",
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
):
    """Run the lab with defrag_mode=1 and =0 and report both.

    Example:

        mmtriage lab check --kernel .lab/kernels/vmlinuz-7.3.4+deb13-amd64
    """
    check_options(kernel, memory, seconds, accel, out)
    base = out or Path(f"lab-{kernel.name}")
    for dm in (1, 0):
        check_replaceable("--out", base / f"defrag{dm}")
    runs = [_run(kernel, dm, memory, seconds, base / f"defrag{dm}", accel) for dm in (1, 0)]
    if fmt == Format.json:
        emit(dumps({"runs": runs}))
    else:
        emit("\n".join(f"defrag_mode={r['verdict']['defrag_mode']}: {r['verdict']['result']}: "
                       f"{r['verdict']['reason']}" for r in runs))
