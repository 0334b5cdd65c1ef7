// lamina/kernels/winograd.hpp: 3x3 stride-1 convolution by Winograd's minimal
// filtering F(2x2, 3x3) [Lavin & Gray, "Fast Algorithms for Convolutional
// Neural Networks", CVPR 2016]: forward, backward data and backward weights,
// each with the layouts of kernels/conv2d_geometry.hpp (NHWC images, HWIO
// kernel). The transforms are in kernels/winograd_transforms.hpp.
//
// THE ALGORITHM
//   The output is cut into tiles of 2x2 pixels; tile (th, tw) reads the 4x4
//   input patch whose top-left corner is (2 th - pad_top, 2 tw - pad_left)
//   (zeros outside the image). For one input channel c and filter f,
//       Y (2x2) = A^T [ (G g G^T) (.) (B^T d B) ] A
//   with g the 3x3 kernel, d the 4x4 patch, (.) the element-wise product and
//       B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
//       G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
//       A^T = [1 1 1 0; 0 1 -1 -1].
//   Summed over the channels, the element-wise products become 16 GEMMs, one
//   per position xi of the 4x4 transformed tile:
//       M[xi] (tiles, F) = V[xi] (tiles, C) x U[xi] (C, F)
//   with V = B^T d B per tile and channel, U = G g G^T per channel pair. A
//   4x4 tile costs 16 C F multiply-adds for 4 outputs instead of 36 C F: the
//   GEMMs do 2.25 times fewer flops than im2col + GEMM, and the transforms are
//   additions (the kernel's also exact halvings). The kernel's transform is
//   recomputed on every call, because the optimizer changes the kernel in
//   place; it runs in SIMD lanes so that it stays a small part of a batch-1
//   inference.
//
//   backward data is the same computation: grad_input is the correlation of
//   grad_output (padded by 2 - pad_top, 2 - pad_left) with the kernel rotated
//   by 180 degrees and its channel axes swapped, g'[u][v][f][c] = g[2-u][2-v][c][f].
//   backward weights differentiates the forward's algebra: with
//   dM = A dY A^T per tile (dY the tile's 2x2 output gradient, zero past the
//   image), dU[xi] (C, F) = V[xi]^T (C, tiles) x dM[xi] (tiles, F) summed over
//   every tile, and grad_kernel = G^T dU G. These are the exact gradients of
//   the convolution; only the rounding differs from im2col's.
//
// ACCURACY
//   The transforms add up to 4 values per entry on either side, so a product
//   in the transformed domain is up to 16 (input, 2.25 kernel) times larger
//   than the products it stands for, and the rounding error of an output is
//   up to that many times larger than im2col's (still a few units of the last
//   place relative to sum|terms| in practice; tests/test_winograd.cpp bounds
//   it). F(2x2, 3x3) is the variant whose error stays this small; the larger
//   tiles (F(4x4, 3x3), 4x fewer flops) lose about 2 more decimal digits.
//
// BLOCKS, CHUNKS, THREADS AND DETERMINISM
//   Tiles are numbered image by image, row by row. A chunk is a run of whole
//   images; inside a chunk, blocks of at most block_tiles consecutive tiles
//   are transformed into the worker's V buffer (tiles, 16, C rounded up to the
//   batch size; 16 C-vectors per tile, one per xi, so a tile's data is
//   contiguous), multiplied by lamina's GEMM into the worker's M buffer
//   (tiles, 16, F padded) and transformed back. block_tiles keeps V and M in
//   L2 together (kWinogradBlockBytes).
//   forward / backward data: every output pixel belongs to one tile; its
//   value is the fixed transform of 16 GEMM elements, each one FMA chain over
//   the channels in order (kernels/gemm.hpp). So it does not depend on the
//   block, the chunk, the batch or the thread: an image gets the same bits in
//   a batch of 1 or of 1000, with 1 thread or 16.
//   backward weights: a chunk's partial dU is one chain of FMAs over the
//   chunk's tiles in order (later blocks accumulate onto earlier ones); the
//   chunking (kWinogradWeightChunks) depends on the batch size only; the
//   partials are added in chunk order, then transformed back in double. Same
//   bits with any thread count.
//
// WORKSPACE
//   WinogradWorkspace<T> (kernels/conv2d_workspace.hpp): per worker V and M
//   blocks, the transformed kernel, the per-chunk partials. Grown on demand,
//   never shrunk; no allocation once it has seen the largest shape. One
//   workspace per concurrent caller.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "lamina/core/threads.hpp"
#include "lamina/kernels/conv2d_geometry.hpp"
#include "lamina/kernels/conv2d_workspace.hpp"
#include "lamina/kernels/gemm.hpp"
#include "lamina/kernels/winograd_transforms.hpp"

