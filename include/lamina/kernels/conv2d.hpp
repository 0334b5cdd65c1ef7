// lamina/kernels/conv2d.hpp: the Conv2D compute kernels (forward, backward data,
// backward weights), their naive references and their workspace.
//
// LAYOUTS
//   input   (N, H, W, C)    NHWC, row-major: channels are contiguous.
//   kernel  (KH, KW, C, F)  as Keras stores it ("HWIO"); read as a row-major
//                           (KH*KW*C, F) matrix without any copy.
//   bias    (F)
//   output  (N, OH, OW, F)  NHWC.
//   Padding 'same' follows TensorFlow: OH = ceil(H / sh), total padding
//   max((OH - 1) * sh + KH - H, 0), pad_top = total / 2, the extra row at the
//   bottom (columns likewise). 'valid': OH = (H - KH) / sh + 1. Conv2DGeometry
//   (im2col.hpp) computes and validates all of this once.
//
// IM2COL
//   For a chunk of n images the column matrix is (n*OH*OW, KH*KW*C), row-major:
//   row (image, oh, ow) holds that output pixel's receptive field, tap (kh, kw)
//   by tap, C channels each, zeros where the tap falls in the padding. Its
//   column order is the kernel's row order, so
//       output (n*OH*OW, F) = columns (n*OH*OW, KH*KW*C) x kernel (KH*KW*C, F)
//   is one GEMM whose result is already NHWC. One kernel row of one output pixel
//   is a single contiguous run of the input (the in-range taps are neighbouring
//   pixels, each with its C contiguous channels), copied with xsimd batches and
//   a scalar tail; C == 1 therefore copies runs of KW pixels, not single values.
//   col2im is the adjoint (a scatter-add of the columns back into the images).
//
// THE THREE KERNELS (M = rows of the chunk, K = KH*KW*C)
//   forward:          out = im2col(x) x kernel + bias [then ReLU]
//   backward data:    cols = grad_out (M, F) x kernel^T (F, K); grad_in = col2im(cols)
//   backward weights: partial kernel grad = im2col(x)^T (K, M) x grad_out (M, F),
//                     partial bias grad = column sums of grad_out (M, F),
//                     then the chunks' partials are summed (see DETERMINISM)
//   A 1x1 kernel with stride 1 skips im2col/col2im: its column matrix is the
//   input itself.
//
// GEMMS
//   By default (Conv2DGemm::lamina, set on the workspace) the GEMMs are
//   lamina's own (kernels/gemm.hpp: register tiles of MR rows x up to 4
//   batches of columns, fixed contraction blocks, one FMA chain per element):
//   - forward: "implicit im2col": the GEMM's tiles read each pixel's kernel
//     rows straight from the image (detail::conv2d_forward_tile), no column
//     buffer; bias and ReLU are applied in the tile's epilogue;
//   - backward data: kernel^T packed once per call, (F, padded K); the GEMM
//     writes the chunk's column gradient, col2im scatters it. When K pads
//     badly to a multiple of the batch size (K = 9 for one channel), Eigen's
//     GEMM runs instead (conv2d_backward_data_gemm);
//   - backward weights: A^T is read from a table of row pointers into the
//     images (detail::conv2d_backward_weights_rows) when a kernel row holds at
//     least one batch, else from an im2col buffer.
//   Conv2DGemm::eigen runs Eigen's GEMM on row-major maps with noalias() (the
//   kernels before lamina had its own GEMM; kept to compare).
//
// ALGORITHMS
//   Conv2DAlgorithm (set on the workspace; automatic by default) chooses, per
//   call, between the im2col kernels described above and Winograd F(2x2, 3x3)
//   (kernels/winograd.hpp: 2.25x fewer multiply-adds, its own layouts,
//   blocks, chunks and determinism argument, the same results to a few units
//   of rounding). automatic runs Winograd on 3x3 stride-1 layers whose input
//   channels and filters both fill a SIMD batch (conv2d_uses_winograd), and
//   the direct kernels below on one-channel 3x3 layers; the rest of this
//   comment is about the im2col kernels.
//
// DIRECT KERNEL (one input channel, 3x3, F a multiple of the batch size)
//   A first layer on grey images has K = 9: its im2col runs are 3 floats
//   long and the GEMM's contraction is 9, so im2col + GEMM reached 20% of
//   the peak. conv2d_uses_direct picks, for automatic and winograd, direct
//   loops instead: each image is copied into a zero-padded (PH, PW) scratch
//   image (so no tap needs a bounds check), then
//   - forward: 6 output pixels x 2 batches of filters in 12 accumulators,
//     starting from the bias, one FMA per tap in order (kh, kw), ReLU fused;
//   - backward weights: per chunk, the 9 taps x 2 batches of filters of the
//     kernel gradient in 18 accumulators, one FMA chain per element over the
//     chunk's pixels in order (the bias gradient and the chunk reduction as
//     below); backward data keeps the im2col kernel (a first layer does not
//     need it).
//   Both run at about 2.7x and 3.2x the speed of the im2col kernels on the
//   reference CNN's conv1 (docs/performance.md) with the same determinism.
//
// CHUNKS AND THREADS
//   The batch is cut into chunks of `images_per_chunk` consecutive images,
//   chosen by conv2d_chunking() from the problem shape and sizeof(T) only, never
//   from the thread count: enough images for a column buffer of about
//   kConv2DColumnBytes (so it stays in cache between im2col and the GEMM), but
//   at least kConv2DMinChunks chunks (when there are that many images), at most
//   kConv2DMaxChunks chunks and at most kConv2DPartialBytes of per-chunk
//   weight-gradient partials (the last two win). lamina::parallel_for hands the chunks to
//   the threads (OpenMP static schedule); inside a chunk everything is serial
//   (lamina's GEMM is; Eigen's is pinned to one thread), so no parallel region
//   is ever nested. A chunk writes only its own images' rows of the output or
//   of grad_input, and only its own partial weight gradient.
//   Scratch column buffers belong to the worker running the chunk (one per
//   thread, at most min(threads, chunks)), not to the chunk: a chunk overwrites
//   its buffer entirely before reading it, so which buffer it gets cannot change
//   any value, and memory stays at threads x ~kConv2DColumnBytes instead of a
//   whole-batch im2col.
//
// DETERMINISM
//   Every output element of forward and backward data is computed by exactly
//   one chunk, by serial code whose order of operations depends only on the
//   shapes, so it is the same whatever thread runs it. The weight and bias
//   gradients are sums over the whole batch: each chunk writes its partial sum
//   (a GEMM over its own rows, and a serial row-by-row column sum) into its own
//   slot of the workspace, and then the partials are added in chunk order
//   0, 1, 2, ... for every element (the loop over elements is what runs in
//   parallel, in fixed blocks). The chunking does not depend on the thread
//   count, so neither does any rounding: 1 thread or 16 give the same bits
//   (for one build: another -march selects other SIMD widths, and so other
//   roundings).
//   With lamina's GEMM, forward and backward data go further: every element
//   is one FMA chain over the contraction in order, whatever the tile, the
//   chunk or the batch it falls in, so an image's output and input gradient
//   have the same bits in a batch of 1 or of 1000 (Eigen's blocking depends
//   on the matrix sizes; see kernels/gemm.hpp).
//
// WORKSPACE
//   Conv2DWorkspace<T> holds the column buffers (also the implicit kernels'
//   border rows), the partials, the packed weights, the padded grad_output rows
//   (F not a multiple of the batch size) and the row-pointer tables. The kernels
//   grow it when a call needs more than it has and never shrink it, so after
//   the first call at the largest batch size (or after reserve()) they do not
//   allocate. One workspace must not be used by two calls at the same time.
//   (With Conv2DGemm::eigen, Eigen's GEMM may still allocate its own packing
//   buffers when they exceed its stack limit; lamina's GEMM allocates nothing.)
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "lamina/core/error.hpp"
#include "lamina/core/tensor.hpp"
#include "lamina/core/threads.hpp"
#include "lamina/kernels/gemm.hpp"
#include "lamina/kernels/im2col.hpp"
#include "lamina/kernels/winograd.hpp"

