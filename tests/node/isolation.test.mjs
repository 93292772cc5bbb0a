// Tenants are isolated through POST /sql, and requests are isolated from each other.
//
// 1. Whatever SQL tenant a's end user sends (with a JWT: untrusted SQL, always on a connection
//    logged in as a's role), it never reads or changes tenant b's rows: set role, set search_path,
//    schema-qualified names, reset role, set_config, set session authorization, the roles a's role
//    is a member of, connection-string options, writes and DDL on b's table. Errors are fine; wrong
//    data is not. b's rows are seeded through b's own connection string first and checked through
//    it afterwards. The app's token is a trusted caller (it reaches any tenant by naming it): for
//    schema tenants it runs on the pool role's shared connections, which end users never get.
// 2. Nothing a request leaves behind is seen by the next: SET, custom settings, temp tables,
//    prepared statements, cursors, LISTEN, advisory locks, an open transaction.
// 3. The database-mode tenant `db` works and is isolated from a (and a from it).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  appUrl,
  assertReaches,
  expectedIdentity,
  WHOAMI,
  ident,
  neon,
  NeonDbError,
  rawSql,
  assertStatus,
  sleep,
  sqlFor,
  sqlWithJwt,
  goodJwt,
  TEST_OPTS,
  tenants,
  uniq,
  withPg,
} from './lib.mjs';

const { a, b, db: dbTenant } = tenants;
const sqlA = sqlFor(a);
// a's end user: the attacker of part 1.
const attackA = sqlWithJwt(goodJwt.hs256(a.key));
const sqlB = sqlFor(b);
const sqlDb = sqlFor(dbTenant);

// Secret rows, one per tenant, seeded through each tenant's own connection string.
const secrets = {};

async function seed(sql, name) {
  const externalId = uniq(`secret-${name}`);
  const [row] = await sql`insert into users (external_id, email, display_name) values (${externalId}, ${externalId + '@example.com'}, ${'secret of ' + name}) returning id, external_id, email, display_name`;
  secrets[name] = row;
}

before(async () => {
  await seed(sqlA, 'a');
  await seed(sqlB, 'b');
  await seed(sqlDb, 'db');
});

after(async () => {
  const drop = (sql, name) => secrets[name] && sql`delete from users where external_id = ${secrets[name].external_id}`;
  await Promise.all([drop(sqlA, 'a'), drop(sqlB, 'b'), drop(sqlDb, 'db')]);
});

/** Runs fn(); returns {rows} or {error}. A server that no longer answers fails the test. */
async function outcome(fn) {
  try {
    return { rows: await fn() };
  } catch (error) {
    assert.ok(error instanceof NeonDbError, `unexpected ${error?.constructor?.name}: ${error?.message}`);
    assert.ok(!/^Error connecting to database/.test(error.message), `the server stopped answering: ${error.message}`);
    return { error };
  }
}

/** Asserts that an outcome shows none of the named tenant's secret row. */
function assertNothingOf(result, name, what) {
  if (result.error) return; // refusing is fine
  const text = JSON.stringify(result.rows);
  assert.ok(!text.includes(secrets[name].external_id), `${what}: returned ${name}'s secret row: ${text.slice(0, 500)}`);
}

/** Asserts through the tenant's own connection that its secret row is exactly as seeded. */
async function assertSecretIntact(sql, name) {
  const rows = await sql`select id, external_id, email, display_name from users where external_id = ${secrets[name].external_id}`;
  assert.deepEqual(rows, [secrets[name]], `${name}'s secret row changed`);
  const [{ n }] = await sql`select count(*)::int as n from users where external_id like 'secret-%'`;
  assert.ok(n >= 1, `${name}'s users table lost its rows`);
}

const B = ident(b.schema);
const bUsers = `${B}.users`;
const bRole = ident(b.role);

