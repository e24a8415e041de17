#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers (cargo-fuzz / libFuzzer, nightly Rust).
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET…]     default: 60 s, every target
# Targets: manifest board latency_table subnet y4m, and the host's coco
# checkpoint weights (built with burn: `--features host`; fuzz/fuzz_targets/). The
# committed seeds (fuzz/corpus/<target>) stay small: the corpus grown here
# lives in target/fuzz-corpus/<target>. A crash stops its target; its input is
# copied to fuzz/regressions/<target>/, which tests/fuzz_corpus.rs replays in
# every test run. Installs nightly (rustup) and cargo-fuzz (crates.io) if absent.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
shift || true
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(manifest board latency_table subnet y4m coco checkpoint weights)

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz: installing the nightly toolchain (rustup)"
  rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz (crates.io)"
  cargo install cargo-fuzz --locked
fi

printf '%-14s %8s %12s %8s %s\n' target seconds executions corpus result
status=0
for t in "${targets[@]}"; do
  work="target/fuzz-corpus/$t"
  mkdir -p "$work" "fuzz/regressions/$t"
  log="target/fuzz-$t.log"
  features=()
  case $t in coco | checkpoint | weights) features=(--features host) ;; esac
  # -rss_limit_mb: an input that makes a parser allocate without bound is a crash too.
  if cargo +nightly fuzz run --fuzz-dir fuzz "${features[@]}" "$t" "$work" "fuzz/corpus/$t" -- \
      -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result="CRASH (log: $log)"
    status=1
    for a in fuzz/artifacts/"$t"/*; do
      [[ -f "$a" ]] && cp "$a" "fuzz/regressions/$t/" && result="$result, saved fuzz/regressions/$t/$(basename "$a")"
    done
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  printf '%-14s %8s %12s %8s %s\n' "$t" "$secs" "${execs:-?}" "$(ls "$work" | wc -l)" "$result"
done
exit $status
