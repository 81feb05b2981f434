#!/usr/bin/env bash
# Sets up .venv, then runs the main job offline on the embedded toy model: generate
# "a red circle on a blue background" (PNG with webui infotext), then the same prompt
# with the shipped demo hypernetwork <hypernet:water:1>, and a strength grid of the
# other demo network, neon (multipliers 0 to 1).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
out=${OUT_DIR:-outputs/demo}
hn=.venv/bin/hypernet
$hn generate "a red circle on a blue background" "a red circle on a blue background <hypernet:water:1>" \
  --seed 1 --steps 20 --out "$out"
$hn grid "a red circle on a blue background" --hypernet neon --multipliers 0,0.25,0.5,0.75,1 --seeds 1,2 \
  --out "$out" --quiet
echo "images in $out"
