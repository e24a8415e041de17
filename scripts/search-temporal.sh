#!/usr/bin/env bash
# The temporal search of docs/temporal.md, end to end: fetch the data, train a
# pool of temporal nets that differ in fusion stage, fusion op and T-subnet
# (MobileNetV3 space, ImageNet-initialised, 96×96, MoveNet Lightning as the key
# net, the same schedule each; a net already trained is kept), then search the
# key interval and the net of each propagated frame under a budget on the mean
# latency per frame (this machine: host), scored on the held-out camera
# (pose2sim cam03, never trained on), and benchmark the chosen bundle.
#
#   scripts/search-temporal.sh [OUT (default runs/tsearch)] [BUDGET_MS (default 7.5)] [STEPS (default 600)]
# ~6 min per net on a 2-vCPU machine (6 nets), then ~10 min of search.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/tsearch}
BUDGET=${2:-7.5}
STEPS=${3:-600}
D=.cache/data
cargo build --release --features host
scripts/fetch-data.sh "$D"
V=target/release/vipnas
POOL=$OUT/pool
mkdir -p "$POOL"
nets=()
train() { # NAME FUSION SUBNET-ARGS...
  local name=$1 fusion=$2; shift 2
  nets+=("$POOL/$name")
  [[ -f $POOL/$name/manifest.json ]] && return 0
  echo "== training $name ($fusion $*) → $POOL/$name.log"
  $V train-temporal --key models/movenet-lightning --space mbv3 "$@" --input 96x96 --fusion "$fusion" \
    --coco $D/splits/train.json --images $D --steps "$STEPS" --init $D/init/lite0-mbv3.vnw \
    --out "$POOL/$name" > "$POOL/$name.log" 2>&1
  tail -2 "$POOL/$name.log"
}
train min-add2 add@2 --sample min
train min-mul2 mul@2 --sample min
train min-concat2 concat@2 --sample min
train min-add1 add@1 --sample min
train min-add4 add@4 --sample min
train s25-add2 add@2 --sample scaled --scale 25
$V search-temporal --nets "$(IFS=,; echo "${nets[*]}")" --board host --table boards/host-96x96.lut.json --budget-ms "$BUDGET" --evals 100 \
  --coco $D/splits/val.json --images $D --out "$OUT"
$V bench temporal --model "$OUT/bundle-$BUDGET" --coco $D/splits/val.json --images $D \
  --clip $D/pose2sim/cam03 --plot "$OUT/bench-temporal.png"