namespace lamina::kernels {

// ---------------------------------------------------------------------------
// Chunking
// ---------------------------------------------------------------------------

/// Target size of one chunk's column matrix: small enough to stay in L2 between
/// im2col and the GEMM that reads it, big enough to amortise the GEMM's packing.
inline constexpr std::size_t kConv2DColumnBytes = std::size_t(1) << 20;
/// At least this many chunks when the batch has that many images, so that up
/// to this many threads all get work even when images are tiny.
inline constexpr std::size_t kConv2DMinChunks = 16;
/// At most this many chunks (bounds the partial-gradient memory and the final
/// reduction, and is plenty to balance any core count lamina targets).
inline constexpr std::size_t kConv2DMaxChunks = 128;
/// At most this much memory for the per-chunk weight-gradient partials.
inline constexpr std::size_t kConv2DPartialBytes = std::size_t(32) << 20;

/// Most rows in one tile of lamina's GEMM (detail::gemm_main_rows), bounding
/// the implicit-im2col forward's scratch.
inline constexpr std::size_t kConv2DMaxTileRows = 16;
static_assert(detail::gemm_main_rows(1) <= kConv2DMaxTileRows, "tile rows");

/// How a batch is cut into chunks of consecutive images: images_per_chunk each,
/// the last chunk possibly shorter.
struct Conv2DChunking {
  std::size_t images_per_chunk = 1;
  std::size_t chunks = 0;
  std::size_t begin(std::size_t chunk) const noexcept { return chunk * images_per_chunk; }
  std::size_t end(std::size_t chunk, std::size_t batch) const noexcept {
    return std::min(batch, (chunk + 1) * images_per_chunk);
  }
};

/// The chunking of g's batch for element type T. Depends only on the geometry
/// and sizeof(T), never on the thread count (that is what makes the results
/// bit-identical with any number of threads).
template <class T>
Conv2DChunking conv2d_chunking(const Conv2DGeometry& g) {
  const std::size_t bytes_per_image = std::max<std::size_t>(1, g.pixels_per_image() * g.patch_size() * sizeof(T));
  std::size_t per_chunk = std::max<std::size_t>(1, kConv2DColumnBytes / bytes_per_image);
  per_chunk = std::min(per_chunk, std::max<std::size_t>(1, (g.N + kConv2DMinChunks - 1) / kConv2DMinChunks));
  const std::size_t partial_bytes = (g.kernel_size() + g.F) * sizeof(T);
  const std::size_t max_chunks =
      std::clamp<std::size_t>(kConv2DPartialBytes / partial_bytes, 1, kConv2DMaxChunks);
  if ((g.N + per_chunk - 1) / per_chunk > max_chunks) per_chunk = (g.N + max_chunks - 1) / max_chunks;
  per_chunk = std::min(per_chunk, std::max<std::size_t>(g.N, 1));
  return {per_chunk, (g.N + per_chunk - 1) / per_chunk};
}

// ---------------------------------------------------------------------------
// Workspace
// ---------------------------------------------------------------------------

/// Which GEMM the fast kernels run (see GEMMS at the top of this file).
enum class Conv2DGemm {
  lamina,  // lamina's register-tiled xsimd GEMM (kernels/gemm.hpp): the default
  eigen,   // Eigen's GEMM on row-major maps: the previous kernels, kept to compare
};

/// Which algorithm the fast kernels run (see ALGORITHMS at the top of this file).
enum class Conv2DAlgorithm {
  automatic,  // Winograd F(2x2, 3x3) where it applies and pays (conv2d_uses_winograd), the direct
              // kernels on one-channel 3x3 layers (conv2d_uses_direct), else im2col
  im2col,     // im2col (explicit or implicit) + GEMM for every shape
  winograd,   // Winograd wherever it applies (3x3, stride 1), else as automatic
};

inline const char* to_string(Conv2DAlgorithm a) noexcept {
  switch (a) {
    case Conv2DAlgorithm::automatic: return "automatic";
    case Conv2DAlgorithm::im2col: return "im2col";
    case Conv2DAlgorithm::winograd: return "winograd";
  }
  return "?";
}

/// Scratch memory of the fast kernels, reused across calls (see the top of this
/// file). Not thread-safe: one workspace per concurrent caller.
template <class T>
class Conv2DWorkspace {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "float or double");

