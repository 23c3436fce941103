"""Benchmarks (print figures; never assert). `make bench` runs them all; `--only parse` one part.

parse: a 1 GiB log of ordinary kernel lines with failure reports scattered through it, timed
against `grep -c 'Unable to allocate'` on the same file in the same run, with peak RSS; and a
failure-dense log of 100,000 SLUB reports plus their suppressed lines (reports/s).
`--baseline DIR` times another checkout's `mmtriage parse` (e.g. main's) on the same inputs in
the same run, and says whether its JSON is byte for byte the same.
All inputs are synthetic and generated under .bench/ (not committed).
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / ".bench"

ORDINARY = [
    "audit: type=1400 audit({t:.3f}:{n}): apparmor=\"DENIED\" operation=\"open\" profile=\"snap.lxd\" name=\"/proc/{n}/mounts\" pid={n} comm=\"lxd\"",
    "eth0: renamed from veth{n:x}",
    "IPv6: ADDRCONF(NETDEV_CHANGE): veth{n:x}: link becomes ready",
    "docker0: port {m}(veth{n:x}) entered forwarding state",
    "EXT4-fs (nvme0n1p{m}): mounted filesystem with ordered data mode. Quota mode: none.",
    "TCP: request_sock_TCP: Possible SYN flooding on port {n}. Sending cookies.  Check SNMP counters.",
    "nf_conntrack: nf_conntrack: table full, dropping packet",
    "perf: interrupt took too long ({n} > {m}), lowering kernel.perf_event_max_sample_rate to {n}",
    "usb 1-{m}: new high-speed USB device number {n} using xhci_hcd",
    "systemd[1]: Started Session {n} of User root.",
]
SLUB = ["SLUB: Unable to allocate memory on CPU {m} (of node 0) on node -1, gfp=0x820(GFP_ATOMIC)",
        "  cache: skbuff_head_cache, object size: 232, buffer size: 256, default order: 1, min order: 0",
        "  node 0: slabs: {n}, objs: {n}, free: 0"]


def make_ordinary(path: Path, target_mb: int) -> int:
    if path.exists() and path.stat().st_size >= target_mb << 20:
        return int(path.read_bytes()[-20:].split(b"#")[-1] or 0) if False else -1
    rng = random.Random(1)
    block = []
    t = 100.0
    for i in range(20000):
        t += rng.random() * 0.01
        block.append(f"[{t:12.6f}] " + rng.choice(ORDINARY).format(t=t, n=rng.randrange(1 << 16),
                                                                   m=rng.randrange(16)) + "\n")
    blk = "".join(block).encode()
    reports = 0
    with open(path, "wb") as fh:
        size = 0
        k = 0
        while size < target_mb << 20:
            fh.write(blk)
            size += len(blk)
            k += 1
            if k % 3 == 0:
                rep = "".join(f"[{t:12.6f}] " + s.format(m=1, n=k) + "\n" for s in SLUB)
                fh.write(f"[{t:12.6f}] slab_out_of_memory: 12 callbacks suppressed\n".encode() + rep.encode())
                size += len(rep)
                reports += 1
    return reports


def make_dense(path: Path, n: int) -> None:
    if path.exists():
        return
    with open(path, "w") as fh:
        t = 1000.0
        for i in range(n):
            t += 0.0005
            if i % 10 == 0:
                fh.write(f"[{t:12.6f}] slab_out_of_memory: 57 callbacks suppressed\n")
            for s in SLUB:
                fh.write(f"[{t:12.6f}] " + s.format(m=i % 8, n=i) + "\n")


def timed(cmd: list[str] | str) -> tuple[float, int, bytes]:
    """Wall time, peak RSS and stdout of a command (a string runs in the shell). Output goes to
    a pipe that is read whole: GNU grep stops at the first match when it writes to /dev/null."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT,
                         shell=isinstance(cmd, str))
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    return time.perf_counter() - t0, ru.ru_maxrss * 1024, out


BASELINE: Path | None = None


def parse_cmd(path: Path) -> list[str]:
    return [sys.executable, "-m", "analyzer.cli", "parse", str(path), "--format", "json"]


def baseline(path: Path, ours_t: float, ours_out: bytes, unit: str = "", count: int = 0) -> None:
    """The same command from the --baseline checkout, run now (its modules first on the path)."""
    if BASELINE is None:
        return
    env = dict(os.environ, PYTHONPATH=str(BASELINE))
    t0 = time.perf_counter()
    p = subprocess.Popen(parse_cmd(path), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         cwd=BASELINE, env=env)
    out = p.stdout.read()
    _, _, ru = os.wait4(p.pid, 0)
    b_t = time.perf_counter() - t0
    rate = f"  {count / b_t:8.0f} {unit}" if unit else ""
    print(f"  baseline {BASELINE.name:<9} {b_t:7.2f} s{rate}  peak RSS {ru.ru_maxrss / 1024:.0f} MiB  "
          f"(ours {b_t / ours_t:.2f}x faster; output {'identical' if out == ours_out else 'DIFFERS'})")


