#!/usr/bin/env bash
# Builds lamina's tests and examples with AddressSanitizer + UndefinedBehaviorSanitizer
# (gcc, a second build directory) and runs the ctest suite under them
# (docs/robustness.md, "Sanitizers"). CI runs it after the normal tests.
#
#   scripts/run-sanitizers.sh [extra ctest arguments]      e.g. -R test_model_io
#
# Build directory: build-asan (override with LAMINA_ASAN_DIR). Exits non-zero if
# the build fails or any test fails. Every sanitizer finding is fatal: the test
# fails and ctest prints the report (file:line stacks).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export LAMINA_DATA_DIR="${LAMINA_DATA_DIR:-$(cd .. && pwd)/shared/data}"
dir="${LAMINA_ASAN_DIR:-build-asan}"

# LAMINA_SANITIZE puts -fsanitize=address,undefined -fno-sanitize-recover=all
# -fno-omit-frame-pointer on lamina's own tests and examples only (never on the
# installed lamina::lamina target).
# -O1: compiling with both sanitizers costs about twice a Release compile, and
#   -O2 adds 40% more; -O3 makes the instrumented GEMM kernels slower still.
# -g1: line tables, enough for file:line in the reports, and cheaper than -g.
# NDEBUG as in Release; the tests keep lamina's own checks (LAMINA_CHECKS=1).
# -fno-sanitize-address-use-after-scope: ASan still puts red zones around every
#   stack object (stack-buffer-overflow is caught) but does not poison each
#   block-scoped local when its scope ends; in the GEMM micro-kernels, whose
#   vector accumulators live in such scopes, that made training 3-4x slower.
# No benchmarks (they run the kernels the tests cover, and Google Benchmark is
# not instrumented) and no install rules. tests/CMakeLists.txt and
# tests/extra_tests.cmake leave out what a sanitizer cannot add to (the
# consumer_* packaging tests, the two-TU link test, mnist_cnn) and two
# whole-data-set trainings (see there).
: "${CXX:=g++}"
export CXX
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG -fno-sanitize-address-use-after-scope" \
  -DLAMINA_SANITIZE=address,undefined \
  -DLAMINA_BUILD_TESTS=ON -DLAMINA_BUILD_EXAMPLES=ON -DLAMINA_BUILD_BENCHMARKS=OFF -DLAMINA_INSTALL=OFF
cmake --build "$dir" -j "$(nproc)"

# detect_leaks=1: LeakSanitizer works here (it fails in sandboxes that deny
# ptrace); a leak fails the test at exit. halt_on_error with
# -fno-sanitize-recover=all: the first report ends the program. OpenMP
# (libgomp) needs nothing special: its thread pool is not reported as a leak.
# These variables also reach what a test starts (the report test's headless
# chromium), which ignores them: it is not built with the sanitizers.
# Values already in the environment win (e.g. ASAN_OPTIONS=detect_leaks=0 where
# LeakSanitizer cannot run).
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:check_initialization_order=1:strict_init_order=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
cd "$dir"
ctest --output-on-failure -j "$(nproc)" "$@"
