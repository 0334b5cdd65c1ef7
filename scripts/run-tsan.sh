#!/usr/bin/env bash
# Builds tests/test_predict_threads.cpp with ThreadSanitizer and runs it: several
# threads calling predict() on one const model (docs/checkpoints.md, "Calling
# predict from several threads"). Part of CI's sanitizer phase.
#
# Built without OpenMP on purpose: libgomp is not built with ThreadSanitizer, so
# its own barriers would be reported as races. lamina's loops then run on the
# calling thread, and the test's std::threads are the only concurrency, which
# is exactly what predict's thread safety is about.
#
# Output: build-tsan/test_predict_threads (override the directory with
# LAMINA_TSAN_DIR). Exits non-zero on a build failure, a failed check or any
# ThreadSanitizer report (halt_on_error).
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${LAMINA_TSAN_DIR:-build-tsan}"
mkdir -p "$dir"
CXX="${CXX:-g++}"
echo "run-tsan: building $dir/test_predict_threads with -fsanitize=thread"
"$CXX" -std=c++17 -O1 -g -fsanitize=thread -fno-omit-frame-pointer -Wall -Wno-unknown-pragmas \
  -DLAMINA_CHECKS=1 -Iinclude -Itests -isystem /usr/include/eigen3 $(pkg-config --cflags stb) \
  tests/test_predict_threads.cpp tests/catch_main.cpp -o "$dir/test_predict_threads" -lz -pthread
echo "run-tsan: running it"
TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1" "$dir/test_predict_threads"
