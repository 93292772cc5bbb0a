#!/usr/bin/env node
// pgfleet from Node: per-user queries through pgfleet's POST /sql endpoint with Drizzle ORM
// (drizzle-orm/neon-http) and the Neon serverless driver, unchanged: only
// `neonConfig.fetchEndpoint` points at pgfleet.
//
// Every user of the app is a pgfleet tenant with a database (or schema) of its own, provisioned
// from examples/chat/schema.sql. The program shows the two ways an app reaches a user's tenant:
//
//   1. the backend, with its app token: connection string user = the tenant key (URL-encoded),
//      password = the app token;
//   2. the user's own request, with a JWT whose `sub` is the tenant key (signed here with the
//      shared HS256 secret, as the app's auth server would): neon(url, { authToken: jwt }).
//
// Environment:
//   PGFLEET_SQL_ENDPOINT   the endpoint, e.g. http://127.0.0.1:8433/sql            (required)
//   PGFLEET_APP_TOKEN      an app token of scope `sql` (pgf_...)                    (required)
//   PGFLEET_JWT_SECRET     the server's HS256 secret                                (required)
//   PGFLEET_TENANT         the tenant key of the user (default demo-user-1); it must exist
//   PGFLEET_JWT_ISSUER     `iss` to put in the JWT, when the server expects one     (optional)
//   PGFLEET_JWT_AUDIENCE   `aud` to put in the JWT, when the server expects one     (optional)
//
// Exits 0 when every step worked, 1 (with the error) when one failed, 2 when the environment is
// incomplete.
import { createHash, createHmac, randomUUID } from 'node:crypto';

import { neon, neonConfig } from '@neondatabase/serverless';
import { and, asc, cosineDistance, eq, inArray } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/neon-http';

import * as schema from './schema.mjs';
import { documents, EMBEDDING_DIMENSIONS, messages, threads, users } from './schema.mjs';

// ---------------------------------------------------------------------------------------------
// Configuration

function requireEnv(name, hint) {
  const value = process.env[name];
  if (!value) {
    console.error(`node-drizzle example: ${name} is not set: ${hint}`);
    process.exit(2);
  }
  return value;
}

const endpoint = requireEnv('PGFLEET_SQL_ENDPOINT', 'the URL of `pgfleet serve --sql-listen`, e.g. http://127.0.0.1:8433/sql');
const appToken = requireEnv('PGFLEET_APP_TOKEN', 'an app token of scope sql (pgf_...)');
const jwtSecret = requireEnv('PGFLEET_JWT_SECRET', "the server's HS256 JWT secret");
const tenant = process.env.PGFLEET_TENANT || 'demo-user-1';

// The only pgfleet-specific line: send the driver's HTTP queries to pgfleet.
neonConfig.fetchEndpoint = endpoint;

// The host and database in these connection strings are placeholders: the endpoint above decides
// where requests go, and pgfleet routes them by tenant.
const backendUrl = `postgresql://${encodeURIComponent(tenant)}:${encodeURIComponent(appToken)}@pgfleet.internal/app`;
const userUrl = 'postgresql://user@pgfleet.internal/app'; // JWT callers: the user here is ignored

// ---------------------------------------------------------------------------------------------
// Helpers

/** An HS256 JWT for `sub`, valid for 5 minutes (what an app's auth server would issue). */
function signUserJwt(sub) {
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub, iat: now, exp: now + 300 };
  if (process.env.PGFLEET_JWT_ISSUER) claims.iss = process.env.PGFLEET_JWT_ISSUER;
  if (process.env.PGFLEET_JWT_AUDIENCE) claims.aud = process.env.PGFLEET_JWT_AUDIENCE;
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const signingInput = `${encode({ alg: 'HS256', typ: 'JWT' })}.${encode(claims)}`;
  const signature = createHmac('sha256', Buffer.from(jwtSecret, 'utf8')).update(signingInput).digest('base64url');
  return `${signingInput}.${signature}`;
}

/**
 * A toy sentence embedding (hashed bag of words, L2-normalised, 384 dimensions), so the example
 * runs without a model. A real app would call its embedding model here; pgvector does not care.
 */
function embed(text) {
  const v = new Array(EMBEDDING_DIMENSIONS).fill(0);
  for (const word of text.toLowerCase().match(/[a-z0-9]+/g) ?? []) {
    const h = createHash('sha256').update(word).digest();
    v[h.readUInt16BE(0) % EMBEDDING_DIMENSIONS] += 1;
  }
  const norm = Math.hypot(...v) || 1;
  return v.map((x) => Math.round((x / norm) * 1e6) / 1e6);
}

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

// ---------------------------------------------------------------------------------------------
// The program

