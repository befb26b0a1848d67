# The cross builds for Raspberry Pi gateways (arm64 and armhf), shared by
# scripts/package-test.sh (the arm64 unit tests under qemu-user and its .deb)
# and scripts/vm-test.sh (the same .deb and test suite, booted in a virtual
# machine of that architecture). Sourced, not run; the caller provides fail()
# and build() (a quiet cmake --build that prints the log on failure).
#   cross_build ARCH SOURCE_DIR BUILD_DIR LOG JOBS TARGETS...   (ARCH: arm64 or armhf)
#   cross_deb ARCH BUILD_DIR                                     (prints the .deb's path)

# cross_toolchain ARCH: the toolchain file's name (toolchains/).
cross_toolchain() {
  case $1 in
    arm64) echo aarch64-linux-gnu.cmake ;;
    armhf) echo arm-linux-gnueabihf.cmake ;;
    *) fail "no cross toolchain for architecture '$1' (arm64 or armhf)" ;;
  esac
}

cross_build() {
  local arch=$1 source_dir=$2 build_dir=$3 log=$4 jobs=$5 toolchain expected
  shift 5
  toolchain=$(cross_toolchain "$arch")
  "$source_dir/toolchains/sysroot.sh" "$build_dir/sysroot" "$arch"
  # CMAKE_SKIP_INSTALL_ALL_DEPENDENCY: cpack installs what was built, instead of
  # building every test and benchmark first.
  cmake -S "$source_dir" -B "$build_dir" -G Ninja \
    -DCMAKE_TOOLCHAIN_FILE="$source_dir/toolchains/$toolchain" \
    -DCMAKE_PREFIX_PATH="$build_dir/sysroot/usr" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_SKIP_INSTALL_ALL_DEPENDENCY=ON >/dev/null
  build "$log" "$build_dir" -j "$jobs" --target "$@"
  case $arch in
    arm64) expected='ELF 64-bit .* ARM aarch64' ;;
    armhf) expected='ELF 32-bit .* ARM, EABI5' ;;
  esac
  file "$build_dir/agent/meter-agent" | grep -Eq "$expected" || fail "not an $arch binary"
}

cross_deb() {
  local arch=$1 build_dir=$2
  (cd "$build_dir" && rm -f ./*.deb && DEB_HOST_ARCH=$arch cpack -G DEB >/dev/null)
  ls "$build_dir"/meter-agent_*_"$arch".deb
}
