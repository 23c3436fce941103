"""Named scenarios: a host, how it starts (fragmentation), its SLUB caches and its workload
parameter vector. Every number here is a parameter a calibration may move."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from models.engine import GFP_ATOMIC
from models.sim import PARAMS
from models.state import HostSpec

# The range each workload parameter may take. Outside it a run is meaningless (a negative
# rate, a fraction over 1) or never ends (NaN makes the Poisson draw loop, a rate of 1e12 per
# second is 1e10 operations per simulated tick). Rates are per second; the widest real host
# does a few million atomic allocations per second.
_RATE = (0.0, 1e7)
_LIFE = (0.0, 1e9)        # seconds; 0: never freed
_FRAC = (0.0, 1.0)
PARAM_BOUNDS = {
    "net_rate": _RATE, "net_burst_mult": (0.0, 1e4), "net_burst_frac": _FRAC,
    "net_burst_len_s": (0.0, 1e6), "net_obj_life_s": _LIFE, "kernel_rate": _RATE,
    "kernel_life_s": _LIFE, "reclaimable_rate": _RATE, "reclaimable_life_s": _LIFE,
    "pagecache_rate": _RATE, "pagecache_life_s": _LIFE, "anon_rate": _RATE, "anon_life_s": _LIFE,
    "thp_rate": _RATE, "thp_life_s": _LIFE, "kswapd_rate": _RATE, "kcompactd_rate": _RATE,
    "atomic_page_rate": _RATE, "atomic_high_rate": _RATE,
    "atomic_high_order": (0.0, 10.0),   # below the host's max_order (checked per host too)
    "net_start_s": (0.0, 1e9), "net_stop_s": (0.0, 1e9), "net_hold_frac": _FRAC,
    "reclaim_stall_s": (0.0, 3600.0),
    "net_hold_max": (0.0, 1e9),  # objects held at most (full receive queues); 0: no limit
    "net_release_s": (0.0, 1e9),  # the held objects are freed then, if after the stop
}
assert set(PARAM_BOUNDS) == set(PARAMS)


def param_problem(name: str, value) -> str | None:
    """Why ``value`` cannot be workload parameter ``name``, or None if it can."""
    if name not in PARAM_BOUNDS:
        return f"unknown workload parameter {name!r}; choose from {', '.join(PARAMS)}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{name}: expected a number, got {type(value).__name__} {value!r:.40}"
    try:
        v = float(value)
    except OverflowError:  # an integer of 400 digits
        return f"{name}: {str(value)[:20]}... is out of range"
    lo, hi = PARAM_BOUNDS[name]
    if not math.isfinite(v):
        return f"{name}: expected a finite number, got {value!r}"
    if not lo <= v <= hi:
        return f"{name}={v:g} is out of range [{lo:g}, {hi:g}]"
    return None


@dataclass
class Cache:
    name: str
    object_size: int
    default_order: int
    min_order: int
    gfp: int = GFP_ATOMIC
    share: float = 1.0     # share of net_rate that allocates from this cache
    # the cache whose object this one completes (an skb's data buffer after its head): it is
    # allocated for that share of the parent's successes, and its failure frees the parent's
    parent: str | None = None


@dataclass
class Scenario:
    name: str
    description: str
    host: HostSpec
    params: dict
    caches: list = field(default_factory=list)
    start: dict = field(default_factory=dict)   # State.fragment() arguments
    hours: float = 2.0
    dt: float = 0.01
    snap_every_s: float = 300.0
    kernel_release: dict = field(default_factory=dict)  # policy -> release string
    comm: str = "swapper/0"
    corroborate_icmp: bool = False
    # emit /proc/net/dev with the network objects requested as packets received on eth0 (a
    # host whose only count of its load is its NIC's)
    nic_rx: bool = False

    def vector(self) -> list[float]:
        return [float(self.params.get(n, 0.0)) for n in PARAMS]


def _p(**kw) -> dict:
    base = {n: 0.0 for n in PARAMS}
    base.update(net_burst_mult=1.0, kswapd_rate=20000.0, kcompactd_rate=5000.0,
                net_obj_life_s=0.05, atomic_high_order=3.0)
    base.update(kw)
    return base


RELEASES = {"legacy": "6.16.3-model", "defrag": "6.16.3-model", "defrag-fixed": "7.2.6-model"}


def get(name: str, mem_gib: float | None = None) -> Scenario:
    """A scenario by name; ``mem_gib`` resizes its host (tests use small ones)."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    sc = SCENARIOS[name]()
    if mem_gib is not None:
        sc.host = HostSpec.x86_64(mem_gib)
    return sc


