#!/usr/bin/env bash
# Set up the environment and run the R1 pipeline demo on the tiny model (CPU, no downloads).
#   scripts/demo.sh [--output DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/r1agent demo "$@"
