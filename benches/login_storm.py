#!/usr/bin/env python3
"""Login storms with auth_query: pgbench -C (a new connection for every
transaction) against PgBouncer 1.25.2 and pgsluice, both looking every user
up with auth_query (auth_user = postgres, PgBouncer's default query; no
user in auth_file but the auth_user), side by side in the same run.

Scenarios: an md5 role under auth_type md5 and a SCRAM role under
auth_type scram-sha-256; pgsluice with auth_query_cache on (the default:
logins of one user share a lookup in flight) and off. Each round runs the
poolers one after the other (order rotated); the table shows the median
connections per second over the rounds and pgsluice's ratio to PgBouncer.

The control row "file" logs in an md5 user listed in auth_file (no lookup).

The row "scram-1" is a SCRAM role whose verifier has 1 PBKDF2 iteration
instead of PostgreSQL's 4096: with 4096, pgbench's own PBKDF2 for every
connection (on the same two cores) bounds both poolers alike; with 1, what
is measured is the poolers' work per login (the SCRAM exchange, the lookup,
the server login or a pooled server).

Env: STORM_SECONDS (10), STORM_ROUNDS (3), STORM_CLIENTS (8), STORM_TYPES
(file,md5,scram-sha-256,scram-1), STORM_WRAP (a profiler command for pgsluice).
Run through benches/login_storm.sh (builds what is missing).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pybench import pgbench  # noqa: E402
from pybench.procs import Session, Target, cpu_split, free_port, log, wait_port  # noqa: E402

PASSWORD = "storm-password"


def scram_verifier(password: str, iterations: int) -> str:
    """A SCRAM-SHA-256 verifier as PostgreSQL stores it (RFC 5802/7677)."""
    import base64
    import hashlib
    import hmac
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def write_ini(session: Session, name: str, port: int, auth_type: str, cache: str | None) -> Path:
    """auth_type "file" is the control: md5 with the user in auth_file."""
    userlist = session.tmp / "storm_userlist.txt"
    userlist.write_text(f'"postgres" ""\n"storm_file" "{PASSWORD}"\n')
    ini = session.tmp / f"storm_{name}.ini"
    extra = f"auth_query_cache = {cache}\n" if cache is not None else ""
    lookup = "auth_user = postgres\n"
    if auth_type == "file":
        auth_type, lookup = "md5", ""
    ini.write_text(
        "[databases]\n"
        f"{session.dbname} = host=127.0.0.1 port={session.pg_port} dbname={session.dbname}\n"
        "\n[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        f"auth_type = {auth_type}\n"
        f"auth_file = {userlist}\n"
        f"{lookup}"
        "pool_mode = transaction\n"
        "default_pool_size = 20\n"
        "max_client_conn = 1000\n" + extra)
    for p in (userlist, ini):
        session._chown(p)
    return ini


def start(session: Session, name: str, binary: str, auth_type: str, cache: str | None) -> Target:
    port = free_port()
    t = Target(name, port)
    ini = write_ini(session, name, port, auth_type, cache)
    t.log_path = session.tmp / f"storm_{name}.log"
    # STORM_WRAP (e.g. "perf record -g -o /tmp/storm.perf --") runs
    # pgsluice under a profiler.
    wrap = os.environ.get("STORM_WRAP", "").split() if "pgsluice" in name else []
    t.proc = session._popen(wrap + [binary, str(ini)], t.log_path.name)
    if not wait_port(port, t.proc):
        raise SystemExit(f"{name} did not start; see {t.log_path}")
    return t


def storm(session: Session, t: Target, user: str, seconds: int, clients: int) -> tuple[float, float]:
    """Connections per second and the pooler's CPU microseconds per connection."""
    argv = [str(session.bindir / "pgbench"), "-n", "-C", "-S", "-h", "127.0.0.1",
            "-p", str(t.port), "-U", user, "-c", str(clients), "-j", "1",
            "-T", str(seconds), session.dbname]
    pid = t.pid
    c0 = sum(cpu_split(pid))
    cp = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                        env={**os.environ, "PGPASSWORD": PASSWORD}, timeout=seconds + 60)
    c1 = sum(cpu_split(pid))
    p = pgbench.parse_output(cp.stdout)
    if cp.returncode != 0 or not p["txns"] or p["failed"]:
        raise SystemExit(f"{t.name}: pgbench failed:\n{cp.stdout[-1500:]}")
    cpu_us = (c1 - c0) * 1e6 / CLK_TCK / p["txns"]
    return p["tps"], cpu_us


def main() -> int:
    seconds = int(os.environ.get("STORM_SECONDS", "10"))
    rounds = int(os.environ.get("STORM_ROUNDS", "3"))
    clients = int(os.environ.get("STORM_CLIENTS", "8"))
    pgbouncer = os.environ["PGBOUNCER_BIN"]
    pgsluice = os.environ["PGSLUICE_BIN"]
    rows = []
    with Session() as session:
        session.start_postgres(scale=1)
        psql = [str(session.bindir / "psql"), "-X", "-q", "-h", "127.0.0.1",
                "-p", str(session.pg_port), "-U", "postgres", "-d", session.dbname]
        for role, enc, secret in (("storm_file", "md5", PASSWORD), ("storm_md5", "md5", PASSWORD),
                                  ("storm_scram", "scram-sha-256", PASSWORD),
                                  ("storm_scram1", "scram-sha-256", scram_verifier(PASSWORD, 1))):
            sql = (f"SET password_encryption = '{enc}'; "
                   f"CREATE ROLE {role} LOGIN PASSWORD '{secret}'; "
                   f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
            subprocess.run(psql + ["-c", sql], check=True)
        types = os.environ.get("STORM_TYPES", "file,md5,scram-sha-256,scram-1").split(",")
        for role, kind in (("storm_file", "file"), ("storm_md5", "md5"),
                           ("storm_scram", "scram-sha-256"), ("storm_scram1", "scram-1")):
            if kind not in types:
                continue
            auth_type = "scram-sha-256" if kind == "scram-1" else kind
            poolers = [("pgbouncer", pgbouncer, None), ("pgsluice cache on", pgsluice, "1"),
                       ("pgsluice cache off", pgsluice, "0")]
            results: dict[str, list[tuple[float, float]]] = {n: [] for n, _, _ in poolers}
            for r in range(rounds):
                order = poolers[r % 3:] + poolers[:r % 3]
                for name, binary, cache in order:
                    t = start(session, name.replace(" ", "_"), binary, auth_type, cache)
                    try:
                        res = storm(session, t, role, seconds, clients)
                    finally:
                        session.stop(t.proc)
                    log(f"{kind} round {r + 1} {name}: {res[0]:.0f} conn/s, "
                        f"{res[1]:.0f} us CPU per connection")
                    results[name].append(res)
            base = statistics.median(x[0] for x in results["pgbouncer"])
            for name, _, _ in poolers:
                tps = statistics.median(x[0] for x in results[name])
                cpu = statistics.median(x[1] for x in results[name])
                rows.append((kind, name, tps, cpu, tps / base))
    print(f"\npgbench -C -S -c {clients} -T {seconds}, {rounds} rounds, median; "
          "every login runs auth_query (PgBouncer's default) as postgres\n")
    print("| auth_type | pooler | connections/s | pooler CPU µs/connection | vs PgBouncer |")
    print("| --- | --- | ---: | ---: | ---: |")
    for auth_type, name, tps, cpu, ratio in rows:
        print(f"| {auth_type} | {name} | {tps:.0f} | {cpu:.0f} | {ratio:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
