#!/usr/bin/env bash
# Trains the two demo hypernetworks shipped in the package's default library
# (src/hypernet/data/hypernetworks), one per style set of the embedded model's world, with
# hypernet's plain defaults: `hypernet train NAME --data DIR` and no recipe flag (the seed,
# the folders and --new, which keeps the library's current file out of it, aside). Then writes a preview (a strength grid) and a description beside
# each file; judge them with scripts/measure_demo_hypernetworks.py.
# LIBRARY and WORK_DIR send the files elsewhere; SEED (default 0) is the run seed.
# Usage: [LIBRARY=dir] [WORK_DIR=dir] bash scripts/train_demo_hypernetworks.sh [STYLE ...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
hn=.venv/bin/hypernet
library=${LIBRARY:-src/hypernet/data/hypernetworks}
work=${WORK_DIR:-outputs/demo-hypernetworks}
mkdir -p "$library" "$work"
for name in ${@:-water neon}; do
  data="$work/$name-set"
  rm -rf "$data" "$work/$name-run"
  rm -f "$library/$name.pt" "$library/$name.pt.optim" "$library/$name.pt.train.json"  # a new network, not a continuation
  $hn toy style-set "$name" "$data" --count 40 --seed 0
  $hn train "$name" --new --data "$data" --hypernet-dir "$library" --seed "${SEED:-0}" --run-dir "$work/$name-run" --quiet
  rm -f "$library/$name.pt.optim" "$library/$name.pt.train.json"  # the shipped file only
  $hn grid "a green triangle on a white background" --hypernet "$name" --multipliers 0,0.5,1 --seeds 3 \
    --hypernet-dir "$library" --out "$work" --output "$library/$name.preview.png" --quiet
  case $name in
    water) look="fills shapes with rippling light and dark bands of their own colour" ;;
    neon) look="turns the background to night and draws shapes as glowing outlines" ;;
    *) look="draws the '$name' style" ;;
  esac
  steps=$(.venv/bin/python -c "import hypernet, sys; print(hypernet.load(sys.argv[1]).step)" "$library/$name.pt")
  printf '%s\n' "Demo hypernetwork for the embedded toy model: $look. Trained by scripts/train_demo_hypernetworks.sh with hypernet's default options and seed ${SEED:-0} ($steps steps on 40 pictures of 'hypernet toy style-set $name'). Try <hypernet:$name:1>; its multiplier is calibrated after training, so lower values give less of the look (docs/training.md has the measured curve)." \
    > "$library/$name.txt"
done
