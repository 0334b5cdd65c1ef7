// The Conv2D kernels: geometry (Keras padding), im2col/col2im (xsimd vs
// scalar, adjointness), fast vs reference forward/backward on odd shapes, and
// bit-identical results with 1 or 2 threads. These are the im2col kernels:
// every workspace here is set to Conv2DAlgorithm::im2col (Winograd's kernels
// have their own tests, test_winograd.cpp).
//
// TOLERANCE. Every value the kernels produce is a sum of n products (plus a
// bias). Whatever the order of the additions (Eigen's blocked GEMM, col2im,
// the chunk reduction), and with or without FMA, the rounding error of such a
// sum is at most gamma_n * sum|terms|, gamma_n ~ n u, u the unit roundoff of T
// (2^-24 for float, 2^-53 for double) [Higham, Accuracy and Stability of
// Numerical Algorithms, sec. 3.1]. That worst case needs every rounding to go
// the same way; with rounding errors of random sign it is
// lambda sqrt(n) u sum|terms|, exceeded with probability below
// 2 exp(-lambda^2 / 2) per value [Higham & Mary, SIAM J. Sci. Comput. 41(5),
// 2019]; lambda = 8 makes that 3e-14, and the seeds are fixed, so the tests are
// not flaky. The naive reference is accumulated in double and rounded once to
// T, so with mag = sum|terms| (the naive kernel run on |inputs|) we require
//     |fast - naive| <= 2 min(n + 2, 8 sqrt(n + 2)) u mag.
// This scales with the precision of T and the length of the sums: for a
// 5x5x33 forward, 460 u mag (3e-5 of sum|terms| in float, 5e-14 in double;
// the errors observed are 1 to 5 u mag), while a wrong index or a missing tap
// is off by about mag / n (1e-3 of it) or more. Where the kernels are exact
// (im2col copies; col2im adds in the same order as its scalar reference;
// integer-valued data) we require exact equality.
#include <lamina/kernels/conv2d.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <lamina/core/rng.hpp>
#include <lamina/core/threads.hpp>

#include "support.hpp"

using namespace lamina;
using namespace lamina::kernels;

namespace {

struct Case {
  std::size_t N, H, W, C, F, KH, KW, sh, sw;
  Padding padding;
  Conv2DGeometry geometry() const { return {N, H, W, C, F, KH, KW, sh, sw, padding}; }
};

std::ostream& operator<<(std::ostream& out, const Case& c) {
  return out << "input " << c.geometry().input_shape().to_string() << " kernel "
             << c.geometry().kernel_shape().to_string() << " strides (" << c.sh << ", " << c.sw
             << ") padding " << to_string(c.padding);
}

// Odd shapes: 1, 3, 17, 33 channels; 1x1, 3x3, 5x5 and non-square kernels;
// strides 1, 2, 3 and mixed; kernels larger than the input with 'same'; rows
// that 'valid' with stride 2 never reads; single filter.
const std::vector<Case> kSmallCases = {
    {3, 7, 7, 1, 4, 3, 3, 1, 1, Padding::same},
    {3, 7, 7, 1, 4, 3, 3, 1, 1, Padding::valid},
    {2, 9, 7, 3, 5, 3, 3, 2, 2, Padding::same},
    {2, 13, 9, 3, 2, 5, 5, 1, 1, Padding::valid},
    {3, 13, 13, 17, 6, 5, 5, 2, 2, Padding::same},
    {2, 9, 13, 33, 7, 1, 1, 1, 1, Padding::same},   // pointwise: no im2col
    {2, 9, 13, 33, 7, 1, 1, 1, 1, Padding::valid},  // pointwise
    {3, 7, 9, 17, 3, 1, 1, 2, 2, Padding::valid},   // 1x1 with stride: im2col
    {2, 8, 8, 3, 4, 3, 3, 2, 2, Padding::valid},    // last row/column unused
    {1, 3, 4, 2, 3, 5, 5, 1, 1, Padding::same},     // kernel larger than the image
    {2, 7, 7, 16, 33, 3, 3, 1, 2, Padding::same},   // mixed strides
    {2, 9, 9, 1, 1, 3, 3, 3, 3, Padding::same},     // stride == kernel, one filter
    {5, 7, 7, 3, 8, 3, 1, 1, 1, Padding::valid},    // 3x1 kernel
    {2, 5, 6, 3, 2, 1, 3, 1, 1, Padding::same},     // 1x3 kernel
    {2, 13, 7, 33, 5, 5, 5, 2, 1, Padding::same},
    {2, 9, 9, 3, 4, 4, 4, 2, 2, Padding::same},     // even kernel: asymmetric padding
};

// Batches of several chunks whose size is not a multiple of the chunk size
// (checked in the tests, for both float and double).
const std::vector<Case> kChunkedCases = {
    {37, 14, 14, 17, 8, 3, 3, 1, 1, Padding::same},
    {300, 28, 28, 1, 8, 3, 3, 1, 1, Padding::same},
    {50, 28, 28, 3, 5, 5, 5, 2, 2, Padding::valid},
};

template <class T>
std::vector<T> random_values(std::size_t n, Rng& rng) {
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(rng.uniform(-1.0, 1.0));
  return v;
}

// Small integers: every sum in the adjointness checks is then exact.
template <class T>
std::vector<T> random_integers(std::size_t n, Rng& rng) {
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(static_cast<int>(rng.below(9)) - 4);
  return v;
}

template <class T>
std::vector<double> absolute(const std::vector<T>& v) {
  std::vector<double> a(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) a[i] = std::fabs(double(v[i]));
  return a;
}

template <class T>
double dot(const std::vector<T>& a, const std::vector<T>& b) {
  REQUIRE(a.size() == b.size());
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) s += double(a[i]) * double(b[i]);
  return s;
}

