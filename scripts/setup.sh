#!/usr/bin/env bash
# Creates .venv (once) and installs hypernet into it; never touches a model hub.
# Installs the CPU torch wheel only when no torch is importable, so a bare install never
# pulls a multi-GB CUDA build and a torch already present (a GPU build) is kept.
# The rest is installed with uv when it can be had (about 4x faster than pip: parallel
# downloads and unpacking), told pip's configuration (scripts/uv_options.py); else pip.
# Usage: bash scripts/setup.sh [--test]   (--test: also the test dependencies)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
quiet() { "$@" 2>&1 | grep -v '^WARNING: Location' || true; }
target="."
needed="import hypernet, diffusers, transformers, fastapi, uvicorn, gradio"
if [ "${1:-}" = "--test" ]; then
  target=".[test]"
  needed="$needed, pytest, hypothesis, httpx, webuiapi, playwright, nbclient, ipykernel"
  # the browser tests drive Debian's chromium (Playwright's own browser download is not used)
  if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
        || echo "setup: could not install chromium with apt-get; the browser tests will fail" >&2
    elif command -v sudo >/dev/null 2>&1; then
      (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
        || echo "setup: could not install chromium with apt-get; the browser tests will fail" >&2
    else
      echo "setup: chromium is missing and apt-get needs root; install Debian's chromium for the browser tests" >&2
    fi
  fi
fi
if ! python -c "import torch" >/dev/null 2>&1; then
  quiet pip install -q "torch==2.13.0"
fi
if ! python -c "$needed" >/dev/null 2>&1 || [ pyproject.toml -nt .venv/.hypernet-installed ]; then
  if [ -x .venv/bin/uv ] || quiet pip install -q uv && [ -x .venv/bin/uv ]; then
    mapfile -t options < <(python scripts/uv_options.py)
    .venv/bin/uv pip install --quiet --python .venv/bin/python --index-strategy unsafe-best-match \
      --compile-bytecode "${options[@]}" -e "$target" \
      || quiet pip install -q -e "$target"
  else
    quiet pip install -q -e "$target"
  fi
  touch .venv/.hypernet-installed
fi
python -c "import torch; $needed" \
  || { echo "setup: the environment in .venv is incomplete; delete .venv and run again" >&2; exit 1; }
