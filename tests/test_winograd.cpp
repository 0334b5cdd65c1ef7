// Winograd F(2x2, 3x3) (kernels/winograd.hpp): against the references
// (kernels/conv2d_reference.hpp) on odd shapes, the dispatch rule,
// bit-identity across thread counts and batch sizes, the workspace's steady
// state, and the Conv2D layer's gradients (the checker passes it, and fails it
// when the kernel it runs drops a tap) and predict() copy when it runs Winograd.
//
// TOLERANCE. test_conv_kernels.cpp bounds an im2col result by
//     2 min(n + 2, 8 sqrt(n + 2)) u mag,   mag = sum |terms| (reference on |inputs|)
// (n products per value, u the unit roundoff). Winograd computes each output
// from 16 transformed products per channel instead of 9, and each transformed
// input value is a sum of up to 4 inputs (B^T d B), each transformed kernel
// value at most 9/4 of |g| summed (G g G^T), and the output transform adds up
// to 9 of the 16 products (A^T M A). Bounding |U| |V| summed over the 16
// positions by 16 * 9/4 = 36 times the direct products' magnitudes, and
// adding the transforms' own few roundings, we require
//     |winograd - reference| <= 36 * 2 min(n + 2, 8 sqrt(n + 2)) u mag.
// In float, for C = 33, that is 1.4e-3 of mag, against 1 / (9 * 33) = 3.4e-3
// for a missing tap; the test below checks that dropping one tap of the kernel
// does fail the bound on every shape, so the bound can fail. Observed errors
// are 1 to 10 u mag.
#include <lamina/kernels/conv2d.hpp>
#include <lamina/kernels/winograd.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <lamina/core/rng.hpp>
#include <lamina/core/threads.hpp>
#include <lamina/check/gradient_check.hpp>
#include <lamina/layers/conv2d.hpp>
#include <lamina/lamina.hpp>

#include "support.hpp"

using namespace lamina;
using namespace lamina::kernels;
using lamina_test::absolute;
using lamina_test::random_values;
using lamina_test::same_bits;

