#!/usr/bin/env python3
"""Deterministic cost check: instructions a pooler executes per transaction.

Runs the pooler under `valgrind --tool=callgrind` against a throwaway cluster,
warms it up (pool filled, code paths touched), zeroes callgrind's counters,
runs a fixed pgbench, dumps the counters and divides the total Ir (instructions
executed, all threads) by the transactions. The measured figure therefore
includes the login of the measured run's clients (4 logins over 8,000
transactions) but not start-up or the warm-up.

Called by benches/cost.sh; see benches/README.md. Standard library only.

Environment:
  PGSLUICE_BIN  pooler binary for --pooler pgsluice (default)
  REPEAT        measure N times (separate valgrind runs) and print the spread (default 1)
  CALLGRIND_ARGS  extra valgrind options, e.g. "--cache-sim=yes" (with CALLGRIND_KEEP:
                cache misses per function in callgrind_annotate; the recorded figure
                stays instructions)
  RECORD=0      print only, do not append to benches/COST.md
  TLS=1         clients over TLS (client_tls_sslmode=require, PGSSLMODE=prefer)
  PGBOUNCER_BIN pooler binary for --pooler pgbouncer (cost.sh builds PgBouncer 1.25.2)
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pybench import pgbench  # noqa: E402
from pybench.procs import Session, log, pgbouncer_bin  # noqa: E402

# One client: each transaction is strictly request/response, so the pooler's
# work does not depend on how events happen to batch up (with -c 4 PgBouncer's
# figure moves by ~3% run to run; with -c 1 by 0.01%).
CLIENTS = int(os.environ.get("COST_CLIENTS") or 1)
TXNS_PER_CLIENT = 8000 // CLIENTS
# COST_CONNECT=1: a new connection per transaction (-C, as S4) to cost logins.
CONNECT = ["-C"] if os.environ.get("COST_CONNECT") == "1" else []
# COST_MODE: pgbench's query protocol (simple, extended or prepared).
MODE = os.environ.get("COST_MODE") or "simple"
if MODE not in ("simple", "extended", "prepared"):
    raise SystemExit(f"COST_MODE must be simple, extended or prepared, not {MODE!r}")
MEASURED = ["-S", "-M", MODE, *CONNECT, "-c", str(CLIENTS), "-j", "1", "-t", str(TXNS_PER_CLIENT)]
WARMUP = ["-S", "-M", MODE, "-c", str(CLIENTS), "-j", "1", "-t", "250"]
# TLS=1: the clients reach the pooler over TLS (see pybench/procs.py).
COMMAND = ("pgbench " + " ".join(MEASURED) + (" (TLS)" if os.environ.get("TLS") == "1" else "")
           + (f" [{os.environ['PGSLUICE_DB_OPTIONS']}]" if os.environ.get("PGSLUICE_DB_OPTIONS") else ""))
COST_MD = Path(__file__).resolve().parent / "COST.md"
HEADER = """# Instructions per transaction (deterministic cost check)

Written by `benches/cost.sh`; one row per recorded run, newest last.

- **instructions/txn**: the pooler's user-space instructions executed (valgrind
  callgrind `Ir`, all threads) during a fixed pgbench run, divided by its
  transactions. It counts work, not time: the same binary and inputs give the same
  figure within a fraction of a percent, whatever else the machine is doing.
- **syscalls/txn**: system calls made by the pooler (all threads, `strace -f -c`
  attached for the measured run only, pooler running natively) per transaction.
  Kernel time is most of a pooler's CPU, and callgrind does not see it: fewer
  reads/writes/epoll calls per transaction is the other half of the cost.

Compare rows only with the same tool and command. Warm-up (pool filled) and start-up
are excluded; the login of the measured run's client(s) is included.

