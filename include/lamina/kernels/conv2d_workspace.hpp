// lamina/kernels/conv2d_workspace.hpp: what the Conv2D kernels share: the
// choice of algorithm, how a batch is cut into chunks, the workspace and the
// reductions over per-chunk partials.
//
// CHUNKS AND THREADS
//   The im2col and direct kernels cut the batch into chunks of
//   `images_per_chunk` consecutive images, chosen by conv2d_chunking() from
//   the problem shape and sizeof(T) only, never from the thread count: enough
//   images for a column buffer of about kConv2DColumnBytes (so it stays in
//   cache between im2col and the GEMM), but at least kConv2DMinChunks chunks
//   (when there are that many images), at most kConv2DMaxChunks chunks and at
//   most kConv2DPartialBytes of per-chunk weight-gradient partials (the last
//   two win). lamina::parallel_for_ranges hands the chunks to the threads
//   (OpenMP static schedule); inside a chunk everything is serial (lamina's
//   GEMM is; Eigen's is pinned to one thread), so no parallel region is ever
//   nested. A chunk writes only its own images' rows of the output or of
//   grad_input, and only its own partial weight gradient. (Winograd chunks its
//   own way: kernels/winograd.hpp.)
//   Scratch column buffers belong to the worker running the chunk (one per
//   thread, at most min(threads, chunks)), not to the chunk: a chunk
//   overwrites its buffer entirely before reading it, so which buffer it gets
//   cannot change any value, and memory stays at threads x ~kConv2DColumnBytes
//   instead of a whole-batch im2col.
//
// DETERMINISM
//   Every output element of forward and backward data is computed by exactly
//   one chunk, by serial code whose order of operations depends only on the
//   shapes, so it is the same whatever thread runs it. The weight and bias
//   gradients are sums over the whole batch: each chunk writes its partial sum
//   into its own slot of the workspace, and then the partials are added in
//   chunk order 0, 1, 2, ... for every element (detail::conv2d_sum_partials;
//   the loop over elements is what runs in parallel, in fixed blocks). The
//   chunking does not depend on the thread count, so neither does any
//   rounding: 1 thread or 16 give the same bits (for one build: another
//   -march selects other SIMD widths, and so other roundings).
//
// WORKSPACE
//   Conv2DWorkspace<T> holds the settings (Conv2DAlgorithm, GemmKernel), the
//   column buffers (also the implicit kernels' border rows and the direct
//   kernels' padded image), the partials, the packed weights, the padded
//   grad_output rows (F not a multiple of the batch size), the row-pointer
//   tables and the Winograd kernels' own WinogradWorkspace. The kernels grow
//   it when a call needs more than it has and never shrink it, so after the
//   first call at the largest batch size (or after reserve()) they do not
//   allocate. One workspace must not be used by two calls at the same time.
//   (With GemmKernel::eigen, Eigen's GEMM may still allocate its own packing
//   buffers when they exceed its stack limit; lamina's GEMM allocates nothing.)
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <type_traits>
#include <vector>

#include "lamina/core/tensor.hpp"
#include "lamina/core/threads.hpp"
#include "lamina/kernels/conv2d_geometry.hpp"
#include "lamina/kernels/gemm.hpp"

