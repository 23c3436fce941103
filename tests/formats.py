"""Re-frame a raw dmesg text into every log format a host may keep (for tests)."""
from __future__ import annotations

import json
import re
import struct

_STAMP = re.compile(r"^\[\s*(\d+)\.(\d+)\] ?(.*)$")
BOOT = 1764100800  # 2025-11-25T20:00:00Z


def lines(text: str):
    for ln in text.splitlines():
        m = _STAMP.match(ln)
        if m:
            yield int(m.group(1)) + int(m.group(2)) / 1e6, m.group(3)
        else:
            yield None, ln


def _wall(t):
    import datetime as dt
    return dt.datetime.fromtimestamp(BOOT + (t or 0), dt.timezone.utc)


def to_format(text: str, fmt: str) -> str | bytes:
    out = []
    if fmt == "raw":
        return text
    if fmt == "journal-export":
        buf = bytearray()
        for i, (t, msg) in enumerate(lines(text)):
            usec = int(round((t or 0) * 1e6))
            buf += f"__CURSOR=s=abc;i={i}\n__REALTIME_TIMESTAMP={BOOT * 1000000 + usec}\n".encode()
            buf += f"__MONOTONIC_TIMESTAMP={usec}\n_TRANSPORT=kernel\nPRIORITY=4\n".encode()
            if i % 7 == 3:  # a binary-framed MESSAGE, as journald writes non-printable ones
                data = msg.encode()
                buf += b"MESSAGE\n" + struct.pack("<Q", len(data)) + data + b"\n"
            else:
                buf += f"MESSAGE={msg}\n".encode()
            buf += f"_SOURCE_MONOTONIC_TIMESTAMP={usec}\n\n".encode()
        return bytes(buf)
    seq = 0
    prev = None
    for t, msg in lines(text):
        w = _wall(t)
        if fmt == "dmesg-T":
            out.append(f"[{w.strftime('%a %b %e %H:%M:%S %Y')}] {msg}")
        elif fmt == "dmesg-x":
            out.append(f"kern  :warn  : [{t or 0:12.6f}] {msg}")
        elif fmt == "caller":
            out.append(f"[{t or 0:12.6f}] [T{300 + (seq % 1)}] {msg}")
        elif fmt == "syslog":
            out.append(f"{w.strftime('%b %e %H:%M:%S')} lab kernel: [{t or 0:12.6f}] {msg}")
        elif fmt == "syslog-nostamp":
            out.append(f"{w.strftime('%b %e %H:%M:%S')} lab kernel: {msg}")
        elif fmt == "rfc3339":
            out.append(f"{w.strftime('%Y-%m-%dT%H:%M:%S.%f')}+00:00 lab kernel: {msg}")
        elif fmt == "short-iso":
            out.append(f"{w.strftime('%Y-%m-%dT%H:%M:%S')}+0000 lab kernel: {msg}")
        elif fmt == "short-precise":
            out.append(f"{w.strftime('%b %d %H:%M:%S.%f')} lab kernel: {msg}")
        elif fmt == "short-monotonic":
            out.append(f"[{t or 0:12.6f}] lab kernel: {msg}")
        elif fmt == "json":
            out.append(json.dumps({"_TRANSPORT": "kernel", "MESSAGE": msg,
                                   "__MONOTONIC_TIMESTAMP": str(int((t or 0) * 1e6)),
                                   "__REALTIME_TIMESTAMP": str(int((BOOT + (t or 0)) * 1e6))}))
        elif fmt == "kmsg":
            out.append(f"4,{seq},{int(round((t or 0) * 1e6))},-;{msg}")
            if seq % 5 == 0:
                out.append(" SUBSYSTEM=net")
        elif fmt == "kmsg-caller":
            out.append(f"4,{seq},{int(round((t or 0) * 1e6))},-,caller=T306;{msg}")
        elif fmt == "crlf":
            out.append(f"[{t or 0:12.6f}] {msg}\r")
        elif fmt == "caret-m":
            out.append(f"[{t or 0:12.6f}] {msg}^M")
        elif fmt == "quoted":
            out.append(f"> [{t or 0:12.6f}] {msg}")
        # util-linux dmesg and journalctl's other outputs, busybox and OpenWrt, RFC 5424
        elif fmt == "dmesg-d":
            out.append(f"[{t or 0:12.6f} <{(t or 0) - (prev or 0):12.6f}>] {msg}")
        elif fmt == "short-delta":
            out.append(f"[{t or 0:12.6f} <{(t or 0) - (prev or 0):12.6f}>] lab kernel: {msg}")
        elif fmt == "dmesg-iso":
            out.append(f"{w.strftime('%Y-%m-%dT%H:%M:%S,%f')}+00:00 {msg}")
        elif fmt == "dmesg-reltime":  # dmesg -H: a minute's first line, then the gaps
            out.append(f"[{w.strftime('%b%d %H:%M')}] {msg}" if seq == 0 else
                       f"[  +{(t or 0) - (prev or 0):.6f}] {msg}")
        elif fmt == "dmesg-T-caller":
            out.append(f"[{w.strftime('%a %b %e %H:%M:%S %Y')}] [  T306] {msg}")
        elif fmt == "short-unix":
            out.append(f"{BOOT + (t or 0):.6f} lab kernel: {msg}")
        elif fmt == "short-full":
            out.append(f"{w.strftime('%a %Y-%m-%d %H:%M:%S')} UTC lab kernel: {msg}")
        elif fmt == "busybox":
            out.append(f"{w.strftime('%b %e %H:%M:%S')} lab kern.warn kernel: [{t or 0:12.6f}] {msg}")
        elif fmt == "logread":
            out.append(f"{w.strftime('%a %b %e %H:%M:%S %Y')} kern.warn kernel: [{t or 0:12.6f}] {msg}")
        elif fmt == "rfc5424":
            out.append(f"<4>1 {w.strftime('%Y-%m-%dT%H:%M:%S.%f')}+00:00 lab kernel - - - "
                       f"[{t or 0:12.6f}] {msg}")
        elif fmt == "json-pretty":  # journalctl -o json-pretty: an entry over many lines
            out.append(json.dumps({"_TRANSPORT": "kernel", "MESSAGE": msg if seq % 3 else
                                   list(msg.encode()),
                                   "__MONOTONIC_TIMESTAMP": str(int((t or 0) * 1e6))},
                                  indent=8))
        elif fmt == "json-seq":
            out.append("\x1e" + json.dumps({"_TRANSPORT": "kernel", "MESSAGE": msg,
                                            "__MONOTONIC_TIMESTAMP": str(int((t or 0) * 1e6))}))
        elif fmt == "json-bytes":  # journald's form of a message that is not plain UTF-8 text
            out.append(json.dumps({"_TRANSPORT": "kernel", "MESSAGE": list(msg.encode()),
                                   "__MONOTONIC_TIMESTAMP": str(int((t or 0) * 1e6))}))
        elif fmt == "color":  # dmesg --color=always: the stamp and a subsystem prefix coloured
            head, sep, body = msg.partition(": ")
            msg = (f"\x1b[33m{head}{sep}\x1b[0m{body}" if sep and " " not in head.strip()
                   else msg)
            out.append(f"\x1b[32m[{t or 0:12.6f}] \x1b[0m{msg}")
        elif fmt == "color-line":
            out.append(f"\x1b[32m[{t or 0:12.6f}] \x1b[0m\x1b[1;31m{msg}\x1b[0m")
        else:
            raise ValueError(fmt)
        seq += 1
        prev = t if t is not None else prev
    return "\n".join(out) + "\n"


