"""Write a simulated host as a bundle in the kernel's own text formats (product.md §3), so that
model output goes through the same parsers as a real host.

dmesg: ``slab_out_of_memory`` reports in the 6.12+ form, ``warn_alloc`` reports with a Mem-Info
block (zone lines, lowmem_reserve, buddy lines with migratetype letters), ``callbacks
suppressed`` lines where the rate limiter prints them. Snapshots: pagetypeinfo, buddyinfo,
zoneinfo, vmstat, meminfo (and net_snmp where the scenario corroborates failures with ICMP
OutErrors; net_dev where its load is counted as packets received on a NIC). meta.json carries the model's ground truth; truth.csv.gz lists every failure.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from models.engine import (CAUSE_NAMES, C_ALLOCSTALL, C_COMPACT_DAEMON_MIGRATE, C_COMPACT_FAIL,
                           C_COMPACT_MIGRATE, C_COMPACT_STALL, C_COMPACT_SUCCESS, C_KCOMPACTD_WAKE,
                           C_KSWAPD_WAKE, C_NET_DEMAND, C_PAGEOUTRUN, C_PGALLOC, C_PGFREE, C_PGSCAN_DIRECT,
                           C_PGSCAN_KSWAPD, C_PGSTEAL_DIRECT, C_PGSTEAL_KSWAPD,
                           C_THP_FAULT_ALLOC, C_THP_FAULT_FALLBACK, MT_LETTERS, MT_NAMES, NMT,
                           Z_BOOST, Z_FREE, Z_FREE_BLOCKS, Z_HA_FREE, Z_HA_RESERVED, Z_MANAGED,
                           Z_NODE, Z_PRESENT, Z_TYPE, Z_WHIGH, Z_WLOW, Z_WMIN, ZONE_NAMES,
                           gfp_zone)
from models.simulate import SimResult
from models.sim import R_SLUB, R_SUPP_SLUB, R_SUPP_WARN, R_WARN
from parsers import pagetypeinfo as ptmod
from parsers import zoneinfo as zimod
from parsers.bundle import pmd_kb
from parsers.gfp import render as render_gfp

BOOT = datetime(2026, 5, 22, 0, 0, 0, tzinfo=timezone.utc)


def _stamp(t: float) -> str:
    return f"[{t:12.6f}]"


def _zone_label(zs, z) -> str:
    return f"Node {int(zs[z, Z_NODE])} {ZONE_NAMES[int(zs[z, Z_TYPE])]}"


def meminfo_block(nr, zs, lowmem, highest_zt: int, t: float, npages: int,
                  page_size: int = 4096) -> list[str]:
    """The ``show_free_areas`` text for one captured state (values in kB)."""
    st = _stamp(t)
    pk = page_size // 1024
    orders = nr.shape[1]
    free = int(zs[:, Z_FREE].sum())
    lines = [f"{st} Mem-Info:",
             f"{st} active_anon:0 inactive_anon:0 isolated_anon:0",
             f"{st}  active_file:0 inactive_file:0 isolated_file:0",
             f"{st}  unevictable:0 dirty:0 writeback:0",
             f"{st}  slab_reclaimable:0 slab_unreclaimable:0",
             f"{st}  mapped:0 shmem:0 pagetables:0",
             f"{st}  sec_pagetables:0 bounce:0",
             f"{st}  kernel_misc_reclaimable:0",
             f"{st}  free:{free} free_pcp:0 free_cma:0"]
    nodes = sorted({int(x) for x in zs[:, Z_NODE]})
    for n in nodes:
        lines.append(f"{st} Node {n} active_anon:0kB inactive_anon:0kB active_file:0kB "
                     f"inactive_file:0kB unevictable:0kB isolated(anon):0kB isolated(file):0kB "
                     f"mapped:0kB dirty:0kB writeback:0kB shmem:0kB kernel_stack:0kB "
                     f"pagetables:0kB sec_pagetables:0kB all_unreclaimable? no")
    shown = [z for z in range(zs.shape[0]) if zs[z, Z_TYPE] <= highest_zt and zs[z, Z_PRESENT] > 0]
    for z in shown:
        b = int(zs[z, Z_BOOST])
        lines.append(
            f"{st} {_zone_label(zs, z)} free:{int(zs[z, Z_FREE]) * pk}kB boost:{b * pk}kB "
            f"min:{(int(zs[z, Z_WMIN]) + b) * pk}kB low:{(int(zs[z, Z_WLOW]) + b) * pk}kB "
            f"high:{(int(zs[z, Z_WHIGH]) + b) * pk}kB "
            f"reserved_highatomic:{int(zs[z, Z_HA_RESERVED]) * pk}KB "
            f"free_highatomic:{int(zs[z, Z_HA_FREE]) * pk}KB active_anon:0kB inactive_anon:0kB "
            f"active_file:0kB inactive_file:0kB unevictable:0kB writepending:0kB "
            f"present:{int(zs[z, Z_PRESENT]) * pk}kB managed:{int(zs[z, Z_MANAGED]) * pk}kB "
            f"mlocked:0kB bounce:0kB free_pcp:0kB local_pcp:0kB free_cma:0kB")
        lines.append(f"{st} lowmem_reserve[]: " + " ".join(str(int(v)) for v in
                                                         list(lowmem[z]) + [lowmem[z][-1]]))
    for z in shown:
        parts = []
        total = 0
        for o in range(orders):
            cnt = int(nr[z, o].sum())
            size = pk << o
            total += cnt * size
            letters = "".join(MT_LETTERS[m] for m in range(NMT) if nr[z, o, m] > 0)
            parts.append(f"{cnt}*{size}kB" + (f" ({letters})" if cnt else ""))
        lines.append(f"{st} {_zone_label(zs, z)}: " + " ".join(parts) + f" = {total}kB")
    for n in nodes:
        lines.append(f"{st} Node {n} hugepages_total=0 hugepages_free=0 hugepages_surp=0 "
                     f"hugepages_size={pmd_kb(page_size)}kB")
    lines += [f"{st} 0 total pagecache pages", f"{st} 0 pages in swap cache",
              f"{st} Free swap  = 0kB", f"{st} Total swap = 0kB", f"{st} {npages} pages RAM",
              f"{st} 0 pages HighMem/MovableOnly",
              f"{st} {int((zs[:, Z_PRESENT] - zs[:, Z_MANAGED]).sum())} pages reserved",
              f"{st} 0 pages hwpoisoned"]
    return lines


def dmesg_lines(res: SimResult, release: str) -> list[str]:
    sc = res.scenario
    st = res.state
    pk = st.spec.page_size // 1024
    out = [f"{_stamp(0.0)} Linux version {release} (model@mmtriage) (gcc 14.2.0) #1 SMP "
           f"PREEMPT_DYNAMIC (synthetic: mmtriage model, scenario {sc.name}, policy {res.policy}, "
           f"seed {res.seed})",
           f"{_stamp(0.0)} Command line: BOOT_IMAGE=/vmlinuz-{release} root=/dev/vda1 ro",
           f"{_stamp(0.000001)} Memory: {st.npages * pk}K/{st.npages * pk}K available"]
    rep = res.reports
    order = np.argsort(rep[:, 0], kind="stable")
    comm = sc.comm
    for i in order:
        t, kind, a, b, c, cache_id = rep[i]
        kind = int(kind)
        s = _stamp(t)
        if kind == R_SUPP_SLUB:
            out.append(f"{s} slab_out_of_memory: {int(a)} callbacks suppressed")
        elif kind == R_SUPP_WARN:
            out.append(f"{s} warn_alloc: {int(a)} callbacks suppressed")
        elif kind == R_SLUB:
            cache = sc.caches[int(a)]
            gfp = int(b)
            nslabs = int(c)
            objs = (st.spec.page_size << cache.default_order) // cache.object_size
            out.append(f"{s} SLUB: Unable to allocate memory on CPU {int(t * 1000) % 4} (of node 0)"
                       f" on node -1, gfp={gfp:#x}({render_gfp(gfp)})")
            out.append(f"{s}   cache: {cache.name}, object size: {cache.object_size - 24}, "
                       f"buffer size: {cache.object_size}, default order: {cache.default_order}, "
                       f"min order: {cache.min_order}")
            out.append(f"{s}   node 0: slabs: {nslabs}, objs: {nslabs * objs}, free: 0")
        elif kind == R_WARN:
            order_, gfp, ci = int(a), int(b), int(c)
            out.append(f"{s} {comm}: page allocation failure: order:{order_}, mode:{gfp:#x}"
                       f"({render_gfp(gfp)}), nodemask=(null),cpuset=/,mems_allowed=0")
            out.append(f"{s} CPU: 3 UID: 0 PID: 0 Comm: {comm} Not tainted {release} #1 "
                       f"PREEMPT(voluntary)")
            out.append(f"{s} Hardware name: mmtriage model (synthetic)")
            out.append(f"{s} Call Trace:")
            out.append(f"{s}  <IRQ>")
            frames = ["dump_stack_lvl+0x5d/0x80", "warn_alloc+0x162/0x190",
                      "__alloc_pages_slowpath.constprop.0+0x912/0xdd0",
                      "__alloc_frozen_pages_noprof+0x307/0x320"]
            if cache_id >= 0:
                frames += ["allocate_slab+0x34c/0x410", "___slab_alloc+0x7ba/0xcb0",
                           "__alloc_skb+0x148/0x1a0"]
            else:
                frames += ["page_frag_alloc_align+0x10c/0x1a0", "__napi_alloc_skb+0x6e/0x140"]
            for fr in frames:
                out.append(f"{s}  {fr}")
            out.append(f"{s}  </IRQ>")
            if 0 <= ci < len(res.captures_nr):
                out += meminfo_block(res.captures_nr[ci], res.captures_zs[ci], st.lowmem,
                                     int(gfp_zone(gfp)), t, st.npages, st.spec.page_size)
    return out


def _pagetypeinfo(res: SimResult, k: int) -> str:
    st = res.state
    zs = res.snaps_zs[k]
    nr = res.snaps_nr[k]
    rows = []
    blocks = {}
    types = [m for m in range(NMT) if m != 4]  # no CMA on these hosts
    for z in range(zs.shape[0]):
        node, zone = int(zs[z, Z_NODE]), ZONE_NAMES[int(zs[z, Z_TYPE])]
        for m in types:
            rows.append(ptmod.FreeRow(node, zone, MT_NAMES[m], tuple(int(x) for x in nr[z, :, m]),
                                      (False,) * nr.shape[1]))
        blocks[(node, zone)] = {MT_NAMES[m]: int(res.snaps_blocks[k, z, m]) for m in types}
    pbo = st.spec.pageblock_order
    return ptmod.render(ptmod.PageTypeInfo(pbo, 1 << pbo, tuple(rows), blocks))


def _buddyinfo(res: SimResult, k: int) -> str:
    zs, nr = res.snaps_zs[k], res.snaps_nr[k]
    return "".join(f"Node {int(zs[z, Z_NODE])}, zone {ZONE_NAMES[int(zs[z, Z_TYPE])]:>8} "
                   + "".join(f"{int(nr[z, o].sum()):6d} " for o in range(nr.shape[1])) + "\n"
                   for z in range(zs.shape[0]))


def _zoneinfo(res: SimResult, k: int) -> str:
    zs = res.snaps_zs[k]
    lowmem = res.state.lowmem
    zones = []
    for z in range(zs.shape[0]):
        b = int(zs[z, Z_BOOST])
        zo = zimod.Zone(int(zs[z, Z_NODE]), ZONE_NAMES[int(zs[z, Z_TYPE])],
                        pages_free=int(zs[z, Z_FREE]), min=int(zs[z, Z_WMIN]) + b,
                        low=int(zs[z, Z_WLOW]) + b, high=int(zs[z, Z_WHIGH]) + b,
                        promo=int(zs[z, Z_WHIGH]) + b + (int(zs[z, Z_WHIGH]) - int(zs[z, Z_WLOW])),
                        boost=b, spanned=int(zs[z, Z_PRESENT]), present=int(zs[z, Z_PRESENT]),
                        managed=int(zs[z, Z_MANAGED]), cma=0,
                        protection=tuple(int(v) for v in list(lowmem[z]) + [lowmem[z][-1]]))
        zo.stats = {"nr_free_pages": int(zs[z, Z_FREE]),
                    "nr_free_pages_blocks": int(zs[z, Z_FREE_BLOCKS])}
        zo.extra = {"node_unreclaimable": 0, "start_pfn": int(res.state.zs[z, 0]),
                    "reserved_highatomic": int(zs[z, Z_HA_RESERVED]),
                    "free_highatomic": int(zs[z, Z_HA_FREE])}
        zones.append(zo)
    return zimod.render(zones)


def _vmstat(res: SimResult, k: int) -> str:
    zs, c = res.snaps_zs[k], res.snaps_cnt[k]
    per_zone = {ZONE_NAMES[int(zs[z, Z_TYPE])].lower(): 0 for z in range(zs.shape[0])}
    out = {"nr_free_pages": int(zs[:, Z_FREE].sum()),
           "nr_free_pages_blocks": int(zs[:, Z_FREE_BLOCKS].sum()),
           "nr_zone_inactive_anon": 0, "nr_free_cma": 0}
    top = list(per_zone)[-1]  # the model counts page allocations per host: the highest zone
    for name in per_zone:
        out[f"pgalloc_{name}"] = int(c[C_PGALLOC]) if name == top else 0
    out.update({
        "pgfree": int(c[C_PGFREE]),
        "allocstall_normal": int(c[C_ALLOCSTALL]),
        "pgscan_kswapd": int(c[C_PGSCAN_KSWAPD]), "pgscan_direct": int(c[C_PGSCAN_DIRECT]),
        "pgsteal_kswapd": int(c[C_PGSTEAL_KSWAPD]), "pgsteal_direct": int(c[C_PGSTEAL_DIRECT]),
        "pageoutrun": int(c[C_PAGEOUTRUN]),
        "compact_migrate_scanned": int(c[C_COMPACT_MIGRATE]),
        "compact_stall": int(c[C_COMPACT_STALL]), "compact_fail": int(c[C_COMPACT_FAIL]),
        "compact_success": int(c[C_COMPACT_SUCCESS]),
        "compact_daemon_wake": int(c[C_KCOMPACTD_WAKE]),
        "compact_daemon_migrate_scanned": int(c[C_COMPACT_DAEMON_MIGRATE]),
        "kswapd_low_wmark_hit_quickly": 0, "kswapd_high_wmark_hit_quickly": 0,
        "thp_fault_alloc": int(c[C_THP_FAULT_ALLOC]),
        "thp_fault_fallback": int(c[C_THP_FAULT_FALLBACK]),
    })
    return "".join(f"{kk} {v}\n" for kk, v in out.items())


def _slabinfo(res: SimResult, k: int) -> str:
    """slabinfo 2.1 for the model's caches; caches that differ only by a ``#context`` suffix
    are one kernel cache (the same objects allocated from another context)."""
    inuse = res.extra.get("inuse")
    rows: dict = {}
    for i, c in enumerate(res.scenario.caches):
        name = c.name.split("#")[0]
        n = int(inuse[k, i]) if inuse is not None and k < len(inuse) else 0
        if name in rows:
            rows[name][1] += n
        else:
            rows[name] = [c, n]
    out = ["slabinfo - version: 2.1",
           "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : "
           "tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> "
           "<sharedavail>"]
    for name, (c, n) in rows.items():
        per = (res.state.spec.page_size << c.default_order) // c.object_size
        slabs = (n + per - 1) // per
        out.append(f"{name:<17} {n:6d} {slabs * per:6d} {c.object_size:6d} {per:4d} "
                   f"{1 << c.default_order:4d} : tunables    0    0    0 : slabdata {slabs:6d} "
                   f"{slabs:6d}      0")
    return "\n".join(out) + "\n"


def _meminfo(res: SimResult, k: int) -> str:
    zs = res.snaps_zs[k]
    page_size = res.state.spec.page_size
    total = int(zs[:, Z_MANAGED].sum()) * (page_size // 1024)
    free = int(zs[:, Z_FREE].sum()) * (page_size // 1024)
    return (f"MemTotal:       {total:8d} kB\nMemFree:        {free:8d} kB\n"
            f"MemAvailable:   {free:8d} kB\nBuffers:               0 kB\nCached:                0 kB\n"
            f"Hugepagesize:   {pmd_kb(page_size):8d} kB\n")


def _net_snmp(out_errors: int, out_msgs: int) -> str:
    return ("Icmp: InMsgs InErrors InCsumErrors InDestUnreachs InTimeExcds InParmProbs InSrcQuenchs "
            "InRedirects InEchos InEchoReps InTimestamps InTimestampReps InAddrMasks InAddrMaskReps "
            "OutMsgs OutErrors OutRateLimitGlobal OutRateLimitHost OutDestUnreachs OutTimeExcds "
            "OutParmProbs OutSrcQuenchs OutRedirects OutEchos OutEchoReps OutTimestamps "
            "OutTimestampReps OutAddrMasks OutAddrMaskReps\n"
            f"Icmp: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 {out_msgs} {out_errors} 0 0 0 0 0 0 0 0 0 0 0 0 0\n")


def _net_dev(rx_packets: int) -> str:
    """/proc/net/dev with lo idle and eth0 receiving the load's packets (1,500 B each)."""
    head = ("Inter-|   Receive                                                |  Transmit\n"
            " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets "
            "errs drop fifo colls carrier compressed\n")
    lo = "    lo:     4000      40    0    0    0     0          0         0     4000      40    0    0    0     0       0          0\n"
    eth = (f"  eth0: {rx_packets * 1500} {rx_packets}    0    0    0     0          0         0 "
           f"{rx_packets * 80} {rx_packets // 2}    0    0    0     0       0          0\n")
    return head + lo + eth


