"""The contract under hostile input (tests/hostile.py generates the cases): every command, every
input kind. For each case: the exit code it allows and never 70, no traceback, exactly one
``Error:`` line naming the input for exit 1 and nothing on stdout, nothing half-written at
``--output``, no extraction left in the temporary directory, and the real log's failure counts
wherever the input still holds them.

Cases that fail in code this branch does not own are xfail(strict=True) with the owner as the
reason: when the owner fixes them they pass, and strict makes the marker go.
``MMTRIAGE_HOSTILE_LONG=1`` adds the big inputs (marked slow).
"""
from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests import hostile
from tests.conftest import ROOT

LONG = os.environ.get("MMTRIAGE_HOSTILE_LONG") == "1"
ISOLATED_MEMORY = 2 << 30      # address space for a subprocess case: runaway reads fail fast
ISOLATED_TIMEOUT = 10
COUNT_KEYS = ("slub_reports", "page_alloc_reports", "suppressed", "slub_failures_estimated",
              "page_alloc_failures_estimated")


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None
    doc: str = ""           # the JSON document: --output's file, else stdout


def _params():
    out = []
    for c in hostile.cases(LONG):
        marks = [pytest.mark.timeout(300 if c.long else 60)]
        if c.owner:
            marks.append(pytest.mark.xfail(strict=True, reason=c.owner))
        if c.long:
            marks.append(pytest.mark.slow)
        out.append(pytest.param(c, id=c.id, marks=marks))
    return out


def run_inprocess(argv: list[str], stdin: bytes | None = None) -> Result:
    from analyzer.cli import app
    r = CliRunner().invoke(app, argv, input=stdin)
    exc = r.exception if not isinstance(r.exception, SystemExit) else None
    if exc is not None:
        import traceback
        tb = "".join(traceback.format_exception(exc))
        return Result(r.exit_code, r.stdout, r.stderr + "\nTraceback (in process):\n" + tb, exc)
    return Result(r.exit_code, r.stdout, r.stderr)


def _limit_memory():
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (ISOLATED_MEMORY, ISOLATED_MEMORY))


def run_isolated(argv: list[str], d: Path, stdin_file: str | None = None,
                 stdin: bytes | None = None) -> Result:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(d / "tmp")}
    fin = open(stdin_file, "rb") if stdin_file else (subprocess.PIPE if stdin is not None else subprocess.DEVNULL)
    try:
        p = subprocess.run([sys.executable, "-m", "analyzer.cli", *argv], cwd=ROOT, env=env,
                           stdin=fin, input=stdin if stdin is not None and not stdin_file else None,
                           capture_output=True, timeout=ISOLATED_TIMEOUT, preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired:
        pytest.fail(f"no answer within {ISOLATED_TIMEOUT} s (a hang): mmtriage {' '.join(argv)}")
    finally:
        if stdin_file:
            fin.close()
    return Result(p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"))


@pytest.fixture(scope="module")
def reference():
    r = run_inprocess(["parse", str(hostile.LOG), "-f", "json"])
    s = json.loads(r.stdout)["summary"]
    # the real capture: a broken reference would make every comparison below vacuous
    assert s["slub_reports"] == 30 and s["page_alloc_reports"] == 2
    assert s["suppressed"] == {"slab_out_of_memory": 2945, "warn_alloc": 1586}
    return {k: s[k] for k in COUNT_KEYS}


@pytest.mark.parametrize("case", _params())
def test_contract(case: hostile.Case, tmp_path, monkeypatch, reference):
    d = tmp_path
    (d / "tmp").mkdir()
    if case.build:
        case.build(d)
    argv = hostile.expand(case.argv, d)
    out = d / "out" / "result.json"
    if case.out:
        argv += ["-o", str(out)]
    if case.isolate:
        r = run_isolated(argv, d, case.stdin_file, case.stdin)
    else:
        monkeypatch.setattr(tempfile, "tempdir", str(d / "tmp"))
        for target, value in case.patch.items():
            mod, name = target.split(":")
            monkeypatch.setattr(importlib.import_module(mod), name, value)
        r = run_inprocess(argv, case.stdin)
    r.doc = out.read_text() if case.out and out.exists() else r.stdout
    where = f"mmtriage {' '.join(a[:80] for a in argv)}\nexit {r.exit_code}\nstderr: {r.stderr[-3000:]}"

    # never a traceback, never an internal error
    assert r.exception is None and "Traceback" not in r.stderr, where
    assert r.exit_code != 70, where
    assert r.exit_code in case.exit, where
    lines = r.stderr.strip().splitlines()
    if r.exit_code == 1:
        assert len(lines) == 1 and lines[0].startswith("Error: "), where
        if r.stdout:  # a whole document (an ingest's list of errors) or nothing
            json.loads(r.stdout)
        if case.names:
            assert case.names.replace("{d}", str(d)) in lines[0], where
    if r.exit_code == 2 and case.names:
        assert case.names in r.stderr, where
    # nothing half-written: the output exists whole, or not at all (no temporary sibling)
    if case.out:
        if r.exit_code == 0:
            if "-f" in argv and argv[argv.index("-f") + 1] == "json" or "-f" not in argv:
                json.loads(out.read_text())
        else:
            assert not (d / "out").exists() or not any((d / "out").iterdir()), where
    # no extraction left behind
    assert not list((d / "tmp").iterdir()), list((d / "tmp").iterdir())
    if case.counts:
        s = json.loads(r.doc)["summary"]
        assert {k: s[k] for k in COUNT_KEYS} == reference, where
    if case.check:
        case.check(d, r)


# -- signals during tar extraction: a real process, a real signal -----------------------------
def _big_tarball(d: Path) -> Path:
    # 768 MiB of zeros in a 40 KiB .tar.zst: enough that the unpacking is still writing
    # when the signal comes, within every limit, so extraction really starts
    return hostile.tar_members(d / "big.tar.zst", hostile.bundle_members([("host1/kern.log", "zeros", 768 << 20)]),
                               "w|zst")


def _signal_mid_extraction(tmp_path, sig) -> tuple[subprocess.Popen, list]:
    tb = _big_tarball(tmp_path)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmpdir)}
    from tests.conftest import interruptible
    p = subprocess.Popen([sys.executable, "-m", "analyzer.cli", "parse", str(tb)], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=interruptible)
    deadline = time.time() + 60
    seen = None
    while time.time() < deadline and p.poll() is None:
        logs = list(tmpdir.glob("mmtriage-*/host1/kern.log"))
        if logs and logs[0].stat().st_size > (8 << 20):
            seen = logs[0]
            break
        time.sleep(0.01)
    if seen is None:
        p.kill()  # never leave the process behind a failed test
        p.wait()
    assert seen is not None, "the extraction was never seen writing (too fast, or it failed): " + \
        p.stderr.read().decode()
    p.send_signal(sig)
    p.wait(timeout=60)
    return p, list(tmpdir.iterdir())


@pytest.mark.timeout(120)
def test_ctrl_c_mid_extraction_leaves_no_temp(tmp_path):
    p, left = _signal_mid_extraction(tmp_path, signal.SIGINT)
    assert left == [], left
    assert p.returncode == 130
    assert p.stderr.read().decode().strip() == "Error: interrupted"


@pytest.mark.timeout(120)
def test_sigterm_mid_extraction_leaves_no_temp(tmp_path):
    p, left = _signal_mid_extraction(tmp_path, signal.SIGTERM)
    assert left == [], left
    assert p.returncode == 128 + signal.SIGTERM
    assert "Traceback" not in p.stderr.read().decode()
