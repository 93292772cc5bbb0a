// drizzle-orm/neon-http on the chat schema through POST /sql: inserts with RETURNING, selects,
// a three-table join, the relational query API, update, delete, batch, errors, and a pgvector
// cosine-similarity search. Tenant a, app token. (Its own process: drizzle's neon-http driver
// changes the Neon driver's global date parsers, so it must not share a file with types.test.mjs.)
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { and, asc, cosineDistance, count, desc, eq, inArray } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/neon-http';

import * as schema from './chat-schema.mjs';
import { chatMessages, chatThreads, documents, users } from './chat-schema.mjs';
import { pgCode, rejection, sqlFor, TEST_OPTS, tenants, uniq } from './lib.mjs';

const db = drizzle({ client: sqlFor(tenants.a), schema });

/** A 384-dimensional embedding: 1 on axis `i`, 0.5 on axis `j` (if given), 0.0625 elsewhere. */
function embedding(i, j) {
  const v = new Array(384).fill(0.0625);
  v[i] = 1;
  if (j !== undefined) v[j] = 0.5;
  return v;
}

let user; // the user this file works with; deleted (with everything of it) at the end
let thread;

before(async () => {
  const externalId = uniq('drizzle-user');
  [user] = await db
    .insert(users)
    .values({ externalId, email: `${externalId}@example.com`, displayName: 'Drizzle Test', settings: { theme: 'dark' } })
    .returning();
});

after(async () => {
  if (user) await db.delete(users).where(eq(users.id, user.id));
});

test('insert ... returning gives the generated identity, the defaults and the jsonb value', TEST_OPTS, async () => {
  assert.equal(typeof user.id, 'number');
  assert.ok(user.id > 0);
  assert.deepEqual(user.settings, { theme: 'dark' });
  assert.ok(user.createdAt instanceof Date && !Number.isNaN(user.createdAt.getTime()));
  assert.ok(Math.abs(user.createdAt.getTime() - Date.now()) < 5 * 60_000, 'created_at defaults to now()');
});

test('a thread and its messages are inserted and read back with a three-table join', TEST_OPTS, async () => {
  [thread] = await db.insert(chatThreads).values({ userId: user.id, title: 'Password help' }).returning();
  assert.match(thread.id, /^[0-9a-f-]{36}$/, 'uuid primary key from gen_random_uuid()');
  assert.equal(thread.model, 'default');
  assert.equal(thread.archived, false);

  const inserted = await db
    .insert(chatMessages)
    .values([
      { threadId: thread.id, role: 'system', content: 'You are helpful.' },
      { threadId: thread.id, role: 'user', content: 'How do I reset my password?', tokenCount: 7, embedding: embedding(1) },
      { threadId: thread.id, role: 'assistant', content: 'Open Settings, then Security.', tokenCount: 6, embedding: embedding(2) },
    ])
    .returning({ id: chatMessages.id, role: chatMessages.role });
  assert.deepEqual(inserted.map((m) => m.role), ['system', 'user', 'assistant']);

  const rows = await db
    .select({
      email: users.email,
      title: chatThreads.title,
      role: chatMessages.role,
      content: chatMessages.content,
      tokens: chatMessages.tokenCount,
    })
    .from(chatMessages)
    .innerJoin(chatThreads, eq(chatMessages.threadId, chatThreads.id))
    .innerJoin(users, eq(chatThreads.userId, users.id))
    .where(eq(users.id, user.id))
    .orderBy(asc(chatMessages.id));
  assert.deepEqual(rows, [
    { email: user.email, title: 'Password help', role: 'system', content: 'You are helpful.', tokens: null },
    { email: user.email, title: 'Password help', role: 'user', content: 'How do I reset my password?', tokens: 7 },
    { email: user.email, title: 'Password help', role: 'assistant', content: 'Open Settings, then Security.', tokens: 6 },
  ]);
});

test('a vector(384) column round-trips as a number array', TEST_OPTS, async () => {
  const [msg] = await db
    .select({ embedding: chatMessages.embedding })
    .from(chatMessages)
    .where(and(eq(chatMessages.threadId, thread.id), eq(chatMessages.role, 'user')));
  assert.deepEqual(msg.embedding, embedding(1));
});

test('the relational query API loads a user with its threads and their messages', TEST_OPTS, async () => {
  const found = await db.query.users.findFirst({
    where: eq(users.id, user.id),
    with: { threads: { with: { messages: { orderBy: [asc(chatMessages.id)] } } } },
  });
  assert.equal(found.externalId, user.externalId);
  assert.equal(found.threads.length, 1);
  assert.equal(found.threads[0].title, 'Password help');
  assert.deepEqual(found.threads[0].messages.map((m) => m.role), ['system', 'user', 'assistant']);
});

test('update ... returning changes the thread and a later select sees it', TEST_OPTS, async () => {
  const [updated] = await db
    .update(chatThreads)
    .set({ title: 'Reset password', archived: true })
    .where(eq(chatThreads.id, thread.id))
    .returning({ title: chatThreads.title, archived: chatThreads.archived });
  assert.deepEqual(updated, { title: 'Reset password', archived: true });
  const [again] = await db.select({ title: chatThreads.title }).from(chatThreads).where(eq(chatThreads.id, thread.id));
  assert.equal(again.title, 'Reset password');
});