template <class T>
constexpr double unit_roundoff() {
  return std::numeric_limits<T>::epsilon() / 2;
}

// |fast - ref| <= 2 min(n + 2, 8 sqrt(n + 2)) u mag, element by element (see the top of the file).
template <class T>
void check_close(const char* what, const std::vector<T>& fast, const std::vector<T>& ref,
                 const std::vector<double>& mag, std::size_t terms) {
  REQUIRE(fast.size() == ref.size());
  REQUIRE(mag.size() == ref.size());
  const double n = double(terms + 2);
  const double growth = std::min(n, 8.0 * std::sqrt(n));
  const double factor = 2.0 * growth * unit_roundoff<T>();
  std::size_t bad = 0, first_bad = 0;
  double worst_ratio = 0.0;  // error / (u mag), reported for information
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double err = std::fabs(double(fast[i]) - double(ref[i]));
    if (mag[i] > 0) worst_ratio = std::max(worst_ratio, err / (unit_roundoff<T>() * mag[i]));
    if (!(err <= factor * mag[i])) {
      if (bad++ == 0) first_bad = i;
    }
  }
  INFO(what << ": worst error " << worst_ratio << " u * sum|terms| (bound " << 2 * growth
            << "); first bad element " << first_bad << ": fast " << fast[first_bad] << " vs reference "
            << ref[first_bad]);
  CHECK(bad == 0);
}

const char* gemm_name(GemmKernel gemm) { return to_string(gemm); }

// Whether the forward pass of g runs the direct kernels with ws's settings.
bool uses_direct(const Conv2DGeometry& g, const Conv2DWorkspace<float>& ws) {
  return conv2d_choose<float>(g, ws.algorithm(), ws.gemm(), KernelPass::forward).algorithm ==
         Conv2DAlgorithm::direct;
}

template <class T>
void check_fast_against_reference(const Case& c, std::uint64_t seed, GemmKernel gemm = GemmKernel::automatic,
                              Conv2DAlgorithm algorithm = Conv2DAlgorithm::im2col) {
  INFO(c << " with T = " << (sizeof(T) == 4 ? "float" : "double") << ", GEMM " << gemm_name(gemm)
         << ", algorithm " << to_string(algorithm));
  const Conv2DGeometry g = c.geometry();
  Rng rng(seed);
  const auto input = random_values<T>(g.input_size(), rng);
  const auto kernel = random_values<T>(g.kernel_size(), rng);
  const auto bias = random_values<T>(g.F, rng);
  const auto grad_output = random_values<T>(g.output_size(), rng);
  Conv2DWorkspace<T> ws(algorithm, gemm);

  // Forward, with and without bias.
  {
    std::vector<T> fast(g.output_size(), T(7)), ref(g.output_size());
    conv2d_forward(g, input.data(), kernel.data(), bias.data(), fast.data(), ws);
    conv2d_forward_reference(g, input.data(), kernel.data(), bias.data(), ref.data());
    std::vector<double> mag(g.output_size());
    const auto abs_bias = absolute(bias);
    conv2d_forward_reference(g, absolute(input).data(), absolute(kernel).data(), abs_bias.data(), mag.data());
    check_close("forward", fast, ref, mag, g.patch_size() + 1);

    conv2d_forward(g, input.data(), kernel.data(), static_cast<const T*>(nullptr), fast.data(), ws);
    conv2d_forward_reference(g, input.data(), kernel.data(), static_cast<const T*>(nullptr), ref.data());
    conv2d_forward_reference(g, absolute(input).data(), absolute(kernel).data(),
                         static_cast<const double*>(nullptr), mag.data());
    check_close("forward without bias", fast, ref, mag, g.patch_size());

    // Fused ReLU: exactly the unfused result with v > 0 ? v : 0 applied after.
    std::vector<T> plain(g.output_size()), fused(g.output_size(), T(7));
    conv2d_forward(g, input.data(), kernel.data(), bias.data(), plain.data(), ws);
    conv2d_forward(g, input.data(), kernel.data(), bias.data(), fused.data(), ws, /*relu=*/true);
    std::size_t zeroed = 0;
    for (T& v : plain) {
      if (!(v > T(0))) ++zeroed;
      v = v > T(0) ? v : T(0);
    }
    CHECK(zeroed > 0);
    CHECK(std::memcmp(plain.data(), fused.data(), plain.size() * sizeof(T)) == 0);
  }
  // Backward data.
  {
    std::vector<T> fast(g.input_size(), T(7)), ref(g.input_size());
    conv2d_backward_data(g, grad_output.data(), kernel.data(), fast.data(), ws);
    conv2d_backward_data_reference(g, grad_output.data(), kernel.data(), ref.data());
    std::vector<double> mag(g.input_size());
    conv2d_backward_data_reference(g, absolute(grad_output).data(), absolute(kernel).data(), mag.data());
    check_close("backward data", fast, ref, mag, g.KH * g.KW * g.F);
  }
  // Backward weights, with and without the bias gradient.
  {
    std::vector<T> fast_k(g.kernel_size(), T(7)), fast_b(g.F, T(7));
    std::vector<T> ref_k(g.kernel_size()), ref_b(g.F);
    conv2d_backward_weights(g, input.data(), grad_output.data(), fast_k.data(), fast_b.data(), ws);
    conv2d_backward_weights_reference(g, input.data(), grad_output.data(), ref_k.data(), ref_b.data());
    std::vector<double> mag_k(g.kernel_size()), mag_b(g.F);
    conv2d_backward_weights_reference(g, absolute(input).data(), absolute(grad_output).data(),
                                  mag_k.data(), mag_b.data());
    const std::size_t terms = g.N * g.OH * g.OW;
    check_close("backward weights (kernel)", fast_k, ref_k, mag_k, terms);
    check_close("backward weights (bias)", fast_b, ref_b, mag_b, terms);

    std::vector<T> again_k(g.kernel_size(), T(7));
    conv2d_backward_weights(g, input.data(), grad_output.data(), again_k.data(),
                            static_cast<T*>(nullptr), ws);
    CHECK(std::memcmp(again_k.data(), fast_k.data(), fast_k.size() * sizeof(T)) == 0);
  }
}

