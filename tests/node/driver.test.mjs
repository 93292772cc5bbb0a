// The Neon serverless driver's everyday API against pgfleet's POST /sql: tagged templates,
// sql.query, transactions (isolation level, read-only, deferrable, atomicity), fullResults and
// arrayMode. Tenant a, app token.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';

import {
  assertDbError,
  rejection,
  sqlFor,
  TEST_OPTS,
  tenants,
  uniq,
  withPg,
} from './lib.mjs';

const sql = sqlFor(tenants.a);
const created = [];

after(async () => {
  // Remove the users this file created (through the tenant's own direct connection).
  if (created.length > 0) {
    await withPg(tenants.a.direct_url, (c) => c.query('delete from users where external_id = any($1)', [created]));
  }
});

test('a tagged-template query sends its values as parameters and parses the typed result', TEST_OPTS, async () => {
  const rows = await sql`select ${20}::int + ${22}::int as sum, ${'it\'s $1'}::text as s, ${null}::int as n`;
  assert.deepEqual(rows, [{ sum: 42, s: "it's $1", n: null }]);
});

test('sql.query(text, params) runs with $n placeholders', TEST_OPTS, async () => {
  const rows = await sql.query('select $1::text as t, $2::int * 2 as n, $3::boolean as b', ['hi', 21, true]);
  assert.deepEqual(rows, [{ t: 'hi', n: 42, b: true }]);
});

test('a query that returns no rows still answers [] and reports its fields with fullResults', TEST_OPTS, async () => {
  assert.deepEqual(await sql`select 1 as x where false`, []);
  const full = await sql.query('select 1::int as x where false', [], { fullResults: true });
  assert.equal(full.rowCount, 0);
  assert.equal(full.command, 'SELECT');
  assert.deepEqual(full.fields.map((f) => [f.name, f.dataTypeID]), [['x', 23]]);
});

test('fullResults: true gives fields (name, type OID, size), command and rowCount', TEST_OPTS, async () => {
  const full = await sql.query(
    "select g::int4 as n, 'x' || g as label, g::int8 as big from generate_series(1, 3) g",
    [],
    { fullResults: true },
  );
  assert.equal(full.command, 'SELECT');
  assert.equal(full.rowCount, 3);
  assert.deepEqual(
    full.fields.map((f) => ({ name: f.name, dataTypeID: f.dataTypeID, dataTypeSize: f.dataTypeSize, format: f.format })),
    [
      { name: 'n', dataTypeID: 23, dataTypeSize: 4, format: 'text' },
      { name: 'label', dataTypeID: 25, dataTypeSize: -1, format: 'text' },
      { name: 'big', dataTypeID: 20, dataTypeSize: 8, format: 'text' },
    ],
  );
  assert.deepEqual(full.rows, [
    { n: 1, label: 'x1', big: '1' },
    { n: 2, label: 'x2', big: '2' },
    { n: 3, label: 'x3', big: '3' },
  ]);
});

test('fullResults reports INSERT, UPDATE and DELETE commands with their row counts', TEST_OPTS, async () => {
  const ids = [uniq('drv-cmd'), uniq('drv-cmd')];
  created.push(...ids);
  const ins = await sql.query(
    "insert into users (external_id, email) select x, x || '@example.com' from unnest($1::text[]) x",
    [ids],
    { fullResults: true },
  );
  assert.equal(ins.command, 'INSERT');
  assert.equal(ins.rowCount, 2);
  assert.deepEqual(ins.rows, []);
  const upd = await sql.query("update users set display_name = 'D' where external_id = any($1)", [ids], { fullResults: true });
  assert.equal(upd.command, 'UPDATE');
  assert.equal(upd.rowCount, 2);
  const del = await sql.query('delete from users where external_id = $1', [ids[0]], { fullResults: true });
  assert.equal(del.command, 'DELETE');
  assert.equal(del.rowCount, 1);
});

test('arrayMode: true returns rows as arrays, also with duplicate column names', TEST_OPTS, async () => {
  const rows = await sql.query('select 1::int as x, 2::int as x, $1::text as y', ['z'], { arrayMode: true });
  assert.deepEqual(rows, [[1, 2, 'z']]);
  const sqlArrays = sqlFor(tenants.a, { arrayMode: true, fullResults: true });
  const full = await sqlArrays`select ${'a'}::text as t, 7::int as n`;
  assert.equal(full.rowAsArray, true);
  assert.deepEqual(full.rows, [['a', 7]]);
});

