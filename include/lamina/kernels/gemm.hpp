// lamina/kernels/gemm.hpp: lamina's own register-tiled GEMM over xsimd (used by
// the Conv2D and Dense kernels), its reference, the row-major Eigen maps of the
// Eigen GEMMs, and the GemmKernel choice between the two.
//
// WHAT IT COMPUTES
//   C (M, N) = [C +] op(A) (M, K) x B (K, N) [+ bias (N) on every row] [then ReLU]
//   row-major throughout; op(A) is A (M, K) with row stride lda, or the
//   transpose of A stored (K, M) with row stride lda (trans_a). B is read as
//   (K, N) rows of at least round_up(N, W) readable values (W = the xsimd
//   batch size of T): pack_b() makes such a copy, zero-padded, from B or from
//   B^T; a B whose N is a multiple of W can be used as it is.
//
// THE MICRO-KERNEL
//   A tile of MR rows x NV batches of columns (NR = NV * W) of C lives in
//   registers as MR * NV accumulators. For every p of the contraction it loads
//   the NV batches of row p of B, broadcasts each of the MR values a(i, p), and
//   does MR * NV FMAs. MR depends on NV and on the number of vector registers
//   (32 with AVX-512, 16 otherwise), so that accumulators + B row + broadcast
//   fit: AVX-512 float with NV = 2 (32 columns) is 12 x 2, NV = 4 (64
//   columns) is 6 x 4. A is never packed: with op(A) = A, the MR rows are MR
//   pointers read sequentially; with op(A) = A^T, the MR values a(i, p) are
//   contiguous in row p of the stored A. Rows left over after the MR tiles
//   go through tiles of 4 rows, then 1; columns are cut into panels of
//   kGemmMaxVectors batches, the last panel narrower.
//
// BLOCKING AND DETERMINISM
//   The contraction is cut into fixed blocks of kGemmKC (the only blocking;
//   it keeps one block of A and of the B panel in L2 / L1). The first block's
//   tile starts from zero (or the bias row, or C when accumulating), every
//   later block starts from the C the previous block stored, so every element
//   of C is ONE chain of FMAs over p = 0, 1, ..., K - 1, in order:
//       c = fma(a(i, K-1), b(K-1, j), ... fma(a(i, 0), b(0, j), c0))
//   whatever M, N, the tile it falls in, the block size or the thread that
//   runs it. A row of C therefore has the same bits whether it is computed in
//   a GEMM of 1 row or of 10000 (Eigen's blocking depends on the sizes, so its
//   results do not have this property).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <type_traits>
#include <vector>

#include <Eigen/Core>
#include <xsimd/xsimd.hpp>

