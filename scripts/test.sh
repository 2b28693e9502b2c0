#!/usr/bin/env bash
# Set up the environment (scripts/setup.sh) and run the test suite's default tier.
#   scripts/test.sh                 default tier (what CI runs)
#   scripts/test.sh -m slow         the slow tier (end-to-end demo, learning runs)
#   scripts/test.sh tests/r1envs    any pytest arguments
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Docker-backed sandbox tests need an engine; start one if we can (skips cleanly if not).
if [ "${R1_DOCKER:-auto}" != "off" ]; then
  bash scripts/docker_setup.sh || echo "[test] no Docker engine: Docker sandbox tests will skip"
fi
exec .venv/bin/python -m pytest "$@"
