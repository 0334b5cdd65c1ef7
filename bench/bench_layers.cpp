// bench_layers: single layers of the reference models, forward (training mode)
// and backward, on batch 128, with 1 and 2 lamina threads.
//
//   dense_3136_256_relu        the CNN's Dense 256 (fused ReLU) after Flatten
//   dense_784_256_relu_no_dx   the MLP's first Dense: its input is data, so the
//                              model skips the input gradient (backward = dW, db)
//   dense_256_10               the MLP's (and the CNN's) last Dense, 10 outputs
//   dense_*_eigen              the same Dense layers forced onto Eigen's GEMM
//                              (GemmKernel::eigen), to compare with lamina's
//   batchnorm_28x28x32         BatchNormalization after the CNN's first convs
//   batchnorm_256              BatchNormalization after the CNN's Dense 256
//   maxpool_28x28x32           the CNN's first MaxPooling2D (2x2)
//   conv2d_28x28x32_32_relu    the CNN's second Conv2D layer (kernels, bias and
//                              the fused ReLU), to compare with bench_conv
//
// Names: layer/<name>/<forward|backward>/batch:128/threads:T. Dense and Conv2D
// report flops and pct_peak (GEMM work: 2 * N * in * out per product); the
// memory-bound layers report bytes/s of NOMINAL traffic, each tensor the pass
// must read or write counted once (BatchNorm forward: x and y; backward: dy, x
// and dx; MaxPooling forward: x and y; backward: dy and dx).
#include <lamina/layers/batchnorm.hpp>
#include <lamina/layers/conv2d.hpp>
#include <lamina/layers/dense.hpp>
#include <lamina/layers/maxpool2d.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common.hpp"

