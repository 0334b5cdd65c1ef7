#!/usr/bin/env bash
# The README's first command: installs what lamina needs, builds Release, and
# runs the seed's experiments on the Kaggle MNIST CSV: the MLP baseline, then
# the CNN. Results go to out/<program>/metrics.json.
# Data: $LAMINA_DATA_DIR (default ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export LAMINA_DATA_DIR="${LAMINA_DATA_DIR:-$(cd .. && pwd)/shared/data}"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DLAMINA_BUILD_TESTS=OFF -DLAMINA_BUILD_BENCHMARKS=OFF
cmake --build build -j "$(nproc)"
for program in mnist_mlp mnist_cnn; do
  if [ -x "build/examples/$program" ]; then
    echo "== $program"
    "build/examples/$program" --out "out/$program" "$@"
  fi
done
