#!/usr/bin/env bash
# The temporal bundle of docs/temporal.md, end to end: fetch the data, train a
# temporal net (MobileNetV3 space, smallest subnet, ImageNet-initialised, fused
# after stage 2 by addition) on the training split's video frames (pose2sim
# cam01/cam02, teacher-labelled sports2d and vtest) with MoveNet Lightning as the
# key net, then benchmark it against MoveNet on every frame on the held-out camera
# (pose2sim cam03, never trained on): AP, cost, jitter, frames in budget idle and
# loaded (`vipnas bench temporal`).
#
#   scripts/train-temporal.sh [OUT (default runs/movenet-temporal)] [INPUT (96x96)] [STEPS (1500)]
# ~15 min of training on a 2-vCPU machine at 96×96 (with LSPet: VIPNAS_LSPET, see fetch-data.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/movenet-temporal}
INPUT=${2:-96x96}
STEPS=${3:-1500}
D=.cache/data
cargo build --release --features host
scripts/fetch-data.sh "$D"
V=target/release/vipnas
$V train-temporal --key models/movenet-lightning --space mbv3 --sample min --input "$INPUT" --fusion add@2 \
  --coco $D/splits/train.json --images $D --steps "$STEPS" --init $D/init/lite0-mbv3.vnw --out "$OUT"
$V bench temporal --model "$OUT" --coco $D/splits/val.json --images $D --clip $D/pose2sim/cam03 \
  --plot "$OUT/bench-temporal.png"
