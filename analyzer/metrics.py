"""``mmtriage metrics``: OpenMetrics / Prometheus text for node_exporter's textfile collector.

What is exported comes from one snapshot (the live host's /proc now, or a bundle's snapshot) and
the kernel log up to it:

* free memory by node, zone and migratetype and pageblocks by type (pagetypeinfo), wholly free
  pageblocks, watermarks and managed memory (zoneinfo), ``vm.defrag_mode``, the kernel's fix
  status (``analyzer.kernels`` through ``attribution.host_facts``);
* the bailout risk: the model's decision functions (``models.engine.plan_request`` and
  ``classify_failure``, on the state ``analyzer.observe.from_snapshot`` builds, as attribution
  does) are asked whether an order-0 GFP_ATOMIC unmovable request would fail through the
  defrag_mode bailout once the free lists it is served from (its own migratetype and the
  HighAtomic reserve) are used up. The margin is what those lists still hold;
* allocation failures since boot by cause, printed and estimated (``analyzer.attribution``);
* the /proc/net/snmp counters triage uses for corroboration.

Live failure counts come from /dev/kmsg, read non-blocking until EAGAIN. With a state file
(``DIR/mmtriage.state.json`` beside the textfile) each run counts only records after the last
sequence number it counted and adds them to totals kept in the file, so the counters stay
monotonic when the ring buffer wraps; docs/metrics.md says why this and not a re-count.
Nothing here writes to /proc or /sys.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily,
                                    StateSetMetricFamily)
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from analyzer.attribution import CAUSES, attribute, host_facts
from analyzer.collect import KmsgReader, collect
from analyzer.observe import from_snapshot
from analyzer.output import dumps, write_atomic
from models import engine as E
from parsers.bundle import load
from parsers.errors import BundleError

TEXTFILE_NAME = "mmtriage.prom"      # node_exporter reads only *.prom files
STATE_NAME = "mmtriage.state.json"
LOCK_NAME = ".mmtriage.lock"
STATE_VERSION = 1
# A record younger than this may belong to a report the kernel is still printing: it waits for
# the next run (once only, so a clock skew cannot hold records back for ever).
HOLD_BACK_S = 2.0
FIX_STATES = ("fixed", "affected", "not_applicable", "unknown")
# The counters analyzer.attribution.corroboration reads.
CORROBORATING = (("Icmp", "OutErrors"), ("Udp", "SndbufErrors"), ("Udp", "MemErrors"),
                 ("Tcp", "OutRsts"))
REQUEST_GFP = E.GFP_ATOMIC           # order 0, unmovable: the skbuff_head_cache case


# ---------------------------------------------------------------------------------------------
# The bailout risk, asked of the model's decision functions

@dataclass
class ZoneRisk:
    node: int
    zone: str
    risk: int                   # 1: fails through the bailout once margin_pages are gone
    margin_pages: int           # free on the request's own lists (its type + HighAtomic)
    watermark_margin_pages: int  # free pages above the atomic watermark + lowmem reserve (> 0: passes)
    cause_when_drained: str     # the decision functions' cause with the own lists empty


@dataclass
class NodeRisk:
    node: int
    risk: int                   # over the node's zonelist, own lists of every zone used up
    now: int                    # the request fails through the bailout on the state as observed
    margin_pages: int           # own lists of the zonelist's zones that pass the watermark


def _fails(obs, zs, nr, policy: int, node: int, zl, nzl) -> int:
    """The cause code an order-0 REQUEST_GFP request ends with on (zs, nr), CAUSE_NONE if it
    succeeds. The flags are the slowpath's for the host's policy; with the fix the bailout
    retries without ALLOC_NOFRAGMENT (as attribution's counterfactuals do)."""
    gfp = REQUEST_GFP
    pbo = obs.pageblock_order
    flags = E.gfp_to_alloc_flags(gfp, 0, policy)
    tried = flags
    if policy == E.DEFRAG_FIXED and (gfp & E.GFP_KSWAPD_RECLAIM) and not (gfp & E.GFP_DIRECT_RECLAIM):
        tried = flags & ~E.ALLOC_NOFRAGMENT
    z = E.plan_request(zs, nr, obs.lowmem, 0, gfp, tried, node, pbo, policy, zl, nzl)[0]
    if z >= 0:
        return E.CAUSE_NONE
    return int(E.classify_failure(zs, nr, obs.lowmem, 0, gfp, flags, node, pbo, zl, nzl))


def _own_pages(obs, z: int, mt: int) -> int:
    sizes = 1 << np.arange(obs.orders)
    return int((obs.nr_free[z, :, mt] * sizes).sum() + (obs.nr_free[z, :, E.HIGHATOMIC] * sizes).sum())


def _drained(obs, zones, mt: int):
    """The state once the request's own lists in ``zones`` are used up (free drops with them)."""
    zs, nr = obs.zs.copy(), obs.nr_free.copy()
    for z in zones:
        zs[z, E.Z_FREE] = max(0, int(zs[z, E.Z_FREE]) - _own_pages(obs, z, mt))
        zs[z, E.Z_HA_FREE] = 0
        nr[z, :, mt] = 0
        nr[z, :, E.HIGHATOMIC] = 0
    return zs, nr


def _watermark_margin(obs, z: int, flags: int, highest: int) -> int:
    """Pages that can go before ``zone_watermark_ok`` refuses an order-0 request with these
    flags: the model's own check is asked (it is monotonic in free), never re-derived."""
    mark = int(E.wmark_pages(obs.zs, z, flags & E.ALLOC_WMARK_MASK))

    def ok(free: int) -> bool:
        return bool(E.zone_watermark_ok(obs.zs, obs.nr_free, obs.lowmem, z, 0, mark, highest,
                                        flags, free))
    hi = max(int(obs.zs[z, E.Z_FREE]), 1)
    while not ok(hi):
        hi *= 2
    lo = 0
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return int(obs.zs[z, E.Z_FREE]) - lo + 1


def bailout_risk(obs, policy: int) -> tuple[list[ZoneRisk], list[NodeRisk]]:
    """Per zone and per node: would an order-0 GFP_ATOMIC unmovable request fail through the
    bailout once its own free lists are empty, and how much do those lists still hold."""
    gfp = REQUEST_GFP
    mt = E.gfp_migratetype(gfp)
    highest = E.gfp_zone(gfp)
    flags = E.gfp_to_alloc_flags(gfp, 0, policy)
    nz = obs.zs.shape[0]
    zones = []
    for i, name in enumerate(obs.zone_names):
        node = int(obs.zs[i, E.Z_NODE])
        zl = np.array([i], dtype=np.int64)
        zs, nr = _drained(obs, [i], mt)
        cause = _fails(obs, zs, nr, policy, node, zl, 1)
        zones.append(ZoneRisk(node, name.split()[-1], int(cause == E.CAUSE_BAILOUT),
                              _own_pages(obs, i, mt), _watermark_margin(obs, i, flags, highest),
                              E.CAUSE_NAMES[cause]))
    nodes = []
    for node in sorted({int(n) for n in obs.zs[:, E.Z_NODE]}):
        zl = np.zeros(max(nz, 1), dtype=np.int64)
        nzl = int(E.zonelist(obs.zs, highest, node, zl))
        if nzl == 0:
            continue
        chosen = [int(z) for z in zl[:nzl]]
        zs, nr = _drained(obs, chosen, mt)
        drained = _fails(obs, zs, nr, policy, node, zl, nzl)
        now = _fails(obs, obs.zs, obs.nr_free, policy, node, zl, nzl)
        margin = sum(zones[z].margin_pages for z in chosen if zones[z].watermark_margin_pages > 0)
        nodes.append(NodeRisk(node, int(drained == E.CAUSE_BAILOUT), int(now == E.CAUSE_BAILOUT),
                              margin))
    return zones, nodes


# ---------------------------------------------------------------------------------------------
# What one run exports

@dataclass
class View:
    source: str                 # "live /proc" or the bundle path
    facts: object               # attribution.HostFacts
    snapshot: object | None     # parsers.bundle.Snapshot
    page_size: int
    failures: dict | None       # {"printed": {cause: n}, "estimated": {cause: n}} or None
    log: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    risk: tuple | None = None   # (zones, nodes)


def _facts(bundle, snap, fixed_in):
    """host_facts with the snapshot's own defrag_mode when it was recorded there."""
    dm = bundle.defrag_mode
    if snap is not None and snap.defrag_mode is not None:
        dm = {"value": snap.defrag_mode, "source": f"snapshot {snap.name}"}
    return host_facts(SimpleNamespace(host=bundle.host, kernel_release=bundle.kernel_release,
                                      defrag_mode=dm), fixed_in)


def _finish(view: View, where: str) -> View:
    """Add the bailout risk; ``where`` names the snapshot's origin in warnings."""
    snap = view.snapshot
    if snap is None:
        view.warnings.append("no snapshot: memory metrics and the bailout risk are left out")
        return view
    obs = from_snapshot(snap)
    if obs is None:
        view.warnings.append(f"{where}: no pagetypeinfo (root-only since ~5.4): free memory "
                             "by migratetype and the bailout risk are left out")
    elif snap.zoneinfo is None:
        view.warnings.append(f"{where}: no zoneinfo: watermarks unknown, the bailout risk "
                             "is left out")
    else:
        view.risk = bailout_risk(obs, view.facts.policy)
    return view


def _counts(doc: dict) -> dict:
    return {"printed": {c: int(doc["attribution"].get(c, 0)) for c in CAUSES},
            "estimated": {c: int(doc["failures"]["by_cause"].get(c, {}).get("estimated", 0))
                          for c in CAUSES}}


def bundle_view(path: str, snapshot: str | None = None, fixed_in=None) -> View:
    """A bundle's last snapshot (or the one named), with failures up to it."""
    with load(path) as b:
        snaps = b.snapshots
        if snapshot is not None:
            pick = [s for s in snaps if s.name == snapshot]
            if not pick:
                raise BundleError(str(path), 0, "no such snapshot (see snapshots/)", snapshot)
            snap = pick[0]
        else:
            snap = snaps[-1] if snaps else None
        part = b
        if snap is not None and snap is not snaps[-1]:
            # Counters at an earlier snapshot count only what the log said before it.
            for r in list(b.log.events) + list(b.log.suppressions):
                if b.event_wall_time(r) is None:
                    raise BundleError(str(path), 0, "log times cannot be placed before snapshot "
                                      f"{snap.name} (no boot_time): only the last snapshot can "
                                      "be exported")
            # validate's window helper; imported here because validate pulls in scipy (60 MB,
            # 0.8 s), which the every-minute live run does not need
            from analyzer.validate import _sub_result
            res = _sub_result(b.log, lambda r: b.event_wall_time(r) <= snap.time)
            part = dataclasses.replace(b, log=res, snapshots=[s for s in snaps if s.time <= snap.time],
                                       _tmp=None)
        failures = None
        log = {}
        if b.logs:
            failures = _counts(attribute(part, fixed_in))
            log = {"logs": list(b.logs), "counted_to": snap.name if snap is not None else "end"}
        page = snap.page_size if snap is not None else 4096
        view = View(str(path), _facts(b, snap, fixed_in), snap, page, failures, log)
        return _finish(view, str(snap.path) if snap is not None else str(path))


# ---------------------------------------------------------------------------------------------
# Live host: /proc now, /dev/kmsg since the last run

def _record_head(rec: bytes) -> tuple[int | None, float | None]:
    head = rec.split(b";", 1)[0].split(b",")
    try:
        return int(head[1]), int(head[2]) / 1e6
    except (IndexError, ValueError):
        return None, None


def select_records(records: list[bytes], state: dict | None, now_s: float | None):
    """Which records this run counts. Returns (records to count, lost, highest seq seen).

    ``state`` None: everything in the ring buffer (no hold-back). Otherwise records after
    ``state["last_seq"]``; the tail from the first record that is new since the last run and
    younger than HOLD_BACK_S waits for the next run. ``lost`` counts sequence numbers that were
    overwritten before they were read (the gap before the first record, and gaps between)."""
    last = state.get("last_seq") if state else None
    seen = state.get("seen_seq") if state else None
    out, lost = [], 0
    prev = last
    top = seen if seen is not None else -1
    heads = [_record_head(r) for r in records]
    for k, (rec, (seq, t)) in enumerate(zip(records, heads)):
        if seq is None:
            out.append(rec)
            continue
        top = max(top, seq)
        if last is not None and seq <= last:
            continue
        if state is not None and now_s is not None and t is not None and \
                (seen is None or seq > seen) and t > now_s - HOLD_BACK_S:
            # hold back this record and everything after it
            top = max([top] + [s for s, _ in heads[k:] if s is not None])
            break
        lost += seq - (prev + 1) if prev is not None else seq
        prev = seq
        out.append(rec)
    return out, max(lost, 0), (top if top >= 0 else None)


def count_records(root: Path, records: list[bytes], fixed_in=None):
    """Attribute kernel log records against the bundle at ``root`` (its meta and snapshots):
    they are written as ``root/kmsg`` and read back by the ordinary bundle loader."""
    with open(root / "kmsg", "wb") as fh:
        fh.writelines(r if r.endswith(b"\n") else r + b"\n" for r in records)
    with load(root) as b:
        return _counts(attribute(b, fixed_in))


def _empty_counts() -> dict:
    return {"printed": {c: 0 for c in CAUSES}, "estimated": {c: 0 for c in CAUSES}}


def _read_state(path: Path, boot: str | None) -> dict:
    try:
        st = json.loads(path.read_text())
    except FileNotFoundError:
        st = None
    except (OSError, ValueError) as err:
        raise BundleError(str(path), 0, f"unreadable state file ({err}); remove it to start "
                                        "counting again") from err
    if not isinstance(st, dict) or st.get("version") != STATE_VERSION or st.get("boot") != boot:
        # first run, or a reboot: the counters start again, as "since boot" says
        return {"version": STATE_VERSION, "boot": boot, "last_seq": None, "seen_seq": None,
                "records": 0, "lost": 0, **_empty_counts()}
    return st


@contextlib.contextmanager
def _locked(dirpath: Path):
    """One run at a time per state directory (a timer run and a manual one)."""
    dirpath.mkdir(parents=True, exist_ok=True)
    fd = os.open(dirpath / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def update_state(state: dict, records: list[bytes], lost: int, seen, counts: dict) -> dict:
    st = dict(state)
    for kind in ("printed", "estimated"):
        st[kind] = {c: int(state[kind].get(c, 0)) + counts[kind][c] for c in CAUSES}
    seqs = [s for s in (_record_head(r)[0] for r in records) if s is not None]
    if seqs:
        st["last_seq"] = max(seqs)
    st["seen_seq"] = seen
    st["records"] = int(state.get("records", 0)) + len(records)
    st["lost"] = int(state.get("lost", 0)) + lost
    return st


def live_view(proc_root: Path = Path("/proc"), kmsg: str | None = "/dev/kmsg",
              state_path: Path | None = None, fixed_in=None) -> View:
    """This host now. Failure counters from ``kmsg``: since the last run kept in ``state_path``,
    or, without one, the whole ring buffer as it is."""
    if kmsg and os.path.exists(kmsg) and not stat.S_ISCHR(os.stat(kmsg).st_mode):
        # a regular file would be read in 8 KiB chunks, not one record per read
        raise ValueError(f"{kmsg}: not a character device like /dev/kmsg (a saved log "
                         "goes in a bundle: mmtriage metrics BUNDLE)")
    with tempfile.TemporaryDirectory(prefix="mmtriage-metrics-") as tmp:
        root = Path(tmp)
        # collect's one-snapshot path writes meta.json and the snapshot exactly as `collect`
        # does; /dev/null as its log device keeps it from reading the kernel log itself.
        meta = collect(root, interval=0, count=1, proc_root=Path(proc_root), kmsg=os.devnull)
        live = Path(proc_root) == Path("/proc")
        warnings = []
        records, reader_err = [], None
        if kmsg:
            try:
                reader = KmsgReader(kmsg)
            except OSError as err:
                reader_err = f"{kmsg}: {err.strerror or err}: failure counters are left out"
            else:
                try:
                    records = reader.read_new()   # non-blocking, until EAGAIN
                finally:
                    reader.close()
        boot = meta.get("boot_id") or meta.get("boot_time")
        failures, log = None, {}
        if kmsg and reader_err is None:
            if state_path is None:
                chosen, lost, _ = select_records(records, None, None)
                failures = count_records(root, chosen, fixed_in)
                log = {"source": kmsg, "counted_from": "the ring buffer as it is (no state file)",
                       "records": len(chosen), "lost": lost}
            else:
                state_path = Path(state_path)
                with _locked(state_path.parent):
                    state = _read_state(state_path, boot)
                    chosen, lost, seen = select_records(records, state,
                                                        time.clock_gettime(time.CLOCK_MONOTONIC))
                    counts = count_records(root, chosen, fixed_in)
                    state = update_state(state, chosen, lost, seen, counts)
                    # the state first: a lost textfile is rewritten from it, a lost state
                    # would count the same records twice
                    write_atomic(state_path, json.dumps(state, indent=1) + "\n")
                failures = {k: state[k] for k in ("printed", "estimated")}
                log = {"source": kmsg, "counted_from": "boot (state file)", "state": str(state_path),
                       "records": state["records"], "lost": state["lost"],
                       "last_seq": state["last_seq"]}
        else:
            if reader_err:
                warnings.append(reader_err)
            (root / "kmsg").unlink(missing_ok=True)
        with load(root, parse_logs=False) as b:
            snap = b.snapshots[-1] if b.snapshots else None
            page = (os.sysconf("SC_PAGE_SIZE") if live else
                    snap.page_size if snap is not None else 4096)
            view = View("live " + str(proc_root), _facts(b, snap, fixed_in), snap, page, failures,
                        log, warnings)
            return _finish(view, str(proc_root))


# ---------------------------------------------------------------------------------------------
# Exposition

def _families(view: View) -> list:
    f = view.facts
    snap = view.snapshot
    page = view.page_size
    out = []
    info = InfoMetricFamily("mmtriage_host", "The host, its kernel release and the allocator "
                            "policy the decision functions use for it.",
                            value={"host": str(f.host), "kernel_release": f.kernel_release["value"],
                                   "kernel_release_source": f.kernel_release["source"],
                                   "policy": f.policy_name})
    out.append(info)
    if snap is not None:
        out.append(GaugeMetricFamily("mmtriage_snapshot_timestamp_seconds",
                                     "When the /proc state exported here was read (UNIX time).",
                                     value=snap.time.timestamp(), unit="seconds"))
    dm = f.defrag_mode.get("value")
    if dm is not None:
        out.append(GaugeMetricFamily("mmtriage_defrag_mode", "vm.defrag_mode (1: ALLOC_NOFRAGMENT "
                                     "on every allocation).", value=int(dm)))
    out.append(StateSetMetricFamily(
        "mmtriage_kernel_fix_status",
        "Does this kernel carry 'mm/page_alloc: fix defrag_mode for non-reclaimable allocations'"
        " (release table, extended with --fixed-in / MMTRIAGE_FIXED_IN).",
        value={s: f.fix["status"] == s for s in FIX_STATES}))
    avail = GaugeMetricFamily("mmtriage_source_available", "1 if this source could be read.",
                              labels=["source"])
    avail.add_metric(["pagetypeinfo"], int(snap is not None and snap.pagetypeinfo is not None))
    avail.add_metric(["zoneinfo"], int(snap is not None and snap.zoneinfo is not None))
    avail.add_metric(["kernel_log"], int(view.failures is not None))
    avail.add_metric(["net_snmp"], int(snap is not None and snap.net_snmp is not None))
    out.append(avail)
    if snap is not None and snap.pagetypeinfo is not None:
        pt = snap.pagetypeinfo
        free = GaugeMetricFamily("mmtriage_free_bytes", "Free memory on the buddy free lists by "
                                 "migratetype (pagetypeinfo; a lower bound where the kernel "
                                 "capped a count at 100000).", labels=["node", "zone", "migratetype"],
                                 unit="bytes")
        for r in pt.free:
            free.add_metric([str(r.node), r.zone, r.type],
                            sum(c << o for o, c in enumerate(r.counts)) * page)
        out.append(free)
        blocks = GaugeMetricFamily("mmtriage_pageblocks", "Pageblocks by their migratetype "
                                   "label (pagetypeinfo).", labels=["node", "zone", "migratetype"])
        for (node, zone), types in pt.blocks.items():
            for t, n in types.items():
                blocks.add_metric([str(node), zone, t], n)
        out.append(blocks)
        pbo = snap.pageblock_order
        fb = GaugeMetricFamily("mmtriage_free_pageblocks", "Wholly free pageblocks (free buddies "
                               "of pageblock order and above): what ALLOC_NOFRAGMENT may claim.",
                               labels=["node", "zone"])
        per_zone: dict = {}
        for r in pt.free:
            # as the kernel's nr_free_pages_blocks: isolated buddies are not for allocation
            n = 0 if r.type == "Isolate" else sum(c << (o - pbo) for o, c in enumerate(r.counts)
                                                  if o >= pbo)
            per_zone[(r.node, r.zone)] = per_zone.get((r.node, r.zone), 0) + n
        for (node, zone), n in per_zone.items():
            fb.add_metric([str(node), zone], n)
        out.append(fb)
    if snap is not None and snap.zoneinfo is not None:
        zones = [z for z in snap.zoneinfo if z.populated]
        wm = GaugeMetricFamily("mmtriage_watermark_bytes", "Zone watermarks as the kernel prints "
                               "them (boost included), zoneinfo.", labels=["node", "zone", "watermark"],
                               unit="bytes")
        boost = GaugeMetricFamily("mmtriage_watermark_boost_bytes", "Watermark boost (zoneinfo).",
                                  labels=["node", "zone"], unit="bytes")
        zfree = GaugeMetricFamily("mmtriage_zone_free_bytes", "Free memory of the zone "
                                  "(zoneinfo pages free).", labels=["node", "zone"], unit="bytes")
        managed = GaugeMetricFamily("mmtriage_zone_managed_bytes", "Memory the buddy allocator "
                                    "manages in the zone (zoneinfo).", labels=["node", "zone"],
                                    unit="bytes")
        for z in zones:
            lab = [str(z.node), z.zone]
            for name in ("min", "low", "high", "promo"):
                v = getattr(z, name)
                if v is not None:
                    wm.add_metric(lab + [name], v * page)
            if z.boost is not None:
                boost.add_metric(lab, z.boost * page)
            if z.pages_free is not None:
                zfree.add_metric(lab, z.pages_free * page)
            if z.managed is not None:
                managed.add_metric(lab, z.managed * page)
        out += [wm, boost, zfree, managed]
    if view.risk is not None:
        zones, nodes = view.risk
        risk = GaugeMetricFamily(
            "mmtriage_bailout_risk",
            "1 if an order-0 GFP_ATOMIC unmovable request in this zone fails through the "
            "defrag_mode bailout once its own free lists (Unmovable and HighAtomic) are used up: "
            "no free pageblock to claim under ALLOC_NOFRAGMENT while a smaller buddy could be "
            "stolen, on a kernel and setting that have the bailout (model decision functions).",
            labels=["node", "zone"])
        margin = GaugeMetricFamily(
            "mmtriage_bailout_margin_bytes",
            "Free memory on the lists such a request is served from before it needs a fallback "
            "(Unmovable and HighAtomic); with mmtriage_bailout_risk 1 it fails when this is gone.",
            labels=["node", "zone"], unit="bytes")
        wmm = GaugeMetricFamily(
            "mmtriage_atomic_watermark_margin_bytes",
            "Free memory above what the model's zone_watermark_ok demands of an order-0 "
            "GFP_ATOMIC request (reduced min watermark plus lowmem reserve); <= 0: the zone "
            "refuses it for low memory, not the bailout.", labels=["node", "zone"], unit="bytes")
        for z in zones:
            lab = [str(z.node), z.zone]
            risk.add_metric(lab, z.risk)
            margin.add_metric(lab, z.margin_pages * page)
            wmm.add_metric(lab, z.watermark_margin_pages * page)
        nrisk = GaugeMetricFamily(
            "mmtriage_node_bailout_risk",
            "mmtriage_bailout_risk over the node's whole zonelist (the zones an atomic request "
            "from this node tries in turn): 1 if it fails through the bailout once the own "
            "lists of every zone are used up.", labels=["node"])
        nnow = GaugeMetricFamily(
            "mmtriage_node_bailout_now",
            "1 if an order-0 GFP_ATOMIC unmovable request from this node fails through the "
            "bailout on the state as read, right now.", labels=["node"])
        nmargin = GaugeMetricFamily(
            "mmtriage_node_bailout_margin_bytes",
            "Own-list free memory (Unmovable and HighAtomic) in the node's zonelist zones that "
            "pass the atomic watermark.", labels=["node"], unit="bytes")
        for n in nodes:
            nrisk.add_metric([str(n.node)], n.risk)
            nnow.add_metric([str(n.node)], n.now)
            nmargin.add_metric([str(n.node)], n.margin_pages * page)
        out += [risk, margin, wmm, nrisk, nnow, nmargin]
    if view.failures is not None:
        printed = CounterMetricFamily(
            "mmtriage_allocation_failures_printed",
            "Allocation failures the kernel log reported since boot, by cause (a SLUB report and "
            "its page allocation report are one failure).", labels=["cause"])
        est = CounterMetricFamily(
            "mmtriage_allocation_failures_estimated",
            "Reported failures plus the ratelimit's suppressed counts, by cause: a lower bound.",
            labels=["cause"])
        for c in CAUSES:
            printed.add_metric([c], view.failures["printed"][c])
            est.add_metric([c], view.failures["estimated"][c])
        out += [printed, est]
        if "lost" in view.log:
            out.append(CounterMetricFamily(
                "mmtriage_kernel_log_records_lost",
                "Kernel log records overwritten in the ring buffer before they were counted.",
                value=view.log["lost"]))
    if snap is not None and snap.net_snmp:
        snmp = CounterMetricFamily(
            "mmtriage_net_snmp",
            "/proc/net/snmp counters since boot that count failed atomic allocations the log "
            "may never report (Icmp OutErrors: echo replies whose skb allocation failed).",
            labels=["protocol", "counter"])
        for proto, key in CORROBORATING:
            if key in snap.net_snmp.get(proto, {}):
                snmp.add_metric([proto, key], snap.net_snmp[proto][key])
        out.append(snmp)
    return out


class _Collector:
    def __init__(self, view: View):
        self.view = view

    def collect(self):
        return _families(self.view)


def registry(view: View) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Collector(view))
    return reg


def render(view: View, fmt: str = "openmetrics") -> str:
    """``openmetrics``, ``prometheus`` (text 0.0.4: what node_exporter's textfile collector and
    promtool read) or ``json``."""
    reg = registry(view)
    if fmt == "openmetrics":
        return generate_openmetrics(reg).decode()
    if fmt == "prometheus":
        return generate_latest(reg).decode()
    if fmt == "json":
        return dumps(to_json(view, reg))
    raise ValueError(f"unknown metrics format {fmt!r}")


def to_json(view: View, reg: CollectorRegistry | None = None) -> dict:
    reg = reg or registry(view)
    metrics = [{"name": m.name, "type": m.type, "unit": m.unit, "help": m.documentation,
                "samples": [{"name": s.name, "labels": s.labels, "value": s.value}
                            for s in m.samples]} for m in reg.collect()]
    doc = {"source": view.source, "snapshot": view.snapshot.name if view.snapshot else None,
           "host": view.facts.host, "kernel_release": view.facts.kernel_release,
           "defrag_mode": view.facts.defrag_mode, "fix": view.facts.fix,
           "policy": view.facts.policy_name, "log": view.log, "warnings": view.warnings,
           "metrics": metrics}
    if view.risk is not None:
        doc["risk"] = {"request": "order-0 GFP_ATOMIC unmovable",
                       "zones": [dataclasses.asdict(z) for z in view.risk[0]],
                       "nodes": [dataclasses.asdict(n) for n in view.risk[1]]}
    return doc


def write_textfile(view: View, directory: Path) -> Path:
    """``directory/mmtriage.prom`` in the text format node_exporter's textfile collector
    parses, replaced atomically (a temporary ``.mmtriage.prom.*`` renamed into place)."""
    path = Path(directory) / TEXTFILE_NAME
    write_atomic(path, render(view, "prometheus"))
    return path
