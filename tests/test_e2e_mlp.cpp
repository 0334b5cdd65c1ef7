// End to end on real MNIST: the reference MLP (examples/common/reference_models.hpp)
// learns, and the same seed gives bit-identical weights with 1 thread and with 2.
#include <lamina/lamina.hpp>

#include <cstring>

#include "../examples/common/reference_models.hpp"
#include "support.hpp"

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
  lamina_examples::add_reference_mlp(*model);
  model->compile(std::make_unique<Adam<float>>(1e-3));
  return model;
}

FitOptions<float> one_epoch() {
  FitOptions<float> o;
  o.epochs = 1;
  o.batch_size = 16;
  o.shuffle_seed = 42;
  o.verbosity = Verbosity::quiet;
  return o;
}

}  // namespace

TEST_CASE("The MLP reaches 96% validation accuracy after one epoch on the official MNIST training set") {
  if (!lamina_test::require_data("mnist-idx/train-images-idx3-ubyte.gz")) return;
  // One epoch of this baseline at Adam 1e-3 lands near 96%: on the official
  // training set at batch 16, seeds 1, 2, 3 and 42 give 96.57%, 96.13%, 96.33%
  // and 96.08% of the stratified 10% validation split (the Kaggle CSV's 37800
  // training images give 95.5-96.1%). Training is deterministic, so the pinned
  // seed always gives the same figure; a drop below the floor means the library
  // computes something else.
  const Dataset<float> all =
      to_dataset<float>(load_mnist(lamina_test::data_dir() / "mnist-idx" / "train-images-idx3-ubyte.gz"));
  const StratifiedSplit s = stratified_split(all.labels, 0.1, 1);
  const Dataset<float> train = subset(all, s.train), validation = subset(all, s.validation);
  REQUIRE(train.size() == 54000);
  auto model = seed_mlp(1);
  FitOptions<float> options = one_epoch();
  options.shuffle_seed = 1;
  const History h =
      fit(*model, train.images.view(), train.labels, options, validation.images.view(), validation.labels);
  REQUIRE(h.epochs.size() == 1);
  INFO("validation accuracy " << h.epochs[0].val_accuracy << ", loss " << h.epochs[0].val_loss);
  CHECK(h.epochs[0].val_accuracy >= 0.96);
  CHECK(h.epochs[0].train_loss < 0.5);
  // evaluate() agrees with the history's validation figure.
  const Evaluation e = model->evaluate(validation.images.view(), validation.labels);
  CHECK(e.accuracy == h.epochs[0].val_accuracy);
}

TEST_CASE("The same seed gives bit-identical MLP weights after an epoch with 1 thread and with 2") {
  if (!lamina_test::require_data("kaggle-digit-recognizer/train.csv.gz")) return;
  const Split& data = kaggle_split();
  std::vector<Tensor<float>> weights;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    auto model = seed_mlp(7);
    fit(*model, data.train.images.view(), data.train.labels, one_epoch());
    weights.push_back(model->store().params());
  }
  set_num_threads(2);
  REQUIRE(weights[0].size() == weights[1].size());
  CHECK(std::memcmp(weights[0].data(), weights[1].data(), weights[0].size() * sizeof(float)) == 0);
  // And the weights did move: the comparison is not between two untrained models.
  auto untrained = seed_mlp(7);
  CHECK(std::memcmp(untrained->store().params().data(), weights[0].data(), weights[0].size() * sizeof(float)) != 0);
}
