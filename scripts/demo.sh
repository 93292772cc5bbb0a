#!/usr/bin/env bash
# The main job on the embedded PostgreSQL: install PostgreSQL 18 + pgvector (first time), start it,
# then a fleet of tenants end to end: provision, search per tenant, heal, roll out, check.
# Extra arguments go to `pgfleet demo` (e.g. --port 54400, --data-dir DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# The demo's last step runs examples/node-drizzle when Node.js 20+ is here: install its packages.
if command -v node >/dev/null 2>&1 && [ "$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)" -ge 20 ]; then
  bash scripts/node.sh >/dev/null || echo "demo: could not install the Node example's packages; its step will be skipped" >&2
fi
exec cargo run --quiet -p pgfleet-cli --bin pgfleet -- demo "$@"