describe("tenant a can never read or change tenant b's rows", () => {
  test("a's end user runs as a's own login; the app's token on the pool role's shared connection", TEST_OPTS, async () => {
    const who = 'select session_user::text as session, current_user::text as current';
    const [user] = await attackA.query(who);
    assert.deepEqual(user, { session: a.role, current: a.role });
    const [app] = await sqlA.query(who);
    assert.match(app.session, /^pgfleet_pool_/);
    assert.equal(app.current, a.role);
  });

  // Each attack: a list of requests (a string = one query; an array = one transaction batch).
  const attacks = {
    "select from b's schema by qualified name": [`select * from ${bUsers}`],
    "select b's rows through a subquery and a CTE": [`with x as (select * from ${bUsers}) select * from x`],
    "set role to b's role, then select in the next request": [`set role ${bRole}`, `select * from ${bUsers}`],
    "set role to b's role and select in one transaction": [[`set role ${bRole}`, `select * from ${bUsers}`, 'select * from users']],
    "set search_path to b's schema and select unqualified in one transaction": [[`set search_path to ${B}`, 'select * from users']],
    "set search_path to b's schema, then select unqualified in the next request": [`set search_path to ${B}, public`, 'select * from users'],
    'reset role, then select': [['reset role', `select * from ${bUsers}`]],
    "set_config('role', ...)": [[`select set_config('role', '${b.role.replaceAll("'", "''")}', false)`, `select * from ${bUsers}`]],
    "set_config('search_path', ...)": [[`select set_config('search_path', '${B.replaceAll("'", "''")}', false)`, 'select * from users']],
    "set session authorization to b's role": [[`set session authorization ${bRole}`, `select * from ${bUsers}`]],
    'set role none, then select': [['set role none', `select * from ${bUsers}`]],
    "set local role to b's role inside a transaction": [[`set local role ${bRole}`, 'select * from users', `select * from ${bUsers}`]],
    "update b's rows": [`update ${bUsers} set email = 'pwned@example.com' returning *`],
    "delete b's rows": [`delete from ${bUsers} returning *`],
    "insert into b's table": [`insert into ${bUsers} (external_id, email) values ('pwned', 'pwned@example.com') returning *`],
    "truncate b's table": [`truncate ${bUsers} cascade`],
    "lock b's table": [[`lock table ${bUsers} in access exclusive mode`, 'select 1']],
    "alter b's table": [`alter table ${bUsers} add column pwned int`],
    "drop b's table": [`drop table ${bUsers} cascade`],
    "create a table in b's schema": [`create table ${B}.pwned (x int)`],
    "grant b's table to a": [`grant select on ${bUsers} to current_user`],
    "copy b's rows": [`copy (select * from ${bUsers}) to stdout`],
    "read b's rows through query_to_xml": [`select query_to_xml('select * from ${bUsers.replaceAll("'", "''")}', true, false, '')::text as x`],
  };

  for (const [name, requests] of Object.entries(attacks)) {
    test(`${name}: refused or harmless`, TEST_OPTS, async () => {
      for (const request of requests) {
        const result = await outcome(() =>
          Array.isArray(request) ? attackA.transaction(request.map((q) => attackA.query(q))) : attackA.query(request),
        );
        assertNothingOf(result, 'b', `${name} (${JSON.stringify(request)})`);
      }
      // a's own view afterwards is a's: its secret row, none of b's.
      const mine = await sqlA.query('select external_id from users where external_id = any($1)', [[secrets.a.external_id, secrets.b.external_id]]);
      assert.deepEqual(mine, [{ external_id: secrets.a.external_id }], 'a sees its own row and not b');
      await assertSecretIntact(sqlB, 'b');
    });
  }

  test("the roles a's role is a member of give no way into b's schema", TEST_OPTS, async () => {
    const groups = await attackA`select r.rolname from pg_auth_members m join pg_roles r on r.oid = m.roleid where m.member = (select oid from pg_roles where rolname = current_user)`;
    for (const { rolname } of groups) {
      const result = await outcome(() =>
        attackA.transaction([attackA.query(`set role ${ident(rolname)}`), attackA.query(`select * from ${bUsers}`)]),
      );
      assertNothingOf(result, 'b', `set role ${rolname}`);
    }
    await assertSecretIntact(sqlB, 'b');
  });

  const optionCases = {
    "search_path of b's schema": `-c search_path=${b.schema}`,
    "role of b": `-c role=${b.role}`,
    'session authorization of b': `-c session_authorization=${b.role}`,
  };
  for (const [name, options] of Object.entries(optionCases)) {
    test(`connection-string options (${name}) do not reach b`, TEST_OPTS, async () => {
      const sql = neon(appUrl(a.key, { query: `options=${encodeURIComponent(options)}` }));
      for (const q of ['select * from users', `select * from ${bUsers}`]) {
        assertNothingOf(await outcome(() => sql.query(q)), 'b', `${options}: ${q}`);
      }
    });
  }

  test("a batch isolation-level header cannot inject SQL", TEST_OPTS, async () => {
    for (const level of [`Serializable; set role ${b.role}`, 'ReadCommitted, READ WRITE; drop table users', "Serializable'"]) {
      const res = await rawSql({
        body: { queries: [{ query: `select * from ${bUsers}`, params: [] }] },
        batch: { isolationLevel: level },
      });
      assertStatus(res, 400, '08P01', `isolation level ${JSON.stringify(level)}`);
    }
    await assertSecretIntact(sqlB, 'b');
    await assertSecretIntact(sqlA, 'a');
  });

  test("b's secret row is intact and b's table unchanged after every attack", TEST_OPTS, async () => {
    await assertSecretIntact(sqlB, 'b');
    const columns = await sqlB`select column_name from information_schema.columns where table_schema = current_schema() and table_name = 'users' order by ordinal_position`;
    assert.deepEqual(columns.map((c) => c.column_name), ['id', 'external_id', 'email', 'display_name', 'settings', 'created_at']);
    const [{ pwned }] = await sqlB`select to_regclass(${b.schema + '.pwned'})::text as pwned`;
    assert.equal(pwned, null, "no table was created in b's schema");
    // Checked once more through b's own direct connection, independent of pgfleet.
    const direct = await withPg(b.direct_url, async (c) => (await c.query('select email from users where external_id = $1', [secrets.b.external_id])).rows);
    assert.deepEqual(direct, [{ email: secrets.b.email }]);
  });
});

