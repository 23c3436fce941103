"""Detect which /proc file a text is (from its content, not its name) and parse it to JSON rows."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

from parsers import (buddyinfo, meminfo, netdev, pagetypeinfo, slabinfo, snmp, softnet, vmstat,
                     zoneinfo)
from parsers._util import MAX_PROC_BYTES, PROMPT, QUOTE, read_capped
from parsers.errors import InputWarning, ParseError
from parsers.logio import open_binary

KINDS = ("vmstat", "pagetypeinfo", "buddyinfo", "zoneinfo", "meminfo", "slabinfo", "net_snmp",
         "net_netstat", "net_dev", "softnet_stat")


def detect(text: str) -> str | None:
    """The kind of a /proc file, from its first lines that are data (a paste's shell prompt and
    mail quoting are looked past)."""
    lines = []
    for raw in text[:16384].lstrip("\ufeff").splitlines()[:80]:
        line = QUOTE.sub("", raw).replace("\r", "").strip()
        if line and not PROMPT.match(line):
            lines.append(line)
    head = "\n".join(lines)
    if "Page block order:" in head or "Free pages count per migrate type" in head:
        return "pagetypeinfo"
    if re.search(r"^slabinfo - version", head, re.M):
        return "slabinfo"
    if re.search(r"^(Ip|Icmp|Tcp|Udp): ", head, re.M):
        return "net_snmp"
    if re.search(r"^(TcpExt|IpExt|MPTcpExt): ", head, re.M):
        return "net_netstat"
    if re.search(r"^Inter-\|\s+Receive", head, re.M):
        return "net_dev"
    if lines and all(re.fullmatch(r"[0-9a-f]{8}( [0-9a-f]{8}){2,}", ln) for ln in lines[:4]):
        return "softnet_stat"
    if re.search(r"^MemTotal:", head, re.M) or (lines and all(
            re.fullmatch(r"[A-Za-z_()]+:\s+\d+(?: kB)?", ln) for ln in lines[:8])
            and any(ln.endswith(" kB") for ln in lines[:8])):
        return "meminfo"  # or a grep of it
    if lines and all(re.fullmatch(r"\S+(?:\s+\d+){5}\s*:\s*tunables(?:\s+\d+){3}\s*:\s*slabdata"
                                  r"(?:\s+\d+){3}", ln) for ln in lines[:8]):
        return "slabinfo"  # cache lines without the header (a grep)
    if any(re.match(r"Node\s+\d+,\s+zone\s+\S+,\s+type\s+\S+\s+>?\d", ln) for ln in lines):
        return "pagetypeinfo"  # its free rows alone (a grep of the file)
    for first in lines:
        if re.match(r"Node\s+\d+,\s+zone\s+\S+\s*$", first):
            return "zoneinfo"
        if re.match(r"Node\s+\d+,\s+zone\s+\S+\s+\d", first):
            return "buddyinfo"
        if re.match(r"[a-z_0-9]+ -?\d+\s*$", first):
            return "vmstat"
    return None


def read_any(path: str | Path) -> str:
    stream = open_binary(path)
    try:
        data = read_capped(stream)
    finally:
        if str(path) != "-":
            stream.close()
    if len(data) > MAX_PROC_BYTES:
        raise ParseError(str(path), 0, f"larger than {MAX_PROC_BYTES >> 20} MiB: not a /proc file")
    return data.decode("utf-8-sig", "replace")


def parse_file(path: str | Path, kind: str | None = None, text: str | None = None) -> dict:
    """Parse one /proc file into the ``proc --format json`` entry; what was skipped is listed in
    its ``warnings`` (and warned about as well)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InputWarning)
        out = _parse_file(path, kind, text)
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if caught:
        out["warnings"] = [str(w.message) for w in caught if w.category is InputWarning]
    return out


def _parse_file(path, kind, text) -> dict:
    text = read_any(path) if text is None else text
    kind = kind or detect(text)
    p = str(path)
    if kind is None:
        raise ParseError(p, 1, "not a /proc file this tool knows (vmstat, pagetypeinfo, buddyinfo, "
                               "zoneinfo, meminfo, slabinfo, net/snmp, net/netstat, net/dev, softnet_stat)", (text.strip().splitlines() or [""])[0][:60])
    out: dict = {"path": p, "kind": kind}
    if kind == "pagetypeinfo":
        pt = pagetypeinfo.parse(text, p)
        out.update(pageblock_order=pt.pageblock_order, pages_per_block=pt.pages_per_block,
                   orders=pt.orders, free=pagetypeinfo.free_rows(pt),
                   blocks=pagetypeinfo.block_rows(pt))
        if pt.mixed_blocks:
            out["mixed_blocks"] = pagetypeinfo.block_rows(pt, mixed=True)
    elif kind == "buddyinfo":
        b = buddyinfo.parse(text, p)
        out.update(orders=len(b[0].free), free=buddyinfo.to_rows(b))
    elif kind == "zoneinfo":
        out["zones"] = [z.to_dict() for z in zoneinfo.parse(text, p)]
    elif kind == "vmstat":
        out["counters"] = vmstat.parse(text, p)
    elif kind == "meminfo":
        out["fields_kb"] = meminfo.parse(text, p)
    elif kind == "slabinfo":
        out["caches"] = slabinfo.parse(text, p)
    elif kind in ("net_snmp", "net_netstat"):
        out["protocols"] = snmp.parse(text, p)
    elif kind == "net_dev":
        out["interfaces"] = netdev.parse(text, p)
    elif kind == "softnet_stat":
        out["cpus"] = softnet.parse(text, p)
    return out


def cross_check(pt: pagetypeinfo.PageTypeInfo | None, bi: list | None,
                zones: list | None, vm: dict | None) -> list[str]:
    """Disagreements between files taken together (kernel invariants). Empty = consistent.
    Counts move between reads, so callers decide how much drift is acceptable."""
    problems = []
    if pt is not None and bi is not None:
        for b in bi:
            sums = [0] * len(b.free)
            for r in pt.free:
                if r.node == b.node and r.zone == b.zone:
                    for o, c in enumerate(r.counts):
                        if o < len(sums):
                            sums[o] += c
            if sums != list(b.free) and not any(any(r.capped) for r in pt.free):
                problems.append(f"node {b.node} {b.zone}: buddyinfo {list(b.free)} != "
                                f"pagetypeinfo sum {sums}")
    if zones is not None and vm is not None and "nr_free_pages" in vm:
        total = sum(z.pages_free or 0 for z in zones)
        if total != vm["nr_free_pages"]:
            problems.append(f"zoneinfo free {total} != vmstat nr_free_pages {vm['nr_free_pages']}")
    return problems
