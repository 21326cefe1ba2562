#!/usr/bin/env python3
"""Does pgsluice's SCRAM exchange take as long for an unknown user as for a
known one? A difference would tell an attacker which user names exist.

For each login a raw protocol client (this script; no PBKDF2 of its own)
sends the startup packet and the SCRAM client-first message, and times how
long the pooler takes to send its server-first message (t1: the secret is
looked up, or a fake one made, before that), then sends a wrong proof and
times the refusal (t2: the proof is checked). Known and unknown users
alternate, so both see the same machine. Reported: medians and 90th
percentiles in microseconds, and unknown/known ratios.

Pairs compared: a user in auth_file (a SCRAM verifier) against a user
that does not exist; and that user logging in to its database against the
same user naming a database that does not exist (the exchange runs with a
made-up secret in both unknown cases, and fails as a wrong password).
Not compared: users auth_query looks up, for which PgBouncer answers "no
such user" before any exchange (its test_no_user_auth_user expects it) and
pgsluice does the same.

Env: TIMING_LOGINS (400 per login kind and pair). Run through
benches/auth_timing.sh (builds what is missing).
"""

from __future__ import annotations

import base64
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pybench.procs import Session, Target, free_port, log, wait_port  # noqa: E402

PASSWORD = "timing-password"
KNOWN = "timing_known"
UNKNOWN = "timing_nobody"


def recv_msg(s: socket.socket) -> tuple[bytes, bytes]:
    head = b""
    while len(head) < 5:
        chunk = s.recv(5 - len(head))
        if not chunk:
            raise ConnectionError("closed")
        head += chunk
    tag, length = head[:1], struct.unpack("!I", head[1:])[0]
    body = b""
    while len(body) < length - 4:
        chunk = s.recv(length - 4 - len(body))
        if not chunk:
            raise ConnectionError("closed")
        body += chunk
    return tag, body


def attempt(port: int, user: str, db: str) -> tuple[float, float]:  # noqa: C901
    """(t1, t2) in microseconds for one failed SCRAM login of `user`."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        params = b"user\0" + user.encode() + b"\0database\0" + db.encode() + b"\0\0"
        s.sendall(struct.pack("!II", 8 + len(params), 196608) + params)
        tag, body = recv_msg(s)
        if tag != b"R" or struct.unpack("!I", body[:4])[0] != 10:
            raise SystemExit(f"{user}: no SASL offer: {tag!r} {body[:80]!r}")
        nonce = base64.b64encode(os.urandom(18)).decode()
        first = f"n,,n=,r={nonce}".encode()
        mech = b"SCRAM-SHA-256\0"
        payload = mech + struct.pack("!I", len(first)) + first
        t0 = time.perf_counter()
        s.sendall(b"p" + struct.pack("!I", 4 + len(payload)) + payload)
        tag, body = recv_msg(s)
        t1 = time.perf_counter()
        if tag != b"R" or struct.unpack("!I", body[:4])[0] != 11:
            raise SystemExit(f"{user}: no server-first message: {tag!r} {body[:80]!r}")
        server_first = body[4:].decode()
        fields = dict(f.split("=", 1) for f in server_first.split(","))
        proof = base64.b64encode(os.urandom(32)).decode()
        final = f"c=biws,r={fields['r']},p={proof}".encode()
        t2s = time.perf_counter()
        s.sendall(b"p" + struct.pack("!I", 4 + len(final)) + final)
        tag, body = recv_msg(s)
        t2 = time.perf_counter()
        if tag != b"E":
            raise SystemExit(f"{user}: a wrong proof was not refused: {tag!r}")
        return (t1 - t0) * 1e6, (t2 - t2s) * 1e6


def start(session: Session, binary: str, setup: str, verifier: str) -> Target:
    port = free_port()
    t = Target(f"pgsluice_{setup}", port)
    userlist = session.tmp / f"timing_{setup}.txt"
    lines = ['"postgres" ""']
    if setup == "auth_file":
        lines.append(f'"{KNOWN}" "{verifier}"')
    userlist.write_text("\n".join(lines) + "\n")
    lookup = ""  # no auth_query: see the module doc
    ini = session.tmp / f"timing_{setup}.ini"
    ini.write_text(
        "[databases]\n"
        f"{session.dbname} = host=127.0.0.1 port={session.pg_port} dbname={session.dbname}\n"
        "\n[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        "auth_type = scram-sha-256\n"
        f"auth_file = {userlist}\n"
        f"{lookup}"
        "log_pooler_errors = 0\n"
        "max_client_conn = 1000\n")
    for p in (userlist, ini):
        session._chown(p)
    t.log_path = session.tmp / f"timing_{setup}.log"
    t.proc = session._popen([binary, str(ini)], t.log_path.name)
    if not wait_port(port, t.proc):
        raise SystemExit(f"pgsluice did not start; see {t.log_path}")
    return t


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> int:
    logins = int(os.environ.get("TIMING_LOGINS", "400"))
    binary = os.environ["PGSLUICE_BIN"]
    rows = []
    with Session() as session:
        session.start_postgres(scale=1)
        psql = [str(session.bindir / "psql"), "-X", "-q", "-At", "-h", "127.0.0.1",
                "-p", str(session.pg_port), "-U", "postgres", "-d", session.dbname]
        subprocess.run(psql + ["-c", "SET password_encryption = 'scram-sha-256'; "
                               f"CREATE ROLE {KNOWN} LOGIN PASSWORD '{PASSWORD}'"], check=True)
        verifier = subprocess.run(
            psql + ["-c", f"SELECT rolpassword FROM pg_authid WHERE rolname = '{KNOWN}'"],
            check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
        t = start(session, binary, "auth_file", verifier)
        pairs = (("unknown user", (KNOWN, session.dbname), (UNKNOWN, session.dbname)),
                 ("unknown database", (KNOWN, session.dbname), (KNOWN, "no_such_db")))
        try:
            for what, known, unknown in pairs:
                for _ in range(20):  # warm up
                    attempt(t.port, *known)
                    attempt(t.port, *unknown)
                got: dict[str, list[tuple[float, float]]] = {"known": [], "unknown": []}
                for i in range(logins):
                    order = (("known", known), ("unknown", unknown))
                    for name, (user, db) in order if i % 2 == 0 else order[::-1]:
                        got[name].append(attempt(t.port, user, db))
                stats = {}
                for name, xs in got.items():
                    t1 = [x[0] for x in xs]
                    t2 = [x[1] for x in xs]
                    stats[name] = (statistics.median(t1), pct(t1, 0.9),
                                   statistics.median(t2), pct(t2, 0.9))
                log(f"{what}: known {stats['known']}, unknown {stats['unknown']}")
                rows.append((what, stats["known"], stats["unknown"]))
        finally:
            session.stop(t.proc)
    print(f"\nFailed SCRAM logins, {logins} per login kind and pair, alternating; "
          "microseconds (median / p90)\n")
    print("| compared | login | server-first (t1) | refusal (t2) | t1 unknown/known | t2 unknown/known |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for what, k, u in rows:
        print(f"| {what} | known | {k[0]:.0f} / {k[1]:.0f} | {k[2]:.0f} / {k[3]:.0f} | | |")
        print(f"| {what} | unknown | {u[0]:.0f} / {u[1]:.0f} | {u[2]:.0f} / {u[3]:.0f} | "
              f"{u[0] / k[0]:.2f} | {u[2] / k[2]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
