#!/usr/bin/env bash
# Exports subnets of a trained supernet — max, min, two random, three uniformly
# scaled (25/50/75 %) — and scores them on the held-out camera (pose2sim cam03,
# never trained on) through `vipnas eval` with crop tracking (no smoothing), as a
# Markdown table: OKS AP, PCK@0.1, PCK@0.2, GFLOPs and the host latency table's
# prediction (TABLE must hold the run's input size; default the host board's), then
# MoveNet Lightning through the same eval for reference. Bundles: RUN/bundles/.
#
#   scripts/score-subnets.sh RUN_DIR [DATA_DIR (default .cache/data)] [TABLE]
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=$1
D=${2:-.cache/data}
TABLE=${3:+--table $3}
V=target/release/vipnas
printf '| subnet | GFLOPs | host table ms | AP | PCK@0.1 | PCK@0.2 |\n|---|---|---|---|---|---|\n'
for pick in "max" "min" "random --seed 1" "random --seed 2" "scaled --scale 25" "scaled --scale 50" "scaled --scale 75"; do
  b="$RUN/bundles/${pick// /-}"
  # shellcheck disable=SC2086
  flops=$($V export --checkpoint "$RUN/checkpoint.vnck" --sample $pick --out "$b" | sed -n 's/.*flops=\([0-9.]*\)G.*/\1/p')
  # shellcheck disable=SC2086
  ms=$($V predict --board host $TABLE --model "$b" 2>/dev/null | sed -n 's/^predicted_ms=//p' || true)
  e=$($V eval --model "$b" --coco "$D/splits/val.json" --images "$D")
  ap=$(grep -m1 'Average Precision  (AP) @\[ IoU=0.50:0.95 | area=   all' <<<"$e" | awk '{print $NF}')
  pck1=$(grep -m1 '^PCK' <<<"$e" | sed -n 's/.*@0.1=\([0-9.]*\).*/\1/p')
  pck2=$(grep -m1 '^PCK' <<<"$e" | sed -n 's/.*@0.2=\([0-9.]*\).*/\1/p')
  echo "| ${pick/--seed /seed } | $flops | ${ms:--} | $ap | $pck1 | $pck2 |"
done
e=$($V eval --model models/movenet-lightning --coco "$D/splits/val.json" --images "$D")
ap=$(grep -m1 'Average Precision  (AP) @\[ IoU=0.50:0.95 | area=   all' <<<"$e" | awk '{print $NF}')
pck1=$(grep -m1 '^PCK' <<<"$e" | sed -n 's/.*@0.1=\([0-9.]*\).*/\1/p')
pck2=$(grep -m1 '^PCK' <<<"$e" | sed -n 's/.*@0.2=\([0-9.]*\).*/\1/p')
ms=$(grep -m1 'ms_per_estimate=' <<<"$e" | sed -n 's/.*ms_per_estimate=\([0-9.]*\).*/\1/p')
echo "| MoveNet Lightning (192×192) | - | $ms measured | $ap | $pck1 | $pck2 |"
