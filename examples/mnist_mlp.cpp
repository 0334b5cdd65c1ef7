// mnist_mlp: the Keras notebook's baseline, a multilayer perceptron on MNIST.
//
//   Flatten -> Dense 256 ReLU -> Dense 10 softmax, Adam 1e-3,
//   sparse categorical cross-entropy, a stratified 10% validation split; a
//   cosine learning-rate decay and augmentation are on by default (the
//   README's row), --lr-schedule none --no-augment is the notebook's plain run.
//
// Run `mnist_mlp --help` for the options; README.md gives the commands that
// reproduce the published accuracies.
#include <lamina/lamina.hpp>

#include <chrono>
#include <iostream>

#include "common/experiment.hpp"
#include "common/reference_models.hpp"

int main(int argc, char** argv) try {
  using namespace lamina;
  const lamina_examples::ProgramInfo info{
      "mnist_mlp", "Trains the MLP baseline (784-256-10) on MNIST and reports its accuracy.",
      /*epochs=*/20, /*batch_size=*/64};
  const auto options = lamina_examples::parse_options(argc, argv, info);
  if (options.threads > 0) set_num_threads(options.threads);

  // 1. Data: pixels scaled to [0, 1] as (N, 28, 28, 1), split stratified.
  const auto data = lamina_examples::load_experiment_data(options, std::cout);

  // 2. The model (common/reference_models.hpp, shared with the tests and the
  //    benchmarks): Flatten -> Dense 256 ReLU -> Dense 10. The last Dense
  //    outputs logits: softmax is fused into the loss.
  Sequential<float> model(Shape{28, 28, 1}, options.seed);
  lamina_examples::add_reference_mlp(model);
  const double learning_rate = 1e-3;
  model.compile(std::make_unique<Adam<float>>(learning_rate));
  std::cout << model.summary();

  // 3. Training, with the validation set scored after every epoch.
  const auto start = std::chrono::steady_clock::now();
  History history = fit(model, data.train.images.view(), data.train.labels, lamina_examples::fit_options<float>(options, learning_rate),
                              data.validation.images.view(), data.validation.labels);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // 4. Final scores, DIR/metrics.json and the trained model, DIR/model.safetensors.
  lamina_examples::finish_experiment(info.name, options, model, data, std::move(history), seconds, std::cout);
  save_model(model, (std::filesystem::path(options.out) / "model.safetensors").string());
  return 0;
} catch (const lamina::Error& e) {
  std::cerr << "mnist_mlp: " << e.what() << "\n";
  return 1;
}
