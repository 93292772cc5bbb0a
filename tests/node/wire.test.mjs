// The PostgreSQL wire-protocol front door (`pgfleet serve --pg-listen`, PGFLEET_PG_HOST:PORT) and
// the Neon driver's WebSocket transport (GET /v2 on --sql-listen, PGFLEET_WS_PROXY), with real
// clients: node-postgres (Client, Pool, named prepared statements across transaction-pooled server
// connections), drizzle-orm/node-postgres on the chat schema, the Neon driver's Pool and Client;
// logins (app token, JWT, wrong/revoked token 28P01, unknown tenant 3D000, JWT of another tenant
// 28000); isolation between tenants; SET ROLE & co refused (42501); errors passed through;
// session features pinning the client (SET, LISTEN/NOTIFY, advisory locks, PREPARE, WITH HOLD
// cursors); healing of a dropped table under a single autocommit statement.
//
// Every row this file creates has an external_id starting with RUN and is deleted at the end
// through the tenants' direct connections.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { and, asc, count, eq, sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';

import * as schema from './chat-schema.mjs';
import { chatMessages, chatThreads, users } from './chat-schema.mjs';
import {
  adminUrlFor,
  claims,
  env,
  expectedIdentity,
  goodJwt,
  ident,
  neonWs,
  nowSeconds,
  pgCode,
  pgConnect,
  pgUrl,
  rejection,
  signJwt,
  TEST_OPTS,
  tenants,
  uniq,
  WHOAMI,
  wireConnect,
  wireLoginError,
  wirePool,
  withPg,
  withWire,
} from './lib.mjs';

const { a, b, db: dbTenant } = tenants;
const { Pool: NeonPool, Client: NeonClient } = neonWs();

/** The prefix of every external_id this file creates. */
const RUN = uniq('wire');
const rowId = (what) => uniq(`${RUN}-${what}`);

const jwtFor = (tenant, overrides) => goodJwt.hs256(tenant.key, overrides);
const B = ident(b.schema);
const bRole = ident(b.role);

after(async () => {
  for (const tenant of [a, b, dbTenant]) {
    await withPg(tenant.direct_url, (c) => c.query('delete from users where external_id like $1', [`${RUN}-%`]));
  }
});

/** Resolves like `promise`, or rejects when it has not settled within `ms`. */
function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise.finally(() => clearTimeout(timer)), timeout]);
}

/** Asserts that `err` is a PostgreSQL error with SQLSTATE `code` (one of `code` when an array). */
function assertCode(err, code, what) {
  const codes = Array.isArray(code) ? code : [code];
  assert.ok(codes.includes(pgCode(err)), `${what}: expected SQLSTATE ${codes.join(' or ')}, got ${pgCode(err)} (${err?.message})`);
  assert.equal(typeof err.message, 'string', `${what}: the error has no message`);
  assert.ok(err.message.length > 0, `${what}: the error message is empty`);
}

/** Inserts a user through a wire client; returns its external_id. */
async function insertUser(client, what = 'user') {
  const externalId = rowId(what);
  await client.query('insert into users (external_id, email) values ($1, $2)', [externalId, `${externalId}@example.com`]);
  return externalId;
}

const countUsers = async (client, pattern) =>
  (await client.query('select count(*)::int as n from users where external_id like $1', [pattern])).rows[0].n;

// ---------------------------------------------------------------------------------------------

