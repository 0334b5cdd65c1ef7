// Conformance of the Conv2D kernels (kernels/conv2d.hpp): every algorithm
// setting (automatic, im2col, winograd, direct) with every GEMM setting
// (automatic, lamina, eigen), in float and double, on a table of odd
// geometries, for the three passes, against the references of
// kernels/conv2d_reference.hpp. Also: conv2d_choose names the kernel that
// really ran (the dispatcher's result has the bits of that kernel called
// directly, and the choice follows the rule written at the top of
// kernels/conv2d.hpp); the same bits with 1 thread or 2; and an image's
// forward output and input gradient have the same bits alone as in its batch,
// wherever the kernels promise it. (The bits tell Winograd, lamina's GEMM and
// Eigen's apart, but not the direct kernels from im2col on lamina's GEMM: both
// compute each value as one FMA chain in tap order, so they agree bit for bit.
// There the documented rule is the check.)
//
// TOLERANCE. Every value is a sum of n products (plus a bias), n = KH*KW*C
// (forward), KH*KW*F (backward data) or N*OH*OW (backward weights, kernel and
// bias). With mag = the reference run on |operands| (sum |terms|, every term
// counted, the bias too) and u the unit roundoff of T, a result must satisfy
//     |fast - reference| <= growth * sum_rounding_bound(n) * u * mag
// (tests/support.hpp: sum_rounding_bound(n) = 2 min(n + 2, 8 sqrt(n + 2)),
// Higham's gamma_n and its probabilistic sqrt(n) form). growth is 1 for the
// im2col and direct kernels, whose every value is one sum of the products in
// some order. It is kWinogradGrowth = 36 for the output, input gradient and
// kernel gradient of the Winograd kernels, the bound tests/test_winograd.cpp
// derives (their transforms make a transformed product up to 16 * 9/4 times
// the products it stands for). Winograd's bias gradient is a plain column sum
// of grad_output (kernels/winograd.hpp), so it gets growth 1.
//
// THE BOUND CAN FAIL. For each pass the reference is run again with one term
// of one element dropped: the element with the largest mag (the most terms),
// and its largest term, removed by zeroing the one operand value it reads
// (each such value enters that element exactly once). Every kernel's result
// must then be outside its bound at that element. Dropping the largest of n
// terms changes a value by about 4 mag / n (|x y| of uniform x, y in [-1, 1]
// averages 1/4, the largest is near 1), against a bound of about
// 16 growth sqrt(n) u mag, so the check holds while n^(3/2) < 1 / (4 growth u):
// in float about 26000 products for the plain bound and 2400 for Winograd's.
// The batches of 300 with a 3x3 stride-1 kernel (which Winograd can run, and
// does when asked) therefore have images of 6 or 3 output pixels: their
// kernel gradients sum N*OH*OW products.
#include <lamina/kernels/conv2d.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <xsimd/xsimd.hpp>

#include <lamina/core/rng.hpp>
#include <lamina/core/threads.hpp>

#include "support.hpp"

using namespace lamina;
using namespace lamina::kernels;
using lamina_test::absolute;
using lamina_test::random_values;
using lamina_test::same_bits;
using lamina_test::sum_rounding_bound;
using lamina_test::unit_roundoff;

