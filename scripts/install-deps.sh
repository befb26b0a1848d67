#!/usr/bin/env bash
# Installs every Debian 12 package meter-agent builds, tests and runs with.
# Safe to run again: does nothing when everything is there. Needs root.
#   scripts/install-deps.sh               everything (builds, tests, packaging, arm64)
#   scripts/install-deps.sh --quickstart  what scripts/quickstart.sh needs
set -euo pipefail
source_dir=$(cd "$(dirname "$0")/.." && pwd)

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
  # the arm64 cross build and its emulated tests (scripts/package-test.sh). Not
  # libyaml-cpp-dev:arm64: it cannot be installed beside the amd64 one, so
  # toolchains/sysroot.sh unpacks it into the build directory instead.
  crossbuild-essential-arm64 qemu-user-static
  libpaho-mqttpp-dev:arm64 libpaho-mqtt-dev:arm64 libsqlite3-dev:arm64 libcurl4-openssl-dev:arm64
  libssl-dev:arm64 zlib1g-dev:arm64 libhowardhinnant-date-dev:arm64 libsystemd-dev:arm64
  libyaml-cpp0.7:arm64
)
# --quickstart: only what scripts/quickstart.sh builds and runs with (no test tools, no cross
# toolchain, no browser), so that a fresh machine gets to the quickstart's last line sooner.
if [ "${1:-}" = --quickstart ]; then
  packages=(
    build-essential cmake ninja-build pkg-config
    libpaho-mqttpp-dev libpaho-mqtt-dev libsqlite3-dev libcurl4-openssl-dev libssl-dev
    libyaml-cpp-dev zlib1g-dev nlohmann-json3-dev libhowardhinnant-date-dev tzdata libsystemd-dev
    python3 ca-certificates mosquitto postgresql postgresql-client
  )
fi
if [ -f "$source_dir/central/debian-packages.txt" ]; then
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
# Adding arm64 makes apt upgrade the amd64 twins of the :arm64 libraries to the
# same version (Multi-Arch: same), about 30 packages on a machine that was behind.
if [ "${1:-}" != --quickstart ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
fi
apt-get update -qq
# Services are started by the tests themselves on free ports; keep the
# packages' own instances from starting where there is no systemd.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
