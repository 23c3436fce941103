"""mmtriage command line. Each command is a thin layer over parsers/, models/ and analyzer/."""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

try:  # typer >= 0.20 carries its own copy of click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - older typer on the real click
    from click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from analyzer.output import (Format, ReportFormat, dumps, emit, err, handle_errors, json_array,
                             rows_text, stream_json, table_text)


class OneLineErrors(TyperGroup):
    """Usage errors (a missing argument, an unknown option, a bad choice) as one line on stderr
    and exit status 2, like every other error of ours is one line."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                              standalone_mode=False, **extra)
        except NoArgsIsHelpError as e:
            if not standalone_mode:
                raise
            e.show()   # no arguments: the help, as before
            sys.exit(e.exit_code)
        except UsageError as e:
            if not standalone_mode:
                raise
            path = e.ctx.command_path if e.ctx is not None else "mmtriage"
            msg = " ".join(e.format_message().split()).replace("Value error, ", "")
            err(f"Error: {msg} (see '{path} --help')")
            sys.exit(e.exit_code)
        except ClickException as e:
            if not standalone_mode:
                raise
            err(f"Error: {' '.join(e.format_message().split())}")
            sys.exit(e.exit_code)
        except typer.Abort:
            if not standalone_mode:
                raise
            err("Error: aborted")
            sys.exit(1)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    name="mmtriage",
    cls=OneLineErrors,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


def _version(value: bool):
    if value:
        from importlib.metadata import PackageNotFoundError, version
        try:
            v = version("mmtriage")
        except PackageNotFoundError:
            v = "unknown (not installed)"
        sys.stdout.write(f"mmtriage {v}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
):
    """Triage Linux memory-allocation failures: parse kernel logs and /proc snapshots,
    attribute failures (defrag_mode bailout, low memory, fragmentation), model what-ifs.

    Output: report commands (triage, validate, gfp) default to --format table; data
    commands (parse, proc) default to json. Every command takes --format json (JSON on
    stdout and nothing else there) and -o/--output FILE where it writes.
    """


FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o",
                                                   help="Write to this file instead of stdout.")]


def _check_fixed_in(fixed_in: list[str] | None) -> None:
    for rel in fixed_in or []:
        if not rel.strip():
            raise ValueError("--fixed-in '': an empty release prefix would match every kernel")


def _parse_paths(paths: list[str], raw_json: bool = False):
    from parsers.bundle import load
    from parsers.dmesg import ParseResult
    total = ParseResult()
    total.sources = []
    for p in paths:
        with load(p, raw_json=raw_json) as b:
            total.merge(b.log)
    return total


@app.command()
@handle_errors
def parse(
    paths: Annotated[list[str], typer.Argument(help="Kernel logs (any format, may be compressed), "
                                                    "bundles or tarballs; '-' reads stdin.")],
    fmt: FormatOpt = Format.json,
    output: OutputOpt = None,
):
    """Failure records and a summary from kernel logs or bundles. In csv and ndjson the
    summary is the first record (kind "summary"), the failure records follow.

    Example:

        mmtriage parse /var/log/kern.log.1.gz --format table
        mmtriage parse sample_logs/lab-6.16.3-defrag1 -f csv -o out/records.csv
    """
    # JSON only writes the records out: the fast path's come already rendered
    res = _parse_paths(paths, raw_json=fmt == Format.json)
    events = res.events
    if fmt == Format.json:
        stream_json(_parse_doc(res), output)
    elif fmt == Format.table:
        s = res.summary()
        rows = [{"field": k, "value": v} for k, v in s.items()]
        text = table_text(rows, title="summary")
        ev_rows = [{"line": e["line"], "kind": e["kind"], "time_s": e["time_s"],
                    "comm": e["comm"], "order": e["order"], "gfp": e["gfp_text"],
                    "cache": e["cache"], "partial": e["partial"], "source": e["source"]}
                   for e in events]
        if ev_rows:
            text += table_text(ev_rows[:200], title=f"events ({len(ev_rows)})")
        emit(text, output)
    else:
        # The summary is the leading record (kind "summary"), so csv and ndjson keep it.
        flat = [{k: v for k, v in e.items() if k not in ("zones", "nodes", "counters")}
                for e in events]
        cols = list(flat[0]) if flat else ["kind", "source", "line"]
        emit(rows_text([{"kind": "summary", **res.summary()}] + flat, fmt, cols=cols), output)


def _parse_doc(res):
    # bytes throughout: the fast path's records are UTF-8 JSON already (parse_log raw_json)
    yield ('{\n "summary": ' + dumps(res.summary(), None) + ',\n "events": ').encode(
        "utf-8", "surrogateescape")
    yield from json_array(res.events, raw=bytes)
    yield b',\n "suppressions": '
    yield from json_array(res.suppressions, raw=bytes)
    yield b"\n}"


@app.command()
@handle_errors
def proc(
    files: Annotated[list[str], typer.Argument(help="/proc files (kind detected from content).")],
    fmt: FormatOpt = Format.json,
    output: OutputOpt = None,
):
    """Parse /proc vmstat, pagetypeinfo, buddyinfo, zoneinfo, meminfo, slabinfo, net/snmp files.

    Example:

        mmtriage proc /proc/pagetypeinfo /proc/zoneinfo --format table
    """
    from parsers.proc import parse_file
    docs = [parse_file(f) for f in files]
    if fmt == Format.json:
        emit(dumps({"files": docs}), output)
        return
    rows = []
    for d in docs:
        for key in ("free", "blocks", "zones"):
            for r in d.get(key, []):
                rows.append({"path": d["path"], "kind": d["kind"], "table": key,
                             **{k: v for k, v in r.items() if k not in ("stats", "node_stats")}})
        for key in ("counters", "fields_kb"):
            for k, v in d.get(key, {}).items():
                rows.append({"path": d["path"], "kind": d["kind"], "name": k, "value": v})
    emit(rows_text(rows, fmt), output)


@app.command()
@handle_errors
def gfp(
    mask: Annotated[str, typer.Argument(help="0xa20, 0xa20(GFP_ATOMIC) or GFP_ATOMIC|__GFP_NOWARN")],
    kernel: Annotated[Optional[str], typer.Option(help="Kernel release, to pick the bit layout.")] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format (a report: "
                                        "table by default).")] = Format.table,
    output: OutputOpt = None,
):
    """Decode a GFP mask: single flags, migratetype, reclaim bits, the layout it fits.

    Example:

        mmtriage gfp '0x480020(GFP_ATOMIC)'
        mmtriage gfp 0xa20 --kernel 5.15.0
    """
    from parsers.errors import ParseError
    from parsers.gfp import parse_text
    try:
        g = parse_text(mask, kernel, path=mask, line=0)
    except ParseError as e:
        why = e.reason if not e.reason.startswith("invalid literal") else \
            "expected 0xHEX, 0xHEX(NAMES) or NAME|NAME (e.g. 0xa20, GFP_ATOMIC|__GFP_NOWARN)"
        raise ParseError(mask, 0, f"not a GFP mask: {why}") from None
    d = g.to_dict()
    if fmt == Format.json:
        emit(dumps(d), output)
    else:
        emit(rows_text([{"field": k, "value": str(v) if k == "mask" else v}
                        for k, v in d.items()], fmt), output)
    if g.mismatch:
        err(f"warning: {g.mismatch}")


@app.command()
@handle_errors
def collect(
    out: Annotated[Path, typer.Option("--out", help="Bundle directory to write.")],
    interval: Annotated[float, typer.Option(help="Seconds between snapshots.")] = 5.0,
    count: Annotated[Optional[int], typer.Option(help="Number of snapshots.")] = None,
    duration: Annotated[Optional[float], typer.Option(help="Stop after this many seconds.")] = None,
    proc_root: Annotated[Path, typer.Option(help="Where /proc is mounted.")] = Path("/proc"),
    kmsg: Annotated[str, typer.Option(help="Kernel log device ('' to skip).")] = "/dev/kmsg",
    fmt: FormatOpt = Format.json,
):
    """Snapshot this host's /proc and kernel log into a bundle (read only; Ctrl-C is safe).

    Example:

        mmtriage collect --out bundle-$(hostname) --interval 10 --duration 600
    """
    from analyzer.collect import collect as run
    if count is None and duration is None:
        count = 1
    meta = run(out, interval, count, duration, proc_root, kmsg or None,
               progress=lambda n: err(f"snapshot {n} written"))
    emit(dumps(meta) if fmt == Format.json else rows_text(
        [{"field": k, "value": v} for k, v in meta.items()], fmt))


NO_LOG_EXIT = 4   # "cannot tell", as validate's inconclusive


@app.command()
@handle_errors
def triage(
    path: Annotated[str, typer.Argument(help="A bundle (directory, tarball, sosreport) or a kernel log.")],
    fmt: Annotated[ReportFormat, typer.Option("--format", "-f", help="Report format.")] = ReportFormat.table,
    output: OutputOpt = None,
    plots: Annotated[Optional[Path], typer.Option(help="Also write the plots (PNG and SVG) here.")] = None,
    fixed_in: Annotated[Optional[list[str]], typer.Option("--fixed-in", help="A kernel release "
                        "(prefix) known to carry the fix; repeatable.")] = None,
    calibrate: Annotated[float, typer.Option("--calibrate", help="Also fit the model to the "
                         "bundle for this many seconds (0 to 3600; 0: no) and report its "
                         "estimate of the failures, with an interval, beside the log's lower "
                         "bound.")] = 0.0,
):
    """Per-host report: which allocations failed, how many really, and why.

    Exit status: 0 a report was made from a kernel log; 4 no kernel log was found (or the
    file holds no kernel message), so failures cannot be counted: the report says which
    files were looked for and what the snapshots show; 1 bad input.

    Example:

        mmtriage triage sample_logs/lab-6.16.3-defrag1 --format html --output out/report.html
        mmtriage triage /var/log/kern.log --format json | jq .failures
    """
    from analyzer.attribution import attribute
    from analyzer import report as rp
    from analyzer.plots import plots as draw_plots
    from parsers.bundle import load
    if not (math.isfinite(calibrate) and 0 <= calibrate <= 3600):
        raise ValueError(f"--calibrate {calibrate:g}: give the seconds to fit, 0 to 3600")
    with load(path) as b:
        _check_fixed_in(fixed_in)
        doc = attribute(b, fixed_in)
        if calibrate:
            doc["failures"]["model"] = _model_estimate(b, calibrate)
        images = {}
        if fmt in (ReportFormat.html, ReportFormat.markdown) or plots is not None:
            outdir = plots
            if fmt == ReportFormat.markdown and output is not None and outdir is None:
                outdir = Path(output).parent
            images = draw_plots(doc, b, outdir)
    if fmt == ReportFormat.json:
        stream_json(_triage_doc(doc), output)
    elif fmt == ReportFormat.markdown:
        emit(rp.markdown(doc, {k: v for k, v in images.items() if k.endswith(".png")}), output)
    elif fmt == ReportFormat.html:
        emit(rp.html_report(doc, images), output)
    else:
        emit(rp.table(doc), output)
    if output is not None or fmt != ReportFormat.table:
        err(doc["verdict"])
    if not doc["log"]["found"]:
        raise typer.Exit(NO_LOG_EXIT)


def _model_estimate(bundle, budget: float) -> dict:
    """The calibrated model's failures over the bundle's window, or why there are none."""
    from models.calibrate import calibrate as fit
    err(f"fitting the model to {bundle.host} (budget {budget:,.0f} s)")
    try:
        res = fit(bundle, budget_s=budget)
    except ValueError as e:
        return {"value": None, "why": str(e)}
    est = dict(res["estimated_failures"])
    est.update(evaluations=res["evaluations"], window_s=res["window_s"],
               start_snapshot=res["start_snapshot"])
    return est


def _triage_doc(doc):
    head = {k: v for k, v in doc.items() if k not in ("events", "suppressions")}
    text = dumps(head, None)
    yield text[:-1] + ', "events": '
    yield from json_array(doc["events"])
    yield "}"


@app.command()
@handle_errors
def validate(
    bundle: Annotated[Optional[str], typer.Argument(help="One bundle (or log) spanning the change: "
                                                         "split at the reboot into another kernel, "
                                                         "or where the snapshots' defrag_mode changed.")] = None,
    before: Annotated[Optional[str], typer.Option(help="Bundle (or log) from before the change.")] = None,
    after: Annotated[Optional[str], typer.Option(help="Bundle (or log) from after the change.")] = None,
    fmt: Annotated[ReportFormat, typer.Option("--format", "-f", help="Report format.")] = ReportFormat.table,
    output: OutputOpt = None,
    fixed_in: Annotated[Optional[list[str]], typer.Option("--fixed-in", help="A kernel release "
                        "(prefix) known to carry the fix; repeatable.")] = None,
    calibrate: Annotated[float, typer.Option("--calibrate", help="Also fit the model to the "
                         "before window for this many seconds and replay it under the after "
                         "policy (0: only the decision-model check).")] = 0.0,
):
    """Did the change (a fixed kernel, or defrag_mode=0) fix the host? Exit 0 fixed, 3 not
    fixed, 4 inconclusive, 1 error.

    Example:

        mmtriage validate --before bundle-week1 --after bundle-week2 && echo rollout ok
        mmtriage validate /var/log/kern.log   # a log spanning the reboot into the new kernel
        mmtriage validate --before sample_logs/lab-6.16.3-defrag1 --after sample_logs/lab-6.16.3-defrag0 -f html -o out/validate.html
    """
    from analyzer import validate_report as vr
    from analyzer.validate import EXIT, split_at_change, validate as run
    from parsers.bundle import load
    if bundle is not None and (before or after):
        raise ValueError("give either one BUNDLE or --before and --after")
    _check_fixed_in(fixed_in)
    if not (math.isfinite(calibrate) and 0 <= calibrate <= 3600):
        raise ValueError(f"--calibrate {calibrate:g}: give the seconds to fit, 0 to 3600")
    if bundle is not None:
        with load(bundle) as whole:
            b, a, where = split_at_change(whole)
            doc = run(b, a, fixed_in, calibrate or None)
        doc["split"] = where
        if where.get("defrag_mode"):
            doc["reasons"].insert(0, f"split where defrag_mode went from {where['defrag_mode']['before']} "
                                     f"to {where['defrag_mode']['after']} (snapshot at {where['time_wall']})")
        else:
            doc["reasons"].insert(0, f"split at the reboot into {where['after_kernel']} "
                                     f"({where['source']}:{where['line']}"
                                     + (f", {where['time_wall']}" if where["time_wall"] else "") + ")")
    elif before and after:
        with load(before) as b, load(after) as a:
            doc = run(b, a, fixed_in, calibrate or None)
    else:
        raise ValueError("give one BUNDLE spanning the change, or --before and --after")
    if fmt == ReportFormat.json:
        emit(dumps(doc), output)
    elif fmt == ReportFormat.markdown:
        emit(vr.markdown(doc), output)
    elif fmt == ReportFormat.html:
        emit(vr.html_report(doc), output)
    else:
        emit(vr.table(doc), output)
    raise typer.Exit(EXIT[doc["verdict"]])


from enum import Enum  # noqa: E402


class MetricsFormat(str, Enum):
    openmetrics = "openmetrics"
    prometheus = "prometheus"
    json = "json"


@app.command()
@handle_errors
def metrics(
    bundle: Annotated[Optional[str], typer.Argument(help="A bundle to export instead of this "
                                                         "host (its last snapshot).")] = None,
    proc_root: Annotated[Path, typer.Option(help="Where /proc is mounted (live host).")] = Path("/proc"),
    kmsg: Annotated[str, typer.Option(help="Kernel log device for the failure counters, read "
                                           "non-blocking ('' to skip).")] = "/dev/kmsg",
    textfile_dir: Annotated[Optional[Path], typer.Option(help="Write DIR/mmtriage.prom atomically "
                            "for node_exporter's textfile collector (Prometheus text format) and "
                            "keep the kernel-log state file beside it; nothing on stdout.")] = None,
    snapshot: Annotated[Optional[str], typer.Option(help="With BUNDLE: export this snapshot "
                        "(folder name) instead of the last; failures count up to it.")] = None,
    state: Annotated[Optional[Path], typer.Option(help="Kernel-log state file (default: "
                     "DIR/mmtriage.state.json with --textfile-dir; without either the whole "
                     "ring buffer is counted each run).")] = None,
    fixed_in: Annotated[Optional[list[str]], typer.Option("--fixed-in", help="A kernel release "
                        "(prefix) known to carry the fix; repeatable.")] = None,
    fmt: Annotated[MetricsFormat, typer.Option("--format", "-f", help="Output format.")] = MetricsFormat.openmetrics,
    output: OutputOpt = None,
):
    """OpenMetrics for this host or a bundle: free memory by migratetype, pageblocks,
    watermarks, the defrag_mode bailout risk, failures by cause. Read only.

    Example:

        mmtriage metrics --textfile-dir /var/lib/prometheus/node-exporter
        mmtriage metrics sample_logs/lab-6.16.3-defrag1 --snapshot 20261125T200043Z
    """
    from analyzer import metrics as m
    _check_fixed_in(fixed_in)
    if bundle is not None:
        if state is not None:
            raise ValueError("--state is for the live host's kernel log, not a BUNDLE")
        view = m.bundle_view(bundle, snapshot, fixed_in)
    else:
        if snapshot is not None:
            raise ValueError("--snapshot needs a BUNDLE")
        if state is None and textfile_dir is not None:
            state = textfile_dir / m.STATE_NAME
        view = m.live_view(proc_root, kmsg or None, state, fixed_in)
    for w in view.warnings:
        err(f"warning: {w}")
    if textfile_dir is not None:
        m.write_textfile(view, textfile_dir)
    if textfile_dir is None or output is not None:
        emit(m.render(view, fmt.value), output)


from analyzer import model_cli  # noqa: E402

app.add_typer(model_cli.app, name="model")
from analyzer import fleet_cli  # noqa: E402

app.add_typer(fleet_cli.app, name="fleet")
from analyzer import lab_cli  # noqa: E402

app.add_typer(lab_cli.app, name="lab")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