| date | commit | pooler | tool | instructions/txn | syscalls/txn | transactions | command |
| --- | --- | --- | --- | ---: | ---: | ---: | --- |
"""


def pgbench_fixed(session: Session, port: int, args: list[str], tag: str) -> int:
    """Run a fixed-count pgbench; returns transactions processed (raises on failure)."""
    argv = [str(session.bindir / "pgbench"), "-n", "-h", "127.0.0.1", "-p", str(port),
            "-U", session.user, *args, session.dbname]
    cp = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                        cwd=session.tmp, timeout=900)
    p = pgbench.parse_output(cp.stdout)
    if cp.returncode != 0 or p["aborted"] or not p["txns"] or (p["failed"] or 0) > 0:
        raise RuntimeError(f"pgbench ({tag}) failed: {pgbench.first_error(cp.stdout)}")
    return p["txns"]


def callgrind_total(path: Path) -> int:
    """Total Ir of a callgrind dump ('totals:' or 'summary:' line)."""
    text = path.read_text(errors="replace")
    m = re.search(r"^(?:totals|summary):\s*(\d+)", text, re.M)
    if not m:
        raise RuntimeError(f"no totals in {path}")
    return int(m.group(1))


def ctl(session: Session, pid: int, flag: str) -> None:
    cp = session.run_as_service_user(["callgrind_control", flag, str(pid)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     timeout=120)
    if cp.returncode != 0:
        raise RuntimeError(f"callgrind_control {flag} failed: {cp.stdout.strip()[-300:]}")


def measure_callgrind(session: Session, name: str, binary: str, run_no: int) -> tuple[float, int]:
    outdir = session.tmp / f"cg{run_no}"
    outdir.mkdir()
    session._chown(outdir)
    wrapper = ["valgrind", "--tool=callgrind", "--quiet", "--fair-sched=yes",
               *os.environ.get("CALLGRIND_ARGS", "").split(),
               f"--callgrind-out-file={outdir}/callgrind.out"]
    t = session.start_pooler(name, binary, wrapper=wrapper)
    if not t.ok:
        raise RuntimeError(f"{name} under callgrind did not start: {t.why_down()}")
    pgbench_fixed(session, t.port, WARMUP, "warm-up")
    time.sleep(0.5)
    ctl(session, t.pid, "--zero")
    txns = pgbench_fixed(session, t.port, MEASURED, "measured")
    time.sleep(0.5)  # let the pooler finish handling the clients' Terminate
    ctl(session, t.pid, "--dump")
    dumps = sorted(glob.glob(f"{outdir}/callgrind.out*"), key=os.path.getmtime)
    if not dumps:
        raise RuntimeError("callgrind wrote no dump")
    total = callgrind_total(Path(dumps[-1]))
    if os.environ.get("CALLGRIND_KEEP"):  # for callgrind_annotate
        shutil.copy(dumps[-1], os.environ["CALLGRIND_KEEP"])
    session.stop(t.proc)
    return total / txns, txns


def measure_syscalls(session: Session, name: str, binary: str) -> tuple[float, list[tuple[str, float]]]:
    """strace -f -c attached after warm-up: (syscalls per txn, top syscalls per txn)."""
    t = session.start_pooler(name, binary)
    if not t.ok:
        raise RuntimeError(f"{name} did not start: {t.why_down()}")
    pgbench_fixed(session, t.port, WARMUP, "warm-up")
    out = session.tmp / "strace.txt"
    st = subprocess.Popen(["strace", "-f", "-c", "-o", str(out), "-p", str(t.pid)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attach to every thread before the run starts
    txns = pgbench_fixed(session, t.port, MEASURED, "measured")
    time.sleep(0.3)
    st.send_signal(signal.SIGINT)
    st.wait(30)
    session.stop(t.proc)
    total, per = None, []
    for line in out.read_text().splitlines():
        tok = line.split()
        if len(tok) >= 5 and tok[0][0].isdigit() and tok[-1] != "total":
            nums = [x for x in tok[:-1]]
            # % time, seconds, usecs/call, calls[, errors]
            if len(nums) >= 4 and nums[3].isdigit():
                per.append((tok[-1], int(nums[3]) / txns))
        elif tok and tok[-1] == "total" and len(tok) >= 5 and tok[3].isdigit():
            total = int(tok[3])
    if total is None:
        raise RuntimeError("strace printed no total")
    per.sort(key=lambda x: -x[1])
    return total / txns, per[:6]


def perf_supported() -> bool:
    if not shutil.which("perf"):
        return False
    cp = subprocess.run(["perf", "stat", "-x,", "-e", "instructions:u", "true"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return cp.returncode == 0 and "not supported" not in cp.stderr and "<not counted>" not in cp.stderr


def measure_perf(session: Session, name: str, binary: str) -> tuple[float, int]:
    """Native run; perf stat attached for the measured run only (noisier than callgrind)."""
    t = session.start_pooler(name, binary)
    if not t.ok:
        raise RuntimeError(f"{name} did not start: {t.why_down()}")
    pgbench_fixed(session, t.port, WARMUP, "warm-up")
    out = session.tmp / "perf.csv"
    perf = subprocess.Popen(["perf", "stat", "-x,", "-e", "instructions:u", "-o", str(out),
                             "-p", str(t.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    txns = pgbench_fixed(session, t.port, MEASURED, "measured")
    perf.send_signal(signal.SIGINT)
    perf.wait(30)
    session.stop(t.proc)
    for line in out.read_text().splitlines():
        fields = line.split(",")
        if len(fields) > 2 and "instructions" in fields[2] and fields[0].strip().isdigit():
            return int(fields[0]) / txns, txns
    raise RuntimeError("perf stat printed no instruction count")


def commit_id() -> str:
    repo = Path(__file__).resolve().parent.parent
    # The last commit that changed the pooler itself (not benches/): it names the
    # measured code even when the row is recorded on a branch with other commits.
    rev = subprocess.run(["git", "log", "-1", "--format=%h", "--", "src", "Cargo.toml", "Cargo.lock"],
                         cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True).stdout.strip() or "?"
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"],
                           cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
    return rev + ("+dirty" if dirty.strip() else "")


def pooler_version(binary: str | None = None) -> str:
    out = subprocess.run([binary or pgbouncer_bin(), "--version"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True).stdout
    lines = [l.strip() for l in out.splitlines()]
    # pgsluice prints PgBouncer's form first (as SHOW VERSION), then its own
    # with the kind of build.
    own = [l for l in lines if l.startswith("pgsluice ")]
    return own[0] if own else (lines[0] if lines else "?")


def previous(pooler: str, tool: str) -> tuple[str, float, float | None] | None:
    if not COST_MD.exists():
        return None
    last = None
    for line in COST_MD.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 8 and cells[2] == pooler and cells[3] == tool and cells[7] == f"`{COMMAND}`":
            try:
                sys_prev = float(cells[5]) if cells[5] not in ("—", "") else None
                last = (f"{cells[0]} {cells[1]}", float(cells[4].replace(",", "")), sys_prev)
            except ValueError:
                pass
    return last


def record(pooler: str, tool: str, per_txn: float, sys_per_txn: float | None, txns: int) -> None:
    if not COST_MD.exists():
        COST_MD.write_text(HEADER)
    sys_cell = f"{sys_per_txn:.2f}" if sys_per_txn is not None else "—"
    # For the reference pooler the version matters, not this repository's commit.
    ident = commit_id() if pooler.startswith("pgsluice") else pooler_version()
    row = (f"| {time.strftime('%Y-%m-%d')} | {ident} | {pooler} | {tool} | {per_txn:,.0f} "
           f"| {sys_cell} | {txns} | `{COMMAND}` |\n")
    with COST_MD.open("a") as f:
        f.write(row)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pooler", choices=("pgsluice", "pgbouncer"), default="pgsluice")
    ap.add_argument("--tool", choices=("callgrind", "perf", "auto"), default="callgrind",
                    help="callgrind (default, deterministic); perf where the CPU counters are "
                         "supported; auto = callgrind, plus perf as extra information")
    args = ap.parse_args()
    repeat = int(os.environ.get("REPEAT") or 1)
    binary = pgbouncer_bin() if args.pooler == "pgbouncer" else os.environ.get("PGSLUICE_BIN")
    if not binary or not os.access(binary, os.X_OK):
        log(f"no {args.pooler} binary (PGSLUICE_BIN={binary!r}): nothing to measure")
        return 1
    # A profile-guided build (scripts/build-pgo.sh) gets rows of its own:
    # "pgsluice PGO" rows compare with each other, plain ones with plain ones.
    label = args.pooler
    if args.pooler == "pgsluice" and "profile-guided" in pooler_version(binary):
        label = "pgsluice PGO"
    tools = ["callgrind"] if args.tool in ("callgrind", "auto") else ["perf"]
    if args.tool == "auto" or args.tool == "perf":
        if perf_supported():
            if "perf" not in tools:
                tools.append("perf")
        else:
            log("perf stat -e instructions:u is not supported here; using callgrind")
            tools = ["callgrind"]
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(130))
    status = 0
    with Session() as session:
        session.start_postgres(scale=int(os.environ.get("SCALE") or 1))
        sys_per_txn = None
        if shutil.which("strace"):
            try:
                sys_per_txn, top = measure_syscalls(session, args.pooler, binary)
                print(f"{args.pooler}: {sys_per_txn:.2f} syscalls per transaction (strace -f -c): "
                      + ", ".join(f"{n} {v:.2f}" for n, v in top))
            except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
                log(f"syscall count failed: {e}")
        else:
            log("strace not installed: no syscall count")
        for tool in tools:
            figures, txns = [], 0
            for i in range(repeat):
                try:
                    if tool == "callgrind":
                        per_txn, txns = measure_callgrind(session, args.pooler, binary, i)
                    else:
                        per_txn, txns = measure_perf(session, args.pooler, binary)
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    log(f"{tool} measurement failed: {e}")
                    status = 1
                    break
                figures.append(per_txn)
                log(f"{args.pooler} {tool} run {i + 1}/{repeat}: {per_txn:,.0f} instructions/txn")
            if not figures:
                continue
            fig = statistics.fmean(figures)
            line = f"{args.pooler}: {fig:,.0f} instructions per transaction ({tool}, {COMMAND})"
            if len(figures) > 1:
                spread = (max(figures) - min(figures)) / fig * 100
                line += f"; spread over {len(figures)} runs {spread:.2f}%"
            print(line)
            prev = previous(label, tool)
            if prev:
                print(f"previous row ({prev[0]}): {prev[1]:,.0f} instructions/txn -> "
                      f"change {(fig / prev[1] - 1) * 100:+.2f}%")
                if prev[2] and sys_per_txn is not None:
                    print(f"previous row: {prev[2]:.2f} syscalls/txn -> change "
                          f"{(sys_per_txn / prev[2] - 1) * 100:+.2f}%")
            else:
                print("no previous row to compare with")
            if os.environ.get("RECORD", "1") != "0":
                record(label, tool, fig, sys_per_txn, txns)
                log(f"recorded in {COST_MD}")
    return status


if __name__ == "__main__":
    sys.exit(main())