async function main() {
  console.log(`pgfleet /sql at ${endpoint}, tenant ${JSON.stringify(tenant)}`);

  // 1. The backend, with its app token.
  const db = drizzle({ client: neon(backendUrl), schema });

  // The user's profile row (one per tenant): insert on the first run, refresh afterwards.
  const slug = tenant.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '') || 'user';
  const [user] = await db
    .insert(users)
    .values({ externalId: tenant, email: `${slug}.node-example@example.com`, displayName: `Demo ${tenant}`, settings: { theme: 'dark' } })
    .onConflictDoUpdate({ target: users.externalId, set: { displayName: `Demo ${tenant}` } })
    .returning();
  console.log(`[app token] user #${user.id} ${user.externalId} <${user.email}>`);

  // A thread and its first messages in one request (one transaction): db.batch.
  const threadId = randomUUID();
  const question = 'How do I reset my password?';
  await db.batch([
    db.insert(threads).values({ id: threadId, userId: user.id, title: 'Resetting a password' }),
    db.insert(messages).values([
      { threadId, role: 'user', content: question, tokenCount: 7, embedding: embed(question) },
      { threadId, role: 'assistant', content: 'Open Settings, then Security, then Reset password.', tokenCount: 9 },
    ]),
  ]);

  // Read them back with a join.
  const conversation = await db
    .select({ title: threads.title, email: users.email, role: messages.role, content: messages.content })
    .from(messages)
    .innerJoin(threads, eq(messages.threadId, threads.id))
    .innerJoin(users, eq(threads.userId, users.id))
    .where(eq(threads.id, threadId))
    .orderBy(asc(messages.id));
  check(conversation.length === 2, `the thread has 2 messages, got ${conversation.length}`);
  console.log(`[app token] thread ${threadId} "${conversation[0].title}" of ${conversation[0].email}, ${conversation.length} messages:`);
  for (const m of conversation) console.log(`  ${m.role}: ${m.content}`);

  // Documents with embeddings, and a cosine-similarity search (pgvector's <=>, HNSW index).
  const docs = await db
    .insert(documents)
    .values(
      [
        ['Reset your password', 'To reset your password open Settings, then Security, and choose Reset password.'],
        ['Two-factor authentication', 'Turn on two-factor authentication with an authenticator app under Security.'],
        ['Delete your account', 'Delete your account under Settings, Account, Delete account. This cannot be undone.'],
      ].map(([title, body]) => ({ userId: user.id, threadId, title, body, embedding: embed(`${title} ${body}`), metadata: { source: 'help-center' } })),
    )
    .returning({ id: documents.id });
  const distance = cosineDistance(documents.embedding, embed(question));
  const matches = await db
    .select({ title: documents.title, distance })
    .from(documents)
    .where(inArray(documents.id, docs.map((d) => d.id)))
    .orderBy(distance)
    .limit(3);
  check(matches[0]?.title === 'Reset your password', `the best match is the password document, got ${matches[0]?.title}`);
  console.log(`[app token] ${docs.length} documents stored; best match for ${JSON.stringify(question)}: ` +
    `"${matches[0].title}" (cosine distance ${Number(matches[0].distance).toFixed(3)}), then ` +
    matches.slice(1).map((m) => `"${m.title}" (${Number(m.distance).toFixed(3)})`).join(', '));

  // 2. The user's own request, with a JWT: the tenant is the token's `sub`.
  const jwt = signUserJwt(tenant);
  const userDb = drizzle({ client: neon(userUrl, { authToken: jwt }), schema });
  const seen = await userDb
    .select({ role: messages.role })
    .from(messages)
    .innerJoin(threads, eq(messages.threadId, threads.id))
    .where(and(eq(threads.id, threadId), eq(threads.userId, user.id)));
  check(seen.length === 2, `the JWT caller sees the same 2 messages, got ${seen.length}`);
  console.log(`[jwt] HS256 token with sub=${JSON.stringify(tenant)}: the same thread, ${seen.length} messages`);

  // Clean up this run's rows (the user's profile stays): the messages and documents go with the
  // thread (ON DELETE CASCADE / SET NULL), the documents explicitly.
  await db.batch([db.delete(documents).where(inArray(documents.id, docs.map((d) => d.id))), db.delete(threads).where(eq(threads.id, threadId))]);
  const left = await db.select({ id: messages.id }).from(messages).where(eq(messages.threadId, threadId));
  check(left.length === 0, 'the thread and its messages are deleted');
  console.log('[app token] cleaned up this run\'s thread, messages and documents');
  console.log('ok');
}

main().catch((err) => {
  console.error(`node-drizzle example failed: ${err?.message ?? err}`);
  if (err?.cause) console.error(`  cause: ${err.cause.message ?? err.cause}${err.cause.code ? ` (${err.cause.code})` : ''}`);
  process.exit(1);
});
