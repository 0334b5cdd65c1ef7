// bench_model: whole models, on synthetic data from lamina::Rng.
//
//   cnn  the reference CNN of examples/mnist_cnn.cpp (same definition):
//        [Conv 3x3 32 same ReLU -> BatchNorm] x2 -> MaxPool 2 -> Dropout 0.25
//        [Conv 3x3 64 same ReLU -> BatchNorm] x2 -> MaxPool 2 -> Dropout 0.25
//        Flatten -> Dense 256 ReLU -> BatchNorm -> Dropout 0.5 -> Dense 10
//   mlp  Flatten -> Dense 256 he_normal ReLU (fused) -> Dense 10
//   Both Adam 1e-3, softmax cross-entropy.
//
// Benchmarks (items/s = images/s):
//   train_step/<model>/batch:{128,32}/threads:T   Sequential::train_step
//                                                 (forward, loss, backward, Adam)
//   inference/<model>/batch:{1000,1}/threads:T    Sequential::forward in eval
//                                                 mode (logits; predict() adds
//                                                 a softmax and an allocation)
//   train_profile/<model>/batch:128/threads:T     one training step taken
//                                                 apart: counters with the
//                                                 milliseconds per step of every
//                                                 layer's forward and backward,
//                                                 the loss and Adam
//   peak_rss/cnn/batch:128/threads:2              the peak resident memory
//                                                 (VmHWM) while a fresh CNN
//                                                 trains a few steps
#include <lamina/layers/relu.hpp>
#include <lamina/layers/batchnorm.hpp>
#include <lamina/layers/conv2d.hpp>
#include <lamina/layers/dense.hpp>
#include <lamina/layers/dropout.hpp>
#include <lamina/layers/flatten.hpp>
#include <lamina/layers/maxpool2d.hpp>
#include <lamina/loss/softmax_cross_entropy.hpp>
#include <lamina/model/sequential.hpp>
#include <lamina/optim/optimizer.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../examples/common/reference_models.hpp"
#include "common.hpp"

