#!/usr/bin/env bash
# The README's first command: installs what lamina needs, builds Release, and
# runs the seed's pipeline on the Kaggle MNIST CSV: the MLP baseline, then the
# CNN, each writing out/<program>/{metrics.json,report.html,model.safetensors},
# then a Kaggle submission of the CNN's predictions for test.csv.
# Data: $LAMINA_DATA_DIR (default ../shared/data). Extra arguments go to both
# trainers (e.g. --threads 2).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export LAMINA_DATA_DIR="${LAMINA_DATA_DIR:-$(cd .. && pwd)/shared/data}"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DLAMINA_BUILD_TESTS=OFF -DLAMINA_BUILD_BENCHMARKS=OFF
cmake --build build -j "$(nproc)" --target mnist_mlp mnist_cnn mnist_predict

echo "== mnist_mlp: the baseline (784-256-10)"
build/examples/mnist_mlp --out out/mnist_mlp "$@"
echo "== mnist_cnn: the notebook's CNN"
build/examples/mnist_cnn --out out/mnist_cnn "$@"

test_csv="$LAMINA_DATA_DIR/kaggle-digit-recognizer/test.csv.gz"
if [ -f "$test_csv" ]; then
  echo "== mnist_predict: Kaggle submission from the CNN"
  build/examples/mnist_predict --model out/mnist_cnn/model.safetensors --input "$test_csv" --out out/submission.csv
fi
