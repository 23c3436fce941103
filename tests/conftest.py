import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SAMPLES = ROOT / "sample_logs"
FIXTURES = ROOT / "tests" / "fixtures"
# Real logs and /proc files as people posted them; provenance in public/SOURCES.md.
PUBLIC = FIXTURES / "public"
# The real-kernel captures are sample bundles as well; they are stored once, there.
LAB1 = SAMPLES / "lab-6.16.3-defrag1"
LAB0 = SAMPLES / "lab-6.16.3-defrag0"
HOST618 = SAMPLES / "host-6.18-x86_64-corpus"


def need(path: Path) -> Path:
    # Test data lives in the repository: a missing file is a broken checkout, not a skip.
    assert path.exists(), f"test data missing from the repository: {path}"
    return path


@pytest.fixture
def public():
    return need(PUBLIC)


def interruptible():
    """For a child a test interrupts with SIGINT: Ctrl-C's default disposition. A shell that
    runs the suite as a background job starts it with SIGINT ignored, and a child would
    inherit that and never see the signal the test sends."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def emit_from_lab_host(out: Path, truth: dict, name: str, corroborate_icmp: bool = False,
                       nic_rx: bool = False):
    """A bundle emitted from the calibration's own model class with the parameters ``truth``,
    started from the real lab host's fragmented state (LAB1), 42 s with a snapshot every
    second (as `collect --interval 1` takes them). Returns (path, the simulation)."""
    import numpy as np

    from models.calibrate import observe, scenario_for
    from models.emit import emit
    from models.simulate import simulate
    from models.state import from_snapshot
    from parsers.bundle import load
    with load(need(LAB1)) as b:
        obs = observe(b)
        snap = b.snapshots[obs.start_index]
        st = from_snapshot(snap.pagetypeinfo, snap.zoneinfo, meminfo=snap.meminfo)
        obs.window_s = 42.0
        sc = scenario_for(b, obs, truth, st.spec)
    sc.name, sc.corroborate_icmp, sc.nic_rx = name, corroborate_icmp, nic_rx
    sc.kernel_release = {"defrag": "6.16.3+deb13-amd64"}
    res = simulate(sc, "defrag", seed=3, params=sc.params, state=st,
                   snap_times=np.arange(0.0, 43.0, 1.0))
    emit(res, out)
    return out, res
