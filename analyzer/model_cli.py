"""``mmtriage model ...``: run, fit and question the allocator model."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from analyzer.output import Format, dumps, emit, err, handle_errors, rows_text

app = typer.Typer(help="The allocator model: simulate scenarios, calibrate to a host, what-if.",
                  no_args_is_help=True)


class _Progress:
    """What a long command is doing, on stderr and only on a terminal (never in piped or JSON
    output): a spinner and the elapsed time from the start (loading and the model's first
    compilation included), and a bar once the work reports how far it is."""

    def __init__(self, what: str):
        self.prog = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (BarColumn, Progress, SpinnerColumn, TaskProgressColumn,
                                       TextColumn, TimeElapsedColumn)
            self.prog = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 TaskProgressColumn(), TimeElapsedColumn(), transient=True,
                                 console=Console(stderr=True))
            self.task = self.prog.add_task(what, total=None)

    def __enter__(self):
        if self.prog:
            self.prog.start()
        return self

    def __exit__(self, *exc):
        if self.prog:
            self.prog.stop()

    def phase(self, what: str) -> None:
        if self.prog:
            self.prog.update(self.task, description=what, total=None, completed=0)

    def callback(self):
        """A ``progress(done, total)`` callback for the model, or None off a terminal."""
        if not self.prog:
            return None
        return lambda done, total: self.prog.update(self.task, total=1.0,
                                                    completed=min(done / total, 1.0) if total else 0)


def _fit_summary(res: dict) -> str:
    """The headline of a fit for the terminal: failures and reports observed vs simulated,
    the parameters, and what the search cost."""
    rows = [r for r in res["fit"] if " at +" not in r["observable"] and " by +" not in r["observable"]]
    lines = [f"fit of {res['host']} over {res['window_s']:,.0f} s "
             f"({res['evaluations']:,} evaluations, {res['wall_s']:,.0f} s):"]
    for r in rows[:6]:
        rel = f" ({r['rel_error']:+.0%})" if r.get("rel_error") is not None else ""
        lines.append(f"  {r['observable']}: observed {r['observed']:,.0f}, "
                     f"simulated {r['simulated']:,.0f}{rel}")
    lines.append("  parameters: " + _params_text(res["params"]))
    return "\n".join(lines)


def _params_text(params: dict) -> str:
    return ", ".join(f"{k} {v:,.0f}" if abs(v) >= 1000 else f"{k} {v:.4g}"
                     for k, v in params.items())


def _budget_warnings(res: dict) -> list[str]:
    """Say when the fit cannot mean much: too few evaluations for the parameters fitted, or
    a failure count far from the observed one."""
    out = []
    n = len(res.get("fitted") or [])
    need = 10 * max(n, 1)
    if res["evaluations"] < need:
        out.append(f"warning: the search made {res['evaluations']:,} model evaluations for "
                   f"{n} fitted parameters; a fit needs about {need:,} or more: give a larger "
                   f"--budget or --evals {need}")
    f = res["fit"][0] if res.get("fit") else None
    if f and f.get("rel_error") is not None and abs(f["rel_error"]) > 0.5:
        out.append(f"warning: the fitted model gives {f['simulated']:,.0f} failures against "
                   f"{f['observed']:,.0f} observed ({f['rel_error']:+.0%}): it does not "
                   f"reproduce this host, so what-ifs from this fit mean little")
    return out


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
    with _Progress(f"simulating {scenario} under {policy}") as prog:
        res = run(sc, policy, seed=seed, hours=hours, params=overrides or None,
                  progress=prog.callback())
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
    with _Progress(f"loading {bundle}") as prog:
        with load(bundle) as b:
            prog.phase(f"fitting the model to {b.host}"
                       + (f" ({evals} evaluations)" if evals else f" (budget {budget:,.0f} s)"))
            res = run(b, budget, tuple(range(seed, seed + seeds)), names=fit or None, fixed=fixed,
                      evals=evals, progress=prog.callback())
    if plots is not None:
        from models.calibrate import plot_fit
        res["plots"] = plot_fit(res, plots)
    if fmt == Format.json:
        emit(dumps(res), output)
        if output is not None:
            err(_fit_summary(res))   # the fit went to the file; the person still sees it
    else:
        emit(rows_text(res["fit"], fmt), output)
        err("params: " + _params_text(res["params"]))
    for w in _budget_warnings(res):
        err(w)


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
    with _Progress(f"loading {bundle}") as prog, load(bundle) as b:
        if params is not None:
            try:
                doc = _json.loads(Path(params).read_text())
            except ValueError as e:
                raise ValueError(f"{params}:1: not JSON: {e}") from None
            p = doc.get("params", doc)
        else:
            prog.phase(f"fitting the model to {b.host} (budget {budget:,.0f} s)")
            fitted = fit(b, budget, progress=prog.callback())
            for w in _budget_warnings(fitted):
                err(w)
            p = fitted["params"]
        prog.phase(f"replaying the fit under {policy} ({seeds} seeds)")
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
