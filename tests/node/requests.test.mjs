// The HTTP side of POST /sql, with raw requests: malformed bodies and headers (400, code 08P01),
// the body size limit (413 over 10 MiB), the body read timeout (408 or a closed connection for a
// body that stalls), and the per-tenant concurrency limit (429 with Retry-After). Credentials are
// always valid (tenant a, app token), so each refusal is about the request itself.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';

import {
  appUrl,
  assertStatus,
  driverHeaders,
  env,
  httpPostLarge,
  rawSql,
  sqlFor,
  TEST_OPTS,
  tenants,
} from './lib.mjs';

const { a, b } = tenants;
const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Per-tenant concurrency (first: nothing else of this file is still running on the server)

test('12 concurrent requests of one tenant over its limit of 4: some 429 with Retry-After, the rest 200', { timeout: 30_000 }, async () => {
  const started = Date.now();
  const responses = await Promise.all(
    Array.from({ length: 12 }, () => rawSql({ body: { query: 'select pg_sleep(0.5)', params: [] } })),
  );
  const statuses = responses.map((r) => r.status);
  const ok = responses.filter((r) => r.status === 200);
  const limited = responses.filter((r) => r.status === 429);
  assert.equal(ok.length + limited.length, 12, `only 200 and 429 expected, got ${statuses}`);
  assert.ok(limited.length >= 1, `no request was limited: ${statuses}`);
  assert.ok(ok.length >= 4, `fewer than 4 requests (the limit) were served: ${statuses}`);
  for (const r of limited) {
    const retryAfter = r.headers.get('retry-after');
    assert.ok(retryAfter, '429 without a Retry-After header');
    assert.ok(/^\d+$/.test(retryAfter) || !Number.isNaN(Date.parse(retryAfter)), `Retry-After is neither seconds nor a date: ${retryAfter}`);
  }
  for (const r of ok) assert.equal(r.json?.rows?.length, 1, `a served request has its one row: ${r.text.slice(0, 200)}`);
  assert.ok(Date.now() - started < 10_000, 'the limited requests were answered at once, not queued for long');
});

test("one tenant at its limit does not limit another tenant", { timeout: 30_000 }, async () => {
  const busyA = Array.from({ length: 6 }, () => rawSql({ body: { query: 'select pg_sleep(0.5)', params: [] } }));
  // While a is saturated, b's requests are served.
  const bResults = await Promise.all(
    Array.from({ length: 3 }, () => rawSql({ connString: appUrl(b.key), body: { query: 'select 1 as one', params: [] } })),
  );
  await Promise.all(busyA);
  assert.deepEqual(bResults.map((r) => r.status), [200, 200, 200]);
});

test('after a burst is over the tenant is served again', TEST_OPTS, async () => {
  const res = await rawSql();
  assertStatus(res, 200, undefined, 'the request after the burst');
  assert.deepEqual(res.json.rows, [['1']]);
});

// ---------------------------------------------------------------------------------------------
// Malformed requests: 400 with code 08P01

test('a body that is not JSON is a 400 with code 08P01', TEST_OPTS, async () => {
  for (const body of ['not json', '{"query": "select 1"', '', '\u0000']) {
    assertStatus(await rawSql({ body }), 400, '08P01', `body ${JSON.stringify(body)}`);
  }
});

test('{"query": 1} is a 400 with code 08P01', TEST_OPTS, async () => {
  assertStatus(await rawSql({ body: { query: 1 } }), 400, '08P01');
});

test('{"queries": "x"} is a 400 with code 08P01', TEST_OPTS, async () => {
  assertStatus(await rawSql({ body: { queries: 'x' } }), 400, '08P01');
});

test('other wrong shapes are a 400 with code 08P01', TEST_OPTS, async () => {
  const shapes = [
    {},
    [],
    'just a string',
    { query: null },
    { query: 'select $1', params: 'x' },
    { query: 'select $1', params: { a: 1 } },
    { queries: [{ query: 1 }] },
    { queries: [1, 2] },
  ];
  for (const shape of shapes) {
    assertStatus(await rawSql({ body: JSON.stringify(shape) }), 400, '08P01', `body ${JSON.stringify(shape)}`);
  }
});

