"""``mmtriage model ...``: run, fit and question the allocator model."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from analyzer.output import Format, dumps, emit, err, handle_errors, rows_text

app = typer.Typer(help="The allocator model: simulate scenarios, calibrate to a host, what-if.",
                  no_args_is_help=True)

# -- option checks: each bad value is one "Error: --option value: why" line and exit 1 ----------
POLICY_NAMES = ("legacy", "defrag", "defrag-fixed")
MAX_SEEDS = 64            # seeds per evaluation / replays: each is a whole model run
MAX_BUDGET_S = 7 * 86400
MAX_EVALS = 1_000_000
MAX_PARAMS_BYTES = 1 << 20
CAL_ONLY = ("kernel_share", "data_share")   # calibration parameters outside the model vector


def _bad(option: str, value, why: str) -> ValueError:
    v = value if isinstance(value, str) and value.isprintable() else repr(value)
    return ValueError(f"{option} {v[:60]}: {why}")  # repr: a newline stays on the one line


def _finite(option: str, v: float, lo: float, hi: float = math.inf, lo_open: bool = False) -> None:
    if not math.isfinite(v) or v < lo or v > hi or (lo_open and v <= lo):
        rng = f"{'above' if lo_open else 'from'} {lo:g}" + (
            f"{' and at most' if lo_open else ' to'} {hi:g}" if math.isfinite(hi) else "")
        raise _bad(option, f"{v:g}", f"expected a finite number {rng}")


def _int(option: str, v: int, lo: int, hi: int) -> None:
    if not lo <= v <= hi:
        raise _bad(option, str(v), f"expected an integer from {lo} to {hi}")


def _choice(option: str, v: str, choices) -> None:
    if v not in choices:
        raise _bad(option, v, f"choose from {', '.join(choices)}")


def _param_value(name: str, value) -> str | None:
    """Why ``value`` cannot be parameter ``name`` (model or calibration), or None."""
    from models.calibrate import BOUNDS
    from models.scenarios import param_problem
    if name in CAL_ONLY:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{name}: expected a number, got {type(value).__name__} {str(value)[:40]}"
        try:
            value = float(value)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value):
            return f"{name}: expected a finite number"
        lo, hi = BOUNDS[name]
        return None if lo <= value <= hi else f"{name}={value:g} is out of range [{lo:g}, {hi:g}]"
    return param_problem(name, value)


def _name_values(option: str, items: list[str] | None) -> dict:
    """NAME=NUMBER options (``--param``, ``--fix``), each checked."""
    out = {}
    for item in items or []:
        k, eq, v = item.partition("=")
        k = k.strip()
        try:
            val = float(v)
        except ValueError:
            val = None
        if not eq or val is None:
            raise _bad(option, item, "expected NAME=NUMBER")
        why = _param_value(k, val)
        if why:
            raise _bad(option, item, why)
        out[k] = val
    return out


def read_params(path: Path) -> dict:
    """params.json (``model calibrate --output``): an object of parameter -> number, or one
    under "params". Every error names the file and the parameter."""
    from parsers.errors import ParseError
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_PARAMS_BYTES + 1)
    except OSError as e:
        raise ParseError(str(path), 0, f"--params: {e.strerror or e}") from None
    if len(raw) > MAX_PARAMS_BYTES:
        raise ParseError(str(path), 0, f"--params: larger than {MAX_PARAMS_BYTES >> 20} MiB")
    try:
        doc = json.loads(raw.decode("utf-8", "replace"))
    except json.JSONDecodeError as e:
        raise ParseError(str(path), e.lineno, f"--params: not JSON: {e.msg} (write it with "
                         "'model calibrate --format json --output')") from None
    except (ValueError, RecursionError) as e:
        raise ParseError(str(path), 1, f"--params: not JSON: {type(e).__name__}") from None
    p = doc.get("params", doc) if isinstance(doc, dict) else doc
    if not isinstance(p, dict):
        raise ParseError(str(path), 1, "--params: expected an object of parameter: number "
                                       f"(or one under \"params\"), got {type(p).__name__}")
    if not p:
        raise ParseError(str(path), 1, "--params: no parameters")
    for k, v in p.items():
        why = _param_value(k, v)
        if why:
            raise ParseError(str(path), 1, f"--params: {why}")
    return {k: float(v) for k, v in p.items()}


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
    if res.get("estimated_failures"):
        lines.append("  " + estimate_text(res["estimated_failures"]))
    return "\n".join(lines)


def estimate_text(est: dict) -> str:
    return (f"estimated failures: {est['value']:,} ({est['low']:,}-{est['high']:,}); "
            f"basis: {est['basis']}")


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
    est = res.get("estimated_failures")
    if est and res.get("corroborated_failures") is None and est["model_value"] < est["log_floor"]:
        out.append(f"warning: the fitted model gives {est['model_value']:,} failures, fewer than the "
                   f"{est['log_floor']:,.0f} the log's reports already count: it does not "
                   f"reproduce this host's log, so the estimate and what-ifs mean little")
    if f and f["in_loss"] and f.get("rel_error") is not None and abs(f["rel_error"]) > 0.5:
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
    seed: Annotated[int, typer.Option(help="Random seed, 0 to 2**32-1 (runs are deterministic "
                                           "for a seed).")] = 0,
    hours: Annotated[Optional[float], typer.Option(help="Simulated hours (default: the scenario's); "
                                                        "a run may take at most 1 GiB for its "
                                                        "per-second and snapshot arrays.")] = None,
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
    from models.simulate import SEED_MAX, check_size, simulate as run
    _choice("--scenario", scenario, tuple(scenarios.SCENARIOS))
    _choice("--policy", policy, POLICY_NAMES)
    _int("--seed", seed, 0, SEED_MAX)
    sc = scenarios.get(scenario)
    if hours is not None:
        _finite("--hours", hours, 0.0, lo_open=True)  # the upper bound is the run's size
        try:
            check_size(sc, hours)
        except ValueError as e:
            raise _bad("--hours", f"{hours:g}", str(e)) from None
    overrides = _name_values("--param", param)
    if "atomic_high_order" in overrides and overrides["atomic_high_order"] >= sc.host.max_order:
        raise _bad("--param", f"atomic_high_order={overrides['atomic_high_order']:g}",
                   f"this scenario's host has orders 0 to {sc.host.max_order - 1}")
    if emit_dir is not None and emit_dir.exists() and not (
            emit_dir.is_dir() and ((emit_dir / "meta.json").is_file() or not any(emit_dir.iterdir()))):
        # the bundle replaces the folder: only an earlier bundle or an empty folder may go
        raise _bad("--emit", str(emit_dir), "exists and is not a bundle or an empty folder; "
                                            "refusing to replace it")
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
    budget: Annotated[float, typer.Option(help="Seconds to spend on the fit, the search and "
                      "its end (the model's one-time compile on first use not counted).")] = 60.0,
    evals: Annotated[Optional[int], typer.Option(help="Model evaluations for the search instead "
                     "of what the budget buys: the same result on any machine.")] = None,
    seeds: Annotated[int, typer.Option(help=f"Seeds averaged per evaluation (1 to {MAX_SEEDS}); "
                     "their runs share the cores.")] = 2,  # len(search.DEFAULT_SEEDS)
    seed: Annotated[int, typer.Option(help="First seed; the result is the same for the same "
                    "seed and --evals (or when the search ends within the budget).")] = 1,
    fit: Annotated[Optional[list[str]], typer.Option("--fit", help="Parameters to fit "
                   "(default: chosen from what the bundle shows); repeatable.")] = None,
    fix: Annotated[Optional[list[str]], typer.Option("--fix", help="Hold NAME=VALUE fixed; "
                   "repeatable.")] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.json,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the "
                                  "result here in --format; as json it is the params.json that "
                                  "'model whatif --params' reads.")] = None,
    plots: Annotated[Optional[Path], typer.Option(help="Write observed-vs-simulated plots here.")] = None,
):
    """Fit the model's workload to a host and report the fit per observable.

    Example:

        mmtriage model calibrate sample_logs/lab-6.16.3-defrag1 --budget 60 -o params.json
    """
    from models.calibrate import BOUNDS, calibrate as run
    from models.simulate import SEED_MAX
    from parsers.bundle import load
    _finite("--budget", budget, 0.0, MAX_BUDGET_S, lo_open=True)
    if evals is not None:
        _int("--evals", evals, 1, MAX_EVALS)
    _int("--seeds", seeds, 1, MAX_SEEDS)
    _int("--seed", seed, 0, SEED_MAX - 1000 - seeds)  # noise seeds run up to seed + 900 + 4
    for n in fit or []:
        _choice("--fit", n, tuple(BOUNDS))
    fit = list(dict.fromkeys(fit)) if fit else None
    fixed = _name_values("--fix", fix)
    for n in fixed:
        if fit and n in fit:
            raise _bad("--fix", n, "is also given to --fit")
    with _Progress(f"loading {bundle}") as prog:
        with load(bundle) as b:
            if fit:
                _fit_startable(b, fit)
            prog.phase(f"fitting the model to {b.host}"
                       + (f" ({evals} evaluations)" if evals else f" (budget {budget:,.0f} s)"))
            res = run(b, budget, tuple(range(seed, seed + seeds)), names=fit or None, fixed=fixed,
                      evals=evals, progress=prog.callback())
    if plots is not None:
        from analyzer.plots import plot_fit
        res["plots"] = plot_fit(res, plots)
    if fmt == Format.json:
        emit(dumps(res), output)
        if output is not None:
            err(_fit_summary(res))   # the fit went to the file; the person still sees it
    else:
        emit(rows_text(res["fit"], fmt), output)
        err("params: " + _params_text(res["params"]))
        err(estimate_text(res["estimated_failures"]))
    for w in _budget_warnings(res):
        err(w)


def _fit_startable(b, names: list[str]) -> None:
    """--fit names this bundle gives a start value for (the others have nowhere to begin)."""
    from models.calibrate import default_start, observe
    start = default_start(observe(b))[1]
    for n in names:
        if n not in start:
            raise _bad("--fit", n, "this bundle gives it no start value; fit one of "
                                   + ", ".join(sorted(start)))


SWEEP_POINTS = (2, 50)


def _sweep_option(text: str, given: dict) -> tuple[str, list]:
    """--sweep NAME=A:B:N: the knob and its N values from A to B."""
    from models.calibrate.whatif import KNOBS, knob_problem, sweep_values
    name, eq, rng = text.partition("=")
    name = name.strip().replace("-", "_")
    parts = rng.split(":")
    if not eq or len(parts) != 3:
        raise _bad("--sweep", text, "expected NAME=A:B:N, e.g. min_free_kbytes=4096:65536:8")
    if name not in KNOBS:
        raise _bad("--sweep", text, f"choose NAME from {', '.join(KNOBS)}")
    try:
        a, b = float(parts[0]), float(parts[1])
        n = int(parts[2])
    except ValueError:
        raise _bad("--sweep", text, "expected NAME=A:B:N with numbers A, B and an integer "
                                    "N") from None
    for v in (a, b):
        why = knob_problem(name, v)
        if why:
            raise _bad("--sweep", text, why)
    if not a < b:
        raise _bad("--sweep", text, "expected A below B")
    if not SWEEP_POINTS[0] <= n <= SWEEP_POINTS[1]:
        raise _bad("--sweep", text, f"expected N from {SWEEP_POINTS[0]} to {SWEEP_POINTS[1]}")
    if name in given:
        raise _bad("--sweep", text, f"--{name.replace('_', '-')} is given too; sweep it or "
                                    "set it, not both")
    try:
        return name, sweep_values(name, a, b, n)
    except ValueError as e:
        raise _bad("--sweep", text, str(e).split(": ", 1)[-1]) from None


def _setting_options(min_free_kbytes, watermark_scale_factor, watermark_boost_factor,
                     load_scale) -> dict:
    from models.calibrate.whatif import KNOB_RANGES
    out = {}
    for name, v in (("min_free_kbytes", min_free_kbytes),
                    ("watermark_scale_factor", watermark_scale_factor),
                    ("watermark_boost_factor", watermark_boost_factor)):
        if v is not None:
            _int(f"--{name.replace('_', '-')}", v, *KNOB_RANGES[name])
            out[name] = int(v)
    if load_scale is not None:
        _finite("--load-scale", load_scale, 0.0, KNOB_RANGES["load_scale"][1], lo_open=True)
        out["load_scale"] = float(load_scale)
    return out


def _knob_value(name: str, v) -> str:
    return f"{v:g}x" if name == "load_scale" else f"{v:,}"


def _setting_text(setting: dict) -> str:
    return ", ".join(f"{k} {_knob_value(k, v)}" for k, v in setting.items()) or "no change"


def _setting_answer(res: dict) -> str:
    f, b, p = res["failures"], res["baseline"]["failures"], res["price"]
    ratio = (f"{res['ratio']:.2f}x the baseline's" if res["ratio"] is not None else
             "the baseline has none")
    return (f"with {_setting_text(res['setting'])} under {res['policy']}: {f['mean']:,.0f} "
            f"failures predicted (5-95 %: {f['p5']:,.0f}-{f['p95']:,.0f}), {ratio} "
            f"{b['mean']:,.0f} (the host's setting, same seeds); price: "
            f"{p['blocks_converted']['mean']:.0f} pageblocks converted "
            f"(baseline {res['baseline']['price']['blocks_converted']['mean']:.0f}), "
            f"{p['steals']['mean']:.0f} steals, {p['free_pageblocks_left']['mean']:.0f} free "
            f"pageblocks left")


def _price_cols(r: dict) -> dict:
    return {"failures_mean": r["failures"]["mean"], "failures_p5": r["failures"]["p5"],
            "failures_p95": r["failures"]["p95"],
            "blocks_converted": r["price"]["blocks_converted"]["mean"],
            "claims": r["price"]["claims"]["mean"], "steals": r["price"]["steals"]["mean"],
            "free_pageblocks_left": r["price"]["free_pageblocks_left"]["mean"]}


def _setting_rows(res: dict) -> list[dict]:
    host = {k: v["value"] for k, v in res["host_setting"].items()}
    return [{"run": "baseline", "policy": res["policy"], **host, **_price_cols(res["baseline"]),
             "ratio": 1.0 if res["baseline"]["failures"]["mean"] > 0 else None},
            {"run": "setting", "policy": res["policy"], **res["used"], **_price_cols(res),
             "ratio": res["ratio"]}]


# the table's short headers (csv and ndjson keep the full names)
_SHORT = {"min_free_kbytes": "min_free_kB", "watermark_scale_factor": "scale_f",
          "watermark_boost_factor": "boost_f", "load_scale": "load", "failures_mean": "failures",
          "failures_p5": "p5", "failures_p95": "p95", "blocks_converted": "converted",
          "free_pageblocks_left": "free_blocks"}


def _short(rows: list[dict]) -> list[dict]:
    return [{_SHORT.get(k, k): v for k, v in r.items()} for r in rows]


def _watermark_rows(res: dict) -> list[dict]:
    return [{"zone": b["zone"], "managed": b["managed"],
             "baseline min/low/high": f"{b['min']}/{b['low']}/{b['high']}",
             "setting min/low/high": f"{s['min']}/{s['low']}/{s['high']}"}
            for b, s in zip(res["baseline"]["watermarks"], res["watermarks"])]


def _sweep_rows(res: dict) -> list[dict]:
    base = res["baseline"]
    host = res["host_setting"][res["knob"]]["value"]
    rows = [{"run": "baseline", "value": host, **{k: v for k, v in _price_cols(base).items()
                                                  if k != "claims"},
             "ratio": 1.0 if base["failures"]["mean"] > 0 else None}]
    cols = ("value", "failures_mean", "failures_p5", "failures_p95", "ratio", "blocks_converted",
            "steals", "free_pageblocks_left")
    rows += [{"run": "sweep", **{k: r[k] for k in cols}} for r in res["rows"]]
    return rows


@app.command()
@handle_errors
def whatif(
    bundle: Annotated[str, typer.Argument(help="The host bundle the parameters were fitted to.")],
    policy: Annotated[Optional[str], typer.Option(help="legacy, defrag or defrag-fixed (default: "
                      "defrag-fixed; with a setting or --sweep, the host's own).")] = None,
    params: Annotated[Optional[Path], typer.Option(help="params.json from 'model calibrate' "
                                                         "(default: calibrate now).")] = None,
    budget: Annotated[float, typer.Option(help="Seconds to fit when no --params is given.")] = 60.0,
    seeds: Annotated[int, typer.Option(help=f"Replays (seeds) for the interval (1 to {MAX_SEEDS}).")] = 8,
    min_free_kbytes: Annotated[Optional[int], typer.Option(
        help="vm.min_free_kbytes to replay with (128 to half the host's lowmem); the watermarks "
             "are recomputed as the kernel does.")] = None,
    watermark_scale_factor: Annotated[Optional[int], typer.Option(
        help="vm.watermark_scale_factor to replay with (1 to 3000); recomputes the "
             "watermarks.")] = None,
    watermark_boost_factor: Annotated[Optional[int], typer.Option(
        help="vm.watermark_boost_factor to replay with (0 disables boosting).")] = None,
    load_scale: Annotated[Optional[float], typer.Option(
        help="Multiply the fitted workload's rates by this (above 0, at most 100).")] = None,
    sweep: Annotated[Optional[str], typer.Option(
        help="NAME=A:B:N: replay at N (2 to 50) evenly spaced values of NAME from A to B; NAME "
             "is min_free_kbytes, watermark_scale_factor, watermark_boost_factor or "
             "load_scale.")] = None,
    plots: Annotated[Optional[Path], typer.Option(help="With --sweep: write the sweep's plot "
                                                       "(PNG and SVG) here.")] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.json,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the result here.")] = None,
):
    """Replay the fitted workload under another policy or setting: predicted failures and
    their price.

    With a setting (--min-free-kbytes, --watermark-scale-factor, --watermark-boost-factor,
    --load-scale, alone or together) or --sweep, each result is set against a baseline: the
    same seeds and policy with the host's own setting.

    Example:

        mmtriage model whatif sample_logs/lab-6.16.3-defrag1 --policy defrag-fixed
        mmtriage model whatif BUNDLE --params params.json --min-free-kbytes 65536
        mmtriage model whatif BUNDLE --params params.json --sweep watermark_scale_factor=10:500:6 --plots out
    """
    from models.calibrate import calibrate as fit, whatif as run
    from models.calibrate.whatif import sweep as run_sweep, whatif_setting
    from parsers.bundle import load
    if policy is not None:
        _choice("--policy", policy, POLICY_NAMES)
    _finite("--budget", budget, 0.0, MAX_BUDGET_S, lo_open=True)
    _int("--seeds", seeds, 1, MAX_SEEDS)
    setting = _setting_options(min_free_kbytes, watermark_scale_factor, watermark_boost_factor,
                               load_scale)
    swept = _sweep_option(sweep, setting) if sweep is not None else None
    if plots is not None and swept is None:
        raise _bad("--plots", str(plots), "draws a sweep: give --sweep too")
    p = read_params(params) if params is not None else None
    with _Progress(f"loading {bundle}") as prog, load(bundle) as b:
        if p is None:
            prog.phase(f"fitting the model to {b.host} (budget {budget:,.0f} s)")
            fitted = fit(b, budget, progress=prog.callback())
            for w in _budget_warnings(fitted):
                err(w)
            p = fitted["params"]
        if swept is not None:
            prog.phase(f"sweeping {swept[0]} over {len(swept[1])} values ({seeds} seeds each)")
            res = run_sweep(b, p, swept[0], swept[1], setting, policy,
                            seeds=range(1, seeds + 1), progress=prog.callback())
        elif setting:
            prog.phase(f"replaying the fit with {_setting_text(setting)} ({seeds} seeds)")
            res = whatif_setting(b, p, setting, policy, seeds=range(1, seeds + 1),
                                 progress=prog.callback())
        else:
            policy = policy or "defrag-fixed"
            prog.phase(f"replaying the fit under {policy} ({seeds} seeds)")
            res = run(b, p, policy, seeds=range(1, seeds + 1))
    if swept is not None:
        _emit_sweep(res, fmt, output, plots)
        return
    if setting:
        res["answer"] = _setting_answer(res)
        if fmt == Format.json:
            emit(dumps(res), output)
        elif fmt == Format.table:
            emit(rows_text(_short(_setting_rows(res)), fmt, title=f"{res['host']}: what-if") +
                 rows_text(_watermark_rows(res), fmt, title="watermarks (pages)") +
                 res["answer"] + "\n", output)
        else:
            emit(rows_text(_setting_rows(res), fmt), output)
        return
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


def _emit_sweep(res: dict, fmt: Format, output, plots) -> None:
    b = res["baseline"]["failures"]
    k = res["knob"]
    host = res["host_setting"][k]
    res["answer"] = (f"{k} from {_knob_value(k, res['values'][0])} to "
                     f"{_knob_value(k, res['values'][-1])} under {res['policy']}: failures "
                     + ", ".join(f"{r['failures_mean']:,.0f}" for r in res["rows"])
                     + f" against {b['mean']:,.0f} at the host's {_knob_value(k, host['value'])}"
                     + (f" (with {_setting_text(res['setting'])})" if res["setting"] else ""))
    if plots is not None:
        from analyzer.plots import plot_sweep
        res["plots"] = plot_sweep(res, plots)
    if fmt == Format.json:
        emit(dumps(res), output)
    elif fmt == Format.table:
        title = (f"{res['host']}: {k} swept under {res['policy']}, {res['seeds']} seeds; "
                 f"baseline {b['mean']:,.0f} failures (5-95 %: {b['p5']:,.0f}-{b['p95']:,.0f})")
        emit(rows_text(_short(_sweep_rows(res)), fmt, title=title), output)
    else:
        emit(rows_text(_sweep_rows(res), fmt), output)
