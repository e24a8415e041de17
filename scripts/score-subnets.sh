#!/usr/bin/env bash
# Exports subnets of a trained supernet — max, min, two random, three uniformly
# scaled (25/50/75 %) — and scores them on the held-out camera (pose2sim cam03,
# never trained on) through `vipnas eval` with crop tracking (no smoothing), as a
# Markdown table: OKS AP, PCK@0.1, PCK@0.2, GFLOPs and the host latency table's
# prediction (when the table holds the run's input size). Bundles: RUN/bundles/.
#
#   scripts/score-subnets.sh RUN_DIR [DATA_DIR (default .cache/data)]
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=$1
D=${2:-.cache/data}
V=target/release/vipnas
printf '| subnet | GFLOPs | host table ms | AP | PCK@0.1 | PCK@0.2 |\n|---|---|---|---|---|---|\n'
for pick in "max" "min" "random --seed 1" "random --seed 2" "scaled --scale 25" "scaled --scale 50" "scaled --scale 75"; do
  b="$RUN/bundles/${pick// /-}"
  # shellcheck disable=SC2086
  flops=$($V export --checkpoint "$RUN/checkpoint.vnck" --sample $pick --out "$b" | sed -n 's/.*flops=\([0-9.]*\)G.*/\1/p')
  ms=$($V predict --board host --model "$b" 2>/dev/null | sed -n 's/^predicted_ms=//p' || true)
  e=$($V eval --model "$b" --coco "$D/splits/val.json" --images "$D")
  ap=$(grep -m1 'Average Precision  (AP) @\[ IoU=0.50:0.95 | area=   all' <<<"$e" | awk '{print $NF}')
  pck1=$(grep -m1 '^PCK' <<<"$e" | sed -n 's/.*@0.1=\([0-9.]*\).*/\1/p')
  pck2=$(grep -m1 '^PCK' <<<"$e" | sed -n 's/.*@0.2=\([0-9.]*\).*/\1/p')
  echo "| ${pick/--seed /seed } | $flops | ${ms:--} | $ap | $pck1 | $pck2 |"
done