 public:
  Conv2DWorkspace() = default;
  explicit Conv2DWorkspace(Conv2DGemm gemm, Conv2DAlgorithm algorithm = Conv2DAlgorithm::automatic)
      : gemm_(gemm), algorithm_(algorithm) {}

  /// The GEMM the kernels run with this workspace (Conv2DGemm::lamina unless set).
  Conv2DGemm gemm() const noexcept { return gemm_; }
  void set_gemm(Conv2DGemm gemm) noexcept { gemm_ = gemm; }
  /// The algorithm (Conv2DAlgorithm::automatic unless set).
  Conv2DAlgorithm algorithm() const noexcept { return algorithm_; }
  void set_algorithm(Conv2DAlgorithm algorithm) noexcept { algorithm_ = algorithm; }
  /// The Winograd kernels' own scratch.
  WinogradWorkspace<T>& winograd() noexcept { return winograd_; }

  /// Grows the buffers for everything the kernels need on geometry g with the
  /// current thread count, so that later calls on g (or smaller) do not allocate.
  void reserve(const Conv2DGeometry& g) {
    const Conv2DChunking chunking = conv2d_chunking<T>(g);
    const std::size_t workers = worker_count(chunking);
    reserve_columns(g, chunking, workers);
    reserve_partials(g, chunking);
    if (gemm_ == Conv2DGemm::lamina) {
      reserve_packed(packed_weights_size(g));
      reserve_gemm_rows(g, chunking, workers);
      reserve_row_pointers(g, chunking, workers);
    }
  }

  /// Bytes held (capacity, not what the last call used).
  std::size_t capacity_bytes() const noexcept {
    return (columns_capacity_ + partials_capacity_ + packed_capacity_ + rows_capacity_) * sizeof(T) +
           pointers_.capacity() * sizeof(const T*) + winograd_.capacity_bytes();
  }

  // --- used by the kernels -------------------------------------------------

  /// How many workers a parallel_for over `chunking` runs, i.e. how many column
  /// buffers it needs (lamina::parallel_workers owns the rule).
  static std::size_t worker_count(const Conv2DChunking& chunking) {
    return parallel_workers(static_cast<std::ptrdiff_t>(chunking.chunks));
  }
  /// The calling worker's index inside such a parallel_for, in [0, workers).
  static std::size_t worker_index(std::size_t workers) {
    return workers > 1 ? parallel_worker_index() : 0;
  }

  /// One column buffer (rows of a full chunk x patch size) per worker.
  void reserve_columns(const Conv2DGeometry& g, const Conv2DChunking& chunking, std::size_t workers) {
    // Also room for the implicit-im2col forward's scratch rows (see detail::conv2d_forward_rows).
    // and for the implicit backward weights' zero row (see detail::conv2d_backward_weights_rows).
    // And for the direct kernels' padded image (see detail::conv2d_direct_pad_image).
    const std::size_t padded_image = ((g.OH - 1) * g.sh + g.KH) * ((g.OW - 1) * g.sw + g.KW);
    column_stride_ = round_up(std::max({chunking.images_per_chunk * g.pixels_per_image() * g.patch_size(),
                                        (kConv2DMaxTileRows + 1) * g.KW * g.C, padded_image}) +
                              g.KW * g.C);
    column_workers_ = workers;
    grow(columns_, columns_capacity_, column_stride_ * workers);
  }
  /// One (K*F + F) partial per chunk: the kernel gradient, then the bias gradient.
  void reserve_partials(const Conv2DGeometry& g, const Conv2DChunking& chunking) {
    partial_stride_ = round_up(g.kernel_size() + g.F);
    grow(partials_, partials_capacity_, partial_stride_ * chunking.chunks);
  }
  /// The weights packed for lamina's GEMM: (K, padded F) for the forward pass
  /// when F is not a multiple of the batch size, (F, padded K) = kernel^T for
  /// backward data. The larger of the two.
  static std::size_t packed_weights_size(const Conv2DGeometry& g) {
    return std::max(g.patch_size() * gemm_padded_columns<T>(g.F),
                    g.F * gemm_padded_columns<T>(g.patch_size()));
  }
  void reserve_packed(std::size_t n) { grow(packed_, packed_capacity_, n); }
  /// Per worker, a chunk's grad_output rows padded to a multiple of the batch
  /// size (backward weights with lamina's GEMM when F is not one).
  void reserve_gemm_rows(const Conv2DGeometry& g, const Conv2DChunking& chunking, std::size_t workers) {
    if (gemm_b_usable<T>(g.F)) return;
    rows_stride_ = round_up(chunking.images_per_chunk * g.pixels_per_image() * gemm_padded_columns<T>(g.F));
    grow(rows_, rows_capacity_, rows_stride_ * workers);
  }
  /// Per worker, one pointer per row of a full chunk (the implicit backward
  /// weights' row table).
  void reserve_row_pointers(const Conv2DGeometry& g, const Conv2DChunking& chunking, std::size_t workers) {
    pointer_stride_ = chunking.images_per_chunk * g.pixels_per_image();
    if (pointers_.size() < pointer_stride_ * workers) pointers_.resize(pointer_stride_ * workers);
  }
  const T** row_pointers(std::size_t worker) noexcept { return pointers_.data() + worker * pointer_stride_; }
  T* packed() noexcept { return packed_.data(); }
  T* gemm_rows(std::size_t worker) noexcept { return rows_.data() + worker * rows_stride_; }
  T* columns(std::size_t worker) noexcept { return columns_.data() + worker * column_stride_; }
  std::size_t column_workers() const noexcept { return column_workers_; }
  T* partial(std::size_t chunk) noexcept { return partials_.data() + chunk * partial_stride_; }

 private:
  // Every buffer starts on a 64-byte boundary (detail::round_up_to_line, winograd.hpp).
  static std::size_t round_up(std::size_t n) noexcept { return detail::round_up_to_line<T>(n); }
  static void grow(Tensor<T>& buffer, std::size_t& capacity, std::size_t n) {
    detail::grow_buffer(buffer, capacity, n);
  }

