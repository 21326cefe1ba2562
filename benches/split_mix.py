#!/usr/bin/env python3
"""Read/write splitting under a read-heavy pgbench mix: one primary, two
streaming standbys (pg_basebackup -R), all on this machine.

Usage: benches/split_mix.sh   (DURATION=10 CLIENTS=20 SCALE=10 MODE=simple)

Two workloads, each 10% writes (an autocommit UPDATE of pgbench_accounts)
and 90% reads (pgbench -S's SELECT):
  mixed     every client runs both (pgbench -f read@9 -f write@1);
  separate  one client in ten writes, the others only read (pgbench
            :client_id), so read-your-writes only holds back the writers.

Each runs straight to the primary, through pgsluice without splitting (the
primary only), and through pgsluice with read_write_split=1 and
read_your_writes off, window (60 s, scope client) and wal. For the split
runs SHOW ROUTING's counters (before and after) give the share of reads
served by standbys: standby reads / (standby reads + reads sent to the
primary for read-your-writes, lag, hints, ...). Writes are counted apart.
Everything runs on one 2-core machine: three PostgreSQL servers, the pooler
and pgbench share the cores, so tps says what the pooler costs here, not
what spreading reads over real hosts gains.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pybench import pgbench  # noqa: E402
from pybench.procs import Session, free_port, log, wait_port  # noqa: E402

DURATION = int(os.environ.get("DURATION", "10"))
CLIENTS = int(os.environ.get("CLIENTS", "20"))
SCALE = int(os.environ.get("SCALE", "10"))
MODE = os.environ.get("MODE", "simple")

READ = "\\set aid random(1, 100000 * :scale)\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n"
WRITE = ("\\set aid random(1, 100000 * :scale)\n\\set delta random(-5000, 5000)\n"
         "UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;\n")
SEPARATE = ("\\set aid random(1, 100000 * :scale)\n\\set delta random(-5000, 5000)\n"
            "\\if :client_id % 10 = 0\n"
            "UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;\n"
            "\\else\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n\\endif\n")

SPLITS = [
    ("split, read_your_writes=off", "read_write_split=1 read_your_writes=off"),
    ("split, read_your_writes=window", "read_write_split=1 read_your_writes=window"),
    ("split, read_your_writes=wal", "read_write_split=1 read_your_writes=wal"),
]


def psql(session: Session, port: int, db: str, sql: str) -> str:
    cp = subprocess.run([str(session.bindir / "psql"), "-X", "-q", "-At", "-h", "127.0.0.1",
                         "-p", str(port), "-U", session.user, "-d", db, "-c", sql],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=True)
    return cp.stdout.strip()


def start_standby(session: Session, k: int) -> int:
    data = session.tmp / f"standby{k}"
    log(f"pg_basebackup -R into {data}")
    session.run_as_service_user(
        [str(session.bindir / "pg_basebackup"), "-D", str(data), "-R", "-X", "stream",
         "-c", "fast", "-h", "127.0.0.1", "-p", str(session.pg_port), "-U", session.user],
        check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    p = session._popen([str(session.bindir / "postgres"), "-D", str(data),
                        "-c", f"port={port}", "-c", "listen_addresses=127.0.0.1",
                        "-c", f"unix_socket_directories={session.tmp}",
                        "-c", "max_connections=1100", "-c", "shared_buffers=128MB"],
                       f"standby{k}.log")
    if not wait_port(port, p):
        raise SystemExit(f"standby {k} did not start; see {session.tmp}/standby{k}.log")
    return port


def wait_caught_up(session: Session, ports: list[int]) -> None:
    lsn = psql(session, session.pg_port, "postgres", "SELECT pg_current_wal_lsn()")
    for port in ports:
        for _ in range(600):
            try:
                if psql(session, port, "postgres",
                        f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn") == "t":
                    break
            except subprocess.CalledProcessError:
                pass  # still starting
            time.sleep(0.1)
        else:
            raise SystemExit(f"the standby on port {port} never caught up")


def routing(session: Session, port: int) -> dict[tuple[str, str], int]:
    out = psql(session, port, "pgbouncer", "SHOW ROUTING")
    counts = {}
    for line in out.splitlines():
        db, target, reason, n = line.split("|")
        if db == session.dbname and target:
            counts[(target, reason)] = int(n)
    return counts


def shares(before: dict, after: dict) -> dict:
    d = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    standby = sum(n for (t, _), n in d.items() if t == "standby")
    writes = d.get(("primary", "write"), 0) + d.get(("primary", "setting"), 0)
    primary_reads = sum(n for (t, r), n in d.items()
                        if t == "primary" and r not in ("write", "setting"))
    reads = standby + primary_reads
    return {
        "reads": reads,
        "writes": writes,
        "standby_share": standby / reads if reads else None,
        "primary_reads": {r: n for (t, r), n in d.items()
                          if t == "primary" and r not in ("write", "setting") and n},
    }


def main() -> int:
    rows = []
    with Session() as s:
        s.start_postgres(scale=SCALE)
        standbys = [start_standby(s, k) for k in (1, 2)]
        wait_caught_up(s, standbys)
        scripts = {}
        for name, text in (("read", READ), ("write", WRITE), ("separate", SEPARATE)):
            scripts[name] = s.tmp / f"{name}.sql"
            scripts[name].write_text(text)
        workloads = {
            "mixed": ["-f", f"{scripts['read']}@9", "-f", f"{scripts['write']}@1"],
            "separate": ["-f", str(scripts["separate"])],
        }
        hosts = ",".join(["127.0.0.1"] * 3)
        ports = ",".join(str(p) for p in [s.pg_port, *standbys])
        s.pgsluice_ini = "admin_users = {}\nhost_check_period = 0.5\nmax_standby_lag = 10s\n".format(s.user)
        binary = os.environ["PGSLUICE_BIN"]
        args = ["-M", MODE, "-c", str(CLIENTS), "-j", "2"]
        configs = [("direct", None, "")] + [("pgsluice, no split", "", "")] + \
            [(label, f"host={hosts} port={ports} dbname={s.dbname}", opts) for label, opts in SPLITS]
        for label, conn, opts in configs:
            if conn is None:
                target = s.targets["direct"]
            else:
                s.pgsluice_conn = conn
                os.environ["PGSLUICE_DB_OPTIONS"] = opts
                target = s.start_pooler("pgsluice", binary)
                if not target.ok:
                    raise SystemExit(f"pgsluice did not start: {target.why_down()}")
                time.sleep(1.5)  # the health checker's first round
            for wl, wargs in workloads.items():
                pgbench.run(s, target, args + wargs, 2, f"warm_{wl}")  # fill the pools
                before = routing(s, target.port) if opts else {}
                res = pgbench.run(s, target, args + wargs, DURATION, f"{wl}")
                row = {"workload": wl, "target": label, "tps": res.tps, "ok": res.ok,
                       "error": res.error, "pooler_cpu_us": res.cpu_us_per_txn}
                if opts:
                    row.update(shares(before, routing(s, target.port)))
                log(f"{wl:8} {label:32} tps {res.tps} {row.get('standby_share')}")
                rows.append(row)
    direct = {r["workload"]: r["tps"] for r in rows if r["target"] == "direct"}
    print(f"\n{CLIENTS} clients, pgbench -M {MODE} -j 2 -T {DURATION}, scale {SCALE}; "
          "1 primary + 2 standbys on one 2-core machine\n")
    print("| workload | target | tps | vs direct | reads on standbys | reads to primary (reason) | writes |")
    print("| --- | --- | ---: | ---: | ---: | --- | ---: |")
    for r in rows:
        tps = f"{r['tps']:,.0f}" if r["tps"] else f"failed: {r['error']}"
        ratio = f"{r['tps'] / direct[r['workload']]:.2f}" if r["tps"] and direct.get(r["workload"]) else ""
        share = f"{100 * r['standby_share']:.1f}%" if r.get("standby_share") is not None else ""
        why = ", ".join(f"{k} {v:,}" for k, v in r.get("primary_reads", {}).items())
        writes = f"{r['writes']:,}" if "writes" in r else ""
        print(f"| {r['workload']} | {r['target']} | {tps} | {ratio} | {share} | {why} | {writes} |")
    out = os.environ.get("RESULT_JSON")
    if out:
        Path(out).write_text(json.dumps(rows, indent=1))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
