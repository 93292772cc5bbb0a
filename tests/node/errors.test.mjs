// PostgreSQL errors through POST /sql: an HTTP 400 whose JSON body the driver turns into a
// NeonDbError carrying PostgreSQL's fields (code, position, detail, constraint, ...), the same
// fields a direct connection reports; and pgfleet's own limits reported the same way: statement
// timeout (57014) and response size (54000). Tenant a, app token.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { assertDbError, pgConnect, rejection, sqlFor, TEST_OPTS, tenants, uniq } from './lib.mjs';

const sql = sqlFor(tenants.a);
let direct;

before(async () => {
  direct = await pgConnect(tenants.a.direct_url);
});
after(async () => {
  await direct?.end();
});

// The error fields PostgreSQL sends that do not depend on the connection.
const FIELDS = ['message', 'code', 'severity', 'detail', 'hint', 'position', 'schema', 'table', 'column', 'dataType', 'constraint', 'routine'];
const pick = (err, ignore) => Object.fromEntries(FIELDS.filter((k) => !ignore.includes(k)).map((k) => [k, err[k] ?? undefined]));

/**
 * Runs the failing statement both ways and asserts that the errors carry the same fields
 * (but those in `ignore`, e.g. a detail that quotes a generated id).
 */
async function sameErrorAsDirect(text, params = [], ignore = []) {
  const viaNeon = await rejection(sql.query(text, params), `${text} through /sql`);
  const viaPg = await rejection(direct.query(text, params), `${text} through a direct connection`);
  assert.deepEqual(pick(viaNeon, ignore), pick(viaPg, ignore), `error fields of: ${text}`);
  return viaNeon;
}

test('a relation that does not exist fails with 42P01 and its position, like a direct connection', TEST_OPTS, async () => {
  // Not a table of the target schema: healing has nothing to recreate and must not mask the error.
  const err = await sameErrorAsDirect('select * from pgfleet_no_such_table_4711');
  assertDbError(err, '42P01');
  assert.match(err.message, /pgfleet_no_such_table_4711/);
  assert.equal(String(err.position), '15');
});

test('a syntax error fails with 42601 and the position of the offending token', TEST_OPTS, async () => {
  const err = await sameErrorAsDirect('select 1 2');
  assertDbError(err, '42601');
  assert.equal(String(err.position), '10');
  assert.match(err.message, /syntax error/);
});

test('a unique violation fails with 23505 and names the table, the constraint and the key', TEST_OPTS, async () => {
  const id = uniq('err-dup');
  await sql`insert into users (external_id, email) values (${id}, ${id + '@example.com'})`;
  try {
    const text = 'insert into users (external_id, email) values ($1, $2)';
    const err = await sameErrorAsDirect(text, [id, `other-${id}@example.com`]);
    assertDbError(err, '23505');
    assert.equal(err.table, 'users');
    assert.equal(err.constraint, 'users_external_id_key');
    assert.match(err.detail, new RegExp(`\\(external_id\\)=\\(${id}\\) already exists`));
    assert.equal(err.schema, tenants.a.schema);
  } finally {
    await sql`delete from users where external_id = ${id}`;
  }
});

test('invalid input for a type fails with 22P02', TEST_OPTS, async () => {
  assertDbError(await sameErrorAsDirect("select 'abc'::int"), '22P02');
  assertDbError(await sameErrorAsDirect('select $1::int', ['12x']), '22P02');
});

test('a NOT NULL violation fails with 23502 and names the column', TEST_OPTS, async () => {
  // The detail quotes the failing row: its identity and created_at differ between the two runs.
  const err = await sameErrorAsDirect('insert into users (external_id, email) values ($1, null)', [uniq('err-null')], ['detail']);
  assertDbError(err, '23502');
  assert.equal(err.column, 'email');
  assert.match(err.detail, /^Failing row contains/);
});

test('a foreign-key violation fails with 23503', TEST_OPTS, async () => {
  const err = await sameErrorAsDirect("insert into chat_threads (user_id, title) values (-1, 'orphan')");
  assertDbError(err, '23503');
  assert.equal(err.constraint, 'chat_threads_user_id_fkey');
});

test('a RAISE with detail and hint keeps both', TEST_OPTS, async () => {
  // DO runs with the tenant's own rights (no object is created).
  const text = "do $$ begin raise exception 'custom failure' using errcode = 'P0001', detail = 'the detail', hint = 'the hint'; end $$";
  const err = await sameErrorAsDirect(text);
  assertDbError(err, 'P0001');
  assert.equal(err.message, 'custom failure');
  assert.equal(err.detail, 'the detail');
  assert.equal(err.hint, 'the hint');
});

test('a request after a failed one works (an error poisons nothing)', TEST_OPTS, async () => {
  for (let i = 0; i < 3; i++) {
    await rejection(sql`select 1 / 0`);
    assert.deepEqual(await sql`select ${i}::int as i`, [{ i }]);
  }
});

test('a statement running past --sql-statement-timeout (2 s) fails with 57014, in about 2 s', TEST_OPTS, async () => {
  const started = Date.now();
  const err = await rejection(sql`select pg_sleep(5)`);
  const elapsed = Date.now() - started;
  assertDbError(err, '57014', 'pg_sleep(5)');
  assert.ok(elapsed >= 1500, `cancelled after ${elapsed} ms: earlier than the 2 s timeout`);
  assert.ok(elapsed < 4500, `cancelled after ${elapsed} ms: the 2 s timeout was not enforced`);
  // The tenant is usable right after.
  assert.deepEqual(await sql`select 1 as ok`, [{ ok: 1 }]);
});

test('a statement timeout inside a transaction batch fails the batch with 57014', TEST_OPTS, async () => {
  const err = await rejection(sql.transaction([sql`select 1`, sql`select pg_sleep(5)`]));
  assertDbError(err, '57014', 'pg_sleep(5) in a batch');
});

test('a SET statement_timeout in the request cannot lift the server-side limit', TEST_OPTS, async () => {
  // Each request runs on its own; within one batch the tenant may try to raise its own timeout.
  const started = Date.now();
  const err = await rejection(sql.transaction([sql`set local statement_timeout = 0`, sql`select pg_sleep(5)`]));
  // Either the SET is refused or the sleep is cancelled: what must not happen is a 5 s sleep.
  assert.ok(err, 'the batch failed');
  assert.ok(Date.now() - started < 4500, `the request ran ${Date.now() - started} ms: past the 2 s limit`);
});

test('a response over --sql-max-response (1 MiB) fails with 54000: one large value', TEST_OPTS, async () => {
  const err = await rejection(sql`select repeat('x', 2 * 1024 * 1024) as big`);
  assertDbError(err, '54000', '2 MiB value');
});

test('a response over --sql-max-response (1 MiB) fails with 54000: many rows', TEST_OPTS, async () => {
  const err = await rejection(sql`select g, repeat('y', 100) as pad from generate_series(1, 20000) g`);
  assertDbError(err, '54000', '20000 rows of ~110 bytes');
});

test('a response just under the limit is answered in full', TEST_OPTS, async () => {
  const rows = await sql`select repeat('z', 512 * 1024) as half`;
  assert.equal(rows[0].half.length, 512 * 1024);
});