def summary_of(out: bytes) -> dict:
    import json
    return json.loads(out)["summary"]


def bench_parse(mb: int) -> None:
    BENCH.mkdir(exist_ok=True)
    big = BENCH / f"ordinary-{mb}mb.log"
    make_ordinary(big, mb)
    size = big.stat().st_size
    os.system(f"cat {big} > /dev/null")  # warm the page cache for both contenders
    g_t, _, g_out = timed(["grep", "-c", "Unable to allocate", str(big)])
    p_t, p_rss, p_out = timed(parse_cmd(big))
    s = summary_of(p_out)
    print(f"parse  ordinary log: {size / 1e6:.0f} MB; grep counted {int(g_out)} reports, "
          f"mmtriage {s['slub_reports']} SLUB reports in {s['lines']:,} lines")
    print(f"  grep -c            {g_t:7.2f} s  {size / 1e6 / g_t:8.0f} MB/s")
    print(f"  mmtriage parse     {p_t:7.2f} s  {size / 1e6 / p_t:8.0f} MB/s  "
          f"ratio {p_t / g_t:.2f}x grep  peak RSS {p_rss / 2**20:.0f} MiB")
    baseline(big, p_t, p_out)
    bench_compressed(big, size)
    dense = BENCH / "dense-100k.log"
    make_dense(dense, 100_000)
    g_t, _, _ = timed(["grep", "-c", "Unable to allocate", str(dense)])
    p_t, p_rss, p_out = timed(parse_cmd(dense))
    t0 = time.perf_counter()
    sys.path.insert(0, str(ROOT))
    from parsers.dmesg import parse_log
    res = parse_log(dense)
    lib_t = time.perf_counter() - t0
    print(f"parse  dense log: {dense.stat().st_size / 1e6:.0f} MB, {res.slub_reports} SLUB reports, "
          f"{res.summary()['slub_failures_estimated']} estimated")
    print(f"  library parse_log  {lib_t:7.2f} s  {res.slub_reports / lib_t:8.0f} reports/s")
    print(f"  CLI with JSON out  {p_t:7.2f} s  {res.slub_reports / p_t:8.0f} reports/s  "
          f"peak RSS {p_rss / 2**20:.0f} MiB  (grep -c {g_t:.2f} s)")
    baseline(dense, p_t, p_out, "reports/s", res.slub_reports)


def bench_compressed(big: Path, size: int) -> None:
    """Streamed decompression: MB/s of decompressed text, beside the decompressor piped to grep."""
    for ext, tool in (("gz", "gzip -1 -c"), ("zst", "zstd -q -1 -c")):
        comp = big.with_suffix(big.suffix + "." + ext)
        if not comp.exists():
            if subprocess.run(f"{tool} {big} > {comp}.tmp && mv {comp}.tmp {comp}", shell=True,
                              cwd=ROOT).returncode:
                print(f"  ({ext}: {tool.split()[0]} not available)")
                continue
        cat = {"gz": "zcat", "zst": "zstdcat"}[ext]
        g_t, _, g_out = timed(f"{cat} {comp} | grep -c 'Unable to allocate'")
        p_t, p_rss, p_out = timed(parse_cmd(comp))
        s = summary_of(p_out)
        print(f"  .{ext:<4} {cat} | grep -c {g_t:6.2f} s ({int(g_out)})   mmtriage {p_t:6.2f} s "
              f"{size / 1e6 / p_t:6.0f} MB/s decompressed ({s['slub_reports']})  "
              f"ratio {p_t / g_t:.2f}x  peak RSS {p_rss / 2**20:.0f} MiB")
        baseline(comp, p_t, p_out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["parse", "model"], default=None)
    ap.add_argument("--mb", type=int, default=int(os.environ.get("BENCH_MB", 1024)))
    ap.add_argument("--baseline", type=Path, default=None, metavar="DIR",
                    help="parse: also time this checkout's mmtriage (e.g. /work/main) in the same run")
    ap.add_argument("--quick", action="store_true",
                    help="model: the allocator figures and 10 simulated minutes per policy")
    a = ap.parse_args()
    global BASELINE
    BASELINE = a.baseline.resolve() if a.baseline else None
    if a.only in (None, "parse"):
        bench_parse(a.mb)
    if a.only in (None, "model"):
        mod = ROOT / "bench" / "model_bench.py"
        if mod.exists():
            subprocess.run([sys.executable, str(mod)] + (["--quick"] if a.quick else []),
                           cwd=ROOT, check=False)


if __name__ == "__main__":
    main()
