"""/proc/net/softnet_stat (net/core/net-procfs.c ``softnet_seq_show``): one line per CPU of hex
counters. ``dropped`` counts packets dropped because the backlog was full; ``time_squeeze``
NET_RX runs that ran out of budget. Later kernels append columns (received_rps,
flow_limit_count, backlog length, CPU index), so only the first columns are named."""
from __future__ import annotations

from pathlib import Path

from parsers._util import data_lines, read_text, skip
from parsers.errors import ParseError

NAMES = ("processed", "dropped", "time_squeeze", None, None, None, None, None, "cpu_collision",
         "received_rps", "flow_limit_count", "backlog_len", "cpu", "input_qlen", "process_qlen")


def parse(text: str, path: str = "net/softnet_stat") -> list[dict[str, int]]:
    out = []
    for i, line in data_lines(text, path):
        toks = line.split()
        try:
            vals = [int(t, 16) for t in toks]
        except ValueError:
            skip(path, i, "not a line of hex counters", line)
            continue
        if len(vals) < 3:
            skip(path, i, "fewer than 3 counters", line)
            continue
        row = {n: v for n, v in zip(NAMES, vals) if n}
        row.setdefault("cpu", len(out))
        out.append(row)
    if not out:
        raise ParseError(path, 0, "no per-CPU lines: not a softnet_stat file")
    return out


def totals(rows: list[dict[str, int]]) -> dict[str, int]:
    """Summed over CPUs (the cpu index excepted)."""
    keys = [k for k in rows[0] if k != "cpu"] if rows else []
    return {k: sum(r.get(k, 0) for r in rows) for k in keys}


def read(root: str | Path = "/proc") -> list[dict[str, int]]:
    return parse(read_text(root, "net/softnet_stat"), str(Path(root) / "net/softnet_stat"))