test('an unknown Neon-Batch-Isolation-Level is a 400 with code 08P01', TEST_OPTS, async () => {
  const body = { queries: [{ query: 'select 1', params: [] }] };
  for (const level of ['Chaos', 'Snapshot', 'Serializable; select 1']) {
    assertStatus(await rawSql({ body, batch: { isolationLevel: level } }), 400, '08P01', `isolation level ${JSON.stringify(level)}`);
  }
  // The four levels the driver sends are accepted.
  for (const level of ['ReadUncommitted', 'ReadCommitted', 'RepeatableRead', 'Serializable']) {
    assertStatus(await rawSql({ body, batch: { isolationLevel: level, readOnly: false, deferrable: false } }), 200, undefined, level);
  }
});

test('a well-formed request with the same headers is a 200 in the driver\'s format', TEST_OPTS, async () => {
  const res = await rawSql({ body: { query: 'select $1::int as n, $2::text as t', params: ['7', null] } });
  assertStatus(res, 200);
  assert.equal(res.json.command, 'SELECT');
  assert.equal(res.json.rowCount, 1);
  assert.deepEqual(res.json.rows, [['7', null]], 'values as PostgreSQL text, rows as arrays (Neon-Array-Mode)');
  assert.deepEqual(
    res.json.fields.map((f) => [f.name, f.dataTypeID, f.format]),
    [['n', 23, 'text'], ['t', 25, 'text']],
  );
  const batch = await rawSql({ body: { queries: [{ query: 'select 1 as a', params: [] }, { query: 'select 2 as b', params: [] }] } });
  assertStatus(batch, 200);
  assert.deepEqual(batch.json.results.map((r) => r.rows), [[['1']], [['2']]]);
});

// ---------------------------------------------------------------------------------------------
// Body size: --sql-max-body (10 MiB)

/** A JSON request body of about `size` bytes: one large text parameter. */
function bodyOfSize(size) {
  const prefix = '{"query":"select length($1) as n","params":["';
  const suffix = '"]}';
  return prefix + 'x'.repeat(size - prefix.length - suffix.length) + suffix;
}

test('a body over 10 MiB is refused with 413', { timeout: 30_000 }, async () => {
  const res = await httpPostLarge({
    headers: driverHeaders({ connString: appUrl(a.key) }),
    body: bodyOfSize(10 * MiB + 64 * 1024),
  });
  assert.equal(res.status, 413, `expected 413, got ${res.status}: ${res.text.slice(0, 200)}`);
});

test('a body just under 10 MiB is accepted', { timeout: 30_000 }, async () => {
  const size = 10 * MiB - 64 * 1024;
  const res = await httpPostLarge({ headers: driverHeaders({ connString: appUrl(a.key) }), body: bodyOfSize(size) });
  assert.equal(res.status, 200, `expected 200, got ${res.status}: ${res.text.slice(0, 200)}`);
  const n = Number(JSON.parse(res.text).rows[0][0]);
  assert.ok(n > size - 100 && n < size, `the parameter arrived whole (${n} characters)`);
});

// ---------------------------------------------------------------------------------------------
// Body read timeout (2 s): a client that sends part of its body and stalls

test('a body that stalls is answered with 408 or the connection is closed, within 5 s', { timeout: 15_000 }, async () => {
  const url = env.endpointUrl;
  const headers = { ...driverHeaders({ connString: appUrl(b.key) }), Host: url.host, 'Content-Length': '100' };
  const head = `POST ${url.pathname} HTTP/1.1\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n`;
  const started = Date.now();
  const outcome = await new Promise((resolve, reject) => {
    const socket = net.connect({ host: url.hostname, port: Number(url.port || 80) });
    let data = '';
    const giveUp = setTimeout(() => {
      socket.destroy();
      resolve({ timedOut: true, data });
    }, 6_000);
    socket.on('connect', () => socket.write(head + '{"query":"') /* 10 of the 100 bytes */);
    socket.on('data', (chunk) => {
      data += chunk.toString('latin1');
    });
    socket.on('close', () => {
      clearTimeout(giveUp);
      resolve({ closed: true, data });
    });
    socket.on('error', (err) => {
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') return; // followed by 'close'
      clearTimeout(giveUp);
      reject(err);
    });
  });
  const elapsed = Date.now() - started;
  assert.ok(!outcome.timedOut, `the server neither answered nor closed the connection in 6 s (got ${JSON.stringify(outcome.data.slice(0, 100))})`);
  assert.ok(elapsed < 5_000, `took ${elapsed} ms`);
  if (outcome.data.length > 0) {
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(outcome.data)?.[1]);
    assert.equal(status, 408, `expected 408, got: ${outcome.data.slice(0, 200)}`);
  }
  // The tenant is still served.
  assert.deepEqual(await sqlFor(b)`select 1 as ok`, [{ ok: 1 }]);
});
