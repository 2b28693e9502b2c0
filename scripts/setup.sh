#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv and install r1 into it.
# Installs the CPU build of torch first where there is no GPU, so the pyproject's torch
# range never pulls a multi-GB CUDA build. Installs bubblewrap (the code sandbox) where it is
# missing and we may (root with apt-get). Idempotent: a second run only checks.
#   R1_EXTRAS=dev,code   extras to install (default: dev,code)
#   R1_VENV=.venv        where the environment lives
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${R1_VENV:-.venv}
EXTRAS=${R1_EXTRAS:-dev,code}
PY=${PYTHON:-python3}

# bubblewrap: the default code sandbox's isolation (as root and as an ordinary user)
if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing bubblewrap (the code sandbox's isolation)"
    { apt-get install -y -q bubblewrap || { apt-get update -q && apt-get install -y -q bubblewrap; }; } \
      >/dev/null 2>&1 || echo "[setup] could not install bubblewrap: the sandbox will use unshare"
  else
    echo "[setup] bubblewrap is not installed: the code sandbox needs it or unshare" \
      "(install it with your package manager, e.g. apt-get install bubblewrap)"
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
stamp="$VENV/.r1-installed-$(cat pyproject.toml | sha1sum | cut -c1-12)-$EXTRAS"
if [ -f "$stamp" ]; then
  echo "[setup] $VENV is up to date"
  exit 0
fi
$PIP install -q --upgrade pip
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "[setup] GPU found: installing torch (CUDA build)"
    $PIP install -q "torch>=2.4,<3"
  else
    echo "[setup] no GPU: installing the CPU build torch==2.13.0"
    $PIP install -q "torch==2.13.0" || $PIP install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
  fi
fi
echo "[setup] installing r1[$EXTRAS]"
$PIP install -q -e ".[$EXTRAS]"
rm -f "$VENV"/.r1-installed-*
touch "$stamp"
echo "[setup] done: activate with 'source $VENV/bin/activate'"
