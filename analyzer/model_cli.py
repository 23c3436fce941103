"""``mmtriage model ...``: run, fit and question the allocator model."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from analyzer.output import Format, dumps, emit, err, handle_errors, rows_text

app = typer.Typer(help="The allocator model: simulate scenarios, calibrate to a host, what-if.",
                  no_args_is_help=True)


def _progress():
    if not sys.stderr.isatty():
        return None, None
    from rich.progress import BarColumn, Progress, TimeElapsedColumn
    prog = Progress("[progress.description]{task.description}", BarColumn(),
                    "{task.percentage:>3.0f}%", TimeElapsedColumn(), transient=True,
                    console=__import__("rich.console").console.Console(stderr=True))
    return prog, prog.add_task("simulating", total=1.0)


@app.command()
@handle_errors
def simulate(
    scenario: Annotated[str, typer.Option(help="seed-skbuff, thp-light, low-memory, high-order or lab.")] = "seed-skbuff",
    policy: Annotated[str, typer.Option(help="legacy (defrag_mode=0), defrag (6.15 as released), "
                                             "defrag-fixed (with the 2026 fix).")] = "defrag",
    seed: Annotated[int, typer.Option(help="Random seed (runs are deterministic for a seed).")] = 0,
    hours: Annotated[Optional[float], typer.Option(help="Simulated hours (default: the scenario's).")] = None,
    param: Annotated[Optional[list[str]], typer.Option("--param", help="Override a workload "
                                                        "parameter, e.g. --param net_rate=30000.")] = None,
    emit_dir: Annotated[Optional[Path], typer.Option("--emit", help="Write a host bundle here.")] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.json,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the summary here.")] = None,
):
    """Run a scenario under a policy and summarise failures, reports and the end state.

    Example:

        mmtriage model simulate --scenario seed-skbuff --policy defrag --seed 1 --emit out/seed
        mmtriage model simulate --scenario lab --policy defrag-fixed -f table
    """
    from models import scenarios
    from models.simulate import simulate as run
    sc = scenarios.get(scenario)
    overrides = {}
    for p in param or []:
        k, _, v = p.partition("=")
        try:
            overrides[k.strip()] = float(v)
        except ValueError:
            raise ValueError(f"--param {p!r}: expected NAME=NUMBER") from None
    prog, task = _progress()
    if prog:
        prog.start()
    try:
        res = run(sc, policy, seed=seed, hours=hours, params=overrides or None,
                  progress=(lambda d, tot: prog.update(task, completed=d / tot)) if prog else None)
    finally:
        if prog:
            prog.stop()
    summary = res.summary()
    if emit_dir is not None:
        from models.emit import emit as write_bundle
        write_bundle(res, emit_dir)
        summary["emitted"] = str(emit_dir)
        err(f"bundle written to {emit_dir}")
    if fmt == Format.json:
        emit(dumps(summary), output)
    else:
        flat = []
        for k, v in summary.items():
            flat.append({"field": k, "value": v})
        emit(rows_text(flat, fmt), output)
