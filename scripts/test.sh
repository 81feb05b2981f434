#!/usr/bin/env bash
# Sets up .venv and runs the whole test suite offline (HF_HUB_OFFLINE=1 proves no hub access).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
exec .venv/bin/python -m pytest -q "$@"
