#!/usr/bin/env bash
# The main job on the embedded PostgreSQL: install PostgreSQL 18 + pgvector (first time), start it,
# then a fleet of tenants end to end: provision, search per tenant, heal, roll out, check.
# Extra arguments go to `pgfleet demo` (e.g. --port 54400, --data-dir DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec cargo run --quiet -p pgfleet-cli --bin pgfleet -- demo "$@"
