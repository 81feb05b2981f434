#!/usr/bin/env bash
# Creates .venv (once) and installs hypernet into it; never touches a model hub.
# Installs the CPU torch wheel only when no torch is importable, so a bare install never
# pulls a multi-GB CUDA build and a torch already present (a GPU build) is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
quiet() { "$@" 2>&1 | grep -v '^WARNING: Location' || true; }
if ! python -c "import torch" >/dev/null 2>&1; then
  quiet pip install -q "torch==2.13.0"
fi
if ! python -c "import hypernet, diffusers, transformers, pytest" >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.hypernet-installed ]; then
  quiet pip install -q -e ".[test]"
  touch .venv/.hypernet-installed
fi
python -c "import torch, hypernet, diffusers, transformers" \
  || { echo "setup: the environment in .venv is incomplete; delete .venv and run again" >&2; exit 1; }