describe('node-postgres pg.Client on the wire front door', () => {
  test('app-token clients reach the tenant named by the user: role, database and schema of a, b and db', TEST_OPTS, async () => {
    for (const tenant of [a, b, dbTenant]) {
      const who = await withWire(tenant.key, env.appToken, async (c) => (await c.query(WHOAMI)).rows[0]);
      assert.deepEqual(who, await expectedIdentity(tenant), `app token, user ${tenant.key}`);
    }
  });

  test('the database name of the connection string is ignored', TEST_OPTS, async () => {
    for (const database of [dbTenant.database, 'postgres', 'whatever']) {
      const c = await wireConnect(a.key, env.appToken, { connectionString: pgUrl(a.key, env.appToken, { database }) });
      try {
        assert.deepEqual((await c.query(WHOAMI)).rows[0], await expectedIdentity(a), `database ${database}`);
      } finally {
        await c.end();
      }
    }
  });

  test('simple and extended queries: parameters, typed results, multi-statement, command tags', TEST_OPTS, async () => {
    await withWire(a.key, env.appToken, async (c) => {
      const { rows } = await c.query('select $1::int + $2::int as sum, $3::text as s, $4::int as n', [20, 22, "it's $1", null]);
      assert.deepEqual(rows, [{ sum: 42, s: "it's $1", n: null }]);

      const multi = await c.query("select 1::int as x; select 'two'::text as y");
      assert.deepEqual(multi.map((r) => r.rows), [[{ x: 1 }], [{ y: 'two' }]]);

      const ids = [rowId('cmd'), rowId('cmd')];
      const ins = await c.query("insert into users (external_id, email) select x, x || '@example.com' from unnest($1::text[]) x", [ids]);
      assert.equal(ins.command, 'INSERT');
      assert.equal(ins.rowCount, 2);
      const upd = await c.query("update users set display_name = 'W' where external_id = any($1)", [ids]);
      assert.equal(upd.command, 'UPDATE');
      assert.equal(upd.rowCount, 2);
      const del = await c.query('delete from users where external_id = $1', [ids[0]]);
      assert.equal(del.command, 'DELETE');
      assert.equal(del.rowCount, 1);
      const sel = await c.query('select display_name from users where external_id = any($1)', [ids]);
      assert.deepEqual(sel.rows, [{ display_name: 'W' }]);
      assert.deepEqual(sel.fields.map((f) => [f.name, f.dataTypeID]), [['display_name', 25]]);
    });
  });

  test('explicit transactions: one server session throughout, COMMIT keeps, ROLLBACK discards, an error aborts until ROLLBACK', TEST_OPTS, async () => {
    const c = await wireConnect(a.key);
    const other = await wireConnect(a.key);
    try {
      await c.query('begin');
      const { rows: [t1] } = await c.query('select txid_current()::text as x, pg_backend_pid() as pid');
      const kept = await insertUser(c, 'tx-kept');
      assert.equal(await countUsers(other, kept), 0, 'uncommitted rows are invisible to another client');
      const { rows: [t2] } = await c.query('select txid_current()::text as x, pg_backend_pid() as pid');
      assert.deepEqual(t2, t1, 'the same transaction on the same server connection');
      await c.query('commit');
      assert.equal(await countUsers(other, kept), 1, 'committed');

      await c.query('begin isolation level repeatable read');
      const { rows: [iso] } = await c.query("select current_setting('transaction_isolation') as v");
      assert.equal(iso.v, 'repeatable read');
      const dropped = await insertUser(c, 'tx-dropped');
      await c.query('rollback');
      assert.equal(await countUsers(other, dropped), 0, 'rolled back');
      assert.equal(await countUsers(c, dropped), 0, 'rolled back (same client)');

      await c.query('begin');
      assertCode(await rejection(c.query('select 1 / 0')), '22012', 'division by zero');
      assertCode(await rejection(c.query('select 1')), '25P02', 'a statement in the aborted transaction');
      await c.query('rollback');
      assert.deepEqual((await c.query('select 1::int as one')).rows, [{ one: 1 }], 'usable after ROLLBACK');
      assert.deepEqual(c.asyncErrors, []);
    } finally {
      await c.end();
      await other.end();
    }
  });
});