  Conv2DGemm gemm_ = Conv2DGemm::lamina;
  Conv2DAlgorithm algorithm_ = Conv2DAlgorithm::automatic;
  WinogradWorkspace<T> winograd_;
  Tensor<T> columns_;   // (workers, column_stride_): per-worker column matrices
  Tensor<T> partials_;  // (chunks, partial_stride_): per-chunk gradient partials
  Tensor<T> packed_;    // (K, padded F) or (F, padded K): packed weights
  Tensor<T> rows_;      // (workers, rows_stride_): padded grad_output rows
  std::size_t columns_capacity_ = 0, partials_capacity_ = 0, packed_capacity_ = 0, rows_capacity_ = 0;
  std::vector<const T*> pointers_;  // (workers, pointer_stride_): row tables
  std::size_t column_stride_ = 0, partial_stride_ = 0, column_workers_ = 0, rows_stride_ = 0;
  std::size_t pointer_stride_ = 0;
};

// ---------------------------------------------------------------------------
// Naive references: plain loops, accumulated in double.
// ---------------------------------------------------------------------------

/// output[n, oh, ow, f] = bias[f] + sum_{kh, kw, c} input[n, oh*sh+kh-pad_top,
/// ow*sw+kw-pad_left, c] * kernel[kh, kw, c, f] (padding reads as zero).
template <class T>
void conv2d_forward_naive(const Conv2DGeometry& g,
                          const T* input,   // (N, H, W, C)
                          const T* kernel,  // (KH, KW, C, F)
                          const T* bias,    // (F) or nullptr
                          T* output) {      // (N, OH, OW, F)
  for (std::size_t n = 0; n < g.N; ++n)
    for (std::size_t oh = 0; oh < g.OH; ++oh)
      for (std::size_t ow = 0; ow < g.OW; ++ow)
        for (std::size_t f = 0; f < g.F; ++f) {
          double sum = bias ? double(bias[f]) : 0.0;
          for (std::size_t kh = 0; kh < g.KH; ++kh)
            for (std::size_t kw = 0; kw < g.KW; ++kw) {
              // Unsigned arithmetic: a pixel above/left of the image wraps to a huge index.
              const std::size_t ih = oh * g.sh + kh - g.pad_top;
              const std::size_t iw = ow * g.sw + kw - g.pad_left;
              if (ih >= g.H || iw >= g.W) continue;
              for (std::size_t c = 0; c < g.C; ++c)
                sum += double(input[((n * g.H + ih) * g.W + iw) * g.C + c]) *
                       double(kernel[((kh * g.KW + kw) * g.C + c) * g.F + f]);
            }
          output[((n * g.OH + oh) * g.OW + ow) * g.F + f] = static_cast<T>(sum);
        }
}

/// grad_input = d(sum output * grad_output)/d input: every product of the
/// forward, scattered back onto the input pixel it read.
template <class T>
void conv2d_backward_data_naive(const Conv2DGeometry& g,
                                const T* grad_output,  // (N, OH, OW, F)
                                const T* kernel,       // (KH, KW, C, F)
                                T* grad_input) {       // (N, H, W, C)
  std::vector<double> sum(g.input_size(), 0.0);
  for (std::size_t n = 0; n < g.N; ++n)
    for (std::size_t oh = 0; oh < g.OH; ++oh)
      for (std::size_t ow = 0; ow < g.OW; ++ow)
        for (std::size_t kh = 0; kh < g.KH; ++kh)
          for (std::size_t kw = 0; kw < g.KW; ++kw) {
            const std::size_t ih = oh * g.sh + kh - g.pad_top;
            const std::size_t iw = ow * g.sw + kw - g.pad_left;
            if (ih >= g.H || iw >= g.W) continue;
            for (std::size_t c = 0; c < g.C; ++c)
              for (std::size_t f = 0; f < g.F; ++f)
                sum[((n * g.H + ih) * g.W + iw) * g.C + c] +=
                    double(grad_output[((n * g.OH + oh) * g.OW + ow) * g.F + f]) *
                    double(kernel[((kh * g.KW + kw) * g.C + c) * g.F + f]);
          }
  for (std::size_t i = 0; i < sum.size(); ++i) grad_input[i] = static_cast<T>(sum[i]);
}

/// grad_kernel[kh, kw, c, f] = sum_{n, oh, ow} input[n, ih, iw, c] * grad_output[n, oh, ow, f];
/// grad_bias[f] = sum_{n, oh, ow} grad_output[n, oh, ow, f]. Both overwritten.
template <class T>
void conv2d_backward_weights_naive(const Conv2DGeometry& g,
                                   const T* input,        // (N, H, W, C)
                                   const T* grad_output,  // (N, OH, OW, F)
                                   T* grad_kernel,        // (KH, KW, C, F)
                                   T* grad_bias) {        // (F) or nullptr
  for (std::size_t kh = 0; kh < g.KH; ++kh)
    for (std::size_t kw = 0; kw < g.KW; ++kw)
      for (std::size_t c = 0; c < g.C; ++c)
        for (std::size_t f = 0; f < g.F; ++f) {
          double sum = 0.0;
          for (std::size_t n = 0; n < g.N; ++n)
            for (std::size_t oh = 0; oh < g.OH; ++oh)
              for (std::size_t ow = 0; ow < g.OW; ++ow) {
                const std::size_t ih = oh * g.sh + kh - g.pad_top;
                const std::size_t iw = ow * g.sw + kw - g.pad_left;
                if (ih >= g.H || iw >= g.W) continue;
                sum += double(input[((n * g.H + ih) * g.W + iw) * g.C + c]) *
                       double(grad_output[((n * g.OH + oh) * g.OW + ow) * g.F + f]);
              }
          grad_kernel[((kh * g.KW + kw) * g.C + c) * g.F + f] = static_cast<T>(sum);
        }
  if (grad_bias) {
    for (std::size_t f = 0; f < g.F; ++f) {
      double sum = 0.0;
      for (std::size_t p = 0; p < g.N * g.OH * g.OW; ++p) sum += double(grad_output[p * g.F + f]);
      grad_bias[f] = static_cast<T>(sum);
    }
  }
}

// ---------------------------------------------------------------------------
// Fast kernels: im2col (xsimd) + a GEMM (lamina's own by default, or Eigen's;
// see Conv2DGemm), parallel over fixed batch chunks.
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// The direct kernels of a one-channel 3x3 layer (see DIRECT KERNEL above).
// ---------------------------------------------------------------------------

