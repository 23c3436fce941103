"""/proc/vmstat (mm/vmstat.c ``vmstat_show``): ``name value`` per line. The key set depends on
version and config (e.g. ``nr_free_pages_blocks`` is 6.15+), so keys are kept as the kernel
names them and never required."""
from __future__ import annotations

from pathlib import Path

from parsers._util import data_lines, read_text, skip, to_int
from parsers.errors import ParseError


def parse(text: str, path: str = "vmstat") -> dict[str, int]:
    out: dict[str, int] = {}
    for i, line in data_lines(text, path):
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            skip(path, i, "not a 'name value' line", line)
            continue
        out[parts[0]] = to_int(parts[1], path, i, "counter")
    if not out:
        raise ParseError(path, 0, "no 'name value' counters: not a vmstat file")
    return out


def read(root: str | Path = "/proc") -> dict[str, int]:
    return parse(read_text(root, "vmstat"), str(Path(root) / "vmstat"))


def render(counters: dict[str, int]) -> str:
    return "".join(f"{k} {v}\n" for k, v in counters.items())
