// lamina's GEMM (kernels/gemm.hpp) against its naive reference: every variant
// (A or A^T, B or B^T, packed or not, bias, accumulate, ReLU) on odd shapes
// (1, primes, sizes around the tile heights, the batch size and the
// contraction block kGemmKC), float and double; then the property that makes
// Conv2D's results independent of the batch split: a row of C has the same
// bits whatever M, and the same bits as the plain FMA chain over p.
//
// TOLERANCE. An element is a sum of K products (plus a bias or the old C):
// rounded in any order, with or without FMA, its error is at most
// gamma_n sum|terms| with n = K + 2 [Higham, sec. 3.1], and with random-sign
// roundings at most lambda sqrt(n) u sum|terms| except with probability
// 2 exp(-lambda^2 / 2) (lambda = 8: 3e-14; fixed seeds) [Higham & Mary 2019].
// The reference accumulates in double and rounds once, so we require
//     |fast - naive| <= 2 min(n, 8 sqrt(n)) u sum|terms|     (u = eps / 2).
// Data are uniform in [-1, 1), so sum|terms| ~ K / 4 while one product is
// ~1/4: an element skipped or counted twice (an error of about one product,
// mag / K) exceeds the bound for every K here (at most 16 sqrt(K + 2) u mag,
// i.e. under 1e-4 of mag in float for K = 600, against 1 / K = 1.7e-3), and
// the test "one product off is caught" below checks that the bound has that
// margin on the shapes used.
#include <lamina/kernels/gemm.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <lamina/core/rng.hpp>

#include "support.hpp"

using namespace lamina;
using namespace lamina::kernels;

namespace {

template <class T>
constexpr double unit_roundoff() {
  return std::numeric_limits<T>::epsilon() / 2;
}

template <class T>
std::vector<T> random_values(std::size_t n, Rng& rng) {
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(rng.uniform(-1.0, 1.0));
  return v;
}

template <class T>
std::vector<T> absolute(const std::vector<T>& v) {
  std::vector<T> a(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) a[i] = std::fabs(v[i]);
  return a;
}

struct Variant {
  bool trans_a, trans_b, bias, accumulate, relu;
};

std::ostream& operator<<(std::ostream& out, const Variant& v) {
  return out << (v.trans_a ? "A^T" : "A") << " x " << (v.trans_b ? "B^T" : "B")
             << (v.bias ? " + bias" : "") << (v.accumulate ? " accumulate" : "") << (v.relu ? " relu" : "");
}

// Runs gemm and gemm_reference on random operands with padded strides (so that a
// kernel ignoring lda/ldb/ldc fails) and checks the bound element by element.
// Returns the worst error in units of u * sum|terms|.
template <class T>
double check_variant(std::size_t M, std::size_t N, std::size_t K, const Variant& v, std::uint64_t seed) {
  INFO("M " << M << " N " << N << " K " << K << " " << v << " T = " << (sizeof(T) == 4 ? "float" : "double"));
  Rng rng(seed);
  // Stored shapes: A (M, K) or (K, M); B (K, N) or (N, K); every stride padded by 3.
  const std::size_t a_rows = v.trans_a ? K : M, a_cols = v.trans_a ? M : K;
  const std::size_t b_rows = v.trans_b ? N : K, b_cols = v.trans_b ? K : N;
  const std::size_t lda = a_cols + 3, ldb = b_cols + 3, ldc = N + 3;
  const auto A = random_values<T>(a_rows * lda, rng);
  const auto B = random_values<T>(b_rows * ldb, rng);
  const auto bias = random_values<T>(N, rng);
  const auto C0 = random_values<T>(M * ldc, rng);
  GemmEpilogue<T> e;
  e.bias = v.bias ? bias.data() : nullptr;
  e.accumulate = v.accumulate;
  e.relu = v.relu;

  std::vector<T> fast = C0, ref = C0;
  gemm(M, N, K, A.data(), lda, v.trans_a, B.data(), ldb, v.trans_b, fast.data(), ldc, e);
  gemm_reference(M, N, K, A.data(), lda, v.trans_a, B.data(), ldb, v.trans_b, ref.data(), ldc, e);
  // sum|terms|: the same sum on absolute values, without ReLU.
  std::vector<T> mag = absolute(C0);
  const auto abs_bias = absolute(bias);
  GemmEpilogue<T> e_abs = e;
  e_abs.bias = v.bias ? abs_bias.data() : nullptr;
  e_abs.relu = false;
  gemm_reference(M, N, K, absolute(A).data(), lda, v.trans_a, absolute(B).data(), ldb, v.trans_b, mag.data(), ldc, e_abs);

  const double n = double(K + 2);
  const double bound = 2.0 * std::min(n, 8.0 * std::sqrt(n));
  double worst = 0.0;
  std::size_t bad = 0;
  for (std::size_t i = 0; i < M; ++i)
    for (std::size_t j = 0; j < ldc; ++j) {
      const std::size_t k = i * ldc + j;
      if (j >= N) {  // the padding of C is never written
        if (fast[k] != C0[k]) ++bad;
        continue;
      }
      const double err = std::fabs(double(fast[k]) - double(ref[k]));
      const double scale = unit_roundoff<T>() * double(mag[k]);
      if (scale > 0) worst = std::max(worst, err / scale);
      if (!(err <= bound * scale)) ++bad;
      if (v.relu && !(fast[k] >= T(0))) ++bad;
    }
  INFO("worst error " << worst << " u * sum|terms| (bound " << bound << ")");
  CHECK(bad == 0);
  return worst;
}

const std::size_t kSizes[] = {1, 2, 3, 5, 7, 11, 13, 17, 31, 33, 47, 65};

}  // namespace

