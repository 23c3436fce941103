"""/proc files as people paste them: a shell prompt, mail quoting, RHEL's nameless counter, a file
cut short. What is not data is skipped with a warning naming its line; the tables are read whole."""
import warnings

import pytest

from parsers import buddyinfo, pagetypeinfo, vmstat, zoneinfo
from parsers.errors import InputWarning, ParseError
from parsers.proc import detect, parse_file
from tests.conftest import PUBLIC
from tests.formats import fold, mail_wrap


def real(name):
    return (PUBLIC / name).read_text()


def caught(fn, *a):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always", InputWarning)
        out = fn(*a)
    return out, [str(w.message) for w in rec if w.category is InputWarning]


def test_pagetypeinfo_after_a_prompt_and_quoted():
    text = real("pagetypeinfo-chromeos66-1.txt")
    pasted = "host:~ # cat /proc/pagetypeinfo\n" + "".join("> " + ln + "\n" for ln in text.splitlines())
    assert detect(pasted) == "pagetypeinfo"
    got, warns = caught(pagetypeinfo.parse, pasted, "pt")
    assert got.free == pagetypeinfo.parse(text).free and got.blocks == pagetypeinfo.parse(text).blocks
    assert warns == ["pt:1: skipped a shell prompt line: 'host:~ # cat /proc/pagetypeinfo'"]


def test_prompt_inside_the_table_and_after_it():
    text = real("buddyinfo-procfs-1.txt").splitlines()
    pasted = "\n".join(["[root@db1 ~]# cat /proc/buddyinfo"] + text[:1] + ["$ "] + text[1:]
                       + ["[root@db1 ~]#"]) + "\n"
    got, warns = caught(buddyinfo.parse, pasted, "bi")
    assert got == buddyinfo.parse("\n".join(text) + "\n")
    assert [w.split(":")[1] for w in warns] == ["1", "3", f"{len(text) + 3}"]


def test_rhel_zoneinfo_nameless_counter():
    text = real("zoneinfo-procfs-1.txt").splitlines()
    # 5.14-based RHEL kernels print one counter whose name is empty: the line is just a number
    at = next(i for i, ln in enumerate(text) if "nr_zone_active_file" in ln) + 1
    pasted = "\n".join(text[:at] + ["              0"] + text[at:]) + "\n"
    got, warns = caught(zoneinfo.parse, pasted, "zi")
    assert [z.to_dict() for z in got] == [z.to_dict() for z in zoneinfo.parse("\n".join(text) + "\n")]
    assert warns == [f"zi:{at + 1}: skipped: a counter with no name: '0'"]


def test_cut_short_warns_with_the_line():
    text = real("vmstat-chromeos66-1.txt")
    cut = text[:text.index("nr_free_pages") + 15]
    got, warns = caught(vmstat.parse, cut, "vm")
    n = cut.count("\n") + 1
    assert warns == [f"vm:{n}: the file ends mid-line (cut short?): {cut.splitlines()[-1]!r}"]
    assert "nr_free_pages" in got


def test_nothing_left_is_refused():
    with pytest.raises(ParseError, match="no zones"):
        caught(zoneinfo.parse, "host:~ # cat /proc/zoneinfo\n> \n", "zi")


def test_parse_file_lists_what_it_skipped(tmp_path):
    p = tmp_path / "pagetypeinfo.txt"
    p.write_text("$ sudo cat /proc/pagetypeinfo\n" + real("pagetypeinfo-jmr540arm-1.txt"))
    doc, _ = caught(parse_file, p)
    assert doc["kind"] == "pagetypeinfo" and doc["pageblock_order"] == 10
    assert doc["warnings"] == [f"{p}:1: skipped a shell prompt line: '$ sudo cat /proc/pagetypeinfo'"]


@pytest.mark.parametrize("wrap", [fold, mail_wrap])
@pytest.mark.parametrize("width", [40, 64, 72, 80])
def test_wrapped_tables_read_whole(wrap, width):
    """A table a terminal or a mailer wrapped: every order column is back, the header's type
    names too (pagetypeinfo's 'Isolate' on a line of its own), where before the rows were read
    with 5 of 11 orders and no error. (Under 47 columns a pagetypeinfo row is cut inside its
    type name, which is not read back; buddyinfo's rows are numbers from column 24.)"""
    for name, mod in (("pagetypeinfo-chromeos66-1.txt", pagetypeinfo),
                      ("buddyinfo-chromeos66-1.txt", buddyinfo)):
        if width < 47 and mod is pagetypeinfo:
            continue
        text = real(name)
        assert max(len(ln) for ln in text.splitlines()) > width  # really wrapped
        got, _ = caught(mod.parse, wrap(text, width), name)
        assert got == mod.parse(text), (name, width)


