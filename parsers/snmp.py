"""/proc/net/snmp: pairs of ``Proto: names`` / ``Proto: values`` lines. Corroborates failures the
log never reported: ``Icmp: OutErrors`` counts echo replies whose skb allocation failed."""
from __future__ import annotations

from pathlib import Path

from parsers._util import data_lines, read_text, skip, to_int
from parsers.errors import ParseError


def parse(text: str, path: str = "net/snmp") -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    lines = []
    for i, ln in data_lines(text, path):
        if ln.partition(":")[0].strip().isalpha():
            lines.append((i, ln))
        else:
            skip(path, i, "not a 'Proto: ...' line", ln)
    if len(lines) % 2:
        raise ParseError(path, lines[-1][0] if lines else 0, "odd number of lines")
    for (i, names), (j, values) in zip(lines[::2], lines[1::2]):
        p1, _, n = names.partition(":")
        p2, _, v = values.partition(":")
        if p1 != p2 or not n:
            raise ParseError(path, j, f"protocol {p2!r} does not match header {p1!r}", values)
        keys, vals = n.split(), v.split()
        if len(keys) != len(vals):
            raise ParseError(path, j, f"{len(vals)} values for {len(keys)} names", values)
        out[p1.strip()] = {k: to_int(x, path, j) for k, x in zip(keys, vals)}
    if not out:
        raise ParseError(path, 0, "empty net/snmp")
    return out


def read(root: str | Path = "/proc") -> dict[str, dict[str, int]]:
    return parse(read_text(root, "net/snmp"), str(Path(root) / "net/snmp"))