TEST_CASE("gemm matches the naive reference on odd shapes, every variant (float and double)") {
  const Variant variants[] = {
      {false, false, false, false, false}, {true, false, false, false, false},
      {false, true, false, false, false},  {true, true, false, false, false},
      {false, false, true, false, true},   {true, true, true, false, false},
      {false, true, false, true, false},   {true, false, true, true, true},
  };
  std::uint64_t seed = 1;
  for (const Variant& v : variants)
    for (std::size_t M : {std::size_t(1), std::size_t(5), std::size_t(13), std::size_t(29)})
      for (std::size_t N : kSizes)
        for (std::size_t K : {std::size_t(1), std::size_t(7), std::size_t(19)}) {
          check_variant<float>(M, N, K, v, seed++);
          check_variant<double>(M, N, K, v, seed++);
        }
}

TEST_CASE("gemm is right across the contraction block, the tile heights and the panels") {
  // K around kGemmKC (one, two and three blocks), M around the tile heights
  // (12, 6, 4 and 1-row tiles), N over one to three column panels.
  const Variant plain{false, false, true, false, false}, trans_a{true, false, false, false, false},
      trans_b{false, true, false, false, false};
  std::uint64_t seed = 1000;
  for (std::size_t K : {kGemmKC - 1, kGemmKC, kGemmKC + 1, 2 * kGemmKC + 37})
    for (std::size_t M : {std::size_t(11), std::size_t(12), std::size_t(23), std::size_t(61)})
      for (std::size_t N : {std::size_t(9), std::size_t(32), std::size_t(64), std::size_t(97), std::size_t(150)}) {
        for (const Variant& v : {plain, trans_a, trans_b}) check_variant<float>(M, N, K, v, seed++);
        check_variant<double>(M, N, K, plain, seed++);
      }
}

