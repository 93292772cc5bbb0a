#!/usr/bin/env bash
# Installs the pinned schemathesis (PyPI) into its own venv and runs it: the property-based fuzzer
# of the /v1 management API, driven by the API's OpenAPI document.
#
#   bash scripts/schemathesis.sh --install      installs what is missing (idempotent), prints nothing
#   bash scripts/schemathesis.sh --print-bin    the same, then prints the absolute path of the
#                                               `schemathesis` executable on stdout (for the Rust harness)
#   bash scripts/schemathesis.sh run URL ...    installs, then runs `schemathesis run URL ...`: any
#                                               other arguments (run ..., --version) go to schemathesis
#                                               unchanged, and its exit code is ours
#   bash scripts/schemathesis.sh -h             this help
#
# The venv: ${PGFLEET_CACHE_DIR:-~/.cache/pgfleet}/schemathesis-VERSION, made with `python3 -m venv`
# (PGFLEET_PYTHON picks the Python, default python3; Debian needs python3-venv, see
# scripts/bootstrap.sh --with-schemathesis). Safe to run concurrently (one install at a time holds a
# lock). Messages go to stderr. Schemathesis writes into its working directory: .schemathesis/ (a
# cache of the failures found), .hypothesis/ (unless HYPOTHESIS_STORAGE_DIRECTORY points elsewhere)
# and the reports asked for (--report, default dir schemathesis-report/); it reads the nearest
# schemathesis.toml up to the repository root. So run it from a scratch directory, e.g. target/.
set -euo pipefail

SCHEMATHESIS_VERSION=4.32.5

say() { echo "schemathesis.sh: $*" >&2; }
die() {
  say "error: $*"
  exit 1
}

mode=
case "${1:-}" in
  --install) mode=install ;;
  --print-bin) mode=print-bin ;;
  -h | --help)
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  '')
    say "no argument (expected --install, --print-bin, or a schemathesis command such as run; -h for help)"
    exit 2
    ;;
  *) mode=passthrough ;;
esac

cache_root="${PGFLEET_CACHE_DIR:-$HOME/.cache/pgfleet}"
venv="$cache_root/schemathesis-$SCHEMATHESIS_VERSION"
bin="$venv/bin/schemathesis"
mkdir -p "$cache_root"

stamp="$venv/.pgfleet-installed" # written last, once the install is complete and checked
installed() { [[ -f "$stamp" && -x "$bin" ]]; }

if ! installed; then
  # One install at a time (the harness may start several test binaries at once); check again once
  # the lock is held, another run may have installed it meanwhile.
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$cache_root/.schemathesis.sh.lock"
    flock 9
  fi
  if ! installed; then
    py="${PGFLEET_PYTHON:-python3}"
    command -v "$py" >/dev/null 2>&1 ||
      die "no $py: install Python 3 (Debian: apt-get install python3 python3-venv; or bash scripts/bootstrap.sh --with-schemathesis)"
    say "installing schemathesis $SCHEMATHESIS_VERSION (PyPI) into $venv"
    # A venv's scripts carry its absolute path, so it is built in place (a half-made one from an
    # interrupted run is cleared first) and only the stamp, written last, marks it as usable.
    rm -rf "$venv"
    "$py" -m venv "$venv" >&2 ||
      die "'$py -m venv' failed (Debian: apt-get install python3-venv; or bash scripts/bootstrap.sh --with-schemathesis)"
    PIP_ROOT_USER_ACTION=ignore "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      "schemathesis==$SCHEMATHESIS_VERSION" >&2 || {
      rm -rf "$venv"
      die "'pip install schemathesis==$SCHEMATHESIS_VERSION' failed (is PyPI reachable?)"
    }
    "$bin" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION" || {
      rm -rf "$venv"
      die "schemathesis $SCHEMATHESIS_VERSION installed but '$bin --version' does not report it"
    }
    touch "$stamp"
  fi
  exec 9>&- # a run that follows must not hold the lock
fi

case "$mode" in
  install) ;;
  print-bin) echo "$bin" ;;
  passthrough) exec "$bin" "$@" ;;
esac
