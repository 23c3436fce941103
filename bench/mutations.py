"""The long run of the mutation property tests: many random examples instead of the suite's
bounded, repeatable ones. Prints the examples run and the outcome."""
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
env = dict(os.environ, MMTRIAGE_MUTATION_EXAMPLES=str(n), MMTRIAGE_MUTATION_RANDOM="1")
t = time.perf_counter()
r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    "tests/test_mutations.py"], cwd=ROOT, env=env)
print(f"mutations: up to {n} random examples per property, {time.perf_counter() - t:.1f} s, "
      f"{'all held' if r.returncode == 0 else 'FAILED'}")
sys.exit(r.returncode)
