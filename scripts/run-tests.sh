#!/usr/bin/env bash
# The README's second command (and what CI runs): installs what lamina needs,
# builds everything (library tests, examples, benchmarks) and runs the whole
# test suite through ctest. Tests that need the real MNIST data read
# $LAMINA_DATA_DIR (default ../shared/data) and fail under CI when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export LAMINA_DATA_DIR="${LAMINA_DATA_DIR:-$(cd .. && pwd)/shared/data}"
# Asked for explicitly: a missing Catch2 or Google Benchmark is then an error,
# not a build without tests (their defaults follow what is found).
cmake -S . -B build-tests -DCMAKE_BUILD_TYPE=Release \
  -DLAMINA_BUILD_TESTS=ON -DLAMINA_BUILD_EXAMPLES=ON -DLAMINA_BUILD_BENCHMARKS=ON
cmake --build build-tests -j "$(nproc)"
cd build-tests
ctest --output-on-failure -j "$(nproc)"