namespace {

// 3x3 stride-1 shapes: 1, 3, 17, 33 channels and filters (below, at and past
// the SIMD width); odd and even sizes (a last tile half outside the image);
// images smaller than a tile; both paddings.
const std::vector<Conv2DGeometry> kShapes = {
    {2, 7, 7, 1, 4, 3, 3, 1, 1, Padding::same},
    {3, 7, 7, 1, 4, 3, 3, 1, 1, Padding::valid},
    {3, 9, 6, 17, 33, 3, 3, 1, 1, Padding::same},
    {2, 5, 8, 33, 5, 3, 3, 1, 1, Padding::valid},
    {2, 6, 5, 3, 17, 3, 3, 1, 1, Padding::same},
    {1, 3, 3, 2, 3, 3, 3, 1, 1, Padding::valid},   // one output pixel
    {2, 1, 1, 3, 3, 3, 3, 1, 1, Padding::same},    // one input pixel
    {2, 2, 9, 16, 16, 3, 3, 1, 1, Padding::same},  // one tile row
    {5, 8, 8, 16, 32, 3, 3, 1, 1, Padding::same},
};

// Several chunks and several blocks per chunk (37 images of 14x14 = 49 tiles;
// 28x28 = 196 tiles, more than a block at 64 channels).
const std::vector<Conv2DGeometry> kLargeShapes = {
    {37, 14, 14, 17, 33, 3, 3, 1, 1, Padding::same},
    {19, 28, 28, 64, 64, 3, 3, 1, 1, Padding::same},
    {20, 13, 11, 16, 16, 3, 3, 1, 1, Padding::valid},
};

std::string describe(const Conv2DGeometry& g) {
  return "input " + g.input_shape().to_string() + " kernel " + g.kernel_shape().to_string() + " padding " +
         to_string(g.padding);
}

// The worst |fast - ref| / (bound factor * u * mag) over all elements: <= 1 passes.
template <class T>
double worst_ratio(const std::vector<T>& fast, const std::vector<T>& ref, const std::vector<T>& mag,
                   std::size_t n) {
  const double u = std::numeric_limits<T>::epsilon() / 2;
  const double terms = double(n + 2);
  const double factor = 36.0 * 2.0 * std::min(terms, 8.0 * std::sqrt(terms));
  double worst = 0.0;
  for (std::size_t i = 0; i < fast.size(); ++i) {
    const double err = std::fabs(double(fast[i]) - double(ref[i]));
    const double bound = factor * u * std::max(double(mag[i]), std::numeric_limits<double>::min());
    worst = std::max(worst, err / bound);
  }
  return worst;
}

template <class T>
struct Passes {
  std::vector<T> output, grad_input, grad_kernel, grad_bias;
};

template <class T>
Passes<T> run_winograd(const Conv2DGeometry& g, const std::vector<T>& x, const std::vector<T>& k,
                       const std::vector<T>& b, const std::vector<T>& dy, WinogradWorkspace<T>& ws) {
  Passes<T> p{std::vector<T>(g.output_size()), std::vector<T>(g.input_size()), std::vector<T>(g.kernel_size()),
              std::vector<T>(g.F)};
  conv2d_winograd_forward(g, x.data(), k.data(), b.data(), p.output.data(), ws);
  conv2d_winograd_backward_data(g, dy.data(), k.data(), p.grad_input.data(), ws);
  conv2d_winograd_backward_weights(g, x.data(), dy.data(), p.grad_kernel.data(), p.grad_bias.data(), ws);
  return p;
}

template <class T>
Passes<T> run_reference(const Conv2DGeometry& g, const std::vector<T>& x, const std::vector<T>& k,
                    const std::vector<T>& b, const std::vector<T>& dy) {
  Passes<T> p{std::vector<T>(g.output_size()), std::vector<T>(g.input_size()), std::vector<T>(g.kernel_size()),
              std::vector<T>(g.F)};
  conv2d_forward_reference(g, x.data(), k.data(), b.data(), p.output.data());
  conv2d_backward_data_reference(g, dy.data(), k.data(), p.grad_input.data());
  conv2d_backward_weights_reference(g, x.data(), dy.data(), p.grad_kernel.data(), p.grad_bias.data());
  return p;
}

template <class T>
void check_against_reference(const Conv2DGeometry& g, std::uint64_t seed) {
  INFO(describe(g) << " with T = " << (sizeof(T) == 4 ? "float" : "double"));
  REQUIRE(winograd_applicable(g));
  Rng rng(seed);
  const auto x = random_values<T>(g.input_size(), rng);
  const auto k = random_values<T>(g.kernel_size(), rng);
  const auto b = random_values<T>(g.F, rng);
  const auto dy = random_values<T>(g.output_size(), rng);
  WinogradWorkspace<T> ws;
  const Passes<T> fast = run_winograd(g, x, k, b, dy, ws);
  const Passes<T> ref = run_reference(g, x, k, b, dy);
  // Magnitudes: the reference passes on absolute values (the bias counts as a term).
  const Passes<T> mag = run_reference(g, absolute(x), absolute(k), absolute(b), absolute(dy));
  const std::size_t taps = 9;
  const double r_out = worst_ratio(fast.output, ref.output, mag.output, taps * g.C);
  const double r_in = worst_ratio(fast.grad_input, ref.grad_input, mag.grad_input, taps * g.F);
  const std::size_t rows = g.N * g.OH * g.OW;
  const double r_kernel = worst_ratio(fast.grad_kernel, ref.grad_kernel, mag.grad_kernel, rows);
  const double r_bias = worst_ratio(fast.grad_bias, ref.grad_bias, mag.grad_bias, rows);
  INFO("worst error / bound: output " << r_out << ", grad_input " << r_in << ", grad_kernel " << r_kernel
                                      << ", grad_bias " << r_bias);
  CHECK(r_out <= 1.0);
  CHECK(r_in <= 1.0);
  CHECK(r_kernel <= 1.0);
  CHECK(r_bias <= 1.0);

  // The bound can fail: the reference with one kernel tap dropped (the centre
  // tap of channel 0, filter 0) is out of bounds for the forward pass and the
  // input gradient.
  auto dropped = k;
  dropped[((1 * 3 + 1) * g.C + 0) * g.F + 0] = T(0);
  const Passes<T> wrong = run_reference(g, x, dropped, b, dy);
  CHECK(worst_ratio(fast.output, wrong.output, mag.output, taps * g.C) > 1.0);
  CHECK(worst_ratio(fast.grad_input, wrong.grad_input, mag.grad_input, taps * g.F) > 1.0);
}

template <class T>
void check_thread_and_batch_invariance(const Conv2DGeometry& g, std::uint64_t seed) {
  INFO(describe(g) << " with T = " << (sizeof(T) == 4 ? "float" : "double"));
  Rng rng(seed);
  const auto x = random_values<T>(g.input_size(), rng);
  const auto k = random_values<T>(g.kernel_size(), rng);
  const auto b = random_values<T>(g.F, rng);
  const auto dy = random_values<T>(g.output_size(), rng);
  const int saved = num_threads();
  WinogradWorkspace<T> ws1, ws2;
  set_num_threads(1);
  const Passes<T> one = run_winograd(g, x, k, b, dy, ws1);
  set_num_threads(2);
  const Passes<T> two = run_winograd(g, x, k, b, dy, ws2);
  const Passes<T> two_reused = run_winograd(g, x, k, b, dy, ws1);  // a workspace grown by 1 thread
  set_num_threads(saved);
  CHECK(same_bits(one.output, two.output));
  CHECK(same_bits(one.grad_input, two.grad_input));
  CHECK(same_bits(one.grad_kernel, two.grad_kernel));
  CHECK(same_bits(one.grad_bias, two.grad_bias));
  CHECK(same_bits(one.output, two_reused.output));
  CHECK(same_bits(one.grad_kernel, two_reused.grad_kernel));

  // The last image alone: its output and input gradient have the batch's bits.
  const Conv2DGeometry single = g.with_batch(1);
  const std::size_t last = g.N - 1;
  const std::vector<T> x1(x.begin() + static_cast<std::ptrdiff_t>(last * single.input_size()), x.end());
  const std::vector<T> dy1(dy.begin() + static_cast<std::ptrdiff_t>(last * single.output_size()), dy.end());
  WinogradWorkspace<T> ws3;
  const Passes<T> alone = run_winograd(single, x1, k, b, dy1, ws3);
  CHECK(same_bits(alone.output,
                  std::vector<T>(one.output.begin() + static_cast<std::ptrdiff_t>(last * single.output_size()),
                                 one.output.end())));
  CHECK(same_bits(alone.grad_input,
                  std::vector<T>(one.grad_input.begin() + static_cast<std::ptrdiff_t>(last * single.input_size()),
                                 one.grad_input.end())));
}

// Whether conv2d_choose runs Winograd for pass `pass` of g with ws's settings.
bool uses_winograd(const Conv2DGeometry& g, const Conv2DWorkspace<float>& ws,
                   KernelPass pass = KernelPass::forward) {
  return conv2d_choose(g, ws, pass).algorithm == Conv2DAlgorithm::winograd;
}


// A 3x3 Conv2D running Winograd whose input gradient comes from a wrong
// kernel: conv2d_winograd_backward_data on the kernel with its centre tap of
// channel 0, filter 0 dropped, what a Winograd backward that loses a tap would
// return. Forward and the parameter gradients are the real layer's.
class DroppedTapConv2D final : public Layer<double> {
 public:
  DroppedTapConv2D(std::size_t filters, Padding padding)
      : filters_(filters), padding_(padding), inner_(filters, 3, 1, padding) {
    inner_.set_algorithm(Conv2DAlgorithm::winograd);
  }
  std::string type() const override { return "DroppedTapConv2D"; }
  std::vector<TensorSpec> parameter_specs() const override { return inner_.parameter_specs(); }
  void initialize(Rng& rng) override {
    inner_.bind(parameters(), gradients(), buffers());
    inner_.initialize(rng);
  }
  std::unique_ptr<Layer<double>> clone() const override {
    return std::make_unique<DroppedTapConv2D>(filters_, padding_);
  }
  TensorView<const double> forward(TensorView<const double> x, Mode m) override { return inner_.forward(x, m); }
  TensorView<const double> backward(TensorView<const double> grad_output) override {
    inner_.backward(grad_output);  // the kernel and bias gradients
    const Shape& in = inner_.input_shape();  // (H, W, C)
    const Conv2DGeometry g(grad_output.dim(0), in[0], in[1], in[2], filters_, 3, 3, 1, 1, padding_);
    std::vector<double> kernel(parameters()[0].data(), parameters()[0].data() + g.kernel_size());
    kernel[((1 * 3 + 1) * g.C + 0) * g.F + 0] = 0.0;  // (3, 3, C, F): tap (1, 1), channel 0, filter 0
    grad_input_.resize(g.input_shape());
    conv2d_winograd_backward_data(g, grad_output.data(), kernel.data(), grad_input_.data(), workspace_);
    return grad_input_.view();
  }

