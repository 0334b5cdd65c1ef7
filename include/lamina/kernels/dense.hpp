// lamina/kernels/dense.hpp: the Dense kernels: Y = X W (+ b, ReLU), dW = X^T dY
// (and db), dX = dY W^T, on lamina's GEMM (kernels/gemm.hpp) or Eigen's, chosen
// pass by pass (dense_gemm).
//
// LAYOUTS
//   x  (N, in)  row-major      w  (in, out)  as Keras stores it
//   b  (out)                   y  (N, out)
//
// CHUNKS AND DETERMINISM
//   Every product is split into chunks fixed by the problem size, never by the
//   thread count (core/threads.hpp): rows of the batch (kDenseRowsPerChunk)
//   for Y and dX, rows of dW (kDenseWeightRowsPerChunk) for dW, each chunk of
//   dW reducing over the whole batch in one fixed order (lamina's GEMM: one
//   FMA chain over the batch rows 0, 1, ..., N-1; Eigen's: its blocking, fixed
//   by the sizes). So the results are bit-identical with any thread count,
//   and with lamina's GEMM a row of Y has the same bits in a batch of any size.
//
// THE SPLIT CONTRACTION
//   A kernel large enough (dense_splits_contraction) is read by the forward in
//   two fixed parts of the contraction, rows [0, k) and [k, in) of W:
//       Y = relu((b + X[:, :k] W[:k, :]) + X[:, k:] W[k:, :]),
//   k = dense_contraction_split(in), where a two-thread static schedule splits
//   backward's dW chunks (and the optimizer's: Layer::parameter_row_chunk), so
//   with two threads each thread reads only the rows of W it writes; a thread
//   that also read the other's rows made the next update invalidate them in
//   the other core's cache (optim/update_plan.hpp). backward data (on Eigen's
//   GEMM) splits dX's columns at the same k. The parts are fixed, so the bits
//   depend neither on the thread count nor on the batch.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include <Eigen/Core>

#include "lamina/core/threads.hpp"
#include "lamina/kernels/activation.hpp"
#include "lamina/kernels/gemm.hpp"