test('delete ... returning removes one message and the count drops by one', TEST_OPTS, async () => {
  const deleted = await db
    .delete(chatMessages)
    .where(and(eq(chatMessages.threadId, thread.id), eq(chatMessages.role, 'system')))
    .returning({ id: chatMessages.id });
  assert.equal(deleted.length, 1);
  const [{ n }] = await db.select({ n: count() }).from(chatMessages).where(eq(chatMessages.threadId, thread.id));
  assert.equal(n, 2);
});

test('documents with embeddings are ranked by cosine distance (pgvector <=>)', TEST_OPTS, async () => {
  const docs = await db
    .insert(documents)
    .values([
      { userId: user.id, title: 'Reset your password', body: 'Settings > Security > Reset.', embedding: embedding(10), metadata: { tag: 'auth' } },
      { userId: user.id, title: 'Two-factor authentication', body: 'Use an authenticator app.', embedding: embedding(20) },
      { userId: user.id, title: 'Delete your account', body: 'Settings > Account > Delete.', embedding: embedding(30) },
    ])
    .returning({ id: documents.id, title: documents.title });
  assert.equal(docs.length, 3);

  // A query close to "Two-factor authentication" (axis 20), a little towards axis 30.
  const query = embedding(20, 30);
  const distance = cosineDistance(documents.embedding, query);
  const ranked = await db
    .select({ title: documents.title, distance })
    .from(documents)
    .where(eq(documents.userId, user.id))
    .orderBy(distance)
    .limit(3);
  assert.deepEqual(ranked.map((r) => r.title), ['Two-factor authentication', 'Delete your account', 'Reset your password']);
  const distances = ranked.map((r) => Number(r.distance));
  assert.ok(distances.every((d) => d >= 0 && d < 1), `cosine distances in [0, 1): ${distances}`);
  assert.ok(distances[0] < distances[1] && distances[1] < distances[2], `ascending: ${distances}`);

  const [meta] = await db.select({ metadata: documents.metadata }).from(documents).where(eq(documents.id, docs[0].id));
  assert.deepEqual(meta.metadata, { tag: 'auth' });
});

test('db.batch runs several statements in one request and returns each result', TEST_OPTS, async () => {
  const [inserted, listed] = await db.batch([
    db.insert(chatMessages).values({ threadId: thread.id, role: 'tool', content: 'lookup()' }).returning({ id: chatMessages.id }),
    db.select({ role: chatMessages.role }).from(chatMessages).where(eq(chatMessages.threadId, thread.id)).orderBy(desc(chatMessages.id)),
  ]);
  assert.equal(inserted.length, 1);
  assert.equal(listed[0].role, 'tool', 'the select in the same batch sees the insert');
});

test('a failing statement in db.batch rolls back the whole batch', TEST_OPTS, async () => {
  const err = await rejection(
    db.batch([
      db.insert(chatMessages).values({ threadId: thread.id, role: 'user', content: 'rolled back' }),
      db.insert(users).values({ externalId: user.externalId, email: 'dup@example.com' }),
    ]),
  );
  assert.equal(pgCode(err), '23505');
  const rows = await db.select().from(chatMessages).where(and(eq(chatMessages.threadId, thread.id), eq(chatMessages.content, 'rolled back')));
  assert.deepEqual(rows, []);
});

test('a duplicate key through drizzle surfaces the PostgreSQL code 23505', TEST_OPTS, async () => {
  const err = await rejection(db.insert(users).values({ externalId: user.externalId, email: 'other@example.com' }));
  assert.equal(pgCode(err), '23505');
});

test('an enum value outside the type fails with 22P02 and inArray filters by enum labels', TEST_OPTS, async () => {
  const err = await rejection(db.insert(chatMessages).values({ threadId: thread.id, role: 'robot', content: 'x' }));
  assert.equal(pgCode(err), '22P02');
  const rows = await db
    .select({ role: chatMessages.role })
    .from(chatMessages)
    .where(and(eq(chatMessages.threadId, thread.id), inArray(chatMessages.role, ['user', 'assistant'])))
    .orderBy(asc(chatMessages.id));
  assert.deepEqual(rows.map((r) => r.role), ['user', 'assistant']);
});

test('deleting the user cascades to its threads, messages and documents', TEST_OPTS, async () => {
  await db.delete(users).where(eq(users.id, user.id));
  const [{ n: threads }] = await db.select({ n: count() }).from(chatThreads).where(eq(chatThreads.userId, user.id));
  const [{ n: messages }] = await db.select({ n: count() }).from(chatMessages).where(eq(chatMessages.threadId, thread.id));
  const [{ n: docs }] = await db.select({ n: count() }).from(documents).where(eq(documents.userId, user.id));
  assert.deepEqual([threads, messages, docs], [0, 0, 0]);
  user = undefined;
});
