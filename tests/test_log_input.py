"""Log input at the edges: CR-only line ends, truncated zstd streams (one frame or several),
binary data and endless lines are reported, never read as a short log."""
import subprocess
import sys

import pytest
import zstandard

from parsers.dmesg import parse_log
from parsers.errors import ParseError
from tests.conftest import LAB1, ROOT

LOG = (LAB1 / "dmesg").read_bytes()
WHOLE = parse_log(LAB1 / "dmesg").summary()


def test_cr_only_line_ends(tmp_path):
    p = tmp_path / "cr.log"
    p.write_bytes(LOG.replace(b"\n", b"\r"))
    s = parse_log(p).summary()
    assert (s["slub_reports"], s["suppressed"], s["lines"]) == (30, WHOLE["suppressed"], WHOLE["lines"])


def test_zstd_whole_and_multi_frame(tmp_path):
    one = zstandard.ZstdCompressor().compress(LOG)
    p = tmp_path / "two.zst"
    p.write_bytes(one + one)
    assert parse_log(p).summary()["slub_reports"] == 60


@pytest.mark.parametrize("cut", ["first frame", "second frame"])
def test_truncated_zstd_is_an_error(tmp_path, cut):
    one = zstandard.ZstdCompressor().compress(LOG)
    data = (one[:len(one) // 2]) if cut == "first frame" else one + one[:len(one) // 2]
    p = tmp_path / "cut.zst"
    p.write_bytes(data)
    with pytest.raises(ParseError, match="ended before the end of a zstd frame"):
        parse_log(p)


def test_binary_line_names_its_line(tmp_path):
    p = tmp_path / "zero.log"
    p.write_bytes(b"[ 1.0] a\n[ 2.0] b\n" + b"\0" * (3 << 20))
    with pytest.raises(ParseError) as ei:
        parse_log(p)
    assert ei.value.line == 3 and "binary data" in str(ei.value)


def test_endless_stdin_of_zeros_stops(tmp_path):
    r = subprocess.run(f"head -c 50000000 /dev/zero | {sys.executable} -m analyzer.cli parse -",
                       shell=True, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip() == "Error: -:1: binary data, not a text log (a line of NUL bytes over 1 MiB)"


def test_long_text_line_is_cut_not_refused(tmp_path):
    p = tmp_path / "long.log"
    p.write_bytes(b"x" * (5 << 20) + b"\n" + LOG)
    assert parse_log(p).summary()["slub_reports"] == 30
