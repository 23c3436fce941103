"""How much of a log's window each rate limit spent saturated: rebuilt from the printed reports'
stamps and the suppression lines, as lib/ratelimit.c opens and fills its intervals."""
from parsers.dmesg import parse_log, parse_text
from parsers.ratelimit import limit, saturation
from tests.conftest import LAB1


def test_real_lab_run_was_saturated_in_every_interval():
    r = parse_log(LAB1 / "dmesg")
    s = saturation(r.events, r.suppressions, r.kernel_release)
    slub = s["slab_out_of_memory"]
    # 30 reports in three 5 s intervals of 10, each followed by a suppression line or at the end
    assert (slub["printed"], slub["intervals"], slub["saturated_intervals"]) == (30, 3, 3)
    assert slub["suppressed"] == 2945 and slub["floor"]
    warn = s["warn_alloc"]
    assert (warn["interval_s"], warn["burst"]) == (10.0, 1)
    assert (warn["printed"], warn["saturated_intervals"], warn["suppressed"]) == (2, 2, 1586)


def lines(times, per=1, sup=None):
    out = []
    for t in times:
        if sup and t in sup:
            out.append(f"[{t:12.6f}] slab_out_of_memory: {sup[t]} callbacks suppressed")
        out += [f"[{t:12.6f}] SLUB: Unable to allocate memory on node -1, gfp=0xa20(GFP_ATOMIC)",
                f"[{t:12.6f}]   cache: skbuff_head_cache, object size: 232, buffer size: 256, "
                "default order: 0, min order: 0"]
    return "\n".join(out) + "\n"


def test_a_trickle_is_not_saturated():
    r = parse_text(lines([1.0, 7.0, 20.0]))
    s = saturation(r.events, r.suppressions)["slab_out_of_memory"]
    assert (s["intervals"], s["saturated_intervals"], s["floor"]) == (3, 0, False)
    assert s["saturated_share"] == 0


def test_a_full_burst_then_a_suppression_line():
    times = [1.0 + i * 0.1 for i in range(10)] + [30.0]
    r = parse_text(lines(times, sup={30.0: 500}))
    s = saturation(r.events, r.suppressions)["slab_out_of_memory"]
    assert (s["intervals"], s["saturated_intervals"]) == (2, 1)
    # saturated for the first 5 s of a window that runs from 1.0 to 35.0
    assert s["saturated_s"] == 5.0 and s["window_s"] == 34.0 and s["suppressed"] == 500


def test_warn_alloc_limit_by_kernel():
    assert limit("warn_alloc", "6.16.3") == (10.0, 1)
    assert limit("warn_alloc", "4.9.23") == (5.0, 10)
    assert limit("slab_out_of_memory", "3.10") == (5.0, 10)


def test_triage_reports_saturation_and_says_the_counts_are_a_floor():
    from typer.testing import CliRunner

    from analyzer.cli import app
    import json
    r = CliRunner().invoke(app, ["triage", str(LAB1), "--format", "json"])
    sat = json.loads(r.stdout)["failures"]["saturation"]
    assert sat["slab_out_of_memory"]["saturated_intervals"] == 3 and sat["warn_alloc"]["floor"]
    t = CliRunner().invoke(app, ["triage", str(LAB1), "--format", "table"]).stdout
    assert "slab_out_of_memory (10 per 5 s) saturated 75%" in " ".join(t.split())
    assert "its counts are a floor" in " ".join(t.split())
