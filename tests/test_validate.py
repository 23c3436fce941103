"""validate: real lab pairs and model-emitted pairs, each with the verdict asserted."""
import json

import pytest
from typer.testing import CliRunner

from analyzer.cli import app
from models import scenarios
from models.emit import emit
from models.simulate import simulate
from tests.conftest import LAB0, LAB1, need

runner = CliRunner()


def run(before, after, *extra):
    r = runner.invoke(app, ["validate", "--before", str(before), "--after", str(after),
                            "--format", "json", *extra])
    return r.exit_code, (json.loads(r.stdout) if r.stdout.strip() else None)


def test_real_defrag1_then_defrag0_is_fixed_by_mitigation():
    code, d = run(need(LAB1), need(LAB0))
    assert code == 0 and d["verdict"] == "fixed" and d["mitigated_by_defrag_mode_0"]
    assert d["before"]["target_estimated"] == 2975 and d["after"]["target_estimated"] == 0
    assert d["p_value"] < 1e-6 and d["exposure"]["after"]["exposed"]
    assert any("defrag_mode=0" in r for r in d["reasons"])


def test_two_affected_windows_are_not_fixed():
    code, d = run(need(LAB1), need(LAB1))
    assert code == 3 and d["verdict"] == "not_fixed" and d["rate_ratio"] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def lab_bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    out = {}
    sc = scenarios.get("lab")
    for name, pol, params in (("affected", "defrag", None), ("affected2", "defrag", None),
                              ("fixed", "defrag-fixed", None), ("legacy", "legacy", None),
                              ("noload", "defrag-fixed", {"net_rate": 0.0})):
        res = simulate(sc, pol, seed=11 if name != "affected2" else 12, params=params)
        emit(res, root / name)
        out[name] = root / name
    return out


@pytest.mark.parametrize("before,after,verdict,code", [
    ("affected", "fixed", "fixed", 0),
    ("affected", "legacy", "fixed", 0),
    ("affected", "affected2", "not_fixed", 3),
    ("affected", "noload", "inconclusive", 4),
    ("fixed", "fixed", "inconclusive", 4),
])
def test_model_pairs(lab_bundles, before, after, verdict, code):
    c, d = run(lab_bundles[before], lab_bundles[after])
    assert (c, d["verdict"]) == (code, verdict), d["reasons"]
    if verdict == "fixed":
        assert d["exposure"]["after"]["intervals_exposed"] >= 1
        assert d["model_check"]["would_succeed_share"] == 1.0
    if after == "noload":
        assert "not exposed" in d["reasons"][0]


def test_bad_input_is_an_error(tmp_path):
    r = runner.invoke(app, ["validate", "--before", str(tmp_path / "nope"), "--after", str(need(LAB0))])
    assert r.exit_code == 1 and r.stderr.startswith("Error: ")


def test_real_affected_kernel_then_fixed_kernel_is_fixed():
    from tests.conftest import SAMPLES
    code, d = run(SAMPLES / "lab-6.16.3-defrag1-mmtriage-lab", SAMPLES / "lab-7.3.4-defrag1-mmtriage-lab")
    assert code == 0 and d["verdict"] == "fixed" and not d["mitigated_by_defrag_mode_0"]
    assert d["after"]["fix"]["status"] == "fixed" and d["after"]["kernel_release"]["value"].startswith("7.3.4")
    assert d["exposure"]["after"]["intervals_exposed"] >= 1
    assert d["model_check"]["would_succeed_share"] == 1.0


