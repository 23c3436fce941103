import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("MMTRIAGE_SHARED", ROOT.parent / "shared"))
CORPUS = SHARED / "corpus"
PUBLIC = CORPUS / "public"
LAB1 = CORPUS / "lab" / "k6.16.3-defrag1"
LAB0 = CORPUS / "lab" / "k6.16.3-defrag0"
SAMPLES = ROOT / "sample_logs"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


@pytest.fixture
def public():
    return need(PUBLIC)
