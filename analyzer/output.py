"""One renderer for every command: json (default for machines), ndjson, csv, table (rich).

JSON goes to stdout and nothing else does; diagnostics go to stderr. ``--output FILE`` writes
atomically (a temporary file renamed into place), so a failed run leaves nothing half-written.
"""
from __future__ import annotations

import contextlib
import csv
import functools
import itertools
import io
import json
import math
import os
import stat
import sys
import tempfile
from enum import Enum
from pathlib import Path
from typing import Iterator

import typer

from parsers.errors import ParseError


class Format(str, Enum):
    json = "json"
    ndjson = "ndjson"
    csv = "csv"
    table = "table"


class ReportFormat(str, Enum):
    table = "table"
    json = "json"
    markdown = "markdown"
    html = "html"


def _default(o):
    if hasattr(o, "isoformat"):
        return o.isoformat()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _clean(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def dumps(obj, indent: int | None = 2) -> str:
    return json.dumps(_clean(obj), indent=indent, default=_default, ensure_ascii=False)


def _target(path: str | Path) -> Path:
    """The file an output goes to; a folder there is refused before anything is written."""
    path = Path(path)
    if path.is_dir():
        raise ParseError(str(path), 0, "is a directory: give a file name for the output")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_atomic(path: str | Path, data: str | bytes) -> None:
    data = data.encode() if isinstance(data, str) else data
    _write_pieces([data], path, "wb")


def _special(path: Path) -> bool:
    """A device or pipe (/dev/null, /dev/stdout, a FIFO): written in place, never renamed over."""
    try:
        return not stat.S_ISREG(path.stat().st_mode) and not path.is_dir()
    except OSError:
        return False


def _write_pieces(pieces, path: str | Path, mode: str) -> None:
    """A file written whole or not at all: a temporary file beside it, renamed into place."""
    path = Path(path)
    if _special(path):
        with open(path, mode) as fh:
            for piece in pieces:
                fh.write(piece)
        return
    path = _target(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            for piece in pieces:
                fh.write(piece)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def stream_json(parts, output: Path | None = None) -> None:
    """Write a JSON document given as an iterable of text pieces (str, or UTF-8 bytes), without
    building it whole."""
    if output is None:
        out = sys.stdout
        buf = getattr(out, "buffer", None)  # a StringIO stand-in has none
        for piece in parts:
            if type(piece) is not bytes:
                out.write(piece)
            elif buf is None:
                out.write(piece.decode("utf-8", "surrogateescape"))
            else:
                out.flush()
                buf.write(piece)
        out.write("\n")
        out.flush()
        return
    _write_pieces((p if type(p) is bytes else p.encode("utf-8", "surrogateescape")
                   for p in itertools.chain(parts, ["\n"])), output, "wb")


BATCH = 2048  # array items per piece: few large writes, a bounded piece whatever the array


def json_array(items, indent: str = "  ", raw: type | None = None) -> "Iterator[str | bytes]":
    """A JSON array with one compact item per line (the C encoder; no indent walk), yielded
    in pieces of up to ``BATCH`` items. With ``raw=bytes``, an item that is bytes is already its
    UTF-8 JSON text, and the pieces are bytes."""
    enc = json.JSONEncoder(default=_default, ensure_ascii=False, allow_nan=False).encode
    binary = raw is bytes
    sep = ",\n" + indent
    lead = "\n" + indent
    if binary:
        sep, lead = sep.encode(), lead.encode()
    batch: list = []
    first = True
    yield b"[" if binary else "["
    for it in items:
        if binary and type(it) is bytes:
            batch.append(it)
        else:
            try:
                text = enc(it)
            except ValueError:
                text = enc(_clean(it))
            # a non-UTF-8 file name keeps its bytes, as stdout's surrogateescape writes them
            batch.append(text.encode("utf-8", "surrogateescape") if binary else text)
        if len(batch) >= BATCH:
            yield (lead if first else sep) + sep.join(batch)
            first = False
            batch = []
    if batch:
        yield (lead if first else sep) + sep.join(batch)
        first = False
    end = "\n]" if not first else "]"
    yield end.encode() if binary else end


def emit(text: str, output: Path | None = None) -> None:
    if output is not None:
        write_atomic(output, text if text.endswith("\n") else text + "\n")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()


def rows_text(rows: list[dict], fmt: Format, title: str | None = None,
              cols: list[str] | None = None) -> str:
    if fmt == Format.json:
        return dumps(rows)
    if fmt == Format.ndjson:
        return "".join(dumps(r, None) + "\n" for r in rows)
    cols = list(cols or [])
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    if fmt == Format.csv:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (dumps(v, None) if isinstance(v, (dict, list)) else v)
                        for k, v in r.items()})
        return buf.getvalue()
    return table_text(rows, cols, title)


def table_text(rows: list[dict], cols: list[str] | None = None, title: str | None = None) -> str:
    from rich.console import Console
    from rich.table import Table
    cols = cols or (list(rows[0].keys()) if rows else [])
    t = Table(title=title)
    for c in cols:
        t.add_column(str(c))
    for r in rows:
        t.add_row(*[_cell(r.get(c), str(c)) for c in cols])
    buf = io.StringIO()
    Console(file=buf, width=160, force_terminal=False, color_system=None).print(t)
    return buf.getvalue()


