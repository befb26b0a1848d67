#!/usr/bin/env bash
# Installs every Debian 12 package meter-agent builds, tests and runs with.
# Safe to run again: does nothing when everything is there. Needs root.
#   scripts/install-deps.sh               everything (builds, tests, packaging, arm64)
#   scripts/install-deps.sh --quickstart  what scripts/quickstart.sh needs
#   scripts/install-deps.sh --cross ARCH  the cross build for ARCH (arm64 or armhf) alone
#   scripts/install-deps.sh --vm          what scripts/vm-test.sh's virtual machine needs
set -euo pipefail
source_dir=$(cd "$(dirname "$0")/.." && pwd)

# The cross build for an architecture (scripts/lib/cross-build.sh): its compiler and the
# agent's libraries of that architecture. Not libyaml-cpp-dev:ARCH: it cannot be
# installed beside the amd64 one, so toolchains/sysroot.sh unpacks it into the build
# directory instead.
cross_packages() {
  local arch=$1 library
  echo "crossbuild-essential-$arch"
  for library in libpaho-mqttpp-dev libpaho-mqtt-dev libsqlite3-dev libcurl4-openssl-dev \
    libssl-dev zlib1g-dev libhowardhinnant-date-dev libsystemd-dev libyaml-cpp0.7; do
    echo "$library:$arch"
  done
}

packages=(
  # build
  build-essential cmake ninja-build pkg-config git
  # libraries (see docs/ARCHITECTURE.md for why each)
  libpaho-mqttpp-dev libpaho-mqtt-dev libsqlite3-dev libcurl4-openssl-dev libssl-dev
  libyaml-cpp-dev zlib1g-dev nlohmann-json3-dev libhowardhinnant-date-dev tzdata
  # tests, fuzzing, tools
  catch2 sqlite3 clang-14 libclang-rt-14-dev clang-format clang-tidy python3 ca-certificates
  mosquitto mosquitto-clients postgresql python3-paho-mqtt
  # the power-cut filesystem of tests/powercut (FUSE: needs /dev/fuse)
  libfuse3-dev fuse3
  # the central dashboard's browser tests (central/web/run-tests.sh); node and npm are the
  # machine's own (Debian's npm conflicts with them)
  chromium
  # the agent under systemd (sd_notify), packaging and its checks
  libsystemd-dev file dpkg-dev systemd init-system-helpers postgresql-client strace lintian man-db
  # the arm64 cross build's emulated tests (scripts/package-test.sh)
  qemu-user-static
)
# the arm64 cross build (scripts/package-test.sh, scripts/vm-test.sh)
mapfile -t -O ${#packages[@]} packages < <(cross_packages arm64)
foreign=arm64
# --quickstart: only what scripts/quickstart.sh builds and runs with (no test tools, no cross
# toolchain, no browser), so that a fresh machine gets to the quickstart's last line sooner.
if [ "${1:-}" = --quickstart ]; then
  packages=(
    build-essential cmake ninja-build pkg-config
    libpaho-mqttpp-dev libpaho-mqtt-dev libsqlite3-dev libcurl4-openssl-dev libssl-dev
    libyaml-cpp-dev zlib1g-dev nlohmann-json3-dev libhowardhinnant-date-dev tzdata libsystemd-dev
    python3 ca-certificates mosquitto postgresql postgresql-client
  )
  foreign=""
fi
# --cross ARCH: only the cross build for ARCH (CI builds arm64 alone; scripts/vm-test.sh
# --arch armhf asks for armhf).
if [ "${1:-}" = --cross ]; then
  case ${2:-} in
    arm64 | armhf) foreign=$2 ;;
    *) echo "install-deps: --cross takes arm64 or armhf, not '${2:-}'" >&2; exit 2 ;;
  esac
  mapfile -t packages < <(cross_packages "$foreign")
# --vm: what only scripts/vm-test.sh needs, not in the default so that CI (which does not
# run the VM) downloads no emulator: the emulator (qemu-system-arm has both ARM ones),
# the image's build (debootstrap, mkfs.ext4 -d, qemu-img) and initramfs (cpio, depmod),
# the VM's one connection to the host's central (socat).
elif [ "${1:-}" = --vm ]; then
  packages=(qemu-system-arm qemu-utils debootstrap e2fsprogs cpio kmod socat)
  foreign=""
elif [ -f "$source_dir/central/debian-packages.txt" ]; then
  while read -r package; do
    [[ -z "$package" || "$package" == \#* ]] || packages+=("$package")
  done <"$source_dir/central/debian-packages.txt"
fi

missing=()
native=$(dpkg --print-architecture)
for package in "${packages[@]}"; do
  # An unqualified name means the native (or arch: all) package; with arm64
  # added, dpkg-query lists both architectures of a Multi-Arch library.
  case $package in
  *:*) wanted="install ok installed ${package#*:}" ;;
  *) wanted="install ok installed ($native|all)" ;;
  esac
  dpkg-query -W -f='${Status} ${Architecture}\n' "$package" 2>/dev/null | grep -Eqx "$wanted" ||
    missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: run as root (sudo $0) to install them" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Adding arm64 (or armhf) makes apt upgrade the amd64 twins of its libraries to the
# same version (Multi-Arch: same), about 30 packages on a machine that was behind.
if [ -n "$foreign" ] && ! dpkg --print-foreign-architectures | grep -qx "$foreign"; then
  dpkg --add-architecture "$foreign"
fi
apt-get update -qq
# Services are started by the tests themselves on free ports; keep the
# packages' own instances from starting where there is no systemd.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