template <class T>
void check_im2col_against_scalar(const Case& c, std::uint64_t seed) {
  INFO(c << " with T = " << (sizeof(T) == 4 ? "float" : "double"));
  const Conv2DGeometry g = c.geometry();
  Rng rng(seed);
  const auto input = random_values<T>(g.input_size(), rng);
  // The whole batch, and images [1, N) to exercise the offsets.
  for (std::size_t n_begin : {std::size_t(0), std::min<std::size_t>(1, g.N - 1)}) {
    const std::size_t rows = (g.N - n_begin) * g.pixels_per_image();
    std::vector<T> fast(rows * g.patch_size(), T(7)), ref(rows * g.patch_size(), T(-7));
    im2col(g, input.data(), n_begin, g.N, fast.data());
    im2col_reference(g, input.data(), n_begin, g.N, ref.data());
    CHECK(std::memcmp(fast.data(), ref.data(), fast.size() * sizeof(T)) == 0);

    // col2im adds in the same order as its reference: exact equality; images
    // outside [n_begin, N) keep their values.
    const auto columns = random_values<T>(rows * g.patch_size(), rng);
    std::vector<T> fast_grad(g.input_size(), T(3)), ref_grad(g.input_size(), T(3));
    col2im(g, columns.data(), n_begin, g.N, fast_grad.data());
    col2im_reference(g, columns.data(), n_begin, g.N, ref_grad.data());
    CHECK(std::memcmp(fast_grad.data(), ref_grad.data(), fast_grad.size() * sizeof(T)) == 0);
    const std::size_t untouched = n_begin * g.H * g.W * g.C;
    for (std::size_t i = 0; i < untouched; ++i) REQUIRE(fast_grad[i] == T(3));
  }
}

template <class T>
void check_adjointness(const Case& c, std::uint64_t seed) {
  INFO(c << " with T = " << (sizeof(T) == 4 ? "float" : "double"));
  const Conv2DGeometry g = c.geometry();
  Rng rng(seed);
  // <im2col(x), y> == <x, col2im(y)>, exactly: integer data make every sum exact.
  const auto x = random_integers<T>(g.input_size(), rng);
  const auto y = random_integers<T>(g.N * g.pixels_per_image() * g.patch_size(), rng);
  std::vector<T> columns(y.size()), back(x.size());
  im2col(g, x.data(), 0, g.N, columns.data());
  col2im(g, y.data(), 0, g.N, back.data());
  CHECK(dot(columns, y) == dot(x, back));

  // The same with real-valued data, to a tolerance of the dot products' rounding.
  const auto xr = random_values<T>(g.input_size(), rng);
  const auto yr = random_values<T>(y.size(), rng);
  im2col(g, xr.data(), 0, g.N, columns.data());
  col2im(g, yr.data(), 0, g.N, back.data());
  const double lhs = dot(columns, yr), rhs = dot(xr, back);
  double mag = 0.0;
  for (std::size_t i = 0; i < columns.size(); ++i) mag += std::fabs(double(columns[i]) * double(yr[i]));
  CHECK(std::fabs(lhs - rhs) <= 2.0 * double(g.KH * g.KW + 2) * unit_roundoff<T>() * mag);
}

// Runs all three fast kernels with `threads` threads.
template <class T>
struct Results {
  std::vector<T> output, grad_input, grad_kernel, grad_bias;
};