 protected:
  Shape do_build(const Shape& input_shape) override { return inner_.build(input_shape); }

 private:
  std::size_t filters_;
  Padding padding_;
  Conv2D<double> inner_;
  WinogradWorkspace<double> workspace_;
  Tensor<double> grad_input_;  // (N, H, W, C)
};

}  // namespace

TEST_CASE("Winograd F(2x2, 3x3) matches the naive reference on odd shapes (float and double)") {
  std::uint64_t seed = 900;
  for (const Conv2DGeometry& g : kShapes) {
    check_against_reference<float>(g, seed++);
    check_against_reference<double>(g, seed++);
  }
  for (const Conv2DGeometry& g : kLargeShapes) check_against_reference<float>(g, seed++);
}

TEST_CASE("Winograd gives the same bits with 1 thread or 2, and an image the same bits in any batch") {
  std::uint64_t seed = 950;
  for (const Conv2DGeometry& g : kLargeShapes) {
    check_thread_and_batch_invariance<float>(g, seed++);
    check_thread_and_batch_invariance<double>(g, seed++);
  }
}

TEST_CASE("Conv2D kernels dispatch to Winograd as documented") {
  constexpr std::size_t W = xsimd::batch<float>::size;
  const Conv2DGeometry wide(4, 9, 9, W, W, 3, 3, 1, 1, Padding::same);
  const Conv2DGeometry narrow(4, 9, 9, W - 1, W, 3, 3, 1, 1, Padding::same);
  const Conv2DGeometry strided(4, 9, 9, W, W, 3, 3, 2, 2, Padding::same);
  const Conv2DGeometry five(4, 9, 9, W, W, 5, 5, 1, 1, Padding::same);
  Conv2DWorkspace<float> ws;
  CHECK(ws.algorithm() == Conv2DAlgorithm::automatic);
  for (KernelPass pass : {KernelPass::forward, KernelPass::backward_data, KernelPass::backward_weights}) {
    INFO(to_string(pass));
    CHECK(uses_winograd(wide, ws, pass));
    CHECK_FALSE(uses_winograd(narrow, ws, pass));
  }
  CHECK_FALSE(uses_winograd(strided, ws));
  CHECK_FALSE(uses_winograd(five, ws));
  ws.set_algorithm(Conv2DAlgorithm::winograd);
  CHECK(uses_winograd(narrow, ws));
  CHECK_FALSE(uses_winograd(strided, ws));
  ws.set_algorithm(Conv2DAlgorithm::im2col);
  CHECK_FALSE(uses_winograd(wide, ws));
  // The GEMM setting is the im2col kernels' only: Winograd still runs, on lamina's GEMM.
  ws.set_algorithm(Conv2DAlgorithm::winograd);
  ws.set_gemm(GemmKernel::eigen);
  CHECK(uses_winograd(wide, ws));
  CHECK(conv2d_choose(wide, ws, KernelPass::forward).gemm == GemmKernel::lamina);

  // conv2d_forward & co. with Winograd give the bits of the Winograd kernels.
  Rng rng(7);
  const auto x = random_values<float>(wide.input_size(), rng);
  const auto k = random_values<float>(wide.kernel_size(), rng);
  const auto b = random_values<float>(wide.F, rng);
  const auto dy = random_values<float>(wide.output_size(), rng);
  WinogradWorkspace<float> wws;
  const Passes<float> direct = run_winograd(wide, x, k, b, dy, wws);
  Conv2DWorkspace<float> auto_ws, im2col_ws;
  im2col_ws.set_algorithm(Conv2DAlgorithm::im2col);
  for (Conv2DWorkspace<float>* w : {&auto_ws, &im2col_ws}) {
    Passes<float> p{std::vector<float>(wide.output_size()), std::vector<float>(wide.input_size()),
                    std::vector<float>(wide.kernel_size()), std::vector<float>(wide.F)};
    conv2d_forward(wide, x.data(), k.data(), b.data(), p.output.data(), *w);
    conv2d_backward_data(wide, dy.data(), k.data(), p.grad_input.data(), *w);
    conv2d_backward_weights(wide, x.data(), dy.data(), p.grad_kernel.data(), p.grad_bias.data(), *w);
    const bool winograd = w == &auto_ws;
    INFO("algorithm " << to_string(w->algorithm()));
    CHECK(same_bits(p.output, direct.output) == winograd);
    CHECK(same_bits(p.grad_input, direct.grad_input) == winograd);
    CHECK(same_bits(p.grad_kernel, direct.grad_kernel) == winograd);
  }
}