def seed_skbuff() -> Scenario:
    """The production report: a 64 GiB network-heavy host whose page cache has fragmented the
    movable blocks (13+ GB free, all of it in sub-pageblock holes) and whose movable blocks are
    nearly all polluted by old unmovable steals, so compaction frees few whole blocks."""
    return Scenario(
        "seed-skbuff", seed_skbuff.__doc__, HostSpec.x86_64(64),
        _p(net_rate=60000.0, net_burst_mult=12.0, net_burst_frac=0.08, net_burst_len_s=1.5,
           net_obj_life_s=0.08, kernel_rate=300.0, kernel_life_s=600.0, pagecache_rate=3000.0,
           pagecache_life_s=3600.0, anon_rate=500.0, anon_life_s=300.0, kswapd_rate=4000.0,
           kcompactd_rate=1500.0),
        [Cache("skbuff_head_cache", 256, 1, 0)],
        dict(unmovable_frac=0.05, reclaimable_frac=0.02, free_frac=0.235, pinned_per_block=1,
             pinned_frac=0.985, zones=None),
        hours=2.0, dt=0.01, snap_every_s=600.0, kernel_release=dict(RELEASES),
        comm="swapper/17", corroborate_icmp=True)


def thp_light() -> Scenario:
    """THP faults (GFP_TRANSHUGE_LIGHT, order 9, no reclaim bits) on a fragmented 8 GiB host:
    they fail in every policy, by design and quietly (__GFP_NOWARN)."""
    return Scenario(
        "thp-light", thp_light.__doc__, HostSpec.x86_64(8),
        _p(thp_rate=20.0, thp_life_s=60.0, anon_rate=2000.0, anon_life_s=30.0,
           pagecache_rate=1000.0, kcompactd_rate=200.0),
        [],
        dict(unmovable_frac=0.06, reclaimable_frac=0.03, free_frac=0.15, pinned_per_block=1,
             pinned_frac=1.0, zones=None),
        hours=0.5, snap_every_s=300.0, kernel_release=dict(RELEASES), comm="java")


def low_memory() -> Scenario:
    """Free memory genuinely below the watermarks on a 2 GiB host full of anonymous memory
    (no swap, nothing to reclaim): atomic allocations fail in every policy."""
    return Scenario(
        "low-memory", low_memory.__doc__, HostSpec.x86_64(2),
        _p(net_rate=3000.0, net_burst_mult=4.0, net_burst_frac=0.2, net_burst_len_s=2.0,
           net_obj_life_s=0.5, anon_rate=1500.0, anon_life_s=0.0, kswapd_rate=2000.0),
        [Cache("skbuff_head_cache", 256, 0, 0)],
        dict(unmovable_frac=0.10, reclaimable_frac=0.0, free_frac=1.0, pinned_per_block=0,
             zones=None, anon_share=0.985),
        hours=0.25, snap_every_s=120.0, kernel_release=dict(RELEASES), comm="kworker/0:1")


def high_order() -> Scenario:
    """Order-3 GFP_ATOMIC|__GFP_COMP buffers on a host whose free memory is all in order 0-2
    holes: failures from fragmentation, with or without defrag_mode."""
    return Scenario(
        "high-order", high_order.__doc__, HostSpec.x86_64(4),
        _p(atomic_high_rate=300.0, atomic_high_order=3.0, net_obj_life_s=1.0,
           net_burst_mult=5.0, net_burst_frac=0.1, net_burst_len_s=2.0, pagecache_rate=500.0,
           kswapd_rate=1000.0, kcompactd_rate=20.0),
        [],
        dict(unmovable_frac=0.06, reclaimable_frac=0.02, free_frac=0.20, pinned_per_block=1,
             pinned_frac=1.0, zones=None),
        hours=0.5, snap_every_s=300.0, kernel_release=dict(RELEASES), comm="ksoftirqd/3")


def lab() -> Scenario:
    """The real-kernel lab run (shared/corpus/lab): a 1.5 GiB, 2-vCPU guest, one mlocked page
    per pageblock, then a 40 s loopback ICMP flood of GFP_ATOMIC skb allocations."""
    spec = HostSpec.x86_64(1.5, reserved_frac=0.07)
    return Scenario(
        "lab", lab.__doc__, spec,
        _p(net_rate=7000.0, net_burst_mult=1.0, net_obj_life_s=10.0, kswapd_rate=0.0,
           kcompactd_rate=0.0, net_start_s=44.9, net_stop_s=84.9),
        [Cache("skbuff_head_cache", 256, 0, 0)],
        dict(unmovable_frac=0.0, reclaimable_frac=0.0, free_frac=0.94, pinned_per_block=1,
             pinned_frac=1.0, zones=None, cluster=0.3),
        hours=90 / 3600, dt=0.005, snap_every_s=10.0,
        kernel_release={"legacy": "6.16.3+deb13-amd64", "defrag": "6.16.3+deb13-amd64",
                        "defrag-fixed": "7.2.6+deb13-amd64"},
        comm="pingflood", corroborate_icmp=True)


SCENARIOS = {"seed-skbuff": seed_skbuff, "thp-light": thp_light, "low-memory": low_memory,
             "high-order": high_order, "lab": lab}