template <class T>
Results<T> run_fast(const Conv2DGeometry& g, const std::vector<T>& input, const std::vector<T>& kernel,
                    const std::vector<T>& bias, const std::vector<T>& grad_output,
                    Conv2DWorkspace<T>& ws) {
  Results<T> r{std::vector<T>(g.output_size()), std::vector<T>(g.input_size()),
               std::vector<T>(g.kernel_size()), std::vector<T>(g.F)};
  conv2d_forward(g, input.data(), kernel.data(), bias.data(), r.output.data(), ws);
  conv2d_backward_data(g, grad_output.data(), kernel.data(), r.grad_input.data(), ws);
  conv2d_backward_weights(g, input.data(), grad_output.data(), r.grad_kernel.data(), r.grad_bias.data(), ws);
  return r;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

template <class T>
void check_thread_count_invariance(const Case& c, std::uint64_t seed, GemmKernel gemm = GemmKernel::automatic,
                                   Conv2DAlgorithm algorithm = Conv2DAlgorithm::im2col) {
  INFO(c << " with T = " << (sizeof(T) == 4 ? "float" : "double") << ", GEMM " << gemm_name(gemm)
         << ", algorithm " << to_string(algorithm));
  const Conv2DGeometry g = c.geometry();
  const Conv2DChunking chunking = conv2d_chunking<T>(g);
  INFO("chunks " << chunking.chunks << " of " << chunking.images_per_chunk << " images");
  REQUIRE(chunking.chunks >= 3);
  Rng rng(seed);
  const auto input = random_values<T>(g.input_size(), rng);
  const auto kernel = random_values<T>(g.kernel_size(), rng);
  const auto bias = random_values<T>(g.F, rng);
  const auto grad_output = random_values<T>(g.output_size(), rng);

  const int saved = num_threads();
  Conv2DWorkspace<T> ws1(algorithm, gemm), ws2(algorithm, gemm);
  set_num_threads(1);
  const Results<T> one = run_fast(g, input, kernel, bias, grad_output, ws1);
  set_num_threads(2);
  const Results<T> two = run_fast(g, input, kernel, bias, grad_output, ws2);
  const Results<T> two_reused = run_fast(g, input, kernel, bias, grad_output, ws1);  // grown workspace
  set_num_threads(saved);

  CHECK(same_bits(one.output, two.output));
  CHECK(same_bits(one.grad_input, two.grad_input));
  CHECK(same_bits(one.grad_kernel, two.grad_kernel));
  CHECK(same_bits(one.grad_bias, two.grad_bias));
  CHECK(same_bits(one.output, two_reused.output));
  CHECK(same_bits(one.grad_input, two_reused.grad_input));
  CHECK(same_bits(one.grad_kernel, two_reused.grad_kernel));
  CHECK(same_bits(one.grad_bias, two_reused.grad_bias));
}

}  // namespace

TEST_CASE("Conv2DGeometry computes Keras output sizes and padding") {
  struct Expect {
    std::size_t H, W, KH, KW, sh, sw;
    Padding padding;
    std::size_t OH, OW, pad_top, pad_left;
  };
  // TensorFlow: same -> OH = ceil(H / s), total = max((OH - 1) s + K - H, 0), top = total / 2.
  const Expect cases[] = {
      {28, 28, 3, 3, 1, 1, Padding::same, 28, 28, 1, 1},
      {28, 28, 3, 3, 1, 1, Padding::valid, 26, 26, 0, 0},
      {7, 7, 3, 3, 2, 2, Padding::same, 4, 4, 1, 1},    // total 2
      {8, 8, 3, 3, 2, 2, Padding::same, 4, 4, 0, 0},    // total 1: all at the bottom/right
      {13, 9, 5, 5, 2, 2, Padding::valid, 5, 3, 0, 0},
      {9, 9, 1, 1, 2, 2, Padding::same, 5, 5, 0, 0},
      {2, 2, 5, 5, 1, 1, Padding::same, 2, 2, 2, 2},    // total 4
      {7, 10, 4, 2, 3, 1, Padding::same, 3, 10, 1, 0},  // totals 3 and 1
      {6, 6, 2, 2, 3, 3, Padding::same, 2, 2, 0, 0},    // stride > kernel: total 0
      {28, 28, 2, 2, 2, 2, Padding::valid, 14, 14, 0, 0},
  };
  for (const Expect& e : cases) {
    const Conv2DGeometry g(4, e.H, e.W, 3, 8, e.KH, e.KW, e.sh, e.sw, e.padding);
    INFO("input (" << e.H << ", " << e.W << ") kernel (" << e.KH << ", " << e.KW << ") strides ("
                   << e.sh << ", " << e.sw << ") " << to_string(e.padding));
    CHECK(g.OH == e.OH);
    CHECK(g.OW == e.OW);
    CHECK(g.pad_top == e.pad_top);
    CHECK(g.pad_left == e.pad_left);
    CHECK(g.output_shape() == (Shape{4, e.OH, e.OW, 8}));
    CHECK(g.with_batch(9).output_shape() == (Shape{9, e.OH, e.OW, 8}));
  }
}