def fold(text: str, width: int) -> str:
    """``fold -w``: every line cut at the column, through words and numbers, nothing dropped."""
    out = []
    for ln in text.splitlines():
        while len(ln) > width:
            out.append(ln[:width])
            ln = ln[width:]
        out.append(ln)
    return "\n".join(out) + "\n"


def mail_wrap(text: str, width: int) -> str:
    """A mailer's wrap: each long line broken at the last space before the column, the space
    dropped."""
    out = []
    for ln in text.splitlines():
        while len(ln) > width and " " in ln[:width].strip():
            cut = ln[:width].rstrip().rfind(" ")
            out.append(ln[:cut].rstrip())
            ln = ln[cut:].lstrip()
        out.append(ln)
    return "\n".join(out) + "\n"


def rsyslog_012(text: str) -> str:
    """rsyslog escapes embedded newlines: continuation lines with the same stamp become #012."""
    out: list[str] = []
    last_t = None
    for t, msg in lines(text):
        if out and t == last_t and msg.startswith(" "):
            out[-1] += "#012" + msg
        else:
            out.append(f"Nov 25 20:00:00 lab kernel: [{t or 0:12.6f}] {msg}")
        last_t = t
    return "\n".join(out) + "\n"


def kmsg_x0a(text: str) -> str:
    """/dev/kmsg escapes a record's embedded newlines as \\x0a."""
    out: list[str] = []
    last_t = None
    seq = 0
    for t, msg in lines(text):
        if out and t == last_t and msg.startswith(" "):
            out[-1] += "\\x0a" + msg
        else:
            out.append(f"4,{seq},{int(round((t or 0) * 1e6))},-;{msg}")
            seq += 1
        last_t = t
    return "\n".join(out) + "\n"
