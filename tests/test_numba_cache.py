"""The compiled model's cache is keyed by its sources: numba checks a cached function only
against its own file, while it carries code inlined from the others."""
import hashlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _cache_dir(env_dir=None) -> str:
    code = ("import models.engine; from numba.core import config; print(config.CACHE_DIR)")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT)}
    if env_dir:
        env["NUMBA_CACHE_DIR"] = env_dir
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_the_cache_directory_is_named_by_every_compiled_module_s_source(tmp_path):
    h = hashlib.sha256()
    for name in ("engine.py", "pages.py", "sim.py", "state.py"):
        h.update((ROOT / "models" / name).read_bytes())
    d = _cache_dir()
    assert Path(d) == ROOT / "models" / "__pycache__" / "numba" / h.hexdigest()[:16]
    # NUMBA_CACHE_DIR (a read-only install's service sets it) is the base, still keyed
    assert Path(_cache_dir(str(tmp_path))) == tmp_path / h.hexdigest()[:16]
