"""An observed free-memory state in the shape the model's decision functions read.

Sources, best first: a record's own Mem-Info (zone lines and buddy lines: counts per order, and
letters saying which migratetype lists are non-empty), a pagetypeinfo + zoneinfo snapshot
(exact counts per zone x type x order), or vmstat alone (totals only). Buddy letters give
presence, not counts, so a list named by a letter is entered as non-empty (count 1): the
decision functions only ask whether a list is empty, and the watermark test uses the zone's
own free count.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.engine import (MT_LETTERS, NMT, NZF, Z_BOOST, Z_FREE, Z_FREE_BLOCKS, Z_HA_FREE,
                           Z_MANAGED, Z_NODE, Z_TYPE, Z_WHIGH, Z_WLOW, Z_WMIN)
from parsers.bundle import pageblock_order as bundle_pageblock_order

ZONE_TYPES = {"DMA": 0, "DMA32": 1, "Normal": 2, "Movable": 3, "HighMem": 2}
TYPE_INDEX = {"Unmovable": 0, "Movable": 1, "Reclaimable": 2, "HighAtomic": 3, "Reserve": 3,
              "CMA": 4, "Isolate": 5}


@dataclass
class Observed:
    source: str                 # "mem_info", "snapshot", "vmstat"
    zs: np.ndarray
    nr_free: np.ndarray         # [zone, order, type]; counts (exact) or presence (1)
    lowmem: np.ndarray
    pageblock_order: int
    exact: bool                 # counts exact (pagetypeinfo) or presence only (letters)
    zone_names: list
    free_kb_by_order: np.ndarray  # [zone, order] kB, from the printed counts
    detail: dict = field(default_factory=dict)
    missing: list = field(default_factory=list)
    # Free CMA pages per zone. The kernel's watermark test does not count them for a request
    # without ALLOC_CMA (only movable requests may use CMA), so they are kept apart here.
    free_cma: np.ndarray | None = None
    page_kb: int = 4            # the host's page size in kB

    @property
    def orders(self) -> int:
        return self.nr_free.shape[1]


def from_mem_info(ev: dict, pageblock_order: int | None = None) -> Observed | None:
    zones = [z for z in ev.get("zones", []) if z.get("free_kb") is not None]
    if not zones:
        return None
    # the buddy lines' order-0 size; the kernel's default pageblock order for that page size
    host_page_kb = next((z["page_kb"] for z in zones if z.get("page_kb")), 4)
    if pageblock_order is None:
        pageblock_order = bundle_pageblock_order(host_page_kb * 1024)
    orders = max((len(z.get("buddy", [])) for z in zones), default=11) or 11
    nz = len(zones)
    zs = np.zeros((nz, NZF), dtype=np.int64)
    nr = np.zeros((nz, orders, NMT), dtype=np.int64)
    kb = np.zeros((nz, orders), dtype=np.int64)
    lowmem = np.zeros((nz, 4), dtype=np.int64)
    cma = np.zeros(nz, dtype=np.int64)
    missing = []
    names = []
    for i, z in enumerate(zones):
        page_kb = z.get("page_kb") or host_page_kb
        cma[i] = (z.get("free_cma_kb") or 0) // page_kb
        boost = (z.get("boost_kb") or 0) // page_kb
        zs[i, Z_TYPE] = ZONE_TYPES.get(z["zone"], 2)
        zs[i, Z_NODE] = z["node"] or 0
        zs[i, Z_FREE] = z["free_kb"] // page_kb
        zs[i, Z_BOOST] = boost
        for key, col in (("min_kb", Z_WMIN), ("low_kb", Z_WLOW), ("high_kb", Z_WHIGH)):
            if z.get(key) is not None:
                zs[i, col] = z[key] // page_kb - boost  # printed marks include the boost
            else:
                missing.append(f"{z['zone']} {key}")
        zs[i, Z_MANAGED] = (z.get("managed_kb") or z["free_kb"]) // page_kb
        zs[i, Z_HA_FREE] = (z.get("free_highatomic_kb") or 0) // page_kb
        lr = z.get("lowmem_reserve") or []
        for j, v in enumerate(lr[:4]):
            lowmem[i, j] = v
        if not lr:
            missing.append(f"{z['zone']} lowmem_reserve")
        if not z.get("buddy"):
            missing.append(f"{z['zone']} buddy line")
        for b in z.get("buddy", []):
            o = b.get("order")
            if o is None or o >= orders:
                continue
            kb[i, o] = b["count"] * b["size_kb"]
            if b["count"] <= 0:
                continue
            letters = b.get("types") or ""
            if not letters:
                missing.append(f"{z['zone']} migratetype letters")
                continue
            for ch in letters:
                mt = MT_LETTERS.find(ch)
                if ch == "R":  # <= 4.3 MIGRATE_RESERVE
                    mt = 3
                if mt >= 0:
                    nr[i, o, mt] = b["count"] if len(letters) == 1 else 1
        if o_blocks := sum(b["count"] << (b.get("order", 0) - pageblock_order)
                           for b in z.get("buddy", []) if (b.get("order") or 0) >= pageblock_order):
            zs[i, Z_FREE_BLOCKS] = o_blocks << pageblock_order
        names.append(f"Node {z['node']} {z['zone']}" if z["node"] is not None else z["zone"])
    return Observed("mem_info", zs, nr, lowmem, pageblock_order, False, names, kb,
                    missing=sorted(set(missing)), free_cma=cma, page_kb=host_page_kb)


def from_snapshot(snap) -> Observed | None:
    pt = snap.pagetypeinfo
    zi = snap.zoneinfo
    if pt is None or not pt.free:
        return None
    keys = []
    for r in pt.free:
        if (r.node, r.zone) not in keys:
            keys.append((r.node, r.zone))
    orders = pt.orders
    nz = len(keys)
    page_kb = snap.page_size // 1024
    pbo = snap.pageblock_order
    zs = np.zeros((nz, NZF), dtype=np.int64)
    nr = np.zeros((nz, orders, NMT), dtype=np.int64)
    lowmem = np.zeros((nz, 4), dtype=np.int64)
    missing = []
    zmap = {(z.node, z.zone): z for z in (zi or [])}
    for i, (node, zone) in enumerate(keys):
        for r in pt.free:
            if (r.node, r.zone) == (node, zone) and r.type in TYPE_INDEX:
                nr[i, :, TYPE_INDEX[r.type]] += np.array(r.counts, dtype=np.int64)
        zs[i, Z_TYPE] = ZONE_TYPES.get(zone, 2)
        zs[i, Z_NODE] = node
        free = int((nr[i] * (1 << np.arange(orders))[:, None]).sum())
        zs[i, Z_FREE] = free
        zs[i, Z_FREE_BLOCKS] = int((nr[i, pbo:] * (1 << np.arange(pbo, orders))[:, None]).sum())
        zs[i, Z_HA_FREE] = int((nr[i, :, 3] * (1 << np.arange(orders))).sum())
        z = zmap.get((node, zone))
        if z is not None:
            boost = z.boost or 0
            zs[i, Z_BOOST] = boost
            zs[i, Z_WMIN] = (z.min or 0) - boost
            zs[i, Z_WLOW] = (z.low or 0) - boost
            zs[i, Z_WHIGH] = (z.high or 0) - boost
            zs[i, Z_MANAGED] = z.managed or free
            if z.pages_free is not None:
                zs[i, Z_FREE] = z.pages_free
            for j, v in enumerate(z.protection[:4]):
                lowmem[i, j] = v
        else:
            missing.append(f"zoneinfo for {zone} (watermarks unknown)")
            zs[i, Z_MANAGED] = free
    kb = (nr.sum(axis=2) * (page_kb << np.arange(orders))[None, :]).astype(np.int64)
    cma = (nr[:, :, TYPE_INDEX["CMA"]] * (1 << np.arange(orders))[None, :]).sum(axis=1)
    return Observed("snapshot", zs, nr, lowmem, pbo, True,
                    [f"Node {n} {z}" for n, z in keys], kb, missing=missing,
                    free_cma=cma.astype(np.int64), page_kb=page_kb)


def free_kb_by_type(obs: Observed) -> dict:
    """Free kB per migratetype. Exact from pagetypeinfo; from letters, an order with one letter
    is that type's, an order with several is reported as shared."""
    out: dict = {}
    for i in range(obs.zs.shape[0]):
        for o in range(obs.orders):
            present = [m for m in range(NMT) if obs.nr_free[i, o, m] > 0]
            if not present:
                continue
            if obs.exact:
                for m in present:
                    name = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate")[m]
                    out[name] = out.get(name, 0) + int(obs.nr_free[i, o, m]) * (obs.page_kb << o)
            else:
                name = "+".join(("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA",
                                 "Isolate")[m] for m in present)
                out[name] = out.get(name, 0) + int(obs.free_kb_by_order[i, o])
    if not obs.exact and obs.free_cma is not None and obs.free_cma.any():
        # The zone line's free_cma is exact; take it out of the lists whose letters include C.
        cma_kb = int(obs.free_cma.sum()) * obs.page_kb
        left = cma_kb
        for name in sorted((k for k in out if "CMA" in k.split("+")), key=lambda k: -out[k]):
            take = min(left, out[name])
            rest = out.pop(name) - take
            left -= take
            other = "+".join(t for t in name.split("+") if t != "CMA")
            if rest and other:
                out[other] = out.get(other, 0) + rest
        out["CMA"] = cma_kb
    return out