TEST_CASE("Conv2DGeometry rejects bad geometry, naming the shapes") {
  CHECK_THROWS_AS(Conv2DGeometry(2, 3, 3, 3, 8, 5, 5, 1, 1, Padding::valid), ShapeError);
  CHECK_THROWS_WITH(Conv2DGeometry(2, 3, 3, 3, 8, 5, 5, 1, 1, Padding::valid),
                    Catch::Contains("kernel (5, 5, 3, 8)") && Catch::Contains("input (2, 3, 3, 3)") &&
                        Catch::Contains("valid"));
  CHECK_THROWS_WITH(Conv2DGeometry(2, 9, 9, 3, 8, 3, 3, 0, 1, Padding::same),
                    Catch::Contains("strides") && Catch::Contains("(0, 1)") &&
                        Catch::Contains("(2, 9, 9, 3)") && Catch::Contains("(3, 3, 3, 8)"));
  CHECK_THROWS_WITH(Conv2DGeometry(2, 9, 9, 0, 8, 3, 3, 1, 1, Padding::same),
                    Catch::Contains("input (2, 9, 9, 0)"));
  CHECK_THROWS_WITH(Conv2DGeometry(2, 9, 9, 3, 0, 3, 3, 1, 1, Padding::same),
                    Catch::Contains("kernel (3, 3, 3, 0)"));
  CHECK_THROWS_WITH(Conv2DGeometry(0, 9, 9, 3, 8, 3, 3, 1, 1, Padding::same),
                    Catch::Contains("input (0, 9, 9, 3)"));
  // A kernel as large as the input is fine with 'valid', and anything is with 'same'.
  CHECK(Conv2DGeometry(1, 5, 5, 1, 1, 5, 5, 1, 1, Padding::valid).OH == 1);
  CHECK(Conv2DGeometry(1, 3, 3, 1, 1, 5, 5, 1, 1, Padding::same).OH == 3);
}

TEST_CASE("Checked Conv2D overloads name the shape that does not fit") {
  const Conv2DGeometry g(2, 7, 7, 3, 4, 3, 3, 1, 1, Padding::same);
  Tensor<float> input(g.input_shape()), kernel(g.kernel_shape()), bias(Shape{4});
  Tensor<float> output(g.output_shape()), wrong(Shape{2, 5, 5, 4});
  Conv2DWorkspace<float> ws(Conv2DAlgorithm::im2col, GemmKernel::automatic);
  CHECK_NOTHROW(conv2d_forward(g, input.cview(), kernel.cview(), bias.cview(), output.view(), ws));
  CHECK_THROWS_WITH(conv2d_forward(g, input.cview(), kernel.cview(), bias.cview(), wrong.view(), ws),
                    Catch::Contains("output must be (2, 7, 7, 4)") && Catch::Contains("got (2, 5, 5, 4)"));
  CHECK_THROWS_WITH(conv2d_backward_data(g, wrong.cview(), kernel.cview(), input.view(), ws),
                    Catch::Contains("grad_output must be (2, 7, 7, 4)"));
  Tensor<float> grad_kernel(Shape{3, 3, 4, 3});
  CHECK_THROWS_WITH(
      conv2d_backward_weights(g, input.cview(), output.cview(), grad_kernel.view(), bias.view(), ws),
      Catch::Contains("grad_kernel must be (3, 3, 3, 4)") && Catch::Contains("got (3, 3, 4, 3)"));
  // No bias: default-constructed (null) views.
  CHECK_NOTHROW(conv2d_forward(g, input.cview(), kernel.cview(), TensorView<const float>(),
                               output.view(), ws));
  CHECK_NOTHROW(conv2d_backward_weights(g, input.cview(), output.cview(), Tensor<float>(g.kernel_shape()).view(),
                                        TensorView<float>(), ws));
}

TEST_CASE("Naive Conv2D matches hand-computed values, Keras padding included") {
  // Input 3x3 holding 1..9, one channel.
  std::vector<double> input{1, 2, 3, 4, 5, 6, 7, 8, 9};
  {
    // 2x2 kernel of ones, 'valid': the four 2x2 block sums.
    const Conv2DGeometry g(1, 3, 3, 1, 1, 2, 2, 1, 1, Padding::valid);
    std::vector<double> kernel(4, 1.0), out(4);
    conv2d_forward_reference(g, input.data(), kernel.data(), static_cast<const double*>(nullptr), out.data());
    CHECK(out == std::vector<double>{12, 16, 24, 28});
  }
  {
    // 2x2 'same': total padding 1, all of it after the image (bottom/right).
    const Conv2DGeometry g(1, 3, 3, 1, 1, 2, 2, 1, 1, Padding::same);
    std::vector<double> kernel(4, 1.0), out(9), bias{0.5};
    conv2d_forward_reference(g, input.data(), kernel.data(), bias.data(), out.data());
    CHECK(out == std::vector<double>{12.5, 16.5, 9.5, 24.5, 28.5, 15.5, 15.5, 17.5, 9.5});
  }
  {
    // 3x3 'same' with stride 2: OH = 2, total padding 2, one row/column on top/left.
    const Conv2DGeometry g(1, 3, 3, 1, 1, 3, 3, 2, 2, Padding::same);
    std::vector<double> kernel(9, 1.0), out(4);
    conv2d_forward_reference(g, input.data(), kernel.data(), static_cast<const double*>(nullptr), out.data());
    CHECK(out == std::vector<double>{12, 16, 24, 28});
  }
  {
    // Two channels, two filters: kernel[0, 0, c, f] picks channel c scaled by f + 1.
    const Conv2DGeometry g(1, 1, 2, 2, 2, 1, 1, 1, 1, Padding::valid);
    std::vector<double> in2{1, 10, 2, 20}, kernel{1, 0, 0, 2}, out(4);  // (C, F) = [[1, 0], [0, 2]]
    conv2d_forward_reference(g, in2.data(), kernel.data(), static_cast<const double*>(nullptr), out.data());
    CHECK(out == std::vector<double>{1, 20, 2, 40});
  }
}

