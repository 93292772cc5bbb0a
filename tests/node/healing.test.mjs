// Healing through POST /sql: a table of tenant a dropped behind pgfleet's back (through the
// superuser URL) is recreated by the next request that needs it, the request is re-run and
// succeeds, and its response carries `Pgfleet-Healed: 1`. Requests that did not heal carry no
// such header, and other tenants are not touched.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  adminUrlFor,
  assertDbError,
  assertStatus,
  ident,
  rawSql,
  rejection,
  sqlFor,
  TEST_OPTS,
  tenants,
  uniq,
  withPg,
} from './lib.mjs';

const { a, b } = tenants;
const sqlA = sqlFor(a);
const sqlB = sqlFor(b);

/** Drops one of tenant a's tables as the superuser. */
async function dropTableOfA(table) {
  await withPg(adminUrlFor(a.database), async (c) => {
    await c.query("set lock_timeout = '5s'");
    await c.query(`drop table ${ident(a.schema)}.${ident(table)} cascade`);
    const { rows } = await c.query('select to_regclass($1)::text as t', [`${ident(a.schema)}.${ident(table)}`]);
    assert.equal(rows[0].t, null, `${table} was dropped`);
  });
}

/** The columns of one of a tenant's tables, as its own direct connection sees them. */
const columnsOf = (tenant, table) =>
  withPg(tenant.direct_url, async (c) =>
    (
      await c.query(
        'select column_name, data_type, udt_name, is_nullable from information_schema.columns where table_schema = current_schema() and table_name = $1 order by ordinal_position',
        [table],
      )
    ).rows,
  );

// b's data in the table dropped in a: it must survive a's healing.
let bUser;
let bThread;
before(async () => {
  const id = uniq('heal-b');
  [bUser] = await sqlB`insert into users (external_id, email) values (${id}, ${id + '@example.com'}) returning id`;
  [bThread] = await sqlB`insert into chat_threads (user_id, title) values (${bUser.id}, 'b thread') returning id`;
  await sqlB`insert into chat_messages (thread_id, role, content) values (${bThread.id}, 'user', 'b survives')`;
});
after(async () => {
  if (bUser) await sqlB`delete from users where id = ${bUser.id}`;
});

test('a request that needs no healing carries no Pgfleet-Healed header', TEST_OPTS, async () => {
  const res = await rawSql({ body: { query: 'select count(*) from chat_messages', params: [] } });
  assertStatus(res, 200);
  assert.equal(res.headers.get('pgfleet-healed'), null);
});

test('a dropped chat_messages is recreated by the next query on it, which succeeds with Pgfleet-Healed: 1', { timeout: 60_000 }, async () => {
  const columnsBefore = await columnsOf(a, 'chat_messages');
  await dropTableOfA('chat_messages');

  const res = await rawSql({ body: { query: 'select count(*)::int as n from chat_messages', params: [] } });
  assertStatus(res, 200, undefined, 'the query on the dropped table');
  assert.equal(res.headers.get('pgfleet-healed'), '1', 'the healed response carries Pgfleet-Healed: 1');
  assert.deepEqual(res.json.rows, [['0']], 'the table is back, empty (its rows went with the DROP)');

  assert.deepEqual(await columnsOf(a, 'chat_messages'), columnsBefore, 'recreated with the same columns');

  // The next request is an ordinary one again.
  const next = await rawSql({ body: { query: 'select count(*) from chat_messages', params: [] } });
  assertStatus(next, 200);
  assert.equal(next.headers.get('pgfleet-healed'), null, 'only the healing request carries the header');
});

test('the recreated table works with its constraints: insert, foreign key, enum, vector', TEST_OPTS, async () => {
  const id = uniq('heal-a');
  const [user] = await sqlA`insert into users (external_id, email) values (${id}, ${id + '@example.com'}) returning id`;
  try {
    const [thread] = await sqlA`insert into chat_threads (user_id) values (${user.id}) returning id`;
    const vec = `[${new Array(384).fill(0.5).join(',')}]`;
    const [msg] = await sqlA`insert into chat_messages (thread_id, role, content, embedding) values (${thread.id}, 'assistant', 'healed', ${vec}) returning role, content`;
    assert.deepEqual(msg, { role: 'assistant', content: 'healed' });
    const fk = await rejection(sqlA`insert into chat_messages (thread_id, role, content) values (gen_random_uuid(), 'user', 'orphan')`);
    assertDbError(fk, '23503', 'the foreign key to chat_threads is back');
  } finally {
    await sqlA`delete from users where id = ${user.id}`;
  }
});

test("healing a's table leaves b's table and rows alone", TEST_OPTS, async () => {
  const rows = await sqlB`select content from chat_messages where thread_id = ${bThread.id}`;
  assert.deepEqual(rows, [{ content: 'b survives' }]);
});

test('a dropped documents table is healed under a driver query (vector search) transparently', { timeout: 60_000 }, async () => {
  await dropTableOfA('documents');
  const query = `[${new Array(384).fill(0.25).join(',')}]`;
  const rows = await sqlA`select id, embedding <=> ${query} as distance from documents order by embedding <=> ${query} limit 5`;
  assert.deepEqual(rows, []);
  const [{ t }] = await sqlA`select to_regclass('documents')::text as t`;
  assert.ok(t, 'documents exists again');
});

test('a dropped table is healed inside a transaction batch, and the whole batch re-runs', { timeout: 60_000 }, async () => {
  await dropTableOfA('type_samples');
  const [inserted, counted] = await sqlA.transaction([
    sqlA`insert into type_samples (m, p) values ('happy', 1) returning m, p`,
    sqlA`select count(*)::int as n from type_samples`,
  ]);
  assert.deepEqual(inserted, [{ m: 'happy', p: 1 }]);
  assert.deepEqual(counted, [{ n: 1 }], 'the insert ran once, in the re-run');
  await sqlA`delete from type_samples`;
});
