#!/usr/bin/env bash
# Installs what building and testing vipnas needs on a Debian/Ubuntu machine,
# idempotently: Debian packages (libclang for v4l's bindgen, the aarch64 cross
# linker and qemu-user for the device tests, qemu-system, busybox, kmod and cpio
# for the vivid camera VM test, python3-venv), a Rust toolchain if none is
# present, and the Python oracles in .cache/venv.
#
#   scripts/setup.sh           everything
#   scripts/setup.sh --run     only what `vipnas run` needs (no cross, no oracles)
set -euo pipefail
cd "$(dirname "$0")/.."

only_run=0
[[ "${1:-}" == "--run" ]] && only_run=1

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

need=()
want() { dpkg -s "$1" >/dev/null 2>&1 || need+=("$1"); }
want libclang-dev
want pkg-config
command -v cc >/dev/null 2>&1 || need+=(build-essential)
if [[ $only_run -eq 0 ]]; then
  want gcc-aarch64-linux-gnu
  want libc6-dev-arm64-cross
  want qemu-user-static
  want qemu-system-x86
  want busybox-static
  want kmod
  want cpio
  # The Debian packages (cross/package.sh) and their arm64 boot test (tests/deploy/).
  want lintian
  want file
  want debootstrap
  want qemu-system-arm
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
fi
if ! command -v cargo >/dev/null 2>&1; then
  # No rustup here: Debian's newer toolchain (cargo-web is cargo for rustc-web).
  need+=(rustc-web cargo-web)
fi
# The deployment test boots Debian's arm64 kernel: apt must know arm64 packages.
if [[ $only_run -eq 0 ]] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  echo "setup: adding arm64 to dpkg's architectures (Debian's arm64 kernel for tests/deploy)"
  $SUDO dpkg --add-architecture arm64
  $SUDO apt-get update -qq
fi
if [[ ${#need[@]} -gt 0 ]]; then
  echo "setup: installing Debian packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [[ $only_run -eq 0 ]]; then
  venv=.cache/venv
  if [[ ! -x $venv/bin/python ]]; then
    echo "setup: creating $venv"
    python3 -m venv "$venv"
  fi
  if ! cmp -s scripts/requirements-oracles.txt "$venv/.requirements" 2>/dev/null; then
    echo "setup: installing Python oracles into $venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r scripts/requirements-oracles.txt
    cp scripts/requirements-oracles.txt "$venv/.requirements"
  fi
fi