test('transaction([...]) runs the queries in order in one transaction and returns each result', TEST_OPTS, async () => {
  const [one, two, same] = await sql.transaction([
    sql`select ${1}::int as n, txid_current() as xid`,
    sql.query('select $1::int as n, txid_current() as xid', [2]),
    sql`select txid_current() = txid_current() as same`,
  ]);
  assert.equal(one[0].n, 1);
  assert.equal(two[0].n, 2);
  assert.equal(one[0].xid, two[0].xid, 'both queries ran in the same transaction');
  assert.deepEqual(same, [{ same: true }]);
});

test('transaction(fn) builds the queries from the transaction function', TEST_OPTS, async () => {
  const results = await sql.transaction((txn) => [txn`select ${'p'}::text as v`, txn`select 2::int as v`]);
  assert.deepEqual(results, [[{ v: 'p' }], [{ v: 2 }]]);
});

test('transaction options set the isolation level, read-only and deferrable of the transaction', TEST_OPTS, async () => {
  const levels = {
    ReadUncommitted: 'read uncommitted',
    ReadCommitted: 'read committed',
    RepeatableRead: 'repeatable read',
    Serializable: 'serializable',
  };
  for (const [isolationLevel, shown] of Object.entries(levels)) {
    for (const readOnly of [true, false]) {
      const [[iso], [ro]] = await sql.transaction(
        [sql`select current_setting('transaction_isolation') as v`, sql`select current_setting('transaction_read_only') as v`],
        { isolationLevel, readOnly },
      );
      assert.equal(iso.v, shown, `isolationLevel ${isolationLevel}`);
      assert.equal(ro.v, readOnly ? 'on' : 'off', `readOnly ${readOnly} with ${isolationLevel}`);
    }
  }
  const [[def]] = await sql.transaction([sql`select current_setting('transaction_deferrable') as v`], {
    isolationLevel: 'Serializable',
    readOnly: true,
    deferrable: true,
  });
  assert.equal(def.v, 'on', 'deferrable: true');
});

test('a Serializable read-only transaction can read', TEST_OPTS, async () => {
  const [rows, count] = await sql.transaction([sql`select 41 + 1 as answer`, sql`select count(*)::int as n from users`], {
    isolationLevel: 'Serializable',
    readOnly: true,
  });
  assert.deepEqual(rows, [{ answer: 42 }]);
  assert.equal(typeof count[0].n, 'number');
});

test('a write in a read-only transaction fails with 25006 and changes nothing', TEST_OPTS, async () => {
  const id = uniq('drv-ro');
  const err = await rejection(
    sql.transaction([sql`insert into users (external_id, email) values (${id}, ${id + '@example.com'})`], {
      isolationLevel: 'Serializable',
      readOnly: true,
    }),
  );
  assertDbError(err, '25006', 'insert in a read-only transaction');
  assert.deepEqual(await sql`select count(*)::int as n from users where external_id = ${id}`, [{ n: 0 }]);
});

test('a failing query rolls back the whole transaction batch', TEST_OPTS, async () => {
  const id = uniq('drv-atomic');
  created.push(id);
  const err = await rejection(
    sql.transaction([
      sql`insert into users (external_id, email) values (${id}, ${id + '@example.com'})`,
      sql`select 1 / 0 as boom`,
    ]),
  );
  assertDbError(err, '22012', 'division by zero in the second query');
  assert.deepEqual(await sql`select count(*)::int as n from users where external_id = ${id}`, [{ n: 0 }], 'the insert was rolled back');
});

test('a transaction batch with fullResults and per-query arrayMode answers each as asked', TEST_OPTS, async () => {
  const [a, b] = await sql.transaction(
    [sql.query('select 1::int as n', [], { arrayMode: true }), sql`select 'x'::text as s`],
    { fullResults: true },
  );
  assert.deepEqual(a.rows, [[1]]);
  assert.equal(a.command, 'SELECT');
  assert.deepEqual(b.rows, [{ s: 'x' }]);
  assert.equal(b.rowCount, 1);
});

test('the same sql function serves many sequential requests (no state between them)', TEST_OPTS, async () => {
  for (let i = 0; i < 20; i++) {
    assert.deepEqual(await sql`select ${i}::int as i`, [{ i }]);
  }
});
