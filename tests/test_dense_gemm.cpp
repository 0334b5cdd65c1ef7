// Dense on lamina's GEMM (and on Eigen's, and the automatic per-pass choice)
// against a naive double-precision reference on odd shapes, and Dense's
// forward and backward bit-identical with 1 and 2 threads.
//
// TOLERANCE (the argument of tests/test_gemm.cpp). Every checked value is a
// sum of n terms (K products plus a bias, or N batch rows for the bias
// gradient): rounded in any order, with or without FMA, its error is at most
// gamma_n sum|terms| [Higham, sec. 3.1], and with random-sign roundings at most
// 8 sqrt(n) u sum|terms| except with probability 3e-14 (fixed seeds)
// [Higham & Mary 2019]. The reference accumulates in double and rounds once,
// so we require
//     |layer - reference| <= 2 min(n, 8 sqrt(n)) u sum|terms| + u |reference|.
// ReLU is 1-Lipschitz, so the bound on the pre-activation holds after it.
// With data uniform in [-1, 1) a term is ~1/4 of sum|terms| / K: a product
// skipped or counted twice is 1/K of the magnitude, above the bound for every
// shape here (checked below: the bound stays under 1 / (4K) of sum|terms|).
// The backward reference uses the layer's own ReLU mask (output > 0): the mask
// is what defines the gradient, and an output within rounding of 0 may differ.
#include <lamina/lamina.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "support.hpp"

using namespace lamina;
using lamina::kernels::GemmKernel;
using lamina::kernels::KernelPass;

namespace {

template <class T>
constexpr double unit_roundoff() {
  return std::numeric_limits<T>::epsilon() / 2;
}

// The relative part of the bound for a sum of n terms.
template <class T>
double sum_bound(std::size_t n) {
  const double dn = static_cast<double>(n);
  return 2 * std::min(dn, 8 * std::sqrt(dn)) * unit_roundoff<T>();
}

const char* gemm_name(GemmKernel g) {
  return to_string(g);
}

struct DenseCase {
  std::size_t batch, in, out;
  bool bias;
  Activation activation;
};

// Runs one Dense forward and backward and compares Y, dW, db and dX with the
// naive reference. Returns the worst error in units of the bound.
template <class T>
double check_dense(const DenseCase& c, GemmKernel gemm, std::uint64_t seed) {
  INFO("batch " << c.batch << " in " << c.in << " out " << c.out << (c.bias ? " bias" : "")
                << (c.activation == Activation::relu ? " relu" : "") << " gemm " << gemm_name(gemm)
                << " T = " << (sizeof(T) == 4 ? "float" : "double"));
  Dense<T> dense(c.out, Init::he_normal, c.bias, c.activation);
  dense.set_gemm(gemm);
  dense.build(Shape{c.in});
  ParameterStore<T> store;
  store.allocate({&dense});
  Rng rng(seed);
  Rng init_rng = rng.fork(1);
  dense.initialize(init_rng);
  const std::size_t N = c.batch, in = c.in, out = c.out;
  // Bias and kernel uniform too, so that every term has the same scale.
  for (T& v : dense.parameters()[0]) v = static_cast<T>(rng.uniform(-1.0, 1.0));
  if (c.bias)
    for (T& v : dense.parameters()[1]) v = static_cast<T>(rng.uniform(-1.0, 1.0));
  Tensor<T> x(Shape{N, in}), g(Shape{N, out});
  for (T& v : x) v = static_cast<T>(rng.uniform(-1.0, 1.0));
  for (T& v : g) v = static_cast<T>(rng.uniform(-1.0, 1.0));
  const T* w = dense.parameters()[0].data();  // (in, out)
  const T* b = c.bias ? dense.parameters()[1].data() : nullptr;

  TensorView<const T> y = dense.forward(x.view(), Mode::train);
  REQUIRE(y.shape() == (Shape{N, out}));
  const std::vector<T> y_copy(y.data(), y.data() + y.size());
  TensorView<const T> dx = dense.backward(g.view());
  REQUIRE(dx.shape() == (Shape{N, in}));
  const T* dw = dense.gradients()[0].data();

  double worst = 0;
  auto check = [&](const char* what, std::size_t i, double got, double ref, double mag, std::size_t terms,
                   std::size_t K) {
    const double bound = sum_bound<T>(terms) * mag + unit_roundoff<T>() * std::fabs(ref);
    if (!(sum_bound<T>(terms) < 1.0 / (4.0 * static_cast<double>(K)))) {  // one product off is caught
      INFO("the bound for " << what << " is too loose to catch one product off");
      CHECK(false);
    }
    const double err = std::fabs(got - ref);
    if (!(err <= bound)) {
      INFO(what << "[" << i << "] = " << got << ", reference " << ref << ", bound " << bound);
      CHECK(err <= bound);
    }
    if (bound > 0) worst = std::max(worst, err / bound);
  };

  // Forward: y = act(x W + b); K = in products plus the bias.
  for (std::size_t r = 0; r < N; ++r)
    for (std::size_t j = 0; j < out; ++j) {
      double sum = b ? double(b[j]) : 0.0, mag = b ? std::fabs(double(b[j])) : 0.0;
      for (std::size_t p = 0; p < in; ++p) {
        const double t = double(x.data()[r * in + p]) * double(w[p * out + j]);
        sum += t;
        mag += std::fabs(t);
      }
      if (c.activation == Activation::relu) sum = sum > 0 ? sum : 0.0;
      check("y", r * out + j, double(y_copy[r * out + j]), sum, mag, in + 2, in);
    }
  // The gradient before the activation, with the layer's own mask.
  std::vector<double> dy(N * out);
  for (std::size_t i = 0; i < N * out; ++i)
    dy[i] = c.activation == Activation::relu && !(y_copy[i] > T(0)) ? 0.0 : double(g.data()[i]);
  // dW = x^T dy: N products.
  for (std::size_t p = 0; p < in; ++p)
    for (std::size_t j = 0; j < out; ++j) {
      double sum = 0, mag = 0;
      for (std::size_t r = 0; r < N; ++r) {
        const double t = double(x.data()[r * in + p]) * dy[r * out + j];
        sum += t;
        mag += std::fabs(t);
      }
      check("dW", p * out + j, double(dw[p * out + j]), sum, mag, N + 2, N);
    }
  // db: column sums over the batch.
  if (c.bias) {
    const T* db = dense.gradients()[1].data();
    for (std::size_t j = 0; j < out; ++j) {
      double sum = 0, mag = 0;
      for (std::size_t r = 0; r < N; ++r) {
        sum += dy[r * out + j];
        mag += std::fabs(dy[r * out + j]);
      }
      check("db", j, double(db[j]), sum, mag, N + 2, N);
    }
  }
  // dX = dy W^T: out products.
  for (std::size_t r = 0; r < N; ++r)
    for (std::size_t p = 0; p < in; ++p) {
      double sum = 0, mag = 0;
      for (std::size_t j = 0; j < out; ++j) {
        const double t = dy[r * out + j] * double(w[p * out + j]);
        sum += t;
        mag += std::fabs(t);
      }
      check("dX", r * in + p, double(dx.data()[r * in + p]), sum, mag, out + 2, out);
    }
  return worst;
}

const DenseCase kOddCases[] = {
    // in, out not multiples of 16 (nor of 8); in = 300 spans two GEMM
    // contraction blocks; batch 130 is three forward chunks, the last of 2 rows.
    {1, 37, 10, true, Activation::none},    {7, 37, 21, true, Activation::relu},
    {130, 37, 10, false, Activation::relu}, {1, 300, 33, false, Activation::relu},
    {7, 300, 10, true, Activation::none},   {130, 300, 33, true, Activation::relu},
    {130, 131, 70, true, Activation::none}, {7, 131, 70, true, Activation::relu},
    // Kernels of at least 32768 weights: the forward runs two parts of the
    // contraction (rows [0, 180) and [180, 300) of W; [0, 504) and [504, 1000))
    // and adds them; 130 outputs are padded, 1000 inputs span four blocks.
    {130, 300, 130, true, Activation::relu}, {1, 300, 130, false, Activation::none},
    {7, 1000, 40, true, Activation::relu},
};

}  // namespace