namespace lamina::kernels {

template <class T>
using RowMajorMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using MatrixMap = Eigen::Map<RowMajorMatrix<T>>;
template <class T>
using ConstMatrixMap = Eigen::Map<const RowMajorMatrix<T>>;
template <class T>
using RowVectorMap = Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>;
template <class T>
using ConstRowVectorMap = Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>;

/// Which GEMM a layer's kernels run: lamina's (this file), Eigen's (on the
/// row-major maps above, single-threaded inside lamina's chunks), or the
/// kernels' own choice pass by pass (automatic, the default: what the Dense
/// and Conv2D kernels measured fastest; dense_gemm in kernels/dense.hpp and
/// conv2d_choose in kernels/conv2d.hpp give the reasons). lamina's and Eigen's
/// results differ in the last bits; each is deterministic and independent of
/// the thread count, and only lamina's gives a row the same bits in a batch
/// of any size (see BLOCKING AND DETERMINISM).
enum class GemmKernel { automatic, lamina, eigen };

inline const char* to_string(GemmKernel g) noexcept {
  switch (g) {
    case GemmKernel::automatic: return "automatic";
    case GemmKernel::lamina: return "lamina";
    case GemmKernel::eigen: return "eigen";
  }
  return "?";
}

/// The three passes of a layer's kernels: y = f(x, w); dx from dy; dw from x and dy.
enum class KernelPass { forward, backward_data, backward_weights };

inline const char* to_string(KernelPass pass) noexcept {
  switch (pass) {
    case KernelPass::forward: return "forward";
    case KernelPass::backward_data: return "backward data";
    case KernelPass::backward_weights: return "backward weights";
  }
  return "?";
}

/// Contraction block of lamina's GEMM: fixed, so that no result depends on M,
/// N or the thread count (and blocking does not change any rounding anyway:
/// each block continues the previous block's accumulation chain).
inline constexpr std::size_t kGemmKC = 256;
/// Widest column panel, in xsimd batches.
inline constexpr std::size_t kGemmMaxVectors = 4;

/// x * y + z rounded once, for xsimd batches. xsimd 8 has no fused
/// multiply-add for AVX-512 batches: its xsimd::fma falls back to x * y + z,
/// which GCC fuses only when it contracts (at -O2 and up, but not under the
/// sanitizers nor when it folds constants), so the GEMM's bits would depend
/// on the build flags (tests/test_gemm.cpp, found by the sanitizer build).
/// AVX-512 batches therefore use the intrinsic; other architectures keep
/// xsimd::fma (fused where the hardware has FMA).
template <class T, class A>
[[gnu::always_inline]] inline xsimd::batch<T, A> simd_fma(const xsimd::batch<T, A>& x, const xsimd::batch<T, A>& y,
                                                          const xsimd::batch<T, A>& z) {
#if XSIMD_WITH_AVX512F
  if constexpr (std::is_base_of_v<xsimd::avx512f, A> && std::is_same_v<T, float>)
    return _mm512_fmadd_ps(x, y, z);
  else if constexpr (std::is_base_of_v<xsimd::avx512f, A> && std::is_same_v<T, double>)
    return _mm512_fmadd_pd(x, y, z);
  else
#endif
    return xsimd::fma(x, y, z);
}

/// What the GEMM does besides the product.
template <class T>
struct GemmEpilogue {
  const T* bias = nullptr;  // (N) added to every row (the chain starts from it), or nullptr
  bool accumulate = false;  // C += product (the chain starts from C); else C is overwritten
  bool relu = false;        // C = C > 0 ? C : 0 at the end (NaN becomes 0, as in activate_in_place)
};

/// Columns B must have readable in each row: N rounded up to the batch size.
template <class T>
constexpr std::size_t gemm_padded_columns(std::size_t n) noexcept {
  constexpr std::size_t W = xsimd::batch<T>::size;
  return (n + W - 1) / W * W;
}

/// True when B (K, N) with row stride ldb can be used by gemm_prepacked as it is.
template <class T>
constexpr bool gemm_b_usable(std::size_t n) noexcept {
  return n % xsimd::batch<T>::size == 0;
}

/// packed (K, gemm_padded_columns(N)) = B, zero-padded on the right. B is
/// (K, N) with row stride ldb, or with trans_b the transpose of B stored as
/// (N, K) with row stride ldb.
template <class T>
void gemm_pack_b(std::size_t K, std::size_t N, const T* B, std::size_t ldb, bool trans_b,
                 T* packed) {  // (K, padded N)
  const std::size_t NP = gemm_padded_columns<T>(N);
  if (!trans_b) {
    for (std::size_t p = 0; p < K; ++p) {
      std::memcpy(packed + p * NP, B + p * ldb, N * sizeof(T));
      std::fill(packed + p * NP + N, packed + (p + 1) * NP, T(0));
    }
    return;
  }
  // Transpose in 16 x 16 blocks so that both sides stay in cache lines.
  constexpr std::size_t tile = 16;
  for (std::size_t p = 0; p < K; ++p) std::fill(packed + p * NP + N, packed + (p + 1) * NP, T(0));
  for (std::size_t j0 = 0; j0 < N; j0 += tile)
    for (std::size_t p0 = 0; p0 < K; p0 += tile) {
      const std::size_t j1 = std::min(N, j0 + tile), p1 = std::min(K, p0 + tile);
      for (std::size_t j = j0; j < j1; ++j)
        for (std::size_t p = p0; p < p1; ++p) packed[p * NP + j] = B[j * ldb + p];
    }
}

namespace detail {

inline constexpr std::size_t kGemmVectorRegisters =
#if defined(__AVX512F__) || defined(__aarch64__)
    32;
#else
    16;
#endif

/// Rows of the main tile for NV batches of columns: MR * NV accumulators, NV
/// batches of B and one broadcast in the vector registers; at most 12 (each
/// row of a non-transposed A also needs a general-purpose register).
constexpr std::size_t gemm_main_rows(std::size_t nv) {
  const std::size_t fit = (kGemmVectorRegisters - nv - 1) / nv;
  return fit < 1 ? 1 : (fit > 12 ? 12 : fit);
}

// The pieces of one MR x (NV * W) tile of C, always inlined so that the
// accumulators stay in registers: gemm_tile below, and the Conv2D forward's
// implicit-im2col tile (kernels/conv2d.hpp), which feeds the same FMA loop
// with rows that point into the images.
template <class T, std::size_t MR, std::size_t NV>
struct GemmTile {
  xsimd::batch<T> acc[MR][NV];
};

// Starts the chains: start == 0 from zero; 1 from the bias row; 2 from C;
// 3 from C + bias. Only the first `cols` columns of C and bias are read.
template <class T, std::size_t MR, std::size_t NV>
[[gnu::always_inline]] inline void gemm_tile_start(GemmTile<T, MR, NV>& t, const T* c, std::size_t ldc,
                                                   std::size_t cols, int start, const T* bias) {
  using Batch = xsimd::batch<T>;
  constexpr std::size_t W = Batch::size;
  const bool full = cols == NV * W;
  if (start >= 2 && !full) {
    alignas(64) T row[NV * W] = {};
#pragma GCC unroll 16
    for (std::size_t i = 0; i < MR; ++i) {
      std::memcpy(row, c + i * ldc, cols * sizeof(T));
#pragma GCC unroll 4
      for (std::size_t v = 0; v < NV; ++v) t.acc[i][v] = Batch::load_aligned(row + v * W);
    }
  } else if (start >= 2) {
#pragma GCC unroll 16
    for (std::size_t i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (std::size_t v = 0; v < NV; ++v) t.acc[i][v] = Batch::load_unaligned(c + i * ldc + v * W);
  } else {
    Batch init[NV];
#pragma GCC unroll 4
    for (std::size_t v = 0; v < NV; ++v) init[v] = Batch(T(0));
    if (start == 1) {
      alignas(64) T row[NV * W] = {};
      std::memcpy(row, bias, cols * sizeof(T));
#pragma GCC unroll 4
      for (std::size_t v = 0; v < NV; ++v) init[v] = Batch::load_aligned(row + v * W);
    }
#pragma GCC unroll 16
    for (std::size_t i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (std::size_t v = 0; v < NV; ++v) t.acc[i][v] = init[v];
  }
  if (start == 3) {
    alignas(64) T row[NV * W] = {};
    std::memcpy(row, bias, cols * sizeof(T));
#pragma GCC unroll 16
    for (std::size_t i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (std::size_t v = 0; v < NV; ++v) t.acc[i][v] += Batch::load_aligned(row + v * W);
  }
}

// acc[i] += sum_{p < kc} ar[i][p] * b[p * ldb, + NV * W): rows of op(A) given
// as MR pointers.
template <class T, std::size_t MR, std::size_t NV>
[[gnu::always_inline]] inline void gemm_tile_rows(GemmTile<T, MR, NV>& t, std::size_t kc, const T* const* rows,
                                                  const T* b, std::size_t ldb) {
  using Batch = xsimd::batch<T>;
  constexpr std::size_t W = Batch::size;
  const T* ar[MR];
#pragma GCC unroll 16
  for (std::size_t i = 0; i < MR; ++i) ar[i] = rows[i];
  for (std::size_t p = 0; p < kc; ++p) {
    const T* bp = b + p * ldb;
    Batch bv[NV];
#pragma GCC unroll 4
    for (std::size_t v = 0; v < NV; ++v) bv[v] = Batch::load_unaligned(bp + v * W);
#pragma GCC unroll 16
    for (std::size_t i = 0; i < MR; ++i) {
      const Batch ai(ar[i][p]);
#pragma GCC unroll 4
      for (std::size_t v = 0; v < NV; ++v) t.acc[i][v] = simd_fma(ai, bv[v], t.acc[i][v]);
    }
  }
}

// acc[i] += sum_{p < kc} a[p * lda + i] * b[p * ldb, + NV * W): op(A) = A^T.
template <class T, std::size_t MR, std::size_t NV>
[[gnu::always_inline]] inline void gemm_tile_columns(GemmTile<T, MR, NV>& t, std::size_t kc, const T* a,
                                                     std::size_t lda, const T* b, std::size_t ldb) {
  using Batch = xsimd::batch<T>;
  constexpr std::size_t W = Batch::size;
  for (std::size_t p = 0; p < kc; ++p) {
    const T* ap = a + p * lda;  // a(0..MR, p), contiguous
    const T* bp = b + p * ldb;
    Batch bv[NV];
#pragma GCC unroll 4
    for (std::size_t v = 0; v < NV; ++v) bv[v] = Batch::load_unaligned(bp + v * W);
#pragma GCC unroll 16
    for (std::size_t i = 0; i < MR; ++i) {
      const Batch ai(ap[i]);
#pragma GCC unroll 4
      for (std::size_t v = 0; v < NV; ++v) t.acc[i][v] = simd_fma(ai, bv[v], t.acc[i][v]);
    }
  }
}

// Stores the first `cols` columns of the tile, after ReLU (v > 0 ? v : 0) if asked.
template <class T, std::size_t MR, std::size_t NV>
[[gnu::always_inline]] inline void gemm_tile_store(GemmTile<T, MR, NV>& t, T* c, std::size_t ldc,
                                                   std::size_t cols, bool relu) {
  using Batch = xsimd::batch<T>;
  constexpr std::size_t W = Batch::size;
  if (relu) {
    const Batch zero(T(0));
#pragma GCC unroll 16
    for (std::size_t i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (std::size_t v = 0; v < NV; ++v) t.acc[i][v] = xsimd::select(t.acc[i][v] > zero, t.acc[i][v], zero);
  }
  if (cols == NV * W) {
#pragma GCC unroll 16
    for (std::size_t i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (std::size_t v = 0; v < NV; ++v) t.acc[i][v].store_unaligned(c + i * ldc + v * W);
  } else {
    alignas(64) T row[NV * W];
    for (std::size_t i = 0; i < MR; ++i) {
      for (std::size_t v = 0; v < NV; ++v) t.acc[i][v].store_aligned(row + v * W);
      std::memcpy(c + i * ldc, row, cols * sizeof(T));
    }
  }
}

// One MR x (NV * W) tile of C over the contraction [0, kc) (see gemm_tile_start
// for `start`). a(i, p) is a[i * lda + p], or a[p * lda + i] with TransA;
// b(p, j) is b[p * ldb + j] for j < NV * W. Only the first `cols` columns are stored.
template <class T, std::size_t MR, std::size_t NV, bool TransA>
inline void gemm_tile(std::size_t kc, const T* a, std::size_t lda, const T* b, std::size_t ldb,
                      T* c, std::size_t ldc, std::size_t cols, int start, const T* bias,
                      bool relu) {
  GemmTile<T, MR, NV> t;
  gemm_tile_start(t, c, ldc, cols, start, bias);
  if constexpr (TransA) {
    gemm_tile_columns(t, kc, a, lda, b, ldb);
  } else {
    const T* rows[MR];  // row i of the tile of A
#pragma GCC unroll 16
    for (std::size_t i = 0; i < MR; ++i) rows[i] = a + i * lda;
    gemm_tile_rows(t, kc, rows, b, ldb);
  }
  gemm_tile_store(t, c, ldc, cols, relu);
}

// All rows [0, M) of one column panel of NV batches (cols valid columns), for
// the contraction block [p0, p0 + kc): tiles of the main height, then of 8
// rows (when the main height is larger: M = 32 is 12 + 12 + 8, not
// 12 + 12 + 4 + 4, whose 4-row tiles have too few accumulators to hide the
// FMA latency), then of 4, then of 1 (every element gets the same chain
// whichever tile it is in).
template <class T, std::size_t NV, bool TransA>
inline void gemm_panel(std::size_t M, std::size_t kc, const T* a, std::size_t lda, const T* b,
                       std::size_t ldb, T* c, std::size_t ldc, std::size_t cols, int start,
                       const T* bias, bool relu) {
  constexpr std::size_t MR = gemm_main_rows(NV);
  constexpr std::size_t MR8 = MR < 8 ? MR : 8;
  constexpr std::size_t MR4 = MR < 4 ? MR : 4;
  // a + row offset of tile row i0: rows of A, or columns of the stored A^T.
  auto a_at = [&](std::size_t i0) { return TransA ? a + i0 : a + i0 * lda; };
  std::size_t i = 0;
  for (; i + MR <= M; i += MR)
    gemm_tile<T, MR, NV, TransA>(kc, a_at(i), lda, b, ldb, c + i * ldc, ldc, cols, start, bias, relu);
  if constexpr (MR8 < MR)
    for (; i + MR8 <= M; i += MR8)
      gemm_tile<T, MR8, NV, TransA>(kc, a_at(i), lda, b, ldb, c + i * ldc, ldc, cols, start, bias, relu);
  for (; i + MR4 <= M; i += MR4)
    gemm_tile<T, MR4, NV, TransA>(kc, a_at(i), lda, b, ldb, c + i * ldc, ldc, cols, start, bias, relu);
  for (; i < M; ++i)
    gemm_tile<T, 1, NV, TransA>(kc, a_at(i), lda, b, ldb, c + i * ldc, ldc, cols, start, bias, relu);
}

template <class T, bool TransA>
inline void gemm_dispatch(std::size_t M, std::size_t N, std::size_t K, const T* A, std::size_t lda,
                          const T* B, std::size_t ldb, T* C, std::size_t ldc,
                          const GemmEpilogue<T>& epilogue) {
  constexpr std::size_t W = xsimd::batch<T>::size;
  constexpr std::size_t NR = kGemmMaxVectors * W;
  if (M == 0 || N == 0) return;
  if (K == 0) {  // no products: C = start value
    for (std::size_t i = 0; i < M; ++i)
      for (std::size_t j = 0; j < N; ++j) {
        T v = epilogue.accumulate ? C[i * ldc + j] : T(0);
        if (epilogue.bias) v = epilogue.accumulate ? v + epilogue.bias[j] : epilogue.bias[j];
        C[i * ldc + j] = epilogue.relu && !(v > T(0)) ? T(0) : v;
      }
    return;
  }
  for (std::size_t p0 = 0; p0 < K; p0 += kGemmKC) {
    const std::size_t kc = std::min(kGemmKC, K - p0);
    const bool first = p0 == 0, last = p0 + kc == K;
    // Accumulating with a bias: the chain starts from C + bias.
    const int start = !first                ? 2
                      : epilogue.accumulate ? (epilogue.bias ? 3 : 2)
                      : epilogue.bias       ? 1
                                            : 0;
    const bool relu = last && epilogue.relu;
    const T* a = TransA ? A + p0 * lda : A + p0;
    const T* b = B + p0 * ldb;
    for (std::size_t j0 = 0; j0 < N; j0 += NR) {
      const std::size_t cols = std::min(NR, N - j0);
      const std::size_t nv = (cols + W - 1) / W;
      const T* bias = epilogue.bias ? epilogue.bias + j0 : nullptr;
      T* c = C + j0;
      switch (nv) {
        case 1: gemm_panel<T, 1, TransA>(M, kc, a, lda, b + j0, ldb, c, ldc, cols, start, bias, relu); break;
        case 2: gemm_panel<T, 2, TransA>(M, kc, a, lda, b + j0, ldb, c, ldc, cols, start, bias, relu); break;
        case 3: gemm_panel<T, 3, TransA>(M, kc, a, lda, b + j0, ldb, c, ldc, cols, start, bias, relu); break;
        default: gemm_panel<T, 4, TransA>(M, kc, a, lda, b + j0, ldb, c, ldc, cols, start, bias, relu); break;
      }
    }
  }
}

}  // namespace detail

/// C (M, N) = op(A) (M, K) x B (K, N) with the epilogue (see the top of the
/// file). op(A) = A stored (M, K) with row stride lda, or with trans_a A^T
/// for A stored (K, M) with row stride lda. B is (K, N) with row stride ldb
/// and must have gemm_padded_columns<T>(N) readable values per row (use
/// gemm_pack_b when N is not a multiple of the batch size); the values past
/// N do not change C. C has row stride ldc. Serial; allocates nothing.
template <class T>
void gemm_prepacked(std::size_t M, std::size_t N, std::size_t K, const T* A, std::size_t lda,
                    bool trans_a, const T* B, std::size_t ldb, T* C, std::size_t ldc,
                    const GemmEpilogue<T>& epilogue = {}) {
  if (trans_a)
    detail::gemm_dispatch<T, true>(M, N, K, A, lda, B, ldb, C, ldc, epilogue);
  else
    detail::gemm_dispatch<T, false>(M, N, K, A, lda, B, ldb, C, ldc, epilogue);
}

/// C (M, N) = op(A) x op(B) with the epilogue: op(B) = B stored (K, N), or
/// with trans_b B^T for B stored (N, K); row strides lda, ldb, ldc. Packs B
/// (allocating) when it is transposed or N is not a multiple of the batch
/// size; callers that run many GEMMs with one B pack it once with
/// gemm_pack_b and call gemm_prepacked.
template <class T>
void gemm(std::size_t M, std::size_t N, std::size_t K, const T* A, std::size_t lda, bool trans_a,
          const T* B, std::size_t ldb, bool trans_b, T* C, std::size_t ldc,
          const GemmEpilogue<T>& epilogue = {}) {
  if (M == 0 || N == 0) return;
  if (!trans_b && gemm_b_usable<T>(N)) {
    gemm_prepacked(M, N, K, A, lda, trans_a, B, ldb, C, ldc, epilogue);
    return;
  }
  const std::size_t NP = gemm_padded_columns<T>(N);
  std::vector<T> packed(K * NP);  // (K, NP)
  gemm_pack_b(K, N, B, ldb, trans_b, packed.data());
  gemm_prepacked(M, N, K, A, lda, trans_a, packed.data(), NP, C, ldc, epilogue);
}

/// Reference of gemm (same arguments): plain loops accumulated in double,
/// rounded once to T.
template <class T>
void gemm_reference(std::size_t M, std::size_t N, std::size_t K, const T* A, std::size_t lda,
                    bool trans_a, const T* B, std::size_t ldb, bool trans_b, T* C, std::size_t ldc,
                    const GemmEpilogue<T>& epilogue = {}) {
  for (std::size_t i = 0; i < M; ++i)
    for (std::size_t j = 0; j < N; ++j) {
      double sum = epilogue.accumulate ? double(C[i * ldc + j]) : 0.0;
      if (epilogue.bias) sum += double(epilogue.bias[j]);
      for (std::size_t p = 0; p < K; ++p) {
        const double a = trans_a ? A[p * lda + i] : A[i * lda + p];
        const double b = trans_b ? B[j * ldb + p] : B[p * ldb + j];
        sum += a * b;
      }
      const T v = static_cast<T>(sum);
      C[i * ldc + j] = epilogue.relu && !(v > T(0)) ? T(0) : v;
    }
}

}  // namespace lamina::kernels
