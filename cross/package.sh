#!/usr/bin/env bash
# Builds the Debian package of the device build:
#   target/debian/vipnas_<version>_<arch>.deb
# with dpkg-deb: /usr/bin/vipnas, the default model bundle and the board
# profiles and tables in /usr/share/vipnas/, a systemd unit running
# `vipnas run --config /etc/vipnas/vipnas.toml` as the system user `vipnas`
# (group video), that config file, and lintian's verdict on the result.
#
#   cross/package.sh [arm64|amd64] [BINARY]     (default arm64)
#
# arm64 takes the device binary `cross/build.sh --dist` builds (any of its
# routes; the size-optimised `dist` profile);
# amd64 the host build (`cargo build --release --features host`). BINARY is
# one already built instead (scripts/test.sh passes the dist binary it built
# and, for amd64, the host binary its tests ran: `cargo build` after `cargo
# test` would rebuild much of the dependency graph, since dev-dependencies
# change some crates' features). Install with
#   sudo apt install ./vipnas_<version>_arm64.deb
set -euo pipefail
cd "$(dirname "$0")/.."
umask 022

arch=${1:-arm64}
bin=${2:-}
[[ -z $bin || -f $bin ]] || { echo "package: no binary $bin" >&2; exit 2; }
case "$arch" in
  arm64)
    if [[ -z $bin ]]; then
      bin=$(cross/build.sh --dist | sed -n 's/^cross: built \([^ ]*\) in .*/\1/p')
      [[ -n $bin ]] || { echo "package: cross/build.sh did not say what it built" >&2; exit 1; }
    fi ;;
  amd64)
    if [[ -z $bin ]]; then
      # A PC gets the host build (training, evaluation and search besides run).
      cargo build --release --features host --quiet
      bin=target/release/vipnas
    fi ;;
  *) echo "package: unknown architecture '$arch' (arm64 or amd64)" >&2; exit 2 ;;
esac
file -b "$bin" | grep -q "$( [[ $arch == arm64 ]] && echo aarch64 || echo x86-64)" \
  || { echo "package: $bin is not an $arch binary: $(file -b "$bin")" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
deb=target/debian/vipnas_${version}_${arch}.deb
root=target/debian/vipnas_${arch}
rm -rf "$root" && mkdir -p "$root/DEBIAN"
# Files are 0644 (0755 for the binary) and directories 0755 (umask 022 above),
# whatever the checkout's modes were.
put() { install -D -m "$1" "$2" "$root/$3"; }

put 0755 "$bin" usr/bin/vipnas
objcopy=$( [[ $arch == arm64 ]] && echo aarch64-linux-gnu-objcopy || echo objcopy )
$objcopy --remove-section=.comment "$root/usr/bin/vipnas"
for f in models/movenet-lightning/*; do put 0644 "$f" "usr/share/vipnas/$f"; done
for f in boards/*.toml boards/*.lut.json; do put 0644 "$f" "usr/share/vipnas/$f"; done
put 0644 cross/deb/vipnas.service lib/systemd/system/vipnas.service
put 0644 cross/deb/sysusers.conf usr/lib/sysusers.d/vipnas.conf
put 0644 cross/deb/vipnas.toml etc/vipnas/vipnas.toml
put 0644 cross/deb/copyright usr/share/doc/vipnas/copyright
put 0644 README.md usr/share/doc/vipnas/README.md
put 0644 cross/deb/lintian-overrides usr/share/lintian/overrides/vipnas
mkdir -p "$root/usr/share/man/man1"
gzip -9n < cross/deb/vipnas.1 > "$root/usr/share/man/man1/vipnas.1.gz"
chmod 0644 "$root/usr/share/man/man1/vipnas.1.gz"
changelog="$root/usr/share/doc/vipnas/changelog.gz"
{
  echo "vipnas ($version) unstable; urgency=medium"
  echo
  echo "  * Built from commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
  echo
  echo " -- ${VIPNAS_MAINTAINER:-vipnas developers <vipnas@example.org>}  $(date -R -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)")"
} | gzip -9n > "$changelog"
chmod 0644 "$changelog"
for s in postinst prerm postrm; do install -m 0755 "cross/deb/$s" "$root/DEBIAN/$s"; done
echo /etc/vipnas/vipnas.toml > "$root/DEBIAN/conffiles"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"

cat > "$root/DEBIAN/control" <<CONTROL
Package: vipnas
Version: $version
Architecture: $arch
Maintainer: ${VIPNAS_MAINTAINER:-vipnas developers <vipnas@example.org>}
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: libc6 (>= 2.35), libgcc-s1 (>= 4.2), systemd, init-system-helpers (>= 1.52)
Section: video
Priority: optional
Description: real-time human pose estimation on edge boards
 vipnas estimates human poses from a V4L2 camera frame by frame, with models
 searched for the board's measured latency (ViPNAS). This package runs it as
 a systemd service: configure /etc/vipnas/vipnas.toml, then poses arrive in
 /var/lib/vipnas/poses.jsonl and, live, in the named pipe /run/vipnas/poses.
CONTROL

mkdir -p target/debian
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "package: $deb ($(( $(stat -c %s "$deb") / 1024 )) KiB, $(du -sk --exclude=DEBIAN "$root" | cut -f1) KiB installed)"

# lintian: any finding (error, warning, info) not overridden by the package's
# own overrides (cross/deb/lintian-overrides, each with its reason) fails the
# build where lintian is installed.
if command -v lintian >/dev/null 2>&1; then
  report=$(lintian --fail-on none --display-info "$deb" 2>&1 \
    | grep -v '^running with root privileges is not recommended' || true)
  if [[ -n $report ]]; then
    echo "$report"
    echo "package: lintian has findings" >&2
    exit 1
  fi
  echo "package: lintian clean"
else
  echo "package: !! lintian not installed: the package was not checked (scripts/setup.sh installs it)"
fi
