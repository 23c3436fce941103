"""/proc/net/dev (net/core/net-procfs.c ``dev_seq_show``): per interface, 8 receive and 8 transmit
counters. Demand for a host with no ICMP counters (packets sent), and drops that corroborate
failed skb allocations (``rx_drop``)."""
from __future__ import annotations

from pathlib import Path

from parsers._util import data_lines, read_text, skip, to_int
from parsers.errors import ParseError

FIELDS = ("bytes", "packets", "errs", "drop", "fifo", "frame", "compressed", "multicast")
TX_FIELDS = ("bytes", "packets", "errs", "drop", "fifo", "colls", "carrier", "compressed")
COLUMNS = tuple(f"rx_{f}" for f in FIELDS) + tuple(f"tx_{f}" for f in TX_FIELDS)


def parse(text: str, path: str = "net/dev") -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for i, line in data_lines(text, path):
        name, sep, rest = line.partition(":")
        if not sep or "|" in line:
            if "|" not in line:
                skip(path, i, "not an interface line", line)
            continue  # the two header lines
        vals = rest.split()
        if len(vals) != len(COLUMNS) or not all(v.isdigit() for v in vals):
            skip(path, i, f"expected {len(COLUMNS)} counters", line)
            continue
        out[name.strip()] = {c: to_int(v, path, i, c) for c, v in zip(COLUMNS, vals)}
    if not out:
        raise ParseError(path, 0, "no interface lines: not a net/dev file")
    return out


def read(root: str | Path = "/proc") -> dict[str, dict[str, int]]:
    return parse(read_text(root, "net/dev"), str(Path(root) / "net/dev"))
