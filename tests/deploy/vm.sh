#!/usr/bin/env bash
# The full-system test of the arm64 package: an arm64 Debian root filesystem
# built from Debian's packages (debootstrap; its second stage runs inside the
# VM), the .deb installed into it with apt, booted with Debian's arm64 kernel
# under qemu-system-aarch64 (software emulation) with the `vivid` virtual
# camera. tests/deploy/init.sh prepares the system, systemd boots it and
# tests/deploy/check.sh tests the service; its report, journal, poses and
# timings land in OUT_DIR. Exit 0 when every check passed.
#
#   tests/deploy/vm.sh vipnas_<version>_arm64.deb OUT_DIR
#
# Exit 77 (with a line starting `SKIP:`) when the VM cannot be built here: no
# qemu-system-aarch64 or debootstrap, or Debian's packages cannot be
# downloaded. Downloads are cached in $DEPLOY_CACHE (default target/deploy-vm),
# never committed. DEPLOY_SUITE (default bookworm), DEPLOY_MIRROR,
# DEPLOY_TIMEOUT (seconds, default 900) tune it.
set -euo pipefail

deb=$(realpath "$1")
out=$(realpath -m "$2")
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=$(realpath -m "${DEPLOY_CACHE:-$repo/target/deploy-vm}")
suite=${DEPLOY_SUITE:-bookworm}
mirror=${DEPLOY_MIRROR:-http://deb.debian.org/debian}
timeout_s=${DEPLOY_TIMEOUT:-900}
SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"

skip() { echo "SKIP: $*"; exit 77; }
for tool in qemu-system-aarch64 debootstrap cpio depmod modprobe; do
  command -v "$tool" >/dev/null || skip "$tool not found (scripts/setup.sh installs qemu-system-arm, debootstrap, kmod, cpio)"
done
qemu-system-aarch64 -M virt -cpu cortex-a72 -display none -S -monitor none -serial none </dev/null 2>/dev/null &
qpid=$!; sleep 1
kill -0 $qpid 2>/dev/null || skip "qemu-system-aarch64 cannot start here"
kill $qpid; wait $qpid 2>/dev/null || true
[[ -f $deb ]] || { echo "deploy-vm: no package $deb (cross/package.sh arm64 builds it)" >&2; exit 2; }

# The root filesystem's first stage: Debian's arm64 packages, downloaded and
# unpacked here (no arm64 code runs on the host), kept as a tarball.
mkdir -p "$cache"
stage1="$cache/$suite-arm64-stage1.tar"
if [[ ! -f $stage1 ]]; then
  echo "deploy-vm: debootstrap --foreign $suite arm64 (~45 MB of packages, cached in $cache)"
  rm -rf "$cache/stage1"
  $SUDO debootstrap --foreign --arch=arm64 --variant=minbase --include=systemd,systemd-sysv,udev,kmod \
    "$suite" "$cache/stage1" "$mirror" > "$cache/debootstrap.log" 2>&1 \
    || { tail -5 "$cache/debootstrap.log"; skip "debootstrap of $suite arm64 from $mirror failed"; }
  $SUDO tar -C "$cache/stage1" -cf "$stage1.tmp" . && $SUDO rm -rf "$cache/stage1" && mv "$stage1.tmp" "$stage1"
fi

# The kernel: what linux-image-arm64 depends on today, downloaded once.
source "$here/../debian-kernel.sh"
debian_kernel arm64 "$cache"

# The initramfs is the whole system: the first stage, the modules vivid needs
# (systemd loads them), the package and the two scripts.
work=$(mktemp -d)
trap '$SUDO rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root"
$SUDO tar -C "$root" -xf "$stage1"
# debootstrap inside a container links /proc to the host's: the VM mounts its own.
$SUDO rm -f "$root/proc" && mkdir -p "$root/proc"
mods="$root/lib/modules/$kver"
modprobe -d "$kroot" -S "$kver" --show-depends vivid | awk '/^insmod/ {print $2}' | while read -r ko; do
  rel=${ko#"$kroot/lib/modules/$kver/"}
  mkdir -p "$mods/$(dirname "$rel")" && cp "$ko" "$mods/$rel"
done
cp "$kroot/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} "$mods/"
depmod -b "$root" "$kver"
cp "$deb" "$root/root/"
install -m 0755 "$here/init.sh" "$root/deploy-init"
install -m 0755 "$here/check.sh" "$root/root/check.sh"
(cd "$root" && $SUDO find . | $SUDO cpio -o -H newc --quiet) > "$work/initrd"

mkdir -p "$out"
rm -f "$out"/*
console="$out/console.log"
echo "deploy-vm: booting $kver with $(basename "$deb") ($(( $(stat -c %s "$work/initrd") / 1048576 )) MiB initramfs)"
start=$(date +%s)
set +e
timeout "$timeout_s" qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 2048 \
  -kernel "$kroot/boot/vmlinuz-$kver" -initrd "$work/initrd" \
  -append "console=ttyAMA0 rdinit=/deploy-init loglevel=1 systemd.show_status=0 panic=-1" \
  -display none -no-reboot -monitor none -serial "file:$console" </dev/null
rc=$?
set -e
echo "deploy-vm: VM ran $(( $(date +%s) - start )) s (qemu exit $rc)"
[[ $rc -eq 124 ]] && { tail -30 "$console"; echo "deploy-vm: timed out after ${timeout_s} s"; exit 1; }
tr -d '\r' < "$console" | sed -n '/^==== RESULTS BEGIN ====$/,/^==== RESULTS END ====$/p' | sed '1d;$d' \
  | base64 -d | tar -xz -C "$out" \
  || { tail -40 "$console"; echo "deploy-vm: no results came back"; exit 1; }
cat "$out/report.txt" "$out/timing.txt"
grep -q '^DONE$' "$out/report.txt" || { echo "deploy-vm: the checks did not finish"; exit 1; }
! grep -q '^FAIL' "$out/report.txt" || { echo "deploy-vm: checks failed (journal: $out/journal.txt)"; exit 1; }
echo "deploy-vm: every check passed; results in $out"
