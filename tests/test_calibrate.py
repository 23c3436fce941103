"""Calibration: recover known parameters from an emitted bundle; reproduce the real lab run."""
import numpy as np
import pytest

from models.calibrate import TYPES, calibrate, observe, whatif
from parsers.bundle import load
from tests.conftest import LAB1, emit_from_lab_host, need

# The workload the recovery bundle is made with: a request/reply flood on the real lab
# host's fragmented memory, 30 % of replies queued until it stops, 90 % with a data buffer,
# and 0.3 s of direct reclaim before a process-context allocation may convert a block.
TRUTH = {"net_rate": 25000.0, "net_obj_life_s": 1.0, "net_hold_frac": 0.3, "kernel_share": 1.0,
         "data_share": 0.9, "reclaim_stall_s": 0.3, "net_start_s": 4.5, "net_stop_s": 33.5}


@pytest.fixture(scope="module")
def recovery_bundle(tmp_path_factory):
    """A bundle emitted from the calibration's own model class with TRUTH, started from the
    real lab host's fragmented state, snapshots every second (as `collect --interval 1`
    takes them), ICMP counters corroborating."""
    return emit_from_lab_host(tmp_path_factory.mktemp("recovery") / "bundle", TRUTH, "recovery",
                              corroborate_icmp=True)


@pytest.mark.slow
def test_recovers_known_parameters(recovery_bundle):
    path, res = recovery_bundle
    assert res.summary()["failures"]["total"] > 10_000  # a regime where failures matter
    with load(path) as b:
        o = observe(b)
        t0 = (b.snapshots[o.start_index].time - b.snapshots[0].time).total_seconds()
        r = calibrate(b, budget_s=60, evals=400)  # a fixed count: the same result anywhere
    got = dict(r["params"])
    got["net_start_s"] += t0  # the fit counts from its start snapshot, the truth from boot
    got["net_stop_s"] += t0
    assert set(r["fitted"]) == {"net_obj_life_s", "net_hold_frac", "data_share",
                                "reclaim_stall_s"}
    assert set(r["measured"]) >= {"net_rate", "net_start_s", "net_stop_s"}
    for name, want in TRUTH.items():
        assert got[name] == pytest.approx(want, rel=0.10), (name, got[name], want)
    fail = r["fit"][0]
    assert fail["observed"] == res.summary()["failures"]["total"]
    assert abs(fail["rel_error"]) <= 0.15, fail


