"""Line framing: strip whatever wrapped a kernel message on its way into a file.

One physical line in, zero or more logical lines out, each ``(text, time_s, time_wall, caller,
framed)``. Formats (product.md §3), detected per line so that mixed files work:

* raw dmesg ``[ 1234.567890] msg``, with CONFIG_PRINTK_CALLER ``[T123]`` / ``[  C4]``, and
  ``dmesg -d``'s ``[ 1234.567890 <    0.000020>]``;
* ``dmesg -T`` ``[Mon Apr 20 15:08:07 2020] msg``; ``dmesg -x`` ``kern  :warn  : [...] msg``;
  ``dmesg -H`` ``[Nov12 10:00] msg`` then ``[  +0.002229] msg``; ``--time-format=iso``
  ``2025-11-12T09:00:44,948454+00:00 msg``; terminal colours are dropped first;
* busybox ``Nov 12 09:00:44 host kern.warn kernel: msg``, OpenWrt ``logread``, RFC 5424
  ``<4>1 stamp host kernel - - - msg``; journalctl ``short-unix``, ``short-full``,
  ``short-delta``, ``json-seq`` and ``json-pretty`` (collapsed by the reader,
  :class:`parsers.logio.PrettyJson`);
* syslog / kern.log / journalctl short and short-precise ``Feb  9 08:09:39 host kernel: msg``,
  with or without the ``[secs]`` stamp after ``kernel:``; RFC 3339 / short-iso;
* journalctl short-monotonic ``[21161.092614] host kernel: msg``;
* journalctl ``-o json`` (one object a line) and ``-o export`` (see :class:`ExportReader`);
* /dev/kmsg ``prio,seq,usec,flags[,caller=T1];msg`` and its `` KEY=value`` continuation lines;
* mail quoting ``> ``, ``^M`` and CR line ends, rsyslog ``#012`` and literal ``\\x0a`` newlines;
* console levels ``<4>`` and Android/vendor framings ``04166 < 4> [   36.172486] [03-19
  10:05:52.172] msg`` (a sequence number, the level, the stamp, a wall clock), MediaTek's
  ``(2)[1234:comm]`` after the stamp.

``time_s`` is seconds since boot where the line says so; ``time_wall`` is an ISO 8601 string
where the line carries a wall clock (a syslog stamp without a year gets ``year``).
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}

_QUOTE = re.compile(r"^(?:> ?)+")
_KMSG = re.compile(r"^(\d{1,4}),(\d+),(\d+),[^;,]*((?:,[^;]*)?);")
_KMSG_CALLER = re.compile(r"caller=([TC]\d+)")
_DMESG_X = re.compile(
    r"^(?:kern|user|mail|daemon|auth|syslog|lpr|news|uucp|cron|authpriv|ftp|local\d)\s*:"
    r"\s*(?:emerg|alert|crit|err|warn|notice|info|debug)\s*:\s?")
# dmesg -d and journalctl -o short-delta add the gap since the previous line: ``[ 44.95 < 0.002>]``
_STAMP = re.compile(r"^\[\s*(\d+\.\d+)(?: <\s*\d+\.\d+>)?\]\s?")
_CALLER = re.compile(r"^\s*\[\s*([TC]\d+)\]\s?")
_DMESG_T = re.compile(
    r"^\[(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ([A-Z][a-z]{2}) +(\d{1,2}) (\d\d:\d\d:\d\d) (\d{4})\]\s?")
# busybox syslogd puts the facility.level between the host and the tag
_SYSLOG = re.compile(
    r"^([A-Z][a-z]{2}) +(\d{1,2}) (\d\d:\d\d:\d\d)(\.\d+)? (\S+) (?:[a-z]+\.[a-z]+ )?"
    r"([^\s:\[]+)(?:\[\d+\])?: ?")
_ISO = re.compile(
    r"^(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?) (\S+) "
    r"([^\s:\[]+)(?:\[\d+\])?: ?")
_MONO = re.compile(r"^\[\s*(\d+\.\d+)(?: <\s*\d+\.\d+>)?\] (?:(\S+) )?kernel: ?")
_MIDSTAMP = re.compile(r"\[\s*\d+\.\d{6}\]")
# dmesg --time-format=iso: a comma before the microseconds and always an offset, no host
_DMESG_ISO = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d),(\d{6})([+-]\d\d:?\d\d) ")
# dmesg -H / --time-format=reltime: a minute's first line, then the gap since the line before
_RELTIME = re.compile(r"^\[(?:([A-Z][a-z]{2}) ?(\d{1,2}) (\d\d:\d\d)|\s*\+\s*\d+\.\d+)\]\s?")
# journalctl -o short-unix: epoch seconds, host, tag
_UNIX = re.compile(r"^(\d{9,11}\.\d{1,9}) (\S+) ([^\s:\[]+)(?:\[\d+\])?: ?")
# journalctl -o short-full: weekday, date, time, zone name, host, tag
_FULL = re.compile(r"^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(\.\d+)? "
                   r"[A-Za-z][\w/+-]* (\S+) ([^\s:\[]+)(?:\[\d+\])?: ?")
# OpenWrt logread: ctime with the year, facility.level, tag
_LOGREAD = re.compile(r"^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ([A-Z][a-z]{2}) +(\d{1,2}) "
                      r"(\d\d:\d\d:\d\d) (\d{4}) [a-z]+\.[a-z]+ ([^\s:\[]+)(?:\[\d+\])?: ?")
# RFC 5424: <pri>1 stamp host app procid msgid structured-data msg
_RFC5424 = re.compile(r"^<\d{1,3}>1 (\S+) (\S+) (\S+) \S+ \S+ (?:-|(?:\[(?:[^\]\\]|\\.)*\])+) ?")
# terminal colours (dmesg --color=always, a coloured console captured as text)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_LEVEL = re.compile(r"^(?:\d+ )?<\s*\d{1,3}>\s?(?=\[)")
_VENDOR_WALL = re.compile(r"^\[(\d\d)-(\d\d) (\d\d:\d\d:\d\d)(\.\d+)?\]\s?")
_MTK = re.compile(r"^\s*\(\d+\)\[\d+:[^\]]*\]\s?")
MAX_UPTIME_S = 1e10  # ~317 years: a larger stamp is not an uptime
_SPLIT_NL = re.compile(r"#012|\\x0a")


def _iso(year: int, mon: int, day: int, hms: str, frac: str | None = None) -> str:
    return f"{year:04d}-{mon:02d}-{day:02d}T{hms}{frac or ''}"


class Framer:
    """Stateful per file: remembers the year for syslog stamps and whether lines are framed."""

    def __init__(self, year: int | None = None):
        self.given = year is not None
        self.year = year or datetime.now(timezone.utc).year
        self.last_mon: int | None = None
        self.kmsg = False

    def year_of(self, mon: int, day: int) -> int:
        """The year of a stamp that gives none: a log's first such date still ahead of today
        (a day's grace for time zones) is last year's, unless the year was given; a month
        that falls by more than half a year from the stamp before starts the next year."""
        if not 1 <= mon <= 12:
            return self.year
        if self.last_mon is None:
            if not self.given:
                tomorrow = datetime.now(timezone.utc).date() + timedelta(days=1)
                if (mon, day) > (tomorrow.month, tomorrow.day) and tomorrow.month != 1:
                    self.year -= 1
        elif mon < self.last_mon - 6:
            self.year += 1
        self.last_mon = mon
        return self.year

    def frame(self, raw: str) -> list[tuple]:
        """Logical lines of one physical line: ``[(text, time_s, time_wall, caller, framed)]``.
        A non-kernel syslog line gives ``[]``."""
        s = raw.rstrip("\r\n")
        if s.endswith("^M"):
            s = s[:-2]
        if "\r" in s:
            s = s.replace("\r", "")
        if "\x00" in s:  # a damaged ring buffer or capture: NULs carry nothing
            s = s.replace("\x00", "")
        if "\x1b" in s:
            s = _ANSI.sub("", s)
        if s[:1] == "\x1e":  # journalctl -o json-seq
            s = s[1:]
        if s[:1] == ">":
            s = _QUOTE.sub("", s)
        if s[:1] == "<" and ">1 " in s[2:7]:
            m = _RFC5424.match(s)
            if m:
                if m.group(3) != "kernel":
                    return []
                rest, time_s, caller = _inner_stamp(s[m.end():])
                wall = m.group(1) if m.group(1) != "-" else None
                return self._split(rest, time_s, wall, caller, True)
        if s[:1] == "<" or s[:1].isdigit():
            m = _LEVEL.match(s)
            if m:
                s = s[m.end():]
        time_s = None
        wall = None
        caller = None
        framed = True
        c0 = s[:1]
        if c0 == "[":
            m = _STAMP.match(s)
            if m:
                time_s = _uptime(m.group(1))
                rest = s[m.end():]
                mc = _CALLER.match(rest) if rest[:1] in (" ", "[") else None
                if mc:
                    caller = mc.group(1)
                    rest = rest[mc.end():]
                if rest[:1] == "[":
                    mw = _VENDOR_WALL.match(rest)
                    if mw:
                        wall = _iso(self.year_of(int(mw.group(1)), int(mw.group(2))), int(mw.group(1)),
                                   int(mw.group(2)), mw.group(3),
                                    mw.group(4))
                        rest = rest[mw.end():]
                elif rest[:2] in (" (", "(") and _MTK.match(rest):
                    rest = rest[_MTK.match(rest).end():]
                mm = _MONO.match(s)
                if mm:
                    rest = s[mm.end():]
                s = rest
            else:
                m = _DMESG_T.match(s)
                if m:
                    wall = _iso(int(m.group(4)), MONTHS.get(m.group(1), 1), int(m.group(2)),
                                m.group(3))
                    s = s[m.end():]
                    mc = _CALLER.match(s) if s[:1] == "[" else None
                    if mc:
                        caller = mc.group(1)
                        s = s[mc.end():]
                else:
                    m = _RELTIME.match(s)
                    if m:
                        if m.group(1) in MONTHS:
                            mon = MONTHS[m.group(1)]
                            wall = _iso(self.year_of(mon, int(m.group(2))), mon, int(m.group(2)),
                                        m.group(3) + ":00")
                        s = s[m.end():]
                    else:
                        framed = False
        elif c0.isdigit():
            m = _KMSG.match(s)
            if m:
                self.kmsg = True
                time_s = int(m.group(3)) / 1e6
                if m.group(4):
                    mc = _KMSG_CALLER.search(m.group(4))
                    caller = mc.group(1) if mc else None
                s = s[m.end():]
            elif s[10:11] == "T" and _DMESG_ISO.match(s):
                m = _DMESG_ISO.match(s)
                wall = f"{m.group(1)}.{m.group(2)}{m.group(3)}"
                s = s[m.end():]
            elif s[10:11] == "." and _UNIX.match(s):
                m = _UNIX.match(s)
                if m.group(3) != "kernel":
                    return []
                wall = datetime.fromtimestamp(float(m.group(1)), timezone.utc).strftime(
                    "%Y-%m-%dT%H:%M:%S.%fZ")
                s, time_s, caller = _inner_stamp(s[m.end():])
            else:
                m = _ISO.match(s)
                if m:
                    if m.group(3) != "kernel":
                        return []
                    wall = m.group(1).replace(" ", "T").replace(",", ".")
                    s = s[m.end():]
                    s, time_s, caller = _inner_stamp(s)
                else:
                    framed = False
        elif c0 == "{":
            return self._json(s)
        elif c0 == " " and self.kmsg and s[1:2].isupper() and "=" in s[:40]:
            return []  # /dev/kmsg dictionary continuation (` SUBSYSTEM=...`)
        elif c0.isalpha():
            m = _SYSLOG.match(s)
            if m and m.group(1) in MONTHS:
                if m.group(6) != "kernel":
                    return []
                mon = MONTHS[m.group(1)]
                wall = _iso(self.year_of(mon, int(m.group(2))), mon, int(m.group(2)), m.group(3),
                            m.group(4))
                s = s[m.end():]
                s, time_s, caller = _inner_stamp(s)
            elif c0 in "MTWFS" and (_FULL.match(s) or _LOGREAD.match(s)):
                m = _FULL.match(s)
                if m:
                    host_tag = m.group(4)
                    wall = m.group(1).replace(" ", "T") + (m.group(2) or "")
                else:
                    m = _LOGREAD.match(s)
                    host_tag = m.group(5)
                    wall = _iso(int(m.group(4)), MONTHS.get(m.group(1), 1), int(m.group(2)),
                                m.group(3))
                if host_tag != "kernel":
                    return []
                s, time_s, caller = _inner_stamp(s[m.end():])
            else:
                m = _DMESG_X.match(s)
                if m:
                    return self.frame(s[m.end():])
                framed = False
        else:
            framed = False
        return self._split(s, time_s, wall, caller, framed)

    @staticmethod
    def _split(s, time_s, wall, caller, framed) -> list[tuple]:
        if "#012" in s or "\\x0a" in s:
            parts = _SPLIT_NL.split(s)
            return [(p, time_s, wall, caller, framed if i == 0 else True)
                    for i, p in enumerate(parts)]
        return [(s, time_s, wall, caller, framed)]

    def _json(self, s: str) -> list[tuple]:
        try:
            obj = json.loads(s)
        except (ValueError, RecursionError):
            return [(s, None, None, None, False)]
        if not isinstance(obj, dict) or "MESSAGE" not in obj:
            return []
        if obj.get("_TRANSPORT", "kernel") != "kernel" and obj.get("SYSLOG_IDENTIFIER") != "kernel":
            return []
        msg = obj["MESSAGE"]
        if isinstance(msg, list):  # journald stores non-UTF-8 messages as byte arrays
            try:
                msg = bytes(int(b) & 0xFF for b in msg).decode("utf-8", "replace")
            except (TypeError, ValueError, OverflowError):
                return [(s, None, None, None, False)]  # not bytes: the line as it is
        msg = str(msg)
        time_s = None
        for key in ("_SOURCE_MONOTONIC_TIMESTAMP", "__MONOTONIC_TIMESTAMP"):
            if str(obj.get(key, "")).isdigit():
                time_s = int(obj[key]) / 1e6
                break
        wall = None
        if str(obj.get("__REALTIME_TIMESTAMP", "")).isdigit():
            wall = datetime.fromtimestamp(int(obj["__REALTIME_TIMESTAMP"]) / 1e6,
                                          timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return [(p, time_s, wall, None, True) for p in msg.split("\n")]


def _inner_stamp(s: str):
    """A syslog message may still carry the dmesg ``[secs]`` stamp (and a caller id)."""
    if s[:1] != "[":
        return s, None, None
    m = _STAMP.match(s)
    if not m:
        return s, None, None
    rest = s[m.end():]
    caller = None
    mc = _CALLER.match(rest) if rest[:1] in (" ", "[") else None
    if mc:
        caller = mc.group(1)
        rest = rest[mc.end():]
    return rest, _uptime(m.group(1)), caller


def _uptime(text: str) -> float | None:
    t = float(text)
    return t if t < MAX_UPTIME_S else None


def split_midline(text: str) -> list[str]:
    """Pieces of a line into which another CPU's stamped line was glued (``... 0*2048kB [123.4] CPU: ...``)."""
    m = _MIDSTAMP.search(text, 1)
    if not m:
        return [text]
    return [text[:m.start()]] + [text[m.start():]]


class ExportReader:
    """journalctl ``-o export``: ``KEY=value`` lines, a blank line ends an entry; binary fields are
    ``KEY\\n`` + little-endian u64 size + data + ``\\n``. Yields kernel entries as JSON-like dicts."""

    @staticmethod
    def looks_like(head: bytes) -> bool:
        return head.startswith(b"__CURSOR=") or head.startswith(b"__REALTIME_TIMESTAMP=")

    @staticmethod
    def entries(data: bytes):
        pos, n = 0, len(data)
        entry: dict = {}
        line_no = 1
        start_line = 1
        while pos < n:
            nl = data.find(b"\n", pos)
            if nl < 0:
                nl = n
            line = data[pos:nl]
            if not line:
                if entry:
                    yield start_line, entry
                entry = {}
                pos = nl + 1
                line_no += 1
                start_line = line_no
                continue
            eq = line.find(b"=")
            if eq < 0 and nl + 9 <= n:
                size = int.from_bytes(data[nl + 1:nl + 9], "little")
                value = data[nl + 9:nl + 9 + size]
                entry[line.decode("ascii", "replace")] = value.decode("utf-8", "replace")
                line_no += 1 + value.count(b"\n") + 1
                pos = nl + 9 + size + 1
                continue
            if eq > 0:
                entry[line[:eq].decode("ascii", "replace")] = line[eq + 1:].decode("utf-8", "replace")
            pos = nl + 1
            line_no += 1
        if entry:
            yield start_line, entry