namespace {

using lamina::Layer;
using lamina::Mode;
using lamina::Shape;

enum class Direction { forward, backward };

// What one pass does, to turn time into a rate: flops for GEMM layers, else bytes.
struct Work {
  double forward_flops = 0, backward_flops = 0;
  double forward_bytes = 0, backward_bytes = 0;
};

struct LayerCase {
  std::string name;
  std::function<std::unique_ptr<Layer<float>>()> make;
  Shape sample;  // one input sample
  bool input_gradient_needed = true;
  std::function<Work(std::size_t batch)> work;
};

// Arguments: batch, threads.
void BM_layer(benchmark::State& state, const LayerCase& c, Direction direction) {
  const auto batch = static_cast<std::size_t>(state.range(0));
  const int threads = lamina_bench::use_threads(state.range(1));
  std::unique_ptr<Layer<float>> layer = c.make();
  layer->build(c.sample);
  layer->set_input_gradient_needed(c.input_gradient_needed);
  lamina::ParameterStore<float> store;
  store.allocate({layer.get()});
  lamina::Rng rng(20261124);
  lamina::Rng init_rng = rng.fork(1);
  layer->initialize(init_rng);
  const lamina::Tensor<float> input = lamina_bench::random_tensor(c.sample.prepend(batch), rng);
  const lamina::Tensor<float> grad_output =
      lamina_bench::random_tensor(layer->output_shape().prepend(batch), rng);
  // Warm-up: the layer sizes its buffers for this batch and then never allocates.
  layer->forward(input.view(), Mode::train);
  layer->backward(grad_output.view());

  lamina_bench::LoopTimer timer;
  timer.start();
  for (auto _ : state) {
    if (direction == Direction::forward) {
      benchmark::DoNotOptimize(layer->forward(input.view(), Mode::train).data());
    } else {
      benchmark::DoNotOptimize(layer->backward(grad_output.view()).data());
    }
    benchmark::ClobberMemory();
  }
  timer.stop();
  const Work work = c.work(batch);
  const double flops = direction == Direction::forward ? work.forward_flops : work.backward_flops;
  const double bytes = direction == Direction::forward ? work.forward_bytes : work.backward_bytes;
  if (flops > 0) lamina_bench::report_flops(state, flops, threads, timer.seconds());
  if (bytes > 0) state.SetBytesProcessed(static_cast<std::int64_t>(bytes * static_cast<double>(state.iterations())));
}

std::vector<LayerCase> layer_cases() {
  using lamina::Activation;
  using lamina::Init;
  constexpr double f = sizeof(float);
  auto dense = [](double in, double out, bool dx) {
    return [=](std::size_t n) {
      const double product = 2.0 * static_cast<double>(n) * in * out;  // one (N, in) x (in, out) GEMM
      Work w;
      w.forward_flops = product;
      w.backward_flops = dx ? 2 * product : product;  // dW (and dX)
      return w;
    };
  };
  auto elementwise = [=](double sample, double forward_tensors, double backward_tensors) {
    return [=](std::size_t n) {
      Work w;
      w.forward_bytes = forward_tensors * static_cast<double>(n) * sample * f;
      w.backward_bytes = backward_tensors * static_cast<double>(n) * sample * f;
      return w;
    };
  };
  auto make_dense = [](std::size_t units, Activation activation, lamina::kernels::GemmKernel gemm) {
    return [=]() -> std::unique_ptr<Layer<float>> {
      auto d = std::make_unique<lamina::Dense<float>>(units, Init::he_normal, true, activation);
      d->set_gemm(gemm);
      return d;
    };
  };
  using lamina::kernels::GemmKernel;
  return {
      {"dense_3136_256_relu",
       [] { return std::make_unique<lamina::Dense<float>>(256, Init::he_normal, true, Activation::relu); },
       Shape{3136}, true, dense(3136, 256, true)},
      {"dense_784_256_relu_no_dx",
       [] { return std::make_unique<lamina::Dense<float>>(256, Init::he_normal, true, Activation::relu); },
       Shape{784}, false, dense(784, 256, false)},
      {"dense_256_10", make_dense(10, Activation::none, GemmKernel::automatic), Shape{256}, true,
       dense(256, 10, true)},
      {"dense_3136_256_relu_eigen", make_dense(256, Activation::relu, GemmKernel::eigen), Shape{3136}, true,
       dense(3136, 256, true)},
      {"dense_784_256_relu_no_dx_eigen", make_dense(256, Activation::relu, GemmKernel::eigen), Shape{784}, false,
       dense(784, 256, false)},
      {"dense_256_10_eigen", make_dense(10, Activation::none, GemmKernel::eigen), Shape{256}, true,
       dense(256, 10, true)},
      {"batchnorm_28x28x32", [] { return std::make_unique<lamina::BatchNormalization<float>>(); },
       Shape{28, 28, 32}, true, elementwise(28 * 28 * 32, 2, 3)},
      {"batchnorm_256", [] { return std::make_unique<lamina::BatchNormalization<float>>(); }, Shape{256}, true,
       elementwise(256, 2, 3)},
      // x and the quarter-size y (forward); the quarter-size dy and dx (backward).
      {"maxpool_28x28x32", [] { return std::make_unique<lamina::MaxPooling2D<float>>(2); }, Shape{28, 28, 32},
       true, elementwise(28 * 28 * 32, 1.25, 1.25)},
      {"conv2d_28x28x32_32_relu",
       [] { return std::make_unique<lamina::Conv2D<float>>(32, 3, 1, lamina::Padding::same, Activation::relu); },
       Shape{28, 28, 32}, true,
       [](std::size_t n) {
         Work w;
         w.forward_flops = lamina_bench::conv_flops(n, 28, 28, 32, 3, 3, 32);
         w.backward_flops = 2 * w.forward_flops;  // backward data and backward weights
         return w;
       }},
  };
}

bool register_benchmarks() {
  static const std::vector<LayerCase> cases = layer_cases();
  for (const LayerCase& c : cases) {
    for (Direction direction : {Direction::forward, Direction::backward}) {
      const std::string name =
          "layer/" + c.name + (direction == Direction::forward ? "/forward" : "/backward");
      auto* b = benchmark::RegisterBenchmark(name.c_str(), BM_layer, std::cref(c), direction);
      b->ArgNames({"batch", "threads"})->UseRealTime()->Unit(benchmark::kMicrosecond);
      for (std::int64_t threads : lamina_bench::thread_counts()) b->Args({128, threads});
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  register_benchmarks();
  return lamina_bench::run_main(argc, argv, /*measure_peak=*/true);
}