def test_a_grep_of_pagetypeinfo_is_pagetypeinfo():
    """``grep Normal /proc/pagetypeinfo``: its free rows without their header are still the
    free rows (orders from the columns), not buddyinfo's."""
    text = real("pagetypeinfo-chromeos66-1.txt")
    rows = "".join(ln + "\n" for ln in text.splitlines() if "Normal" in ln)
    assert detect(rows) == "pagetypeinfo"
    got, warns = caught(pagetypeinfo.parse, rows, "pt")
    full = pagetypeinfo.parse(text)
    assert got.free == tuple(r for r in full.free if r.zone == "Normal")
    assert any("no order header" in w for w in warns)


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_line(tmp_path):
    for name, kind in (("buddyinfo-chromeos66-1.txt", "buddyinfo"),
                       ("pagetypeinfo-chromeos66-1.txt", "pagetypeinfo")):
        f = tmp_path / name
        f.write_bytes(b"\xef\xbb\xbf" + real(name).encode())
        out = parse_file(f)
        assert out["kind"] == kind and out == {**parse_file(PUBLIC / name), "path": str(f)}


def test_a_last_line_cut_short_is_dropped_not_fatal():
    text = real("buddyinfo-chromeos66-1.txt")
    got, warns = caught(buddyinfo.parse, text.rstrip("\n")[:-30], "bi")
    assert got == buddyinfo.parse(text)[:-1]
    assert any("cut short" in w for w in warns)
    text = real("pagetypeinfo-chromeos66-1.txt")
    lines = text.splitlines()
    k = next(i for i, ln in enumerate(lines) if "type" in ln and "Movable" in ln and "Normal" in ln)
    got, warns = caught(pagetypeinfo.parse, "\n".join(lines[:k + 1])[:-12], "pt")
    assert len(got.free) == len([ln for ln in lines[:k] if ", type " in ln])


def test_two_copies_in_one_file_are_warned_about():
    text = real("buddyinfo-chromeos66-1.txt")
    _, warns = caught(buddyinfo.parse, text + text, "bi")
    assert any("seen before" in w for w in warns)
    text = real("pagetypeinfo-chromeos66-1.txt")
    _, warns = caught(pagetypeinfo.parse, text + text, "pt")
    assert any("seen before" in w for w in warns)


def test_zoneinfo_twice_is_warned_about():
    text = real("zoneinfo-procfs-1.txt")
    _, warns = caught(zoneinfo.parse, text + text, "zi")
    assert any("seen before" in w for w in warns)


def test_grepped_meminfo_and_slabinfo_lines_are_known():
    """A few lines grepped out of meminfo or slabinfo, as bug reports paste them."""
    mi = "MemFree:         1204120 kB\nMemAvailable:   30120112 kB\nHugePages_Total:    1024\n"
    assert detect(mi) == "meminfo"
    sl = ("skbuff_head_cache  181204 181888    256   32    2 : tunables    0    0    0 : "
          "slabdata   5684   5684      0\n")
    assert detect(sl) == "slabinfo"
    assert detect("nr_free_pages 12345\nnr_zone_inactive_anon 3\n") == "vmstat"


def test_numbers_after_a_prompt_are_not_a_wrapped_row():
    """``cat buddyinfo; cat min_free_kbytes`` pasted together: the lone number after the
    prompt is skipped, not glued onto the last row as its order-10 count."""
    text = real("buddyinfo-chromeos66-1.txt")
    got, warns = caught(buddyinfo.parse, text + "$ cat /proc/sys/vm/min_free_kbytes\n67584\n", "bi")
    assert got == buddyinfo.parse(text)
    assert any("'67584'" in w for w in warns)
    # no prompt between (cat buddyinfo min_free_kbytes): the whole last row is kept as it is
    for name, mod in (("buddyinfo-chromeos66-1.txt", buddyinfo),
                      ("pagetypeinfo-chromeos66-1.txt", pagetypeinfo)):
        text = real(name)
        got, warns = caught(mod.parse, text + "67584\n", name)
        assert got == mod.parse(text)
        assert any("line of numbers" in w for w in warns)
