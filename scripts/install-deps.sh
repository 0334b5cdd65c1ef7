#!/usr/bin/env bash
# Installs the Debian packages lamina builds, tests and benchmarks with
# (through sudo when not root). Safe to run again.
set -euo pipefail
packages=(
  build-essential cmake            # g++ (with OpenMP) and CMake
  libeigen3-dev libxsimd-dev       # GEMM; SIMD kernels
  zlib1g-dev                       # .gz input
  nlohmann-json3-dev               # model files (safetensors headers)
  libstb-dev pkg-config            # PNG encoding for the training report
  catch2 libbenchmark-dev          # tests; benchmarks
  python3-numpy python3-torch      # the model-file tests: Python reads lamina's files,
                                   #   PyTorch gives lamina's predictions
  chromium fonts-dejavu-core       # the report's browser test (headless)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
