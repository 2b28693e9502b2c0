#!/usr/bin/env bash
# Set up the environment (scripts/setup.sh) and run the test suite's default tier.
#   scripts/test.sh                 default tier (what CI runs)
#   scripts/test.sh -m slow         the slow tier (end-to-end demo, learning runs)
#   scripts/test.sh tests/r1envs    any pytest arguments
# Run as root with no arguments (CI), it then runs the sandbox tests a second time as an
# ordinary user (R1_TEST_USER, default r1user, created if missing), so the unprivileged
# sandbox path is tested for real; R1_UNPRIVILEGED=off skips that, =on forces it with args.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Docker-backed sandbox tests need an engine; start one if we can (skips cleanly if not).
if [ "${R1_DOCKER:-auto}" != "off" ]; then
  bash scripts/docker_setup.sh || echo "[test] no Docker engine: Docker sandbox tests will skip"
fi

granted=()
cleanup() {
  for dir in ${granted[@]+"${granted[@]}"}; do setfacl -x "u:$R1_USER" "$dir" 2>/dev/null || true; done
  [ -n "${basetemp:-}" ] && rm -rf "$basetemp"
  return 0
}

# Let the test user reach the interpreter and the checkout: a traverse-only ACL for that user
# on each folder on the way that others cannot traverse (removed again on exit).
grant_traverse() {
  local path=$1 dir
  dir=$(dirname "$path")
  while [ "$dir" != "/" ]; do
    if ! runuser -u "$R1_USER" -- test -x "$dir" 2>/dev/null; then
      setfacl -m "u:$R1_USER:x" "$dir" && granted+=("$dir") || return 1
    fi
    dir=$(dirname "$dir")
  done
}

unprivileged_run() {
  R1_USER=${R1_TEST_USER:-r1user}
  local why="" py prefix
  if ! command -v runuser >/dev/null; then
    why="runuser (util-linux) is not installed"
  elif ! id -u "$R1_USER" >/dev/null 2>&1 && ! useradd -m "$R1_USER" 2>/dev/null; then
    why="cannot create the user $R1_USER (useradd failed)"
  fi
  if [ -z "$why" ] && ! runuser -u "$R1_USER" -- .venv/bin/python -c "import r1envs" 2>/dev/null; then
    if ! command -v setfacl >/dev/null && command -v apt-get >/dev/null; then
      apt-get install -y -q acl >/dev/null 2>&1 || true
    fi
    py=$(.venv/bin/python -c "import os, sys; print(os.path.realpath(sys.executable))")
    prefix=$(.venv/bin/python -c "import os, sys; print(os.path.realpath(sys.base_prefix))")
    if ! command -v setfacl >/dev/null; then
      why="$R1_USER cannot run .venv/bin/python (its interpreter $py is not reachable) and setfacl (package acl) is missing to grant that"
    elif ! { grant_traverse "$py" && grant_traverse "$prefix/lib" && grant_traverse "$PWD/pyproject.toml"; } \
      || ! runuser -u "$R1_USER" -- .venv/bin/python -c "import r1envs" 2>/dev/null; then
      why="$R1_USER cannot import r1envs with .venv/bin/python (check that $py and $PWD are readable by others)"
    fi
  fi
  if [ -n "$why" ]; then
    echo "[test] SKIPPED the unprivileged sandbox run: $why"
    return 0
  fi
  basetemp=$(mktemp -d /tmp/r1-unprivileged-XXXXXX)
  chown "$R1_USER" "$basetemp"
  echo "[test] sandbox tests again as the ordinary user $R1_USER"
  runuser -u "$R1_USER" -- env -i PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
    HOME="$(getent passwd "$R1_USER" | cut -d: -f6)" \
    .venv/bin/python -m pytest -p no:cacheprovider --basetemp="$basetemp/pytest" -q \
    tests/r1envs/sandbox tests/r1envs/verifiers/test_code.py
}

if [ "$(id -u)" = 0 ] && [ "${R1_UNPRIVILEGED:-auto}" != "off" ] \
  && { [ $# -eq 0 ] || [ "${R1_UNPRIVILEGED:-auto}" = "on" ]; }; then
  trap cleanup EXIT
  status=0
  .venv/bin/python -m pytest "$@" || status=$?
  unprivileged_run || status=$?
  exit "$status"
fi
exec .venv/bin/python -m pytest "$@"
