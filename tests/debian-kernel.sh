# Sourced by the VM tests (tests/vivid/vm.sh, tests/deploy/vm.sh): Debian's
# current kernel for an architecture, downloaded once into a cache and
# unpacked there with its module index.
#
#   debian_kernel ARCH CACHE    sets kver (e.g. 6.1.0-57-arm64) and kroot (the
#                               unpacked package: $kroot/boot/vmlinuz-$kver,
#                               $kroot/lib/modules/$kver)
#
# Calls `skip MESSAGE` (the caller's: it exits 77) when apt does not know the
# package or cannot download it. A foreign ARCH needs it in dpkg's
# architectures (scripts/setup.sh adds arm64).
debian_kernel() {
  local arch=$1 cache=$2 pkg kdeb
  pkg=$(apt-cache depends "linux-image-$arch:$arch" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  [[ -n $pkg ]] || skip "apt-cache does not know linux-image-$arch:$arch (dpkg --add-architecture $arch && apt-get update)"
  pkg=${pkg%:"$arch"}
  kver=${pkg#linux-image-}
  kroot="$cache/$kver"
  mkdir -p "$cache"
  if [[ ! -f $kroot/boot/vmlinuz-$kver ]]; then
    kdeb=$(ls "$cache"/"$pkg"_*.deb 2>/dev/null | head -1 || true)
    if [[ -z $kdeb ]]; then
      echo "downloading $pkg:$arch (~60-70 MB, cached in $cache)"
      (cd "$cache" && apt-get download -q "$pkg:$arch" >/dev/null 2>&1) || skip "cannot download $pkg:$arch"
      kdeb=$(ls "$cache"/"$pkg"_*.deb | head -1)
    fi
    rm -rf "$kroot.tmp" && dpkg -x "$kdeb" "$kroot.tmp" && depmod -b "$kroot.tmp" "$kver" && mv "$kroot.tmp" "$kroot"
  fi
}
