// bench_conv: the Conv2D kernels (lamina/kernels/conv2d.hpp) on the four
// convolutions of the reference CNN (examples/mnist_cnn.cpp), all 3x3, stride 1,
// padding 'same', float:
//
//   conv1_28x28x1_32    28x28x1  -> 32
//   conv2_28x28x32_32   28x28x32 -> 32
//   conv3_14x14x32_64   14x14x32 -> 64
//   conv4_14x14x64_64   14x14x64 -> 64
//
// Benchmarks (Google Benchmark names; arguments batch and lamina threads):
//   peak_fma/threads:T                  the xsimd FMA loop that defines the peak
//   conv_fast/<pass>/<shape>/batch:B/threads:T
//                                       what the Conv2D layer runs
//                                       (Conv2DAlgorithm::automatic: Winograd
//                                       on conv2-4; on conv1 the direct kernels
//                                       forward and backward weights, im2col
//                                       backward data), B = 128
//                                       for forward, backward_data,
//                                       backward_weights; B = 1 (inference)
//                                       for forward
//   conv_im2col/<pass>/<shape>/batch:B/threads:T
//                                       im2col (implicit where it can) + lamina's
//                                       GEMM on every shape (Conv2DAlgorithm::im2col)
//   conv_winograd/<pass>/<shape>/batch:B/threads:T
//                                       Winograd F(2x2, 3x3) on every shape
//                                       (Conv2DAlgorithm::winograd; its flops
//                                       counter still counts the direct
//                                       convolution's multiply-adds, so it is
//                                       an effective rate and may pass the peak)
//   conv_{im2col,winograd}/<pass>/rule_<H>x<W>x<C>_<F>/batch:128/threads:1
//                                       narrow layers with both algorithms: the
//                                       measurements behind automatic's rule
//   conv_eigen/<pass>/<shape>/batch:B/threads:T
//                                       the same kernels with Eigen's GEMM
//                                       (GemmKernel::eigen on im2col, to
//                                       compare with lamina's GEMM)
//   gemm/{lamina,eigen}/<pass>/<shape>  the GEMM of one chunk alone, serial, on
//                                       the operands the kernel gives it:
//                                       forward (rows, K) x (K, F), backward
//                                       data (rows, F) x (K, F)^T, backward
//                                       weights (rows, K)^T x (rows, F)
//   conv_reference/<pass>/<shape>/batch:8   the references (serial, double
//                                       accumulation), at batch 8 because they are
//                                       slow; forward also at batch 1
//   im2col/{fast,reference}/<shape>/batch:128, col2im/...
//                                       the transforms alone, serial, chunk by
//                                       chunk as the kernels run them; bytes/s
//                                       counts the column matrix and the images
//
// Counters: flops (FLOP/s, 2 * N * OH * OW * F * KH * KW * C per pass) and
// pct_peak (percent of the fp32 peak measured at startup with the same number
// of threads); see bench/common.hpp and docs/performance.md.
#include <lamina/kernels/conv2d.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

#include "common.hpp"

