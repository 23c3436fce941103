"""``mmtriage lab ...``: does a kernel build still fail GFP_ATOMIC allocations in defrag_mode?"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from analyzer.output import Format, dumps, emit, err, handle_errors

app = typer.Typer(help="The kernel lab: boot a kernel build in QEMU and reproduce the bailout.",
                  no_args_is_help=True)


def _run(kernel, defrag_mode, memory, seconds, out, accel):
    from analyzer.lab import LabError, run
    try:
        return run(kernel, defrag_mode, memory, seconds, out, accel=accel, progress=err)
    except LabError as e:
        raise ValueError(str(e)) from None


@app.command("run")
@handle_errors
def run_cmd(
    kernel: Annotated[Path, typer.Option(help="A kernel image (bzImage / vmlinuz).")],
    defrag_mode: Annotated[int, typer.Option(help="vm.defrag_mode in the guest (0 or 1).")] = 1,
    memory: Annotated[int, typer.Option(help="Guest RAM in MiB.")] = 1536,
    seconds: Annotated[int, typer.Option(help="Length of the ICMP flood.")] = 40,
    out: Annotated[Optional[Path], typer.Option(help="Bundle directory to write.")] = None,
    accel: Annotated[str, typer.Option(help="auto (KVM, falling back to TCG), kvm or tcg.")] = "auto",
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
):
    """Boot KERNEL in a small QEMU guest, fragment memory, flood GFP_ATOMIC skb allocations,
    and write a host bundle; prints AFFECTED, NOT AFFECTED or INCONCLUSIVE.

    Example:

        mmtriage lab run --kernel .lab/kernels/vmlinuz-6.16.3+deb13-amd64 --out out/lab-6.16.3
    """
    r = _run(kernel, defrag_mode, memory, seconds, out, accel)
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
    memory: Annotated[int, typer.Option(help="Guest RAM in MiB.")] = 1536,
    seconds: Annotated[int, typer.Option(help="Length of the ICMP flood.")] = 40,
    out: Annotated[Optional[Path], typer.Option(help="Folder for the two bundles.")] = None,
    accel: Annotated[str, typer.Option(help="auto, kvm or tcg.")] = "auto",
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
):
    """Run the lab with defrag_mode=1 and =0 and report both.

    Example:

        mmtriage lab check --kernel .lab/kernels/vmlinuz-7.3.4+deb13-amd64
    """
    base = out or Path(f"lab-{kernel.name}")
    runs = [_run(kernel, dm, memory, seconds, base / f"defrag{dm}", accel) for dm in (1, 0)]
    if fmt == Format.json:
        emit(dumps({"runs": runs}))
    else:
        emit("\n".join(f"defrag_mode={r['verdict']['defrag_mode']}: {r['verdict']['result']}: "
                       f"{r['verdict']['reason']}" for r in runs))