namespace {

using lamina::Sequential;
using lamina::Shape;

constexpr std::uint64_t kSeed = 20261124;

// The reference models, exactly as the examples train them.
Sequential<float> make_cnn() {
  Sequential<float> model(Shape{28, 28, 1}, kSeed);
  lamina_examples::add_reference_cnn(model);
  model.compile(std::make_unique<lamina::Adam<float>>(1e-3));
  return model;
}

Sequential<float> make_mlp() {
  Sequential<float> model(Shape{28, 28, 1}, kSeed);
  lamina_examples::add_reference_mlp(model);
  model.compile(std::make_unique<lamina::Adam<float>>(1e-3));
  return model;
}

enum class Model { cnn, mlp };

Sequential<float> make_model(Model m) { return m == Model::cnn ? make_cnn() : make_mlp(); }
const char* model_name(Model m) { return m == Model::cnn ? "cnn" : "mlp"; }

// A batch of MNIST-shaped images, pixels uniform in [0, 1), and labels.
struct Batch {
  explicit Batch(std::size_t n) {
    lamina::Rng rng(kSeed + n);
    images = lamina_bench::random_tensor(Shape{n, 28, 28, 1}, rng, 0.0, 1.0);  // (N, 28, 28, 1)
    labels = lamina_bench::random_labels(n, 10, rng);                         // (N)
  }
  lamina::Tensor<float> images;
  std::vector<std::int32_t> labels;
};

// Arguments: batch, threads.
void BM_train_step(benchmark::State& state, Model m) {
  const auto batch = static_cast<std::size_t>(state.range(0));
  lamina_bench::use_threads(state.range(1));
  Sequential<float> model = make_model(m);
  const Batch data(batch);
  model.train_step(data.images.view(), data.labels.data());  // warm-up: buffers sized
  for (auto _ : state) {
    benchmark::DoNotOptimize(model.train_step(data.images.view(), data.labels.data()));
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(batch) * static_cast<std::int64_t>(state.iterations()));
}

// Arguments: batch, threads.
void BM_inference(benchmark::State& state, Model m) {
  const auto batch = static_cast<std::size_t>(state.range(0));
  lamina_bench::use_threads(state.range(1));
  Sequential<float> model = make_model(m);
  const Batch data(batch);
  model.forward(data.images.view(), lamina::Mode::eval);  // warm-up
  for (auto _ : state) {
    benchmark::DoNotOptimize(model.forward(data.images.view(), lamina::Mode::eval).data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(batch) * static_cast<std::int64_t>(state.iterations()));
}

// One training step as Sequential::train_step does it (forward in training
// mode, softmax cross-entropy, backward stopping where no input gradient is
// needed, Adam), with every part timed. Counters: milliseconds per step,
// "<index>_<type>_fwd" / "_bwd", "loss", "adam", and "step" (their sum).
// Arguments: batch, threads.
void BM_train_profile(benchmark::State& state, Model m) {
  using clock = std::chrono::steady_clock;
  const auto batch = static_cast<std::size_t>(state.range(0));
  lamina_bench::use_threads(state.range(1));
  Sequential<float> model = make_model(m);
  const Batch data(batch);
  lamina::SoftmaxCrossEntropy<float> loss;
  lamina::ParameterStore<float>& store = model.store();
  const std::size_t layers = model.size();
  std::vector<double> forward_seconds(layers, 0.0), backward_seconds(layers, 0.0);
  double loss_seconds = 0, adam_seconds = 0;

  auto step = [&](bool timed) {
    auto lap = [&](clock::time_point& t, double& total) {
      const auto now = clock::now();
      if (timed) total += std::chrono::duration<double>(now - t).count();
      t = now;
    };
    auto t = clock::now();
    lamina::TensorView<const float> h = data.images.view();
    for (std::size_t i = 0; i < layers; ++i) {
      h = model.layer(i).forward(h, lamina::Mode::train);
      lap(t, forward_seconds[i]);
    }
    benchmark::DoNotOptimize(loss.forward(h, data.labels.data()));
    lamina::TensorView<const float> g = loss.backward();
    lap(t, loss_seconds);
    for (std::size_t i = layers; i-- > 0;) {
      g = model.layer(i).backward(g);
      lap(t, backward_seconds[i]);
      if (!model.layer(i).input_gradient_needed()) break;
    }
    model.optimizer()->step(store.params().data(), store.grads().data(), store.params().size(), model.update_plan());
    lap(t, adam_seconds);
  };
  step(false);  // warm-up
  for (auto _ : state) step(true);

  const double per_step = 1e3 / static_cast<double>(state.iterations());  // seconds in total -> ms per step
  double total = loss_seconds + adam_seconds;
  for (std::size_t i = 0; i < layers; ++i) {
    const std::string name = (i < 10 ? "0" : "") + std::to_string(i) + "_" +
                             lamina::layer_type_snake_case(model.layer(i).type());
    state.counters[name + "_fwd"] = forward_seconds[i] * per_step;
    if (backward_seconds[i] > 0) state.counters[name + "_bwd"] = backward_seconds[i] * per_step;
    total += forward_seconds[i] + backward_seconds[i];
  }
  state.counters["loss"] = loss_seconds * per_step;
  state.counters["adam"] = adam_seconds * per_step;
  state.counters["step"] = total * per_step;
  state.SetItemsProcessed(static_cast<std::int64_t>(batch) * static_cast<std::int64_t>(state.iterations()));
}

// Peak resident memory of CNN training: the high-water mark is reset (after
// giving freed heap memory back), then a fresh model trains `iterations` steps.
// Counters: "VmHWM_MiB" (the process's peak, which includes the benchmark
// program itself), "before_MiB" (resident before the model was built),
// "training_MiB" (the difference) and "hwm_reset" (1 when the reset worked).
// Run it alone for a clean figure (earlier benchmarks of the same process may
// leave memory the allocator keeps).
// Arguments: batch, threads.
void BM_peak_rss(benchmark::State& state) {
  const auto batch = static_cast<std::size_t>(state.range(0));
  lamina_bench::use_threads(state.range(1));
  // Without the reset (old kernels, restricted /proc) VmHWM is the peak since
  // the process started: still right when this benchmark runs first.
  const bool reset = lamina_bench::reset_peak_rss();
  const double before = lamina_bench::proc_status_bytes("VmRSS");
  {
    Sequential<float> model = make_cnn();
    const Batch data(batch);
    for (auto _ : state) benchmark::DoNotOptimize(model.train_step(data.images.view(), data.labels.data()));
    state.SetItemsProcessed(static_cast<std::int64_t>(batch) * static_cast<std::int64_t>(state.iterations()));
  }
  const double peak = lamina_bench::proc_status_bytes("VmHWM");
  constexpr double MiB = 1024.0 * 1024.0;
  state.counters["VmHWM_MiB"] = peak / MiB;
  state.counters["before_MiB"] = before / MiB;
  state.counters["training_MiB"] = (peak - before) / MiB;
  state.counters["hwm_reset"] = reset ? 1 : 0;
}

bool register_benchmarks() {
  // Registered first so that, in a full run, it sees the cleanest process.
  benchmark::RegisterBenchmark("peak_rss/cnn", BM_peak_rss)
      ->ArgNames({"batch", "threads"})
      ->Args({128, 2})
      ->Iterations(3)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  for (Model m : {Model::cnn, Model::mlp}) {
    auto* train = benchmark::RegisterBenchmark((std::string("train_step/") + model_name(m)).c_str(), BM_train_step, m);
    train->ArgNames({"batch", "threads"})->UseRealTime()->Unit(benchmark::kMillisecond);
    for (std::int64_t batch : {128, 32})
      for (std::int64_t threads : lamina_bench::thread_counts()) train->Args({batch, threads});
    auto* infer = benchmark::RegisterBenchmark((std::string("inference/") + model_name(m)).c_str(), BM_inference, m);
    infer->ArgNames({"batch", "threads"})->UseRealTime()->Unit(benchmark::kMillisecond);
    for (std::int64_t batch : {1000, 1})
      for (std::int64_t threads : lamina_bench::thread_counts()) infer->Args({batch, threads});
  }
  for (Model m : {Model::cnn, Model::mlp}) {
    auto* profile =
        benchmark::RegisterBenchmark((std::string("train_profile/") + model_name(m)).c_str(), BM_train_profile, m);
    profile->ArgNames({"batch", "threads"})->UseRealTime()->Unit(benchmark::kMillisecond);
    for (std::int64_t threads : lamina_bench::thread_counts()) profile->Args({128, threads});
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  register_benchmarks();
  return lamina_bench::run_main(argc, argv, /*measure_peak=*/false);
}