namespace {

using lamina::kernels::Conv2DGeometry;
using lamina::kernels::Conv2DAlgorithm;
using lamina::kernels::GemmKernel;
using lamina::kernels::Conv2DWorkspace;

struct ConvShape {
  const char* name;
  std::size_t H, W, C, F;
};

// The reference CNN's convolutions, in model order.
constexpr ConvShape kShapes[] = {
    {"conv1_28x28x1_32", 28, 28, 1, 32},
    {"conv2_28x28x32_32", 28, 28, 32, 32},
    {"conv3_14x14x32_64", 14, 14, 32, 64},
    {"conv4_14x14x64_64", 14, 14, 64, 64},
};

// Narrow 3x3 layers, timed with both algorithms (1 thread, batch 128): the
// measurements behind Conv2DAlgorithm::automatic's rule (Winograd only when
// the channels and the filters each fill a SIMD batch).
constexpr ConvShape kRuleShapes[] = {
    {"rule_28x28x4_16", 28, 28, 4, 16},   {"rule_28x28x8_16", 28, 28, 8, 16},
    {"rule_28x28x16_8", 28, 28, 16, 8},   {"rule_28x28x16_16", 28, 28, 16, 16},
    {"rule_28x28x128_128", 28, 28, 128, 128},
};

Conv2DGeometry geometry(const ConvShape& s, std::size_t batch) {
  return Conv2DGeometry(batch, s.H, s.W, s.C, s.F, 3, 3, 1, 1, lamina::Padding::same);
}

enum class Pass { forward, backward_data, backward_weights };

const char* pass_name(Pass pass) {
  switch (pass) {
    case Pass::forward: return "forward";
    case Pass::backward_data: return "backward_data";
    case Pass::backward_weights: return "backward_weights";
  }
  return "?";
}

// Every operand of the three passes, filled with uniform values in [-1, 1).
struct ConvOperands {
  explicit ConvOperands(const Conv2DGeometry& g)
      : input(g.input_shape()),
        kernel(g.kernel_shape()),
        bias(lamina::Shape{g.F}),
        output(g.output_shape()),
        grad_output(g.output_shape()),
        grad_input(g.input_shape()),
        grad_kernel(g.kernel_shape()),
        grad_bias(lamina::Shape{g.F}) {
    lamina::Rng rng(20261124);
    lamina_bench::fill_uniform(input.view(), rng);
    lamina_bench::fill_uniform(kernel.view(), rng, -0.1, 0.1);
    lamina_bench::fill_uniform(bias.view(), rng);
    lamina_bench::fill_uniform(grad_output.view(), rng);
  }
  lamina::Tensor<float> input;        // (N, H, W, C)
  lamina::Tensor<float> kernel;       // (3, 3, C, F)
  lamina::Tensor<float> bias;         // (F)
  lamina::Tensor<float> output;       // (N, H, W, F)
  lamina::Tensor<float> grad_output;  // (N, H, W, F)
  lamina::Tensor<float> grad_input;   // (N, H, W, C)
  lamina::Tensor<float> grad_kernel;  // (3, 3, C, F)
  lamina::Tensor<float> grad_bias;    // (F)
};

double pass_flops(const Conv2DGeometry& g) {
  return lamina_bench::conv_flops(g.N, g.OH, g.OW, g.F, g.KH, g.KW, g.C);
}

// Arguments: batch, threads.
void BM_conv_fast(benchmark::State& state, ConvShape shape, Pass pass, GemmKernel gemm, Conv2DAlgorithm algorithm) {
  const auto batch = static_cast<std::size_t>(state.range(0));
  const int threads = lamina_bench::use_threads(state.range(1));
  const Conv2DGeometry g = geometry(shape, batch);
  ConvOperands x(g);
  Conv2DWorkspace<float> workspace(algorithm, gemm);
  auto run = [&] {
    switch (pass) {
      case Pass::forward:
        lamina::kernels::conv2d_forward(g, x.input.data(), x.kernel.data(), x.bias.data(), x.output.data(),
                                        workspace);
        break;
      case Pass::backward_data:
        lamina::kernels::conv2d_backward_data(g, x.grad_output.data(), x.kernel.data(), x.grad_input.data(),
                                              workspace);
        break;
      case Pass::backward_weights:
        lamina::kernels::conv2d_backward_weights(g, x.input.data(), x.grad_output.data(), x.grad_kernel.data(),
                                                 x.grad_bias.data(), workspace);
        break;
    }
  };
  run();  // grows the workspace: the timed calls do not allocate
  lamina_bench::LoopTimer timer;
  timer.start();
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  timer.stop();
  lamina_bench::report_flops(state, pass_flops(g), threads, timer.seconds());
}

// The GEMM of one full chunk at batch 128, serial, lamina's or Eigen's, on the
// operands the kernels give it (random values of the right shapes).
void BM_gemm(benchmark::State& state, ConvShape shape, Pass pass, GemmKernel gemm) {
  namespace k = lamina::kernels;
  lamina_bench::use_threads(1);
  const Conv2DGeometry g = geometry(shape, 128);
  const std::size_t rows = k::conv2d_chunking<float>(g).images_per_chunk * g.pixels_per_image();
  const std::size_t K = g.patch_size(), F = g.F, KP = k::gemm_padded_columns<float>(K);
  lamina::Rng rng(11);
  lamina::Tensor<float> cols = lamina_bench::random_tensor(lamina::Shape{rows, K}, rng);  // (rows, K)
  lamina::Tensor<float> go = lamina_bench::random_tensor(lamina::Shape{rows, F}, rng);    // (rows, F)
  lamina::Tensor<float> kernel = lamina_bench::random_tensor(lamina::Shape{K, F}, rng);   // (K, F)
  lamina::Tensor<float> packed(lamina::Shape{F, KP});                                     // (F, padded K)
  lamina::Tensor<float> out(lamina::Shape{rows, F});                                      // (rows, F)
  lamina::Tensor<float> grad_cols(lamina::Shape{rows, K});                                // (rows, K)
  lamina::Tensor<float> grad_kernel(lamina::Shape{K, F});                                 // (K, F)
  using Map = k::MatrixMap<float>;
  using CMap = k::ConstMatrixMap<float>;
  const auto R = static_cast<Eigen::Index>(rows), KK = static_cast<Eigen::Index>(K),
             FF = static_cast<Eigen::Index>(F);
  auto run = [&] {
    switch (pass) {
      case Pass::forward:
        if (gemm == GemmKernel::lamina)
          k::gemm_prepacked<float>(rows, F, K, cols.data(), K, false, kernel.data(), F, out.data(), F);
        else
          Map(out.data(), R, FF).noalias() = CMap(cols.data(), R, KK) * CMap(kernel.data(), KK, FF);
        break;
      case Pass::backward_data:
        if (gemm == GemmKernel::lamina) {
          k::gemm_prepacked<float>(rows, K, F, go.data(), F, false, packed.data(), KP, grad_cols.data(), K);
        } else {
          Map(grad_cols.data(), R, KK).noalias() = CMap(go.data(), R, FF) * CMap(kernel.data(), KK, FF).transpose();
        }
        break;
      case Pass::backward_weights:
        if (gemm == GemmKernel::lamina)
          k::gemm_prepacked<float>(K, F, rows, cols.data(), K, true, go.data(), F, grad_kernel.data(), F);
        else
          Map(grad_kernel.data(), KK, FF).noalias() = CMap(cols.data(), R, KK).transpose() * CMap(go.data(), R, FF);
        break;
    }
  };
  // The kernel packs kernel^T once per call, for all its chunks: not timed here.
  k::gemm_pack_b<float>(F, K, kernel.data(), F, true, packed.data());
  run();
  lamina_bench::LoopTimer timer;
  timer.start();
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  timer.stop();
  lamina_bench::report_flops(state, 2.0 * double(rows) * double(K) * double(F), 1, timer.seconds());
  state.counters["rows"] = static_cast<double>(rows);
}

// Argument: batch. The references are serial.
void BM_conv_reference(benchmark::State& state, ConvShape shape, Pass pass) {
  const auto batch = static_cast<std::size_t>(state.range(0));
  const int threads = lamina_bench::use_threads(1);
  const Conv2DGeometry g = geometry(shape, batch);
  ConvOperands x(g);
  lamina_bench::LoopTimer timer;
  timer.start();
  for (auto _ : state) {
    switch (pass) {
      case Pass::forward:
        lamina::kernels::conv2d_forward_reference(g, x.input.data(), x.kernel.data(), x.bias.data(), x.output.data());
        break;
      case Pass::backward_data:
        lamina::kernels::conv2d_backward_data_reference(g, x.grad_output.data(), x.kernel.data(), x.grad_input.data());
        break;
      case Pass::backward_weights:
        lamina::kernels::conv2d_backward_weights_reference(g, x.input.data(), x.grad_output.data(),
                                                       x.grad_kernel.data(), x.grad_bias.data());
        break;
    }
    benchmark::ClobberMemory();
  }
  timer.stop();
  lamina_bench::report_flops(state, pass_flops(g), threads, timer.seconds());
}

// im2col / col2im alone, serial, over the batch chunk by chunk into one column
// buffer (as one worker of the kernels does). Argument: batch.
// Bytes per pass: the column matrix plus the images (read or written once each).
enum class Transform { im2col, col2im };

void BM_transform(benchmark::State& state, ConvShape shape, Transform transform, bool reference) {
  const auto batch = static_cast<std::size_t>(state.range(0));
  lamina_bench::use_threads(1);
  const Conv2DGeometry g = geometry(shape, batch);
  const auto chunking = lamina::kernels::conv2d_chunking<float>(g);
  lamina::Rng rng(7);
  lamina::Tensor<float> images = lamina_bench::random_tensor(g.input_shape(), rng);  // (N, H, W, C)
  // (images_per_chunk * OH * OW, KH * KW * C)
  lamina::Tensor<float> columns = lamina_bench::random_tensor(
      lamina::Shape{chunking.images_per_chunk * g.pixels_per_image(), g.patch_size()}, rng);
  for (auto _ : state) {
    for (std::size_t c = 0; c < chunking.chunks; ++c) {
      const std::size_t n0 = chunking.begin(c), n1 = chunking.end(c, g.N);
      if (transform == Transform::im2col) {
        if (reference)
          lamina::kernels::im2col_reference(g, images.data(), n0, n1, columns.data());
        else
          lamina::kernels::im2col(g, images.data(), n0, n1, columns.data());
      } else {
        if (reference)
          lamina::kernels::col2im_reference(g, columns.data(), n0, n1, images.data());
        else
          lamina::kernels::col2im(g, columns.data(), n0, n1, images.data());
      }
      benchmark::ClobberMemory();
    }
  }
  const double bytes = static_cast<double>((g.N * g.pixels_per_image() * g.patch_size() + g.input_size()) *
                                           sizeof(float));
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes * static_cast<double>(state.iterations())));
  state.counters["images_per_chunk"] = static_cast<double>(chunking.images_per_chunk);
}

