"""Bundles emitted from known workload parameters on a real host's state: what parameter
recovery checks (tests, ``bench/calibrate_bench.py``, ``bench/estimate_bench.py``) fit, with
the model's own truth beside them."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from models.calibrate.observe import observe
from models.calibrate.workload import scenario_for
from models.emit import emit
from models.simulate import simulate
from models.state import from_snapshot


def emit_on_host(host, out: Path, truth: dict, name: str, snap_every_s: float = 1.0,
                 corroborate_icmp: bool = False, nic_rx: bool = False,
                 window_s: float = 42.0, seed: int = 3):
    """Simulate the calibration's workload with ``truth`` from the fragmented state of the
    bundle ``host`` (its start snapshot), for ``window_s`` with a snapshot every
    ``snap_every_s`` (as ``collect --interval`` takes them), under defrag_mode on the real
    6.16.3 release, and emit it to ``out``. ICMP counters corroborate the failures with
    ``corroborate_icmp``; eth0's packets count the load with ``nic_rx``. Returns (out, the
    simulation)."""
    obs = observe(host)
    snap = host.snapshots[obs.start_index]
    st = from_snapshot(snap.pagetypeinfo, snap.zoneinfo, meminfo=snap.meminfo)
    obs.window_s = window_s
    sc = scenario_for(host, obs, truth, st.spec)
    sc.name, sc.corroborate_icmp, sc.nic_rx = name, corroborate_icmp, nic_rx
    sc.kernel_release = {"defrag": "6.16.3+deb13-amd64"}
    res = simulate(sc, "defrag", seed=seed, params=sc.params, state=st,
                   snap_times=np.arange(0.0, window_s + 1.0, snap_every_s))
    emit(res, out)
    return out, res
