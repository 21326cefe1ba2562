#!/usr/bin/env python3
"""What a PostgreSQL fast restart costs the clients of a pooler: PgBouncer
1.25.2 and pgsluice, one after the other, in front of the same throwaway
cluster, under the same load.

Load on the pooler under test:
- RESTART_WORKERS (8) sessions, each running one-statement transactions
  (a pgbench -S select) back to back; a session whose transaction fails
  counts the failure, logs in again and goes on;
- a new client every 50 ms that logs in, runs SELECT 1 and leaves.

After RESTART_BEFORE seconds (3), PostgreSQL gets SIGINT (a fast shutdown,
as `pg_ctl restart -m fast`), and is started again once it has exited; the
load runs RESTART_AFTER seconds more (20: longer than server_login_retry's
15 s default). Reported per pooler: failed logins and failed transactions
(with the server's message), how many sessions had a transaction in flight
when PostgreSQL went down (the floor: those are terminated by PostgreSQL
itself), the time from the restart to the first transaction served again and
to every session served again, and the longest wait of one transaction.

Every socket operation is bounded (RESTART_OP_TIMEOUT, 60 s): a hang is
reported as one. Trust authentication, both poolers with their defaults
(pool_mode = transaction, default_pool_size = 20).

Run through benches/restart.sh (builds what is missing); RECORD=1 writes
the table to benches/results/<date>-<commit>-restart.md.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pybench.pgwire import startup_message  # noqa: E402
from pybench.procs import Session, log, wait_port  # noqa: E402

OP_TIMEOUT = float(os.environ.get("RESTART_OP_TIMEOUT", "60"))


class Failed(Exception):
    """A login or transaction that got an error, or lost its connection."""


def read_until_ready(s: socket.socket, buf: bytearray) -> None:
    """Read messages until ReadyForQuery; raise Failed on an ErrorResponse
    (after its ReadyForQuery, if one follows) or a closed connection."""
    error = None
    while True:
        while len(buf) >= 5:
            (length,) = struct.unpack("!i", buf[1:5])
            if len(buf) < 1 + length:
                break
            kind, body = buf[0:1], bytes(buf[5:1 + length])
            del buf[:1 + length]
            if kind == b"E" and error is None:
                fields = {f[:1]: f[1:].decode(errors="replace") for f in body.split(b"\0") if f}
                error = f"{fields.get(b'C', '?')} {fields.get(b'M', '')}"
            elif kind == b"R" and struct.unpack("!i", body[:4])[0] != 0:
                raise Failed("server asked for a password")
            elif kind == b"Z":
                if error:
                    raise Failed(error)
                return
        try:
            data = s.recv(65536)
        except socket.timeout as e:
            raise TimeoutError("no answer within RESTART_OP_TIMEOUT") from e
        except OSError as e:
            raise Failed(f"{error or ''} connection error: {e}".strip()) from e
        if not data:
            raise Failed(error or "connection closed")
        buf += data


def login(port: int, user: str, db: str) -> tuple[socket.socket, bytearray]:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=OP_TIMEOUT)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(startup_message(user, db))
    except socket.timeout as e:
        raise TimeoutError("connect timed out") from e
    except OSError as e:
        raise Failed(f"connect: {e}") from e
    buf = bytearray()
    try:
        read_until_ready(s, buf)
    except BaseException:
        s.close()
        raise
    return s, buf


def query(s: socket.socket, buf: bytearray, sql: str) -> None:
    body = sql.encode() + b"\0"
    try:
        s.sendall(b"Q" + struct.pack("!i", len(body) + 4) + body)
    except OSError as e:
        raise Failed(f"send: {e}") from e
    read_until_ready(s, buf)


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    ok_txns: int = 0
    failed_txns: Counter = field(default_factory=Counter)
    failed_logins: Counter = field(default_factory=Counter)
    hangs: list = field(default_factory=list)
    logins: int = 0
    # Per worker: time of its last success, and whether it has one after
    # the restart ended.
    last_ok: list = field(default_factory=list)
    served_after: list = field(default_factory=list)
    first_ok_after: float | None = None
    longest_txn: float = 0.0
    in_flight_at_stop: int = 0
    busy: list = field(default_factory=list)


def worker(i: int, port: int, user: str, db: str, t: Tally, stop: threading.Event,
           restart_done: threading.Event) -> None:
    s = None
    buf = bytearray()
    aid = 1 + i
    while not stop.is_set():
        if s is None:
            try:
                s, buf = login(port, user, db)
                with t.lock:
                    t.logins += 1
            except TimeoutError as e:
                with t.lock:
                    t.hangs.append(f"worker login: {e}")
                return
            except Failed as e:
                with t.lock:
                    t.failed_logins[str(e)[:120]] += 1
                time.sleep(0.05)
                continue
        aid = aid % 100000 + 1
        start = time.monotonic()
        t.busy[i] = True
        try:
            query(s, buf, f"SELECT abalance FROM pgbench_accounts WHERE aid = {aid}")
        except TimeoutError as e:
            with t.lock:
                t.hangs.append(f"worker transaction: {e}")
            return
        except Failed as e:
            t.busy[i] = False
            with t.lock:
                t.failed_txns[str(e)[:120]] += 1
            s.close()
            s = None
            continue
        t.busy[i] = False
        now = time.monotonic()
        with t.lock:
            t.ok_txns += 1
            t.longest_txn = max(t.longest_txn, now - start)
            t.last_ok[i] = now
            if restart_done.is_set() and not t.served_after[i]:
                t.served_after[i] = now
                if t.first_ok_after is None:
                    t.first_ok_after = now
    if s is not None:
        s.close()


def arrivals(port: int, user: str, db: str, t: Tally, stop: threading.Event) -> None:
    """A new client every 50 ms (each in its own thread, so a slow login
    does not delay the next arrival)."""
    threads = []

    def one() -> None:
        try:
            s, buf = login(port, user, db)
        except TimeoutError as e:
            with t.lock:
                t.hangs.append(f"arriving login: {e}")
            return
        except Failed as e:
            with t.lock:
                t.failed_logins[str(e)[:120]] += 1
            return
        try:
            query(s, buf, "SELECT 1")
            with t.lock:
                t.logins += 1
        except TimeoutError as e:
            with t.lock:
                t.hangs.append(f"arriving query: {e}")
        except Failed as e:
            with t.lock:
                t.failed_txns[str(e)[:120]] += 1
        finally:
            s.close()

    while not stop.wait(0.05):
        th = threading.Thread(target=one, daemon=True)
        th.start()
        threads.append(th)
    for th in threads:
        th.join(OP_TIMEOUT + 5)


def restart_postgres(session: Session) -> float:
    """SIGINT (fast shutdown), wait for exit, start again; seconds taken
    until it listens."""
    start = time.monotonic()
    p = session.pg_proc
    os.kill(p.pid, signal.SIGINT)
    p.wait(60)
    session.pg_proc = session._popen(session.pg_argv, "postgres.log")
    if not wait_port(session.pg_port, session.pg_proc, timeout=60):
        raise SystemExit("PostgreSQL did not come back; see postgres.log")
    return time.monotonic() - start


def run_one(session: Session, name: str, binary: str, workers: int, before: float,
            after: float) -> dict:
    target = session.start_pooler(name, binary)
    if not target.ok:
        return {"name": name, "error": target.why_down()}
    t = Tally(last_ok=[0.0] * workers, served_after=[0.0] * workers, busy=[False] * workers)
    stop, restart_done = threading.Event(), threading.Event()
    threads = [threading.Thread(target=worker, args=(i, target.port, session.user, session.dbname,
                                                     t, stop, restart_done), daemon=True)
               for i in range(workers)]
    threads.append(threading.Thread(target=arrivals, args=(target.port, session.user,
                                                            session.dbname, t, stop), daemon=True))
    for th in threads:
        th.start()
    time.sleep(before)
    with t.lock:
        ok_before = t.ok_txns
    t.in_flight_at_stop = sum(t.busy)
    r0 = time.monotonic()
    took = restart_postgres(session)
    restart_done.set()
    r1 = time.monotonic()
    time.sleep(after)
    stop.set()
    for th in threads:
        th.join(OP_TIMEOUT + 10)
    served = [x for x in t.served_after if x]
    Session.stop(target.proc)
    return {
        "name": name,
        "restart_s": took,
        "ok_before": ok_before,
        "ok_total": t.ok_txns,
        "logins": t.logins,
        "failed_logins": t.failed_logins,
        "failed_txns": t.failed_txns,
        "hangs": t.hangs,
        "in_flight": t.in_flight_at_stop,
        "first_ok": (t.first_ok_after - r1) if t.first_ok_after else None,
        "all_served": (max(served) - r1) if len(served) == workers else None,
        "unserved": workers - len(served),
        "longest_txn": t.longest_txn,
        "since_restart": r0,
    }


def fmt_counter(c: Counter) -> str:
    return "; ".join(f"{n}× {msg}" for msg, n in c.most_common()) or "none"


def main() -> None:
    workers = int(os.environ.get("RESTART_WORKERS", "8"))
    before = float(os.environ.get("RESTART_BEFORE", "3"))
    after = float(os.environ.get("RESTART_AFTER", "20"))
    poolers = [("pgbouncer", os.environ.get("PGBOUNCER_BIN")),
               ("pgsluice", os.environ.get("PGSLUICE_BIN"))]
    rows = []
    with Session() as session:
        session.start_postgres(scale=1)
        for name, binary in poolers:
            if not binary:
                log(f"{name}: no binary (PGBOUNCER_BIN / PGSLUICE_BIN)")
                continue
            log(f"{name}: {workers} sessions + a login every 50 ms; restart after {before}s")
            rows.append(run_one(session, name, binary, workers, before, after))
    lines = [
        "| pooler | failed logins | failed transactions | sessions in flight at the stop "
        "| first transaction after restart (s) | every session served again (s) "
        "| longest transaction (s) | transactions | hangs |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    details = []
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | {r['error']} | | | | | | | |")
            continue
        fl, ft = sum(r["failed_logins"].values()), sum(r["failed_txns"].values())
        first = f"{r['first_ok']:.2f}" if r["first_ok"] is not None else "never"
        every = f"{r['all_served']:.2f}" if r["all_served"] is not None else \
            f"{r['unserved']} never"
        lines.append(f"| {r['name']} | {fl} | {ft} | {r['in_flight']} | {first} | {every} "
                     f"| {r['longest_txn']:.2f} | {r['ok_total']:,} | {len(r['hangs'])} |")
        details.append(f"- {r['name']}: PostgreSQL down and up again in {r['restart_s']:.2f} s; "
                       f"failed logins: {fmt_counter(r['failed_logins'])}; "
                       f"failed transactions: {fmt_counter(r['failed_txns'])}"
                       + (f"; hangs: {r['hangs'][:3]}" if r["hangs"] else ""))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    head = (f"PostgreSQL fast restart under load, {time.strftime('%Y-%m-%d %H:%M')}, commit "
            f"{commit}: {workers} sessions running one-statement transactions and a new "
            f"client every 50 ms; restart after {before:g} s, load for {after:g} s after it.")
    text = "\n".join([head, "", *lines, "", *details]) + "\n"
    print(text)
    if os.environ.get("RECORD") == "1":
        out = Path(__file__).resolve().parent / "results" / \
            f"{time.strftime('%Y-%m-%d')}-{commit}-restart.md"
        out.write_text("# " + text)
        log(f"recorded {out}")
    bad = [r["name"] for r in rows if "error" in r or r["hangs"]]
    if bad:
        sys.exit(f"hangs or errors: {', '.join(bad)}")


if __name__ == "__main__":
    main()
