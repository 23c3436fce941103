"""/proc/slabinfo (version 2.1): per cache active/total objects, object size, slab sizes."""
from __future__ import annotations

from pathlib import Path

from parsers._util import data_lines, read_text, skip, to_int
from parsers.errors import ParseError


def parse(text: str, path: str = "slabinfo") -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for i, line in data_lines(text, path):
        if line.startswith("slabinfo -") or line.lstrip().startswith("#"):
            continue
        head = line.split(":")[0].split()
        tail = line.split("slabdata")
        slabs = tail[1].split() if len(tail) > 1 else []
        if len(head) < 6 or not all(t.isdigit() for t in head[1:6] + slabs[:2]):
            skip(path, i, "not a slabinfo line", line)
            continue
        nums = [to_int(t, path, i) for t in head[1:6]]
        out[head[0]] = {"active_objs": nums[0], "num_objs": nums[1], "objsize": nums[2],
                        "objperslab": nums[3], "pagesperslab": nums[4],
                        "active_slabs": to_int(slabs[0], path, i) if slabs else 0,
                        "num_slabs": to_int(slabs[1], path, i) if len(slabs) > 1 else 0}
    if not out and text.strip():
        raise ParseError(path, 0, "no cache lines: not a slabinfo file")
    return out


def read(root: str | Path = "/proc") -> dict[str, dict[str, int]]:
    return parse(read_text(root, "slabinfo"), str(Path(root) / "slabinfo"))