TEST_CASE("Dense matches the naive reference on odd shapes with lamina's GEMM, Eigen's and the automatic choice") {
  std::uint64_t seed = 500;
  for (GemmKernel gemm : {GemmKernel::lamina, GemmKernel::eigen, GemmKernel::automatic}) {
    double worst_float = 0, worst_double = 0;
    for (const DenseCase& c : kOddCases) {
      worst_float = std::max(worst_float, check_dense<float>(c, gemm, ++seed));
      worst_double = std::max(worst_double, check_dense<double>(c, gemm, ++seed));
    }
    INFO("gemm " << gemm_name(gemm) << ": worst error / bound: float " << worst_float << ", double "
                 << worst_double);
    CHECK(worst_float <= 1.0);
    CHECK(worst_double <= 1.0);
  }
}

TEST_CASE("Dense's automatic GEMM choice per pass") {
  // Forward and dW on lamina's GEMM (10 outputs too: batch-independent rows);
  // dX on Eigen's.
  CHECK(kernels::dense_gemm<float>(GemmKernel::automatic, KernelPass::forward, 128, 784, 256) == GemmKernel::lamina);
  CHECK(kernels::dense_gemm<float>(GemmKernel::automatic, KernelPass::forward, 1, 256, 10) == GemmKernel::lamina);
  CHECK(kernels::dense_gemm<float>(GemmKernel::automatic, KernelPass::backward_weights, 128, 256, 10) == GemmKernel::lamina);
  CHECK_FALSE(kernels::dense_gemm<float>(GemmKernel::automatic, KernelPass::backward_data, 128, 3136, 256) == GemmKernel::lamina);
  // A layer's setting overrides the choice in every pass.
  Dense<float> d(10);
  d.build(Shape{256});
  CHECK(d.gemm_for(KernelPass::backward_data, 128) == GemmKernel::eigen);
  d.set_gemm(GemmKernel::lamina);
  CHECK(d.gemm_for(KernelPass::backward_data, 128) == GemmKernel::lamina);
  d.set_gemm(GemmKernel::eigen);
  CHECK(d.gemm_for(KernelPass::backward_weights, 128) == GemmKernel::eigen);
  CHECK(d.gemm_for(KernelPass::forward, 128) == GemmKernel::eigen);
}

