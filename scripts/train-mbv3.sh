#!/usr/bin/env bash
# The real MBV3 supernet training run of docs/training.md, end to end: fetch the data
# (LSPet too when VIPNAS_LSPET names a clone of it: see scripts/fetch-data.sh), train
# from the ImageNet initial weights (resumable: run it again after a stop, also on
# another day), then export the max, min, two random and three uniformly scaled subnets
# (BatchNorm recalibrated) and score them on the held-out camera (pose2sim cam03) through
# `vipnas eval` with crop tracking: OKS AP, PCK@0.1 and PCK@0.2, and the host latency
# table's prediction beside each.
#
#   VIPNAS_LSPET=PATH scripts/train-mbv3.sh [RUN_DIR (default runs/mbv3)] [STEPS (default 480)] [TRAIN_OPTION…]
# (e.g. --dense-teacher .cache/data/models/movenet-thunder: any further `vipnas train` options)
# ~1.5 h on a 2-vCPU machine at 128×96 (docs/training.md, "The LSPet run").
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/mbv3}
STEPS=${2:-480}
shift $(( $# < 2 ? $# : 2 ))
D=.cache/data
cargo build --release --features host
scripts/fetch-data.sh "$D"
V=target/release/vipnas
$V train --space mbv3 --coco $D/splits/train.json --images $D --input 128x96 --steps "$STEPS" --randoms 1 \
  --init $D/init/lite0-mbv3.vnw --checkpoint-every 20 --out "$RUN" "$@"
scripts/score-subnets.sh "$RUN" "$D" boards/host-128x96.lut.json
