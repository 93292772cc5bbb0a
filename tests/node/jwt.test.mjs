// JWT callers of POST /sql: `neon("postgresql://user@host/app", { authToken: jwt })`. The tenant is
// the token's `sub`; HS256 (PGFLEET_JWT_SECRET), RS256 (kid rsa-1) and EdDSA (kid ed-1) from the
// JWKS are accepted; `exp` is required, `nbf` honoured, 30 s leeway, `iss` and `aud` enforced,
// tokens over 8 KiB refused. Every forged, broken or expired token is a 401 with code 28000.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, test } from 'node:test';

import {
  assertHttpError,
  assertReaches,
  assertStatus,
  b64urlJson,
  claims,
  goodJwt,
  jwtUrl,
  nowSeconds,
  rawSql,
  rejection,
  signJwt,
  sqlWithJwt,
  TEST_OPTS,
  tenants,
  testKeys,
} from './lib.mjs';

const { a, b, db: dbTenant } = tenants;

/** POST /sql as a JWT caller (the driver's headers), returning the raw response. */
const asJwt = (jwt, { user = 'user', query = 'select 1 as one' } = {}) =>
  rawSql({ connString: jwtUrl(user), authToken: jwt, body: { query, params: [] } });

/** A good HS256 token for `sub`, padded with an extra claim to `length` (to +3) characters. */
function hs256OfLength(sub, length) {
  let pad = 'x'.repeat(Math.max(0, Math.floor((length * 3) / 4) - 300)); // base64url: 4 chars per 3 bytes
  while (goodJwt.hs256(sub, { pad }).length < length) pad += 'x';
  return goodJwt.hs256(sub, { pad });
}

describe('good tokens reach the tenant named by sub', () => {
  test('HS256 with the shared secret reaches tenant a', TEST_OPTS, async () => {
    await assertReaches(sqlWithJwt(goodJwt.hs256(a.key)), a, 'HS256 sub=a');
  });

  test('RS256 with kid rsa-1 reaches tenant b', TEST_OPTS, async () => {
    await assertReaches(sqlWithJwt(goodJwt.rs256(b.key)), b, 'RS256 sub=b');
  });

  test('EdDSA with kid ed-1 reaches the database-mode tenant', TEST_OPTS, async () => {
    await assertReaches(sqlWithJwt(goodJwt.eddsa(dbTenant.key)), dbTenant, 'EdDSA sub=db');
  });

  test('every algorithm reaches every tenant it names', TEST_OPTS, async () => {
    for (const [alg, sign] of Object.entries(goodJwt)) {
      for (const tenant of [a, b, dbTenant]) {
        await assertReaches(sqlWithJwt(sign(tenant.key)), tenant, `${alg} sub=${tenant.key}`);
      }
    }
  });

  test("a connection string naming another tenant does not change the token's tenant", TEST_OPTS, async () => {
    await assertReaches(sqlWithJwt(goodJwt.hs256(a.key), { user: b.key }), a, 'sub=a, user=b');
    await assertReaches(sqlWithJwt(goodJwt.rs256(b.key), { user: a.key }), b, 'sub=b, user=a');
  });

  test('a JWT caller runs transactions with the batch headers honoured', TEST_OPTS, async () => {
    const sql = sqlWithJwt(goodJwt.eddsa(a.key));
    const [[iso], [who]] = await sql.transaction(
      [sql`select current_setting('transaction_isolation') as v`, sql`select current_user::text as u`],
      { isolationLevel: 'RepeatableRead', readOnly: true },
    );
    assert.equal(iso.v, 'repeatable read');
    assert.equal(who.u, a.role);
  });

  test('an exp 10 s in the past is still accepted (30 s leeway)', TEST_OPTS, async () => {
    await assertReaches(sqlWithJwt(goodJwt.hs256(a.key, { exp: nowSeconds() - 10 })), a, 'exp = now - 10');
  });

  test('an nbf 10 s in the future is already accepted (30 s leeway), a past nbf too', TEST_OPTS, async () => {
    await assertReaches(sqlWithJwt(goodJwt.rs256(a.key, { nbf: nowSeconds() + 10 })), a, 'nbf = now + 10');
    await assertReaches(sqlWithJwt(goodJwt.rs256(a.key, { nbf: nowSeconds() - 60 })), a, 'nbf = now - 60');
  });

  test('an aud array that contains the audience is accepted', TEST_OPTS, async () => {
    const jwt = goodJwt.hs256(a.key, { aud: ['someone-else', claims(a.key).aud] });
    await assertReaches(sqlWithJwt(jwt), a, 'aud = [other, audience]');
  });

  test('extra claims and an iat are ignored', TEST_OPTS, async () => {
    const jwt = goodJwt.eddsa(a.key, { iat: nowSeconds() - 5, email: 'x@example.com', role: 'admin', jti: 'j1' });
    await assertReaches(sqlWithJwt(jwt), a, 'extra claims');
  });

  test('a token just under 8 KiB is accepted', TEST_OPTS, async () => {
    const jwt = hs256OfLength(a.key, 8000);
    assert.ok(jwt.length >= 8000 && jwt.length < 8192, `token length ${jwt.length}`);
    await assertReaches(sqlWithJwt(jwt), a, `${jwt.length}-character token`);
  });
});

