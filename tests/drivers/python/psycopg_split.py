"""psycopg 3 through pgsluice with read/write splitting (tests/it/split_drivers.rs).

prepare_threshold=0: every query is a named prepared statement. Reads in
autocommit must come from a standby, writes and transactions from the
primary, and with read_your_writes a read right after a write sees it.
Exits non-zero (with a traceback) on any wrong result.
"""

import os
import threading

import psycopg

DSN = os.environ["PGSLUICE_DSN"]
CLIENTS = int(os.environ.get("CLIENTS", "8"))
ROUNDS = int(os.environ.get("ROUNDS", "20"))


def worker(i, errors):
    try:
        with psycopg.connect(DSN, prepare_threshold=0, autocommit=True) as conn:
            # Reads first: no write of this client yet, so a standby's.
            for r in range(ROUNDS):
                standby, n = conn.execute(
                    "SELECT pg_is_in_recovery(), %s::int", (r,)
                ).fetchone()
                assert standby and n == r, (standby, n)
            for r in range(ROUNDS):
                primary = conn.execute(
                    "INSERT INTO split_t VALUES (%s, %s) RETURNING pg_is_in_recovery()",
                    (i, r),
                ).fetchone()[0]
                assert not primary
                # Read your writes: the row is there at once.
                seen = conn.execute(
                    "SELECT count(*) FROM split_t WHERE client = %s AND n = %s", (i, r)
                ).fetchone()[0]
                assert seen == 1, seen
                with conn.transaction():
                    in_tx = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
                    assert not in_tx
    except BaseException as e:  # noqa: BLE001 - reported by the main thread
        errors.append(e)


def main():
    errors = []
    threads = [threading.Thread(target=worker, args=(i, errors)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    print(f"psycopg split: {CLIENTS} clients x {ROUNDS} rounds ok")


if __name__ == "__main__":
    main()
