#!/usr/bin/env python3
"""System calls per transaction, per call type, pgsluice beside PgBouncer.

For each client count (SYSCALL_CLIENTS, default 1,20,50) and each pooler
(pgsluice with its default shards, pgsluice with PGSLUICE_THREADS=1, PgBouncer
1.25.2), in one run against one throwaway cluster: start the pooler, warm it
up, attach `perf stat` with the kernel's syscall tracepoints to the pooler's
process (all its threads) for a fixed-count `pgbench -S`, and divide.

Counted natively by the kernel: perf's `raw_syscalls:sys_enter` (every call)
and `syscalls:sys_enter_<name>` per call type, plus context switches and the
pooler's CPU time (`task-clock`). Where the tracepoints cannot be opened, it
falls back to `strace -f -c` (which slows the pooler down, so its CPU and tps
columns are then left empty).

Called by benches/syscalls.sh; see benches/README.md. Standard library only.

Environment:
  PGSLUICE_BIN     pooler binary (syscalls.sh builds it; PGO=0 for a plain build)
  PGBOUNCER_BIN    PgBouncer binary (syscalls.sh builds PgBouncer 1.25.2)
  SYSCALL_CLIENTS  client counts, comma-separated (default 1,20,50)
  SYSCALL_TXNS     transactions per measured run (default 20000)
  COST_MODE        pgbench's query protocol (default simple)
  OUT              markdown file to write the table to (default: print only)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pybench import pgbench  # noqa: E402
from pybench.procs import Session, log, pgbouncer_bin  # noqa: E402

CALLS = ["recvfrom", "sendto", "read", "write", "epoll_wait", "epoll_ctl", "futex"]
MODE = os.environ.get("COST_MODE") or "simple"
TXNS = int(os.environ.get("SYSCALL_TXNS") or 20000)
CLIENTS = [int(c) for c in (os.environ.get("SYSCALL_CLIENTS") or "1,20,50").split(",")]


def pgbench_fixed(session: Session, port: int, clients: int, txns: int) -> tuple[int, float]:
    """A fixed-count pgbench -S; (transactions, tps). Raises on any failure."""
    per_client = max(1, txns // clients)
    argv = [str(session.bindir / "pgbench"), "-n", "-h", "127.0.0.1", "-p", str(port),
            "-U", session.user, "-S", "-M", MODE, "-c", str(clients), "-j", "2" if clients > 1 else "1",
            "-t", str(per_client), session.dbname]
    cp = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                        cwd=session.tmp, timeout=900)
    p = pgbench.parse_output(cp.stdout)
    if cp.returncode != 0 or p["aborted"] or not p["txns"] or (p["failed"] or 0) > 0:
        raise RuntimeError(f"pgbench failed: {pgbench.first_error(cp.stdout)}")
    return p["txns"], p["tps"] or 0.0


def tracepoints_work() -> bool:
    if not shutil.which("perf"):
        return False
    cp = subprocess.run(["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "true"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return cp.returncode == 0 and "<not supported>" not in cp.stderr


def perf_events() -> list[str]:
    return (["raw_syscalls:sys_enter"] + [f"syscalls:sys_enter_{c}" for c in CALLS]
            + ["context-switches", "task-clock"])


def parse_perf(path: Path) -> dict[str, float]:
    got: dict[str, float] = {}
    for line in path.read_text().splitlines():
        f = line.split(",")
        if len(f) > 2 and f[0].replace(".", "", 1).isdigit():
            got[f[2]] = float(f[0])
    return got


def parse_strace(path: Path) -> dict[str, float]:
    got: dict[str, float] = {}
    for line in path.read_text().splitlines():
        tok = line.split()
        if len(tok) >= 5 and tok[0][0].isdigit() and tok[3].isdigit():
            name = tok[-1]
            if name == "total":
                got["raw_syscalls:sys_enter"] = float(tok[3])
            else:
                got[f"syscalls:sys_enter_{name}"] = float(tok[3])
    return got


def measure(session: Session, name: str, binary: str, env: dict[str, str],
            clients: int, perf: bool) -> dict[str, float]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        t = session.start_pooler(name, binary)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if not t.ok:
        raise RuntimeError(f"{name} did not start: {t.why_down()}")
    try:
        pgbench_fixed(session, t.port, clients, max(clients * 50, 2000))  # warm-up
        out = session.tmp / f"syscalls-{name}-{clients}.txt"
        if perf:
            argv = ["perf", "stat", "-x,", "-o", str(out), "-e", ",".join(perf_events()),
                    "-p", str(t.pid)]
        else:
            argv = ["strace", "-f", "-c", "-o", str(out), "-p", str(t.pid)]
        tracer = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # attached to every thread before the run starts
        txns, tps = pgbench_fixed(session, t.port, clients, TXNS)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30)
    finally:
        session.stop(t.proc)
    counts = parse_perf(out) if perf else parse_strace(out)
    if "raw_syscalls:sys_enter" not in counts:
        raise RuntimeError(f"no syscall total in {out}")
    row = {k: v / txns for k, v in counts.items() if k != "task-clock"}
    if perf and "task-clock" in counts:
        row["cpu_us"] = counts["task-clock"] * 1000.0 / txns  # task-clock is in ms
        row["tps"] = tps
    return row


def table(rows: list[tuple[str, int, dict[str, float]]], tool: str) -> str:
    head = (["pooler", "clients", "syscalls/txn"] + CALLS + ["other", "ctx switches/txn",
                                                            "CPU µs/txn", "tps"])
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * 2 + " ---: |" * (len(head) - 2)]
    for name, clients, r in rows:
        total = r.get("raw_syscalls:sys_enter", 0.0)
        per = [r.get(f"syscalls:sys_enter_{c}", 0.0) for c in CALLS]
        cells = [name, str(clients), f"{total:.2f}"] + [f"{v:.3f}" for v in per]
        cells.append(f"{total - sum(per):.3f}")
        cells.append(f"{r['context-switches']:.2f}" if "context-switches" in r else "—")
        cells.append(f"{r['cpu_us']:.1f}" if "cpu_us" in r else "—")
        cells.append(f"{r['tps']:,.0f}" if "tps" in r else "—")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Counted with {tool}; `pgbench -S -M {MODE} -t {TXNS}/clients`, "
                 "pooler and pgbench on the same machine.")
    return "\n".join(lines) + "\n"


def main() -> int:
    pgsluice = os.environ.get("PGSLUICE_BIN")
    poolers = []
    if pgsluice and os.access(pgsluice, os.X_OK):
        poolers.append(("pgsluice", pgsluice, {}))
        poolers.append(("pgsluice THREADS=1", pgsluice, {"PGSLUICE_THREADS": "1"}))
    else:
        log(f"no pgsluice binary (PGSLUICE_BIN={pgsluice!r})")
        return 1
    pgb = pgbouncer_bin()
    if pgb and os.access(pgb, os.X_OK):
        poolers.append(("pgbouncer", pgb, {}))
    else:
        log("no PgBouncer binary: pgsluice only")
    perf = tracepoints_work()
    tool = ("perf stat (raw_syscalls:sys_enter, syscalls:sys_enter_*)" if perf
            else "strace -f -c (perf tracepoints unavailable)")
    if not perf and not shutil.which("strace"):
        log("neither perf tracepoints nor strace: nothing to count with")
        return 1
    rows = []
    status = 0
    with Session() as session:
        session.start_postgres(scale=1)
        for clients in CLIENTS:
            for label, binary, env in poolers:
                # The ini and log are named after the pooler kind.
                kind = "pgbouncer" if label == "pgbouncer" else "pgsluice"
                try:
                    r = measure(session, kind, binary, env, clients, perf)
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    log(f"{label} at {clients} clients: {e}")
                    status = 1
                    continue
                log(f"{label} c={clients}: {r['raw_syscalls:sys_enter']:.2f} syscalls/txn")
                rows.append((label, clients, r))
    out = table(rows, tool)
    print(out)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"]).write_text(out)
    return status


if __name__ == "__main__":
    sys.exit(main())