describe('every bad token is refused with 401 (code 28000)', () => {
  const sub = a.key;
  const rsaPublicPem = () => testKeys().rsaPublicPem;

  const bad = {
    'alg none without a signature': () => signJwt(claims(sub), { alg: 'none' }),
    'alg NONE without a signature': () => signJwt(claims(sub), { alg: 'NONE' }),
    'alg none with the HS256 signature kept': () => {
      const good = goodJwt.hs256(sub).split('.');
      return [b64urlJson({ alg: 'none', typ: 'JWT' }), good[1], good[2]].join('.');
    },
    'HS256 signed with the RSA public key PEM as the secret (kid rsa-1)': () =>
      signJwt(claims(sub), { alg: 'HS256', kid: 'rsa-1', key: rsaPublicPem() }),
    'HS256 signed with the RSA public key PEM as the secret (no kid)': () =>
      signJwt(claims(sub), { alg: 'HS256', key: rsaPublicPem() }),
    'HS256 signed with a wrong secret': () => signJwt(claims(sub), { alg: 'HS256', key: 'not-the-secret' }),
    'HS256 signed with the secret plus one byte': () =>
      signJwt(claims(sub), { alg: 'HS256', key: `${process.env.PGFLEET_JWT_SECRET}x` }),
    'RS256 signed by a key that is not in the JWKS (kid rsa-1)': () =>
      signJwt(claims(sub), { alg: 'RS256', kid: 'rsa-1', key: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey }),
    'EdDSA signed by a key that is not in the JWKS (kid ed-1)': () =>
      signJwt(claims(sub), { alg: 'EdDSA', kid: 'ed-1', key: generateKeyPairSync('ed25519').privateKey }),
    'RS256 with an unknown kid': () => signJwt(claims(sub), { alg: 'RS256', kid: 'rsa-404' }),
    'EdDSA with an unknown kid': () => signJwt(claims(sub), { alg: 'EdDSA', kid: 'nope' }),
    'EdDSA signature presented under the RSA kid': () => signJwt(claims(sub), { alg: 'EdDSA', kid: 'rsa-1' }),
    'RS256 signature presented under the Ed25519 kid': () => signJwt(claims(sub), { alg: 'RS256', kid: 'ed-1' }),
    'RS256 signature with the header claiming RS512': () =>
      signJwt(claims(sub), { alg: 'RS256', kid: 'rsa-1', header: { alg: 'RS512' } }),
    'expired 2 minutes ago (beyond the leeway)': () => goodJwt.hs256(sub, { exp: nowSeconds() - 120 }),
    'expired long ago': () => goodJwt.rs256(sub, { iat: 1_000_000_000, exp: 1_000_000_600 }),
    'exp as a string': () => goodJwt.hs256(sub, { exp: String(nowSeconds() + 600) }),
    'exp missing': () => goodJwt.hs256(sub, { exp: undefined }),
    'nbf 2 minutes in the future (beyond the leeway)': () => goodJwt.eddsa(sub, { nbf: nowSeconds() + 120 }),
    'wrong iss': () => goodJwt.hs256(sub, { iss: 'someone-else' }),
    'iss missing': () => goodJwt.hs256(sub, { iss: undefined }),
    'wrong aud': () => goodJwt.rs256(sub, { aud: 'another-app' }),
    'aud missing': () => goodJwt.rs256(sub, { aud: undefined }),
    'sub missing': () => goodJwt.hs256(sub, { sub: undefined }),
    'sub a number': () => goodJwt.hs256(sub, { sub: 12345 }),
    'sub an object': () => goodJwt.eddsa(sub, { sub: { key: sub } }),
    'payload tampered after signing (sub changed to b)': () => {
      const [h, , s] = goodJwt.rs256(sub).split('.');
      return [h, b64urlJson(claims(b.key)), s].join('.');
    },
    'payload tampered after signing (exp extended)': () => {
      const [h, , s] = goodJwt.hs256(sub, { exp: nowSeconds() - 3600 }).split('.');
      return [h, b64urlJson(claims(sub, { exp: nowSeconds() + 3600 })), s].join('.');
    },
    'signature of another token': () => {
      const [h, p] = goodJwt.hs256(sub).split('.');
      const [, , s] = goodJwt.hs256(b.key).split('.');
      return [h, p, s].join('.');
    },
    'signature stripped': () => goodJwt.hs256(sub).split('.').slice(0, 2).join('.') + '.',
    'oversized token (8193+ characters) with a valid signature': () => hs256OfLength(sub, 8193),
    'oversized token (12 KiB) with a valid signature': () => hs256OfLength(sub, 12 * 1024),
    'garbage': () => 'garbage',
    'three garbage segments': () => 'a.b.c',
    'non-base64url segments': () => 'e30.e30.!!!',
    'header not JSON': () => `${Buffer.from('not json').toString('base64url')}.${b64urlJson(claims(sub))}.sig`,
    'payload not an object': () => signJwt('"just a string"', { alg: 'HS256' }),
    'JWE-like five segments': () => `${goodJwt.hs256(sub)}.x.y`,
  };

  for (const [name, make] of Object.entries(bad)) {
    test(name, TEST_OPTS, async () => {
      const res = await asJwt(make());
      assertStatus(res, 401, '28000', name);
    });
  }

  test('the driver reports a refused token as HTTP status 401', TEST_OPTS, async () => {
    const err = await rejection(sqlWithJwt(goodJwt.hs256(a.key, { exp: nowSeconds() - 3600 }))`select 1`);
    assertHttpError(err, 401, 'expired token through the driver');
  });

  test('a refused token in a transaction batch is a 401 too', TEST_OPTS, async () => {
    const sql = sqlWithJwt(signJwt(claims(a.key), { alg: 'none' }));
    const err = await rejection(sql.transaction([sql`select 1`, sql`select 2`]));
    assertHttpError(err, 401, 'alg none in a batch');
  });

  test('a good token for a tenant that does not exist is a 404 with code 3D000', TEST_OPTS, async () => {
    const res = await asJwt(goodJwt.hs256(`no-such-tenant-${Date.now()}`));
    assertStatus(res, 404, '3D000', 'unknown sub');
  });
});