namespace lamina::kernels {

/// Target bytes of one worker's V and M blocks together: 3/4 of a 1 MiB L2
/// (Zen 4; recent Intel cores have 1-2 MiB). Measured on the CNN's layers:
/// 96 KiB to 384 KiB blocks are up to 40% slower in backward weights (each
/// block reloads the partial dU), 768 KiB to 3 MiB are all within noise.
inline constexpr std::size_t kWinogradBlockBytes = std::size_t(768) << 10;
/// backward weights cuts a batch into at most this many chunks (partials):
/// enough to balance 16 threads, few enough that the partials stay small.
inline constexpr std::size_t kWinogradWeightChunks = 16;

/// True when Winograd F(2x2, 3x3) computes this convolution: a 3x3 kernel
/// with stride 1 (any padding, any channel counts).
inline bool winograd_applicable(const Conv2DGeometry& g) noexcept {
  return g.KH == 3 && g.KW == 3 && g.sh == 1 && g.sw == 1;
}

/// Tiles per block for `in_channels` transformed inputs and `out_channels`
/// outputs (both already rounded up to the batch size): as many as fit
/// kWinogradBlockBytes, a multiple of 12 (the GEMM's tile height), 12 to 384.
template <class T>
std::size_t winograd_block_tiles(std::size_t in_channels, std::size_t out_channels) noexcept {
  const std::size_t per_tile = 16 * (in_channels + out_channels) * sizeof(T);
  const std::size_t fit = kWinogradBlockBytes / std::max<std::size_t>(per_tile, 1);
  return std::clamp<std::size_t>(fit / 12 * 12, 12, 384);
}

namespace detail {

// Images [n0, n1): out = A^T [U (.) (B^T d B)] A [+ bias] [ReLU], the tiles in
// blocks of block_tiles (see the top of the file). block: the worker's
// scratch, block_tiles * 16 * (ldv + ldu) values.
template <class T>
void winograd_correlate_images(const T* src, std::size_t SH, std::size_t SW, std::size_t CS, std::ptrdiff_t pad_t,
                               std::ptrdiff_t pad_l, const T* U, std::size_t ldu, const T* bias, bool relu, T* out,
                               std::size_t OH, std::size_t OW, std::size_t FO, std::size_t n0, std::size_t n1,
                               std::size_t block_tiles, T* block, const T* mask) {
  const WinogradTiling tiling = winograd_tiling(OH, OW);
  const std::size_t ldv = gemm_padded_columns<T>(CS);
  T* V = block;                             // (block_tiles, 16, ldv)
  T* M = block + block_tiles * 16 * ldv;    // (block_tiles, 16, ldu)
  const std::size_t tiles = (n1 - n0) * tiling.per_image();
  for (std::size_t t0 = 0; t0 < tiles; t0 += block_tiles) {
    const std::size_t count = std::min(block_tiles, tiles - t0);
    winograd_input_transform(src, SH, SW, CS, pad_t, pad_l, tiling, n0, t0, count, V, ldv, mask);
    for (std::size_t xi = 0; xi < 16; ++xi)
      gemm_prepacked(count, ldu, CS, V + xi * ldv, 16 * ldv, false, U + xi * CS * ldu, ldu, M + xi * ldu,
                     16 * ldu);
    winograd_output_transform(M, ldu, tiling, n0, t0, count, bias, relu, out, OH, OW, FO);
  }
}

// Images per chunk of the forward and backward-data passes: enough tiles to
// fill a block, but at least min(N, 16) chunks. Shape only.
inline std::size_t winograd_images_per_chunk(std::size_t N, std::size_t tiles_per_image, std::size_t block_tiles) {
  std::size_t per_chunk = std::max<std::size_t>(1, block_tiles / std::max<std::size_t>(tiles_per_image, 1));
  per_chunk = std::min(per_chunk, std::max<std::size_t>(1, (N + 15) / 16));
  return per_chunk;
}

// The shared driver of forward and backward data: out (N, OH, OW, FO) from
// src (N, SH, SW, CS) and the kernel transformed into the workspace.
template <class T>
void winograd_correlate(std::size_t N, const T* src, std::size_t SH, std::size_t SW, std::size_t CS,
                        std::ptrdiff_t pad_t, std::ptrdiff_t pad_l, const T* kernel, std::size_t C, std::size_t F,
                        bool flipped, const T* bias, bool relu, T* out, std::size_t OH, std::size_t OW,
                        std::size_t FO, WinogradWorkspace<T>& workspace, const T* mask = nullptr) {
  const std::size_t ldv = gemm_padded_columns<T>(CS), ldu = gemm_padded_columns<T>(FO);
  workspace.reserve_kernel(16 * CS * ldu);
  if (flipped) {  // the kernel (3, 3, C, F) transposed to (3, 3, F, C)
    workspace.reserve_transposed(9 * C * F);
    T* transposed = workspace.transposed();
    for (std::size_t t = 0; t < 9; ++t)
      for (std::size_t c = 0; c < C; ++c)
        for (std::size_t f = 0; f < F; ++f) transposed[(t * F + f) * C + c] = kernel[(t * C + c) * F + f];
    winograd_kernel_transform(static_cast<const T*>(transposed), F, C, true, workspace.kernel(), ldu);
  } else {
    winograd_kernel_transform(kernel, C, F, false, workspace.kernel(), ldu);
  }
  const WinogradTiling tiling = winograd_tiling(OH, OW);
  const std::size_t block_tiles = winograd_block_tiles<T>(ldv, ldu);
  const std::size_t per_chunk = winograd_images_per_chunk(N, tiling.per_image(), block_tiles);
  const std::size_t workers = parallel_workers(chunk_count(N, per_chunk));
  workspace.reserve_blocks(block_tiles * 16 * (ldv + ldu), workers);
  const T* U = workspace.kernel();
  parallel_for_ranges(N, per_chunk, [&](const ChunkRange& chunk) {
    const std::size_t n0 = chunk.begin, n1 = chunk.end;
    T* block = workspace.block(workers > 1 ? parallel_worker_index() : 0);
    winograd_correlate_images(src, SH, SW, CS, pad_t, pad_l, U, ldu, bias, relu, out, OH, OW, FO, n0, n1,
                              block_tiles, block, mask);
  });
}

}  // namespace detail

/// output = conv(input, kernel) + bias [then ReLU], by Winograd F(2x2, 3x3).
/// Needs winograd_applicable(g). Overwrites output.
template <class T>
void conv2d_winograd_forward(const Conv2DGeometry& g,
                             const T* input,   // (N, H, W, C)
                             const T* kernel,  // (3, 3, C, F)
                             const T* bias,    // (F) or nullptr
                             T* output,        // (N, OH, OW, F)
                             WinogradWorkspace<T>& workspace, bool relu = false) {
  detail::winograd_correlate<T>(g.N, input, g.H, g.W, g.C, static_cast<std::ptrdiff_t>(g.pad_top),
                             static_cast<std::ptrdiff_t>(g.pad_left), kernel, g.C, g.F, false, bias, relu, output,
                             g.OH, g.OW, g.F, workspace);
}

/// grad_input = d(sum output * grad_output)/d input, by Winograd F(2x2, 3x3)
/// on grad_output and the rotated kernel. Needs winograd_applicable(g).
/// Overwrites grad_input. relu_output: when not null, the output of a ReLU
/// fused after the convolution, and grad_output the gradient after it; the
/// kernel then uses relu_output > 0 ? grad_output : 0 (activation_backward's
/// values, so the same bits as masking first).
template <class T>
void conv2d_winograd_backward_data(const Conv2DGeometry& g,
                                   const T* grad_output,  // (N, OH, OW, F)
                                   const T* kernel,       // (3, 3, C, F)
                                   T* grad_input,         // (N, H, W, C)
                                   WinogradWorkspace<T>& workspace,
                                   const T* relu_output = nullptr) {  // (N, OH, OW, F) or nullptr
  // grad_input[h][w] reads grad_output[h - (2 - pad_top) + u'] for u' in 0..2.
  detail::winograd_correlate<T>(g.N, grad_output, g.OH, g.OW, g.F, 2 - static_cast<std::ptrdiff_t>(g.pad_top),
                             2 - static_cast<std::ptrdiff_t>(g.pad_left), kernel, g.C, g.F, true, nullptr, false,
                             grad_input, g.H, g.W, g.C, workspace, relu_output);
}

/// grad_kernel and grad_bias (skipped when nullptr) of the convolution, by
/// differentiating Winograd F(2x2, 3x3) (see the top of the file). Needs
/// winograd_applicable(g). Both overwritten; the same bits with any thread count.
/// relu_output: as for conv2d_winograd_backward_data.
template <class T>
void conv2d_winograd_backward_weights(const Conv2DGeometry& g,
                                      const T* input,        // (N, H, W, C)
                                      const T* grad_output,  // (N, OH, OW, F)
                                      T* grad_kernel,        // (3, 3, C, F)
                                      T* grad_bias,          // (F) or nullptr
                                      WinogradWorkspace<T>& workspace,
                                      const T* relu_output = nullptr) {  // (N, OH, OW, F) or nullptr
  const WinogradTiling tiling = winograd_tiling(g.OH, g.OW);
  const std::size_t ldv = gemm_padded_columns<T>(g.C), ldm = gemm_padded_columns<T>(g.F);
  const std::size_t block_tiles = winograd_block_tiles<T>(ldv, ldm);
  const std::size_t chunks = std::min(g.N, kWinogradWeightChunks);
  const std::size_t per_chunk = (g.N + chunks - 1) / chunks;
  const std::size_t used_chunks = (g.N + per_chunk - 1) / per_chunk;
  const std::size_t workers = parallel_workers(static_cast<std::ptrdiff_t>(used_chunks));
  const std::size_t dU_size = 16 * g.C * ldm;  // (16, C, padded F)
  workspace.reserve_blocks(block_tiles * 16 * (ldv + ldm), workers);
  workspace.reserve_partials(dU_size + g.F, used_chunks);
  const std::size_t pixels = g.OH * g.OW;

  // 1. Each chunk: its partial dU (16, C, padded F) and bias gradient (F).
  parallel_for_ranges(g.N, per_chunk, [&](const ChunkRange& chunk) {
    const std::size_t n0 = chunk.begin, n1 = chunk.end;
    T* block = workspace.block(workers > 1 ? parallel_worker_index() : 0);
    T* V = block;                           // (block_tiles, 16, ldv)
    T* dM = block + block_tiles * 16 * ldv;  // (block_tiles, 16, ldm)
    T* dU = workspace.partial(chunk.index);
    const std::size_t tiles = (n1 - n0) * tiling.per_image();
    for (std::size_t t0 = 0; t0 < tiles; t0 += block_tiles) {
      const std::size_t count = std::min(block_tiles, tiles - t0);
      detail::winograd_input_transform(input, g.H, g.W, g.C, static_cast<std::ptrdiff_t>(g.pad_top),
                                       static_cast<std::ptrdiff_t>(g.pad_left), tiling, n0, t0, count, V, ldv);
      detail::winograd_output_gradient_transform(grad_output, g.OH, g.OW, g.F, tiling, n0, t0, count, dM, ldm,
                                                 relu_output);
      GemmEpilogue<T> epilogue;
      epilogue.accumulate = t0 > 0;  // continue the chain of the chunk's earlier blocks
      for (std::size_t xi = 0; xi < 16; ++xi)
        gemm_prepacked(g.C, ldm, count, V + xi * ldv, 16 * ldv, true, dM + xi * ldm, 16 * ldm,
                       dU + xi * g.C * ldm, ldm, epilogue);
    }
    if (grad_bias) {  // row by row, in order
      T* bias_part = dU + dU_size;
      const T* go = grad_output + n0 * pixels * g.F;
      const T* mask = relu_output ? relu_output + n0 * pixels * g.F : nullptr;
      detail::column_sums(go, mask, (n1 - n0) * pixels, g.F, bias_part);
    }
  });

  // 2. Sum the partials in chunk order (serial: 16 C F values per chunk),
  // then grad_kernel = G^T dU G in double.
  T* dU = workspace.partial(0);
  for (std::size_t c = 1; c < used_chunks; ++c) {
    const T* part = workspace.partial(c);
    for (std::size_t i = 0; i < dU_size + g.F; ++i) dU[i] += part[i];
  }
  for (std::size_t c = 0; c < g.C; ++c)
    for (std::size_t f = 0; f < g.F; ++f) {
      double d[4][4];
      for (std::size_t xi = 0; xi < 16; ++xi) d[xi / 4][xi % 4] = static_cast<double>(dU[(xi * g.C + c) * ldm + f]);
      double gd[3][4];  // G^T dU
      for (std::size_t j = 0; j < 4; ++j) {
        gd[0][j] = d[0][j] + 0.5 * (d[1][j] + d[2][j]);
        gd[1][j] = 0.5 * (d[1][j] - d[2][j]);
        gd[2][j] = 0.5 * (d[1][j] + d[2][j]) + d[3][j];
      }
      for (std::size_t u = 0; u < 3; ++u) {  // (G^T dU) G
        const double row[3] = {gd[u][0] + 0.5 * (gd[u][1] + gd[u][2]), 0.5 * (gd[u][1] - gd[u][2]),
                               0.5 * (gd[u][1] + gd[u][2]) + gd[u][3]};
        for (std::size_t v = 0; v < 3; ++v) grad_kernel[((u * 3 + v) * g.C + c) * g.F + f] = static_cast<T>(row[v]);
      }
    }
  if (grad_bias) std::memcpy(grad_bias, dU + dU_size, g.F * sizeof(T));
}

}  // namespace lamina::kernels
