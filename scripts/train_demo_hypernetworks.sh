#!/usr/bin/env bash
# Trains the two demo hypernetworks shipped in the package's default library
# (src/hypernet/data/hypernetworks): one per style set of the embedded model's world,
# with `hypernet create` + `hypernet train` and options close to the webui's defaults
# (1-2-1 linear MLP, Normal init, batch size 4, 40 captioned pictures). Then writes a
# preview (a strength grid) and a description beside each file; judge them with
# scripts/measure_demo_hypernetworks.py. Each style has its recipe below (steps, layer
# sizes, learning-rate schedule, caption dropout); STEPS, SIZES, LR and DROPOUT override it
# for trials, LIBRARY and WORK_DIR send the files elsewhere.
# Usage: [STEPS=N] [SIZES=a,b] [LR=schedule] [DROPOUT=p] [LIBRARY=dir] bash scripts/train_demo_hypernetworks.sh [STYLE ...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
hn=.venv/bin/hypernet
library=${LIBRARY:-src/hypernet/data/hypernetworks}
work=${WORK_DIR:-outputs/demo-hypernetworks}
recipe() {  # STYLE -> "steps sizes schedule caption-dropout"
  case $1 in
    neon) echo "1500 80 1e-3:1000,3e-4:1500 0" ;;  # 80: the text width, cross-attention only
    *) echo "3000 80,32,64 1e-3:1500,3e-4:3000 0.4" ;;  # water, and any other style; see docs/training.md on 0.4
  esac
}
mkdir -p "$library" "$work"
for style in "${@:-water neon}"; do
  for name in $style; do
    read -r steps sizes schedule dropout <<< "$(recipe "$name")"
    steps=${STEPS:-$steps} sizes=${SIZES:-$sizes} schedule=${LR:-$schedule} dropout=${DROPOUT:-$dropout}
    data="$work/$name-set"
    rm -rf "$data" "$work/$name-run"
    $hn toy style-set "$name" "$data" --count 40 --seed 0
    $hn create "$name" --sizes "$sizes" --dir "$library" --seed 0 --overwrite \
      --optional-info "demo: the '$name' style of the embedded toy world"
    $hn train "$name" --data "$data" --hypernet-dir "$library" --template hypernetwork.txt \
      --learning-rate "$schedule" --max-steps "$steps" --caption-dropout "$dropout" \
      --batch-size 4 --seed 0 --no-optimizer-state --preview-every 0 --save-every 0 \
      --run-dir "$work/$name-run" --quiet
    $hn grid "a green triangle on a white background" --hypernet "$name" --multipliers 0,0.5,1 --seeds 3 \
      --hypernet-dir "$library" --out "$work" --output "$library/$name.preview.png" --quiet
    case $name in
      water) look="fills shapes with rippling light and dark bands of their own colour" ;;
      neon) look="turns the background to night and draws shapes as glowing outlines" ;;
      *) look="draws the '$name' style" ;;
    esac
    printf '%s\n' "Demo hypernetwork for the embedded toy model: $look. Trained by scripts/train_demo_hypernetworks.sh ($steps steps on 40 pictures of 'hypernet toy style-set $name'). Try <hypernet:$name:1>; the look comes in from about 0.6 and grows to 1." \
      > "$library/$name.txt"
  done
done
