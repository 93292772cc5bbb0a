// The result cache through POST /sql and the real Neon driver: a read opted in with a leading
// `/* pgfleet:cache max-age=… */` comment is answered from memory (`Pgfleet-Cache: hit`) until a
// write made through pgfleet may have changed what it read, including through a foreign key's
// ON DELETE CASCADE and through a trigger; results never cross tenants or callers; a write in a
// transaction drops them when it commits; and concurrent writers and readers find no read older
// than a write that had finished.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { appUrl, assertStatus, goodJwt, jwtUrl, rawSql, sqlFor, sqlWithJwt, TEST_OPTS, tenants, uniq } from './lib.mjs';

const { a, b } = tenants;
const sqlA = sqlFor(a);
const sqlB = sqlFor(b);
const CACHE = '/* pgfleet:cache max-age=60 */ ';
const MESSAGES = `${CACHE}select count(*)::int as n from chat_messages where thread_id = $1`;

/**
 * [the Pgfleet-Cache header, the first value of the first row as a number (null without rows)]
 * of one request of the app token, as the driver sends it (array mode, raw text).
 */
async function cachedRead(tenant, query, params = []) {
  const res = await rawSql({ body: { query, params }, connString: appUrl(tenant.key) });
  assertStatus(res, 200, undefined, query);
  const first = res.json.rows[0];
  return [res.headers.get('pgfleet-cache'), first === undefined ? null : Number(first[0])];
}

async function threadWithMessages(sql, n) {
  const run = uniq('cache');
  const [user] = await sql`insert into users (external_id, email) values (${run}, ${run + '@example.com'}) returning id`;
  const [thread] = await sql`insert into chat_threads (user_id, title) values (${user.id}, ${run}) returning id`;
  for (let i = 0; i < n; i++) {
    await sql`insert into chat_messages (thread_id, role, content) values (${thread.id}, 'user', ${'m' + i})`;
  }
  return { user: user.id, thread: thread.id };
}

test('a cached read is served until a write through pgfleet changes what it read, cascades included', TEST_OPTS, async () => {
  const { user, thread } = await threadWithMessages(sqlA, 2);
  assert.deepEqual(await cachedRead(a, MESSAGES, [thread]), ['miss', 2]);
  assert.deepEqual(await cachedRead(a, MESSAGES, [thread]), ['hit', 2]);
  // The driver gets the same answer, and then sees its own writes.
  assert.deepEqual(await sqlA.query(MESSAGES, [thread]), [{ n: 2 }]);
  await sqlA`insert into chat_messages (thread_id, role, content) values (${thread}, 'assistant', 'hello')`;
  assert.deepEqual(await sqlA.query(MESSAGES, [thread]), [{ n: 3 }]);
  assert.deepEqual(await cachedRead(a, MESSAGES, [thread]), ['hit', 3]);
  // Deleting the user cascades to its threads and from them to their messages.
  await sqlA`delete from users where id = ${user}`;
  assert.deepEqual(await cachedRead(a, MESSAGES, [thread]), ['miss', 0]);
});

test('a write that fires a trigger drops the cached reads of what the trigger wrote', TEST_OPTS, async () => {
  const audit = `${CACHE}select count(*)::int as n from sample_audit`;
  const [, before] = await cachedRead(a, audit);
  assert.deepEqual(await cachedRead(a, audit), ['hit', before]);
  await sqlA`insert into type_samples (m, p) values ('happy', 7)`;
  assert.deepEqual(await cachedRead(a, audit), ['miss', before + 1]);
});

test('results stay with their tenant and their kind of caller', TEST_OPTS, async () => {
  const title = uniq('same-text');
  await sqlA`insert into users (external_id, email) values (${title}, 'a@example.com')`;
  const query = `${CACHE}select count(*)::int as n from users where external_id = $1`;
  assert.deepEqual(await cachedRead(a, query, [title]), ['miss', 1]);
  assert.deepEqual(await cachedRead(a, query, [title]), ['hit', 1]);
  assert.deepEqual(await cachedRead(b, query, [title]), ['miss', 0], 'tenant b has no such user');
  assert.deepEqual(await cachedRead(b, query, [title]), ['hit', 0]);
  const jwt = goodJwt.hs256(a.key);
  const res = await rawSql({ body: { query, params: [title] }, connString: jwtUrl(), authToken: jwt });
  assertStatus(res, 200);
  assert.equal(res.headers.get('pgfleet-cache'), 'miss', "an end user does not get the app's cached result");
  assert.deepEqual(await sqlWithJwt(jwt).query(query, [title]), [{ n: 1 }]);
});

test('what is not cached: no comment, functions that are not immutable, transactions', TEST_OPTS, async () => {
  assert.equal((await cachedRead(a, 'select count(*) from users'))[0], null);
  const now = `${CACHE}select now() as t, count(*)::int as n from users`;
  assert.equal((await cachedRead(a, now))[0], 'miss');
  assert.equal((await cachedRead(a, now))[0], 'miss', 'never stored');
  // Reads in a transaction go to the server; its writes drop what they changed when it commits.
  const { thread } = await threadWithMessages(sqlA, 1);
  assert.deepEqual(await cachedRead(a, MESSAGES, [thread]), ['miss', 1]);
  const [, inside] = await sqlA.transaction([
    sqlA`insert into chat_messages (thread_id, role, content) values (${thread}, 'user', 'in a transaction')`,
    sqlA.query(MESSAGES, [thread]),
  ]);
  assert.deepEqual(inside, [{ n: 2 }]);
  assert.deepEqual(await cachedRead(a, MESSAGES, [thread]), ['miss', 2]);
});

test('concurrent writers and readers: no read is older than a write that had finished', TEST_OPTS, async () => {
  const rows = await sqlB`insert into type_samples (m, p) select 'sad', 1 from generate_series(1, 3) returning id`;
  const ids = rows.map((r) => r.id);
  const done = new Map(ids.map((id) => [id, 1]));
  const read = `${CACHE}select p from type_samples where id = $1`;
  let stale = 0;
  let hits = 0;
  let seed = 42;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  // Four clients at once: the test server admits four requests per tenant.
  const client = async () => {
    for (let i = 0; i < 60; i++) {
      const id = ids[Math.floor(random() * ids.length)];
      if (random() < 0.1) {
        const [row] = await sqlB`update type_samples set p = p + 1 where id = ${id} returning p`;
        done.set(id, Math.max(done.get(id), Number(row.p)));
      } else {
        const floor = done.get(id);
        const [status, p] = await cachedRead(b, read, [id]);
        if (status === 'hit') hits++;
        if (p < floor) stale++;
      }
    }
  };
  await Promise.all([client(), client(), client(), client()]);
  assert.equal(stale, 0, 'stale reads');
  assert.ok(hits > 10, `the cache served ${hits} reads`);
});