def test_observations_from_the_real_lab_run():
    with load(need(LAB1)) as b:
        o = observe(b)
    assert o.failures == 293260 and o.failures_source.startswith("Icmp OutErrors")
    assert list(o.times) == [21.0, 42.0, 45.0, 48.0]
    # the echo requests answered (Icmp InEchos): each answer is one atomic reply, sent or failed
    assert o.demand_source == "Icmp InEchos"
    assert list(o.demand) == [197214, 384512, 384512, 384512]
    # every reply sent stayed queued on an unread socket: held = answered - failed, to 0.1 %
    held = o.inuse["skbuff_head_cache"][1] - o.inuse_base["skbuff_head_cache"]
    assert held == pytest.approx(o.demand[1] - o.fail_series[1], rel=1e-3)
    assert o.hold_max == 16 * 14564  # meta.json: NSOCK=16 RCVBUF=16777216
    assert list(o.fail_series) == [173507, 293260, 293260, 293260]
    assert list(o.inuse["skbuff_head_cache"]) == [23280, 91280, 112, 112]
    assert list(o.inuse["kmalloc-2k"]) == [23396, 91392, 160, 160]
    # DMA32 went from 14 to 110 unmovable pageblocks, DMA from 1 to 7
    assert list(o.blocks[:, TYPES.index("Unmovable")]) == [26, 102, 102, 102]
    assert o.vmstat["allocstall"][-1] == 1008
    assert o.first_failure_s == pytest.approx(22.95, abs=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("payload,cache,size,order,min_order", [
    (1400, "kmalloc-2k", 2048, 3, 0),        # the lab's default, the real runs' data cache
    (56, "skbuff_small_head", 704, 2, 0),    # a ping's default: fits the small-head cache
    (3000, "kmalloc-4k", 4096, 3, 0),
    (7000, "kmalloc-8k", 8192, 3, 1),
])
def test_the_echo_payload_picks_the_data_cache(payload, cache, size, order, min_order):
    """kmalloc_reserve's choice for an echo reply on loopback (payload + 59 B of headers and
    slack, 64-aligned, + 320 B of skb_shared_info): the small-head cache when it fits, else
    the kmalloc cache it rounds up to; slab orders as the real guest's slabinfo lists them.
    The queue limit charges each object that buffer + its 256 B head."""
    from types import SimpleNamespace
    from models.calibrate.observe import data_cache, queue_limit
    with load(need(LAB1)) as b:
        snap = b.snapshots[0]
        meta = {"workload": {"payload": payload, "nsock": 4, "rcvbuf": 16 << 20}}
        c = data_cache(SimpleNamespace(meta=meta), snap)
    assert (c.name, c.object_size, c.default_order, c.min_order) == (cache, size, order, min_order)
    cap, why = queue_limit(SimpleNamespace(meta=meta), c)
    assert cap == 4 * -(-2 * (16 << 20) // (size + 256)) and f"{size + 256:,} B" in why
    assert data_cache(SimpleNamespace(meta={"workload": {"payload": 9000}}), snap) is None
    assert data_cache(SimpleNamespace(meta={}), snap).name == "kmalloc-2k"


def test_a_small_payload_run_holds_its_buffers_in_the_small_head_cache():
    """A real run with 56-byte echo requests: the model's data buffers are skbuff_small_head
    objects, as the kernel's were (it held 263,926 of them at +40 s, kmalloc-2k none), and the
    queue limit charges 960 B an object."""
    from tests.conftest import FIXTURES
    with load(need(FIXTURES / "lab-runs" / "payload56")) as b:
        o = observe(b)
    assert o.data_cache.name == "skbuff_small_head" and o.data_cache.object_size == 704
    held = o.inuse["skbuff_small_head"] - o.inuse_base["skbuff_small_head"]
    assert held[1] == pytest.approx(o.demand[1] - o.fail_series[1], rel=1e-3)
    assert "kmalloc-2k" not in o.inuse
    assert o.hold_max == 16 * -(-2 * (16 << 20) // 960)


def test_real_lab_run_is_reproduced_and_whatif_agrees():
    with load(need(LAB1)) as b:
        r = calibrate(b, budget_s=60, evals=400)
        fail = r["fit"][0]
        assert fail["observed"] == 293260
        assert abs(fail["rel_error"]) <= 0.25, r["fit"][:4]
        end = [x for x in r["fit"] if x["observable"].endswith("at +48 s")]
        movable = [x for x in end if x["observable"].startswith("free MiB Movable")]
        unmovable = [x for x in end if x["observable"].startswith("free MiB Unmovable")]
        blocks = [x for x in end if x["observable"].startswith("Unmovable pageblocks")]
        for row in movable + unmovable + blocks:
            assert abs(row["rel_error"]) <= 0.15, row
        fixed = whatif(b, r["params"], "defrag-fixed", seeds=range(1, 4))
        legacy = whatif(b, r["params"], "legacy", seeds=range(1, 4))
        again = whatif(b, r["params"], "defrag", seeds=range(1, 4))
    assert fixed["failures"]["p95"] <= 0.01 * 293260   # what 7.2+ kernels did in this setup
    assert legacy["failures"]["p95"] <= 0.01 * 293260  # what the defrag_mode=0 run did
    assert again["failures"]["mean"] > 0.5 * 293260
    assert fixed["price"]["blocks_converted"]["mean"] > 0


def test_seeds_run_together_give_what_they_give_one_at_a_time():
    from models.calibrate import Fitter, default_start
    with load(need(LAB1)) as b:
        names, start, measured = default_start(observe(b))
        fit = Fitter(b, names, measured)
        p = fit.params(fit.encode({**start, "reclaim_stall_s": 0.5}))
        together = fit.run_many(p, (3, 4, 5))
        alone = [fit.observables(fit.run(p, s)) for s in (3, 4, 5)]
    assert together[0]["failures"] > 0
    for a, b_ in zip(together, alone):
        assert a["failures"] == b_["failures"]
        assert np.array_equal(a["fail_series"], b_["fail_series"])
        assert np.array_equal(a["free_mb"], b_["free_mb"])
        assert {k: list(v) for k, v in a["reports"].items()} == \
            {k: list(v) for k, v in b_["reports"].items()}