// The FMA loop of the peak measurement, timed by Google Benchmark. Argument: threads.
void BM_peak_fma(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  constexpr std::size_t iterations = std::size_t(1) << 16;
  lamina_bench::LoopTimer timer;
  timer.start();
  for (auto _ : state) benchmark::DoNotOptimize(lamina_bench::fma_loop(threads, iterations));
  timer.stop();
  lamina_bench::report_flops(state, threads * static_cast<double>(iterations) * lamina_bench::kFlopsPerFmaIteration,
                             threads, timer.seconds());
}

bool register_benchmarks() {
  benchmark::RegisterBenchmark("peak_fma", BM_peak_fma)
      ->ArgName("threads")
      ->Arg(1)
      ->Arg(2)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  for (Pass pass : {Pass::forward, Pass::backward_data, Pass::backward_weights}) {
    for (const ConvShape& shape : kShapes) {
      const std::string suffix = std::string(pass_name(pass)) + "/" + shape.name;
      const struct {
        const char* family;
        GemmKernel gemm;
        Conv2DAlgorithm algorithm;
      } kernels[] = {{"conv_fast/", GemmKernel::automatic, Conv2DAlgorithm::automatic},
                     {"conv_im2col/", GemmKernel::automatic, Conv2DAlgorithm::im2col},
                     {"conv_winograd/", GemmKernel::automatic, Conv2DAlgorithm::winograd},
                     {"conv_eigen/", GemmKernel::eigen, Conv2DAlgorithm::im2col}};
      for (const auto& k : kernels) {
        auto* fast = benchmark::RegisterBenchmark((k.family + suffix).c_str(), BM_conv_fast, shape, pass, k.gemm,
                                                  k.algorithm);
        fast->ArgNames({"batch", "threads"})->UseRealTime()->Unit(benchmark::kMillisecond);
        for (std::int64_t threads : lamina_bench::thread_counts()) fast->Args({128, threads});
        if (pass == Pass::forward)
          for (std::int64_t threads : lamina_bench::thread_counts()) fast->Args({1, threads});
      }
      for (GemmKernel gemm : {GemmKernel::lamina, GemmKernel::eigen}) {
        const std::string gemm_name = std::string("gemm/") + (gemm == GemmKernel::lamina ? "lamina/" : "eigen/");
        benchmark::RegisterBenchmark((gemm_name + suffix).c_str(), BM_gemm, shape, pass, gemm)
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
      }

      auto* naive = benchmark::RegisterBenchmark(("conv_reference/" + suffix).c_str(), BM_conv_reference, shape, pass);
      naive->ArgName("batch")->Arg(8)->UseRealTime()->Unit(benchmark::kMillisecond);
      if (pass == Pass::forward) naive->Arg(1);
    }
  }
  for (Pass pass : {Pass::forward, Pass::backward_data, Pass::backward_weights})
    for (const ConvShape& shape : kRuleShapes)
      for (Conv2DAlgorithm algorithm : {Conv2DAlgorithm::im2col, Conv2DAlgorithm::winograd}) {
        const std::string name = std::string(algorithm == Conv2DAlgorithm::im2col ? "conv_im2col/" : "conv_winograd/") +
                                 pass_name(pass) + "/" + shape.name;
        benchmark::RegisterBenchmark(name.c_str(), BM_conv_fast, shape, pass, GemmKernel::automatic, algorithm)
            ->ArgNames({"batch", "threads"})
            ->Args({128, 1})
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
      }
  for (Transform transform : {Transform::im2col, Transform::col2im}) {
    for (bool reference : {false, true}) {
      for (const ConvShape& shape : kShapes) {
        const std::string name = std::string(transform == Transform::im2col ? "im2col/" : "col2im/") +
                                 (reference ? "reference/" : "fast/") + shape.name;
        benchmark::RegisterBenchmark(name.c_str(), BM_transform, shape, transform, reference)
            ->ArgName("batch")
            ->Arg(128)
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
      }
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  register_benchmarks();
  return lamina_bench::run_main(argc, argv, /*measure_peak=*/true);
}
