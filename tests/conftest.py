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
    """A bundle emitted from ``truth`` on the real lab host's state (LAB1), 42 s with a
    snapshot every second (models.calibrate.recovery). Returns (path, the simulation)."""
    from models.calibrate.recovery import emit_on_host
    from parsers.bundle import load
    with load(need(LAB1)) as host:
        return emit_on_host(host, out, truth, name, corroborate_icmp=corroborate_icmp,
                            nic_rx=nic_rx)
