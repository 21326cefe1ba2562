#!/usr/bin/env python3
"""CPU floor of the connection-storm scenario (S4, pgbench -S -C -c 20 -j 2).

Runs, alternating round by round against one throwaway cluster: PgBouncer,
pgsluice, and examples/floor_proxy.rs, a stand-in that does only what any
pooler must for such a client (accept, read the startup packet, one write of
the login answer, forward the query, read the answer up to ReadyForQuery,
one write back, read Terminate, close; blocking sockets, no epoll, clients
one at a time). For each: tps, the process's CPU per transaction (user / sys
from /proc) and the machine's busy CPU per transaction.

Then the budget: when PostgreSQL, pgbench and the pooler saturate the cores,
at most cores x 10^6 / tps us of CPU are spent per transaction. Everything
but the pooler costs (machine - pooler) with PgBouncer in the path; 1.5 x
PgBouncer's tps leaves a pooler at most
cores x 10^6 / (1.5 x tps_PgB) - (machine_PgB - pooler_PgB). If the floor's CPU
alone is above that, no pooler reaches 1.5 x on this machine.

Environment: DURATION (s per run, default 8), ROUNDS (default 2),
PGSLUICE_BIN, FLOOR_BIN (set by floor.sh). Writes benches/results/latest-floor.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pybench import pgbench  # noqa: E402
from pybench.procs import Session, Target, free_port, log, pgbouncer_bin, wait_port  # noqa: E402

ARGS = ["-S", "-C", "-c", "20", "-j", "2"]


def start_floor(session: Session, binary: str) -> Target:
    port = free_port()
    t = Target("floor", port)
    t.proc = session._popen([binary, str(port), str(session.pg_port), session.user,
                             session.dbname], "floor.log")
    if not wait_port(port, t.proc):
        t.error = "did not start"
    return t


def main() -> int:
    duration = int(os.environ.get("DURATION") or 8)
    rounds = int(os.environ.get("ROUNDS") or 2)
    cores = os.cpu_count() or 1
    with Session() as s:
        s.start_postgres(scale=10)
        targets = [s.start_pooler("pgbouncer", pgbouncer_bin()),
                   s.start_pooler("pgsluice", os.environ.get("PGSLUICE_BIN")),
                   start_floor(s, os.environ["FLOOR_BIN"])]
        results: dict[str, list] = {t.name: [] for t in targets}
        for r in range(rounds):
            for t in targets:
                res = pgbench.run(s, t, ARGS, duration, f"floor{r}")
                if not res.ok:
                    log(f"{t.name}: {res.error}")
                    continue
                log(f"round {r + 1}/{rounds} {t.name}: {res.tps:,.0f} tps, "
                    f"{res.cpu_us_per_txn:.1f} us CPU/txn")
                results[t.name].append(res)
                time.sleep(1)

    def mean(name: str, attr: str) -> float:
        vals = [getattr(x, attr) for x in results[name]]
        return sum(vals) / len(vals) if vals else float("nan")

    rows = ["| target | tps | pooler CPU us/txn | user | sys | machine us/txn |",
            "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name in ("pgbouncer", "pgsluice", "floor"):
        rows.append(f"| {name} | {mean(name, 'tps'):,.0f} | {mean(name, 'cpu_us_per_txn'):.1f} | "
                    f"{mean(name, 'cpu_user_us_per_txn'):.1f} | {mean(name, 'cpu_sys_us_per_txn'):.1f} | "
                    f"{mean(name, 'machine_us_per_txn'):.1f} |")
    m_pgb, c_pgb = mean("pgbouncer", "machine_us_per_txn"), mean("pgbouncer", "cpu_us_per_txn")
    tps_pgb = mean("pgbouncer", "tps")
    capacity = cores * 1e6 / (1.5 * tps_pgb)
    budget = capacity - (m_pgb - c_pgb)
    floor = mean("floor", "cpu_us_per_txn")
    text = "\n".join([
        "# S4 CPU floor (pgbench " + " ".join(ARGS) + ")", "",
        f"{time.strftime('%Y-%m-%d %H:%M')} · {cores} cores · DURATION={duration}s × ROUNDS={rounds} · "
        f"load average {os.getloadavg()[0]:.2f} at end", "",
        *rows, "",
        f"Pooler budget for 1.5 × PgBouncer's tps: {cores} cores × 10^6 / (1.5 × {tps_pgb:,.0f}) "
        f"- ({m_pgb:.1f} - {c_pgb:.1f}) = {capacity:.1f} - {m_pgb - c_pgb:.1f} = {budget:.1f} us "
        "per connection + transaction (all cores busy, everything but the pooler as with PgBouncer).",
        f"Floor (the least any pooler spends): {floor:.1f} us "
        + ("> budget: 1.5 x PgBouncer cannot be reached on this machine."
           if floor > budget else "<= budget: not ruled out by the floor."), ""])
    print(text)
    out = Path(__file__).resolve().parent / "results" / "latest-floor.md"
    out.write_text(text)
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
