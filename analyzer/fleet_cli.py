"""``mmtriage fleet ...``: many hosts in one parquet dataset."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from analyzer.output import Format, ReportFormat, dumps, emit, err, handle_errors, rows_text

app = typer.Typer(help="Fleet: ingest bundles into a parquet dataset, report with DuckDB.",
                  no_args_is_help=True)


def _expand(paths: list[str]) -> list[str]:
    """A directory holding bundles (not itself a bundle) expands to its entries."""
    out = []
    for p in paths:
        q = Path(p)
        if q.is_dir() and not (q / "meta.json").exists() and not (q / "snapshots").exists() \
                and not any((q / n).exists() for n in ("dmesg", "kern.log", "messages", "kmsg",
                                                       "sos_commands")):
            from parsers.bundle import is_tarball
            out += sorted(str(x) for x in q.iterdir() if not x.name.startswith(".")
                          and (x.is_dir() or is_tarball(x)))
        else:
            out.append(p)
    return out


@app.command()
@handle_errors
def ingest(
    paths: Annotated[list[str], typer.Argument(help="Bundles, tarballs, sosreports, or folders of them.")],
    dataset: Annotated[Path, typer.Option(help="The dataset folder (created if missing).")],
    engine: Annotated[str, typer.Option(help="local (process pool) or dask.")] = "local",
    scheduler: Annotated[Optional[str], typer.Option(help="Dask scheduler, e.g. tcp://10.0.0.5:8786; "
                                                          "without it --engine dask starts a LocalCluster.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes (default: CPU count).")] = None,
    batch_size: Annotated[int, typer.Option(help="Bundles per committed batch.")] = 500,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.json,
):
    """Ingest bundles into a hive-partitioned parquet dataset (idempotent, crash-safe).

    Example:

        mmtriage fleet ingest /srv/bundles/ --dataset fleet.parquet --engine dask
    """
    from analyzer.fleet import ingest as run
    paths = _expand(paths)
    prog = None
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import Progress
        prog = Progress(console=Console(stderr=True), transient=True)
        task = prog.add_task("ingesting", total=len(paths))
        prog.start()
    try:
        res = run(paths, dataset, engine, scheduler, workers, batch_size,
                  progress=(lambda d, t: prog.update(task, completed=d, total=t)) if prog else None,
                  log=err)
    finally:
        if prog:
            prog.stop()
    emit(dumps(res) if fmt == Format.json else rows_text(
        [{"field": k, "value": v} for k, v in res.items()], fmt))
    if res["errors"] and not res["ingested"] and not res["skipped"]:
        raise typer.Exit(1)


@app.command()
@handle_errors
def report(
    dataset: Annotated[Path, typer.Option(help="The dataset folder.")],
    kernel: Annotated[Optional[str], typer.Option(help="Only kernels starting with this (or a * pattern).")] = None,
    since: Annotated[Optional[str], typer.Option(help="Only hosts seen since this UTC time (ISO 8601).")] = None,
    host: Annotated[Optional[str], typer.Option(help="Only hosts matching this (* pattern).")] = None,
    top: Annotated[int, typer.Option(help="Rows in the ranked tables.")] = 20,
    fmt: Annotated[ReportFormat, typer.Option("--format", "-f", help="Report format.")] = ReportFormat.table,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the report here.")] = None,
    plots: Annotated[Optional[Path], typer.Option(help="Also write the plots here.")] = None,
):
    """Fleet-wide report computed with DuckDB: ranked hosts, causes, kernels, patch-first list.

    Example:

        mmtriage fleet report --dataset fleet.parquet --kernel 6.17 --format markdown
    """
    from analyzer import fleet_report as fr
    doc = fr.report(dataset, kernel, since, host, top)
    images = {}
    if plots is not None or fmt == ReportFormat.html:
        images = fr.plots(doc)
        if plots is not None:
            plots.mkdir(parents=True, exist_ok=True)
            for n, v in images.items():
                (plots / n).write_bytes(v)
    if fmt == ReportFormat.json:
        emit(dumps({k: v for k, v in doc.items() if k != "distribution"}), output)
    elif fmt == ReportFormat.markdown:
        emit(fr.markdown(doc), output)
    elif fmt == ReportFormat.html:
        emit(fr.html_report(doc, images), output)
    else:
        from analyzer.output import table_text
        t = doc["totals"]
        text = table_text([{"field": k, "value": v} for k, v in t.items()], title="fleet")
        text += table_text([{"cause": k, "estimated": v, "share": doc["share_by_cause"][k]}
                            for k, v in doc["by_cause_estimated"].items()], title="by cause")
        if doc["top_hosts"]:
            text += table_text([{k: v for k, v in r.items() if k != "verdict"}
                                for r in doc["top_hosts"]], title="top hosts")
        if doc["kernel_matrix"]:
            text += table_text(doc["kernel_matrix"], title="kernel x defrag_mode x fix")
        emit(text, output)


@app.command()
@handle_errors
def query(
    sql: Annotated[str, typer.Argument(help="SQL over the views hosts, events, pagetypeinfo, "
                                            "buddyinfo, zoneinfo, vmstat, manifest.")],
    dataset: Annotated[Path, typer.Option(help="The dataset folder.")],
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the result here.")] = None,
):
    """Ad-hoc DuckDB SQL over the dataset's tables.

    Example:

        mmtriage fleet query --dataset fleet.parquet "SELECT cause, count(*) FROM events GROUP BY 1"
    """
    from analyzer.fleet import connect
    import duckdb
    con = connect(dataset)
    try:
        cur = con.execute(sql)
    except duckdb.Error as e:
        raise ValueError(f"<sql>:1: {str(e).splitlines()[0]}") from None
    cols = [d[0] for d in cur.description]
    rows = [dict(zip(cols, r)) for r in cur.fetchall()]
    emit(rows_text(rows, fmt), output)


@app.command("validate")
@handle_errors
def validate_cmd(
    dataset: Annotated[Path, typer.Option(help="The dataset folder.")],
    before_kernel: Annotated[str, typer.Option(help="Kernel release (prefix) of the before window.")],
    after_kernel: Annotated[str, typer.Option(help="Kernel release (prefix) of the after window.")],
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the result here.")] = None,
):
    """Per host: did moving from one kernel to another fix it? Pairs each host's newest bundle
    on each kernel and runs `mmtriage validate` on them (the bundles must still be at the path
    they were ingested from). Prints the fleet summary: fixed, not fixed, inconclusive.

    Example:

        mmtriage fleet validate --dataset fleet.parquet --before-kernel 6.17 --after-kernel 7.2
    """
    from analyzer.fleet import connect
    from analyzer.validate import validate as run
    from parsers.bundle import load
    con = connect(dataset)
    rows = con.execute("""SELECT host, kernel_release, source_path, last_time FROM hosts
        ORDER BY host, last_time""").fetchall()
    pairs: dict = {}
    for host, kr, path, _t in rows:
        side = "before" if kr and kr.startswith(before_kernel) else (
            "after" if kr and kr.startswith(after_kernel) else None)
        if side:
            pairs.setdefault(host, {})[side] = path
    results = []
    for host, p in sorted(pairs.items()):
        if "before" not in p or "after" not in p:
            continue
        try:
            with load(p["before"]) as b, load(p["after"]) as a:
                d = run(b, a)
            results.append({"host": host, "verdict": d["verdict"], "rate_ratio": d["rate_ratio"],
                            "p_value": d["p_value"], "reason": d["reasons"][0]})
        except (OSError, ValueError) as e:
            results.append({"host": host, "verdict": "inconclusive", "rate_ratio": None,
                            "p_value": None, "reason": f"bundle not readable: {e}"})
    summary = {v: sum(1 for r in results if r["verdict"] == v)
               for v in ("fixed", "not_fixed", "inconclusive")}
    doc = {"before_kernel": before_kernel, "after_kernel": after_kernel,
           "hosts_paired": len(results), "summary": summary, "hosts": results}
    if fmt == Format.json:
        emit(dumps(doc), output)
    else:
        emit(rows_text(results, fmt) + f"summary: {summary}\n", output)
