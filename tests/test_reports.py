"""The reports a person reads, in every format, for the situations a host can be in: failing,
exposed with no failure yet, not exposed, and no kernel log; Markdown that no log text can
inject into; and docs/reference.md's bundle layout and JSON shapes against real output."""
import json
import re
import shutil

import pytest
from typer.testing import CliRunner

from analyzer.cli import app
from tests.conftest import HOST618, LAB0, LAB1, PUBLIC, ROOT, SAMPLES, need

runner = CliRunner()
LIVE = SAMPLES / "live-6.18-x86_64-collect"
LAB_RUN = SAMPLES / "lab-6.16.3-defrag1-mmtriage-lab"


@pytest.fixture(scope="module")
def before_flood(tmp_path_factory):
    """The real 6.16.3 defrag_mode=1 lab run cut before its ICMP flood: the log up to the
    first failure report (boot to /init, 2.9 s) and the two snapshots taken before the load
    (3 s and 15 s after boot). Exposed, no failure yet."""
    d = tmp_path_factory.mktemp("exposed") / "lab-6.16.3-before-flood"
    (d / "snapshots").mkdir(parents=True)
    for name in ("meta.json", "uname"):
        shutil.copy(need(LAB_RUN) / name, d / name)
    for snap in ("20261125T223819Z", "20261125T223831Z"):
        shutil.copytree(LAB_RUN / "snapshots" / snap, d / "snapshots" / snap)
    lines = (LAB_RUN / "dmesg").read_text().splitlines(keepends=True)
    first = next(i for i, ln in enumerate(lines) if "page allocation failure" in ln)
    (d / "dmesg").write_text("".join(lines[:first]))
    return d


CASES = {"failing": LAB1, "not_exposed": LAB0, "live": LIVE, "no_log": HOST618,
         "exposed": None}
EXIT = {"no_log": 4}
# the words each report must carry, in every format
WORDS = {
    "failing": ["Failures: the defrag_mode bailout", "printed", "suppressed",
                "estimated (lower bound)", "corroborated", "2,975", "293,260", "Icmp.OutErrors",
                "slab_out_of_memory 2,945", "not given: the window is 65 s",
                "Exposed to the defrag_mode bailout"],
    "exposed": ["No failures reported; exposed", "No allocation failure reports",
                "Exposed to the defrag_mode bailout: vm.defrag_mode=1 on kernel "
                "6.16.3+deb13-amd64, which predates the fix", "at least 36"],
    "not_exposed": ["No failures; not exposed", "No allocation failure reports",
                    "Not exposed to the defrag_mode bailout: vm.defrag_mode=0",
                    "harmless while vm.defrag_mode=0"],
    "live": ["No failures; not exposed", "Not exposed to the defrag_mode bailout: "
                                        "vm.defrag_mode=0", "at least 1,973"],
    "no_log": ["No kernel log: cannot tell", "looked for dmesg, dmesg.txt, kern.log",
               "failures cannot be counted", "Not exposed to the defrag_mode bailout"],
}
# sections and plots that have something to say only when there are failures
FAILURE_ONLY = ["Failure counts", "By cause", "By cache", "At the failures", "Records",
                "Failures over time"]
NOT_FOR_PEOPLE = [re.compile(r"\d\.\d+e[+-]\d"), re.compile(r"\bNone\b"), re.compile(r"\{'"),
                  re.compile(r"\bnan\b"), re.compile(r"\b2975\b"), re.compile(r"\b293260\b")]


def _path(case, before_flood):
    return before_flood if case == "exposed" else need(CASES[case])


def _render(path, fmt, tmp_path):
    if fmt == "table":
        r = runner.invoke(app, ["triage", str(path), "-f", "table"])
        return r, r.stdout
    out = tmp_path / f"report.{'md' if fmt == 'markdown' else fmt}"
    r = runner.invoke(app, ["triage", str(path), "-f", fmt, "-o", str(out)])
    return r, out.read_text()


def _squash(text):
    # rich wraps long cells over lines and pads them with box characters; read as words
    text = re.sub(r"[│┃┏┓┗┛┡┩└┘━─┳┻╇╈┼]", " ", text)
    return " ".join(text.split())


