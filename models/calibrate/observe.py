"""What a bundle shows of the load, for the fit: all relative to the start snapshot.

- failures: the corroborated count (ICMP OutErrors) when the snapshots carry it, else printed +
  suppressed reports (a lower bound, and said so); the SLUB reports printed; when the first
  report came;
- atomic network allocations (Icmp InEchos, else OutMsgs; for an echo load on loopback without
  Icmp counters, lo's packets in /proc/net/dev or softnet_stat; for a failing
  skbuff_head_cache under any other load ICMP did not count the failures of, the packets the
  host's physical NICs received), objects in use of the failing cache and of the data cache
  (slabinfo), free memory and pageblocks by migratetype (pagetypeinfo), at every snapshot;
- vmstat deltas (allocstall, pgalloc, pgsteal, compact_stall, kcompactd wakes, pageoutrun).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from models.engine import (C_ALLOCSTALL, C_COMPACT_STALL, C_KCOMPACTD_WAKE, C_PAGEOUTRUN,
                           C_PGALLOC, C_PGSTEAL_DIRECT, C_PGSTEAL_KSWAPD, GFP_ATOMIC)
from models.policy import for_bundle as host_facts
from models.scenarios import Cache

# The data buffer of a network object when nothing says its size: kmalloc-2k, order-3 slabs
# (a 1,400 B echo payload's, the lab's default)
DATA_CACHE = Cache("kmalloc-2k", 2048, 3, 0)
# What one queued network object charges its socket's receive buffer: skb->truesize, its data
# buffer's object and its head (SKB_DATA_ALIGN(sizeof(struct sk_buff)), 256). Measured on a
# real 6.16.3 guest: 4 unread ICMP sockets with a 16 MiB SO_RCVBUFFORCE held 58,256 objects,
# 4 x ceil(2 x 16 MiB / (2,048 + 256)).
SKB_HEAD = 256
# How __alloc_skb sizes an echo reply's buffer on loopback: the ICMP and IP headers,
# LL_RESERVED_SPACE(lo) and 15 bytes of slack (__ip_append_data), SKB_DATA_ALIGN'd, plus
# skb_shared_info (320 B on x86-64); a buffer that fits the small-head cache comes from it
# (kmalloc_reserve), else from the kmalloc cache its size rounds up to.
ECHO_HEADROOM = 8 + 20 + 16 + 15
SKB_SHINFO = 320
SMALL_HEAD_CACHE = "skbuff_small_head"
TYPES = ("Unmovable", "Movable", "Reclaimable")
# vmstat counters compared (observed: the sum of the names with this prefix), the model's
# counter(s), and whether the loss uses them (the others are shown, not fitted: the model's
# reclaim and compaction daemons are coarse).
VMSTAT = {"allocstall": ((C_ALLOCSTALL,), True), "pgalloc": ((C_PGALLOC,), True),
          "pgsteal": ((C_PGSTEAL_KSWAPD, C_PGSTEAL_DIRECT), False),
          "compact_stall": ((C_COMPACT_STALL,), False),
          "compact_daemon_wake": ((C_KCOMPACTD_WAKE,), False),
          "pageoutrun": ((C_PAGEOUTRUN,), False)}

# The rate-limited report functions whose printed and suppressed counts the log carries
REPORT_FUNCS = ("slab_out_of_memory", "warn_alloc")
_REPORT_KIND = {"slub": "slab_out_of_memory", "page_alloc": "warn_alloc"}

@dataclass
class Observations:
    start_snapshot: str
    start_index: int
    times: np.ndarray            # seconds after the start snapshot, one per later snapshot
    free_mb: np.ndarray          # [snapshot, type] free MiB (Unmovable, Movable, Reclaimable)
    blocks: np.ndarray           # [snapshot, type] pageblocks, change since the start snapshot
    inuse: dict                  # cache name -> objects in use at each snapshot (slabinfo)
    inuse_base: dict             # cache name -> objects in use at the start (not the load's)
    demand: np.ndarray | None    # cumulative atomic network allocations since the start
                                 # (Icmp InEchos: echo replies attempted; else OutMsgs)
    fail_series: np.ndarray | None  # cumulative corroborated failures at each snapshot
    vmstat: dict                 # counter -> change since the start snapshot, per snapshot
    failures: float
    failures_source: str
    corroborated: bool           # failures counted by the host (Icmp OutErrors), not the log
    lower_bound: float           # the log's printed + suppressed reports
    reports: dict                # function -> cumulative printed + suppressed reports by each
                                 # snapshot (the log's shape, as the rate limits let it out)
    printed: int
    suppressed: int
    first_failure_s: float | None
    window_s: float
    caches: list
    policy: str
    notes: list = field(default_factory=list)
    # objects the unread receive queues can hold at most (0: unknown), and what says so
    hold_max: float = 0.0
    hold_max_source: str = ""
    demand_source: str = ""
    release_s: float = 0.0       # when the held objects were let go (0: not seen)
    data_cache: Cache | None = None  # the network objects' data buffers (None: not modelled)


def _free_mb(snap) -> np.ndarray:
    out = np.zeros(3)
    mib = snap.page_size / 2**20
    for r in snap.pagetypeinfo.free:
        if r.type in TYPES:
            out[TYPES.index(r.type)] += sum(c << o for o, c in enumerate(r.counts)) * mib
    return out


def _blocks(snap) -> np.ndarray:
    out = np.zeros(3)
    for per_type in snap.pagetypeinfo.blocks.values():
        for j, ty in enumerate(TYPES):
            out[j] += per_type.get(ty, 0)
    return out


def _vm(snap, prefix: str) -> float | None:
    if not snap.vmstat:
        return None
    vals = [v for k, v in snap.vmstat.items() if k == prefix or k.startswith(prefix + "_")]
    return float(sum(vals)) if vals else None


def observe(bundle) -> Observations:
    snaps = [s for s in bundle.snapshots if s.pagetypeinfo is not None and s.zoneinfo]
    if len(snaps) < 2:
        raise ValueError(f"{bundle.path}: calibration needs at least two pagetypeinfo + zoneinfo "
                         f"snapshots")
    log = bundle.log
    slub = [e for e in log.events if e["kind"] == "slub"]
    times = [bundle.event_wall_time(e) for e in log.events]
    times = [t for t in times if t is not None]
    first = min(times) if times else None
    start = 0
    if first is not None:
        for i, s in enumerate(snaps):
            if s.time <= first:
                start = i
    # Prefer a start before the load came (send counters, else the failing cache's objects in
    # use, still at their first value): the model then sees the onset, not just its tail.
    # When nothing failed (no report, no failure counted), the load may come at any snapshot:
    # the last quiet one before it, if there is a later one.
    silent = not log.events and not _counted_failures(snaps)
    quiet = _quiet_until(snaps if silent else snaps[: start + 1], slub)
    if quiet is not None and (not silent or quiet < len(snaps) - 1):
        start = quiet
    s0 = snaps[start]
    later = snaps[start + 1:] if start + 1 < len(snaps) else snaps[start:]
    rel = np.array([(s.time - s0.time).total_seconds() for s in later])
    free = np.array([_free_mb(s) for s in later])
    blocks = np.array([_blocks(s) for s in later]) - _blocks(s0)[None, :]
    notes = []
    # The head cache: skbuff_head_cache when it failed, else the cache that failed most.
    freq: dict = {}
    for e in slub:
        freq[e["cache"]] = freq.get(e["cache"], 0) + 1
    order = sorted(freq, key=lambda c: (c != "skbuff_head_cache", -freq[c]))
    slub = sorted(slub, key=lambda e: order.index(e["cache"]))
    cache_name = order[0] if order else None
    inuse, inuse_base = {}, {}
    data = data_cache(bundle, s0)
    for name in (cache_name or "skbuff_head_cache", data.name if data else None):
        if name and all(s.slabinfo and name in s.slabinfo for s in [s0, *later]):
            inuse[name] = np.array([s.slabinfo[name]["active_objs"] for s in later], dtype=float)
            inuse_base[name] = float(s0.slabinfo[name]["active_objs"])
    if cache_name and cache_name not in inuse:
        notes.append(f"no slabinfo for {cache_name}: objects in use not fitted")
    vm = {}
    for name in VMSTAT:
        v0 = _vm(s0, name)
        vals = [_vm(s, name) for s in later]
        if v0 is not None and all(v is not None for v in vals):
            vm[name] = np.array(vals) - v0
    demand, demand_src = _demand(s0, later)
    hold_max, hold_src = queue_limit(bundle, data)
    fails, src, fail_series = None, None, None
    if s0.net_snmp and all(s.net_snmp and "Icmp" in s.net_snmp for s in later):
        base = s0.net_snmp.get("Icmp", {}).get("OutErrors", 0)
        fail_series = np.array([s.net_snmp["Icmp"]["OutErrors"] - base for s in later], dtype=float)
    if s0.net_snmp and later[-1].net_snmp and "Icmp" in later[-1].net_snmp:
        fails = float(max(s.net_snmp["Icmp"]["OutErrors"] for s in later if s.net_snmp)
                      - s0.net_snmp["Icmp"]["OutErrors"])
        src = "Icmp OutErrors (corroborated)"
    summ = log.summary()
    lower = float(summ["slub_failures_estimated"] or summ["page_alloc_failures_estimated"])
    corroborated = bool(fails)
    if not fails:
        fails = lower
        src = "printed + suppressed reports (a lower bound)"
        notes.append("no failure counter: fitted to the log's printed and suppressed reports "
                     "over time; the failures are the model's estimate")
    reports = _report_series(bundle, s0, rel)
    caches = []
    seen = set()
    for e in slub:
        if e["cache"] in seen:
            continue
        seen.add(e["cache"])
        caches.append(Cache(e["cache"], e["buffer_size"] or 256, e["default_order"] or 0,
                            e["min_order"] or 0, gfp=GFP_ATOMIC))
    if demand is None and hold_max > 0:
        demand, demand_src = _loopback_echo_demand(s0, later, inuse, inuse_base,
                                                   cache_name or "skbuff_head_cache")
    if hold_max == 0 and not corroborated:
        # not an echo load, and ICMP did not count the failures (a host's own pings leave
        # InEchos rising too): a host receiving on its NICs, when they count packets
        nic, nic_src = _nic_rx_demand(s0, later, cache_name)
        if nic is not None:
            demand, demand_src = nic, nic_src
    if not caches and "skbuff_head_cache" in inuse and (
            (fails and src.startswith("Icmp")) or hold_max > 0):
        # failures the counters saw, or an echo load the bundle describes (its unread
        # sockets), and a log that reported nothing (data buffers fail silently)
        caches.append(Cache("skbuff_head_cache", 256, 0, 0, gfp=GFP_ATOMIC))
        notes.append("no SLUB report: the network caches assumed from the "
                     + ("ICMP counters" if fails and src.startswith("Icmp") else
                        "echo load's request count" if demand is not None else
                        "echo load the bundle describes (its unread sockets); nothing counts "
                        "its requests"))
    facts = host_facts(bundle)
    ff = (first - s0.time).total_seconds() if first is not None else None
    sup = log.summary()["suppressed"].get("slab_out_of_memory", 0)
    return Observations(s0.name, bundle.snapshots.index(s0), rel, free, blocks, inuse,
                        inuse_base, demand, fail_series, vm,
                        fails, src, corroborated, lower, reports, len(slub), sup, ff, float(rel[-1]) if len(rel) else 0.0,
                        caches, facts.policy_name, notes, hold_max, hold_src, demand_src,
                        _release_s(inuse, inuse_base, rel, cache_name or "skbuff_head_cache"),
                        data)


def lab_workload(bundle) -> dict:
    """meta.json ``workload`` as a dict, whichever form the lab wrote (the first runs: a string
    "DUR=40 NSOCK=16 RCVBUF=16777216 ..."; later: an object with ``seconds``, ``nsock``...)."""
    w = (getattr(bundle, "meta", None) or {}).get("workload") or {}
    if isinstance(w, str):
        w = {k.lower().replace("dur", "seconds"): v for k, v in
             (kv.split("=", 1) for kv in w.split() if "=" in kv)}
    return w if isinstance(w, dict) else {}


def data_cache(bundle, snap=None) -> Cache | None:
    """The cache an echo reply's data buffer comes from, for the payload meta.json's workload
    gives (``kmalloc_reserve``): the small-head cache when the buffer fits it, else the kmalloc
    cache its size rounds up to, its slab order from the snapshot's slabinfo where listed.
    DATA_CACHE when no payload is given; None for a buffer beyond kmalloc-8k (whole pages,
    not modelled)."""
    try:
        payload = int(lab_workload(bundle)["payload"])
    except (KeyError, TypeError, ValueError):
        return DATA_CACHE
    slab = (snap.slabinfo if snap is not None and snap.slabinfo else {}) or {}
    small = int(slab.get(SMALL_HEAD_CACHE, {}).get("objsize") or 704)
    need = -(-(max(payload, 0) + ECHO_HEADROOM) // 64) * 64 + SKB_SHINFO
    if need <= small:
        name, size = SMALL_HEAD_CACHE, small
    else:
        size = 1 << (need - 1).bit_length()
        if size > 8192:
            return None
        name = f"kmalloc-{size // 1024}k"
    row = slab.get(name) or {}
    pages = int(row.get("pagesperslab") or (8 if name != SMALL_HEAD_CACHE else 4))
    order = max(pages.bit_length() - 1, 0)
    min_order = max((size - 1).bit_length() - 12, 0)
    return Cache(name, size, order, min(min_order, order))


def queue_limit(bundle, data: Cache | None = DATA_CACHE) -> tuple[float, str]:
    """How many network objects the unread sockets can hold, when the bundle pins it: the
    kernel accepts into a receive queue while its charge is under sk_rcvbuf (twice the
    SO_RCVBUF asked for), one object's truesize at a time (its data buffer + SKB_HEAD).
    (0, "") when nothing says."""
    w = lab_workload(bundle)
    try:
        nsock, rcvbuf = int(w["nsock"]), int(w["rcvbuf"])
    except (KeyError, TypeError, ValueError):
        return 0.0, ""
    if nsock <= 0 or rcvbuf <= 0:
        return 0.0, ""
    truesize = (data.object_size if data else DATA_CACHE.object_size) + SKB_HEAD
    per = -(-2 * rcvbuf // truesize)
    return float(nsock * per), (f"meta.json workload: {nsock} unread sockets x "
                                f"ceil(2 x {rcvbuf:,} B / {truesize:,} B)")


def _release_s(inuse: dict, base: dict, times: np.ndarray, head: str | None) -> float:
    """When the failing cache's objects in use fell from their peak to under half of what the
    load had added (a holder let its queues go): halfway between those two snapshots, in
    seconds after the start; 0 when they never fell."""
    v = inuse.get(head)
    if v is None or len(v) < 2:
        return 0.0
    k = len(v) - 1 - int(np.argmax(v[::-1]))  # the last snapshot at the peak
    added = v[k] - base.get(head, 0.0)
    if k + 1 >= len(v) or added <= 0 or v[k + 1] - base.get(head, 0.0) > added / 2:
        return 0.0
    return float((times[k] + times[k + 1]) / 2)


def _lo_packets(snap) -> float | None:
    if snap.net_dev and "lo" in snap.net_dev:
        return float(snap.net_dev["lo"]["rx_packets"])
    return None


def _backlog_packets(snap) -> float | None:
    # every packet lo takes in goes through a CPU's backlog: softnet_stat's processed, summed
    # over the CPUs, is lo's rx_packets on a host whose only traffic is on loopback
    if snap.softnet_stat:
        return float(sum(c.get("processed", 0) for c in snap.softnet_stat))
    return None


def _loopback_echo_demand(s0, later, inuse, base, head) -> tuple[np.ndarray | None, str]:
    """Echo requests answered on loopback without Icmp counters: every request and every
    reply sent crosses lo once, and every reply sent stays queued, so requests = packets
    received on lo - the most objects the load ever held. Once the queues are full the
    replies dropped at them count too, and the demand comes out high by those. The packets
    come from /proc/net/dev, else from softnet_stat (all interfaces: the lab's guest has no
    other traffic)."""
    if head not in inuse:
        return None, ""
    for packets, what in ((_lo_packets, "net/dev lo packets received"),
                          (_backlog_packets, "softnet_stat packets processed")):
        if packets(s0) is not None and all(packets(s) is not None for s in later):
            break
    else:
        return None, ""
    rx = np.array([packets(s) - packets(s0) for s in later], dtype=float)
    # replies held and later let go were still sent: the most ever held counts
    held = np.maximum.accumulate(np.maximum(inuse[head] - base.get(head, 0.0), 0.0))
    d = np.maximum.accumulate(np.maximum(rx - held, 0.0))
    if not len(d) or d[-1] <= 0:
        return None, ""
    return d, f"{what} - objects held (echo requests on loopback)"


def _counted_failures(snaps) -> bool:
    icmp = [s.net_snmp["Icmp"].get("OutErrors", 0) for s in snaps
            if s.net_snmp and "Icmp" in s.net_snmp]
    return len(icmp) > 1 and max(icmp) > min(icmp)


# Names of physical network devices: systemd's predictable names (en*: enp0s31f6, ens5, eno1,
# enx<mac>; wl*: WLAN; ww*: WWAN; ib*: InfiniBand; sl*: serial line IP), the kernel's own
# (eth*, wlan*), biosdevname's (em1, p1p1). Every other device (lo, veth, bridges, bonds,
# teams, VLANs, tun/tap, tunnels and overlays, macvlan/macvtap, ifb, WireGuard...) receives
# an skb another device allocated, or one a process wrote: not counted. A dotted name
# (eth0.100) is a VLAN on a physical device and counts its packets again.
_PHYSICAL = re.compile(r"(?:en|eth|wl|ww|ib|sl|em\d|p\d+p\d)[0-9a-z_-]*")

NIC_RX_SOURCE = "net/dev packets received on "


def nic_rx_interfaces(net_dev: dict) -> list[str]:
    """The interfaces whose received packets are skbs the host allocated in softirq: the
    physical devices, by name (``_PHYSICAL``)."""
    return sorted(n for n in net_dev if _PHYSICAL.fullmatch(n))


def _nic_rx_demand(s0, later, head: str | None) -> tuple[np.ndarray | None, str]:
    """Packets received on the host's own NICs since the start: each is a GFP_ATOMIC
    skbuff_head_cache object taken in softirq (``napi_build_skb``/``__alloc_skb``). Only when
    skbuff_head_cache is the cache that failed: other caches are not allocated per packet.
    Interfaces present in every snapshot are summed, each by its own increments, so a counter
    that restarted (driver reload) adds what it counted since, not a drop. Whether a driver
    counts a packet whose head it could not get varies (most count it only as a drop, if at
    all), so this is the demand that reached the stack, a floor when heads failed."""
    if head != "skbuff_head_cache" or not s0.net_dev:
        return None, ""
    snaps = [s0, *later]
    if not all(s.net_dev for s in snaps):
        return None, ""
    names = [n for n in nic_rx_interfaces(s0.net_dev) if all(n in s.net_dev for s in snaps)]
    if not names:
        return None, ""
    rx = np.array([[s.net_dev[n]["rx_packets"] for n in names] for s in snaps], dtype=float)
    step = np.diff(rx, axis=0)
    # a counter below its last value restarted from 0: it counted its new value since
    step = np.where(step < 0, rx[1:], step)
    d = np.cumsum(step.sum(axis=1))
    if not len(d) or d[-1] <= 0:
        return None, ""
    return d, NIC_RX_SOURCE + ", ".join(names)


def _demand(s0, later) -> tuple[np.ndarray | None, str]:
    """The atomic network allocations since the start, per later snapshot, and what counts
    them. An echo request received (Icmp InEchos) is answered from softirq, one GFP_ATOMIC skb
    per reply, failed (OutErrors) or sent (OutEchoReps); InEchos is that demand exactly. Where
    nothing echoes (a model-emitted bundle), Icmp OutMsgs."""
    if not (s0.net_snmp and "Icmp" in s0.net_snmp
            and all(s.net_snmp and "Icmp" in s.net_snmp for s in later)):
        return None, ""
    for key in ("InEchos", "OutMsgs"):
        base = s0.net_snmp["Icmp"].get(key, 0)
        d = np.array([s.net_snmp["Icmp"].get(key, 0) - base for s in later], dtype=float)
        if len(d) and d[-1] > 0:
            return d, f"Icmp {key}"
    return d, "Icmp OutMsgs"


def _head_cache(slub: list) -> str:
    names = {e["cache"] for e in slub if e.get("cache")}
    return "skbuff_head_cache" if "skbuff_head_cache" in names or not names else sorted(
        names, key=lambda c: -sum(1 for e in slub if e["cache"] == c))[0]


def _quiet_until(snaps: list, slub: list) -> int | None:
    """The last snapshot before the load began: the end of the first run of snapshots with the
    send counters (Icmp OutMsgs) still at their first value, else with the failing cache's
    objects in use (slabinfo) still within 5 % (at least 64 objects) of theirs (they come back
    there once the load's objects are let go: those later snapshots are not before it). None
    when neither is in every snapshot."""
    if all(s.net_snmp and "Icmp" in s.net_snmp for s in snaps):
        base = snaps[0].net_snmp["Icmp"].get("OutMsgs", 0)
        return _prefix(snaps, lambda s: s.net_snmp["Icmp"].get("OutMsgs", 0) == base)
    name = _head_cache(slub)
    if all(s.slabinfo and name in s.slabinfo for s in snaps):
        base = snaps[0].slabinfo[name]["active_objs"]
        return _prefix(snaps, lambda s: abs(s.slabinfo[name]["active_objs"] - base)
                       <= max(64, 0.05 * base))
    return None


def _prefix(snaps: list, quiet) -> int | None:
    last = None
    for i, s in enumerate(snaps):
        if not quiet(s):
            break
        last = i
    return last


def _report_series(bundle, s0, rel: np.ndarray) -> dict:
    """Per rate-limited function, the reports the log let out (printed, plus the counts of
    ``callbacks suppressed`` lines) by each snapshot time, counted from the start snapshot."""
    log = bundle.log
    out = {}
    for func in REPORT_FUNCS:
        times = [bundle.event_wall_time(e) for e in log.events
                 if _REPORT_KIND.get(e["kind"]) == func]
        stamps = [(t - s0.time).total_seconds() for t in times if t is not None]
        sup = [((bundle.event_wall_time(x) - s0.time).total_seconds(), x["count"])
               for x in log.suppressions
               if x["func"] in (func, func + "_failed") and bundle.event_wall_time(x) is not None]
        if not stamps and not sup:
            continue
        series = np.array([sum(1 for t in stamps if 0 <= t <= r) + sum(n for t, n in sup if 0 <= t <= r)
                           for r in rel], dtype=float)
        out[func] = series
    return out
