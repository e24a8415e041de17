#!/usr/bin/env bash
# Builds the device binary (default features: tract, v4l, overlay) for
# aarch64-unknown-linux-gnu and, with --test, runs the test suite under qemu;
# with --dist, builds the binary the package ships instead: Cargo.toml's
# `dist` profile (fat LTO, dependencies optimised for size), about half the
# release build's size, built on its own (its dependencies are compiled
# differently, so nothing is shared with the test build).
#
# Three routes, tried in this order (force one with VIPNAS_CROSS_ROUTE=rustup|cross|debian):
#   rustup  the machine's toolchain + `rustup target add` (needs the rustup dist server)
#   cross   `cross` with docker (Cross.toml)
#   debian  Debian's rustc-web/cargo-web + libstd-rust-web-dev:arm64, from apt alone
# All three link with Debian's gcc-aarch64-linux-gnu (or cross's image) and run
# tests with qemu-aarch64-static (.cargo/config.toml).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=aarch64-unknown-linux-gnu
cmd=build
profile=release
case "${1:-}" in
  --test) cmd=test ;;
  --dist) profile=dist ;;
  "") ;;
  *) echo "cross/build.sh: unknown option ${1} (--test or --dist)" >&2; exit 2 ;;
esac
route=${VIPNAS_CROSS_ROUTE:-auto}
SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"

# bindgen (v4l) must see the aarch64 sysroot's headers.
export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--target=aarch64-linux-gnu --sysroot=/usr/aarch64-linux-gnu"
# Tests that start the vipnas binary run it through the emulator too, on the
# same CPU model as .cargo/config.toml's runner (why: there).
export QEMU_CPU=cortex-a72  # for cross's own runner (Cross.toml passes it through)
export VIPNAS_BIN_RUNNER="qemu-aarch64-static -cpu cortex-a72 -L /usr/aarch64-linux-gnu -E LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib"
# qemu-user is slow: keep the device suite to the tests that matter on the board.
export VIPNAS_UNDER_QEMU=1

try_rustup() {
  command -v rustup >/dev/null 2>&1 || return 1
  rustup target list --installed 2>/dev/null | grep -qx "$TARGET" && return 0
  timeout 120 rustup target add "$TARGET"
}

try_cross() {
  command -v cross >/dev/null 2>&1 && command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

setup_debian() {
  if ! dpkg -s libstd-rust-web-dev:arm64 >/dev/null 2>&1; then
    echo "cross: installing Debian's rustc-web toolchain for arm64"
    $SUDO dpkg --add-architecture arm64
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
      qemu-user-static libclang-dev >/dev/null
  fi
}

out_dir=target
case "$route" in
  auto)
    if try_rustup; then route=rustup
    elif try_cross; then route=cross
    else route=debian; fi ;;
  rustup) try_rustup ;;
  cross) try_cross || { echo "cross: no docker engine" >&2; exit 1; } ;;
  debian) ;;
  *) echo "unknown VIPNAS_CROSS_ROUTE=$route (rustup|cross|debian)" >&2; exit 2 ;;
esac

echo "cross: route=$route cmd=$cmd profile=$profile"
start=$(date +%s)
case "$route" in
  rustup) cargo "$cmd" --profile "$profile" --target "$TARGET" ;;
  cross) CROSS_CONFIG=cross/Cross.toml cross "$cmd" --profile "$profile" --target "$TARGET" ;;
  debian)
    setup_debian
    # Debian's toolchain gets its own target dir: artefacts of two compilers never mix.
    out_dir=target-debian
    RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc /usr/bin/cargo "$cmd" --profile "$profile" --target "$TARGET" --target-dir "$out_dir" ;;
esac
bin="$out_dir/$TARGET/$profile/vipnas"
size=$(stat -c %s "$bin")
echo "cross: built $bin in $(( $(date +%s) - start )) s: $(( size / 1024 / 1024 )) MiB stripped ($size bytes)"
$VIPNAS_BIN_RUNNER "$bin" --version
