#!/usr/bin/env bash
# Sets up .venv, then runs the main job offline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
out=${OUT_DIR:-outputs}
mkdir -p "$out"
.venv/bin/hypernet create demo --dir "$out/hypernetworks" --overwrite --seed 0
.venv/bin/hypernet inspect "$out/hypernetworks/demo.pt"
