#!/usr/bin/env bash
# The real MBV3 supernet training run of docs/training.md, end to end: fetch the data,
# train (resumable: run it again after a stop), then export the max, min and two random
# subnets (BatchNorm recalibrated) from the trained and from the untrained supernet and
# score them on the held-out camera (pose2sim cam03) with GT boxes: OKS AP and PCK@0.2.
#
#   scripts/train-mbv3.sh [RUN_DIR (default runs/mbv3)] [STEPS (default 800)]
# ~1.5 h on a 2-vCPU machine at 128×96.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/mbv3}
STEPS=${2:-800}
D=.cache/data
scripts/fetch-data.sh "$D"
cargo build --release --features host
V=target/release/vipnas
train() { $V train --space mbv3 --coco $D/splits/train.json --images $D --input 128x96 --steps "$STEPS" "$@"; }
train --out "$RUN"
train --out "$RUN-untrained" --stop-after 0 >/dev/null
printf '| subnet | GFLOPs | AP untrained | AP trained | PCK@0.2 untrained | PCK@0.2 trained |\n|---|---|---|---|---|---|\n'
for pick in "max" "min" "random --seed 1" "random --seed 2"; do
  row=""
  for run in "$RUN-untrained" "$RUN"; do
    b="$run/bundles/${pick// /-}"
    # shellcheck disable=SC2086
    flops=$($V export --checkpoint "$run/checkpoint.vnck" --sample $pick --out "$b" | sed -n 's/.*flops=\([0-9.]*\)G.*/\1/p')
    e=$($V eval --model "$b" --coco $D/splits/val.json --images $D --roi gt)
    ap=$(grep -m1 'Average Precision  (AP) @\[ IoU=0.50:0.95 | area=   all' <<<"$e" | awk '{print $NF}')
    pck=$(grep -m1 '^PCK' <<<"$e" | sed -n 's/.*@0.2=\([0-9.]*\).*/\1/p')
    row="$row $ap $pck"
  done
  read -r ap0 pck0 ap1 pck1 <<<"$row"
  echo "| $pick | $flops | $ap0 | $ap1 | $pck0 | $pck1 |"
done
