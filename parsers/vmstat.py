"""/proc/vmstat (mm/vmstat.c ``vmstat_show``): ``name value`` per line. The key set depends on
version and config (e.g. ``nr_free_pages_blocks`` is 6.15+), so keys are kept as the kernel
names them and never required."""
from __future__ import annotations

from pathlib import Path

from parsers._util import read_text, to_int
from parsers.errors import ParseError


def parse(text: str, path: str = "vmstat") -> dict[str, int]:
    out: dict[str, int] = {}
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ParseError(path, i, "expected 'name value'", line)
        out[parts[0]] = to_int(parts[1], path, i, "counter")
    if not out:
        raise ParseError(path, 0, "empty vmstat")
    return out


def read(root: str | Path = "/proc") -> dict[str, int]:
    return parse(read_text(root, "vmstat"), str(Path(root) / "vmstat"))


def render(counters: dict[str, int]) -> str:
    return "".join(f"{k} {v}\n" for k, v in counters.items())