// padded (PH, PW) = image n of a one-channel input with pad_top rows and
// pad_left columns of zeros before it and zeros after it, PH = (OH-1)*sh + 3,
// PW = (OW-1)*sw + 3: every tap of every output pixel is then inside.
template <class T>
inline void conv2d_direct_pad_image(const Conv2DGeometry& g, const T* input, std::size_t n, T* padded) {
  const std::size_t PH = (g.OH - 1) * g.sh + 3, PW = (g.OW - 1) * g.sw + 3;
  std::fill(padded, padded + PH * PW, T(0));
  for (std::size_t h = 0; h < g.H; ++h) {
    const std::size_t ph = h + g.pad_top;
    if (ph >= PH) break;
    const std::size_t count = std::min(g.W, PW - std::min(PW, g.pad_left));
    std::memcpy(padded + ph * PW + g.pad_left, input + (n * g.H + h) * g.W, count * sizeof(T));
  }
}

// PX consecutive output pixels of one row, NV batches of filters from f0:
// out = bias + sum over the 9 taps in order (kh, kw) of x * w, then ReLU.
template <class T, std::size_t PX, std::size_t NV>
[[gnu::always_inline]] inline void conv2d_direct_forward_pixels(const T* row0, std::size_t PW, std::size_t sw,
                                                                const T* weights, std::size_t ldw, const T* bias,
                                                                bool relu, T* out, std::size_t F) {
  using Batch = xsimd::batch<T>;
  constexpr std::size_t W = Batch::size;
  Batch acc[PX][NV];
#pragma GCC unroll 4
  for (std::size_t v = 0; v < NV; ++v) {
    const Batch b = bias ? Batch::load_unaligned(bias + v * W) : Batch(T(0));
#pragma GCC unroll 8
    for (std::size_t p = 0; p < PX; ++p) acc[p][v] = b;
  }
#pragma GCC unroll 3
  for (std::size_t kh = 0; kh < 3; ++kh)
#pragma GCC unroll 3
    for (std::size_t kw = 0; kw < 3; ++kw) {
      Batch w[NV];
#pragma GCC unroll 4
      for (std::size_t v = 0; v < NV; ++v) w[v] = Batch::load_unaligned(weights + (kh * 3 + kw) * ldw + v * W);
      const T* x = row0 + kh * PW + kw;
#pragma GCC unroll 8
      for (std::size_t p = 0; p < PX; ++p) {
        const Batch xv(x[p * sw]);
#pragma GCC unroll 4
        for (std::size_t v = 0; v < NV; ++v) acc[p][v] = simd_fma(xv, w[v], acc[p][v]);
      }
    }
  const Batch zero(T(0));
#pragma GCC unroll 8
  for (std::size_t p = 0; p < PX; ++p)
#pragma GCC unroll 4
    for (std::size_t v = 0; v < NV; ++v) {
      Batch r = acc[p][v];
      if (relu) r = xsimd::select(r > zero, r, zero);
      r.store_unaligned(out + p * F + v * W);
    }
}

// Forward of images [n0, n1) of a one-channel 3x3 layer whose F is a multiple
// of the batch size. scratch: one padded image.
template <class T>
void conv2d_direct_forward(const Conv2DGeometry& g, const T* input, std::size_t n0, std::size_t n1, const T* kernel,
                           const T* bias, bool relu, T* output, T* scratch) {
  constexpr std::size_t W = xsimd::batch<T>::size;
  constexpr std::size_t PX = 6;  // 6 pixels x 2 batches: 12 accumulators + 2 weights + 1 broadcast
  const std::size_t PW = (g.OW - 1) * g.sw + 3;
  for (std::size_t n = n0; n < n1; ++n) {
    conv2d_direct_pad_image(g, input, n, scratch);
    for (std::size_t oh = 0; oh < g.OH; ++oh) {
      const T* row0 = scratch + oh * g.sh * PW;
      T* out_row = output + (n * g.OH + oh) * g.OW * g.F;
      for (std::size_t f0 = 0; f0 < g.F; f0 += 2 * W) {
        const bool two = f0 + 2 * W <= g.F;
        const T* b = bias ? bias + f0 : nullptr;
        std::size_t ow = 0;
        for (; ow + PX <= g.OW; ow += PX) {
          if (two)
            conv2d_direct_forward_pixels<T, PX, 2>(row0 + ow * g.sw, PW, g.sw, kernel + f0, g.F, b, relu,
                                                   out_row + ow * g.F + f0, g.F);
          else
            conv2d_direct_forward_pixels<T, PX, 1>(row0 + ow * g.sw, PW, g.sw, kernel + f0, g.F, b, relu,
                                                   out_row + ow * g.F + f0, g.F);
        }
        for (; ow < g.OW; ++ow) {
          if (two)
            conv2d_direct_forward_pixels<T, 1, 2>(row0 + ow * g.sw, PW, g.sw, kernel + f0, g.F, b, relu,
                                                  out_row + ow * g.F + f0, g.F);
          else
            conv2d_direct_forward_pixels<T, 1, 1>(row0 + ow * g.sw, PW, g.sw, kernel + f0, g.F, b, relu,
                                                  out_row + ow * g.F + f0, g.F);
        }
      }
    }
  }
}

