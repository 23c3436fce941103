"""``mmtriage fleet ...``: many hosts in one parquet dataset."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from analyzer.output import Format, ReportFormat, dumps, emit, err, handle_errors, rows_text
from parsers.errors import ParseError

EXIT_PARTIAL = 3      # ingest: some bundles unreadable (listed), the others landed
EXIT_NO_ANSWER = 4    # validate: no host has bundles on both kernels (as `validate`'s inconclusive)
EXIT_BUSY = 75        # ingest: another ingest holds the dataset (EX_TEMPFAIL: try again later)

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


@app.command(epilog="Exit status: 0 every bundle landed (or was already there); 3 some bundles "
                   "could not be read: each is named on stderr and in the output's \"errors\", "
                   "the others landed; 1 nothing could be ingested, or bad options (a dataset "
                   "this run created is removed); 75 another ingest holds the dataset "
                   "(see --wait).")
@handle_errors
def ingest(
    paths: Annotated[list[str], typer.Argument(help="Bundles, tarballs, sosreports, or folders of them.")],
    dataset: Annotated[Path, typer.Option(help="The dataset folder (created if missing; an existing "
                                               "folder must be a dataset or empty).")],
    engine: Annotated[str, typer.Option(help="local (process pool) or dask.")] = "local",
    scheduler: Annotated[Optional[str], typer.Option(help="Dask scheduler, e.g. tcp://10.0.0.5:8786; "
                                                          "without it --engine dask starts a LocalCluster.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes (default: CPU count).")] = None,
    batch_size: Annotated[int, typer.Option(help="Bundles per committed batch.")] = 500,
    wait: Annotated[float, typer.Option(help="If another ingest is writing the dataset, wait up to "
                                             "this many seconds for it (default: refuse at once).")] = 0.0,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.json,
):
    """Ingest bundles into a hive-partitioned parquet dataset (idempotent, crash-safe).

    One ingest writes a dataset at a time (a lock held for the run); a second one refuses, or
    waits with --wait. A bundle that cannot be read is skipped with its error; the rest land.

    Example:

        mmtriage fleet ingest /srv/bundles/ --dataset fleet.parquet --engine dask
    """
    from analyzer.fleet import DatasetBusy, ingest as run
    given = paths
    paths = _expand(paths)
    if not paths:
        raise ParseError(" ".join(given), 0, "no bundles found (a bundle is a folder with "
                                             "meta.json, snapshots/ or a kernel log, or a tarball)")
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
                  log=(lambda m: prog.console.print(m, markup=False, highlight=False)) if prog else err,
                  wait=wait)
    except DatasetBusy as e:
        err(f"Error: {e}")
        raise typer.Exit(EXIT_BUSY) from None
    finally:
        if prog:
            prog.stop()
    if fmt == Format.json:
        emit(dumps(res))
    elif fmt == Format.table:
        emit(_ingest_table(res))
    else:
        emit(rows_text([{"field": k, "value": v} for k, v in res.items()], fmt))
    if res["errors"]:
        raise typer.Exit(1 if not res["ingested"] and not res["skipped"] else EXIT_PARTIAL)


def _ingest_table(res: dict) -> str:
    from analyzer.fleet_report import human
    from analyzer.output import table_text
    rows = [{"field": k, "value": human(v) if k != "wall_s" else f"{v:,.1f} s"}
            for k, v in res.items() if k not in ("errors", "warnings")]
    rows.insert(3, {"field": "errors", "value": human(len(res["errors"]))})
    rows.insert(4, {"field": "warnings", "value": human(len(res["warnings"]))})
    text = table_text(rows, title="fleet ingest")
    if res["errors"]:
        text += table_text(res["errors"], title="bundles skipped")
    return text


@app.command(epilog="Hosts are distinct hosts, each counted at its newest bundle (by its last "
                    "event or snapshot time) among those the filters keep; --all-bundles counts "
                    "every bundle. Exit status 0, also when nothing matches (the report says so); "
                    "1 on a bad option or dataset.")
@handle_errors
def report(
    dataset: Annotated[Path, typer.Option(help="The dataset folder.")],
    kernel: Annotated[Optional[str], typer.Option(help="Only kernels starting with this (or a * pattern).")] = None,
    since: Annotated[Optional[str], typer.Option(help="Only bundles seen since this time (ISO 8601 "
                                                      "date or time; UTC unless it says otherwise).")] = None,
    host: Annotated[Optional[str], typer.Option(help="Only hosts matching this (* pattern).")] = None,
    top: Annotated[int, typer.Option(help="Rows in the ranked tables (0 or more).")] = 20,
    all_bundles: Annotated[bool, typer.Option("--all-bundles", help="Count every bundle, not "
                                                                    "each host's newest.")] = False,
    fmt: Annotated[ReportFormat, typer.Option("--format", "-f", help="Report format.")] = ReportFormat.table,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the report here.")] = None,
    plots: Annotated[Optional[Path], typer.Option(help="Also write the plots here.")] = None,
):
    """Fleet-wide report computed with DuckDB: ranked hosts, causes, kernels, patch-first list.

    Example:

        mmtriage fleet report --dataset fleet.parquet --kernel 6.17 --format markdown
    """
    from analyzer import fleet_report as fr
    since_dt = fr.parse_since(since)   # options first: a bad one is named before any work
    fr.check_top(top)
    doc = fr.report(dataset, kernel, since_dt, host, top, all_bundles)
    if doc["note"] and (fmt == ReportFormat.json or output is not None):
        err(f"Note: {doc['note']}")
    images = {}
    if not doc["note"] and (plots is not None or fmt == ReportFormat.html):
        images = fr.plots(doc)
    if plots is not None and not images:
        err(f"Note: nothing to plot; {plots} not written")
    elif plots is not None:
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
        emit(fr.table(doc), output)


@app.command(epilog="Read-only: the query sees the views and nothing else; statements that "
                    "would write or read files (COPY, ATTACH, EXPORT DATABASE, INSTALL/LOAD, "
                    "read_csv and friends) fail. Exit status 0 (an empty dataset or result is "
                    "said on stderr); 1 on an SQL error.")
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
    from analyzer.fleet import bundle_count, connect
    import duckdb
    con = connect(dataset)
    if not bundle_count(con):
        err(f"Note: {dataset} holds no bundles yet: every table is empty.")
    try:
        cur = con.execute(sql)
        cols = [d[0] for d in cur.description] if cur.description else []
        rows = [dict(zip(cols, r)) for r in cur.fetchall()] if cols else []
    except duckdb.Error as e:
        raise ValueError(_sql_error(e)) from None
    if fmt == Format.table:
        from analyzer.fleet_report import human
        from analyzer.output import table_text
        text = table_text([{c: human(r[c]) for c in cols} for r in rows], cols)
        if not rows:
            err("Note: the query returned no rows.")
        emit(text, output)
    else:
        emit(rows_text(rows, fmt), output)


def _sql_error(e: Exception) -> str:
    """DuckDB's message as one line: its LINE n (when it gives one) as the line number."""
    import re
    text = str(e)
    m = re.search(r"^LINE (\d+):", text, re.M)
    first = " ".join(text.split("\n\n")[0].split())
    if type(e).__name__ == "PermissionException":
        first += " (fleet query is read-only and reads only the dataset's tables)"
    return f"<sql>:{m.group(1)}: {first}" if m else f"<sql>: {first}"