namespace {

/// The factor of Winograd's bound over the plain one (tests/test_winograd.cpp).
constexpr double kWinogradGrowth = 36.0;

/// A channel or filter count relative to L = xsimd::batch<T>::size.
enum class Lanes { one, below, above, twice };  // 1, L - 1, L + 1, 2 L

std::size_t channels(Lanes c, std::size_t L) {
  switch (c) {
    case Lanes::one: return 1;
    case Lanes::below: return std::max<std::size_t>(L - 1, 1);
    case Lanes::above: return L + 1;
    case Lanes::twice: return 2 * L;
  }
  return 0;
}

struct Case {
  std::size_t N, H, W;
  Lanes C, F;
  std::size_t KH, KW, sh, sw;
  Padding padding;
  template <class T>
  Conv2DGeometry geometry() const {
    constexpr std::size_t L = xsimd::batch<T>::size;
    return {N, H, W, channels(C, L), channels(F, L), KH, KW, sh, sw, padding};
  }
};

// Image sizes are never multiples of the SIMD width (8 or 16 with AVX-512,
// 4 or 8 with AVX2).
const std::vector<Case> kCases = {
    // 3x3, stride 1, one channel: the direct kernels where F is a multiple of L
    // (automatic, direct), Winograd when asked for, im2col otherwise.
    {1, 7, 9, Lanes::one, Lanes::twice, 3, 3, 1, 1, Padding::same},
    {3, 7, 9, Lanes::one, Lanes::above, 3, 3, 1, 1, Padding::valid},
    {3, 5, 11, Lanes::one, Lanes::one, 3, 3, 1, 1, Padding::same},
    // 3x3, stride 1, C and F >= L: Winograd under automatic; the 29x27 images
    // are 210 tiles each, more than one Winograd block.
    {3, 9, 7, Lanes::above, Lanes::twice, 3, 3, 1, 1, Padding::same},
    {2, 29, 27, Lanes::twice, Lanes::twice, 3, 3, 1, 1, Padding::same},
    // C or F below L: Winograd only when asked for.
    {3, 6, 5, Lanes::below, Lanes::above, 3, 3, 1, 1, Padding::valid},
    {3, 5, 7, Lanes::twice, Lanes::one, 3, 3, 1, 1, Padding::same},
    // 3x3 with strides: never Winograd; the direct kernels for one channel.
    {1, 9, 7, Lanes::one, Lanes::twice, 3, 3, 2, 2, Padding::valid},
    {3, 7, 9, Lanes::twice, Lanes::below, 3, 3, 2, 2, Padding::same},
    {3, 7, 10, Lanes::above, Lanes::above, 3, 3, 1, 2, Padding::same},  // mixed strides
    // 5x5.
    {3, 9, 11, Lanes::below, Lanes::twice, 5, 5, 1, 1, Padding::same},
    {3, 13, 9, Lanes::above, Lanes::below, 5, 5, 2, 2, Padding::valid},
    {1, 3, 2, Lanes::twice, Lanes::twice, 5, 5, 1, 1, Padding::same},  // kernel larger than the image
    // 1x1: pointwise (no im2col) with stride 1, im2col with stride 2.
    {3, 7, 9, Lanes::twice, Lanes::above, 1, 1, 1, 1, Padding::same},
    {1, 7, 9, Lanes::above, Lanes::one, 1, 1, 2, 2, Padding::valid},
    // 3x2 ('same': the one column of padding on the right).
    {3, 7, 9, Lanes::below, Lanes::twice, 3, 2, 1, 1, Padding::same},
    {3, 9, 7, Lanes::one, Lanes::above, 3, 2, 2, 2, Padding::valid},
    // Batches of 300: several chunks, the last one shorter (see THE BOUND CAN
    // FAIL for the tiny images of the 3x3 stride-1 ones).
    {300, 2, 3, Lanes::above, Lanes::twice, 3, 3, 1, 1, Padding::same},  // Winograd
    {300, 3, 5, Lanes::one, Lanes::twice, 3, 3, 1, 1, Padding::valid},   // direct
    {300, 9, 13, Lanes::one, Lanes::twice, 3, 3, 2, 2, Padding::same},   // direct, strided
    {300, 5, 3, Lanes::below, Lanes::above, 1, 1, 1, 1, Padding::valid},  // pointwise
    {300, 7, 5, Lanes::above, Lanes::one, 3, 2, 2, 2, Padding::same},
    {300, 6, 5, Lanes::one, Lanes::below, 5, 5, 2, 2, Padding::same},
};

const Conv2DAlgorithm kAlgorithms[] = {Conv2DAlgorithm::automatic, Conv2DAlgorithm::im2col,
                                       Conv2DAlgorithm::winograd, Conv2DAlgorithm::direct};
const GemmKernel kGemms[] = {GemmKernel::automatic, GemmKernel::lamina, GemmKernel::eigen};
const KernelPass kPasses[] = {KernelPass::forward, KernelPass::backward_data, KernelPass::backward_weights};


template <class T>
const char* dtype() {
  return sizeof(T) == sizeof(float) ? "float" : "double";
}

std::string describe(const Conv2DGeometry& g) {
  std::ostringstream out;
  out << "input " << g.input_shape().to_string() << " kernel " << g.kernel_shape().to_string() << " strides ("
      << g.sh << ", " << g.sw << ") padding " << to_string(g.padding);
  return out.str();
}

std::string describe(Conv2DChoice c) {
  return std::string(to_string(c.algorithm)) +
         (c.algorithm == Conv2DAlgorithm::im2col ? std::string(" + ") + to_string(c.gemm) + "'s GEMM" : "");
}

bool same_choice(Conv2DChoice a, Conv2DChoice b) { return a.algorithm == b.algorithm && a.gemm == b.gemm; }

// The rule at the top of kernels/conv2d.hpp, restated from its text: what
// conv2d_choose must answer.
template <class T>
Conv2DChoice documented_choice(const Conv2DGeometry& g, Conv2DAlgorithm algorithm, GemmKernel gemm,
                               KernelPass pass) {
  constexpr std::size_t L = xsimd::batch<T>::size;
  const bool three = g.KH == 3 && g.KW == 3;
  const bool winograd_fits = three && g.sh == 1 && g.sw == 1;
  const bool winograd_pays = g.C >= L && g.F >= L;
  const bool direct_fits = three && g.C == 1 && g.F % L == 0 && pass != KernelPass::backward_data;
  if (algorithm != Conv2DAlgorithm::im2col) {
    if (winograd_fits && (algorithm == Conv2DAlgorithm::winograd || winograd_pays))
      return {Conv2DAlgorithm::winograd, GemmKernel::lamina};
    if (direct_fits) return {Conv2DAlgorithm::direct, GemmKernel::lamina};
  }
  if (gemm == GemmKernel::automatic) {
    // Eigen's in backward data when padding K to a multiple of L adds more than 25%.
    const std::size_t K = g.patch_size(), padded = (K + L - 1) / L * L;
    gemm = pass == KernelPass::backward_data && 4 * padded > 5 * K ? GemmKernel::eigen : GemmKernel::lamina;
  }
  return {Conv2DAlgorithm::im2col, gemm};
}

// Where the kernels promise an image the same bits in a batch of any size
// (kernels/conv2d_im2col.hpp, conv2d_direct.hpp, winograd.hpp): forward and
// backward data computed by Winograd, by the direct kernels or by lamina's
// GEMM. Not Eigen's GEMM, whose blocking depends on the matrix sizes (and not
// backward weights, a sum over the batch).
bool batch_invariant(Conv2DChoice c) {
  return c.algorithm != Conv2DAlgorithm::im2col || c.gemm == GemmKernel::lamina;
}

template <class T>
struct Operands {
  std::vector<T> input, kernel, bias, grad_output;  // (N,H,W,C), (KH,KW,C,F), (F), (N,OH,OW,F)
};

// Every operand's |value|: what the magnitude run of the references reads.
template <class T>
Operands<T> absolute_operands(const Operands<T>& op) {
  return {absolute(op.input), absolute(op.kernel), absolute(op.bias), absolute(op.grad_output)};
}

// Every result the three passes write; filled with a value no kernel computes
// here (all operands are in [-1, 1]), so that an element left unwritten fails.
template <class T>
struct Passes {
  std::vector<T> output, grad_input, grad_kernel, grad_bias;  // (N,OH,OW,F), (N,H,W,C), (KH,KW,C,F), (F)
  explicit Passes(const Conv2DGeometry& g)
      : output(g.output_size(), T(1e6)),
        grad_input(g.input_size(), T(1e6)),
        grad_kernel(g.kernel_size(), T(1e6)),
        grad_bias(g.F, T(1e6)) {}
};

template <class T>
Passes<T> run_reference(const Conv2DGeometry& g, const Operands<T>& op) {
  Passes<T> p(g);
  conv2d_forward_reference(g, op.input.data(), op.kernel.data(), op.bias.data(), p.output.data());
  conv2d_backward_data_reference(g, op.grad_output.data(), op.kernel.data(), p.grad_input.data());
  conv2d_backward_weights_reference(g, op.input.data(), op.grad_output.data(), p.grad_kernel.data(),
                                    p.grad_bias.data());
  return p;
}

// The three passes through the dispatcher.
template <class T>
Passes<T> run_dispatched(const Conv2DGeometry& g, const Operands<T>& op, Conv2DWorkspace<T>& ws) {
  Passes<T> p(g);
  conv2d_forward(g, op.input.data(), op.kernel.data(), op.bias.data(), p.output.data(), ws);
  conv2d_backward_data(g, op.grad_output.data(), op.kernel.data(), p.grad_input.data(), ws);
  conv2d_backward_weights(g, op.input.data(), op.grad_output.data(), p.grad_kernel.data(), p.grad_bias.data(), ws);
  return p;
}

// One pass by the kernel `choice` names, called directly (not through the
// dispatcher), into p.
template <class T>
void run_named(const Conv2DGeometry& g, const Operands<T>& op, KernelPass pass, Conv2DChoice choice,
               Passes<T>& p) {
  Conv2DWorkspace<T> ws(Conv2DAlgorithm::im2col, choice.gemm);
  const T *x = op.input.data(), *k = op.kernel.data(), *b = op.bias.data(), *dy = op.grad_output.data();
  switch (choice.algorithm) {
    case Conv2DAlgorithm::winograd:
      if (pass == KernelPass::forward) conv2d_winograd_forward(g, x, k, b, p.output.data(), ws.winograd());
      if (pass == KernelPass::backward_data)
        conv2d_winograd_backward_data(g, dy, k, p.grad_input.data(), ws.winograd());
      if (pass == KernelPass::backward_weights)
        conv2d_winograd_backward_weights(g, x, dy, p.grad_kernel.data(), p.grad_bias.data(), ws.winograd());
      return;
    case Conv2DAlgorithm::direct:
      REQUIRE(pass != KernelPass::backward_data);  // the direct kernels have none
      if (pass == KernelPass::forward) conv2d_direct_forward(g, x, k, b, p.output.data(), ws, false);
      if (pass == KernelPass::backward_weights)
        conv2d_direct_backward_weights(g, x, dy, p.grad_kernel.data(), p.grad_bias.data(), ws);
      return;
    default:
      REQUIRE(choice.algorithm == Conv2DAlgorithm::im2col);
      if (pass == KernelPass::forward) conv2d_im2col_forward(g, x, k, b, p.output.data(), ws, choice.gemm, false);
      if (pass == KernelPass::backward_data)
        conv2d_im2col_backward_data(g, dy, k, p.grad_input.data(), ws, choice.gemm);
      if (pass == KernelPass::backward_weights)
        conv2d_im2col_backward_weights(g, x, dy, p.grad_kernel.data(), p.grad_bias.data(), ws, choice.gemm);
      return;
  }
}

// |fast - ref| / (factor u mag), worst over the elements; NaN counts as infinite.
struct Worst {
  double ratio = 0.0;
  std::size_t index = 0;
};

template <class T>
double error_ratio(T fast, T ref, T mag, double factor) {
  const double err = std::fabs(double(fast) - double(ref));
  const double bound = factor * unit_roundoff<T>() * std::max(double(mag), std::numeric_limits<double>::min());
  const double ratio = err / bound;
  return std::isnan(ratio) ? std::numeric_limits<double>::infinity() : ratio;
}

template <class T>
Worst worst_ratio(const std::vector<T>& fast, const std::vector<T>& ref, const std::vector<T>& mag, double factor) {
  REQUIRE(fast.size() == ref.size());
  REQUIRE(mag.size() == ref.size());
  Worst w;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double r = error_ratio(fast[i], ref[i], mag[i], factor);
    if (r > w.ratio) w = {r, i};
  }
  return w;
}