TEST_CASE("The Winograd workspace does not grow in the steady state") {
  const Conv2DGeometry g(9, 14, 14, 32, 64, 3, 3, 1, 1, Padding::same);
  Rng rng(11);
  const auto x = random_values<float>(g.input_size(), rng);
  const auto k = random_values<float>(g.kernel_size(), rng);
  const auto b = random_values<float>(g.F, rng);
  const auto dy = random_values<float>(g.output_size(), rng);
  WinogradWorkspace<float> ws;
  run_winograd(g, x, k, b, dy, ws);
  const std::size_t grown = ws.capacity_bytes();
  CHECK(grown > 0);
  run_winograd(g, x, k, b, dy, ws);
  run_winograd(g.with_batch(3), x, k, b, dy, ws);  // smaller batch: reads a prefix of the buffers
  CHECK(ws.capacity_bytes() == grown);
}

TEST_CASE("Conv2D running Winograd passes the gradient checker, and fails it with a wrong kernel") {
  struct Case {
    std::size_t filters;
    Padding padding;
    Activation activation;
    Shape input;
  };
  const Case cases[] = {
      {4, Padding::same, Activation::none, Shape{2, 5, 7, 3}},
      {9, Padding::valid, Activation::none, Shape{2, 6, 5, 8}},
      {8, Padding::same, Activation::relu, Shape{2, 5, 5, 8}},
  };
  for (const Case& c : cases) {
    Conv2D<double> conv(c.filters, 3, 1, c.padding, c.activation);
    conv.set_algorithm(Conv2DAlgorithm::winograd);
    const GradCheckResult r = check_gradients(conv, c.input);
    INFO(r.report());
    CHECK(r.passed);
    CHECK(r.positions_checked > 0);
  }
  // The same checker on a Winograd input gradient computed with one kernel tap
  // dropped: it fails, at an input position (the parameter gradients are right).
  for (const Case& c : cases) {
    if (c.activation != Activation::none) continue;
    DroppedTapConv2D wrong(c.filters, c.padding);
    const GradCheckResult r = check_gradients(wrong, c.input);
    INFO(r.report());
    CHECK_FALSE(r.passed);
    CHECK(r.non_finite == 0);
    CHECK(r.worst.of == GradientOf::input);
    CHECK(r.max_error > 1e-2);
    GradCheckOptions parameters_only;
    parameters_only.check_input = false;
    DroppedTapConv2D again(c.filters, c.padding);
    CHECK(check_gradients(again, c.input, parameters_only).passed);
  }
}