// Kernel gradient (3, 3, 1, F) of images [n0, n1) of a one-channel 3x3 layer:
// for each filter panel of NV batches, 9 * NV accumulators, one FMA chain per
// element over the pixels (n, oh, ow) in order. Overwrites grad_kernel.
template <class T, std::size_t NV>
inline void conv2d_direct_weights_panel(const Conv2DGeometry& g, const T* input, const T* grad_output,
                                        const T* mask, std::size_t n0, std::size_t n1, std::size_t f0,
                                        T* grad_kernel, T* scratch) {
  using Batch = xsimd::batch<T>;
  constexpr std::size_t W = Batch::size;
  const std::size_t PW = (g.OW - 1) * g.sw + 3;
  Batch acc[9][NV];
#pragma GCC unroll 9
  for (std::size_t t = 0; t < 9; ++t)
#pragma GCC unroll 4
    for (std::size_t v = 0; v < NV; ++v) acc[t][v] = Batch(T(0));
  for (std::size_t n = n0; n < n1; ++n) {
    conv2d_direct_pad_image(g, input, n, scratch);
    for (std::size_t oh = 0; oh < g.OH; ++oh) {
      const T* row0 = scratch + oh * g.sh * PW;
      const std::size_t row_at = (n * g.OH + oh) * g.OW * g.F + f0;
      const T* dy_row = grad_output + row_at;
      const T* mask_row = mask ? mask + row_at : nullptr;
      for (std::size_t ow = 0; ow < g.OW; ++ow) {
        Batch dy[NV];
#pragma GCC unroll 4
        for (std::size_t v = 0; v < NV; ++v) dy[v] = Batch::load_unaligned(dy_row + ow * g.F + v * W);
        if (mask_row) {
          const Batch zero(T(0));
#pragma GCC unroll 4
          for (std::size_t v = 0; v < NV; ++v)
            dy[v] = xsimd::select(Batch::load_unaligned(mask_row + ow * g.F + v * W) > zero, dy[v], zero);
        }
        const T* x = row0 + ow * g.sw;
#pragma GCC unroll 3
        for (std::size_t kh = 0; kh < 3; ++kh)
#pragma GCC unroll 3
          for (std::size_t kw = 0; kw < 3; ++kw) {
            const Batch xv(x[kh * PW + kw]);
#pragma GCC unroll 4
            for (std::size_t v = 0; v < NV; ++v) acc[kh * 3 + kw][v] = simd_fma(xv, dy[v], acc[kh * 3 + kw][v]);
          }
      }
    }
  }
#pragma GCC unroll 9
  for (std::size_t t = 0; t < 9; ++t)
#pragma GCC unroll 4
    for (std::size_t v = 0; v < NV; ++v) acc[t][v].store_unaligned(grad_kernel + t * g.F + f0 + v * W);
}

template <class T>
void conv2d_direct_weights(const Conv2DGeometry& g, const T* input, const T* grad_output, const T* mask,
                           std::size_t n0, std::size_t n1, T* grad_kernel, T* scratch) {
  constexpr std::size_t W = xsimd::batch<T>::size;
  for (std::size_t f0 = 0; f0 < g.F; f0 += 2 * W) {
    if (f0 + 2 * W <= g.F)
      conv2d_direct_weights_panel<T, 2>(g, input, grad_output, mask, n0, n1, f0, grad_kernel, scratch);
    else
      conv2d_direct_weights_panel<T, 1>(g, input, grad_output, mask, n0, n1, f0, grad_kernel, scratch);
  }
}

}  // namespace detail

/// True when the Conv2D kernels run the direct kernels of a one-channel 3x3
/// layer (see DIRECT KERNEL at the top of the file): lamina's GEMM selected,
/// C == 1, a 3x3 kernel (any stride, any padding) and F a multiple of the
/// SIMD batch size.
template <class T>
bool conv2d_uses_direct(const Conv2DGeometry& g, const Conv2DWorkspace<T>& workspace) {
  return workspace.gemm() == Conv2DGemm::lamina && workspace.algorithm() != Conv2DAlgorithm::im2col &&
         g.C == 1 && g.KH == 3 && g.KW == 3 && g.F % xsimd::batch<T>::size == 0;
}

/// Whether the kernels run Winograd F(2x2, 3x3) (kernels/winograd.hpp) for g
/// with this workspace's settings. Never with Conv2DGemm::eigen (that path
/// stays the previous kernels, to compare). Conv2DAlgorithm::automatic picks it
/// for 3x3 stride-1 layers with at least one SIMD batch of input channels and
/// of filters: below that, the transformed tiles are mostly padding and
/// im2col is faster (docs/conv2d-kernels.md has the measurements).
template <class T>
bool conv2d_uses_winograd(const Conv2DGeometry& g, const Conv2DWorkspace<T>& workspace) {
  if (workspace.gemm() != Conv2DGemm::lamina || !winograd_applicable(g)) return false;
  switch (workspace.algorithm()) {
    case Conv2DAlgorithm::im2col: return false;
    case Conv2DAlgorithm::winograd: return true;
    case Conv2DAlgorithm::automatic: break;
  }
  constexpr std::size_t W = xsimd::batch<T>::size;
  return g.C >= W && g.F >= W;
}

/// Whether conv2d_backward_weights (and, when input_gradient, also
/// conv2d_backward_data) accept a relu_output for g with this workspace: the
/// Winograd kernels read the ReLU mask where they load grad_output, and so
/// do the direct kernels' backward weights; the im2col kernels do not (the
/// Conv2D layer then runs activation_backward first).
template <class T>
bool conv2d_fuses_relu_backward(const Conv2DGeometry& g, const Conv2DWorkspace<T>& workspace, bool input_gradient) {
  return conv2d_uses_winograd(g, workspace) || (!input_gradient && conv2d_uses_direct(g, workspace));
}