_PLAIN_INT = ("line", "mask", "gfp_mask", "seq", "pid", "node", "order")


def _cell(v, col: str = "") -> str:
    if v is None:
        return ""
    if isinstance(v, int) and not isinstance(v, bool) and (col in _PLAIN_INT or
                                                           col.endswith(("_mask", "_line"))):
        return str(v)   # identifiers, not quantities
    if isinstance(v, float) and col.endswith("time_s"):
        return f"{v:,.6f}"   # kernel stamps carry microseconds
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        return num(v)
    if isinstance(v, dict):
        s = ", ".join(f"{k}: {_cell(x)}" for k, x in v.items())
        return s if len(s) < 80 else s[:77] + "..."
    if isinstance(v, (list, tuple)):
        s = ", ".join(_cell(x) for x in v)
        return s if len(s) < 80 else s[:77] + "..."
    return str(v)


# Numbers for people: thousands separators, a precision that fits the size, never scientific
# notation; units say what the number is.

def num(v, digits: int | None = None) -> str:
    """2975 -> '2,975'; 178563.8 -> '178,564'; 12.345 -> '12.3'; 0.01234 -> '0.012'."""
    if v is None:
        return "?"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int) or (hasattr(v, "is_integer") and float(v).is_integer() and digits is None
                              and abs(v) < 1e15):
        return f"{int(v):,}"
    v = float(v)
    if not math.isfinite(v):
        return "?"
    if digits is None:
        a = abs(v)
        digits = 0 if a >= 100 else 1 if a >= 10 else 2 if a >= 1 else 3
        if 0 < a < 0.001:
            return "< 0.001" if v > 0 else "> -0.001"
    return f"{v:,.{digits}f}"


def mib(v) -> str:
    """Memory in MiB -> '1.2 GiB', '345 MiB', '0.6 MiB'."""
    if v is None:
        return "?"
    if abs(v) >= 1024:
        return f"{v / 1024:,.1f} GiB"
    if abs(v) >= 10 or v == 0:
        return f"{v:,.0f} MiB"
    return f"{v:.1f} MiB"


def kib(v) -> str:
    """Memory in kB (KiB, as the kernel prints it) -> the same scale as ``mib``."""
    if v is None:
        return "?"
    if abs(v) < 1024:
        return f"{int(v):,} kB"
    return mib(v / 1024)


def duration(seconds) -> str:
    """Seconds -> '45 s', '12.5 min', '3.2 h', '4.1 days'."""
    if seconds is None:
        return "?"
    s = float(seconds)
    if s < 120:
        return f"{s:,.1f} s" if s < 10 else f"{s:,.0f} s"
    if s < 7200:
        return f"{s / 60:,.1f} min"
    if s < 3 * 86400:
        return f"{s / 3600:,.1f} h"
    return f"{s / 86400:,.1f} days"


def share(x) -> str:
    return "?" if x is None else f"{x:.0%}"


def err(msg: str) -> None:
    sys.stderr.write(msg.rstrip("\n") + "\n")


def one_line(text: str) -> str:
    """An error stays one line whatever a path or token holds (a newline in a file name)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def fail(e: Exception) -> "typer.Exit":
    if isinstance(e, ParseError):
        err(one_line(f"Error: {e}"))
    elif isinstance(e, OSError):
        err(one_line(f"Error: {getattr(e, 'filename', '') or ''}: {e.strerror or e}"
                     .replace("Error: : ", "Error: ")))
    else:
        err(one_line(f"Error: {e}"))
    return typer.Exit(1)


MAX_WARNINGS = 50


def _print_warnings(caught) -> None:
    """What the input had skipped, one ``Warning: path:line: what`` line each, at most
    ``MAX_WARNINGS``, then how many more there were."""
    from parsers.errors import InputWarning
    lines = [one_line(f"Warning: {w.message}") for w in caught
             if issubclass(w.category, InputWarning)]
    for line in lines[:MAX_WARNINGS]:
        err(line)
    if len(lines) > MAX_WARNINGS:
        err(f"Warning: {len(lines) - MAX_WARNINGS:,} more warnings not shown")


def handle_errors(fn):
    """Turn library errors into one ``Error: path:line: reason`` line and exit status 1; input
    warnings into ``Warning:`` lines."""
    @functools.wraps(fn)
    def wrapper(*a, **kw):
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                return _run(fn, a, kw)
            finally:
                _print_warnings(caught)
    return wrapper


def _run(fn, a, kw):
    """The command, with every way it can fail turned into the contract's exit and line."""
    try:
        return fn(*a, **kw)
    except typer.Exit:
        raise
    except BrokenPipeError:
        # The reader went away (| head): not an error of ours; keep Python quiet at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(0) from None
    except (ParseError, OSError, ValueError) as e:
        raise fail(e) from None
    except KeyboardInterrupt:
        err("Error: interrupted")
        raise typer.Exit(130) from None
    except Exception as e:  # a bug of ours: one line, the traceback only on request
        if os.environ.get("MMTRIAGE_DEBUG") == "1":
            raise
        # parsers tag an escaping exception with the file and line they were reading
        where = getattr(e, "mmtriage_where", None) or "the input"
        err(one_line(f"Error: internal error reading {where}: {type(e).__name__}: {e}; "
                     "please report it with this line (MMTRIAGE_DEBUG=1 shows the traceback)"))
        raise typer.Exit(70) from None

