#!/usr/bin/env bash
# Soak benchmark: N synthetic frames (default 100 000) through the default
# model (MoveNet Lightning, 1 thread), the process's resident memory sampled
# every 2 s. Prints a table: RSS after warm-up and at the end (growth must
# stay under 1 MB), and the latency quantiles of the first and last 10 % of
# frames (drift: the last tenth's p99 against the first's, on the same run).
#   scripts/soak.sh [FRAMES] [MODEL]
# Needs the host binary (cargo build --release); ~24 ms a frame here (2 vCPUs),
# so the default 100 000 frames take ~40 min.
set -euo pipefail
cd "$(dirname "$0")/.."
frames=${1:-100000}
model=${2:-models/movenet-lightning}
bin=target/release/vipnas
out=target/soak
[[ -x $bin ]] || cargo build --release
rm -rf "$out" && mkdir -p "$out"

"$bin" run --model "$model" --source "synthetic:$frames" --out "$out" --threads 1 >"$out/summary.txt" &
pid=$!
start=$(date +%s)
: >"$out/rss.txt"
while kill -0 "$pid" 2>/dev/null; do
  # lines written so far (= frames done), resident kB
  done_frames=$( { wc -l <"$out/poses.jsonl"; } 2>/dev/null || echo 0)
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  [[ -n "$rss" ]] && echo "$done_frames $rss" >>"$out/rss.txt"
  sleep 2
done
wait "$pid"
secs=$(( $(date +%s) - start ))

# RSS once a tenth of the frames ran (warm: the buffers have their size), and the last sample.
read -r warm_rss end_rss < <(awk -v n="$frames" '$1 >= n / 10 && !w {w = $2} {e = $2} END {print w, e}' "$out/rss.txt")
# Latency quantiles of the first and last tenth (latency_ms of poses.jsonl).
quantiles() {
  grep -o '"latency_ms":[0-9.]*' "$out/poses.jsonl" | cut -d: -f2 | awk -v from="$1" -v to="$2" 'NR > from && NR <= to' |
    sort -g | awk '{v[NR] = $1} END {printf "%.2f %.2f\n", v[int(NR * 0.5) + 1], v[int(NR * 0.99) + 1]}'
}
tenth=$(( frames / 10 ))
read -r p50a p99a < <(quantiles 0 "$tenth")
read -r p50b p99b < <(quantiles $(( frames - tenth )) "$frames")
lines=$(wc -l <"$out/poses.jsonl")

echo "soak: $frames synthetic frames, $model, 1 thread, $secs s ($(tail -1 "$out/summary.txt"))"
printf '| %-34s | %12s |\n' "measure" "value"
printf '|%s|%s|\n' "------------------------------------" "--------------"
printf '| %-34s | %12s |\n' "pose lines written" "$lines"
printf '| %-34s | %9s kB |\n' "RSS after 10 % of frames" "$warm_rss"
printf '| %-34s | %9s kB |\n' "RSS at the end" "$end_rss"
printf '| %-34s | %9s kB |\n' "growth after warm-up (< 1024)" "$(( end_rss - warm_rss ))"
printf '| %-34s | %6s / %6s |\n' "p50 / p99 ms, first 10 %" "$p50a" "$p99a"
printf '| %-34s | %6s / %6s |\n' "p50 / p99 ms, last 10 %" "$p50b" "$p99b"
awk -v a="$p99a" -v b="$p99b" 'BEGIN {printf "| %-34s | %11.2fx |\n", "p99 last / first", b / a}'
[[ $lines -eq $frames && $(( end_rss - warm_rss )) -lt 1024 ]]
