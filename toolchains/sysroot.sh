#!/usr/bin/env bash
# Unpacks the target architecture's yaml-cpp into a sysroot for a cross build:
# libyaml-cpp-dev:arm64 cannot be installed beside the amd64 one (its headers
# are not Multi-Arch: same), so its files are unpacked, not installed. The
# runtime library (libyaml-cpp0.7:arm64) is installed by scripts/install-deps.sh
# and unpacked here too, so the link needs nothing outside the sysroot.
#   toolchains/sysroot.sh DIR [ARCH]      (ARCH: arm64 (default) or armhf)
# then configure with -DCMAKE_PREFIX_PATH=DIR/usr. Needs network, not root.
set -euo pipefail
sysroot=${1:?usage: toolchains/sysroot.sh DIR [ARCH]}
arch=${2:-arm64}
triplet=$(dpkg-architecture -qDEB_HOST_MULTIARCH -a"$arch" 2>/dev/null)
if [ -f "$sysroot/usr/lib/$triplet/cmake/yaml-cpp/yaml-cpp-config.cmake" ]; then
  exit 0
fi
mkdir -p "$sysroot/debs"
(
  cd "$sysroot/debs"
  # apt's sandbox user cannot write here; the download is a plain file fetch.
  apt-get download -o APT::Sandbox::User=root "libyaml-cpp-dev:$arch" "libyaml-cpp0.7:$arch" >/dev/null
)
for deb in "$sysroot"/debs/*_"$arch".deb; do
  dpkg-deb -x "$deb" "$sysroot"
done
rm -rf "$sysroot/debs"
