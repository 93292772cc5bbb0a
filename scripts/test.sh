#!/usr/bin/env bash
# The whole test suite, against real PostgreSQL servers that the tests start themselves.
# Extra arguments go to `cargo test` (e.g. -p pgfleet-embedded, or a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --with-pg15 --with-node --with-chromium --with-schemathesis --with-pgbouncer
# Install PostgreSQL 18 + pgvector into the cache up front (idempotent), so a missing download is
# reported once and clearly, not by the first test that needs a server.
if [ -z "${PGFLEET_PG_BIN:-}" ]; then
  cargo run --quiet -p pgfleet-cli --bin pgfleet -- setup
fi
exec cargo test --workspace "$@"
