#!/usr/bin/env node
// Generates the asymmetric JWT signing keys of the real-client tests, with node:crypto only.
//
//   node tests/node/make-keys.mjs OUTDIR
//
// writes
//   OUTDIR/rsa.key.pem   RSA-2048 private key (PKCS#8 PEM)       signs RS256 tokens, kid "rsa-1"
//   OUTDIR/rsa.pub.pem   its public key (SPKI PEM)                also the "secret" of the HS256
//                                                                 key-confusion attack
//   OUTDIR/ed.key.pem    Ed25519 private key (PKCS#8 PEM)         signs EdDSA tokens, kid "ed-1"
//   OUTDIR/jwks.json     {"keys":[<rsa-1 public JWK>, <ed-1 public JWK>]}: what the server is
//                        started with (PGFLEET_JWKS_FILE=OUTDIR/jwks.json)
//
// The Rust harness runs this before it starts the server and hands OUTDIR to the tests as
// PGFLEET_TEST_KEYS. Fresh keys every run: nothing secret is kept in the repository.
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const outArg = process.argv[2];
if (!outArg || process.argv.length > 3) {
  console.error('usage: node make-keys.mjs OUTDIR');
  process.exit(2);
}
const outDir = resolve(outArg);
mkdirSync(outDir, { recursive: true });

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 0x10001 });
const ed = generateKeyPairSync('ed25519');

const pem = (key, type) => key.export({ format: 'pem', type });
const privateFile = (name, text) => writeFileSync(join(outDir, name), text, { mode: 0o600 });
const publicFile = (name, text) => writeFileSync(join(outDir, name), text, { mode: 0o644 });

privateFile('rsa.key.pem', pem(rsa.privateKey, 'pkcs8'));
publicFile('rsa.pub.pem', pem(rsa.publicKey, 'spki'));
privateFile('ed.key.pem', pem(ed.privateKey, 'pkcs8'));

// Public JWKs only: {kty:"RSA", n, e} and {kty:"OKP", crv:"Ed25519", x}.
const jwks = {
  keys: [
    { ...rsa.publicKey.export({ format: 'jwk' }), kid: 'rsa-1', alg: 'RS256', use: 'sig' },
    { ...ed.publicKey.export({ format: 'jwk' }), kid: 'ed-1', alg: 'EdDSA', use: 'sig' },
  ],
};
publicFile('jwks.json', JSON.stringify(jwks, null, 2) + '\n');

console.log(`make-keys: wrote rsa.key.pem, rsa.pub.pem, ed.key.pem, jwks.json to ${outDir}`);