namespace lamina::kernels {

/// Which algorithm the Conv2D kernels run (conv2d_choose in kernels/conv2d.hpp
/// applies it, pass by pass). Results differ between algorithms only by
/// rounding.
enum class Conv2DAlgorithm {
  automatic,  // Winograd on 3x3 stride-1 layers with a SIMD batch of channels and of filters,
              // the direct kernels on one-channel 3x3 layers, im2col elsewhere
  im2col,     // im2col (explicit or implicit) + a GEMM (kernels/conv2d_im2col.hpp) for every shape
  winograd,   // Winograd F(2x2, 3x3) (kernels/winograd.hpp) wherever it applies (3x3, stride 1),
              // else as automatic
  direct,     // the direct kernels (kernels/conv2d_direct.hpp) wherever they apply, else as automatic
};

inline const char* to_string(Conv2DAlgorithm a) noexcept {
  switch (a) {
    case Conv2DAlgorithm::automatic: return "automatic";
    case Conv2DAlgorithm::im2col: return "im2col";
    case Conv2DAlgorithm::winograd: return "winograd";
    case Conv2DAlgorithm::direct: return "direct";
  }
  return "?";
}

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
/// the implicit-im2col forward's scratch (kernels/conv2d_im2col.hpp).
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
// Workspaces
// ---------------------------------------------------------------------------

namespace detail {
// The workspaces' buffer rules: every buffer starts on a 64-byte boundary, and
// grows, never shrinks.
template <class T>
std::size_t round_up_to_line(std::size_t n) noexcept {
  constexpr std::size_t per_line = kAlignment / sizeof(T);
  return (n + per_line - 1) / per_line * per_line;
}
template <class T>
void grow_buffer(Tensor<T>& buffer, std::size_t& capacity, std::size_t n) {
  if (n > capacity) {
    buffer = Tensor<T>();  // free first: the old contents are not needed
    buffer.resize(Shape{n});
    capacity = n;
  }
}
}  // namespace detail

/// Scratch memory of the Winograd kernels (kernels/winograd.hpp): per worker
/// V and M blocks, the transformed kernel, the per-chunk partials of backward
/// weights, the transposed kernel of backward data.
template <class T>
class WinogradWorkspace {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "float or double");

 public:
  /// Bytes held (capacity).
  std::size_t capacity_bytes() const noexcept {
    return (blocks_capacity_ + kernel_capacity_ + partials_capacity_ + transposed_capacity_) * sizeof(T);
  }

  // --- used by the kernels -------------------------------------------------
  void reserve_blocks(std::size_t per_worker, std::size_t workers) {
    block_stride_ = round_up(per_worker);
    grow(blocks_, blocks_capacity_, block_stride_ * workers);
  }
  T* block(std::size_t worker) noexcept { return blocks_.data() + worker * block_stride_; }
  void reserve_kernel(std::size_t n) { grow(kernel_, kernel_capacity_, n); }
  T* kernel() noexcept { return kernel_.data(); }
  void reserve_partials(std::size_t per_chunk, std::size_t chunks) {
    partial_stride_ = round_up(per_chunk);
    grow(partials_, partials_capacity_, partial_stride_ * chunks);
  }
  T* partial(std::size_t chunk) noexcept { return partials_.data() + chunk * partial_stride_; }
  void reserve_transposed(std::size_t n) { grow(transposed_, transposed_capacity_, n); }
  T* transposed() noexcept { return transposed_.data(); }

 private:
  static std::size_t round_up(std::size_t n) noexcept { return detail::round_up_to_line<T>(n); }
  static void grow(Tensor<T>& buffer, std::size_t& capacity, std::size_t n) {
    detail::grow_buffer(buffer, capacity, n);
  }

  Tensor<T> blocks_;    // (workers, block_stride_): V block then M block
  Tensor<T> kernel_;    // (16, rows, padded columns): the transformed kernel U, or dU
  Tensor<T> partials_;  // (chunks, partial_stride_): backward weights' partial dU and bias
  Tensor<T> transposed_;  // (3, 3, F, C): the kernel for backward data's transform
  std::size_t blocks_capacity_ = 0, kernel_capacity_ = 0, partials_capacity_ = 0, transposed_capacity_ = 0;
  std::size_t block_stride_ = 0, partial_stride_ = 0;
};