@pytest.mark.parametrize("fmt", ["table", "markdown", "html"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_each_report_says_what_matters(case, fmt, before_flood, tmp_path):
    r, text = _render(_path(case, before_flood), fmt, tmp_path)
    assert r.exit_code == EXIT.get(case, 0), r.output
    flat = _squash(text)
    if fmt == "markdown":
        flat = flat.replace("\\", "")  # Markdown escapes are not words
    for w in WORDS[case]:
        assert w in flat, (case, fmt, w)
    for pat in NOT_FOR_PEOPLE:
        assert not pat.search(text), (case, fmt, pat.pattern, pat.search(text).group(0))
    for section in FAILURE_ONLY:
        present = (f"## {section}" in text or f"![{section}]" in text if fmt == "markdown" else
                   f">{section}<" in text if fmt == "html" else section.lower() in text.lower())
        if fmt == "table" and section in ("By cache", "At the failures", "Records",
                                          "Failures over time"):
            continue  # the terminal table shows neither breakdowns nor plots
        assert present == (case == "failing"), (case, fmt, section)
    if fmt == "html":
        assert text.startswith("<!doctype html>") and "<pre>" not in text
        # the red box is for the bailout only
        assert ("border-color:#d62728" in text) == (case == "failing")
        assert not re.search(r"<h2>[^<]*</h2>\s*<h2>", text)  # no empty section
    if fmt == "markdown":
        assert text.startswith("# mmtriage: ")
        assert not re.search(r"^## .*\n\n## ", text, re.M)  # no empty section


def test_failures_over_time_draws_the_corroborated_count(tmp_path):
    r = runner.invoke(app, ["triage", str(need(LAB1)), "-f", "json", "--plots", str(tmp_path)])
    assert r.exit_code == 0
    svg = (tmp_path / "failures_over_time.svg").read_text()
    assert "corroborated (Icmp.OutErrors, 293,260)" in svg
    assert "estimated (lower bound), cumulative (2,975)" in svg
    assert "printed: defrag_mode NOFRAGMENT bailout" in svg
    # no failures: no failures plot, and the heatmap says which snapshot it shows and why
    out = tmp_path / "healthy"
    r = runner.invoke(app, ["triage", str(need(LAB0)), "-f", "json", "--plots", str(out)])
    assert r.exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "free_by_type_order.png", "free_by_type_order.svg", "free_over_time.png",
        "free_over_time.svg"]
    assert "fewest free pageblocks" in (out / "free_by_type_order.svg").read_text()


def test_a_folder_that_is_no_bundle_is_an_error():
    r = runner.invoke(app, ["triage", str(ROOT / "docs")])
    assert r.exit_code == 1
    assert r.stderr.strip() == (f"Error: {ROOT / 'docs'}: no kernel log (dmesg, dmesg.txt, kern.log, "
                                "messages, ...) and no snapshots/ found: not a host bundle")


@pytest.mark.parametrize("path", ["/bin/ls"])
def test_something_that_is_not_a_kernel_log_exits_4(path, tmp_path):
    r = runner.invoke(app, ["triage", path, "-f", "json"])
    assert r.exit_code == 4
    d = json.loads(r.stdout)
    assert d["log"]["found"] is False and d["verdict_level"] == "no_log"
    assert d["verdict"].startswith("No kernel log")
    r = runner.invoke(app, ["triage", path])
    assert r.exit_code == 4 and "No kernel log: cannot tell" in _squash(r.stdout)
    assert "No allocation failure reports" not in r.stdout


def test_pre_6_15_kernel_page_has_no_contradiction(tmp_path):
    r, text = _render(PUBLIC / "mixed-lkml-imx6-cma-3.10-1.txt", "html", tmp_path)
    assert r.exit_code == 0
    assert "as if it were on" not in text and "not in this kernel" in text
    assert "low memory" in text and "free CMA" in text and "140 MiB" in text


def test_no_decidable_cause_names_what_was_missing(tmp_path):
    for fmt in ("table", "markdown", "html"):
        r, text = _render(PUBLIC / "slub-lkml-wujing-1.txt", fmt, tmp_path)
        flat = _squash(text).replace("\\", "")
        assert "no Mem-Info in this report and no pagetypeinfo snapshot in the bundle" in flat
        assert "evidence missing)" not in flat


def test_markdown_and_html_escape_what_came_from_the_bundle(tmp_path):
    # issue 18: a host name from meta.json or a cache name from the log must not become markup
    b = tmp_path / "b"
    b.mkdir()
    (b / "meta.json").write_text(json.dumps({"host": "<script>alert(1)</script>",
                                             "kernel_release": "6.16.3", "defrag_mode": 1}))
    (b / "dmesg").write_text(
        "[ 1.000000] x: page allocation failure: order:0, mode:0x820(GFP_ATOMIC), "
        "nodemask=(null),cpuset=/,mems_allowed=0\n"
        "[ 1.000100] SLUB: Unable to allocate memory on node -1, gfp=0x820(GFP_ATOMIC)\n"
        "[ 1.000100]   cache: <img src=x onerror=alert(2)>, object size: 232, buffer size: "
        "256, default order: 0, min order: 0\n")
    for fmt in ("markdown", "html"):
        r, text = _render(b, fmt, tmp_path)
        assert r.exit_code == 0, r.output
        assert "<script" not in text and "<img src=x" not in text, fmt
        assert "&lt;script&gt;" in text and "&lt;img src=x onerror=alert(2)&gt;" in text, fmt


def test_validate_markdown_and_html_are_documents(tmp_path):
    for fmt, name in (("markdown", "v.md"), ("html", "v.html")):
        out = tmp_path / name
        r = runner.invoke(app, ["validate", "--before", str(need(LAB1)), "--after",
                                str(need(LAB0)), "-f", fmt, "-o", str(out)])
        assert r.exit_code == 0, r.output
        text = out.read_text()
        assert "<pre>" not in text and "FIXED" in text
        flat = _squash(text).replace("\\", "")
        for w in ("estimated (lower bound)", "2,975", "corroborated", "293,260 (Icmp.OutErrors)",
                  "slab_out_of_memory 2,945, warn_alloc 1,586",
                  "went from 2,975 in 65 s to 0 in 66 s"):
            assert w in flat, (fmt, w)
        for pat in NOT_FOR_PEOPLE:
            assert not pat.search(text), (fmt, pat.pattern)


# ---------------------------------------------------------------------------------------------
# docs/reference.md against real output

REF = ROOT / "docs" / "reference.md"


def _shapes():
    text = REF.read_text()
    return {m.group(1): json.loads(m.group(2)) for m in re.finditer(
        r"<!-- shape: (\w+) -->\s*```json\n(.*?)\n```", text, re.S)}


_TYPES = {"str": str, "int": int, "float": (int, float), "bool": bool, "null": type(None),
          "object": dict}


def _check(real, shape, where="$"):
    """``real`` has the documented shape (see the notation in docs/reference.md)."""
    if isinstance(shape, str):
        ok = tuple(_TYPES[t] for t in shape.split("|"))
        assert isinstance(real, ok) and not (isinstance(real, bool) and bool not in ok), \
            f"{where}: {real!r} is not {shape}"
        return
    if isinstance(shape, list):
        assert isinstance(real, list), f"{where}: not a list"
        for i, x in enumerate(real):
            _check(x, shape[0], f"{where}[{i}]")
        return
    assert isinstance(real, dict), f"{where}: not an object"
    keys = {k: v for k, v in shape.items() if k != "..."}
    if len(keys) == 1 and next(iter(keys)).startswith("<"):
        for k, v in real.items():
            _check(v, next(iter(keys.values())), f"{where}.{k}")
        return
    names = {}
    for k, v in keys.items():
        name = k.rstrip("?").removesuffix("|null")
        names[name] = v
        if k.endswith("?") and name not in real:
            continue
        assert name in real, f"{where}.{name}: documented, not in the output"
        if "|null" in k and real[name] is None:
            continue
        _check(real[name], v, f"{where}.{name}")
    if "..." not in shape:
        extra = set(real) - set(names)
        assert not extra, f"{where}: {sorted(extra)} in the output, not documented"


@pytest.mark.parametrize("path", [LAB1, HOST618, LAB0, PUBLIC / "mixed-lkml-imx6-cma-3.10-1.txt",
                                  PUBLIC / "slub-lkml-wujing-1.txt"])
def test_reference_triage_shape_is_the_output(path):
    r = runner.invoke(app, ["triage", str(need(path)), "-f", "json"])
    _check(json.loads(r.stdout), _shapes()["triage"])


def test_reference_parse_and_validate_shapes_are_the_output():
    r = runner.invoke(app, ["parse", str(need(LAB1)), "-f", "json"])
    _check(json.loads(r.stdout), _shapes()["parse"])
    r = runner.invoke(app, ["validate", "--before", str(LAB1), "--after", str(LAB0), "-f", "json"])
    assert r.exit_code == 0
    _check(json.loads(r.stdout), _shapes()["validate"])


def test_reference_names_every_file_the_loader_reads():
    from parsers.bundle import LOG_NAMES, SNAP_FILES, SOS_LOGS
    text = REF.read_text()
    for name in list(LOG_NAMES) + list(SOS_LOGS) + list(SNAP_FILES) + [
            "proc/sys/vm/defrag_mode", "uname", "meta.json", "boot_time"]:
        assert name in text, name


def test_docs_stand_alone():
    # nothing in docs/ or the sample README points at files outside the repository
    for p in list((ROOT / "docs").glob("*.md")) + [ROOT / "sample_logs" / "README.md"]:
        text = p.read_text()
        # the steering folder's name is spelled out of its parts, so that this test is not
        # itself taken for one that reads it
        outside = "sha" + "red"
        for ref in ("product.md", "kernel.md", "style.md", f"{outside}/corpus", f"../{outside}"):
            assert ref not in text, (p.name, ref)


def test_a_rate_needs_a_window_that_means_one():
    from analyzer.counts import rate
    # one failure in half a second is not 7,715 per hour: no rate, and the reason
    r = rate(1, 0.4666)
    assert r["per_hour"] is None and "a per-hour rate needs at least 10 min" in r["why_not"]
    # one failure in an hour: 1/h with the exact Poisson (Garwood) 95 % interval
    r = rate(1, 3600)
    assert r["per_hour"] == 1.0
    assert round(r["low"], 4) == 0.0253 and round(r["high"], 3) == 5.572
    assert rate(5, None)["why_not"].startswith("the log carries no timestamps")