// One result of the reference with one term of one element dropped.
template <class T>
struct DroppedTerm {
  std::size_t element = 0;  // flat index of the element that lost a term
  double term = 0.0;        // |the dropped term|
  std::vector<T> values;    // the reference's result without it
};

template <class T>
std::size_t argmax(const std::vector<T>& v) {
  return static_cast<std::size_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

// Forward: the largest |x k| of the output with the largest mag; zeroing that
// input value drops exactly that term from it (an output pixel reads each
// input pixel through one tap at most).
template <class T>
DroppedTerm<T> drop_forward_term(const Conv2DGeometry& g, const Operands<T>& op, const Passes<T>& mag) {
  DroppedTerm<T> d;
  d.element = argmax(mag.output);
  const std::size_t f = d.element % g.F, pixel = d.element / g.F;
  const std::size_t ow = pixel % g.OW, oh = pixel / g.OW % g.OH, n = pixel / (g.OW * g.OH);
  std::size_t drop = 0;
  for (std::size_t kh = 0; kh < g.KH; ++kh)
    for (std::size_t kw = 0; kw < g.KW; ++kw) {
      const std::size_t ih = oh * g.sh + kh - g.pad_top, iw = ow * g.sw + kw - g.pad_left;  // wraps when above/left
      if (ih >= g.H || iw >= g.W) continue;
      for (std::size_t c = 0; c < g.C; ++c) {
        const std::size_t xi = ((n * g.H + ih) * g.W + iw) * g.C + c;
        const double t = std::fabs(double(op.input[xi]) * double(op.kernel[((kh * g.KW + kw) * g.C + c) * g.F + f]));
        if (t > d.term) d.term = t, drop = xi;
      }
    }
  REQUIRE(d.term > 0);
  auto input = op.input;
  input[drop] = T(0);
  d.values.resize(g.output_size());
  conv2d_forward_reference(g, input.data(), op.kernel.data(), op.bias.data(), d.values.data());
  return d;
}

// Backward data: the largest |dy k| of the input gradient with the largest
// mag; that grad_output value reaches it through one tap only.
template <class T>
DroppedTerm<T> drop_backward_data_term(const Conv2DGeometry& g, const Operands<T>& op, const Passes<T>& mag) {
  DroppedTerm<T> d;
  d.element = argmax(mag.grad_input);
  const std::size_t c = d.element % g.C, pixel = d.element / g.C;
  const std::size_t w = pixel % g.W, h = pixel / g.W % g.H, n = pixel / (g.W * g.H);
  std::size_t drop = 0;
  for (std::size_t oh = 0; oh < g.OH; ++oh)
    for (std::size_t ow = 0; ow < g.OW; ++ow)
      for (std::size_t kh = 0; kh < g.KH; ++kh)
        for (std::size_t kw = 0; kw < g.KW; ++kw) {
          if (oh * g.sh + kh - g.pad_top != h || ow * g.sw + kw - g.pad_left != w) continue;
          for (std::size_t f = 0; f < g.F; ++f) {
            const std::size_t yi = ((n * g.OH + oh) * g.OW + ow) * g.F + f;
            const double t =
                std::fabs(double(op.grad_output[yi]) * double(op.kernel[((kh * g.KW + kw) * g.C + c) * g.F + f]));
            if (t > d.term) d.term = t, drop = yi;
          }
        }
  REQUIRE(d.term > 0);
  auto grad_output = op.grad_output;
  grad_output[drop] = T(0);
  d.values.resize(g.input_size());
  conv2d_backward_data_reference(g, grad_output.data(), op.kernel.data(), d.values.data());
  return d;
}

// Backward weights: the largest |x dy| of the kernel gradient with the largest
// mag, dropped by zeroing that grad_output value (it meets each tap once).
template <class T>
DroppedTerm<T> drop_backward_weights_term(const Conv2DGeometry& g, const Operands<T>& op, const Passes<T>& mag) {
  DroppedTerm<T> d;
  d.element = argmax(mag.grad_kernel);
  const std::size_t f = d.element % g.F, c = d.element / g.F % g.C;
  const std::size_t kw = d.element / (g.F * g.C) % g.KW, kh = d.element / (g.F * g.C * g.KW);
  std::size_t drop = 0;
  for (std::size_t n = 0; n < g.N; ++n)
    for (std::size_t oh = 0; oh < g.OH; ++oh)
      for (std::size_t ow = 0; ow < g.OW; ++ow) {
        const std::size_t ih = oh * g.sh + kh - g.pad_top, iw = ow * g.sw + kw - g.pad_left;
        if (ih >= g.H || iw >= g.W) continue;
        const std::size_t yi = ((n * g.OH + oh) * g.OW + ow) * g.F + f;
        const double x = op.input[((n * g.H + ih) * g.W + iw) * g.C + c];
        const double t = std::fabs(x * double(op.grad_output[yi]));
        if (t > d.term) d.term = t, drop = yi;
      }
  REQUIRE(d.term > 0);
  auto grad_output = op.grad_output;
  grad_output[drop] = T(0);
  d.values.resize(g.kernel_size());
  std::vector<T> bias(g.F);
  conv2d_backward_weights_reference(g, op.input.data(), grad_output.data(), d.values.data(), bias.data());
  return d;
}

// The bias gradient: the largest |dy| of the filter with the largest mag.
template <class T>
DroppedTerm<T> drop_bias_term(const Conv2DGeometry& g, const Operands<T>& op, const Passes<T>& mag) {
  DroppedTerm<T> d;
  d.element = argmax(mag.grad_bias);
  std::size_t drop = 0;
  for (std::size_t p = 0; p < g.N * g.OH * g.OW; ++p) {
    const double t = std::fabs(double(op.grad_output[p * g.F + d.element]));
    if (t > d.term) d.term = t, drop = p * g.F + d.element;
  }
  REQUIRE(d.term > 0);
  auto grad_output = op.grad_output;
  grad_output[drop] = T(0);
  std::vector<T> kernel(g.kernel_size());
  d.values.resize(g.F);
  conv2d_backward_weights_reference(g, op.input.data(), grad_output.data(), kernel.data(), d.values.data());
  return d;
}

// One result against the reference, and against the reference without one
// term (which it must not pass).
template <class T>
void check_result(const char* what, const std::vector<T>& fast, const std::vector<T>& ref,
                  const std::vector<T>& mag, const DroppedTerm<T>& dropped, double factor) {
  const Worst w = worst_ratio(fast, ref, mag, factor);
  const double dropped_ratio =
      error_ratio(fast[dropped.element], dropped.values[dropped.element], mag[dropped.element], factor);
  INFO(what << ": worst error " << w.ratio << " of the bound (" << factor << " u mag) at element " << w.index
            << ": " << fast[w.index] << " vs reference " << ref[w.index] << "; without the term " << dropped.term
            << " of element " << dropped.element << " the reference is " << dropped_ratio << " bounds away");
  CHECK(w.ratio <= 1.0);
  CHECK(dropped_ratio > 1.0);
}

template <class T>
std::vector<T> slice(const std::vector<T>& batch, std::size_t n, std::size_t per_image) {
  return std::vector<T>(batch.begin() + static_cast<std::ptrdiff_t>(n * per_image),
                        batch.begin() + static_cast<std::ptrdiff_t>((n + 1) * per_image));
}

template <class T>
void check_conformance(const Case& c, std::uint64_t seed) {
  const Conv2DGeometry g = c.geometry<T>();
  INFO(dtype<T>() << ", " << describe(g));
  Rng rng(seed);
  Operands<T> op;
  op.input = random_values<T>(g.input_size(), rng);
  op.kernel = random_values<T>(g.kernel_size(), rng);
  op.bias = random_values<T>(g.F, rng);
  op.grad_output = random_values<T>(g.output_size(), rng);
  const Passes<T> ref = run_reference(g, op);
  const Passes<T> mag = run_reference(g, absolute_operands(op));
  const DroppedTerm<T> dropped_forward = drop_forward_term(g, op, mag);
  const DroppedTerm<T> dropped_data = drop_backward_data_term(g, op, mag);
  const DroppedTerm<T> dropped_weights = drop_backward_weights_term(g, op, mag);
  const DroppedTerm<T> dropped_bias = drop_bias_term(g, op, mag);
  const std::size_t rows = g.N * g.OH * g.OW;

  // The named kernels' results, once per (pass, choice).
  std::map<std::tuple<int, int, int>, Passes<T>> named;
  auto named_result = [&](KernelPass pass, Conv2DChoice choice) -> const Passes<T>& {
    const auto key = std::make_tuple(int(pass), int(choice.algorithm), int(choice.gemm));
    auto it = named.find(key);
    if (it == named.end()) {
      it = named.emplace(key, Passes<T>(g)).first;
      run_named(g, op, pass, choice, it->second);
    }
    return it->second;
  };

  for (Conv2DAlgorithm algorithm : kAlgorithms)
    for (GemmKernel gemm : kGemms) {
      INFO("algorithm " << to_string(algorithm) << ", GEMM " << to_string(gemm));
      Conv2DChoice choice[3];
      for (KernelPass pass : kPasses) {
        const int i = int(pass);
        choice[i] = conv2d_choose<T>(g, algorithm, gemm, pass);
        INFO(to_string(pass) << ": conv2d_choose says " << describe(choice[i]) << ", the rule says "
                             << describe(documented_choice<T>(g, algorithm, gemm, pass)));
        CHECK(same_choice(choice[i], documented_choice<T>(g, algorithm, gemm, pass)));
      }
      const Conv2DChoice forward = choice[int(KernelPass::forward)];
      const Conv2DChoice data = choice[int(KernelPass::backward_data)];
      const Conv2DChoice weights = choice[int(KernelPass::backward_weights)];
      INFO("ran: forward " << describe(forward) << ", backward data " << describe(data) << ", backward weights "
                           << describe(weights));

      // Threads: 1 then 2, on one workspace (grown for one worker by the first
      // call, so the second must grow it).
      Conv2DWorkspace<T> ws(algorithm, gemm);
      set_num_threads(1);
      const Passes<T> one = run_dispatched(g, op, ws);
      set_num_threads(2);
      const Passes<T> two = run_dispatched(g, op, ws);
      CHECK(same_bits(one.output, two.output));
      CHECK(same_bits(one.grad_input, two.grad_input));
      CHECK(same_bits(one.grad_kernel, two.grad_kernel));
      CHECK(same_bits(one.grad_bias, two.grad_bias));

      // Against the references, with the bound of the algorithm that ran.
      auto growth = [](Conv2DChoice ch) {
        return ch.algorithm == Conv2DAlgorithm::winograd ? kWinogradGrowth : 1.0;
      };
      check_result("forward", two.output, ref.output, mag.output, dropped_forward,
                   growth(forward) * sum_rounding_bound(g.KH * g.KW * g.C));
      check_result("backward data", two.grad_input, ref.grad_input, mag.grad_input, dropped_data,
                   growth(data) * sum_rounding_bound(g.KH * g.KW * g.F));
      check_result("kernel gradient", two.grad_kernel, ref.grad_kernel, mag.grad_kernel, dropped_weights,
                   growth(weights) * sum_rounding_bound(rows));
      check_result("bias gradient", two.grad_bias, ref.grad_bias, mag.grad_bias, dropped_bias,
                   sum_rounding_bound(rows));

      // What ran is what conv2d_choose said: the bits of that kernel called directly.
      CHECK(same_bits(two.output, named_result(KernelPass::forward, forward).output));
      CHECK(same_bits(two.grad_input, named_result(KernelPass::backward_data, data).grad_input));
      const Passes<T>& named_weights = named_result(KernelPass::backward_weights, weights);
      CHECK(same_bits(two.grad_kernel, named_weights.grad_kernel));
      CHECK(same_bits(two.grad_bias, named_weights.grad_bias));

      // An image alone has the bits it has in the batch, where promised: the
      // middle image, and the last (in a shorter last chunk for the batches of 300).
      if (g.N == 1) continue;
      const Conv2DGeometry single = g.with_batch(1);
      for (std::size_t n : {g.N / 2, g.N - 1}) {
        INFO("image " << n << " of " << g.N << " alone");
        if (batch_invariant(forward)) {
          std::vector<T> out(single.output_size());
          conv2d_forward(single, op.input.data() + n * single.input_size(), op.kernel.data(), op.bias.data(),
                         out.data(), ws);
          CHECK(same_bits(out, slice(two.output, n, single.output_size())));
        }
        if (batch_invariant(data)) {
          std::vector<T> grad_input(single.input_size());
          conv2d_backward_data(single, op.grad_output.data() + n * single.output_size(), op.kernel.data(),
                               grad_input.data(), ws);
          CHECK(same_bits(grad_input, slice(two.grad_input, n, single.input_size())));
        }
      }
    }
}

}  // namespace

TEST_CASE("Every Conv2D kernel matches the references, runs what conv2d_choose says, and gives the same bits "
          "with 1 or 2 threads and in any batch where promised") {
  const lamina_test::ThreadCountGuard restore;
  std::uint64_t seed = 2000;
  for (const Case& c : kCases) {
    check_conformance<float>(c, seed++);
    check_conformance<double>(c, seed++);
  }
}