TEST_CASE("predict() computes with the model's Conv2D algorithm") {
  // A Conv2D set to im2col must not predict with Winograd (its private copy
  // copies the setting), so predict's bits equal evaluation-mode forward's.
  Sequential<float> model(Shape{10, 10, 16}, 5);
  auto& conv = model.add<Conv2D>(16, 3, 1, Padding::same, Activation::relu);
  model.add<Flatten>();
  model.add<Dense>(3);
  model.build();
  Rng rng(3);
  Tensor<float> x(Shape{4, 10, 10, 16});
  for (float& v : x) v = static_cast<float>(rng.uniform(-1.0, 1.0));
  for (Conv2DAlgorithm a : {Conv2DAlgorithm::im2col, Conv2DAlgorithm::winograd}) {
    conv.set_algorithm(a);
    INFO("algorithm " << to_string(a));
    const Tensor<float> predicted = model.predict(x.view());
    const TensorView<const float> logits = model.forward(x.view(), Mode::eval);  // (4, 3)
    REQUIRE(logits.size() == predicted.size());
    std::vector<float> expected(logits.size());
    for (std::size_t i = 0; i < 4; ++i)
      SoftmaxCrossEntropy<float>::softmax_row(logits.data() + i * 3, expected.data() + i * 3, 3, -1);
    CHECK(std::memcmp(expected.data(), predicted.data(), predicted.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("A ReLU mask fused into the backward kernels gives the bits of activation_backward first") {
  // Winograd (both passes) and the direct kernels (backward weights): the
  // kernels read relu_output > 0 ? grad_output : 0 where they load the
  // gradient, which must equal masking the whole gradient first.
  struct Fused {
    Conv2DGeometry g;
    bool input_gradient;
  };
  constexpr std::size_t W = xsimd::batch<float>::size;
  const Fused cases[] = {
      {{5, 8, 8, 16, 32, 3, 3, 1, 1, Padding::same}, true},
      {{3, 9, 6, 17, 33, 3, 3, 1, 1, Padding::same}, true},
      {{20, 13, 11, 16, 16, 3, 3, 1, 1, Padding::valid}, true},
      {{37, 9, 8, 1, 2 * W, 3, 3, 1, 1, Padding::same}, false},  // one channel: the direct kernels
  };
  std::uint64_t seed = 1500;
  for (const Fused& c : cases) {
    const Conv2DGeometry& g = c.g;
    INFO(describe(g));
    Conv2DWorkspace<float> ws;
    ws.set_algorithm(g.C == 1 ? Conv2DAlgorithm::automatic : Conv2DAlgorithm::winograd);
    REQUIRE(conv2d_fuses_relu_backward(g, ws, c.input_gradient));
    Rng rng(seed++);
    const auto x = random_values<float>(g.input_size(), rng);
    const auto k = random_values<float>(g.kernel_size(), rng);
    const auto out = random_values<float>(g.output_size(), rng);  // about half of it masked
    const auto dy = random_values<float>(g.output_size(), rng);
    std::vector<float> masked(g.output_size());
    activation_backward(Activation::relu, out.data(), dy.data(), masked.data(), masked.size());

    Passes<float> first{std::vector<float>(g.output_size()), std::vector<float>(g.input_size()),
                        std::vector<float>(g.kernel_size()), std::vector<float>(g.F)};
    Passes<float> fused = first;
    conv2d_backward_weights(g, x.data(), masked.data(), first.grad_kernel.data(), first.grad_bias.data(), ws);
    conv2d_backward_weights(g, x.data(), dy.data(), fused.grad_kernel.data(), fused.grad_bias.data(), ws,
                            out.data());
    CHECK(same_bits(first.grad_kernel, fused.grad_kernel));
    CHECK(same_bits(first.grad_bias, fused.grad_bias));
    CHECK_FALSE(same_bits(first.grad_kernel, std::vector<float>(g.kernel_size())));
    if (c.input_gradient) {
      conv2d_backward_data(g, masked.data(), k.data(), first.grad_input.data(), ws);
      conv2d_backward_data(g, dy.data(), k.data(), fused.grad_input.data(), ws, out.data());
      CHECK(same_bits(first.grad_input, fused.grad_input));
    }
    // Unmasked, the results differ: the mask is really applied.
    std::vector<float> unmasked(g.kernel_size()), unmasked_bias(g.F);
    conv2d_backward_weights(g, x.data(), dy.data(), unmasked.data(), unmasked_bias.data(), ws);
    CHECK_FALSE(same_bits(unmasked, fused.grad_kernel));
  }

  // The im2col kernels refuse a mask, naming the function.
  const Conv2DGeometry g(2, 7, 7, 3, 5, 3, 3, 2, 2, Padding::same);
  Conv2DWorkspace<float> ws;
  REQUIRE_FALSE(conv2d_fuses_relu_backward(g, ws, false));
  std::vector<float> x(g.input_size()), k(g.kernel_size()), dy(g.output_size()), out(g.output_size());
  std::vector<float> dx(g.input_size()), dk(g.kernel_size());
  CHECK_THROWS_AS(conv2d_backward_data(g, dy.data(), k.data(), dx.data(), ws, out.data()), ArgumentError);
  CHECK_THROWS_WITH(conv2d_backward_weights(g, x.data(), dy.data(), dk.data(), static_cast<float*>(nullptr), ws,
                                            out.data()),
                    Catch::StartsWith("conv2d_backward_weights: a fused ReLU's output is only accepted"));
}
