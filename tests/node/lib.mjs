// Shared helpers of the real-client tests of pgfleet's POST /sql endpoint and of its PostgreSQL
// wire-protocol front door (`--pg-listen`, and the Neon driver's WebSocket transport at GET /v2).
//
// The Rust harness starts `pgfleet serve --sql-listen ADDR --pg-listen ADDR` and runs
//   node --test --test-concurrency=1 tests/node/
// with this environment (see README.md beside this file):
//
//   PGFLEET_SQL_ENDPOINT   full URL of the endpoint, e.g. http://127.0.0.1:40123/sql
//   PGFLEET_APP_TOKEN      an app token of scope `sql` (the tenant is named by the connection
//                          string's user)
//   PGFLEET_REVOKED_TOKEN  an app token that was revoked
//   PGFLEET_JWT_SECRET     HS256 shared secret (its UTF-8 bytes)
//   PGFLEET_JWT_ISSUER     expected `iss` (pgfleet-test)
//   PGFLEET_JWT_AUDIENCE   expected `aud` (pgfleet-app)
//   PGFLEET_TEST_KEYS      the OUTDIR of make-keys.mjs (RS256 kid rsa-1, EdDSA kid ed-1)
//   PGFLEET_TENANTS        JSON {"a": T, "b": T, "db": T},
//                          T = {key, mode: "schema"|"database", database, schema, direct_url}
//   PGFLEET_ADMIN_URL      a superuser URL of the server (to break a tenant for healing tests)
//   PGFLEET_PG_HOST        host of the --pg-listen front door (127.0.0.1; plain TCP, no TLS)
//   PGFLEET_PG_PORT        its port
//   PGFLEET_WS_PROXY       host:port of the --sql-listen listener plus /v2, without scheme, e.g.
//                          127.0.0.1:40123/v2: the Neon driver opens ws://PGFLEET_WS_PROXY
//                          (neonConfig.wsProxy as a function returning it verbatim, see neonWs)
//
// Importing this module points the Neon driver at the endpoint (neonConfig.fetchEndpoint).
// A missing variable fails every test file at once with a message naming it: a suite run without
// a server must fail, never skip.
import assert from 'node:assert/strict';
import { createHmac, createPrivateKey, randomBytes, sign as cryptoSign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';

import { Client as NeonClient, neon, neonConfig, NeonDbError, Pool as NeonPool } from '@neondatabase/serverless';
import pg from 'pg';
import ws from 'ws';

export { neon, neonConfig, NeonDbError, pg };

// ---------------------------------------------------------------------------------------------
// The environment contract

const REQUIRED = [
  'PGFLEET_SQL_ENDPOINT',
  'PGFLEET_APP_TOKEN',
  'PGFLEET_REVOKED_TOKEN',
  'PGFLEET_JWT_SECRET',
  'PGFLEET_JWT_ISSUER',
  'PGFLEET_JWT_AUDIENCE',
  'PGFLEET_TEST_KEYS',
  'PGFLEET_TENANTS',
  'PGFLEET_ADMIN_URL',
  'PGFLEET_PG_HOST',
  'PGFLEET_PG_PORT',
  'PGFLEET_WS_PROXY',
];

function loadEnv() {
  const missing = REQUIRED.filter((name) => !process.env[name]);
  if (missing.length > 0) {
    throw new Error(
      `pgfleet real-client tests: missing environment variable(s) ${missing.join(', ')}. ` +
        'These tests run against a live `pgfleet serve --sql-listen ... --pg-listen ...`; the Rust harness sets them ' +
        '(see tests/node/README.md).',
    );
  }
  let tenants;
  try {
    tenants = JSON.parse(process.env.PGFLEET_TENANTS);
  } catch (e) {
    throw new Error(`PGFLEET_TENANTS is not valid JSON: ${e.message}`);
  }
  for (const name of ['a', 'b', 'db']) {
    const t = tenants[name];
    assert.ok(t, `PGFLEET_TENANTS has no tenant "${name}"`);
    for (const field of ['key', 'mode', 'database', 'schema', 'direct_url']) {
      assert.equal(typeof t[field], 'string', `PGFLEET_TENANTS.${name}.${field} must be a string`);
    }
    // The tenant's own role is the user of its direct URL.
    t.role = decodeURIComponent(new URL(t.direct_url).username);
  }
  assert.equal(tenants.a.mode, 'schema', 'tenant a must be a schema-mode tenant');
  assert.equal(tenants.b.mode, 'schema', 'tenant b must be a schema-mode tenant');
  assert.equal(tenants.a.database, tenants.b.database, 'tenants a and b must share a database');
  assert.equal(tenants.db.mode, 'database', 'tenant db must be a database-mode tenant');
  const endpoint = new URL(process.env.PGFLEET_SQL_ENDPOINT);
  const pgPort = Number(process.env.PGFLEET_PG_PORT);
  assert.ok(
    Number.isInteger(pgPort) && pgPort > 0 && pgPort < 65536,
    `PGFLEET_PG_PORT must be a TCP port number, got ${JSON.stringify(process.env.PGFLEET_PG_PORT)}`,
  );
  const wsProxy = process.env.PGFLEET_WS_PROXY;
  assert.ok(
    !/^[a-z][a-z0-9+.-]*:\/\//i.test(wsProxy) && wsProxy.includes('/'),
    `PGFLEET_WS_PROXY must be host:port/path without a scheme (e.g. 127.0.0.1:40123/v2), got ${JSON.stringify(wsProxy)}`,
  );
  return {
    endpoint: endpoint.href,
    endpointUrl: endpoint,
    appToken: process.env.PGFLEET_APP_TOKEN,
    revokedToken: process.env.PGFLEET_REVOKED_TOKEN,
    jwtSecret: process.env.PGFLEET_JWT_SECRET,
    jwtIssuer: process.env.PGFLEET_JWT_ISSUER,
    jwtAudience: process.env.PGFLEET_JWT_AUDIENCE,
    keysDir: process.env.PGFLEET_TEST_KEYS,
    tenants,
    adminUrl: process.env.PGFLEET_ADMIN_URL,
    pgHost: process.env.PGFLEET_PG_HOST,
    pgPort,
    wsProxy,
  };
}

export const env = loadEnv();
export const tenants = env.tenants;

// Every driver call in the tests goes to pgfleet (a plain string is accepted by the driver).
neonConfig.fetchEndpoint = env.endpoint;

/** Per-test timeout: a hung server fails the test instead of hanging the run. */
export const TEST_OPTS = { timeout: 20_000 };

// ---------------------------------------------------------------------------------------------
// Connection strings and clients

/** The host in the connection strings: pgfleet ignores it (the endpoint is fetchEndpoint). */
export const FAKE_HOST = 'pgfleet.internal';

/**
 * The connection string of an app-token caller: the tenant key (URL-encoded) as user, the app
 * token as password. `query` is appended as is (e.g. "options=...").
 */
export function appUrl(tenantKey, { token = env.appToken, database = 'app', query } = {}) {
  const password = token === undefined || token === null ? '' : `:${encodeURIComponent(token)}`;
  const q = query ? `?${query}` : '';
  return `postgresql://${encodeURIComponent(tenantKey)}${password}@${FAKE_HOST}/${encodeURIComponent(database)}${q}`;
}

/** The connection string of a JWT caller: no password; the user is ignored by pgfleet. */
export function jwtUrl(user = 'user') {
  return `postgresql://${encodeURIComponent(user)}@${FAKE_HOST}/app`;
}

/** A Neon `sql` function for a tenant, authenticated with the app token. */
export function sqlFor(tenant, options = {}) {
  return neon(appUrl(tenant.key ?? tenant), options);
}

/** A Neon `sql` function authenticated with a JWT (the tenant is its `sub`). */
export function sqlWithJwt(jwt, { user = 'user', ...options } = {}) {
  return neon(jwtUrl(user), { ...options, authToken: jwt });
}

/** A connected node-postgres client; the caller must `await client.end()`. */
export async function pgConnect(url) {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await client.connect();
  return client;
}

/** Runs fn(client) with a fresh node-postgres client, always closing it. */
export async function withPg(url, fn) {
  const client = await pgConnect(url);
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** The superuser URL, pointed at one database of the server. */
export function adminUrlFor(database) {
  const u = new URL(env.adminUrl);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.href;
}

/** A quoted SQL identifier. */
export function ident(name) {
  return `"${String(name).replaceAll('"', '""')}"`;
}

/** A quoted SQL string literal. */
export function literal(value) {
  return `'${String(value).replaceAll("'", "''")}'`;
}

/** A short random suffix for rows a test creates (tests can be re-run against the same fleet). */
export function uniq(prefix = 't') {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// The PostgreSQL wire-protocol front door (--pg-listen) and its WebSocket transport (GET /v2)
//
// A wire client logs in with the tenant key as user name and, as cleartext password, either an app
// token (pgf_…; the tenant is the user name) or an end user's JWT (the user name must be its
// tenant, the `sub`). The database name is ignored. Plain TCP on loopback, no TLS.

/** Where the wire front door listens, and the Neon driver's WebSocket proxy address. */
export function wireEnv() {
  return { host: env.pgHost, port: env.pgPort, wsProxy: env.wsProxy };
}

const urlHost = (host) => (host.includes(':') && !host.startsWith('[') ? `[${host}]` : host);

/**
 * The connection string of a wire client: the tenant key (URL-encoded) as user, `password` (the
 * app token by default, or a JWT; URL-encoded) as password, PGFLEET_PG_HOST:PGFLEET_PG_PORT, no
 * TLS (sslmode=disable). `query` is appended as is (e.g. "application_name=x").
 */
export function pgUrl(tenantKey, password = env.appToken, { database = 'app', query } = {}) {
  const q = query ? `&${query}` : '';
  return (
    `postgresql://${encodeURIComponent(tenantKey)}:${encodeURIComponent(password)}` +
    `@${urlHost(env.pgHost)}:${env.pgPort}/${encodeURIComponent(database)}?sslmode=disable${q}`
  );
}

/** The node-postgres (or Neon Pool/Client) config of a wire client; `extra` is merged in. */
export function wireConfig(tenantKey, password = env.appToken, extra = {}) {
  return { connectionString: pgUrl(tenantKey, password), ssl: false, connectionTimeoutMillis: 10_000, ...extra };
}

/**
 * A connected node-postgres client on the wire front door; the caller must `await client.end()`.
 * Errors the server sends while no query runs are kept in `client.asyncErrors` (an unhandled
 * 'error' event would end the whole file).
 */
export async function wireConnect(tenantKey, password = env.appToken, extra = {}) {
  const client = new pg.Client(wireConfig(tenantKey, password, extra));
  client.asyncErrors = [];
  client.on('error', (err) => client.asyncErrors.push(err));
  await client.connect();
  return client;
}

/** Runs fn(client) with a fresh wire client, always closing it. */
export async function withWire(tenantKey, password, fn) {
  const client = await wireConnect(tenantKey, password);
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** A node-postgres pool on the wire front door (its 'error' events kept in `pool.asyncErrors`). */
export function wirePool(tenantKey, password = env.appToken, extra = {}) {
  const pool = new pg.Pool(wireConfig(tenantKey, password, { max: 10, ...extra }));
  pool.asyncErrors = [];
  pool.on('error', (err) => pool.asyncErrors.push(err));
  return pool;
}

/** The error of a wire login that must fail (the client is closed either way). */
export async function wireLoginError(tenantKey, password, what = 'the login') {
  const client = new pg.Client(wireConfig(tenantKey, password));
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => {});
    return err;
  }
  await client.end().catch(() => {});
  assert.fail(`${what} succeeded but was expected to fail`);
}

/**
 * The Neon driver's WebSocket transport, pointed at GET /v2 of the --sql-listen listener:
 * `ws` as WebSocket constructor (Node 20 has no global WebSocket); `wsProxy` a function that
 * returns PGFLEET_WS_PROXY verbatim, so the driver opens exactly ws://PGFLEET_WS_PROXY (a string
 * wsProxy would get `?address=HOST:PORT` appended); no TLS (ws:, no SSLRequest); the startup
 * message and the cleartext password pipelined (the driver's `pipelineConnect: 'password'`: it
 * sends the PasswordMessage without waiting for AuthenticationCleartextPassword and the first query
 * right after). Changes the process-wide neonConfig: for the wire tests only. Returns the driver's
 * { Pool, Client } (node-postgres compatible).
 */
export function neonWs() {
  neonConfig.webSocketConstructor = ws;
  neonConfig.wsProxy = (_host, _port) => env.wsProxy;
  neonConfig.useSecureWebSocket = false;
  neonConfig.forceDisablePgSSL = true;
  neonConfig.pipelineTLS = false;
  neonConfig.pipelineConnect = 'password';
  return { Pool: NeonPool, Client: NeonClient };
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP, exactly as the driver sends it (see /sql protocol notes in README.md)

/** The headers the Neon driver sends for one request. */
export function driverHeaders({ connString, authToken, batch } = {}) {
  const headers = {
    ...(connString != null ? { 'Neon-Connection-String': connString } : {}), // null: no header
    'Neon-Raw-Text-Output': 'true',
    'Neon-Array-Mode': 'true',
    'Content-Type': 'text/plain;charset=UTF-8',
  };
  if (authToken !== undefined) headers.Authorization = `Bearer ${authToken}`;
  if (batch?.isolationLevel !== undefined) headers['Neon-Batch-Isolation-Level'] = batch.isolationLevel;
  if (batch?.readOnly !== undefined) headers['Neon-Batch-Read-Only'] = String(batch.readOnly);
  if (batch?.deferrable !== undefined) headers['Neon-Batch-Deferrable'] = String(batch.deferrable);
  return headers;
}

/**
 * POST /sql with fetch. `body` is an object (sent as JSON) or a string (sent as is).
 * Default credentials: the app token for tenant a. Resolves to {status, headers, text, json}
 * (json undefined when the body is not JSON).
 */
export async function rawSql({
  body = { query: 'select 1 as one', params: [] },
  connString = appUrl(tenants.a.key),
  authToken,
  batch,
  headers = {},
  signal,
} = {}) {
  const res = await fetch(env.endpoint, {
    method: 'POST',
    headers: { ...driverHeaders({ connString, authToken, batch }), ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal,
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/**
 * POST /sql with node:http, for bodies the server may refuse before reading them all: sends the
 * headers (with Content-Length) first, then the body in chunks, and stops writing as soon as a
 * response arrives. Resolves to {status, headers, text} or rejects when the connection failed
 * before any response.
 */
export function httpPostLarge({ headers, body, chunkSize = 64 * 1024 }) {
  const url = env.endpointUrl;
  const payload = Buffer.isBuffer(body) ? body : Buffer.from(body);
  return new Promise((resolve, reject) => {
    let settled = false;
    let responded = false;
    const req = http.request(
      {
        host: url.hostname,
        port: url.port || 80,
        path: url.pathname + url.search,
        method: 'POST',
        headers: { ...headers, 'Content-Length': payload.length, Connection: 'close' },
      },
      (res) => {
        responded = true;
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          settled = true;
          resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString() });
        });
        res.on('error', () => {
          if (!settled) {
            settled = true;
            resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString() });
          }
        });
      },
    );
    req.on('error', (err) => {
      // A server that answered early and closed makes the remaining writes fail: that is fine.
      if (!responded && !settled) {
        settled = true;
        reject(new Error(`connection failed before any response: ${err.message}`));
      }
    });
    req.flushHeaders();
    let offset = 0;
    const writeMore = () => {
      while (offset < payload.length && !responded && !req.destroyed) {
        const chunk = payload.subarray(offset, offset + chunkSize);
        offset += chunk.length;
        if (!req.write(chunk)) {
          req.once('drain', writeMore);
          return;
        }
      }
      if (!responded && !req.destroyed) req.end();
    };
    // Give a server that decides on Content-Length alone a moment to answer before the body.
    setTimeout(writeMore, 100);
  });
}

// ---------------------------------------------------------------------------------------------
// Assertions on errors

/** Awaits a promise that must reject; returns the error. */
export async function rejection(promise, what = 'the request') {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail(`${what} succeeded but was expected to fail`);
}

/** The PostgreSQL error code of a driver (or Drizzle-wrapped) error. */
export function pgCode(err) {
  return err?.code ?? err?.cause?.code;
}

/** Asserts that a Neon driver error carries the PostgreSQL error code (an HTTP 400 body). */
export function assertDbError(err, code, what = 'the error') {
  assert.ok(
    err instanceof NeonDbError || err?.cause instanceof NeonDbError,
    `${what}: expected a NeonDbError, got ${err?.constructor?.name}: ${err?.message}`,
  );
  assert.equal(pgCode(err), code, `${what}: expected SQLSTATE ${code}, got ${pgCode(err)} (${err?.message})`);
}

/** Asserts that a driver error is the driver's report of a non-400 HTTP status. */
export function assertHttpError(err, status, what = 'the error') {
  assert.ok(err instanceof NeonDbError, `${what}: expected a NeonDbError, got ${err?.constructor?.name}: ${err?.message}`);
  assert.match(err.message, new RegExp(`HTTP status ${status}\\b`), `${what}: expected HTTP status ${status}`);
}

/** Asserts a raw response's status and (when given) the `code` of its JSON body. */
export function assertStatus(res, status, code, what = 'the response') {
  assert.equal(res.status, status, `${what}: expected HTTP ${status}, got ${res.status}: ${res.text.slice(0, 300)}`);
  if (code !== undefined) {
    assert.ok(res.json && typeof res.json === 'object', `${what}: body is not a JSON object: ${res.text.slice(0, 300)}`);
    assert.equal(res.json.code, code, `${what}: expected code ${code} in ${res.text.slice(0, 300)}`);
    assert.equal(typeof res.json.message, 'string', `${what}: the JSON body has no message`);
  }
}

// ---------------------------------------------------------------------------------------------
// JWTs, hand-rolled (RFC 7519 compact serialization) with node:crypto

export const b64url = (input) => Buffer.from(input).toString('base64url');
export const b64urlJson = (value) => b64url(JSON.stringify(value));
export const nowSeconds = () => Math.floor(Date.now() / 1000);

let keyCache;
/** The test keys written by make-keys.mjs (PGFLEET_TEST_KEYS). */
export function testKeys() {
  if (!keyCache) {
    const read = (name) => readFileSync(join(env.keysDir, name), 'utf8');
    keyCache = {
      rsaPrivatePem: read('rsa.key.pem'),
      rsaPublicPem: read('rsa.pub.pem'),
      edPrivatePem: read('ed.key.pem'),
      jwks: JSON.parse(read('jwks.json')),
    };
  }
  return keyCache;
}

/** The registered claims of a good token for `sub`; `overrides` replace or (as undefined) drop. */
export function claims(sub, overrides = {}) {
  const now = nowSeconds();
  const base = { sub, iss: env.jwtIssuer, aud: env.jwtAudience, iat: now, exp: now + 300 };
  const out = { ...base, ...overrides };
  for (const [k, v] of Object.entries(out)) if (v === undefined) delete out[k];
  return out;
}

/**
 * Signs a JWT. alg: 'HS256' (key: the secret, default PGFLEET_JWT_SECRET), 'RS256' (key: a
 * private key PEM or KeyObject, default rsa.key.pem), 'EdDSA' (default ed.key.pem), 'none'
 * (no signature). `header` adds or overrides header fields (e.g. kid, or a lying alg).
 */
export function signJwt(payload, { alg = 'HS256', key, kid, header = {} } = {}) {
  const head = { alg, typ: 'JWT', ...(kid !== undefined ? { kid } : {}), ...header };
  const signingInput = `${b64urlJson(head)}.${typeof payload === 'string' ? b64url(payload) : b64urlJson(payload)}`;
  return `${signingInput}.${signature(signingInput, alg, key)}`;
}

/** The base64url signature of `signingInput` with `alg`. */
export function signature(signingInput, alg, key) {
  switch (alg) {
    case 'HS256':
      return createHmac('sha256', key ?? Buffer.from(env.jwtSecret, 'utf8'))
        .update(signingInput)
        .digest('base64url');
    case 'RS256':
      return cryptoSign('sha256', Buffer.from(signingInput), asPrivateKey(key ?? testKeys().rsaPrivatePem)).toString('base64url');
    case 'EdDSA':
      return cryptoSign(null, Buffer.from(signingInput), asPrivateKey(key ?? testKeys().edPrivatePem)).toString('base64url');
    case 'none':
    case 'None':
    case 'NONE':
      return '';
    default:
      throw new Error(`signJwt: unsupported alg ${alg}`);
  }
}

const asPrivateKey = (key) => (typeof key === 'string' || Buffer.isBuffer(key) ? createPrivateKey(key) : key);

/** Good tokens of each kind the server accepts, for `sub`. */
export const goodJwt = {
  hs256: (sub, overrides) => signJwt(claims(sub, overrides), { alg: 'HS256' }),
  rs256: (sub, overrides) => signJwt(claims(sub, overrides), { alg: 'RS256', kid: 'rsa-1' }),
  eddsa: (sub, overrides) => signJwt(claims(sub, overrides), { alg: 'EdDSA', kid: 'ed-1' }),
};

// ---------------------------------------------------------------------------------------------
// Who answered: the identity of the session a request ran in

export const WHOAMI = 'select current_user::text as role, current_database()::text as database, current_schema()::text as schema';

const identityCache = new Map();
/** The identity a tenant's own direct connection has (node-postgres, PGFLEET_TENANTS direct_url). */
export async function expectedIdentity(tenant) {
  if (!identityCache.has(tenant.key)) {
    const rows = await withPg(tenant.direct_url, async (c) => (await c.query(WHOAMI)).rows);
    identityCache.set(tenant.key, rows[0]);
  }
  return identityCache.get(tenant.key);
}

/** Asserts that `sql` (a Neon sql function) reaches `tenant`. */
export async function assertReaches(sql, tenant, what = 'the caller') {
  const [got] = await sql.query(WHOAMI);
  assert.deepEqual(got, await expectedIdentity(tenant), `${what} should reach tenant ${tenant.key}`);
}

// ---------------------------------------------------------------------------------------------
// Comparing parsed values across two copies of pg-types

/**
 * A canonical form of a parsed value: the Neon driver bundles its own copy of pg-types, so equal
 * values can have different prototypes (PostgresInterval) and deepStrictEqual would tell them
 * apart. Dates, byte arrays and class instances are turned into tagged plain objects; NaN and -0
 * stay numbers (deepStrictEqual compares those with Object.is).
 */
export function canon(value) {
  if (value === null || value === undefined) return value;
  if (value instanceof Date) return { $date: Number.isNaN(value.getTime()) ? 'Invalid Date' : value.toISOString() };
  if (value instanceof Uint8Array) return { $bytes: Buffer.from(value).toString('hex') };
  if (Array.isArray(value)) return value.map(canon);
  if (typeof value === 'object') {
    const proto = Object.getPrototypeOf(value);
    const tag = proto === Object.prototype || proto === null ? undefined : value.constructor?.name;
    const out = tag ? { $class: tag } : {};
    for (const [k, v] of Object.entries(value)) out[k] = canon(v);
    return out;
  }
  return value;
}

/** The fields of a result, as plain objects with the keys both drivers report. */
export function fieldInfo(fields) {
  return fields.map((f) => ({
    name: f.name,
    tableID: f.tableID,
    columnID: f.columnID,
    dataTypeID: f.dataTypeID,
    dataTypeSize: f.dataTypeSize,
    dataTypeModifier: f.dataTypeModifier,
    format: f.format,
  }));
}
