#!/usr/bin/env bash
# CI for the native core: host build + ctest, ASan/UBSan build + ctest, ThreadSanitizer build + ctest (the
# concurrency test runs families while other threads alloc, evict and release), and a CUDA build when nvcc
# exists (compile and link only where there is no GPU: the CUDA test binaries exit 77, shown by ctest as skipped).
#   native/scripts/ci.sh            # all four
#   BUILD_ROOT=/tmp/shoal-native native/scripts/ci.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="${BUILD_ROOT:-$here/build}"
jobs="${JOBS:-$(nproc 2>/dev/null || echo 2)}"

step() { printf '\n== %s\n' "$*"; }

run_suite() {  # name, extra cmake args...
  local name="$1"; shift
  local t0=$SECONDS
  step "$name: configure"
  cmake -S "$here" -B "$root/$name" -DSHOAL_BUILD_TESTS=ON "$@" >/dev/null
  step "$name: build"
  cmake --build "$root/$name" -j "$jobs"
  step "$name: ctest"
  ctest --test-dir "$root/$name" --output-on-failure
  step "$name: passed in $((SECONDS - t0)) s"
}

run_suite host -DSHOAL_CUDA=OFF
# detect_leaks stays on: every test frees what it allocates. halt_on_error makes UBSan findings fail the test.
ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}" \
UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}" \
  run_suite sanitize -DSHOAL_CUDA=OFF -DSHOAL_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
# A separate build: TSan cannot be combined with ASan. Any report fails the test (exit code 66 by default).
TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}" \
  run_suite tsan -DSHOAL_CUDA=OFF -DSHOAL_TSAN=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo

if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
if command -v nvcc >/dev/null 2>&1; then
  run_suite cuda -DSHOAL_CUDA=ON
else
  step "cuda: skipped (no nvcc on PATH or in /usr/local/cuda/bin)"
fi
step "native CI passed"