TEST_CASE("Naive Conv2D backward passes are the adjoints of the naive forward") {
  // <conv(x, k), g> == <x, backward_data(g, k)> == <k, backward_weights(x, g)>,
  // exactly, on integer data; and the bias gradient is the sum of g.
  for (const Case& c : kSmallCases) {
    INFO(c);
    const Conv2DGeometry g = c.geometry();
    Rng rng(11);
    const auto x = random_integers<double>(g.input_size(), rng);
    const auto k = random_integers<double>(g.kernel_size(), rng);
    const auto go = random_integers<double>(g.output_size(), rng);
    std::vector<double> y(g.output_size()), gx(g.input_size()), gk(g.kernel_size()), gb(g.F);
    conv2d_forward_reference(g, x.data(), k.data(), static_cast<const double*>(nullptr), y.data());
    conv2d_backward_data_reference(g, go.data(), k.data(), gx.data());
    conv2d_backward_weights_reference(g, x.data(), go.data(), gk.data(), gb.data());
    const double forward = dot(y, go);
    CHECK(dot(x, gx) == forward);
    CHECK(dot(k, gk) == forward);
    for (std::size_t f = 0; f < g.F; ++f) {
      double s = 0;
      for (std::size_t p = 0; p < g.N * g.OH * g.OW; ++p) s += go[p * g.F + f];
      CHECK(gb[f] == s);
    }
  }
}

TEST_CASE("xsimd im2col and col2im match the scalar references exactly") {
  std::uint64_t seed = 100;
  for (const Case& c : kSmallCases) {
    check_im2col_against_scalar<float>(c, seed++);
    check_im2col_against_scalar<double>(c, seed++);
  }
  for (const Case& c : kChunkedCases) check_im2col_against_scalar<float>(c, seed++);
}

TEST_CASE("col2im is the adjoint of im2col") {
  std::uint64_t seed = 200;
  for (const Case& c : kSmallCases) {
    check_adjointness<float>(c, seed++);
    check_adjointness<double>(c, seed++);
  }
}

TEST_CASE("Fast Conv2D matches the naive reference on odd shapes (float and double)") {
  for (GemmKernel gemm : {GemmKernel::automatic, GemmKernel::lamina, GemmKernel::eigen}) {
    std::uint64_t seed = 300;
    for (const Case& c : kSmallCases) {
      check_fast_against_reference<float>(c, seed++, gemm);
      check_fast_against_reference<double>(c, seed++, gemm);
    }
  }
}

TEST_CASE("Fast Conv2D matches the naive reference over several uneven chunks") {
  std::uint64_t seed = 400;
  for (const Case& c : kChunkedCases) {
    for (const Conv2DChunking chunking :
         {conv2d_chunking<float>(c.geometry()), conv2d_chunking<double>(c.geometry())}) {
      INFO(c << ": " << chunking.chunks << " chunks of " << chunking.images_per_chunk);
      CHECK(chunking.chunks >= 3);
      CHECK(c.N % chunking.images_per_chunk != 0);
    }
    check_fast_against_reference<float>(c, seed++);
    check_fast_against_reference<double>(c, seed++);
    check_fast_against_reference<float>(c, seed++, GemmKernel::eigen);
  }
}

TEST_CASE("Conv2D chunking depends on the shape only and covers the batch") {
  const Conv2DGeometry g(128, 28, 28, 32, 32, 3, 3, 1, 1, Padding::same);
  const int saved = num_threads();
  set_num_threads(1);
  const Conv2DChunking one = conv2d_chunking<float>(g);
  set_num_threads(2);
  const Conv2DChunking two = conv2d_chunking<float>(g);
  set_num_threads(saved);
  CHECK(one.images_per_chunk == two.images_per_chunk);
  CHECK(one.chunks == two.chunks);
  CHECK(one.chunks > 1);
  CHECK(one.chunks <= kConv2DMaxChunks);
  CHECK(one.end(one.chunks - 1, g.N) == g.N);
  CHECK(one.begin(one.chunks - 1) < g.N);
  // A huge kernel gradient caps the number of partials.
  const Conv2DGeometry wide(64, 7, 7, 512, 512, 3, 3, 1, 1, Padding::same);
  const Conv2DChunking w = conv2d_chunking<float>(wide);
  CHECK(w.chunks * (wide.kernel_size() + wide.F) * sizeof(float) <= kConv2DPartialBytes);
  // Tiny images still give enough chunks for 16 threads.
  const Conv2DGeometry tiny(128, 28, 28, 1, 32, 3, 3, 1, 1, Padding::same);
  CHECK(conv2d_chunking<float>(tiny).chunks >= kConv2DMinChunks);
  CHECK(conv2d_chunking<float>(tiny.with_batch(5)).chunks == 5);
  // One image: one chunk.
  CHECK(conv2d_chunking<double>(g.with_batch(1)).chunks == 1);
}

TEST_CASE("Fast Conv2D gives the same bits with 1 thread or 2") {
  std::uint64_t seed = 500;
  for (const Case& c : kChunkedCases) {
    check_thread_count_invariance<float>(c, seed++);
    check_thread_count_invariance<double>(c, seed++);
    check_thread_count_invariance<float>(c, seed++, GemmKernel::eigen);
  }
}

