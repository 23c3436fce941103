"""Property tests from real records: the damage real logs show (a line wrapped at any column
with no prefix, two records interleaved line by line, two lines glued, a line dropped, a vendor or
syslog prefix, CR line ends, a NUL, invalid UTF-8) never raises, and every failure header put in
is found. Bounded and repeatable here; `make bench-mutations` runs many more, at random."""
import os
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers.dmesg import parse_text
from tests.conftest import LAB1, PUBLIC

EXAMPLES = int(os.environ.get("MMTRIAGE_MUTATION_EXAMPLES", "60"))
SOURCES = {
    "lab": (LAB1 / "dmesg").read_text().splitlines()[370:640],
    "wujing": (PUBLIC / "slub-lkml-wujing-1.txt").read_text().splitlines(),
    "earlyoom": (PUBLIC / "allocfail-gh-earlyoom220-journal-monotonic-1.txt").read_text().splitlines(),
    "xtensa": (PUBLIC / "allocfail-gh-xtensa5-esp32s3-k63-1.txt").read_text().splitlines(),
}
HEADER = re.compile(r"page allocation failure|SLUB: Unable to allocate")
WORDS = re.compile(r"page allocation failure: order:\d+|SLUB: Unable to allocate memory on")
profile = settings(max_examples=EXAMPLES, deadline=None,
                   derandomize=os.environ.get("MMTRIAGE_MUTATION_RANDOM") != "1",
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def headers(lines) -> int:
    return sum(len(HEADER.findall(ln)) for ln in lines)


def found(text: str) -> int:
    res = parse_text(text)
    assert res.internal_errors == []
    return res.slub_reports + res.page_alloc_reports


def test_sources_are_read_whole():
    for name, lines in SOURCES.items():
        assert found("\n".join(lines)) == headers(lines) > 0, name


@profile
@given(st.sampled_from(sorted(SOURCES)), st.data())
def test_wrap_any_line_at_any_column(name, data):
    lines = list(SOURCES[name])
    i = data.draw(st.integers(0, len(lines) - 1))
    ln = lines[i]
    if len(ln) < 2:
        return
    col = data.draw(st.integers(1, len(ln) - 1))
    if data.draw(st.booleans()):  # a mailer wraps at a space and drops it
        sp = ln.rfind(" ", 1, col)
        if sp > 0:
            lines[i:i + 1] = [ln[:sp], ln[sp + 1:]]
    else:                         # a terminal cuts at a column
        lines[i:i + 1] = [ln[:col], ln[col:]]
    assert found("\n".join(lines)) == headers(SOURCES[name])


@profile
@given(st.sampled_from(sorted(SOURCES)), st.sampled_from(sorted(SOURCES)), st.integers(1, 3))
def test_two_records_interleaved_line_by_line(a, b, step):
    la, lb = SOURCES[a], SOURCES[b]
    out = []
    for k in range(0, max(len(la), len(lb)), step):
        out += la[k:k + step] + lb[k:k + step]
    assert found("\n".join(out)) == headers(la) + headers(lb)


@profile
@given(st.sampled_from(sorted(SOURCES)), st.data())
def test_two_lines_glued(name, data):
    lines = list(SOURCES[name])
    i = data.draw(st.integers(0, len(lines) - 2))
    lines[i:i + 2] = [lines[i] + lines[i + 1]]
    assert found("\n".join(lines)) == headers(SOURCES[name])


@profile
@given(st.sampled_from(sorted(SOURCES)), st.data())
def test_a_line_dropped(name, data):
    lines = list(SOURCES[name])
    del lines[data.draw(st.integers(0, len(lines) - 1))]
    assert found("\n".join(lines)) == headers(lines)


PREFIXES = {
    "syslog": lambda n, ln: f"Nov 25 20:00:44 host kernel: {ln}",
    "vendor": lambda n, ln: f"{n:05d} < 4> {ln}" if ln.startswith("[") else ln,
    "level": lambda n, ln: f"<4>{ln}" if ln.startswith("[") else ln,
    "quoted": lambda n, ln: f"> {ln}",
}


@profile
@given(st.sampled_from(sorted(SOURCES)), st.sampled_from(sorted(PREFIXES)),
       st.sampled_from(["\n", "\r\n", "\r"]))
def test_prefix_and_line_ends(name, prefix, eol):
    lines = [PREFIXES[prefix](n, ln) for n, ln in enumerate(SOURCES[name])]
    assert found(eol.join(lines) + eol) == headers(SOURCES[name])


@profile
@given(st.sampled_from(sorted(SOURCES)), st.data(), st.sampled_from(["\x00", "\udcff\udcfe", "\ufffd"]))
def test_nul_and_invalid_utf8(name, data, junk):
    lines = list(SOURCES[name])
    i = data.draw(st.integers(0, len(lines) - 1))
    ln = lines[i]
    # anywhere but inside the words a header is known by
    spans = [(m.start(), m.end()) for m in WORDS.finditer(ln)]
    col = data.draw(st.integers(0, len(ln)))
    if any(a < col < b for a, b in spans):
        col = len(ln)
    lines[i] = ln[:col] + junk + ln[col:]
    assert found("\n".join(lines)) == headers(SOURCES[name])