/// The Conv2D kernels' settings (algorithm, GEMM) and scratch memory, reused
/// across calls (see WORKSPACE at the top of this file). Not thread-safe: one
/// workspace per concurrent caller.
template <class T>
class Conv2DWorkspace {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "float or double");

 public:
  Conv2DWorkspace() = default;
  explicit Conv2DWorkspace(Conv2DAlgorithm algorithm, GemmKernel gemm = GemmKernel::automatic)
      : algorithm_(algorithm), gemm_(gemm) {}

  /// The algorithm the kernels run (Conv2DAlgorithm::automatic unless set;
  /// conv2d_choose in kernels/conv2d.hpp applies it).
  Conv2DAlgorithm algorithm() const noexcept { return algorithm_; }
  void set_algorithm(Conv2DAlgorithm algorithm) noexcept { algorithm_ = algorithm; }
  /// The GEMM of the im2col kernels (GemmKernel::automatic unless set).
  GemmKernel gemm() const noexcept { return gemm_; }
  void set_gemm(GemmKernel gemm) noexcept { gemm_ = gemm; }
  /// The Winograd kernels' own scratch.
  WinogradWorkspace<T>& winograd() noexcept { return winograd_; }

  /// Grows the buffers for everything the kernels need on geometry g with the
  /// current thread count, so that later calls on g (or smaller) do not allocate.
  void reserve(const Conv2DGeometry& g) {
    const Conv2DChunking chunking = conv2d_chunking<T>(g);
    const std::size_t workers = worker_count(chunking);
    reserve_columns(g, chunking, workers);
    reserve_partials(g, chunking);
    if (gemm_ != GemmKernel::eigen) {
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
    // Also room for the implicit-im2col forward's scratch rows (detail::conv2d_forward_rows),
    // the implicit backward weights' zero row (detail::conv2d_backward_weights_rows) and
    // the direct kernels' padded image (detail::conv2d_direct_pad_image).
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
  // Every buffer starts on a 64-byte boundary (detail::round_up_to_line).
  static std::size_t round_up(std::size_t n) noexcept { return detail::round_up_to_line<T>(n); }
  static void grow(Tensor<T>& buffer, std::size_t& capacity, std::size_t n) {
    detail::grow_buffer(buffer, capacity, n);
  }

  Conv2DAlgorithm algorithm_ = Conv2DAlgorithm::automatic;
  GemmKernel gemm_ = GemmKernel::automatic;
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
// Reductions over the rows of a chunk and over the chunks' partials
// ---------------------------------------------------------------------------

namespace detail {

// sums (F) = the column sums of rows (R, F), row by row in order; with a mask
// (same layout), of mask > 0 ? rows : 0.
template <class T>
void column_sums(const T* rows, const T* mask, std::size_t R, std::size_t F, T* sums) {
  std::fill(sums, sums + F, T(0));
  if (R == 0) return;
  for (std::size_t f = 0; f < F; ++f) sums[f] = !mask || mask[f] > T(0) ? rows[f] : T(0);
  for (std::size_t r = 1; r < R; ++r) {
    const T* row = rows + r * F;
    if (mask) {
      const T* m = mask + r * F;
      for (std::size_t f = 0; f < F; ++f) sums[f] += m[f] > T(0) ? row[f] : T(0);
    } else {
      for (std::size_t f = 0; f < F; ++f) sums[f] += row[f];
    }
  }
}

// grad_kernel (K*F) and grad_bias (F, skipped when null) = the sum of the
// chunks' partials (workspace.partial(c): the kernel gradient, then the bias
// gradient), added in chunk order 0, 1, ... for every element; the elements
// are split into fixed blocks that run in parallel.
template <class T>
void conv2d_sum_partials(const Conv2DGeometry& g, std::size_t chunks, T* grad_kernel, T* grad_bias,
                         Conv2DWorkspace<T>& workspace) {
  const std::size_t KF = g.kernel_size();
  const std::size_t total = KF + (grad_bias ? g.F : 0);
  constexpr std::size_t block = 2048;
  parallel_for_ranges(total, block, [&](const ChunkRange& range) {
    const std::size_t e0 = range.begin, e1 = range.end;
    // Elements [e0, e1) of the concatenation (kernel gradient, bias gradient).
    auto reduce = [&](std::size_t begin, std::size_t end, T* out, std::size_t offset) {
      if (begin >= end) return;
      const std::size_t len = end - begin;
      std::memcpy(out, workspace.partial(0) + begin + offset, len * sizeof(T));
      for (std::size_t c = 1; c < chunks; ++c) {
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

}  // namespace detail

}  // namespace lamina::kernels
