// A request the server rolls back for a serialization failure (40001) runs again inside pgfleet:
// concurrent SERIALIZABLE transactions that each count the rows of a run and add one saying so
// all succeed, and each commits exactly once (the rows say 0, 1, 2, … with no gap and no
// repeat). Without the retries, most of them fail with 40001. Tenant a, app token and JWT; 4 at
// once, the test server's --sql-max-concurrent-per-tenant.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { goodJwt, sqlFor, sqlWithJwt, TEST_OPTS, tenants, uniq } from './lib.mjs';

async function conflictingTransactions(sql, n) {
  const run = uniq('ser');
  const [user] = await sql`insert into users (external_id, email) values (${run}, ${run + '@example.com'}) returning id`;
  const one = () =>
    sql.transaction(
      [
        sql`insert into chat_threads (user_id, title)
            select ${user.id}, ${run + '-'} || count(*) from chat_threads where title like ${run + '-%'}`,
      ],
      { isolationLevel: 'Serializable' },
    );
  await Promise.all(Array.from({ length: n }, one));
  const rows = await sql`select title from chat_threads where title like ${run + '-%'}`;
  const got = rows.map((r) => Number(r.title.slice(run.length + 1))).sort((a, b) => a - b);
  assert.deepEqual(got, Array.from({ length: n }, (_, i) => i));
}

test('conflicting serializable transactions all commit, each once (app token)', TEST_OPTS, async () => {
  await conflictingTransactions(sqlFor(tenants.a), 4);
});

test('conflicting serializable transactions all commit, each once (end user)', TEST_OPTS, async () => {
  await conflictingTransactions(sqlWithJwt(goodJwt.hs256(tenants.a.key)), 4);
});