describe('nothing a request leaves behind is seen by the next request', () => {
  // The check runs several times: the next request may or may not land on the same pooled
  // server connection, and every one of them must look fresh.
  const CHECKS = 4;

  test('SET statement_timeout does not carry over', TEST_OPTS, async () => {
    await sqlA`set statement_timeout = '1234ms'`;
    for (let i = 0; i < CHECKS; i++) {
      const [{ statement_timeout }] = await sqlA`show statement_timeout`;
      assert.notEqual(statement_timeout, '1234ms');
    }
  });

  test('SET search_path does not carry over', TEST_OPTS, async () => {
    await sqlA`set search_path to pg_catalog`;
    for (let i = 0; i < CHECKS; i++) {
      const [{ search_path }] = await sqlA`show search_path`;
      assert.notEqual(search_path, 'pg_catalog');
      // Unqualified names still resolve to a's tables.
      const rows = await sqlA`select external_id from users where external_id = ${secrets.a.external_id}`;
      assert.equal(rows.length, 1);
    }
  });

  test('SET TimeZone does not carry over', TEST_OPTS, async () => {
    const [{ tz: before }] = await sqlA`select current_setting('TimeZone') as tz`;
    await sqlA`set timezone = 'Pacific/Chatham'`;
    for (let i = 0; i < CHECKS; i++) {
      const [{ tz }] = await sqlA`select current_setting('TimeZone') as tz`;
      assert.equal(tz, before);
    }
  });

  test('a custom setting set with set_config(..., false) does not carry over', TEST_OPTS, async () => {
    await sqlA`select set_config('pgfleet_test.leak', 'leaked', false)`;
    for (let i = 0; i < CHECKS; i++) {
      const [{ v }] = await sqlA`select current_setting('pgfleet_test.leak', true) as v`;
      assert.ok(v === null || v === '', `custom setting still set: ${v}`);
    }
  });

  test('a temporary table is gone in the next request (or could not be made)', TEST_OPTS, async () => {
    // Tenant roles hold no TEMPORARY privilege: a refusal (42501) is as good as a cleanup; what is
    // checked is that no later request sees one.
    const made = await outcome(() =>
      sqlA.transaction([sqlA`create temp table leak_probe (x int) on commit preserve rows`, sqlA`insert into leak_probe values (1)`]),
    );
    if (made.error) assert.ok(made.error.code, `create temp table failed without a SQLSTATE: ${made.error.message}`);
    for (let i = 0; i < CHECKS; i++) {
      const [{ t }] = await sqlA`select to_regclass('pg_temp.leak_probe')::text as t`;
      assert.equal(t, null, 'the temp table of an earlier request is visible');
    }
  });

  test('a prepared statement is gone in the next request', TEST_OPTS, async () => {
    await sqlA.query('prepare leak_stmt as select 1');
    for (let i = 0; i < CHECKS; i++) {
      const [{ n }] = await sqlA`select count(*)::int as n from pg_prepared_statements where name = 'leak_stmt'`;
      assert.equal(n, 0);
    }
  });

  test('a WITH HOLD cursor is gone in the next request', TEST_OPTS, async () => {
    await outcome(() => sqlA.query('declare leak_cursor cursor with hold for select 1'));
    for (let i = 0; i < CHECKS; i++) {
      const [{ n }] = await sqlA`select count(*)::int as n from pg_cursors where name = 'leak_cursor'`;
      assert.equal(n, 0);
    }
  });

  test('LISTEN does not carry over', TEST_OPTS, async () => {
    await outcome(() => sqlA.query('listen pgfleet_leak_channel'));
    for (let i = 0; i < CHECKS; i++) {
      const [{ n }] = await sqlA`select count(*)::int as n from pg_listening_channels() c where c = 'pgfleet_leak_channel'`;
      assert.equal(n, 0);
    }
  });

  test('a session advisory lock taken in one request is not held afterwards', TEST_OPTS, async () => {
    const key = 700_000_000 + Math.floor(Math.random() * 1_000_000);
    await sqlA`select pg_advisory_lock(${key}::bigint)`;
    const heldBy = `select count(*)::int as n from pg_locks where locktype = 'advisory' and classid = 0 and objid = $1::bigint::oid and granted`;
    for (let i = 0; i < CHECKS; i++) {
      // Nobody holds it (this session included): pg_try_advisory_lock would also succeed in the
      // session that still held it, so the lock table is asked first.
      const [{ n }] = await sqlA.query(heldBy, [key]);
      assert.equal(n, 0, 'the advisory lock of an earlier request is still held');
      const [{ got }] = await sqlA`select pg_try_advisory_lock(${key}::bigint) as got`;
      assert.equal(got, true, 'another request can take the lock');
    }
    // The lock just taken by the check is released too.
    const [{ n }] = await sqlA.query(heldBy, [key]);
    assert.equal(n, 0);
  });

  test('a transaction left open with BEGIN does not leak into the next request', TEST_OPTS, async () => {
    await outcome(() => sqlA.query('begin isolation level serializable read only'));
    await sleep(300);
    for (let i = 0; i < CHECKS; i++) {
      const [s] = await sqlA`select current_setting('transaction_isolation') as iso, current_setting('transaction_read_only') as ro, statement_timestamp() - transaction_timestamp() < interval '250 ms' as fresh`;
      assert.notEqual(s.iso, 'serializable', 'still in the serializable transaction of an earlier request');
      assert.equal(s.ro, 'off', 'still in the read-only transaction of an earlier request');
      assert.equal(s.fresh, true, 'the transaction started before this request');
    }
    // Writes work (no read-only transaction left around) and are committed.
    const id = uniq('iso-begin');
    await sqlA`insert into users (external_id, email) values (${id}, ${id + '@example.com'})`;
    const seen = await withPg(a.direct_url, async (c) => (await c.query('select count(*)::int as n from users where external_id = $1', [id])).rows[0].n);
    assert.equal(seen, 1, 'the insert after an abandoned BEGIN was committed');
    await sqlA`delete from users where external_id = ${id}`;
  });

  test('a transaction left open in a batch (BEGIN as its last query) does not leak', TEST_OPTS, async () => {
    const id = uniq('iso-batch-begin');
    await outcome(() =>
      sqlA.transaction([sqlA`commit`, sqlA`begin`, sqlA`insert into users (external_id, email) values (${id}, ${id + '@example.com'})`]),
    );
    // Whatever the server made of it, the insert is either committed or gone, never pending:
    // a direct connection and the next request agree.
    const direct = await withPg(a.direct_url, async (c) => (await c.query('select count(*)::int as n from users where external_id = $1', [id])).rows[0].n);
    const [{ n }] = await sqlA`select count(*)::int as n from users where external_id = ${id}`;
    assert.equal(n, direct, 'the next request sees uncommitted data of an earlier one');
    await sqlA`delete from users where external_id = ${id}`;
  });
});