@app.command("validate", epilog="Exit status: 0 at least one host paired (verdicts in the "
                                "output); 4 no host has bundles on both kernels (said so); 1 on "
                                "a bad option or dataset.")
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
        ORDER BY host, last_time NULLS FIRST""").fetchall()
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
    note = None
    if not results:
        only_b = sum(1 for p in pairs.values() if "before" in p)
        only_a = sum(1 for p in pairs.values() if "after" in p)
        n_hosts = len({r[0] for r in rows})
        note = (f"No host has bundles on both kernels {before_kernel}* and {after_kernel}*: "
                f"{only_b:,} of {n_hosts:,} host{'s' * (n_hosts != 1)} on {before_kernel}* only, "
                f"{only_a:,} on {after_kernel}* only. Nothing to compare.")
    doc = {"before_kernel": before_kernel, "after_kernel": after_kernel,
           "hosts_paired": len(results), "summary": summary, "note": note, "hosts": results}
    if fmt == Format.json:
        emit(dumps(doc), output)
    elif note:
        emit(rows_text([], fmt) if fmt != Format.table else note, output)
    elif fmt == Format.table:
        from analyzer.fleet_report import human
        from analyzer.output import table_text
        text = table_text([{k: human(v) if k != "verdict" else v.replace("_", " ")
                            for k, v in r.items()} for r in results])
        text += (f"summary: {summary['fixed']:,} fixed, {summary['not_fixed']:,} not fixed, "
                 f"{summary['inconclusive']:,} inconclusive, of {len(results):,} "
                 f"host{'s' * (len(results) != 1)} paired\n")
        emit(text, output)
    else:
        emit(rows_text(results, fmt), output)
    if note:
        if fmt != Format.table or output is not None:
            err(f"Note: {note}")
        raise typer.Exit(EXIT_NO_ANSWER)