namespace lamina::kernels {

/// Rows of the batch per chunk of Y and dX.
inline constexpr std::size_t kDenseRowsPerChunk = 64;
/// Rows of dW per chunk: six tiles of lamina's GEMM (6 rows each with 64
/// columns), and an even chunk count for the reference models, so that two
/// threads get near-equal halves: 784 inputs make 22 chunks (396 + 388 rows;
/// 24 rows would make 33 chunks, 17 + 16; 56 rows would leave 2-row tiles),
/// 3136 make 88. The forward's contraction split follows (784: rows [0, 396),
/// [396, 784)).
inline constexpr std::size_t kDenseWeightRowsPerChunk = 36;
/// Rows per chunk of the packing copies.
inline constexpr std::size_t kDensePackRowsPerChunk = 64;
/// Kernels of at least this many weights (and two dW chunks) are read in two
/// parts of the contraction by the forward: 784 x 256 and 3136 x 256 are,
/// 256 x 10 is not (too small for the extra pass to pay).
inline constexpr std::size_t kDenseSplitMinWeights = std::size_t{1} << 15;

/// Whether the kernels split the contraction of an (in, out) kernel in two
/// (see THE SPLIT CONTRACTION above).
constexpr bool dense_splits_contraction(std::size_t in, std::size_t out) noexcept {
  return in >= 2 * kDenseWeightRowsPerChunk && in * out >= kDenseSplitMinWeights;
}

/// First row of the contraction's second part: the rows of the first
/// ceil(C / 2) of backward's C dW chunks, which a static schedule gives to the
/// first of two threads (784 inputs: 11 of 22 chunks, rows [0, 396)).
constexpr std::size_t dense_contraction_split(std::size_t in) noexcept {
  const std::size_t chunks = (in + kDenseWeightRowsPerChunk - 1) / kDenseWeightRowsPerChunk;
  return (chunks + 1) / 2 * kDenseWeightRowsPerChunk;
}

/// The GEMM that `pass` runs for a batch of n rows, `in` inputs and `out`
/// outputs when `requested` (lamina or eigen: that one; automatic: the choice
/// below, from bench_layers, 1 thread, batch 128, AVX-512; docs/performance.md,
/// "Dense on lamina's GEMM"):
///  - forward: lamina's GEMM always, bias and ReLU in its epilogue: 784 -> 256
///    and 3136 -> 256 run 1.3x faster than Eigen. On 256 -> 10 (10 outputs
///    computed as 16 with AVX-512 floats) it is about 5% slower (12.0 against
///    11.5 us, 0.05% of an MLP training step) but kept there too: lamina's
///    GEMM computes each row of Y as the same FMA chains whatever the batch,
///    so predictions have the same bits whatever predict()'s batch_size
///    (tests/test_predict_threads.cpp); Eigen's blocking depends on the batch.
///  - backward weights (dW = X^T dY, the reduction over the batch): lamina's
///    GEMM always: X^T is read in place, and each element is one FMA chain
///    over the batch rows in order. Faster on all three shapes, 256 -> 10
///    included (the whole backward 28.5 against 23.9 us).
///  - backward data (dX = dY W^T): Eigen's GEMM. lamina's GEMM reads B by
///    rows, so W^T must be packed (a transposing copy of the whole kernel,
///    0.26 ms for 3136 x 256) on every call: the GEMM alone, packing included,
///    only ties Eigen's (2.53 against 2.60 ms), and inside the layer's backward
///    it is 0.3-0.5 ms slower; on 256 -> 10 the contraction is 10 long.
template <class T>
constexpr GemmKernel dense_gemm(GemmKernel requested, KernelPass pass, std::size_t n, std::size_t in,
                                std::size_t out) noexcept {
  (void)n;
  (void)in;
  (void)out;
  if (requested != GemmKernel::automatic) return requested;
  return pass == KernelPass::backward_data ? GemmKernel::eigen : GemmKernel::lamina;
}

/// Scratch of the Dense kernels, reused across calls (grown, never shrunk).
template <class T>
struct DenseWorkspace {
  std::vector<T> packed;   // B operand of lamina's GEMM when it must be padded or transposed
  std::vector<T> partial;  // (N, out) the forward's second contraction part
};

namespace detail {
// packed (rows, padded cols) = B (rows, cols) or, with trans, the transpose of
// B stored (cols, rows): gemm_pack_b over fixed chunks of rows (a copy, so the
// split does not matter for the bits).
template <class T>
void dense_pack_rows(std::size_t rows, std::size_t cols, const T* b, std::size_t ldb, bool trans, T* packed) {
  const std::size_t ld = gemm_padded_columns<T>(cols);
  parallel_for_ranges(rows, kDensePackRowsPerChunk, [&](const ChunkRange& chunk) {
    const std::size_t p0 = chunk.begin, count = chunk.end - chunk.begin;
    gemm_pack_b<T>(count, cols, trans ? b + p0 : b + p0 * ldb, ldb, trans, packed + p0 * ld);
  });
}
}  // namespace detail

/// y = x w + b, then ReLU (v > 0 ? v : 0) when relu is set. Overwrites y.
template <class T>
void dense_forward(std::size_t n, std::size_t in, std::size_t out,
                   const T* x,  // (N, in)
                   const T* w,  // (in, out)
                   const T* b,  // (out) or nullptr
                   T* y,        // (N, out)
                   bool relu, GemmKernel gemm, DenseWorkspace<T>& workspace) {
  if (dense_gemm<T>(gemm, KernelPass::forward, n, in, out) == GemmKernel::lamina) {
    // Y = X W + b, ReLU in the epilogue. W is read as it is when `out` is a
    // multiple of the SIMD width, else from a zero-padded copy.
    const T* wb = w;
    std::size_t ldw = out;
    if (!gemm_b_usable<T>(out)) {
      ldw = gemm_padded_columns<T>(out);
      workspace.packed.resize(in * ldw);  // (in, padded out)
      detail::dense_pack_rows(in, out, w, out, false, workspace.packed.data());
      wb = workspace.packed.data();
    }
    GemmEpilogue<T> epilogue;
    epilogue.bias = b;
    epilogue.relu = relu;
    if (dense_splits_contraction(in, out)) {
      // The two parts of THE SPLIT CONTRACTION: chunks [0, row_chunks) compute
      // b + X[:, :k] W[:k, :] into y, chunks [row_chunks, 2 row_chunks)
      // X[:, k:] W[k:, :] into `part`; then y = relu(y + part).
      const std::size_t k = dense_contraction_split(in);
      const std::ptrdiff_t row_chunks = chunk_count(n, kDenseRowsPerChunk);
      workspace.partial.resize(n * out);  // (N, out) the second part
      T* part = workspace.partial.data();
      GemmEpilogue<T> first;
      first.bias = b;
      parallel_for(2 * row_chunks, [&](std::ptrdiff_t c) {
        const bool second = c >= row_chunks;
        const std::size_t r0 = static_cast<std::size_t>(second ? c - row_chunks : c) * kDenseRowsPerChunk;
        const std::size_t rows = std::min(kDenseRowsPerChunk, n - r0);
        if (!second)
          gemm_prepacked<T>(rows, out, k, x + r0 * in, in, false, wb, ldw, y + r0 * out, out, first);
        else
          gemm_prepacked<T>(rows, out, in - k, x + r0 * in + k, in, false, wb + k * ldw, ldw, part + r0 * out, out);
      });
      parallel_for_ranges(n * out, kDenseRowsPerChunk * out, [&](const ChunkRange& chunk) {
        const std::size_t begin = chunk.begin, end = chunk.end;
        for (std::size_t i = begin; i < end; ++i) {
          const T v = y[i] + part[i];
          y[i] = relu && !(v > T(0)) ? T(0) : v;
        }
      });
      return;
    }
    parallel_for_ranges(n, kDenseRowsPerChunk, [&](const ChunkRange& chunk) {
      const std::size_t r0 = chunk.begin, rows = chunk.end - chunk.begin;
      gemm_prepacked<T>(rows, out, in, x + r0 * in, in, false, wb, ldw, y + r0 * out, out, epilogue);
    });
    return;
  }
  parallel_for_ranges(n, kDenseRowsPerChunk, [&](const ChunkRange& chunk) {
    const std::size_t r0 = chunk.begin, rows = chunk.end - chunk.begin;
    ConstMatrixMap<T> xs(x + r0 * in, rows, in);
    ConstMatrixMap<T> ws(w, in, out);
    MatrixMap<T> ys(y + r0 * out, rows, out);
    ys.noalias() = xs * ws;
    if (b) ys.rowwise() += ConstRowVectorMap<T>(b, out);
  });
  if (relu) activate_in_place(Activation::relu, y, n * out);
}

/// dw = x^T dy and db = the column sums of dy (skipped when db is nullptr).
/// Both overwritten.
template <class T>
void dense_backward_weights(std::size_t n, std::size_t in, std::size_t out,
                            const T* x,   // (N, in)
                            const T* dy,  // (N, out)
                            T* dw,        // (in, out)
                            T* db,        // (out) or nullptr
                            GemmKernel gemm, DenseWorkspace<T>& workspace) {
  // dW split over rows of dW: each chunk reduces over the whole batch in one
  // fixed order (see CHUNKS AND DETERMINISM).
  if (dense_gemm<T>(gemm, KernelPass::backward_weights, n, in, out) == GemmKernel::lamina) {
    const T* dyb = dy;
    std::size_t ldd = out;
    if (!gemm_b_usable<T>(out)) {
      ldd = gemm_padded_columns<T>(out);
      workspace.packed.resize(n * ldd);  // (N, padded out)
      detail::dense_pack_rows(n, out, dy, out, false, workspace.packed.data());
      dyb = workspace.packed.data();
    }
    parallel_for_ranges(in, kDenseWeightRowsPerChunk, [&](const ChunkRange& chunk) {
      const std::size_t k0 = chunk.begin, rows = chunk.end - chunk.begin;
      // op(A) = x^T: columns [k0, k0 + rows) of x (N, in).
      gemm_prepacked<T>(rows, out, n, x + k0, in, true, dyb, ldd, dw + k0 * out, out);
    });
  } else {
    parallel_for_ranges(in, kDenseWeightRowsPerChunk, [&](const ChunkRange& chunk) {
      const std::size_t k0 = chunk.begin, rows = chunk.end - chunk.begin;
      Eigen::Map<const RowMajorMatrix<T>, 0, Eigen::OuterStride<>> xs(
          x + k0, n, rows, Eigen::OuterStride<>(static_cast<Eigen::Index>(in)));
      MatrixMap<T> dws(dw + k0 * out, rows, out);
      dws.noalias() = xs.transpose() * ConstMatrixMap<T>(dy, n, out);
    });
  }
  if (db) {
    // Column sums in row order: a fixed order.
    std::fill(db, db + out, T(0));
    for (std::size_t r = 0; r < n; ++r)
      for (std::size_t j = 0; j < out; ++j) db[j] += dy[r * out + j];
  }
}

/// dx = dy w^T. Overwrites dx.
template <class T>
void dense_backward_data(std::size_t n, std::size_t in, std::size_t out,
                         const T* dy,  // (N, out)
                         const T* w,   // (in, out)
                         T* dx,        // (N, in)
                         GemmKernel gemm, DenseWorkspace<T>& workspace) {
  // dx = dy W^T, split over rows of the batch.
  if (dense_gemm<T>(gemm, KernelPass::backward_data, n, in, out) == GemmKernel::lamina) {
    // W^T (out, in), packed once per call (zero-padded to the SIMD width).
    const std::size_t ldt = gemm_padded_columns<T>(in);
    workspace.packed.resize(out * ldt);  // (out, padded in)
    detail::dense_pack_rows(out, in, w, out, true, workspace.packed.data());
    const T* wt = workspace.packed.data();
    parallel_for_ranges(n, kDenseRowsPerChunk, [&](const ChunkRange& chunk) {
      const std::size_t r0 = chunk.begin, rows = chunk.end - chunk.begin;
      gemm_prepacked<T>(rows, in, out, dy + r0 * out, out, false, wt, ldt, dx + r0 * in, in);
    });
    return;
  }
  if (dense_splits_contraction(in, out)) {
    // Columns [0, k) and [k, in) of dx from rows [0, k) and [k, in) of W:
    // the forward's two parts, so that each thread reads only its rows of W.
    const std::size_t k = dense_contraction_split(in);
    const std::ptrdiff_t row_chunks = chunk_count(n, kDenseRowsPerChunk);
    parallel_for(2 * row_chunks, [&](std::ptrdiff_t c) {
      const bool second = c >= row_chunks;
      const std::size_t r0 = static_cast<std::size_t>(second ? c - row_chunks : c) * kDenseRowsPerChunk;
      const std::size_t rows = std::min(kDenseRowsPerChunk, n - r0);
      const std::size_t k0 = second ? k : 0, cols = second ? in - k : k;
      Eigen::Map<RowMajorMatrix<T>, 0, Eigen::OuterStride<>> dxs(dx + r0 * in + k0, rows, cols,
                                                                 Eigen::OuterStride<>(static_cast<Eigen::Index>(in)));
      dxs.noalias() = ConstMatrixMap<T>(dy + r0 * out, rows, out) * ConstMatrixMap<T>(w + k0 * out, cols, out).transpose();
    });
    return;
  }
  parallel_for_ranges(n, kDenseRowsPerChunk, [&](const ChunkRange& chunk) {
    const std::size_t r0 = chunk.begin, rows = chunk.end - chunk.begin;
    MatrixMap<T> dxs(dx + r0 * in, rows, in);
    dxs.noalias() = ConstMatrixMap<T>(dy + r0 * out, rows, out) * ConstMatrixMap<T>(w, in, out).transpose();
  });
}

}  // namespace lamina::kernels