TEST_CASE("gemm on the Conv2D shapes (forward, backward data, backward weights)") {
  std::uint64_t seed = 2000;
  for (std::size_t C : {std::size_t(1), std::size_t(32), std::size_t(64)})
    for (std::size_t F : {std::size_t(32), std::size_t(64)}) {
      const std::size_t K = 9 * C, M = 196;
      check_variant<float>(M, F, K, {false, false, true, false, true}, seed++);   // forward, fused bias and ReLU
      check_variant<float>(M, K, F, {false, true, false, false, false}, seed++);  // backward data: go x kernel^T
      check_variant<float>(K, F, M, {true, false, false, false, false}, seed++);  // backward weights: cols^T x go
    }
}

TEST_CASE("The gemm test's bound catches one product skipped or counted twice") {
  // The largest bound used above (K = 2 kGemmKC + 37 in float) against the
  // smallest error a skipped product makes on typical data: |a b| ~ 1/4
  // against sum|terms| ~ K / 4.
  const double K = double(2 * kGemmKC + 37);
  const double n = K + 2;
  const double bound_fraction = 2.0 * std::min(n, 8.0 * std::sqrt(n)) * unit_roundoff<float>();
  CHECK(bound_fraction < 0.05 / K);  // a product of 5% of the average one is still caught
  // And concretely: drop one product from a reference element and compare.
  Rng rng(5);
  const std::size_t M = 3, N = 40, KK = 2 * kGemmKC + 37;
  const auto A = random_values<float>(M * KK, rng);
  const auto B = random_values<float>(KK * N, rng);
  std::vector<float> fast(M * N), ref(M * N), mag(M * N);
  gemm(M, N, KK, A.data(), KK, false, B.data(), N, false, fast.data(), N);
  gemm_reference(M, N, KK, absolute(A).data(), KK, false, absolute(B).data(), N, false, mag.data(), N);
  std::size_t caught = 0, tried = 0;
  for (std::size_t i = 0; i < M; ++i)
    for (std::size_t j = 0; j < N; ++j) {
      const std::size_t p = (i * 31 + j * 7) % KK;  // the product left out
      const double product = double(A[i * KK + p]) * double(B[p * N + j]);
      if (std::fabs(product) < 0.01) continue;  // a product near zero is not an error
      double sum = 0.0;
      for (std::size_t q = 0; q < KK; ++q) sum += double(A[i * KK + q]) * double(B[q * N + j]);
      ++tried;
      const double err = std::fabs(double(fast[i * N + j]) - (sum - product));
      if (err > 2.0 * std::min(n, 8.0 * std::sqrt(n)) * unit_roundoff<float>() * mag[i * N + j]) ++caught;
    }
  CHECK(tried > M * N / 2);
  CHECK(caught == tried);
}

TEST_CASE("gemm rows do not depend on M: the same bits in a GEMM of 1 row or of many") {
  // Every element is one FMA chain over p in order, whatever tile it falls in.
  Rng rng(77);
  const std::size_t M = 61, K = 2 * kGemmKC + 5;
  for (std::size_t N : {std::size_t(7), std::size_t(32), std::size_t(64), std::size_t(100)}) {
    INFO("N " << N);
    const auto A = random_values<float>(M * K, rng);
    const auto B = random_values<float>(K * N, rng);
    const auto bias = random_values<float>(N, rng);
    GemmEpilogue<float> e;
    e.bias = bias.data();
    std::vector<float> all(M * N), one(N);
    gemm(M, N, K, A.data(), K, false, B.data(), N, false, all.data(), N, e);
    bool same = true;
    for (std::size_t i = 0; i < M; ++i) {
      gemm(1, N, K, A.data() + i * K, K, false, B.data(), N, false, one.data(), N, e);
      same = same && std::memcmp(one.data(), all.data() + i * N, N * sizeof(float)) == 0;
    }
    CHECK(same);
    // The transposed-A form computes the same chains.
    std::vector<float> At(K * M), all_t(M * N);
    for (std::size_t i = 0; i < M; ++i)
      for (std::size_t p = 0; p < K; ++p) At[p * M + i] = A[i * K + p];
    gemm(M, N, K, At.data(), M, true, B.data(), N, false, all_t.data(), N, e);
    CHECK(std::memcmp(all_t.data(), all.data(), all.size() * sizeof(float)) == 0);
    // And it is the plain chain c = fma(a, b, c) from the bias, p = 0, 1, ...
    bool chain = true;
    for (std::size_t i = 0; i < M; ++i)
      for (std::size_t j = 0; j < N; ++j) {
        float c = bias[j];
        for (std::size_t p = 0; p < K; ++p) c = std::fma(A[i * K + p], B[p * N + j], c);
        chain = chain && c == all[i * N + j];
      }
#if defined(__FMA__) || defined(__AVX512F__) || defined(__aarch64__)
    CHECK(chain);
#else
    (void)chain;  // without hardware FMA xsimd::fma is a multiply and an add
#endif
  }
}