describe('the database-mode tenant', () => {
  test('answers queries in its own database as its own role', TEST_OPTS, async () => {
    await assertReaches(sqlDb, dbTenant, 'the app token for db');
    const [{ database }] = await sqlDb`select current_database()::text as database`;
    assert.equal(database, dbTenant.database);
    const rows = await sqlDb`select external_id from users where external_id = ${secrets.db.external_id}`;
    assert.deepEqual(rows, [{ external_id: secrets.db.external_id }]);
  });

  test('a cannot reach db: database name in the connection string, cross-database names, search_path', TEST_OPTS, async () => {
    // The database in an app-token caller's connection string does not choose the tenant: the
    // request is refused or runs as a.
    const viaDbName = neon(appUrl(a.key, { database: dbTenant.database }));
    const who = await outcome(() => viaDbName.query(WHOAMI));
    if (who.rows) assert.deepEqual(who.rows[0], await expectedIdentity(a), "a with db's database name in its connection string");
    const attempts = [
      () => viaDbName.query('select * from users'),
      () => sqlA.query(`select * from ${ident(dbTenant.database)}.${ident(dbTenant.schema)}.users`),
      () => sqlA.transaction([sqlA.query(`set search_path to ${ident(dbTenant.schema)}`), sqlA.query('select * from users')]),
      () => neon(appUrl(a.key, { query: `options=${encodeURIComponent(`-c search_path=${dbTenant.schema}`)}` })).query('select * from users'),
    ];
    for (const attempt of attempts) assertNothingOf(await outcome(attempt), 'db', String(attempt));
    await assertSecretIntact(sqlDb, 'db');
  });

  test('db cannot reach a: a\'s schema and database by name', TEST_OPTS, async () => {
    const attempts = [
      () => sqlDb.query(`select * from ${ident(a.schema)}.users`),
      () => sqlDb.query(`select * from ${ident(a.database)}.${ident(a.schema)}.users`),
      () => neon(appUrl(dbTenant.key, { database: a.database })).query('select * from users'),
    ];
    for (const attempt of attempts) assertNothingOf(await outcome(attempt), 'a', String(attempt));
    await assertSecretIntact(sqlA, 'a');
  });
});