/// output = conv(input, kernel) + bias, then ReLU (v > 0 ? v : 0, exactly as
/// activate_in_place) when relu is set, fused into the GEMM's epilogue.
/// Overwrites output.
template <class T>
void conv2d_forward(const Conv2DGeometry& g,
                    const T* input,   // (N, H, W, C)
                    const T* kernel,  // (KH, KW, C, F)
                    const T* bias,    // (F) or nullptr
                    T* output,        // (N, OH, OW, F)
                    Conv2DWorkspace<T>& workspace, bool relu = false) {
  if (conv2d_uses_winograd(g, workspace)) {
    conv2d_winograd_forward(g, input, kernel, bias, output, workspace.winograd(), relu);
    return;
  }
  const Conv2DChunking chunking = conv2d_chunking<T>(g);
  const std::size_t workers = Conv2DWorkspace<T>::worker_count(chunking);
  const bool pointwise = g.is_pointwise();
  if (!pointwise) workspace.reserve_columns(g, chunking, workers);
  const std::size_t K = g.patch_size();
  const bool use_lamina = workspace.gemm() == Conv2DGemm::lamina;
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

  const bool direct = conv2d_uses_direct(g, workspace);

  parallel_for(static_cast<std::ptrdiff_t>(chunking.chunks), [&](std::ptrdiff_t chunk) {
    const std::size_t n0 = chunking.begin(static_cast<std::size_t>(chunk));
    const std::size_t n1 = chunking.end(static_cast<std::size_t>(chunk), g.N);
    const std::size_t row0 = n0 * g.pixels_per_image();
    const std::size_t rows = (n1 - n0) * g.pixels_per_image();
    T* out = output + row0 * g.F;  // (rows, F)
    if (direct) {
      detail::conv2d_direct_forward(g, input, n0, n1, kernel, bias, relu, output,
                                    workspace.columns(Conv2DWorkspace<T>::worker_index(workers)));
      return;
    }
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

/// The GEMM conv2d_backward_data runs with a workspace set to `gemm`: lamina's
/// needs its output columns (K = KH*KW*C of them) padded to a multiple of the
/// batch size, which wastes too much when K is small and not a multiple (K = 9
/// for a one-channel 3x3 layer computes 16 columns with AVX-512 floats and is
/// slower than Eigen's), so with more than 25% of padding Eigen's runs instead.
template <class T>
Conv2DGemm conv2d_backward_data_gemm(const Conv2DGeometry& g, Conv2DGemm gemm) {
  const std::size_t K = g.patch_size();
  if (gemm == Conv2DGemm::lamina && gemm_padded_columns<T>(K) * 4 > K * 5) return Conv2DGemm::eigen;
  return gemm;
}

/// grad_input = d(sum output * grad_output)/d input. Overwrites grad_input.
/// relu_output: when not null, the output of a ReLU fused after this
/// convolution, and grad_output the gradient after it: the kernel uses
/// relu_output > 0 ? grad_output : 0 where it reads grad_output, the values
/// activation_backward would have written, so the result has the same bits.
/// Only where conv2d_fuses_relu_backward(g, workspace, true); an ArgumentError
/// otherwise.
template <class T>
void conv2d_backward_data(const Conv2DGeometry& g,
                          const T* grad_output,  // (N, OH, OW, F)
                          const T* kernel,       // (KH, KW, C, F)
                          T* grad_input,         // (N, H, W, C)
                          Conv2DWorkspace<T>& workspace,
                          const T* relu_output = nullptr) {  // (N, OH, OW, F) or nullptr
  if (conv2d_uses_winograd(g, workspace)) {
    conv2d_winograd_backward_data(g, grad_output, kernel, grad_input, workspace.winograd(), relu_output);
    return;
  }
  if (relu_output)
    throw ArgumentError("conv2d_backward_data: a fused ReLU's output is only accepted by the Winograd kernels "
                        "(see conv2d_fuses_relu_backward); apply activation_backward first");
  const Conv2DChunking chunking = conv2d_chunking<T>(g);
  const std::size_t workers = Conv2DWorkspace<T>::worker_count(chunking);
  const bool pointwise = g.is_pointwise();
  if (!pointwise) workspace.reserve_columns(g, chunking, workers);
  const std::size_t K = g.patch_size();
  const bool use_lamina = conv2d_backward_data_gemm<T>(g, workspace.gemm()) == Conv2DGemm::lamina;
  // lamina's GEMM: kernel^T packed once per call, (F, padded K).
  const std::size_t packed_stride = gemm_padded_columns<T>(K);
  if (use_lamina) {
    workspace.reserve_packed(g.F * packed_stride);
    gemm_pack_b(g.F, K, kernel, g.F, true, workspace.packed());
  }
  const T* packed = workspace.packed();

  parallel_for(static_cast<std::ptrdiff_t>(chunking.chunks), [&](std::ptrdiff_t chunk) {
    const std::size_t n0 = chunking.begin(static_cast<std::size_t>(chunk));
    const std::size_t n1 = chunking.end(static_cast<std::size_t>(chunk), g.N);
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
/// derivative for the bias (skipped when grad_bias is nullptr). Both
/// overwritten; bit-identical for any thread count (see the top of this file).
template <class T>
void conv2d_backward_weights(const Conv2DGeometry& g,
                             const T* input,        // (N, H, W, C)
                             const T* grad_output,  // (N, OH, OW, F)
                             T* grad_kernel,        // (KH, KW, C, F)
                             T* grad_bias,          // (F) or nullptr
                             Conv2DWorkspace<T>& workspace,
                             const T* relu_output = nullptr) {  // (N, OH, OW, F) or nullptr
  if (conv2d_uses_winograd(g, workspace)) {
    conv2d_winograd_backward_weights(g, input, grad_output, grad_kernel, grad_bias, workspace.winograd(),
                                     relu_output);
    return;
  }
  if (relu_output && !conv2d_uses_direct(g, workspace))
    throw ArgumentError("conv2d_backward_weights: a fused ReLU's output is only accepted by the Winograd and "
                        "direct kernels (see conv2d_fuses_relu_backward); apply activation_backward first");
  const Conv2DChunking chunking = conv2d_chunking<T>(g);
  const std::size_t workers = Conv2DWorkspace<T>::worker_count(chunking);
  const bool pointwise = g.is_pointwise();
  if (!pointwise) workspace.reserve_columns(g, chunking, workers);
  const bool single = chunking.chunks == 1;  // no partials: write the result directly
  if (!single) workspace.reserve_partials(g, chunking);
  const std::size_t KF = g.kernel_size();
  const std::size_t K = g.patch_size();
  const bool use_lamina = workspace.gemm() == Conv2DGemm::lamina;
  // lamina's GEMM reads grad_output rows as they are when F is a multiple of
  // the batch size, else a zero-padded copy per worker.
  const bool pad_rows = use_lamina && !gemm_b_usable<T>(g.F);
  if (pad_rows) workspace.reserve_gemm_rows(g, chunking, workers);
  // Implicit im2col (detail::conv2d_backward_weights_rows) when a kernel row is at least a batch.
  const bool direct = conv2d_uses_direct(g, workspace);
  const bool implicit = use_lamina && !direct && detail::conv2d_weights_implicit<T>(g);
  if (implicit) workspace.reserve_row_pointers(g, chunking, workers);

  // 1. Each chunk: its partial kernel gradient (K, F) and bias gradient (F).
  parallel_for(static_cast<std::ptrdiff_t>(chunking.chunks), [&](std::ptrdiff_t chunk) {
    const std::size_t n0 = chunking.begin(static_cast<std::size_t>(chunk));
    const std::size_t n1 = chunking.end(static_cast<std::size_t>(chunk), g.N);
    const std::size_t row0 = n0 * g.pixels_per_image();
    const std::size_t rows = (n1 - n0) * g.pixels_per_image();
    const std::size_t worker = Conv2DWorkspace<T>::worker_index(workers);
    const T* cols = input + row0 * g.C;  // (rows, K)
    if (!pointwise && !implicit && !direct) {
      T* buffer = workspace.columns(worker);
      im2col(g, input, n0, n1, buffer);
      cols = buffer;
    }
    const T* go = grad_output + row0 * g.F;  // (rows, F)
    T* kernel_part = single ? grad_kernel : workspace.partial(static_cast<std::size_t>(chunk));  // (K, F)
    if (direct) {
      detail::conv2d_direct_weights(g, input, grad_output, relu_output, n0, n1, kernel_part,
                                    workspace.columns(worker));
    } else if (use_lamina) {
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
    T* bias_part = !grad_bias ? nullptr
                   : single   ? grad_bias
                              : workspace.partial(static_cast<std::size_t>(chunk)) + KF;
    if (bias_part)  // row by row, in order; vectorised across F only
      detail::column_sums(go, relu_output ? relu_output + row0 * g.F : nullptr, rows, g.F, bias_part);
  });
  if (single) return;

  // 2. Sum the partials in chunk order for every element; the elements are
  // split into fixed blocks that run in parallel.
  const std::size_t total = KF + (grad_bias ? g.F : 0);
  constexpr std::size_t block = 2048;
  parallel_for(chunk_count(total, block), [&](std::ptrdiff_t b) {
    const std::size_t e0 = static_cast<std::size_t>(b) * block;
    const std::size_t e1 = std::min(total, e0 + block);
    // Elements [e0, e1) of the concatenation (kernel gradient, bias gradient).
    auto reduce = [&](std::size_t begin, std::size_t end, T* out, std::size_t offset) {
      if (begin >= end) return;
      const std::size_t len = end - begin;
      std::memcpy(out, workspace.partial(0) + begin + offset, len * sizeof(T));
      for (std::size_t c = 1; c < chunking.chunks; ++c) {
        const T* part = workspace.partial(c) + begin + offset;
        for (std::size_t i = 0; i < len; ++i) out[i] += part[i];
      }
    };
    reduce(e0, std::min(e1, KF), grad_kernel + e0, 0);
    if (e1 > KF) {
      const std::size_t b0 = std::max(e0, KF) - KF, b1 = e1 - KF;
      reduce(b0, b1, grad_bias + b0, KF);
    }
  });
}

// ---------------------------------------------------------------------------
// Checked overloads on tensor views: the same kernels, after checking every
// shape against the geometry (ShapeError naming expected and actual shapes).
// ---------------------------------------------------------------------------

namespace detail {
template <class T>
struct identity {
  using type = T;
};
template <class T>
using same_t = typename identity<T>::type;  // blocks deduction: T comes from the workspace

inline void check_conv_shape(const char* what, const char* operand, const Shape& expected,
                             const Shape& got) {
  if (expected != got)
    throw ShapeError(lamina::detail::concat(what, ": ", operand, " must be ", expected.to_string(),
                                    " for this geometry, got ", got.to_string()));
}
}  // namespace detail

/// conv2d_forward on views; a default-constructed (null) bias view means no bias.
template <class T>
void conv2d_forward(const Conv2DGeometry& g, TensorView<const detail::same_t<T>> input,
                    TensorView<const detail::same_t<T>> kernel,
                    TensorView<const detail::same_t<T>> bias, TensorView<detail::same_t<T>> output,
                    Conv2DWorkspace<T>& workspace, bool relu = false) {
  const char* what = "conv2d_forward";
  detail::check_conv_shape(what, "input", g.input_shape(), input.shape());
  detail::check_conv_shape(what, "kernel", g.kernel_shape(), kernel.shape());
  const bool has_bias = bias.data() != nullptr;
  if (has_bias) detail::check_conv_shape(what, "bias", Shape{g.F}, bias.shape());
  detail::check_conv_shape(what, "output", g.output_shape(), output.shape());
  conv2d_forward(g, input.data(), kernel.data(), has_bias ? bias.data() : nullptr,
                 output.data(), workspace, relu);
}

/// conv2d_backward_data on views.
template <class T>
void conv2d_backward_data(const Conv2DGeometry& g, TensorView<const detail::same_t<T>> grad_output,
                          TensorView<const detail::same_t<T>> kernel,
                          TensorView<detail::same_t<T>> grad_input, Conv2DWorkspace<T>& workspace) {
  const char* what = "conv2d_backward_data";
  detail::check_conv_shape(what, "grad_output", g.output_shape(), grad_output.shape());
  detail::check_conv_shape(what, "kernel", g.kernel_shape(), kernel.shape());
  detail::check_conv_shape(what, "grad_input", g.input_shape(), grad_input.shape());
  conv2d_backward_data(g, grad_output.data(), kernel.data(), grad_input.data(), workspace);
}

/// conv2d_backward_weights on views; a default-constructed (null) grad_bias view means no bias.
template <class T>
void conv2d_backward_weights(const Conv2DGeometry& g, TensorView<const detail::same_t<T>> input,
                             TensorView<const detail::same_t<T>> grad_output,
                             TensorView<detail::same_t<T>> grad_kernel,
                             TensorView<detail::same_t<T>> grad_bias,
                             Conv2DWorkspace<T>& workspace) {
  const char* what = "conv2d_backward_weights";
  detail::check_conv_shape(what, "input", g.input_shape(), input.shape());
  detail::check_conv_shape(what, "grad_output", g.output_shape(), grad_output.shape());
  detail::check_conv_shape(what, "grad_kernel", g.kernel_shape(), grad_kernel.shape());
  const bool has_bias = grad_bias.data() != nullptr;
  if (has_bias) detail::check_conv_shape(what, "grad_bias", Shape{g.F}, grad_bias.shape());
  conv2d_backward_weights(g, input.data(), grad_output.data(), grad_kernel.data(),
                          has_bias ? grad_bias.data() : nullptr, workspace);
}

}  // namespace lamina::kernels
