"""Run pgbench against a target and parse what it prints and logs."""

from __future__ import annotations

import glob
import os
import re
import subprocess
from dataclasses import dataclass

from .procs import CLK_TCK, Session, Target, cpu_split, machine_busy_ticks, voluntary_switches


@dataclass
class Result:
    target: str
    ok: bool
    tps: float | None = None
    txns: int | None = None
    failed: int | None = None
    lat_avg_ms: float | None = None      # from the per-transaction log if any, else pgbench's line
    lat_p50_ms: float | None = None
    lat_p99_ms: float | None = None
    cpu_us_per_txn: float | None = None  # pooler CPU (utime+stime) per transaction
    cpu_user_us_per_txn: float | None = None  # pooler utime per transaction
    cpu_sys_us_per_txn: float | None = None   # pooler stime per transaction
    machine_us_per_txn: float | None = None   # whole machine's busy CPU per transaction
    sleeps_per_txn: float | None = None  # pooler's voluntary context switches per transaction
    error: str | None = None             # short reason when not ok


_TPS = re.compile(r"^tps = ([0-9.]+) \((without|including|excluding)", re.M)
_TXNS = re.compile(r"^number of transactions actually processed: (\d+)", re.M)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.M)
_LAT = re.compile(r"^latency average = ([0-9.]+) ms", re.M)
_ABORTED = re.compile(r"^client \d+ aborted.*$|^Run was aborted.*$", re.M)
_ERRLINE = re.compile(r"^(?:pgbench: error: )?(?:client \d+ .*?)?(ERROR|FATAL):\s*(.*)$", re.M)


def parse_output(text: str) -> dict:
    """Pull the figures out of pgbench's summary; missing ones are None."""
    def grab(rx, conv):
        m = rx.search(text)
        return conv(m.group(1)) if m else None
    return {
        "tps": grab(_TPS, float),
        "txns": grab(_TXNS, int),
        "failed": grab(_FAILED, int),
        "lat_avg_ms": grab(_LAT, float),
        "aborted": bool(_ABORTED.search(text)),
    }


def first_error(text: str) -> str:
    m = _ERRLINE.search(text)
    if m:
        return f"{m.group(1)}: {m.group(2)}"[:120]
    for line in text.splitlines():
        if "error" in line.lower() or "abort" in line.lower():
            return line.strip()[:120]
    return text.strip().splitlines()[-1][:120] if text.strip() else "no output"


def latency_from_logs(prefix: str) -> tuple[float, float, float] | None:
    """(avg, p50, p99) in ms from pgbench -l files PREFIX.*; field 3 is µs."""
    lat: list[int] = []
    for path in glob.glob(prefix + ".*"):
        with open(path) as f:
            for line in f:
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[2].isdigit():
                    lat.append(int(parts[2]))
        os.unlink(path)
    if not lat:
        return None
    lat.sort()
    n = len(lat)
    pct = lambda q: lat[min(n - 1, int(q * n))] / 1000.0  # noqa: E731
    return sum(lat) / n / 1000.0, pct(0.50), pct(0.99)


def run(session: Session, target: Target, args: list[str], duration: int,
        tag: str, latency_log: bool = False, timeout_extra: int = 30) -> Result:
    """pgbench ARGS -T DURATION against TARGET; measures the pooler's CPU."""
    if not target.ok:
        return Result(target.name, False, error=target.why_down() or "down")
    prefix = str(session.tmp / f"lat_{tag}_{target.name}")
    argv = [str(session.bindir / "pgbench"), "-n", "-h", "127.0.0.1", "-p", str(target.port),
            "-U", session.user, "-T", str(duration), *args]
    if latency_log:
        argv += ["-l", f"--log-prefix={prefix}"]
    argv.append(session.dbname)
    pid = target.pid
    t0 = cpu_split(pid) if pid else None
    v0 = voluntary_switches(pid) if pid else None
    m0 = machine_busy_ticks()
    try:
        cp = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=session.tmp, timeout=duration + timeout_extra)
        out, rc = cp.stdout, cp.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        rc = -1
        out += "\npgbench timed out"
    t1 = cpu_split(pid) if pid and target.proc.poll() is None else None
    v1 = voluntary_switches(pid) if t1 is not None else None
    m1 = machine_busy_ticks()
    with open(session.tmp / f"pgbench_{tag}_{target.name}.out", "a") as f:
        f.write(" ".join(argv) + "\n" + out + "\n")
    p = parse_output(out)
    res = Result(target.name, True, tps=p["tps"], txns=p["txns"], failed=p["failed"],
                 lat_avg_ms=p["lat_avg_ms"])
    if rc != 0 or p["tps"] is None or p["aborted"] or (p["failed"] or 0) > 0 or not p["txns"]:
        res.ok = False
        if rc != 0 or p["aborted"]:
            res.error = first_error(out)
        elif p["failed"]:
            res.error = f"{p['failed']} failed transactions"
        else:
            res.error = "no transaction completed in the run (connecting took it all?)"
        if target.proc is not None and target.proc.poll() is not None:
            res.error = f"pooler exited ({target.proc.returncode}); " + res.error
    if latency_log:
        lat = latency_from_logs(prefix)
        if lat:
            res.lat_avg_ms, res.lat_p50_ms, res.lat_p99_ms = lat
    if res.txns:
        per_txn = 1e6 / CLK_TCK / res.txns
        res.machine_us_per_txn = (m1 - m0) * per_txn
        if t0 is not None and t1 is not None:
            res.cpu_user_us_per_txn = (t1[0] - t0[0]) * per_txn
            res.cpu_sys_us_per_txn = (t1[1] - t0[1]) * per_txn
            res.cpu_us_per_txn = res.cpu_user_us_per_txn + res.cpu_sys_us_per_txn
        if v0 is not None and v1 is not None:
            res.sleeps_per_txn = (v1 - v0) / res.txns
    return res