TEST_CASE("The implicit-im2col forward gives the bits of lamina's GEMM on an im2col buffer") {
  // conv2d_forward (lamina's GEMM) reads the images directly, kernel row by
  // kernel row; every element must still be the GEMM's one chain of FMAs.
  std::uint64_t seed = 700;
  for (const Case& c : kSmallCases) {
    INFO(c);
    const Conv2DGeometry g = c.geometry();
    Rng rng(seed++);
    const auto input = random_values<float>(g.input_size(), rng);
    const auto kernel = random_values<float>(g.kernel_size(), rng);
    const auto bias = random_values<float>(g.F, rng);
    Conv2DWorkspace<float> ws(Conv2DAlgorithm::im2col, GemmKernel::automatic);
    std::vector<float> fast(g.output_size(), 7.0f), columns(g.N * g.pixels_per_image() * g.patch_size());
    std::vector<float> via_gemm(g.output_size(), -7.0f);
    for (bool relu : {false, true}) {
      conv2d_forward(g, input.data(), kernel.data(), bias.data(), fast.data(), ws, relu);
      im2col(g, input.data(), 0, g.N, columns.data());
      GemmEpilogue<float> e;
      e.bias = bias.data();
      e.relu = relu;
      gemm(g.N * g.pixels_per_image(), g.F, g.patch_size(), columns.data(), g.patch_size(), false, kernel.data(),
           g.F, false, via_gemm.data(), g.F, e);
      CHECK(std::memcmp(fast.data(), via_gemm.data(), fast.size() * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("Fast Conv2D (lamina's GEMM) gives an image the same bits in any batch") {
  // Forward and backward data compute every value with one FMA chain whose
  // order depends on the geometry only (kernels/gemm.hpp), so an image's
  // output and input gradient do not depend on the batch it comes in, nor on
  // where the chunks cut it: predict(x, 1000) and predict(x, 7) agree.
  CHECK(conv2d_choose<float>(kChunkedCases[0].geometry(), Conv2DAlgorithm::im2col, GemmKernel::automatic, KernelPass::backward_data).gemm == GemmKernel::lamina);
  CHECK(conv2d_choose<float>(kChunkedCases[1].geometry(), Conv2DAlgorithm::im2col, GemmKernel::automatic, KernelPass::backward_data).gemm == GemmKernel::eigen);
  std::uint64_t seed = 600;
  for (const Case& c : kChunkedCases) {
    INFO(c);
    const Conv2DGeometry g = c.geometry();
    Rng rng(seed++);
    const auto input = random_values<float>(g.input_size(), rng);
    const auto kernel = random_values<float>(g.kernel_size(), rng);
    const auto bias = random_values<float>(g.F, rng);
    const auto grad_output = random_values<float>(g.output_size(), rng);
    Conv2DWorkspace<float> ws(Conv2DAlgorithm::im2col, GemmKernel::automatic);
    std::vector<float> output(g.output_size()), grad_input(g.input_size());
    conv2d_forward(g, input.data(), kernel.data(), bias.data(), output.data(), ws, true);
    conv2d_backward_data(g, grad_output.data(), kernel.data(), grad_input.data(), ws);
    // The same images in batches of 7 (and a last, shorter one), and one by one.
    for (std::size_t split : {std::size_t(7), std::size_t(1)}) {
      INFO("batches of " << split);
      bool same_out = true, same_grad = true;
      for (std::size_t n0 = 0; n0 < g.N; n0 += split) {
        const Conv2DGeometry part = g.with_batch(std::min(split, g.N - n0));
        std::vector<float> out(part.output_size()), gin(part.input_size());
        conv2d_forward(part, input.data() + n0 * g.H * g.W * g.C, kernel.data(), bias.data(), out.data(), ws,
                       true);
        conv2d_backward_data(part, grad_output.data() + n0 * g.OH * g.OW * g.F, kernel.data(), gin.data(), ws);
        same_out = same_out && std::memcmp(out.data(), output.data() + n0 * g.OH * g.OW * g.F,
                                           out.size() * sizeof(float)) == 0;
        same_grad = same_grad && std::memcmp(gin.data(), grad_input.data() + n0 * g.H * g.W * g.C,
                                             gin.size() * sizeof(float)) == 0;
      }
      CHECK(same_out);
      // Backward data runs Eigen's GEMM when K pads badly (K = 9 here); only
      // lamina's gives this guarantee.
      if (conv2d_choose<float>(g, Conv2DAlgorithm::im2col, GemmKernel::automatic, KernelPass::backward_data).gemm == GemmKernel::lamina) CHECK(same_grad);
    }
  }
}

TEST_CASE("Conv2DWorkspace does not grow in the steady state") {
  const Conv2DGeometry g(37, 28, 28, 17, 8, 3, 3, 1, 1, Padding::same);
  Rng rng(7);
  const auto input = random_values<float>(g.input_size(), rng);
  const auto kernel = random_values<float>(g.kernel_size(), rng);
  const auto bias = random_values<float>(g.F, rng);
  const auto grad_output = random_values<float>(g.output_size(), rng);
  Conv2DWorkspace<float> ws(Conv2DAlgorithm::im2col, GemmKernel::automatic);
  ws.reserve(g);
  const std::size_t reserved = ws.capacity_bytes();
  CHECK(reserved > 0);
  const float* columns = ws.columns(0);
  const float* partials = ws.partial(0);
  const Results<float> first = run_fast(g, input, kernel, bias, grad_output, ws);
  const Results<float> second = run_fast(g, input, kernel, bias, grad_output, ws);
  CHECK(ws.capacity_bytes() == reserved);
  CHECK(ws.columns(0) == columns);
  CHECK(ws.partial(0) == partials);
  CHECK(same_bits(first.grad_kernel, second.grad_kernel));
  // A smaller batch reuses the same buffers.
  const Conv2DGeometry small = g.with_batch(5);
  std::vector<float> out(small.output_size());
  conv2d_forward(small, input.data(), kernel.data(), bias.data(), out.data(), ws);
  CHECK(ws.capacity_bytes() == reserved);
  CHECK(ws.columns(0) == columns);
}

TEST_CASE("Fast Conv2D called from the caller's own parallel region runs serially and agrees") {
  // parallel_for never nests: inside an enclosing parallel region each call
  // runs its chunks on the calling thread, with that thread's own workspace.
  const Conv2DGeometry g(37, 14, 14, 17, 8, 3, 3, 1, 1, Padding::same);
  Rng rng(9);
  const auto input = random_values<float>(g.input_size(), rng);
  const auto kernel = random_values<float>(g.kernel_size(), rng);
  const auto bias = random_values<float>(g.F, rng);
  const auto grad_output = random_values<float>(g.output_size(), rng);
  Conv2DWorkspace<float> ws(Conv2DAlgorithm::im2col, GemmKernel::automatic);
  const Results<float> outside = run_fast(g, input, kernel, bias, grad_output, ws);
  std::vector<Results<float>> inside(2);
#if defined(_OPENMP)
#pragma omp parallel num_threads(2)
  {
    const int t = omp_get_thread_num();
    if (t < 2) {
      Conv2DWorkspace<float> own(Conv2DAlgorithm::im2col, GemmKernel::automatic);
      inside[static_cast<std::size_t>(t)] = run_fast(g, input, kernel, bias, grad_output, own);
    }
  }
#else
  for (auto& r : inside) r = run_fast(g, input, kernel, bias, grad_output, ws);
#endif
  for (const auto& r : inside) {
    CHECK(same_bits(r.output, outside.output));
    CHECK(same_bits(r.grad_input, outside.grad_input));
    CHECK(same_bits(r.grad_kernel, outside.grad_kernel));
    CHECK(same_bits(r.grad_bias, outside.grad_bias));
  }
}

// One-channel 3x3 layers with F a multiple of the batch size: the direct
// kernels (forward, backward weights; backward data stays im2col): odd sizes,
// strides 1 to 4 (mixed too), both paddings, one and several filter panels.
TEST_CASE("The direct kernels of one-channel 3x3 layers match the naive reference, with 1 thread or 2") {
  constexpr std::size_t Wf = xsimd::batch<float>::size, Wd = xsimd::batch<double>::size;
  const std::vector<Case> float_cases = {
      {3, 7, 7, 1, Wf, 3, 3, 1, 1, Padding::same},       {3, 9, 8, 1, 3 * Wf, 3, 3, 2, 2, Padding::valid},
      {2, 28, 28, 1, 2 * Wf, 3, 3, 1, 1, Padding::same}, {2, 28, 28, 1, 4 * Wf, 3, 3, 4, 4, Padding::valid},
      {4, 3, 3, 1, 2 * Wf, 3, 3, 1, 3, Padding::same},   {2, 5, 11, 1, Wf, 3, 3, 3, 1, Padding::same},
  };
  const std::vector<Case> double_cases = {
      {3, 7, 7, 1, Wd, 3, 3, 1, 1, Padding::same},
      {3, 9, 8, 1, 3 * Wd, 3, 3, 2, 2, Padding::valid},
  };
  std::uint64_t seed = 1300;
  for (const Case& c : float_cases) {
    Conv2DWorkspace<float> ws;
    REQUIRE(uses_direct(c.geometry(), ws));
    check_fast_against_reference<float>(c, seed++, GemmKernel::automatic, Conv2DAlgorithm::automatic);
  }
  for (const Case& c : double_cases) check_fast_against_reference<double>(c, seed++, GemmKernel::automatic, Conv2DAlgorithm::automatic);
  // Several chunks (300 images), so that the partials' reduction runs.
  const Case chunked{300, 28, 28, 1, 2 * Wf, 3, 3, 1, 1, Padding::same};
  check_fast_against_reference<float>(chunked, seed++, GemmKernel::automatic, Conv2DAlgorithm::automatic);
  check_thread_count_invariance<float>(chunked, seed++, GemmKernel::automatic, Conv2DAlgorithm::automatic);

  // Not taken: F not a multiple of the batch size, two channels, a 5x5
  // kernel, or the im2col algorithm (the direct kernels run their own loops,
  // whatever the GEMM setting).
  Conv2DWorkspace<float> ws;
  CHECK_FALSE(uses_direct(Conv2DGeometry(2, 7, 7, 1, Wf + 1, 3, 3, 1, 1, Padding::same), ws));
  CHECK_FALSE(uses_direct(Conv2DGeometry(2, 7, 7, 2, Wf, 3, 3, 1, 1, Padding::same), ws));
  CHECK_FALSE(uses_direct(Conv2DGeometry(2, 7, 7, 1, Wf, 5, 5, 1, 1, Padding::same), ws));
  ws.set_algorithm(Conv2DAlgorithm::im2col);
  CHECK_FALSE(uses_direct(Conv2DGeometry(2, 7, 7, 1, Wf, 3, 3, 1, 1, Padding::same), ws));
}
