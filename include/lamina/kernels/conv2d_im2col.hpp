// lamina/kernels/conv2d_im2col.hpp: the im2col algorithm of the Conv2D
// kernels: im2col (kernels/im2col.hpp) + a GEMM, lamina's own
// (kernels/gemm.hpp) or Eigen's, parallel over the fixed batch chunks of
// kernels/conv2d_workspace.hpp. It runs every geometry.
//
// THE THREE KERNELS (M = rows of the chunk, K = KH*KW*C)
//   forward:          out = im2col(x) x kernel + bias [then ReLU]
//   backward data:    cols = grad_out (M, F) x kernel^T (F, K); grad_in = col2im(cols)
//   backward weights: partial kernel grad = im2col(x)^T (K, M) x grad_out (M, F),
//                     partial bias grad = column sums of grad_out (M, F),
//                     then the chunks' partials are summed in chunk order
//   A 1x1 kernel with stride 1 skips im2col/col2im: its column matrix is the
//   input itself.
//
// WITH LAMINA'S GEMM (register tiles of MR rows x up to 4 batches of columns,
// fixed contraction blocks, one FMA chain per element)
//   - forward: "implicit im2col": the GEMM's tiles read each pixel's kernel
//     rows straight from the image (detail::conv2d_forward_tile), no column
//     buffer; bias and ReLU are applied in the tile's epilogue;
//   - backward data: kernel^T packed once per call, (F, padded K); the GEMM
//     writes the chunk's column gradient, col2im scatters it;
//   - backward weights: A^T is read from a table of row pointers into the
//     images (detail::conv2d_backward_weights_rows) when a kernel row holds at
//     least one batch, else from an im2col buffer.
//   Forward and backward data then compute every element as one FMA chain over
//   the contraction in order, whatever the tile, the chunk or the batch it
//   falls in, so an image's output and input gradient have the same bits in a
//   batch of 1 or of 1000 (Eigen's blocking depends on the matrix sizes).
// WITH EIGEN'S GEMM: row-major maps with noalias(), one GEMM per chunk.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>

#include <Eigen/Core>
#include <xsimd/xsimd.hpp>

#include "lamina/core/threads.hpp"
#include "lamina/kernels/conv2d_workspace.hpp"
#include "lamina/kernels/gemm.hpp"
#include "lamina/kernels/im2col.hpp"

