# The arm64 cross build, shared by scripts/package-test.sh (its unit tests under
# qemu-user and its .deb) and scripts/vm-test.sh (the same .deb and test suite,
# booted in an arm64 virtual machine). Sourced, not run; the caller provides
# fail() and build() (a quiet cmake --build that prints the log on failure).
#   arm64_cross_build SOURCE_DIR BUILD_DIR LOG JOBS TARGETS...
arm64_cross_build() {
  local source_dir=$1 arm_dir=$2 log=$3 jobs=$4
  shift 4
  "$source_dir/toolchains/sysroot.sh" "$arm_dir/sysroot" arm64
  # CMAKE_SKIP_INSTALL_ALL_DEPENDENCY: cpack installs what was built, instead of
  # building every test and benchmark first.
  cmake -S "$source_dir" -B "$arm_dir" -G Ninja \
    -DCMAKE_TOOLCHAIN_FILE="$source_dir/toolchains/aarch64-linux-gnu.cmake" \
    -DCMAKE_PREFIX_PATH="$arm_dir/sysroot/usr" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_SKIP_INSTALL_ALL_DEPENDENCY=ON >/dev/null
  build "$log" "$arm_dir" -j "$jobs" --target "$@"
  file "$arm_dir/agent/meter-agent" | grep -q 'ARM aarch64' || fail "not an arm64 binary"
}

# The arm64 .deb of what arm64_cross_build built; prints its path.
arm64_deb() {
  local arm_dir=$1
  (cd "$arm_dir" && rm -f ./*.deb && DEB_HOST_ARCH=arm64 cpack -G DEB >/dev/null)
  ls "$arm_dir"/meter-agent_*_arm64.deb
}
