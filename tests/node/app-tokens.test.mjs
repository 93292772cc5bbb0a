// App-token callers of POST /sql: the backend's token as the connection string's password, the
// tenant key (URL-encoded) as its user. A revoked, wrong or missing token is a 401 (code 28000);
// a valid token naming a tenant that does not exist is a 404 (code 3D000).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  appUrl,
  assertHttpError,
  assertReaches,
  assertStatus,
  env,
  FAKE_HOST,
  neon,
  rawSql,
  rejection,
  TEST_OPTS,
  tenants,
} from './lib.mjs';

const { a, b } = tenants;
const query = { query: 'select 1 as one', params: [] };

/** A token of the same shape as the real one, with its last character changed. */
function alteredToken() {
  const t = env.appToken;
  return t.slice(0, -1) + (t.at(-1) === 'A' ? 'B' : 'A');
}

test('the app token reaches the tenant named by the connection string user', TEST_OPTS, async () => {
  await assertReaches(neon(appUrl(a.key)), a, 'app token, user = a');
  await assertReaches(neon(appUrl(b.key)), b, 'app token, user = b');
  await assertReaches(neon(appUrl(tenants.db.key)), tenants.db, 'app token, user = db');
});

test('the host, port, scheme and query parameters of the connection string do not matter', TEST_OPTS, async () => {
  const user = encodeURIComponent(a.key);
  const token = encodeURIComponent(env.appToken);
  for (const url of [
    `postgresql://${user}:${token}@elsewhere.example.com:6543/app`,
    `postgres://${user}:${token}@${FAKE_HOST}/app?sslmode=require&application_name=my-app`,
  ]) {
    await assertReaches(neon(url), a, url.replace(token, '***'));
  }
});

test('a revoked app token is refused with 401 (code 28000)', TEST_OPTS, async () => {
  const res = await rawSql({ connString: appUrl(a.key, { token: env.revokedToken }), body: query });
  assertStatus(res, 401, '28000', 'revoked token');
  const err = await rejection(neon(appUrl(a.key, { token: env.revokedToken }))`select 1`);
  assertHttpError(err, 401, 'revoked token through the driver');
});

test('a wrong app token is refused with 401 (code 28000)', TEST_OPTS, async () => {
  for (const token of [alteredToken(), 'pgf_this-token-does-not-exist', 'not-even-a-pgf-token', env.appToken + 'x', env.appToken.slice(0, 8)]) {
    const res = await rawSql({ connString: appUrl(a.key, { token }), body: query });
    assertStatus(res, 401, '28000', `token ${JSON.stringify(token.slice(0, 12))}...`);
  }
});

test('a connection string without a password (and no bearer token) is refused with 401', TEST_OPTS, async () => {
  const res = await rawSql({ connString: appUrl(a.key, { token: null }), body: query });
  assertStatus(res, 401, '28000', 'no password');
  const err = await rejection(neon(appUrl(a.key, { token: null }))`select 1`);
  assertHttpError(err, 401, 'no password through the driver');
});

test('an empty password is refused with 401', TEST_OPTS, async () => {
  const res = await rawSql({ connString: `postgresql://${encodeURIComponent(a.key)}:@${FAKE_HOST}/app`, body: query });
  assertStatus(res, 401, '28000', 'empty password');
});

test('a request without the Neon-Connection-String header is refused, never served', TEST_OPTS, async () => {
  const res = await rawSql({ connString: null, body: query });
  assert.ok([400, 401].includes(res.status), `expected 400 or 401, got ${res.status}: ${res.text.slice(0, 200)}`);
});

test('a valid app token for a tenant that does not exist is a 404 with code 3D000', TEST_OPTS, async () => {
  const res = await rawSql({ connString: appUrl(`no-such-tenant-${Date.now()}`), body: query });
  assertStatus(res, 404, '3D000', 'unknown tenant');
  const err = await rejection(neon(appUrl('no-such-tenant-either'))`select 1`);
  assertHttpError(err, 404, 'unknown tenant through the driver');
  assert.match(err.message, /3D000/);
});

test('a wrong token naming an unknown tenant is a 401, not a 404 (tenants are not revealed)', TEST_OPTS, async () => {
  for (const token of [alteredToken(), env.revokedToken]) {
    const res = await rawSql({ connString: appUrl(`no-such-tenant-${Date.now()}`, { token }), body: query });
    assertStatus(res, 401, '28000', 'bad token, unknown tenant');
  }
});

test('a tenant key with URL-special characters is decoded, not taken literally', TEST_OPTS, async () => {
  // Percent-encoded characters of a key that does not exist: still a clean 404, no 400 or 500.
  const res = await rawSql({ connString: appUrl('no such/tenant@ü:%'), body: query });
  assertStatus(res, 404, '3D000', 'unknown tenant with special characters');
});
