#!/usr/bin/env bash
# Boots Debian's kernel under qemu (software emulation) with a minimal
# initramfs: busybox, the media modules the `vivid` virtual camera needs, the
# vipnas binary with its libraries and a model. tests/vivid/init.sh runs inside
# (loads vivid, runs the capture scenarios) and sends the results back over a
# second serial port; they land in OUT_DIR. tests/vivid.rs asserts on them.
#
#   tests/vivid/vm.sh VIPNAS_BINARY MODEL_DIR OUT_DIR
#
# Exit 77 (with a line starting `SKIP:`) when the VM cannot be built here: no
# qemu-system-x86_64, busybox, kmod or cpio, or the kernel package cannot be
# downloaded. Downloaded .debs are cached in $VIVID_CACHE (default
# target/vivid), never committed.
set -euo pipefail

bin=$(realpath "$1")
model=$(realpath "$2")
out=$(realpath -m "$3")
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=$(realpath -m "${VIVID_CACHE:-$repo/target/vivid}")
timeout_s=${VIVID_TIMEOUT:-240}

skip() { echo "SKIP: $*"; exit 77; }
for tool in qemu-system-x86_64 cpio depmod modprobe gzip; do
  command -v "$tool" >/dev/null || skip "$tool not found (scripts/setup.sh installs qemu-system-x86, kmod, cpio)"
done
busybox=/bin/busybox
[[ -x $busybox ]] && ! ldd "$busybox" >/dev/null 2>&1 || skip "no static $busybox (package busybox-static)"

# The kernel: what linux-image-amd64 depends on today, downloaded once.
source "$here/../debian-kernel.sh"
debian_kernel amd64 "$cache"
root=$kroot

# The initramfs.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ir="$work/root"
mkdir -p "$ir"/{bin,dev,proc,sys,tmp,out,lib/modules,model}
cp "$busybox" "$ir/bin/busybox"
modprobe -d "$root" -S "$kver" --show-depends vivid | awk '/^insmod/ {print $2}' > "$work/modules"
: > "$ir/modules.order"
while read -r ko; do
  cp "$ko" "$ir/lib/modules/"
  basename "$ko" >> "$ir/modules.order"
done < "$work/modules"
cp "$bin" "$ir/bin/vipnas"
# The binary's shared libraries, at the paths its loader looks for them.
ldd "$bin" | grep -o '/[^ ]*' | while read -r lib; do
  mkdir -p "$ir$(dirname "$lib")"
  cp -L "$lib" "$ir$lib"
done
cp -r "$model"/. "$ir/model/"
cp "${VIVID_INIT:-$here/init.sh}" "$ir/init"
chmod +x "$ir/init" "$ir/bin/vipnas"
(cd "$ir" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initrd.gz"

# Boot. Console on the first serial port, results on the second.
mkdir -p "$out"
rm -f "$out/console.log" "$out/results.b64"
start=$(date +%s%N)
# The CPU model: one without AVX/FMA. TCG emulates AVX2 and fused multiply-add
# through software floating point, ~15x slower than SSE: with `-cpu max` the
# small subnet took ~7 s a frame (tract's kernels and ours alike, both pick
# their AVX2+FMA code) instead of ~0.4 s, and the run outlived its watchdog.
set +e
timeout "$timeout_s" qemu-system-x86_64 -accel tcg -cpu "${VIVID_CPU:-Nehalem}" -m 1024 -smp 2 \
  -kernel "$root/boot/vmlinuz-$kver" -initrd "$work/initrd.gz" \
  -append "console=ttyS0 quiet panic=-1" \
  -display none -no-reboot -monitor none \
  -serial "file:$out/console.log" -serial "file:$out/results.b64" </dev/null
rc=$?
set -e
echo "vivid-vm: kernel $kver, VM ran $(( ($(date +%s%N) - start) / 1000000 )) ms (qemu exit $rc)"
[[ $rc -eq 124 ]] && { tail -20 "$out/console.log"; echo "vivid-vm: timed out after ${timeout_s} s"; exit 1; }
tr -d '\r' < "$out/results.b64" | base64 -d | tar -x -C "$out" \
  || { tail -30 "$out/console.log"; echo "vivid-vm: no results came back"; exit 1; }
echo "vivid-vm: results in $out"
