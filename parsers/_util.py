"""Shared helpers for the /proc parsers: reading whole pseudo-files, strict integers, and the
lines of a file as people paste it (mail quoting, shell prompts, CR line ends, cut short)."""
from __future__ import annotations

import re
from pathlib import Path

from parsers.errors import ParseError, warn

# A /proc file is a few KiB (zoneinfo of a large NUMA host a few MiB): more is not one.
MAX_PROC_BYTES = 64 << 20
MAX_VALUE = (1 << 64) - 1   # an unsigned long: beyond it is not a value a kernel prints
QUOTE = re.compile(r"^(?:[ \t]*>)+ ?")
PROMPT = re.compile(r"^\s*(?:\[[^\]]*\]\s*|[\w.+-]+@[\w.-]+(?::\S*)?\s*|[\w.-]+:\S*\s*|\S*\s)?"
                     r"[#$%]\s*(?:\S+/)?(?:cat|sudo|less|more|head|tail|grep|ls|echo|dmesg)\b")


def to_int(token: str, path: str, line: int, what: str = "number") -> int:
    try:
        v = int(token)
    except ValueError:
        raise ParseError(path, line, f"bad {what}", token) from None
    if not -(1 << 63) <= v <= MAX_VALUE:
        raise ParseError(path, line, f"{what} out of range", token)
    return v


def data_lines(text: str, path: str) -> list[tuple[int, str]]:
    """``(line number, line)`` of a /proc file's text with what a paste adds taken off: mail
    quoting, CRs and shell-prompt lines (each skipped one is warned about with its number).
    A last line without its newline is warned about as possibly cut short."""
    out = []
    lines = text.splitlines()
    for i, raw in enumerate(lines, 1):
        line = raw.replace("\r", "").replace("\x00", "")
        if i == 1 and line[:1] == "\ufeff":  # a byte order mark (Notepad, PowerShell)
            line = line[1:]
        if line.lstrip()[:1] == ">":
            line = QUOTE.sub("", line)
        if PROMPT.match(line):
            warn(path, i, "skipped a shell prompt line", line.strip())
            continue
        if not line.strip():
            continue
        out.append((i, line))
    if text and not text.endswith(("\n", "\r")):
        warn(path, len(lines), "the file ends mid-line (cut short?)", lines[-1])
    return out


_NUMBERS = re.compile(r"^\s*>?\d+(?:\s+>?\d+)*\s*$")


def unwrapped(lines: list[tuple[int, str]]) -> list[tuple[int, str, str | None, str]]:
    """A table's rows put back together where a mailer or terminal wrapped them: a line of
    numbers alone on the very next line continues the line before (no pagetypeinfo or
    buddyinfo line is only numbers). ``(line number, joined at a space, joined as cut or None,
    the row as it stood)``: a mailer breaks at a space and may drop it, a terminal cuts at a
    column, maybe through a number; the caller keeps whichever has the table's column count,
    the row as it stood first (a whole row followed by a stray number is not wrapped)."""
    out: list[list] = []
    last = None
    for i, line in lines:
        if out and i == last + 1 and _NUMBERS.match(line):
            row = out[-1]
            row[2] = (row[2] if row[2] is not None else row[1]) + line.rstrip()
            row[1] = row[1].rstrip() + " " + line.strip()
        else:
            out.append([i, line, None, line])
        last = i
    return [(i, a, b, c) for i, a, b, c in out]


def last_cut(text: str, lines: list[tuple[int, str]]) -> int | None:
    """The number of the last data line when the text ends mid-line (cut short), else None."""
    return lines[-1][0] if lines and text and not text.endswith(("\n", "\r")) else None


def skip(path: str, line: int, what: str, raw: str) -> None:
    """A line that is not data: warned about, and the rest of the file is still read."""
    warn(path, line, f"skipped: {what}", raw.strip())


def read_capped(fh, cap: int = MAX_PROC_BYTES) -> bytes:
    """Up to ``cap`` + 1 bytes, in pieces: a sysctl file allocates a kernel buffer the size of
    the read asked for, and a 64 MiB ask fails with ENOMEM."""
    parts, size = [], 0
    while size <= cap:
        piece = fh.read(min(1 << 16, cap + 1 - size))
        if not piece:
            break
        parts.append(piece)
        size += len(piece)
    return b"".join(parts)


def read_text(root: str | Path, name: str) -> str:
    """Read a /proc file in one go (its stat size is wrong and it can change between reads)."""
    p = Path(root) / name
    try:
        with open(p, "rb") as fh:
            data = read_capped(fh)
    except FileNotFoundError as err:
        raise ParseError(str(p), 0, "no such file") from err
    except PermissionError as err:
        raise ParseError(str(p), 0, "permission denied (pagetypeinfo needs root since ~5.4)") from err
    except OSError as err:
        raise ParseError(str(p), 0, err.strerror or str(err)) from err
    if len(data) > MAX_PROC_BYTES:
        raise ParseError(str(p), 0, f"larger than {MAX_PROC_BYTES >> 20} MiB: not a /proc file")
    return data.decode("utf-8-sig", "replace")