describe('node-postgres pg.Pool and named prepared statements (transaction pooling)', () => {
  test('a pg.Pool of 10 clients running transactions in parallel: committed rows counted exactly, rolled back ones never', { timeout: 60_000 }, async () => {
    const WORKERS = 10;
    const ROUNDS = 5; // the last round of each worker rolls back
    const ROWS = 3;
    const tag = rowId('pool');
    const pool = wirePool(a.key, env.appToken, { max: WORKERS });
    try {
      const work = Array.from({ length: WORKERS }, async (_, w) => {
        for (let r = 0; r < ROUNDS; r++) {
          const c = await pool.connect();
          try {
            await c.query('begin');
            const { rows: [start] } = await c.query('select txid_current()::text as x');
            const ids = Array.from({ length: ROWS }, (_, k) => `${tag}-${w}-${r}-${k}`);
            const ins = await c.query("insert into users (external_id, email) select x, x || '@example.com' from unnest($1::text[]) x", [ids]);
            assert.equal(ins.rowCount, ROWS);
            assert.equal(await countUsers(c, `${tag}-${w}-%`), (r + 1) * ROWS, 'the transaction sees its own rows and its earlier commits');
            const { rows: [afterIns] } = await c.query('select txid_current()::text as x');
            assert.equal(afterIns.x, start.x, 'one transaction');
            await c.query(r === ROUNDS - 1 ? 'rollback' : 'commit');
          } finally {
            c.release();
          }
        }
      });
      const reads = Array.from({ length: 20 }, async (_, i) => {
        const { rows } = await pool.query('select $1::int as i', [i]);
        assert.deepEqual(rows, [{ i }]);
      });
      await Promise.all([...work, ...reads]);
      assert.equal(await countUsers(pool, `${tag}-%`), WORKERS * (ROUNDS - 1) * ROWS);
      for (let w = 0; w < WORKERS; w++) {
        assert.equal(await countUsers(pool, `${tag}-${w}-${ROUNDS - 1}-%`), 0, `worker ${w}: the rolled back round left nothing`);
      }
      assert.deepEqual(pool.asyncErrors, []);
    } finally {
      await pool.end();
    }
  });

  test('named prepared statements reused by 12 clients over many transactions; the same name with another text on other clients', { timeout: 60_000 }, async () => {
    const CLIENTS = 12;
    const ROUNDS = 15;
    const tag = rowId('prep');
    const clients = await Promise.all(Array.from({ length: CLIENTS }, () => wireConnect(a.key)));
    try {
      const insert = { name: 'wire_insert', text: 'insert into users (external_id, email) values ($1, $2) returning external_id' };
      const countQ = { name: 'wire_count', text: 'select count(*)::int as n from users where external_id like $1' };
      await Promise.all(
        clients.map(async (c, w) => {
          // One name, two texts: a named statement belongs to its client, not to a server connection.
          const even = w % 2 === 0;
          const probe = even
            ? { name: 'wire_probe', text: 'select $1::int + 1 as v' }
            : { name: 'wire_probe', text: "select ($1::int * 10)::text || 'x' as v" };
          for (let r = 0; r < ROUNDS; r++) {
            const { rows: [p] } = await c.query({ ...probe, values: [r] });
            assert.equal(p.v, even ? r + 1 : `${r * 10}x`, `client ${w}, round ${r}: its own wire_probe`);
            await c.query('begin');
            const eid = `${tag}-${w}-${r}`;
            const ins = await c.query({ ...insert, values: [eid, `${eid}@example.com`] });
            assert.deepEqual(ins.rows, [{ external_id: eid }]);
            const { rows: [n] } = await c.query({ ...countQ, values: [`${tag}-${w}-%`] });
            assert.equal(n.n, r + 1);
            const { rows: [p2] } = await c.query({ ...probe, values: [r + 100] });
            assert.equal(p2.v, even ? r + 101 : `${(r + 100) * 10}x`);
            await c.query('commit');
          }
        }),
      );
      const { rows: [total] } = await clients[0].query({ ...countQ, values: [`${tag}-%`] });
      assert.equal(total.n, CLIENTS * ROUNDS);
      for (const c of clients) assert.deepEqual(c.asyncErrors, []);
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
  });

  test("a named statement still works when its client's next transaction gets another server connection", { timeout: 30_000 }, async () => {
    const c = await wireConnect(a.key);
    const holders = [];
    try {
      const q = (i) => ({ name: 'wire_hop', text: 'select $1::int * 2 as n, pg_backend_pid() as pid', values: [i] });
      const { rows: [first] } = await c.query(q(1));
      assert.equal(first.n, 2);
      const x = first.pid;
      // Other clients open transactions (each holds its server connection) until one holds x.
      let held = false;
      for (let i = 0; i < 8 && !held; i++) {
        const h = await wireConnect(a.key);
        holders.push(h);
        await h.query('begin');
        held = (await h.query('select pg_backend_pid() as pid')).rows[0].pid === x;
      }
      assert.ok(held, `no transaction of 8 other clients was lent server connection ${x} (does the pool reuse idle connections?)`);
      // x is busy: c's statement (node-postgres now sends only Bind/Execute) runs elsewhere.
      const again = await within(c.query(q(21)), 8_000, 'the named statement while its server connection is held (a pool of one?)');
      assert.equal(again.rows[0].n, 42);
      assert.notEqual(again.rows[0].pid, x, 'ran on another server connection');
      await c.query('begin');
      const inTx = await within(c.query(q(5)), 8_000, 'the named statement in a transaction');
      assert.equal(inTx.rows[0].n, 10);
      await c.query('commit');
      // An error at execution leaves the statement usable.
      const div = { name: 'wire_div', text: 'select 10 / $1::int as q' };
      assertCode(await rejection(c.query({ ...div, values: [0] })), '22012', 'division by zero in a named statement');
      assert.deepEqual((await c.query({ ...div, values: [2] })).rows, [{ q: 5 }]);
    } finally {
      for (const h of holders) {
        await h.query('rollback').catch(() => {});
        await h.end();
      }
      await c.end();
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('drizzle-orm/node-postgres on the chat schema', () => {
  let pool;
  let db;
  let user;
  let thread;

  /** A 384-dimensional embedding: 1 on axis `i`, 0.0625 elsewhere. */
  const embedding = (i) => {
    const v = new Array(384).fill(0.0625);
    v[i] = 1;
    return v;
  };

  before(async () => {
    pool = wirePool(a.key);
    db = drizzle({ client: pool, schema });
    const externalId = rowId('drizzle');
    [user] = await db
      .insert(users)
      .values({ externalId, email: `${externalId}@example.com`, displayName: 'Wire Drizzle', settings: { theme: 'dark' } })
      .returning();
  });
  after(async () => {
    if (user) await db.delete(users).where(eq(users.id, user.id));
    await pool?.end();
  });

  test('insert ... returning gives the identity, the defaults and the jsonb value', TEST_OPTS, async () => {
    assert.equal(typeof user.id, 'number');
    assert.deepEqual(user.settings, { theme: 'dark' });
    assert.ok(user.createdAt instanceof Date && Math.abs(user.createdAt.getTime() - Date.now()) < 5 * 60_000);
  });

  test('a thread and its messages are inserted and read back with a three-table join and the relational API', TEST_OPTS, async () => {
    [thread] = await db.insert(chatThreads).values({ userId: user.id, title: 'Wire help' }).returning();
    assert.match(thread.id, /^[0-9a-f-]{36}$/);
    await db.insert(chatMessages).values([
      { threadId: thread.id, role: 'system', content: 'You are helpful.' },
      { threadId: thread.id, role: 'user', content: 'Hello over the wire', tokenCount: 4, embedding: embedding(3) },
    ]);
    const rows = await db
      .select({ email: users.email, title: chatThreads.title, role: chatMessages.role, tokens: chatMessages.tokenCount })
      .from(chatMessages)
      .innerJoin(chatThreads, eq(chatMessages.threadId, chatThreads.id))
      .innerJoin(users, eq(chatThreads.userId, users.id))
      .where(eq(users.id, user.id))
      .orderBy(asc(chatMessages.id));
    assert.deepEqual(rows, [
      { email: user.email, title: 'Wire help', role: 'system', tokens: null },
      { email: user.email, title: 'Wire help', role: 'user', tokens: 4 },
    ]);
    const [msg] = await db
      .select({ embedding: chatMessages.embedding })
      .from(chatMessages)
      .where(and(eq(chatMessages.threadId, thread.id), eq(chatMessages.role, 'user')));
    assert.deepEqual(msg.embedding, embedding(3));
    const found = await db.query.users.findFirst({
      where: eq(users.id, user.id),
      with: { threads: { with: { messages: { orderBy: [asc(chatMessages.id)] } } } },
    });
    assert.deepEqual(found.threads.map((t) => [t.title, t.messages.map((m) => m.role)]), [['Wire help', ['system', 'user']]]);
  });

  test('db.transaction commits its writes; a transaction that throws leaves nothing', TEST_OPTS, async () => {
    const title = `tx-${randomBytes(4).toString('hex')}`;
    const result = await db.transaction(
      async (tx) => {
        const { rows: [iso] } = await tx.execute(sql`select current_setting('transaction_isolation') as v`);
        assert.equal(iso.v, 'serializable');
        const [t] = await tx.insert(chatThreads).values({ userId: user.id, title }).returning({ id: chatThreads.id });
        await tx.insert(chatMessages).values({ threadId: t.id, role: 'user', content: 'inside a transaction' });
        const [{ n }] = await tx.select({ n: count() }).from(chatMessages).where(eq(chatMessages.threadId, t.id));
        return { id: t.id, n };
      },
      { isolationLevel: 'serializable' },
    );
    assert.equal(result.n, 1);
    const [{ n: committed }] = await db.select({ n: count() }).from(chatMessages).where(eq(chatMessages.threadId, result.id));
    assert.equal(committed, 1, 'committed');

    const lost = `lost-${randomBytes(4).toString('hex')}`;
    const err = await rejection(
      db.transaction(async (tx) => {
        await tx.insert(chatThreads).values({ userId: user.id, title: lost });
        throw new Error('give up');
      }),
    );
    assert.equal(err.message, 'give up');
    const none = await db.select().from(chatThreads).where(and(eq(chatThreads.userId, user.id), eq(chatThreads.title, lost)));
    assert.deepEqual(none, [], 'rolled back');
  });

  test('a named drizzle prepared query runs many times on the pool, in parallel', TEST_OPTS, async () => {
    const byExternalId = db
      .select({ id: users.id, email: users.email })
      .from(users)
      .where(eq(users.externalId, sql.placeholder('eid')))
      .prepare('wire_drizzle_user_by_external_id');
    const results = await Promise.all(Array.from({ length: 25 }, () => byExternalId.execute({ eid: user.externalId })));
    for (const rows of results) assert.deepEqual(rows, [{ id: user.id, email: user.email }]);
    assert.deepEqual(await byExternalId.execute({ eid: rowId('nobody') }), []);
  });

  test('a unique violation surfaces as 23505 through drizzle', TEST_OPTS, async () => {
    const err = await rejection(db.insert(users).values({ externalId: user.externalId, email: 'dup@example.com' }));
    assert.equal(pgCode(err), '23505', err.message);
    assert.equal((err.cause ?? err).constraint, 'users_external_id_key');
  });
});

// ---------------------------------------------------------------------------------------------

describe("the Neon driver's Pool and Client over WebSocket (GET /v2)", () => {
  const neonClient = (tenantKey, password) => {
    const client = new NeonClient(pgUrl(tenantKey, password));
    client.asyncErrors = [];
    client.on('error', (err) => client.asyncErrors.push(err));
    return client;
  };

  test('a Client reaches tenant a with the app token: identity, parameters, types', TEST_OPTS, async () => {
    const client = neonClient(a.key, env.appToken);
    await within(client.connect(), 10_000, 'the WebSocket connect');
    try {
      assert.deepEqual((await client.query(WHOAMI)).rows[0], await expectedIdentity(a));
      const { rows } = await client.query('select $1::int * 2 as n, $2::text as t, $3::jsonb as j', [21, 'ws', { k: [1, 2] }]);
      assert.deepEqual(rows, [{ n: 42, t: 'ws', j: { k: [1, 2] } }]);
      assert.deepEqual((await client.query({ name: 'wire_neon_named', text: 'select $1::int as v', values: [7] })).rows, [{ v: 7 }]);
      assert.deepEqual((await client.query({ name: 'wire_neon_named', text: 'select $1::int as v', values: [8] })).rows, [{ v: 8 }]);
      assert.deepEqual(client.asyncErrors, []);
    } finally {
      await client.end();
    }
  });

  test("a Client with an end user's JWT as password reaches the JWT's tenant", TEST_OPTS, async () => {
    const client = neonClient(b.key, jwtFor(b));
    await within(client.connect(), 10_000, 'the WebSocket connect');
    try {
      assert.deepEqual((await client.query(WHOAMI)).rows[0], await expectedIdentity(b));
    } finally {
      await client.end();
    }
  });

  test('a Pool runs a committed and a rolled back transaction, parallel queries, and passes errors through', { timeout: 30_000 }, async () => {
    const pool = new NeonPool({ connectionString: pgUrl(a.key), max: 4, connectionTimeoutMillis: 10_000 });
    const asyncErrors = [];
    pool.on('error', (err) => asyncErrors.push(err));
    try {
      const kept = rowId('neon-kept');
      const dropped = rowId('neon-dropped');
      const c = await pool.connect();
      try {
        await c.query('begin');
        await c.query('insert into users (external_id, email) values ($1, $2)', [kept, `${kept}@example.com`]);
        const { rows: [seen] } = await c.query('select count(*)::int as n from users where external_id = $1', [kept]);
        assert.equal(seen.n, 1, 'the transaction sees its own insert');
        await c.query('commit');
        await c.query('begin');
        await c.query('insert into users (external_id, email) values ($1, $2)', [dropped, `${dropped}@example.com`]);
        await c.query('rollback');
      } finally {
        c.release();
      }
      const { rows: [n] } = await pool.query('select (count(*) filter (where external_id = $1))::int as kept, (count(*) filter (where external_id = $2))::int as dropped from users', [kept, dropped]);
      assert.deepEqual(n, { kept: 1, dropped: 0 });

      const results = await Promise.all(Array.from({ length: 12 }, (_, i) => pool.query('select $1::int as i', [i])));
      assert.deepEqual(results.map((r) => r.rows[0].i), Array.from({ length: 12 }, (_, i) => i));

      const dup = await rejection(pool.query('insert into users (external_id, email) values ($1, $2)', [kept, 'dup@example.com']));
      assert.equal(dup.code, '23505');
      assert.equal(dup.constraint, 'users_external_id_key');
      assert.deepEqual((await pool.query('select 1::int as one')).rows, [{ one: 1 }]);
      assert.deepEqual(asyncErrors, []);
    } finally {
      await pool.end();
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('logins', () => {
  test("an end user's JWT (HS256) with its tenant as user name reaches that tenant as its own role", TEST_OPTS, async () => {
    for (const tenant of [a, b, dbTenant]) {
      const who = await withWire(tenant.key, jwtFor(tenant), async (c) => (await c.query(WHOAMI)).rows[0]);
      assert.deepEqual(who, await expectedIdentity(tenant), `JWT sub=${tenant.key}`);
    }
  });

  test('a wrong, revoked or forged token is refused with 28P01', TEST_OPTS, async () => {
    const t = env.appToken;
    const wrong = {
      'an altered app token': t.slice(0, -1) + (t.at(-1) === 'A' ? 'B' : 'A'),
      'a made-up app token': `pgf_${randomBytes(24).toString('hex')}`,
      'the revoked app token': env.revokedToken,
      'a JWT signed with a wrong secret': signJwt(claims(a.key), { alg: 'HS256', key: 'not-the-secret' }),
      'an expired JWT': goodJwt.hs256(a.key, { iat: nowSeconds() - 3600, exp: nowSeconds() - 1800 }),
      'a JWT for another audience': goodJwt.hs256(a.key, { aud: 'someone-else' }),
      'garbage': 'not a token at all',
    };
    for (const [what, password] of Object.entries(wrong)) {
      assertCode(await wireLoginError(a.key, password, what), '28P01', what);
    }
    // The front door still serves good logins afterwards.
    assert.deepEqual(await withWire(a.key, env.appToken, async (c) => (await c.query('select 1::int as one')).rows), [{ one: 1 }]);
  });

  test('an unknown tenant is refused with 3D000, naming the tenant', TEST_OPTS, async () => {
    const name = `no-such-tenant-${randomBytes(4).toString('hex')}`;
    const err = await wireLoginError(name, env.appToken, 'the unknown tenant');
    assertCode(err, '3D000', 'unknown tenant');
    assert.ok(err.message.includes(name), `the message names the tenant: ${err.message}`);
  });

  test("a JWT whose tenant is not the user name is refused with 28000", TEST_OPTS, async () => {
    assertCode(await wireLoginError(b.key, jwtFor(a), 'JWT of a, user b'), '28000', 'JWT of a, user b');
    assertCode(await wireLoginError(a.key, jwtFor(dbTenant), 'JWT of db, user a'), '28000', 'JWT of db, user a');
  });
});

// ---------------------------------------------------------------------------------------------

describe("isolation: tenant a's credentials never reach tenant b's rows", () => {
  let marker;

  before(async () => {
    marker = rowId('secret-b');
    await withWire(b.key, env.appToken, (c) =>
      c.query('insert into users (external_id, email, display_name) values ($1, $2, $3)', [marker, `${marker}@example.com`, 'secret of b']),
    );
  });

  /** Asserts that a result (or an error) shows nothing of b's marker row. */
  const assertNothingOfB = (result, what) => {
    if (result instanceof Error) return; // refusing is fine
    const text = JSON.stringify(Array.isArray(result) ? result.map((r) => r.rows) : result.rows);
    assert.ok(!text.includes(marker), `${what}: returned b's row: ${text.slice(0, 300)}`);
  };
  const outcome = (promise) => promise.catch((err) => err);

  test("b's row is seen by b, and by none of a's callers nor db", TEST_OPTS, async () => {
    const q = 'select external_id from users where external_id = $1';
    assert.deepEqual(await withWire(b.key, env.appToken, async (c) => (await c.query(q, [marker])).rows), [{ external_id: marker }]);
    assert.deepEqual(await withWire(b.key, jwtFor(b), async (c) => (await c.query(q, [marker])).rows), [{ external_id: marker }]);
    for (const [what, key, password] of [
      ['a, app token', a.key, env.appToken],
      ['a, JWT', a.key, jwtFor(a)],
      ['db, app token', dbTenant.key, env.appToken],
    ]) {
      assert.deepEqual(await withWire(key, password, async (c) => (await c.query(q, [marker])).rows), [], what);
    }
  });

  test("a's end user reading b's schema by qualified name is refused with 42501", TEST_OPTS, async () => {
    await withWire(a.key, jwtFor(a), async (c) => {
      assertCode(await rejection(c.query(`select * from ${B}.users where external_id = $1`, [marker])), '42501', 'qualified, extended protocol');
      assertCode(await rejection(c.query(`select * from ${B}.users`)), '42501', 'qualified, simple protocol');
      assertCode(await rejection(c.query(`update ${B}.users set email = 'pwned@example.com'`)), '42501', 'qualified update');
      assert.deepEqual((await c.query(WHOAMI)).rows[0], await expectedIdentity(a), 'still a');
    });
  });

  test("a's end user setting search_path to b's schema still cannot read b's rows", TEST_OPTS, async () => {
    await withWire(a.key, jwtFor(a), async (c) => {
      // SET search_path itself may be accepted (PostgreSQL skips schemas without USAGE when it
      // resolves names) or refused; reading b's users through it must fail.
      await outcome(c.query(`set search_path to ${B}`));
      const err = await rejection(c.query('select * from users where external_id = $1', [marker]), "unqualified select with b's search_path");
      assertCode(err, ['42501', '42P01'], "unqualified select with b's search_path");
      assertCode(await rejection(c.query(`select * from ${B}.users`)), '42501', "qualified select with b's search_path");
      await outcome(c.query('begin'));
      await outcome(c.query(`set local search_path to ${B}, public`));
      assertNothingOfB(await outcome(c.query('select * from users')), 'set local search_path in a transaction');
      await outcome(c.query('rollback'));
    });
  });

  test("a's app token cannot read b's schema either", TEST_OPTS, async () => {
    await withWire(a.key, env.appToken, async (c) => {
      const err = await rejection(c.query(`select * from ${B}.users where external_id = $1`, [marker]), "a's app token reading b's schema");
      assertCode(err, '42501', "a's app token reading b's schema");
    });
  });

  test('SET ROLE, RESET ROLE and SET SESSION AUTHORIZATION are refused with 42501 and the session goes on', TEST_OPTS, async () => {
    const refused = [
      `set role ${bRole}`,
      'SET ROLE NONE',
      `SET ROLE ${ident(a.role)}`,
      'reset role',
      `set session authorization ${bRole}`,
      'SET SESSION AUTHORIZATION DEFAULT',
    ];
    for (const [what, password] of [
      ['JWT', jwtFor(a)],
      ['app token', env.appToken],
    ]) {
      await withWire(a.key, password, async (c) => {
        for (const text of refused) {
          assertCode(await rejection(c.query(text), `${what}: ${text}`), '42501', `${what}: ${text}`);
          assert.deepEqual((await c.query(WHOAMI)).rows[0], await expectedIdentity(a), `${what}: still a after ${text}`);
        }
        // The extended protocol too (node-postgres sends Parse/Bind/Execute for a named query).
        const err = await rejection(c.query({ name: 'wire_set_role', text: `set role ${bRole}` }), `${what}: named set role`);
        assertCode(err, '42501', `${what}: set role as a named statement`);
        assert.deepEqual((await c.query('select 1::int as one')).rows, [{ one: 1 }], `${what}: usable afterwards`);
        assert.deepEqual(c.asyncErrors, []);
      });
    }
  });

  test("other ways of changing role from a's end user leave b's rows out of reach", TEST_OPTS, async () => {
    const attempts = [
      [`select set_config('role', '${b.role.replaceAll("'", "''")}', false)`, `select * from ${B}.users`],
      ['begin', `set local role ${bRole}`, `select * from ${B}.users`, 'rollback'],
      [`/* hidden */ SeT   rOlE ${bRole}`, `select * from ${B}.users`],
      [`set role ${bRole}; select * from ${B}.users`],
      [`select 1; set session authorization ${bRole}`, `select * from ${B}.users`],
    ];
    for (const steps of attempts) {
      await withWire(a.key, jwtFor(a), async (c) => {
        for (const text of steps) assertNothingOfB(await outcome(c.query(text)), JSON.stringify(steps));
        await outcome(c.query('rollback'));
        assert.deepEqual((await c.query('select current_user::text as u')).rows, [{ u: a.role }], `${JSON.stringify(steps)}: still a's role`);
      });
    }
    // b's row is unchanged.
    const rows = await withPg(b.direct_url, async (c) => (await c.query('select display_name from users where external_id = $1', [marker])).rows);
    assert.deepEqual(rows, [{ display_name: 'secret of b' }]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('PostgreSQL errors pass through unchanged', () => {
  // The error fields PostgreSQL sends that do not depend on the connection.
  const FIELDS = ['message', 'code', 'severity', 'detail', 'hint', 'position', 'schema', 'table', 'column', 'dataType', 'constraint', 'routine'];
  const pick = (err) => Object.fromEntries(FIELDS.map((k) => [k, err[k] ?? undefined]));

  let wire;
  let direct;
  before(async () => {
    wire = await wireConnect(a.key);
    direct = await pgConnect(a.direct_url);
  });
  after(async () => {
    await wire?.end();
    await direct?.end();
  });

  async function sameErrorAsDirect(text, params) {
    const viaWire = await rejection(wire.query(text, params), `${text} through the wire front door`);
    const viaPg = await rejection(direct.query(text, params), `${text} through a direct connection`);
    assert.deepEqual(pick(viaWire), pick(viaPg), `error fields of: ${text}`);
    return viaWire;
  }

  test('a unique violation: 23505 with the table, the constraint and the key, as on a direct connection', TEST_OPTS, async () => {
    const id = await insertUser(wire, 'err-dup');
    const err = await sameErrorAsDirect('insert into users (external_id, email) values ($1, $2)', [id, `other-${id}@example.com`]);
    assert.equal(err.code, '23505');
    assert.equal(err.constraint, 'users_external_id_key');
    assert.equal(err.table, 'users');
    assert.equal(err.schema, a.schema);
    assert.match(err.detail, new RegExp(`\\(external_id\\)=\\(${id}\\) already exists`));
    const simple = await sameErrorAsDirect(`insert into users (external_id, email) values ('${id}', 'x@example.com')`);
    assert.equal(simple.code, '23505');
  });

  test('a syntax error: 42601 with its position; a missing relation: 42P01 with its position', TEST_OPTS, async () => {
    const syntax = await sameErrorAsDirect('select 1 2');
    assert.equal(syntax.code, '42601');
    assert.equal(String(syntax.position), '10');
    const missing = await sameErrorAsDirect('select * from pgfleet_no_such_table_4711');
    assert.equal(missing.code, '42P01');
    assert.equal(String(missing.position), '15');
    const fk = await sameErrorAsDirect("insert into chat_threads (user_id, title) values (-1, 'orphan')");
    assert.equal(fk.code, '23503');
    const raised = await sameErrorAsDirect("do $$ begin raise exception using errcode = 'P0001', message = 'custom', detail = 'd', hint = 'h'; end $$");
    assert.deepEqual([raised.code, raised.message, raised.detail, raised.hint], ['P0001', 'custom', 'd', 'h']);
    assert.deepEqual((await wire.query('select 1::int as one')).rows, [{ one: 1 }], 'the client is usable after the errors');
  });
});

// ---------------------------------------------------------------------------------------------

describe('session features pin the client to its server connection', () => {
  test('SET statement_timeout holds for the rest of the session, and for no other client', { timeout: 30_000 }, async () => {
    const pinned = await wireConnect(a.key);
    const others = await Promise.all(Array.from({ length: 4 }, () => wireConnect(a.key)));
    try {
      const { rows: [{ statement_timeout: usual }] } = await others[0].query('show statement_timeout');
      assert.notEqual(usual, '1234ms');
      await pinned.query('set statement_timeout = 1234');
      for (let i = 0; i < 6; i++) {
        // Other clients keep the server connections busy meanwhile.
        const [{ rows: [mine] }, ...theirs] = await Promise.all([
          pinned.query('show statement_timeout'),
          ...others.map((c) => c.query('select statement_timestamp(), pg_sleep(0.01), current_setting($1) as v', ['statement_timeout'])),
        ]);
        assert.equal(mine.statement_timeout, '1234ms', `round ${i}: the pinned session keeps its setting`);
        for (const t of theirs) assert.equal(t.rows[0].v, usual, `round ${i}: another client sees the setting`);
        await pinned.query('begin');
        assert.equal((await pinned.query("select current_setting('statement_timeout') as v")).rows[0].v, '1234ms', 'in a transaction too');
        await pinned.query('commit');
      }
      await pinned.query("set application_name = 'wire-pinned'");
      assert.equal((await pinned.query('show application_name')).rows[0].application_name, 'wire-pinned');
    } finally {
      await pinned.end();
    }
    try {
      // The pinned server connection went back to the pool without the client's settings.
      const fresh = await Promise.all(Array.from({ length: 6 }, () => wireConnect(a.key)));
      try {
        for (const c of [...fresh, ...others]) {
          assert.notEqual((await c.query('show statement_timeout')).rows[0].statement_timeout, '1234ms', 'a later client got the SET');
          assert.notEqual((await c.query('show application_name')).rows[0].application_name, 'wire-pinned');
        }
      } finally {
        await Promise.all(fresh.map((c) => c.end()));
      }
    } finally {
      await Promise.all(others.map((c) => c.end()));
    }
  });

  test('LISTEN/NOTIFY between two clients of the same tenant', TEST_OPTS, async () => {
    const channel = `wire_ch_${randomBytes(6).toString('hex')}`;
    const listener = await wireConnect(a.key);
    const notifier = await wireConnect(a.key);
    const received = [];
    listener.on('notification', (msg) => {
      if (msg.channel === channel) received.push(msg.payload);
    });
    const waitFor = (n, what) =>
      within(
        (async () => {
          while (received.length < n) await new Promise((r) => setTimeout(r, 20));
        })(),
        5_000,
        what,
      );
    try {
      await listener.query(`listen ${ident(channel)}`);
      assert.deepEqual((await listener.query('select c from pg_listening_channels() c')).rows, [{ c: channel }]);
      await notifier.query(`notify ${ident(channel)}, 'first'`);
      await waitFor(1, 'the first notification');
      await notifier.query('select pg_notify($1, $2)', [channel, 'second']);
      await waitFor(2, 'the second notification');
      // A notification sent in a transaction arrives at its commit, not before.
      await notifier.query('begin');
      await notifier.query('select pg_notify($1, $2)', [channel, 'third']);
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(received, ['first', 'second'], 'nothing before the commit');
      await notifier.query('commit');
      await waitFor(3, 'the notification of the committed transaction');
      assert.deepEqual(received, ['first', 'second', 'third']);
      assert.deepEqual((await listener.query('select 1::int as one')).rows, [{ one: 1 }], 'the listener still answers queries');
      assert.deepEqual(listener.asyncErrors, []);
    } finally {
      await listener.end();
      await notifier.end();
    }
  });

  test('a session advisory lock, SQL PREPARE and a WITH HOLD cursor last across queries', TEST_OPTS, async () => {
    const key = 800_000_000 + Math.floor(Math.random() * 1_000_000);
    const c = await wireConnect(a.key);
    const other = await wireConnect(a.key);
    try {
      assert.equal((await c.query('select pg_advisory_lock($1::bigint)', [key])).rowCount, 1);
      const held = await c.query(
        "select count(*)::int as n from pg_locks where locktype = 'advisory' and classid = 0 and objid = $1::bigint::oid and granted and pid = pg_backend_pid()",
        [key],
      );
      assert.equal(held.rows[0].n, 1, 'the lock is held by the session that took it');
      assert.deepEqual((await other.query('select pg_try_advisory_xact_lock($1::bigint) as got', [key])).rows, [{ got: false }], 'another client cannot take it');
      assert.deepEqual((await c.query('select pg_advisory_unlock($1::bigint) as released', [key])).rows, [{ released: true }]);
      assert.deepEqual((await other.query('select pg_try_advisory_xact_lock($1::bigint) as got', [key])).rows, [{ got: true }], 'free once released');

      await c.query('prepare wire_sql_prep (int) as select $1 * 3 as n');
      assert.deepEqual((await c.query('execute wire_sql_prep (14)')).rows, [{ n: 42 }]);
      assert.deepEqual((await c.query('execute wire_sql_prep (2)')).rows, [{ n: 6 }]);
      await c.query('deallocate wire_sql_prep');

      await c.query('declare wire_cur cursor with hold for select g::int as g from generate_series(1, 5) g');
      assert.deepEqual((await c.query('fetch 2 from wire_cur')).rows, [{ g: 1 }, { g: 2 }]);
      assert.deepEqual((await c.query('fetch 2 from wire_cur')).rows, [{ g: 3 }, { g: 4 }]);
      await c.query('close wire_cur');
    } finally {
      await c.end();
      await other.end();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Last: these drop tables of tenant a.

describe('healing', () => {
  /** Drops one of tenant a's tables as the superuser. */
  async function dropTableOfA(table) {
    await withPg(adminUrlFor(a.database), async (c) => {
      await c.query("set lock_timeout = '5s'");
      await c.query(`drop table ${ident(a.schema)}.${ident(table)} cascade`);
      const { rows } = await c.query('select to_regclass($1)::text as t', [`${ident(a.schema)}.${ident(table)}`]);
      assert.equal(rows[0].t, null, `${table} was dropped`);
    });
  }

  test('a dropped table is healed under a single simple-protocol select', { timeout: 60_000 }, async () => {
    await dropTableOfA('type_samples');
    await withWire(a.key, env.appToken, async (c) => {
      assert.deepEqual((await c.query('select count(*)::int as n from type_samples')).rows, [{ n: 0 }]);
      assert.deepEqual((await c.query("insert into type_samples (m, p) values ('happy', 1) returning m, p")).rows, [{ m: 'happy', p: 1 }]);
      await c.query('delete from type_samples');
    });
  });

  test('a dropped table is healed under a single parameterized (extended-protocol) select of an end user', { timeout: 60_000 }, async () => {
    await dropTableOfA('documents');
    await withWire(a.key, jwtFor(a), async (c) => {
      const { rows } = await c.query('select count(*)::int as n from documents where user_id = $1', [-1]);
      assert.deepEqual(rows, [{ n: 0 }]);
      assert.ok((await c.query("select to_regclass('documents')::text as t")).rows[0].t, 'documents exists again');
    });
  });
});