namespace {

struct DenseRun {
  std::vector<float> y, dw, db, dx;
};

DenseRun run_dense(int threads, const DenseCase& c, GemmKernel gemm) {
  set_num_threads(threads);
  Dense<float> dense(c.out, Init::he_normal, c.bias, c.activation);
  dense.set_gemm(gemm);
  dense.build(Shape{c.in});
  ParameterStore<float> store;
  store.allocate({&dense});
  Rng rng(77);
  Rng init_rng = rng.fork(1);
  dense.initialize(init_rng);
  if (c.bias)
    for (float& v : dense.parameters()[1]) v = static_cast<float>(rng.uniform(-0.5, 0.5));
  Tensor<float> x(Shape{c.batch, c.in}), g(Shape{c.batch, c.out});
  for (float& v : x) v = static_cast<float>(rng.uniform(-1.0, 1.0));
  for (float& v : g) v = static_cast<float>(rng.uniform(-1.0, 1.0));
  DenseRun run;
  auto y = dense.forward(x.view(), Mode::train);
  run.y.assign(y.data(), y.data() + y.size());
  auto dx = dense.backward(g.view());
  run.dx.assign(dx.data(), dx.data() + dx.size());
  run.dw.assign(dense.gradients()[0].data(), dense.gradients()[0].data() + dense.gradients()[0].size());
  if (c.bias) run.db.assign(dense.gradients()[1].data(), dense.gradients()[1].data() + c.out);
  return run;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("Dense forward and backward are bit-identical with 1 and 2 threads") {
  // Batches over several row chunks (64 rows) and inputs over several dW
  // chunks (64 rows of dW), so that 2 threads really split the work.
  const DenseCase cases[] = {
      {130, 300, 33, true, Activation::relu},
      {200, 784, 256, true, Activation::relu},
      {257, 256, 10, true, Activation::none},
  };
  for (GemmKernel gemm : {GemmKernel::automatic, GemmKernel::lamina, GemmKernel::eigen})
    for (const DenseCase& c : cases) {
      INFO("batch " << c.batch << " in " << c.in << " out " << c.out << " gemm " << gemm_name(gemm));
      const DenseRun one = run_dense(1, c, gemm);
      const DenseRun two = run_dense(2, c, gemm);
      CHECK(same_bits(one.y, two.y));
      CHECK(same_bits(one.dw, two.dw));
      CHECK(same_bits(one.db, two.db));
      CHECK(same_bits(one.dx, two.dx));
      // And not trivially: the outputs are not all zero.
      CHECK(std::any_of(one.dw.begin(), one.dw.end(), [](float v) { return v != 0.0f; }));
    }
  set_num_threads(1);
}

TEST_CASE("Dense on lamina's GEMM: a row's output does not depend on the batch it is in") {
  // lamina's GEMM computes every element as one FMA chain whatever M, so row r
  // of a batch of 130 has the bits of the same row run alone (the automatic
  // choice, also with 10 outputs that are padded to the SIMD width).
  // 130 outputs: a kernel the forward splits in two parts of the contraction.
  const DenseCase c{130, 300, GENERATE(std::size_t(48), std::size_t(10), std::size_t(130)), true, Activation::relu};
  Dense<float> dense(c.out, Init::he_normal, c.bias, c.activation);
  dense.build(Shape{c.in});
  ParameterStore<float> store;
  store.allocate({&dense});
  Rng rng(5);
  Rng init_rng = rng.fork(1);
  dense.initialize(init_rng);
  Tensor<float> x(Shape{c.batch, c.in});
  for (float& v : x) v = static_cast<float>(rng.uniform(-1.0, 1.0));
  auto y = dense.forward(x.view(), Mode::eval);
  const std::vector<float> all(y.data(), y.data() + y.size());
  for (std::size_t r : {std::size_t(0), std::size_t(63), std::size_t(64), std::size_t(129)}) {
    Tensor<float> one(Shape{1, c.in});
    std::copy(x.data() + r * c.in, x.data() + (r + 1) * c.in, one.data());
    auto y1 = dense.forward(one.view(), Mode::eval);
    CHECK(std::memcmp(y1.data(), all.data() + r * c.out, c.out * sizeof(float)) == 0);
  }
}
