"""psycopg 3 through pgsluice in transaction mode (tests/it/driver_scripts.rs).

prepare_threshold=0 makes psycopg prepare every query as a named statement
on first use, so with more connections than server connections each
statement must follow its client to other servers. Also: pipeline mode, an
error in the middle of a pipeline, executemany, COPY in and out.
Exits non-zero (with a traceback) on any wrong result.
"""

import os
import sys
import threading

import psycopg
from psycopg import errors

DSN = os.environ["PGSLUICE_DSN"]
CLIENTS = int(os.environ.get("CLIENTS", "20"))
ROUNDS = int(os.environ.get("ROUNDS", "40"))


def connect():
    return psycopg.connect(DSN, prepare_threshold=0, autocommit=True)


def worker(i):
    with connect() as conn:
        for r in range(ROUNDS):
            row = conn.execute("SELECT %s::int8 * 2, %s::text", (r, f"c{i}")).fetchone()
            assert row == (r * 2, f"c{i}"), row
            with conn.transaction():
                conn.execute(
                    "INSERT INTO items (client, n, label) VALUES (%s, %s, %s)",
                    (i, r, f"c{i} r{r} \u00e9"),
                )
                n = conn.execute(
                    "SELECT count(*) FROM items WHERE client = %s", (i,)
                ).fetchone()[0]
                assert n == r + 1, (n, r)

        # executemany: one prepared INSERT, many Bind/Execute.
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO many (client, k) VALUES (%s, %s)",
                [(i, k) for k in range(200)],
            )
        got = conn.execute(
            "SELECT count(*), sum(k) FROM many WHERE client = %s", (i,)
        ).fetchone()
        assert got == (200, sum(range(200))), got

        # Pipeline mode: many statements, one round trip.
        with conn.pipeline():
            curs = [
                conn.execute("SELECT %s::int + %s::int, %s::text", (i, k, str(k)))
                for k in range(100)
            ]
        for k, cur in enumerate(curs):
            assert cur.fetchone() == (i + k, str(k))

        # An error in the middle of a pipeline: the statements up to the
        # Sync run in one implicit transaction, so the one before the error
        # is rolled back and the one after it is skipped; the connection
        # is fine afterwards (as straight to PostgreSQL).
        try:
            with conn.pipeline():
                conn.execute(
                    "INSERT INTO items (client, n, label) VALUES (%s, %s, %s)",
                    (i, -1, "before"),
                )
                conn.execute("SELECT 1 / %s::int", (0,))
                conn.execute(
                    "INSERT INTO items (client, n, label) VALUES (%s, %s, %s)",
                    (i, -2, "after"),
                )
        except errors.DivisionByZero:
            pass
        else:
            raise AssertionError("the pipeline error was not reported")
        labels = conn.execute(
            "SELECT label FROM items WHERE client = %s AND n < 0 ORDER BY n DESC", (i,)
        ).fetchall()
        assert labels == [], labels

        # COPY in and out.
        with conn.cursor() as cur:
            with cur.copy("COPY copied (client, k, t) FROM STDIN") as copy:
                for k in range(2000):
                    copy.write_row((i, k, f"row {k}\ttab"))
            assert cur.rowcount == 2000, cur.rowcount
            rows = []
            with cur.copy(
                "COPY (SELECT k, t FROM copied WHERE client = %s ORDER BY k) TO STDOUT",
                (i,),
            ) as copy:
                for row in copy.rows():
                    rows.append(row)
            assert len(rows) == 2000, len(rows)
            assert rows[1999] == ("1999", "row 1999\ttab"), rows[1999]

        # Still the same named statements, after all of that.
        row = conn.execute("SELECT %s::int8 * 2, %s::text", (21, "end")).fetchone()
        assert row == (42, "end"), row


def main():
    with connect() as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS items (client int, n int, label text)"
        )
        conn.execute("CREATE TABLE IF NOT EXISTS many (client int, k int)")
        conn.execute("CREATE TABLE IF NOT EXISTS copied (client int, k int, t text)")
    failures = []

    def run(i):
        try:
            worker(i)
        except BaseException as e:  # reported below, with the client number
            import traceback

            failures.append(f"client {i}: {traceback.format_exc()}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)
    with connect() as conn:
        total = conn.execute("SELECT count(*) FROM items WHERE n >= 0").fetchone()[0]
        assert total == CLIENTS * ROUNDS, total
    print(f"psycopg {psycopg.__version__}: {CLIENTS} clients x {ROUNDS} rounds ok")


if __name__ == "__main__":
    main()
