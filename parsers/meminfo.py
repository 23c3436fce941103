"""/proc/meminfo: ``Key:   value kB`` (or a bare count such as ``HugePages_Total``)."""
from __future__ import annotations

import re
from pathlib import Path

from parsers._util import data_lines, read_text, skip, to_int
from parsers.errors import ParseError

_LINE = re.compile(r"^([A-Za-z0-9_()]+):\s+(-?\d+)(?:\s+(kB))?\s*$")


def parse(text: str, path: str = "meminfo") -> dict[str, int]:
    """Values as printed: kB for the kB fields, counts for the others."""
    out: dict[str, int] = {}
    for i, line in data_lines(text, path):
        m = _LINE.match(line.strip())
        if not m:
            skip(path, i, "not a 'Key: value [kB]' line", line)
            continue
        out[m.group(1)] = to_int(m.group(2), path, i)
    if not out:
        raise ParseError(path, 0, "no 'Key: value' fields: not a meminfo file")
    return out


def read(root: str | Path = "/proc") -> dict[str, int]:
    return parse(read_text(root, "meminfo"), str(Path(root) / "meminfo"))
