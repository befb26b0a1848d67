#!/usr/bin/env bash
# Installs every Debian 12 package meter-agent builds, tests and runs with.
# Safe to run again: does nothing when everything is there. Needs root.
set -euo pipefail
source_dir=$(cd "$(dirname "$0")/.." && pwd)

packages=(
  # build
  build-essential cmake ninja-build pkg-config git
  # libraries (see docs/ARCHITECTURE.md for why each)
  libpaho-mqttpp-dev libpaho-mqtt-dev libsqlite3-dev libcurl4-openssl-dev libssl-dev
  libyaml-cpp-dev zlib1g-dev nlohmann-json3-dev libhowardhinnant-date-dev tzdata
  # tests, fuzzing, tools
  catch2 sqlite3 clang-14 libclang-rt-14-dev clang-format python3 ca-certificates
  mosquitto mosquitto-clients postgresql python3-paho-mqtt
)
if [ -f "$source_dir/central/debian-packages.txt" ]; then
  while read -r package; do
    [[ -z "$package" || "$package" == \#* ]] || packages+=("$package")
  done <"$source_dir/central/debian-packages.txt"
fi

missing=()
for package in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$package")
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
apt-get update -qq
# Services are started by the tests themselves on free ports; keep the
# packages' own instances from starting where there is no systemd.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