TEST_CASE("gemm_pack_b pads with zeros and transposes") {
  Rng rng(3);
  const std::size_t K = 5, N = 19;
  const std::size_t NP = gemm_padded_columns<float>(N);
  CHECK(NP % xsimd::batch<float>::size == 0);
  CHECK(NP >= N);
  CHECK(NP < N + xsimd::batch<float>::size);
  const auto B = random_values<float>(K * N, rng);  // (K, N)
  std::vector<float> Bt(N * K);                     // (N, K)
  for (std::size_t p = 0; p < K; ++p)
    for (std::size_t j = 0; j < N; ++j) Bt[j * K + p] = B[p * N + j];
  std::vector<float> packed(K * NP, 7.0f), packed_t(K * NP, 7.0f);
  gemm_pack_b(K, N, B.data(), N, false, packed.data());
  gemm_pack_b(K, N, Bt.data(), K, true, packed_t.data());
  CHECK(packed == packed_t);
  for (std::size_t p = 0; p < K; ++p)
    for (std::size_t j = 0; j < NP; ++j) REQUIRE(packed[p * NP + j] == (j < N ? B[p * N + j] : 0.0f));
}

TEST_CASE("gemm with K = 0 writes the start value; M or N = 0 writes nothing") {
  std::vector<float> C{1.0f, -2.0f, 3.0f, -4.0f}, bias{0.5f, 0.25f};
  GemmEpilogue<float> e;
  e.bias = bias.data();
  e.relu = true;
  gemm(2, 2, 0, static_cast<const float*>(nullptr), 1, false, static_cast<const float*>(nullptr), 2, false,
       C.data(), 2, e);
  CHECK(C == std::vector<float>{0.5f, 0.25f, 0.5f, 0.25f});
  std::vector<float> D{1.0f, 2.0f};
  gemm(0, 2, 3, D.data(), 3, false, D.data(), 2, false, D.data(), 2);
  CHECK(D == std::vector<float>{1.0f, 2.0f});
}

TEST_CASE("simd_fma rounds once, whatever the optimization level") {
  // x * x = 1 + 2e + e^2 with e = 2^-12 (float) or 2^-27 (double): e^2 is half
  // a unit in the last place, so a separate multiply rounds it away (ties to
  // even) and the sum below would be 0. xsimd 8's AVX-512 fma is such a
  // multiply and add unless GCC contracts them, which it does not at -O1,
  // under the sanitizers (scripts/run-sanitizers.sh) or when it folds
  // constants, as here.
  using FB = xsimd::batch<float>;
  const float ef = std::ldexp(1.0f, -12);
  const FB xf(1.0f + ef), zf(-(1.0f + 2 * ef));
  alignas(64) float outf[FB::size];
  simd_fma(xf, xf, zf).store_aligned(outf);
  for (float v : outf) CHECK(v == ef * ef);
  using DB = xsimd::batch<double>;
  const double ed = std::ldexp(1.0, -27);
  const DB xd(1.0 + ed), zd(-(1.0 + 2 * ed));
  alignas(64) double outd[DB::size];
  simd_fma(xd, xd, zd).store_aligned(outd);
  for (double v : outd) CHECK(v == ed * ed);
}
