// A TLS check for the Rust harness (not a *.test.mjs file, so `node --test` does not pick it up):
// the real Neon driver over https, trusting the test's self-signed certificate through
// NODE_EXTRA_CA_CERTS. Prints the row it got; exits non-zero on any failure.
import { neon, neonConfig } from '@neondatabase/serverless';

const endpoint = process.env.PGFLEET_SQL_ENDPOINT;
const token = process.env.PGFLEET_APP_TOKEN;
const tenant = process.env.PGFLEET_TENANT;
if (!endpoint?.startsWith('https://') || !token || !tenant) {
  console.error('tls-check: set PGFLEET_SQL_ENDPOINT (https://…), PGFLEET_APP_TOKEN and PGFLEET_TENANT');
  process.exit(2);
}
neonConfig.fetchEndpoint = endpoint;
const sql = neon(`postgresql://${encodeURIComponent(tenant)}:${token}@pgfleet.internal/app`);
const rows = await sql`SELECT 1 + 1 AS two, current_setting('ssl', true) AS server_ssl`;
if (rows.length !== 1 || rows[0].two !== 2) {
  console.error('tls-check: unexpected rows', rows);
  process.exit(1);
}
console.log(JSON.stringify(rows[0]));
