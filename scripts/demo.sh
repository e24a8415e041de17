#!/usr/bin/env bash
# The main job on a fresh machine: builds vipnas (release) and runs it on the
# bundled clip with the bundled model, writing poses and overlays to out/demo/.
# Extra arguments go to `vipnas run` (e.g. --source v4l:/dev/video0 --frames 300).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --run
# A clean build takes minutes (~7 on 2 cores): cargo's own progress, not silence.
echo "demo: building vipnas (release; a first build takes a few minutes)"
cargo build --release
exec target/release/vipnas run --overlay --out out/demo "$@"
