#!/usr/bin/env bash
# Times the README's run command on a fresh clone of this repository (install included),
# as issue 4's acceptance asks (< 2 minutes): clone into a temporary folder, then
# `time bash scripts/demo.sh` there, offline. Usage: bash benchmarks/run_command.sh
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/p"
cd "$work/p"
start=$(date +%s.%N)
HF_HUB_OFFLINE=1 bash scripts/demo.sh >"$work/demo.log" 2>&1 || { cat "$work/demo.log"; exit 1; }
end=$(date +%s.%N)
ls outputs/demo
python3 -c "print(f'README run command on a fresh clone: {$end - $start:.1f} s wall (install included)')"
