// End to end on the real Kaggle MNIST CSV: the seed's MLP learns, and the same
// seed gives bit-identical weights with 1 thread and with 2.
#include <lamina/lamina.hpp>

#include <cstring>

#include "test_support.hpp"

using namespace lamina;

namespace {

struct Split {
  Dataset<float> train, validation;
};

const Split& kaggle_split() {
  static const Split split = [] {
    const MnistData raw = load_mnist(lamina_test::data_dir() / "kaggle-digit-recognizer" / "train.csv.gz");
    const Dataset<float> all = to_dataset<float>(raw);
    const StratifiedSplit s = stratified_split(all.labels, 0.1, 42);
    return Split{subset(all, s.train), subset(all, s.validation)};
  }();
  return split;
}

std::unique_ptr<Sequential<float>> seed_mlp(std::uint64_t seed) {
  auto model = std::make_unique<Sequential<float>>(Shape{28, 28, 1}, seed);
  model->add<Flatten>();
  model->add<Dense>(256, Init::he_normal);
  model->add<ReLU>();
  model->add<Dense>(10);
  model->compile(std::make_unique<Adam<float>>(1e-3));
  return model;
}

// One epoch at batch 16 with the examples' default seed 42. Across seeds and
// batch sizes one epoch of this baseline reaches 95.5-96.3% on this split;
// training is deterministic, so this configuration always gives the same
// figure (96.07% when written), and a drop below the floor means a change in
// what the library computes.
FitOptions<float> one_epoch() {
  FitOptions<float> o;
  o.epochs = 1;
  o.batch_size = 16;
  o.shuffle_seed = 42;
  o.verbosity = Verbosity::quiet;
  return o;
}

}  // namespace

TEST_CASE("The MLP reaches 96% validation accuracy after one epoch on the Kaggle CSV") {
  if (!lamina_test::require_data("kaggle-digit-recognizer/train.csv.gz")) return;
  const Split& data = kaggle_split();
  REQUIRE(data.train.size() == 37800);
  REQUIRE(data.validation.size() == 4200);
  auto model = seed_mlp(42);
  const History h = model->fit(data.train.images.view(), data.train.labels, one_epoch(),
                               data.validation.images.view(), data.validation.labels);
  REQUIRE(h.epochs.size() == 1);
  INFO("validation accuracy " << h.epochs[0].val_accuracy << ", loss " << h.epochs[0].val_loss);
  CHECK(h.epochs[0].val_accuracy >= 0.96);
  CHECK(h.epochs[0].train_loss < 0.5);
  // evaluate() agrees with the history's validation figure.
  const Evaluation e = model->evaluate(data.validation.images.view(), data.validation.labels);
  CHECK(e.accuracy == h.epochs[0].val_accuracy);
}

TEST_CASE("The same seed gives bit-identical MLP weights after an epoch with 1 thread and with 2") {
  if (!lamina_test::require_data("kaggle-digit-recognizer/train.csv.gz")) return;
  const Split& data = kaggle_split();
  std::vector<Tensor<float>> weights;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    auto model = seed_mlp(7);
    model->fit(data.train.images.view(), data.train.labels, one_epoch());
    weights.push_back(model->store().params());
  }
  set_num_threads(2);
  REQUIRE(weights[0].size() == weights[1].size());
  CHECK(std::memcmp(weights[0].data(), weights[1].data(), weights[0].size() * sizeof(float)) == 0);
  // And the weights did move: the comparison is not between two untrained models.
  auto untrained = seed_mlp(7);
  CHECK(std::memcmp(untrained->store().params().data(), weights[0].data(), weights[0].size() * sizeof(float)) != 0);
}
