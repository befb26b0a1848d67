#!/usr/bin/env bash
# The arm64 (or armhf) package booted under systemd in a Debian 12 virtual
# machine of that architecture: qemu-system-aarch64 (qemu-system-arm for armhf;
# TCG, the `virt` machine, 2 vCPUs), the kernel of Debian's linux-image-arm64
# (linux-image-armmp-lpae), a root filesystem from Debian packages.
#  1. the cross build and .deb (scripts/lib/cross-build.sh, as
#     scripts/package-test.sh makes them for arm64), with the tests' programs;
#  2. the image, built once and cached in $METER_VM_CACHE (default
#     ~/.cache/meter-agent-vm): debootstrap --foreign on this machine downloads
#     every package (Debian 12: systemd, mosquitto, the agent's
#     libraries, cmake for ctest, the kernel); there is no binfmt_misc here, so
#     the second stage runs inside the VM itself, booted with a small initramfs
#     (busybox-static and the virtio/ext4 modules; scripts/vm/). The VM
#     then needs no network: the test run installs only the agent's .deb;
#  3. a test run on a copy-on-write overlay of the cached image: the host
#     shares a directory (the .deb, scripts/vm/checks.sh) and the source tree
#     (build-arm64 or build-armhf, at the same path, for ctest) over 9p; systemd boots, runs
#     the checks (meter-vm-run.service), powers off; the checks' lines are
#     printed here. The VM's network is qemu's user-mode network, restricted:
#     its only way out is one forwarded port to a central on this machine.
#   scripts/vm-test.sh [--arch arm64|armhf] [--quick | --image-only]
# --arch: the machine (default arm64); --quick: the first checks only (boot,
# install, a reading); --image-only: build the image, no test run.
# METER_VM_LOG_DIR=DIR keeps the run's logs in DIR.
# Ends with "vm-test: passed (aarch64, N checks)" (armv7l for armhf). Needs root
# (debootstrap, the cross build's sysroot), qemu-system-arm, debootstrap. Runs qemu and
# debootstrap at nice 15. Not in CI (about 20 minutes on a fresh machine; CI
# without it takes about 22, so with it about 42, over the ~30 within which it would run there):
# README.md ("Raspberry Pi") says how to run it, docs/BENCHMARKS.md has its
# latest result.
set -euo pipefail
source_dir=$(cd "$(dirname "$0")/.." && pwd)
usage="usage: scripts/vm-test.sh [--arch arm64|armhf] [--quick | --image-only]"
# --image-only: the image alone (its packages without the .deb's Depends, which
# the list below names anyway), e.g. to build it while something else compiles.
# --quick: only the first checks (the VM boots, systemd starts the installed
# agent, a reading is exported), no uploads check.
arch=arm64
image_only=""
quick=""
while [ $# -gt 0 ]; do
  case $1 in
    --arch) arch=${2:-}; shift 2 || { echo "$usage" >&2; exit 2; } ;;
    --image-only) image_only=yes; shift ;;
    --quick) quick=yes; shift ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
# What differs by architecture: the emulator and its CPU, the kernel package
# (its metapackage; the flavour ends the real package's name), what `uname -m` says.
case $arch in
  arm64)
    qemu_system=qemu-system-aarch64 cpu=cortex-a72 kernel_package=linux-image-arm64
    kernel_flavour=arm64 machine=aarch64
    build_dir=${METER_ARM64_BUILD_DIR:-$source_dir/build-arm64}
    ;;
  armhf)
    qemu_system=qemu-system-arm cpu=cortex-a15 kernel_package=linux-image-armmp-lpae
    kernel_flavour=armmp-lpae machine=armv7l
    build_dir=${METER_ARMHF_BUILD_DIR:-$source_dir/build-armhf}
    ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