def _spanning_bundle(root, host, parts):
    """A bundle whose kern.log runs through two boots, with both boots' snapshots re-timed.
    ``parts``: (source bundle, boot time, defrag_mode to record per snapshot or None)."""
    import shutil
    from datetime import datetime, timedelta
    from parsers.bundle import parse_snapshot_time
    from tests.formats import lines
    b = root / host
    out = []
    for src, boot, dm in parts:
        for t, msg in lines((src / "dmesg").read_text()):
            w = boot + timedelta(seconds=t or 0)
            out.append(f"{w.strftime('%b %e %H:%M:%S')} {host} kernel: [{t or 0:12.6f}] {msg}")
        old_boot = datetime.fromisoformat(json.loads((src / "meta.json").read_text())["boot_time"]
                                          .replace("Z", "+00:00"))
        for snap in (src / "snapshots").iterdir():
            t = boot + (parse_snapshot_time(snap.name) - old_boot)
            dst = b / "snapshots" / t.strftime("%Y%m%dT%H%M%SZ")
            shutil.copytree(snap, dst)
            for p in [dst] + list(dst.iterdir()):
                p.chmod(0o755 if p.is_dir() else 0o644)
            if dm is not None:
                (dst / "defrag_mode").write_text(f"{dm}\n")
    (b / "kern.log").write_text("\n".join(out) + "\n")
    (b / "meta.json").write_text(json.dumps({"host": host}))
    return b


def test_one_bundle_spanning_a_reboot_into_the_fixed_kernel(tmp_path):
    """kern.log across the reboot from 6.16.3 into 7.3.4, snapshots from both boots."""
    from datetime import datetime, timezone
    from tests.conftest import SAMPLES
    b = _spanning_bundle(tmp_path, "db-01", [
        (SAMPLES / "lab-6.16.3-defrag1-mmtriage-lab", datetime(2026, 11, 25, 10, tzinfo=timezone.utc), None),
        (SAMPLES / "lab-7.3.4-defrag1-mmtriage-lab", datetime(2026, 11, 25, 11, tzinfo=timezone.utc), None)])
    meta = json.loads((b / "meta.json").read_text())
    meta["defrag_mode"] = 1
    (b / "meta.json").write_text(json.dumps(meta))
    r = runner.invoke(app, ["validate", str(b), "--format", "json"])
    d = json.loads(r.stdout)
    assert r.exit_code == 0 and d["verdict"] == "fixed", d["reasons"]
    assert d["split"]["before_kernel"].startswith("6.16.3") and d["split"]["after_kernel"].startswith("7.3.4")
    assert d["before"]["target_estimated"] == 126355 and d["after"]["target_estimated"] == 0
    assert d["exposure"]["after"]["intervals_exposed"] >= 1


def test_one_kernel_throughout_is_an_error(tmp_path):
    r = runner.invoke(app, ["validate", str(need(LAB1))])
    assert r.exit_code == 1 and "one kernel throughout" in r.stderr


@pytest.mark.slow
def test_calibrated_model_check_agrees_on_the_real_pair():
    from tests.conftest import SAMPLES
    code, d = run(SAMPLES / "lab-6.16.3-defrag1-mmtriage-lab", SAMPLES / "lab-7.3.4-defrag1-mmtriage-lab",
                  "--calibrate", "20")
    cal = d["model_check"]["calibrated"]
    assert code == 0 and cal["after_policy"] == "defrag-fixed"
    assert cal["predicted_failures_per_hour"] < 0.01 * d["before"]["rate_per_hour"]
    assert cal["agrees"]


def test_one_bundle_with_a_defrag_mode_change_in_its_snapshots(tmp_path):
    """The real defrag_mode=1 run, then the =0 run of the same kernel: collect records
    defrag_mode in every snapshot, and validate splits where it changed."""
    from datetime import datetime, timezone
    b = _spanning_bundle(tmp_path, "web-07", [
        (need(LAB1), datetime(2026, 11, 25, 10, tzinfo=timezone.utc), 1),
        (need(LAB0), datetime(2026, 11, 25, 11, tzinfo=timezone.utc), 0)])
    r = runner.invoke(app, ["validate", str(b), "--format", "json"])
    d = json.loads(r.stdout)
    assert r.exit_code == 0 and d["verdict"] == "fixed", d["reasons"]
    assert d["split"]["defrag_mode"] == {"before": 1, "after": 0}
    assert d["mitigated_by_defrag_mode_0"]
    assert d["before"]["target_estimated"] == 2975 and d["after"]["target_estimated"] == 0
