// node-postgres through pgsluice in transaction mode (tests/it/driver_scripts.rs).
//
// Named queries ({ name, text, values }) are prepared once per connection
// and then only bound, so with more connections than server connections
// each statement must follow its client to other servers. Also: queries
// queued on one connection, transactions, errors, COPY in and out.
// Exits non-zero on any wrong result.
'use strict';

const assert = require('node:assert/strict');
const { pipeline } = require('node:stream/promises');
const { Readable, Writable } = require('node:stream');
const { Client } = require('pg');
const copy = require('pg-copy-streams');

const DSN = process.env.PGSLUICE_DSN;
const CLIENTS = Number(process.env.CLIENTS || 20);
const ROUNDS = Number(process.env.ROUNDS || 40);

async function connect() {
  const c = new Client({ connectionString: DSN });
  await c.connect();
  return c;
}

const double = (v, t) => ({
  name: 'double',
  text: 'SELECT $1::int8 * 2 AS v, $2::text AS t',
  values: [v, t],
});

async function worker(i) {
  const c = await connect();
  try {
    for (let r = 0; r < ROUNDS; r++) {
      const res = await c.query(double(r, `c${i}`));
      assert.deepEqual(res.rows, [{ v: String(r * 2), t: `c${i}` }]);
      await c.query('BEGIN');
      await c.query({
        name: 'insert',
        text: 'INSERT INTO items (client, n, label) VALUES ($1, $2, $3)',
        values: [i, r, `c${i} r${r} \u00e9`],
      });
      const n = await c.query({
        name: 'count',
        text: 'SELECT count(*)::int AS n FROM items WHERE client = $1',
        values: [i],
      });
      assert.equal(n.rows[0].n, r + 1);
      await c.query('COMMIT');
    }

    // Many named queries queued on one connection at once.
    const all = await Promise.all(
      Array.from({ length: 100 }, (_, k) => c.query(double(k, `p${k}`))),
    );
    all.forEach((res, k) => assert.deepEqual(res.rows, [{ v: String(2 * k), t: `p${k}` }]));

    // An error, then the same named statements again.
    await assert.rejects(
      c.query({ name: 'div', text: 'SELECT 1 / $1::int', values: [0] }),
      (e) => e.code === '22012',
    );
    const again = await c.query({ name: 'div', text: 'SELECT 1 / $1::int', values: [1] });
    assert.equal(again.rows[0]['?column?'], 1);

    // COPY in and out.
    const rows = Array.from({ length: 2000 }, (_, k) => `${i}\t${k}\trow ${k}\n`);
    await pipeline(Readable.from(rows), c.query(copy.from('COPY copied (client, k, t) FROM STDIN')));
    const chunks = [];
    await pipeline(
      c.query(copy.to(`COPY (SELECT k, t FROM copied WHERE client = ${i} ORDER BY k) TO STDOUT`)),
      new Writable({
        write(chunk, _enc, done) {
          chunks.push(chunk);
          done();
        },
      }),
    );
    const lines = Buffer.concat(chunks).toString().split('\n').filter((l) => l);
    assert.equal(lines.length, 2000);
    assert.equal(lines[1999], '1999\trow 1999');

    const end = await c.query(double(21, 'end'));
    assert.deepEqual(end.rows, [{ v: '42', t: 'end' }]);
  } finally {
    await c.end();
  }
}

async function main() {
  const setup = await connect();
  await setup.query(
    'CREATE TABLE items (client int, n int, label text);' +
      'CREATE TABLE copied (client int, k int, t text)',
  );
  await setup.end();
  const results = await Promise.allSettled(
    Array.from({ length: CLIENTS }, (_, i) => worker(i)),
  );
  const failed = results
    .map((r, i) => [i, r])
    .filter(([, r]) => r.status === 'rejected');
  for (const [i, r] of failed) console.error(`client ${i}:`, r.reason);
  if (failed.length) process.exit(1);
  const check = await connect();
  const total = await check.query('SELECT count(*)::int AS n FROM items');
  await check.end();
  assert.equal(total.rows[0].n, CLIENTS * ROUNDS);
  console.log(`node-postgres: ${CLIENTS} clients x ${ROUNDS} rounds ok`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
