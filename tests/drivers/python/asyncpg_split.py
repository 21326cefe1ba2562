"""asyncpg through pgsluice with read/write splitting (tests/it/split_drivers.rs).

asyncpg prepares every query (its statement cache) and uses explicit
prepared statements: reads must come from a standby, writes and
transactions from the primary, and with read_your_writes a read right after
a write sees it. Exits non-zero on any wrong result.
"""

import asyncio
import os

import asyncpg

DSN = os.environ["PGSLUICE_DSN"]
CLIENTS = int(os.environ.get("CLIENTS", "8"))
ROUNDS = int(os.environ.get("ROUNDS", "20"))


async def worker(i):
    conn = await asyncpg.connect(DSN)
    try:
        read = await conn.prepare("SELECT pg_is_in_recovery(), $1::int")
        # Reads first: no write of this client yet, so a standby's. asyncpg
        # prepares with Describe and Flush, and sends the Sync with the
        # first execution: that group is not whole when routed, so it (and
        # only it) goes to the primary.
        for r in range(ROUNDS):
            standby, n = await read.fetchrow(r)
            assert n == r and (standby or r == 0), (standby, n)
        for r in range(ROUNDS):
            primary = await conn.fetchval(
                "INSERT INTO split_t VALUES ($1, $2) RETURNING pg_is_in_recovery()", i, r
            )
            assert not primary
            seen = await conn.fetchval(
                "SELECT count(*) FROM split_t WHERE client = $1 AND n = $2", i, r
            )
            assert seen == 1, seen
            async with conn.transaction():
                assert not await conn.fetchval("SELECT pg_is_in_recovery()")
    finally:
        await conn.close()


async def main():
    await asyncio.gather(*(worker(i) for i in range(CLIENTS)))
    print(f"asyncpg split: {CLIENTS} clients x {ROUNDS} rounds ok")


if __name__ == "__main__":
    asyncio.run(main())
