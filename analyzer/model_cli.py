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


@app.command()
@handle_errors
def calibrate(
    bundle: Annotated[str, typer.Argument(help="A host bundle with pagetypeinfo + zoneinfo snapshots.")],
    budget: Annotated[float, typer.Option(help="Seconds to spend, all in (70 % on the search).")] = 60.0,
    evals: Annotated[Optional[int], typer.Option(help="Model evaluations for the search instead "
                     "of what the budget buys: the same result on any machine.")] = None,
    seeds: Annotated[int, typer.Option(help="Seeds averaged per evaluation.")] = 2,
    seed: Annotated[int, typer.Option(help="First seed; the result is the same for the same "
                    "seed and --evals (or when the search ends within the budget).")] = 1,
    fit: Annotated[Optional[list[str]], typer.Option("--fit", help="Parameters to fit "
                   "(default: chosen from what the bundle shows).")] = None,
    fix: Annotated[Optional[list[str]], typer.Option("--fix", help="Hold NAME=VALUE fixed.")] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.json,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the fit (params.json) here.")] = None,
    plots: Annotated[Optional[Path], typer.Option(help="Write observed-vs-simulated plots here.")] = None,
):
    """Fit the model's workload to a host and report the fit per observable.

    Example:

        mmtriage model calibrate sample_logs/lab-6.16.3-defrag1 --budget 60 -o params.json
    """
    from models.calibrate import calibrate as run
    from parsers.bundle import load
    fixed = {}
    for f in fix or []:
        k, _, v = f.partition("=")
        fixed[k.strip()] = float(v)
    prog, task = _progress()
    if prog:
        prog.start()
    try:
        with load(bundle) as b:
            res = run(b, budget, tuple(range(seed, seed + seeds)), names=fit or None, fixed=fixed,
                      evals=evals,
                      progress=(lambda d, t: prog.update(task, completed=min(d / t, 1.0))) if prog else None)
    finally:
        if prog:
            prog.stop()
    if plots is not None:
        from models.calibrate import plot_fit
        res["plots"] = plot_fit(res, plots)
    if fmt == Format.json:
        emit(dumps(res), output)
    else:
        emit(rows_text(res["fit"], fmt), output)
        err("params: " + dumps(res["params"], None))


@app.command()
@handle_errors
def whatif(
    bundle: Annotated[str, typer.Argument(help="The host bundle the parameters were fitted to.")],
    policy: Annotated[str, typer.Option(help="legacy, defrag or defrag-fixed.")] = "defrag-fixed",
    params: Annotated[Optional[Path], typer.Option(help="params.json from 'model calibrate' "
                                                         "(default: calibrate now).")] = None,
    budget: Annotated[float, typer.Option(help="Seconds to fit when no --params is given.")] = 60.0,
    seeds: Annotated[int, typer.Option(help="Replays (seeds) for the interval.")] = 8,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.json,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the result here.")] = None,
):
    """Replay the fitted workload under another policy: predicted failures and their price.

    Example:

        mmtriage model whatif sample_logs/lab-6.16.3-defrag1 --policy defrag-fixed
    """
    import json as _json
    from models.calibrate import calibrate as fit, whatif as run
    from parsers.bundle import load
    if policy not in ("legacy", "defrag", "defrag-fixed"):
        raise ValueError(f"--policy {policy!r}: legacy, defrag or defrag-fixed")
    with load(bundle) as b:
        if params is not None:
            try:
                doc = _json.loads(Path(params).read_text())
            except ValueError as e:
                raise ValueError(f"{params}:1: not JSON: {e}") from None
            p = doc.get("params", doc)
        else:
            p = fit(b, budget)["params"]
        res = run(b, p, policy, seeds=range(1, seeds + 1))
    f = res["failures"]
    res["answer"] = (f"under {policy}: {f['mean']:,.0f} failures predicted (5-95 %: "
                     f"{f['p5']:,.0f}-{f['p95']:,.0f}) against {res['observed_failures']:,.0f} "
                     f"observed; price: {res['price']['blocks_converted']['mean']:.0f} pageblocks "
                     f"converted, {res['price']['steals']['mean']:.0f} steals, "
                     f"{res['price']['free_pageblocks_left']['mean']:.0f} free pageblocks left")
    if fmt == Format.json:
        emit(dumps(res), output)
    else:
        emit(res["answer"] + "\n", output)
