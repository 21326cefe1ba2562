"""asyncpg through pgsluice in transaction mode (tests/it/driver_scripts.rs).

asyncpg prepares every query as a named statement and keeps it in a
per-connection cache; explicit prepared statements (conn.prepare) are
reused across transactions. With more connections than server connections,
each statement must follow its client to other servers. Also: executemany
(pipelined Bind/Execute), errors, COPY in and out.
Exits non-zero (with a traceback) on any wrong result.
"""

import asyncio
import os
import sys

import asyncpg

DSN = os.environ["PGSLUICE_DSN"]
CLIENTS = int(os.environ.get("CLIENTS", "20"))
ROUNDS = int(os.environ.get("ROUNDS", "40"))


async def worker(i):
    conn = await asyncpg.connect(DSN)
    try:
        double = await conn.prepare("SELECT $1::int8 * 2 AS v, $2::text AS t")
        for r in range(ROUNDS):
            row = await double.fetchrow(r, f"c{i}")
            assert (row["v"], row["t"]) == (r * 2, f"c{i}"), row
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO items (client, n, label) VALUES ($1, $2, $3)",
                    i,
                    r,
                    f"c{i} r{r}",
                )
                n = await conn.fetchval(
                    "SELECT count(*) FROM items WHERE client = $1", i
                )
                assert n == r + 1, (n, r)
        await conn.executemany(
            "INSERT INTO many (client, k) VALUES ($1, $2)",
            [(i, k) for k in range(200)],
        )
        got = await conn.fetchrow(
            "SELECT count(*) AS c, sum(k) AS s FROM many WHERE client = $1", i
        )
        assert (got["c"], got["s"]) == (200, sum(range(200))), got
        try:
            await conn.fetchval("SELECT 1 / $1::int", 0)
        except asyncpg.exceptions.DivisionByZeroError:
            pass
        else:
            raise AssertionError("no division_by_zero")
        await conn.copy_records_to_table(
            "copied",
            records=[(i, k, f"row {k}") for k in range(2000)],
            columns=["client", "k", "t"],
        )
        out = []

        async def sink(chunk):
            out.append(chunk)

        await conn.copy_from_query(
            "SELECT k, t FROM copied WHERE client = $1 ORDER BY k", i, output=sink
        )
        lines = b"".join(out).decode().splitlines()
        assert len(lines) == 2000 and lines[-1] == "1999\trow 1999", lines[-1:]
        row = await double.fetchrow(21, "end")
        assert (row["v"], row["t"]) == (42, "end"), row
    finally:
        await conn.close()


async def main():
    conn = await asyncpg.connect(DSN)
    await conn.execute(
        "CREATE TABLE items (client int, n int, label text);"
        "CREATE TABLE many (client int, k int);"
        "CREATE TABLE copied (client int, k int, t text)"
    )
    await conn.close()
    results = await asyncio.gather(
        *(worker(i) for i in range(CLIENTS)), return_exceptions=True
    )
    failed = [(i, r) for i, r in enumerate(results) if isinstance(r, BaseException)]
    for i, e in failed:
        print(f"client {i}: {e!r}", file=sys.stderr)
    if failed:
        raise failed[0][1]
    conn = await asyncpg.connect(DSN)
    total = await conn.fetchval("SELECT count(*) FROM items")
    await conn.close()
    assert total == CLIENTS * ROUNDS, total
    print(f"asyncpg {asyncpg.__version__}: {CLIENTS} clients x {ROUNDS} rounds ok")


if __name__ == "__main__":
    asyncio.run(main())
