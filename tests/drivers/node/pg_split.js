// node-postgres through pgsluice with read/write splitting
// (tests/it/split_drivers.rs). Named queries are prepared once per
// connection and then only bound: reads must come from a standby, writes
// and transactions from the primary, and with read_your_writes a read right
// after a write sees it. Exits non-zero on any wrong result.
'use strict';

const assert = require('node:assert/strict');
const { Client } = require('pg');

const DSN = process.env.PGSLUICE_DSN;
const CLIENTS = Number(process.env.CLIENTS || 8);
const ROUNDS = Number(process.env.ROUNDS || 20);

async function worker(i) {
  const c = new Client({ connectionString: DSN });
  await c.connect();
  try {
    // Reads first: no write of this client yet, so a standby's.
    for (let r = 0; r < ROUNDS; r++) {
      const read = await c.query({
        name: 'read',
        text: 'SELECT pg_is_in_recovery() AS standby, $1::int AS n',
        values: [r],
      });
      assert.deepEqual(read.rows, [{ standby: true, n: r }]);
    }
    // Then writes: each read after one sees it (read_your_writes).
    for (let r = 0; r < ROUNDS; r++) {
      const write = await c.query({
        name: 'write',
        text: 'INSERT INTO split_t VALUES ($1, $2) RETURNING pg_is_in_recovery() AS standby',
        values: [i, r],
      });
      assert.equal(write.rows[0].standby, false);
      const seen = await c.query({
        name: 'seen',
        text: 'SELECT count(*)::int AS n FROM split_t WHERE client = $1 AND n = $2',
        values: [i, r],
      });
      assert.equal(seen.rows[0].n, 1);
      await c.query('BEGIN');
      const inTx = await c.query('SELECT pg_is_in_recovery() AS standby');
      assert.equal(inTx.rows[0].standby, false);
      await c.query('COMMIT');
    }
  } finally {
    await c.end();
  }
}

(async () => {
  const workers = [];
  for (let i = 0; i < CLIENTS; i++) workers.push(worker(i));
  await Promise.all(workers);
  console.log(`node-postgres split: ${CLIENTS} clients x ${ROUNDS} rounds ok`);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