namespace lamina::kernels {

namespace detail {

// The forward pass without an im2col buffer ("implicit im2col"). Output rows
// [m0, m0 + MR) (pixels of the whole batch, NHWC order) times the columns
// [j0, j0 + cols) of one panel: the tile's MR rows of the column matrix are
// never built; for kernel row kh, row i of the tile is the KW * C contiguous
// input values its pixel reads, read straight from the image when all KW taps
// fall inside it, from a zero row when kernel row kh lies in the padding, and
// from a row of `scratch` built like im2col builds it when some taps do. The
// FMA loop (gemm_tile_rows) runs over kh = 0, 1, ... with the kernel's rows
// [kh * KW * C, (kh + 1) * KW * C): the same chain per element as the GEMM on
// an im2col buffer, so the same bits.
//   scratch: (kConv2DMaxTileRows + 1, KW * C), the last row all zeros.
template <class T, std::size_t MR, std::size_t NV>
inline void conv2d_forward_tile(const Conv2DGeometry& g, const T* input, std::size_t m0,
                                const T* weights, std::size_t ldw, T* out, std::size_t cols,
                                const T* bias, bool relu, T* scratch) {
  const std::size_t seg = g.KW * g.C;
  const std::size_t pixels = g.OH * g.OW;
  const T* zeros = scratch + kConv2DMaxTileRows * seg;
  std::ptrdiff_t ih0[MR], iw0[MR];
  const T* image[MR];
  for (std::size_t i = 0; i < MR; ++i) {
    const std::size_t m = m0 + i, n = m / pixels, r = m % pixels;
    ih0[i] = static_cast<std::ptrdiff_t>((r / g.OW) * g.sh) - static_cast<std::ptrdiff_t>(g.pad_top);
    iw0[i] = static_cast<std::ptrdiff_t>((r % g.OW) * g.sw) - static_cast<std::ptrdiff_t>(g.pad_left);
    image[i] = input + n * g.H * g.W * g.C;  // (H, W, C)
  }
  const auto H = static_cast<std::ptrdiff_t>(g.H), W = static_cast<std::ptrdiff_t>(g.W);
  const auto KW = static_cast<std::ptrdiff_t>(g.KW);
  GemmTile<T, MR, NV> t;
  gemm_tile_start(t, out, g.F, cols, bias ? 1 : 0, bias);
  for (std::size_t kh = 0; kh < g.KH; ++kh) {
    const T* rows[MR];
    for (std::size_t i = 0; i < MR; ++i) {
      const std::ptrdiff_t ih = ih0[i] + static_cast<std::ptrdiff_t>(kh);
      if (ih < 0 || ih >= H) {
        rows[i] = zeros;
        continue;
      }
      if (iw0[i] >= 0 && iw0[i] + KW <= W) {
        rows[i] = image[i] + static_cast<std::size_t>(ih * W + iw0[i]) * g.C;
        continue;
      }
      // Some taps in the padding: build the row as im2col would.
      const TapRange taps = tap_range(iw0[i], KW, W);
      T* row = scratch + i * seg;
      const std::size_t lo = static_cast<std::size_t>(taps.lo) * g.C, hi = static_cast<std::size_t>(taps.hi) * g.C;
      std::fill(row, row + lo, T(0));
      if (hi > lo)
        std::memcpy(row + lo, image[i] + static_cast<std::size_t>(ih * W + iw0[i] + taps.lo) * g.C,
                    (hi - lo) * sizeof(T));
      std::fill(row + hi, row + seg, T(0));
      rows[i] = row;
    }
    gemm_tile_rows(t, seg, rows, weights + kh * seg * ldw, ldw);
  }
  gemm_tile_store(t, out, g.F, cols, relu);
}

// Output rows [m_begin, m_end) of the implicit forward, one column panel.
template <class T, std::size_t NV>
inline void conv2d_forward_panel(const Conv2DGeometry& g, const T* input, std::size_t m_begin,
                                 std::size_t m_end, const T* weights, std::size_t ldw, T* output,
                                 std::size_t cols, const T* bias, bool relu, T* scratch) {
  constexpr std::size_t MR = gemm_main_rows(NV);
  constexpr std::size_t MR4 = MR < 4 ? MR : 4;
  std::size_t m = m_begin;
  for (; m + MR <= m_end; m += MR)
    conv2d_forward_tile<T, MR, NV>(g, input, m, weights, ldw, output + m * g.F, cols, bias, relu, scratch);
  for (; m + MR4 <= m_end; m += MR4)
    conv2d_forward_tile<T, MR4, NV>(g, input, m, weights, ldw, output + m * g.F, cols, bias, relu, scratch);
  for (; m < m_end; ++m)
    conv2d_forward_tile<T, 1, NV>(g, input, m, weights, ldw, output + m * g.F, cols, bias, relu, scratch);
}

// The implicit forward of output rows [m_begin, m_end): every column panel.
//   weights (KH*KW*C, >= padded F) with row stride ldw; scratch as above.
template <class T>
inline void conv2d_forward_rows(const Conv2DGeometry& g, const T* input, std::size_t m_begin,
                                std::size_t m_end, const T* weights, std::size_t ldw, const T* bias,
                                bool relu, T* output, T* scratch) {
  constexpr std::size_t W = xsimd::batch<T>::size;
  constexpr std::size_t NR = kGemmMaxVectors * W;
  const std::size_t seg = g.KW * g.C;
  std::fill(scratch + kConv2DMaxTileRows * seg, scratch + (kConv2DMaxTileRows + 1) * seg, T(0));  // zero row
  for (std::size_t j0 = 0; j0 < g.F; j0 += NR) {
    const std::size_t cols = std::min(NR, g.F - j0);
    const std::size_t nv = (cols + W - 1) / W;
    const T* b = bias ? bias + j0 : nullptr;
    T* out = output + j0;
    switch (nv) {
      case 1: conv2d_forward_panel<T, 1>(g, input, m_begin, m_end, weights + j0, ldw, out, cols, b, relu, scratch); break;
      case 2: conv2d_forward_panel<T, 2>(g, input, m_begin, m_end, weights + j0, ldw, out, cols, b, relu, scratch); break;
      case 3: conv2d_forward_panel<T, 3>(g, input, m_begin, m_end, weights + j0, ldw, out, cols, b, relu, scratch); break;
      default: conv2d_forward_panel<T, 4>(g, input, m_begin, m_end, weights + j0, ldw, out, cols, b, relu, scratch); break;
    }
  }
}

// The weight gradient of one chunk without an im2col buffer. kernel_grad
// (K, F) = cols^T (K, rows) x go (rows, F), where cols is the chunk's column
// matrix, never built: for kernel row kh, `table[m]` points at the KW * C
// values pixel m reads (into the image, at a zero row, or at a border row
// built in `scratch`), and the tiles of MR rows k in [kh * KW*C, (kh+1) * KW*C)
// read a(k, m) = table[m][k - kh * KW*C]. The contraction over m runs in the
// blocks of kGemmKC and the same order as gemm_prepacked on the column
// matrix, so the bits are the same.
//   go (rows, >= padded F) with row stride ldb; scratch: a zero row, then (rows, KW * C).
template <class T, std::size_t MR, std::size_t NV>
inline void conv2d_weights_tile(std::size_t rows, const T* const* table, std::size_t offset, const T* go,
                                std::size_t ldb, T* c, std::size_t ldc, std::size_t cols) {
  using Batch = xsimd::batch<T>;
  constexpr std::size_t W = Batch::size;
  GemmTile<T, MR, NV> t;
  for (std::size_t p0 = 0; p0 < rows; p0 += kGemmKC) {
    const std::size_t kc = std::min(kGemmKC, rows - p0);
    gemm_tile_start(t, c, ldc, cols, p0 == 0 ? 0 : 2, static_cast<const T*>(nullptr));
    for (std::size_t p = p0; p < p0 + kc; ++p) {
      const T* ap = table[p] + offset;  // a(0..MR, p), contiguous
      const T* bp = go + p * ldb;
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
    gemm_tile_store(t, c, ldc, cols, false);
  }
}

template <class T, std::size_t NV>
inline void conv2d_weights_panel(std::size_t seg, std::size_t rows, const T* const* table, const T* go,
                                 std::size_t ldb, T* c, std::size_t ldc, std::size_t cols) {
  constexpr std::size_t MR = gemm_main_rows(NV);
  constexpr std::size_t MR4 = MR < 4 ? MR : 4;
  std::size_t i = 0;
  for (; i + MR <= seg; i += MR) conv2d_weights_tile<T, MR, NV>(rows, table, i, go, ldb, c + i * ldc, ldc, cols);
  for (; i + MR4 <= seg; i += MR4) conv2d_weights_tile<T, MR4, NV>(rows, table, i, go, ldb, c + i * ldc, ldc, cols);
  for (; i < seg; ++i) conv2d_weights_tile<T, 1, NV>(rows, table, i, go, ldb, c + i * ldc, ldc, cols);
}

// kernel_part (K, F) for the chunk of images [n0, n1); see conv2d_weights_tile.
template <class T>
inline void conv2d_backward_weights_rows(const Conv2DGeometry& g, const T* input, std::size_t n0, std::size_t n1,
                                         const T* go, std::size_t ldb, T* kernel_part, const T** table,
                                         T* scratch) {
  constexpr std::size_t W = xsimd::batch<T>::size;
  constexpr std::size_t NR = kGemmMaxVectors * W;
  const std::size_t seg = g.KW * g.C;
  const std::size_t rows = (n1 - n0) * g.pixels_per_image();
  T* zeros = scratch;        // (KW * C)
  T* border = scratch + seg;  // (rows, KW * C), row m used when pixel m needs one
  std::fill(zeros, zeros + seg, T(0));
  const auto H = static_cast<std::ptrdiff_t>(g.H), Wd = static_cast<std::ptrdiff_t>(g.W);
  const auto KW = static_cast<std::ptrdiff_t>(g.KW);
  for (std::size_t kh = 0; kh < g.KH; ++kh) {
    // The row table of kernel row kh.
    std::size_t m = 0;
    for (std::size_t n = n0; n < n1; ++n) {
      const T* image = input + n * g.H * g.W * g.C;  // (H, W, C)
      for (std::size_t oh = 0; oh < g.OH; ++oh) {
        const std::ptrdiff_t ih = static_cast<std::ptrdiff_t>(oh * g.sh + kh) - static_cast<std::ptrdiff_t>(g.pad_top);
        for (std::size_t ow = 0; ow < g.OW; ++ow, ++m) {
          const std::ptrdiff_t iw0 = static_cast<std::ptrdiff_t>(ow * g.sw) - static_cast<std::ptrdiff_t>(g.pad_left);
          if (ih < 0 || ih >= H) {
            table[m] = zeros;
          } else if (iw0 >= 0 && iw0 + KW <= Wd) {
            table[m] = image + static_cast<std::size_t>(ih * Wd + iw0) * g.C;
          } else {
            const TapRange taps = tap_range(iw0, KW, Wd);
            T* row = border + m * seg;
            const std::size_t lo = static_cast<std::size_t>(taps.lo) * g.C, hi = static_cast<std::size_t>(taps.hi) * g.C;
            std::fill(row, row + lo, T(0));
            if (hi > lo)
              std::memcpy(row + lo, image + static_cast<std::size_t>(ih * Wd + iw0 + taps.lo) * g.C,
                          (hi - lo) * sizeof(T));
            std::fill(row + hi, row + seg, T(0));
            table[m] = row;
          }
        }
      }
    }
    T* c = kernel_part + kh * seg * g.F;  // rows [kh * seg, (kh + 1) * seg) of (K, F)
    for (std::size_t j0 = 0; j0 < g.F; j0 += NR) {
      const std::size_t cols = std::min(NR, g.F - j0);
      switch ((cols + W - 1) / W) {
        case 1: conv2d_weights_panel<T, 1>(seg, rows, table, go + j0, ldb, c + j0, g.F, cols); break;
        case 2: conv2d_weights_panel<T, 2>(seg, rows, table, go + j0, ldb, c + j0, g.F, cols); break;
        case 3: conv2d_weights_panel<T, 3>(seg, rows, table, go + j0, ldb, c + j0, g.F, cols); break;
        default: conv2d_weights_panel<T, 4>(seg, rows, table, go + j0, ldb, c + j0, g.F, cols); break;
      }
    }
  }
}

/// True when conv2d_backward_weights with lamina's GEMM reads the images
/// directly: one kernel row of a pixel is at least one batch (KW * C >= W);
/// with fewer values (a one-channel 3x3 layer: 3) an im2col buffer is faster.
template <class T>
bool conv2d_weights_implicit(const Conv2DGeometry& g) {
  return g.KW * g.C >= xsimd::batch<T>::size && !g.is_pointwise();
}

}  // namespace detail

/// output = conv(input, kernel) + bias, then ReLU (v > 0 ? v : 0, exactly as
/// activate_in_place) when relu is set, by im2col + `gemm` (lamina or eigen).
/// Overwrites output.
template <class T>
void conv2d_im2col_forward(const Conv2DGeometry& g,
                           const T* input,   // (N, H, W, C)
                           const T* kernel,  // (KH, KW, C, F)
                           const T* bias,    // (F) or nullptr
                           T* output,        // (N, OH, OW, F)
                           Conv2DWorkspace<T>& workspace, GemmKernel gemm, bool relu) {
  const Conv2DChunking chunking = conv2d_chunking<T>(g);
  const std::size_t workers = Conv2DWorkspace<T>::worker_count(chunking);
  const bool pointwise = g.is_pointwise();
  if (!pointwise) workspace.reserve_columns(g, chunking, workers);
  const std::size_t K = g.patch_size();
  const bool use_lamina = gemm != GemmKernel::eigen;
  // lamina's GEMM reads the kernel (K, F) as it is when F is a multiple of the
  // batch size, else a zero-padded copy (K, padded F).
  const T* weights = kernel;
  std::size_t weights_stride = g.F;
  if (use_lamina && !gemm_b_usable<T>(g.F)) {
    weights_stride = gemm_padded_columns<T>(g.F);
    workspace.reserve_packed(K * weights_stride);
    gemm_pack_b(K, g.F, kernel, g.F, false, workspace.packed());
    weights = workspace.packed();
  }

  parallel_for_ranges(g.N, chunking.images_per_chunk, [&](const ChunkRange& chunk) {
    const std::size_t n0 = chunk.begin, n1 = chunk.end;
    const std::size_t row0 = n0 * g.pixels_per_image();
    const std::size_t rows = (n1 - n0) * g.pixels_per_image();
    T* out = output + row0 * g.F;  // (rows, F)
    if (use_lamina && !pointwise) {
      // Implicit im2col: the GEMM reads the images directly (detail::conv2d_forward_tile).
      T* scratch = workspace.columns(Conv2DWorkspace<T>::worker_index(workers));
      detail::conv2d_forward_rows(g, input, row0, row0 + rows, weights, weights_stride, bias, relu, output,
                                  scratch);
      return;
    }
    const T* cols = input + row0 * g.C;  // (rows, K); pointwise: the input is its own column matrix
    if (!pointwise) {
      T* buffer = workspace.columns(Conv2DWorkspace<T>::worker_index(workers));
      im2col(g, input, n0, n1, buffer);
      cols = buffer;
    }
    if (use_lamina) {
      GemmEpilogue<T> epilogue;
      epilogue.bias = bias;
      epilogue.relu = relu;
      gemm_prepacked(rows, g.F, K, cols, K, false, weights, weights_stride, out, g.F, epilogue);
      return;
    }
    const auto R = static_cast<Eigen::Index>(rows), KK = static_cast<Eigen::Index>(K);
    const auto F = static_cast<Eigen::Index>(g.F);
    MatrixMap<T> out_map(out, R, F);
    const ConstMatrixMap<T> kernel_matrix(kernel, KK, F);  // (K, F)
    if (bias) {
      for (Eigen::Index r = 0; r < R; ++r) std::memcpy(&out_map(r, 0), bias, g.F * sizeof(T));
      out_map.noalias() += ConstMatrixMap<T>(cols, R, KK) * kernel_matrix;
    } else {
      out_map.noalias() = ConstMatrixMap<T>(cols, R, KK) * kernel_matrix;
    }
    if (relu)
      for (std::size_t i = 0; i < rows * g.F; ++i) out[i] = out[i] > T(0) ? out[i] : T(0);
  });
}

/// grad_input = d(sum output * grad_output)/d input by a GEMM and col2im, with
/// `gemm` (lamina or eigen). Overwrites grad_input.
template <class T>
void conv2d_im2col_backward_data(const Conv2DGeometry& g,
                                 const T* grad_output,  // (N, OH, OW, F)
                                 const T* kernel,       // (KH, KW, C, F)
                                 T* grad_input,         // (N, H, W, C)
                                 Conv2DWorkspace<T>& workspace, GemmKernel gemm) {
  const Conv2DChunking chunking = conv2d_chunking<T>(g);
  const std::size_t workers = Conv2DWorkspace<T>::worker_count(chunking);
  const bool pointwise = g.is_pointwise();
  if (!pointwise) workspace.reserve_columns(g, chunking, workers);
  const std::size_t K = g.patch_size();
  const bool use_lamina = gemm != GemmKernel::eigen;
  // lamina's GEMM: kernel^T packed once per call, (F, padded K).
  const std::size_t packed_stride = gemm_padded_columns<T>(K);
  if (use_lamina) {
    workspace.reserve_packed(g.F * packed_stride);
    gemm_pack_b(g.F, K, kernel, g.F, true, workspace.packed());
  }
  const T* packed = workspace.packed();

  parallel_for_ranges(g.N, chunking.images_per_chunk, [&](const ChunkRange& chunk) {
    const std::size_t n0 = chunk.begin, n1 = chunk.end;
    const std::size_t row0 = n0 * g.pixels_per_image();
    const std::size_t rows = (n1 - n0) * g.pixels_per_image();
    const T* go = grad_output + row0 * g.F;  // (rows, F)
    // (rows, K): the column gradient; pointwise: the input gradient itself
    T* cols = pointwise ? grad_input + row0 * g.C
                        : workspace.columns(Conv2DWorkspace<T>::worker_index(workers));
    if (use_lamina) {
      gemm_prepacked(rows, K, g.F, go, g.F, false, packed, packed_stride, cols, K);
    } else {
      const auto R = static_cast<Eigen::Index>(rows), KK = static_cast<Eigen::Index>(K);
      const auto F = static_cast<Eigen::Index>(g.F);
      MatrixMap<T>(cols, R, KK).noalias() =
          ConstMatrixMap<T>(go, R, F) * ConstMatrixMap<T>(kernel, KK, F).transpose();
    }
    if (!pointwise) col2im(g, static_cast<const T*>(cols), n0, n1, grad_input);
  });
}

/// grad_kernel = d(sum output * grad_output)/d kernel and grad_bias = its
/// derivative for the bias (skipped when grad_bias is nullptr), with `gemm`
/// (lamina or eigen). Both overwritten; the same bits for any thread count.
template <class T>
void conv2d_im2col_backward_weights(const Conv2DGeometry& g,
                                    const T* input,        // (N, H, W, C)
                                    const T* grad_output,  // (N, OH, OW, F)
                                    T* grad_kernel,        // (KH, KW, C, F)
                                    T* grad_bias,          // (F) or nullptr
                                    Conv2DWorkspace<T>& workspace, GemmKernel gemm) {
  const Conv2DChunking chunking = conv2d_chunking<T>(g);
  const std::size_t workers = Conv2DWorkspace<T>::worker_count(chunking);
  const bool pointwise = g.is_pointwise();
  if (!pointwise) workspace.reserve_columns(g, chunking, workers);
  const bool single = chunking.chunks == 1;  // no partials: write the result directly
  if (!single) workspace.reserve_partials(g, chunking);
  const std::size_t KF = g.kernel_size();
  const std::size_t K = g.patch_size();
  const bool use_lamina = gemm != GemmKernel::eigen;
  // lamina's GEMM reads grad_output rows as they are when F is a multiple of
  // the batch size, else a zero-padded copy per worker.
  const bool pad_rows = use_lamina && !gemm_b_usable<T>(g.F);
  if (pad_rows) workspace.reserve_gemm_rows(g, chunking, workers);
  // Implicit im2col (detail::conv2d_backward_weights_rows) when a kernel row is at least a batch.
  const bool implicit = use_lamina && detail::conv2d_weights_implicit<T>(g);
  if (implicit) workspace.reserve_row_pointers(g, chunking, workers);

  // 1. Each chunk: its partial kernel gradient (K, F) and bias gradient (F).
  parallel_for_ranges(g.N, chunking.images_per_chunk, [&](const ChunkRange& chunk) {
    const std::size_t n0 = chunk.begin, n1 = chunk.end;
    const std::size_t row0 = n0 * g.pixels_per_image();
    const std::size_t rows = (n1 - n0) * g.pixels_per_image();
    const std::size_t worker = Conv2DWorkspace<T>::worker_index(workers);
    const T* cols = input + row0 * g.C;  // (rows, K)
    if (!pointwise && !implicit) {
      T* buffer = workspace.columns(worker);
      im2col(g, input, n0, n1, buffer);
      cols = buffer;
    }
    const T* go = grad_output + row0 * g.F;  // (rows, F)
    T* kernel_part = single ? grad_kernel : workspace.partial(chunk.index);  // (K, F)
    if (use_lamina) {
      // (K, F) = cols^T (K, rows) x go (rows, F): one chain of FMAs over the rows per element.
      const T* b = go;
      std::size_t ldb = g.F;
      if (pad_rows) {
        ldb = gemm_padded_columns<T>(g.F);
        gemm_pack_b(rows, g.F, go, g.F, false, workspace.gemm_rows(worker));  // (rows, padded F)
        b = workspace.gemm_rows(worker);
      }
      if (implicit)
        detail::conv2d_backward_weights_rows(g, input, n0, n1, b, ldb, kernel_part, workspace.row_pointers(worker),
                                             workspace.columns(worker));
      else
        gemm_prepacked(K, g.F, rows, cols, K, true, b, ldb, kernel_part, g.F);
    } else {
      const auto R = static_cast<Eigen::Index>(rows), KK = static_cast<Eigen::Index>(K);
      const auto F = static_cast<Eigen::Index>(g.F);
      MatrixMap<T>(kernel_part, KK, F).noalias() =
          ConstMatrixMap<T>(cols, R, KK).transpose() * ConstMatrixMap<T>(go, R, F);
    }
    T* bias_part = !grad_bias ? nullptr : single ? grad_bias : workspace.partial(chunk.index) + KF;
    if (bias_part)  // row by row, in order; vectorised across F only
      detail::column_sums(go, static_cast<const T*>(nullptr), rows, g.F, bias_part);
  });
  // 2. The partials summed in chunk order.
  if (!single) detail::conv2d_sum_partials(g, chunking.chunks, grad_kernel, grad_bias, workspace);
}

}  // namespace lamina::kernels