cache=${METER_VM_CACHE:-$HOME/.cache/meter-agent-vm}
mirror=${METER_VM_MIRROR:-http://deb.debian.org/debian}
# The VM's whole test run, boot to power off (TCG is slow: ~10x a Pi 4).
run_timeout=${METER_VM_TIMEOUT:-2400}
jobs=$(nproc)
low=(nice -n 15)

if [ "$(id -u)" -ne 0 ]; then
  echo "vm-test: needs root (debootstrap, the image's owners)" >&2
  exit 1
fi
# The build and test dependencies (the cross toolchain, PostgreSQL), what only the VM
# needs (the emulator, the image's tools), and for armhf its cross compiler and :armhf
# libraries (CI builds no armhf).
"$source_dir/scripts/install-deps.sh"
"$source_dir/scripts/install-deps.sh" --vm
[ "$arch" = arm64 ] || "$source_dir/scripts/install-deps.sh" --cross "$arch"
for tool in "$qemu_system" debootstrap mkfs.ext4 qemu-img cpio depmod socat psql; do
  command -v "$tool" >/dev/null || { echo "vm-test: $tool missing after installing" >&2; exit 1; }
done
# shellcheck source=lib/cross-build.sh
source "$source_dir/scripts/lib/cross-build.sh"

step() { printf '\n-- %s (at %d s)\n' "$*" "$SECONDS"; }
fail() {
  echo "vm-test: FAILED: $*" >&2
  exit 1
}
build() {
  local log=$1
  shift
  if ! "${low[@]}" cmake --build "$@" >"$log" 2>&1; then
    grep -E -B2 -A8 'error|FAILED' "$log" | head -n 80
    fail "build: cmake --build $*"
  fi
}

work=$(mktemp -d /tmp/meter-vm-test.XXXXXX)
chmod 755 "$work"
pids=()
central_pid=""
cleanup() {
  local pid
  # METER_VM_LOG_DIR: the run's logs kept there (the VM's console, the checks,
  # ctest's and the goldens' output, the central's), since $work goes.
  if [ -n "${METER_VM_LOG_DIR:-}" ]; then
    mkdir -p "$METER_VM_LOG_DIR"
    cp "$work"/*.log "$work"/share/*.log "$METER_VM_LOG_DIR/" 2>/dev/null || true
  fi
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  done
  # The central's process group: with_postgres.sh (which stops PostgreSQL) and the server.
  if [ -n "$central_pid" ]; then
    kill -- -"$central_pid" 2>/dev/null && wait "$central_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# ---- 1. the cross build -------------------------------------------------------
if [ -z "$image_only" ]; then
  step "$arch: cross build of the agent and the tests' programs, the .deb"
  cross_build "$arch" "$source_dir" "$build_dir" "$work/build-$arch.log" "$jobs" \
    meter-agent meter_tests daemon_kill_test
  deb=$(cross_deb "$arch" "$build_dir")
  echo "  $(basename "$deb")"
fi

# ---- 2. the image ------------------------------------------------------------
# The packages debootstrap installs besides its own: what a gateway runs (systemd,
# mosquitto and its clients), the agent's dependencies as its .deb states them
# (listed here too, so that the image is the same whatever the .deb's version
# constraints), and what the checks use (ctest from cmake, sqlite3, procps).
base_packages="systemd-sysv udev dbus kmod mosquitto mosquitto-clients cmake procps adduser init-system-helpers tzdata libc6 libcurl4 libgcc-s1 libssl3
  libpaho-mqtt1.3 libpaho-mqttpp3-1 libsqlite3-0 libstdc++6 libyaml-cpp0.7 libsystemd0 zlib1g libdate-tz3"
agent_depends=""
[ -n "$image_only" ] || agent_depends=$(dpkg-deb -f "$deb" Depends | tr ',|' '\n\n' | sed 's/[ ]*(.*//; s/^ *//')
packages=$(printf '%s\n' $base_packages $agent_depends | grep -v '^$' | sort -u | paste -sd, -)
build_image() {
  local tmp=$cache/building-$image_key
  # A failed build starts again from the first stage's tree if that was complete.
  if [ ! -f "$tmp/stage1.done" ]; then
    rm -rf "$tmp"
    mkdir -p "$tmp/root"
    step "image: debootstrap --foreign (Debian 12 $arch; downloads every package)"
    # In the background, so that the trap can stop it by its PID.
    "${low[@]}" debootstrap --foreign --arch="$arch" --variant=minbase --include="$packages" \
      bookworm "$tmp/root" "$mirror" >"$tmp/debootstrap.log" 2>&1 &
    pids+=($!)
    wait "$!" || { tail -n 20 "$tmp/debootstrap.log"; fail "debootstrap --foreign"; }
    touch "$tmp/stage1.done"
  fi

  step "image: kernel ($kernel_package) and initramfs"
  local kernel_deb kernel
  rm -rf "$tmp/kernel" "$tmp/initramfs" "$tmp"/*.deb
  mkdir -p "$tmp/kernel"
  (
    cd "$tmp"
    # The metapackage names the kernel's package; apt's sandbox user cannot write here.
    apt-get download -o APT::Sandbox::User=root "$kernel_package:$arch" "busybox-static:$arch" >/dev/null
    apt-get download -o APT::Sandbox::User=root \
      "$(dpkg-deb -f "${kernel_package}"_*_"$arch".deb Depends | sed 's/ .*//'):$arch" >/dev/null
  )
  kernel_deb=$(ls "$tmp"/linux-image-6*-"$kernel_flavour"_*_"$arch".deb | head -n 1)
  dpkg-deb -x "$kernel_deb" "$tmp/kernel"
  kernel=$(ls "$tmp/kernel/lib/modules")
  cp "$tmp/kernel/boot/vmlinuz-$kernel" "$tmp/vmlinuz"
  depmod -b "$tmp/kernel" "$kernel"
  local initramfs=$tmp/initramfs wanted=(virtio_pci virtio_blk crc32c_generic ext4 9pnet_virtio 9p virtio_net)
  mkdir -p "$initramfs/bin" "$initramfs/lib/modules/$kernel"
  printf '%s\n' "${wanted[@]}" >"$initramfs/modules.list"
  # Each wanted module and what it depends on (modules.dep), nothing more.
  local module file
  for module in "${wanted[@]}"; do
    file=$(find "$tmp/kernel/lib/modules/$kernel" -name "$module.ko" | head -n 1)
    [ -n "$file" ] || fail "module $module not in $(basename "$kernel_deb")"
    grep "^${file#"$tmp/kernel/lib/modules/$kernel/"}:" "$tmp/kernel/lib/modules/$kernel/modules.dep" |
      tr -d ':' | tr ' ' '\n' | grep -v '^$'
  done | sort -u | while read -r file; do
    mkdir -p "$initramfs/lib/modules/$kernel/$(dirname "$file")"
    cp "$tmp/kernel/lib/modules/$kernel/$file" "$initramfs/lib/modules/$kernel/$file"
  done
  cp "$tmp/kernel/lib/modules/$kernel"/modules.{order,builtin,builtin.modinfo} "$initramfs/lib/modules/$kernel/"
  depmod -b "$initramfs" "$kernel"
  dpkg-deb --fsys-tarfile "$tmp"/busybox-static_*_"$arch".deb | tar -xO ./bin/busybox \
    >"$initramfs/bin/busybox"
  chmod 755 "$initramfs/bin/busybox"
  ln -s busybox "$initramfs/bin/sh"
  install -m 0755 "$source_dir/scripts/vm/initramfs-init" "$initramfs/init"
  (cd "$initramfs" && find . | cpio -o -H newc --quiet | gzip -1) >"$tmp/initrd.img"

  step "image: the packages' contents decompressed here (emulated xz would take most of the second stage)"
  # The same files, stored instead of compressed: dpkg in the VM reads them
  # without running xz under emulation. The first stage checked the downloads.
  local deb member
  mkdir -p "$tmp/repack"
  for deb in "$tmp"/root/var/cache/apt/archives/*.deb; do
    rm -f "$tmp"/repack/*
    (cd "$tmp/repack" && ar x "$deb")
    for member in "$tmp"/repack/data.tar.*; do
      case $member in
        *.xz) xz -d "$member" ;;
        *.zst) zstd -q -d --rm "$member" ;;
        *.gz) gzip -d "$member" ;;
      esac
    done
    (cd "$tmp/repack" && rm -f "$deb" && ar rc "$deb" debian-binary control.tar.* data.tar)
  done
  rm -rf "$tmp/repack"

  step "image: ext4 filesystem from the tree (no mount needed)"
  install -m 0755 "$source_dir/scripts/vm/setup-image.sh" "$tmp/root/setup-image.sh"
  install -m 0755 "$source_dir/scripts/vm/run" "$tmp/root/vm-run"
  rm -rf "$tmp/kernel" "$initramfs" "$tmp/root.raw" "$tmp"/*.deb
  mkfs.ext4 -q -F -L root -d "$tmp/root" "$tmp/root.raw" 6G

  # cache=unsafe: dpkg's fsync of every file it unpacks would reach this
  # machine's disk each time; a failed build is thrown away anyway.
  step "image: the second stage, inside the VM (TCG: several minutes)"
  local start=$SECONDS
  "${low[@]}" "$qemu_system" -machine virt -cpu "$cpu" -smp 2 -m 2048 \
    -kernel "$tmp/vmlinuz" -initrd "$tmp/initrd.img" \
    -append "console=ttyAMA0 meter_vm=setup panic=-1" \
    -drive "file=$tmp/root.raw,format=raw,if=none,id=root,cache=unsafe" -device virtio-blk-pci,drive=root \
    -nic none -display none -monitor none -serial "file:$tmp/setup-console.log" -no-reboot &
  local qemu=$!
  pids+=("$qemu")
  wait "$qemu" || fail "qemu (image setup) exited with $?"
  grep -q 'meter-vm-setup: exit 0' "$tmp/setup-console.log" ||
    { tail -n 40 "$tmp/setup-console.log"; fail "the second stage in the VM (log: $tmp)"; }
  echo "  second stage and setup: $((SECONDS - start)) s"
  rm -rf "$tmp/root" "$tmp/stage1.done"
  mv "$tmp" "$image_dir"
}

# The image's name: what is in it and how it is made (a change to either makes a new one).
image_key=$( (echo "$arch $packages $mirror"; declare -f build_image; cat "$source_dir"/scripts/vm/initramfs-init \
  "$source_dir"/scripts/vm/setup-image.sh "$source_dir"/scripts/vm/run) | sha256sum | cut -c1-16)
image_dir=$cache/bookworm-$arch-$image_key

if [ -f "$image_dir/root.raw" ]; then
  step "image: cached ($image_dir)"
else
  build_image
fi
[ -z "$image_only" ] || exit 0

# ---- 3. the test run ---------------------------------------------------------
step "run: boot the image (systemd), the checks inside (scripts/vm/checks.sh)"
share=$work/share
mkdir -p "$share"
cp "$deb" "$source_dir/scripts/vm/checks.sh" "$share/"
echo "$source_dir" >"$share/source_dir"
# What only the test suite needs (its CLI tests run the sqlite3 shell, its TLS
# tests the openssl command): fed to
# the VM per run from here, so that the image stays a gateway's.
mkdir -p "$share/test-debs"
(cd "$share/test-debs" &&
  apt-get download -o APT::Sandbox::User=root "sqlite3:$arch" "libreadline8:$arch" readline-common "openssl:$arch" \
    >/dev/null) || fail "apt-get download of the tests' packages"
cat >"$share/env" <<ENV
deb=$(basename "$deb")
machine=$machine
source_dir=$source_dir
build_dir=$build_dir
quick=$quick
ENV
# The central on this machine, on loopback: a throwaway PostgreSQL
# (central/tests/with_postgres.sh), the gateway's token in the share. The VM
# reaches it as 10.0.2.100:8080 (qemu's guestfwd), and nothing else. guestfwd's
# "cmd:" form, one socat per connection: its "tcp:" form connects once, when qemu
# starts, and carries a single connection (the agent's first upload, no more).
gateway=$(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./etc/meter-agent/agent.yaml |
  sed -n 's/^gateway_id: *//p')
central_port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
set -m # its own process group (PostgreSQL, the server), which cleanup stops as a whole
"$source_dir/central/tests/with_postgres.sh" env PYTHONPATH="$source_dir" bash -c '
  set -euo pipefail
  cd "$1"
  /usr/bin/python3 -m central migrate >/dev/null 2>&1
  /usr/bin/python3 -m central gateway create "$2" 2>/dev/null >"$3/share/token"
  echo "$DATABASE_URL" >"$3/database_url"
  exec /usr/bin/python3 -m central serve --no-migrate --host 127.0.0.1 --port "$4"' \
  central "$source_dir" "$gateway" "$work" "$central_port" >"$work/central.log" 2>&1 &
central_pid=$!
set +m
central_up() { /usr/bin/python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$central_port/healthz', timeout=1)" 2>/dev/null; }
for _ in $(seq 300); do
  central_up && break
  kill -0 "$central_pid" 2>/dev/null || break
  sleep 0.2
done
central_up || { cat "$work/central.log"; fail "the central did not start"; }
echo "central_address=10.0.2.100:8080" >>"$share/env"
echo "  central on 127.0.0.1:$central_port (gateway $gateway)"

# The cached image stays as built: the run writes to an overlay, thrown away
# after the run. cache=unsafe: the guest's flushes (the buffer's fsyncs, every
# test's) stay in this machine's page cache instead of each reaching its disk;
# what they guarantee inside the VM is unchanged, and nothing here outlives a
# crash of this machine. The network card without its option ROM (romfile=): the
# kernel is booted directly, so iPXE (ipxe-qemu, only recommended by
# qemu-system-arm) is not needed.
qemu-img create -q -f qcow2 -b "$image_dir/root.raw" -F raw "$work/run.qcow2"
start=$SECONDS
# The VM powers itself off after the checks; past the timeout, timeout(1) stops it.
timeout "$run_timeout" "${low[@]}" "$qemu_system" -machine virt -cpu "$cpu" -smp 2 -m 2048 \
  -kernel "$image_dir/vmlinuz" -initrd "$image_dir/initrd.img" \
  -append "console=ttyAMA0 meter_vm=run panic=-1" \
  -drive "file=$work/run.qcow2,format=qcow2,if=none,id=root,cache=unsafe" -device virtio-blk-pci,drive=root \
  -virtfs "local,path=$share,mount_tag=share,security_model=none,id=share" \
  -virtfs "local,path=$source_dir,mount_tag=source,security_model=none,id=source" \
  -netdev "user,id=net,restrict=on,guestfwd=tcp:10.0.2.100:8080-cmd:socat STDIO TCP:127.0.0.1:$central_port" \
  -device virtio-net-pci,netdev=net,romfile= \
  -display none -monitor none -serial "file:$work/console.log" -no-reboot &
qemu=$!
pids+=("$qemu")
qemu_status=0
wait "$qemu" || qemu_status=$?
if [ "$qemu_status" = 124 ]; then
  tail -n 30 "$work/console.log"
  [ -f "$share/checks.log" ] && cat "$share/checks.log"
  fail "the VM did not finish within $run_timeout s"
fi
echo "  boot, checks and power off: $((SECONDS - start)) s"
if [ ! -f "$share/checks.log" ]; then
  tail -n 40 "$work/console.log"
  fail "the checks did not run (qemu exited with $qemu_status; its console above)"
fi
# Exactly once: the central holds as many raw events and measurements of this
# gateway as the agent's buffer (each is a primary key there: a second upload of
# one would not add a row, a lost one would be missing).
uploads="uploads reach the central on the host exactly once"
if [ -n "$quick" ]; then
  :
elif [ -f "$share/uploaded" ]; then
  # shellcheck source=/dev/null
  source "$share/uploaded"
  counts=$(psql -At "$(cat "$work/database_url")" -c "
    select (select count(*) from raw_events r join gateways g on g.id = r.gateway_id where g.name = '$gateway'),
           (select count(*) from normalized_measurements m join gateways g on g.id = m.gateway_id where g.name = '$gateway')")
  if [ "$counts" = "$raw_messages|$measurements" ]; then
    echo "check: $uploads: ok (agent $raw_messages raw, $measurements measurements; central the same)" >>"$share/checks.log"
  else
    echo "check: $uploads: FAILED (agent $raw_messages raw, $measurements measurements; central $counts)" >>"$share/checks.log"
  fi
else
  echo "check: $uploads: FAILED (the VM did not report its counts)" >>"$share/checks.log"
fi
checks=$(grep -c '^check: .*: ok' "$share/checks.log")
cat "$share/checks.log"
if grep -q '^check: .*: FAILED' "$share/checks.log" || [ "$(cat "$share/checks.status" 2>/dev/null)" != 0 ]; then
  fail "checks failed (above)"
fi
echo "vm-test: passed ($machine, $checks checks)"