def emit(res: SimResult, out: Path, boot: datetime = BOOT) -> dict:
    """Write the bundle to ``out`` (atomically: a temporary folder renamed into place)."""
    out = Path(out)
    sc = res.scenario
    release = sc.kernel_release.get(res.policy, "6.16.3-model")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "dmesg").write_text("\n".join(dmesg_lines(res, release)) + "\n")
        (tmp / "proc/sys/vm").mkdir(parents=True)
        (tmp / "proc/sys/vm/defrag_mode").write_text("0\n" if res.policy == "legacy" else "1\n")
        (tmp / "uname").write_text(f"Linux {sc.name} {release} #1 SMP PREEMPT_DYNAMIC x86_64 GNU/Linux\n")
        slub_fail_cum = None
        if sc.corroborate_icmp:
            slub_t = np.sort(res.truth[res.truth[:, 1] == 0, 0])
            slub_fail_cum = slub_t
        for k, t in enumerate(res.snaps_t):
            d = tmp / "snapshots" / (boot + timedelta(seconds=float(t))).strftime("%Y%m%dT%H%M%SZ")
            d.mkdir(parents=True, exist_ok=True)
            (d / "pagetypeinfo").write_text(_pagetypeinfo(res, k))
            (d / "buddyinfo").write_text(_buddyinfo(res, k))
            (d / "zoneinfo").write_text(_zoneinfo(res, k))
            (d / "vmstat").write_text(_vmstat(res, k))
            (d / "meminfo").write_text(_meminfo(res, k))
            if slub_fail_cum is not None:
                n = int(np.searchsorted(slub_fail_cum, float(t), side="right"))
                (d / "net_snmp").write_text(_net_snmp(n, int(res.snaps_cnt[k][C_NET_DEMAND])))
            if sc.nic_rx:
                (d / "net_dev").write_text(_net_dev(int(res.snaps_cnt[k][C_NET_DEMAND])))
            if sc.caches:
                (d / "slabinfo").write_text(_slabinfo(res, k))
        summ = res.summary()
        meta = {
            "host": f"model-{sc.name}-{res.policy}-{res.seed}",
            "kernel_release": release,
            "defrag_mode": 0 if res.policy == "legacy" else 1,
            "boot_time": boot.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "captured_from": f"synthetic: mmtriage model simulate --scenario {sc.name} "
                             f"--policy {res.policy} --seed {res.seed}",
            "model": {"scenario": sc.name, "policy": res.policy, "seed": res.seed,
                      "simulated_s": res.seconds, "params": summ["params"],
                      "truth": {"failures": summ["failures"], "reports": summ["reports"],
                                "truth_file": "truth.csv.gz",
                                "truth_rows_kept": int(len(res.truth))}},
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        with gzip.open(tmp / "truth.csv.gz", "wt") as fh:
            fh.write("time_s,kind,order,cause,cache\n")
            names = [c.name for c in sc.caches]
            for t, kind, order, cause, cache in res.truth:
                fh.write(f"{t:.6f},{'slub' if kind == 0 else 'page_alloc'},{int(order)},"
                         f"{CAUSE_NAMES[int(cause)]},{names[int(cache)] if cache >= 0 else ''}\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta
