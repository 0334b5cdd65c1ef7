// lamina/kernels/conv2d_direct.hpp: the direct kernels of a one-channel 3x3
// Conv2D layer (a first layer on grey images) whose F is a multiple of the
// SIMD batch size: forward and backward weights (backward data runs the im2col
// kernels: a first layer does not need it).
//
// WHY
//   Such a layer has K = KH*KW*C = 9: its im2col runs are 3 values long and
//   the GEMM's contraction is 9, so im2col + GEMM reached 20% of the peak.
//   Direct loops run at about 2.7x (forward) and 3.2x (backward weights) the
//   speed of the im2col kernels on the reference CNN's conv1
//   (docs/performance.md).
//
// HOW
//   Each image is copied into a zero-padded (PH, PW) scratch image (so no tap
//   needs a bounds check), then
//   - forward: 6 output pixels x 2 batches of filters in 12 accumulators,
//     starting from the bias, one FMA per tap in order (kh, kw), ReLU fused;
//   - backward weights: per chunk, the 9 taps x 2 batches of filters of the
//     kernel gradient in 18 accumulators, one FMA chain per element over the
//     chunk's pixels in order; the bias gradient and the reduction over the
//     chunks as the im2col kernels do (kernels/conv2d_workspace.hpp). A fused
//     ReLU's mask is applied where grad_output is loaded.
//   The chunks are those of conv2d_chunking; every output value is computed by
//   one chunk with a fixed order, so the same bits with any thread count, and
//   an image's output has the same bits in any batch.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>

#include <xsimd/xsimd.hpp>

#include "lamina/core/threads.hpp"
#include "lamina/kernels/conv2d_geometry.hpp"
#include "lamina/kernels/conv2d_workspace.hpp"
#include "lamina/kernels/gemm.hpp"

namespace lamina::kernels {

/// True when the direct kernels compute this convolution for T: C == 1, a 3x3
/// kernel (any stride, any padding) and F a multiple of the SIMD batch size.
template <class T>
bool conv2d_direct_applicable(const Conv2DGeometry& g) noexcept {
  return g.C == 1 && g.KH == 3 && g.KW == 3 && g.F % xsimd::batch<T>::size == 0;
}

namespace detail {

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
void conv2d_direct_images(const Conv2DGeometry& g, const T* input, std::size_t n0, std::size_t n1, const T* kernel,
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

/// output = conv(input, kernel) + bias [then ReLU] by the direct kernels.
/// Needs conv2d_direct_applicable<T>(g). Overwrites output.
template <class T>
void conv2d_direct_forward(const Conv2DGeometry& g,
                           const T* input,   // (N, H, W, 1)
                           const T* kernel,  // (3, 3, 1, F)
                           const T* bias,    // (F) or nullptr
                           T* output,        // (N, OH, OW, F)
                           Conv2DWorkspace<T>& workspace, bool relu) {
  const Conv2DChunking chunking = conv2d_chunking<T>(g);
  const std::size_t workers = Conv2DWorkspace<T>::worker_count(chunking);
  workspace.reserve_columns(g, chunking, workers);  // a padded image per worker
  parallel_for_ranges(g.N, chunking.images_per_chunk, [&](const ChunkRange& chunk) {
    detail::conv2d_direct_images(g, input, chunk.begin, chunk.end, kernel, bias, relu, output,
                                 workspace.columns(Conv2DWorkspace<T>::worker_index(workers)));
  });
}

/// grad_kernel and grad_bias (skipped when nullptr) of the convolution by the
/// direct kernels. Needs conv2d_direct_applicable<T>(g). Both overwritten;
/// the same bits with any thread count. relu_output: when not null, the
/// output of a ReLU fused after the convolution, and grad_output the gradient
/// after it; the kernels then use relu_output > 0 ? grad_output : 0
/// (activation_backward's values, so the same bits as masking first).
template <class T>
void conv2d_direct_backward_weights(const Conv2DGeometry& g,
                                    const T* input,        // (N, H, W, 1)
                                    const T* grad_output,  // (N, OH, OW, F)
                                    T* grad_kernel,        // (3, 3, 1, F)
                                    T* grad_bias,          // (F) or nullptr
                                    Conv2DWorkspace<T>& workspace,
                                    const T* relu_output = nullptr) {  // (N, OH, OW, F) or nullptr
  const Conv2DChunking chunking = conv2d_chunking<T>(g);
  const std::size_t workers = Conv2DWorkspace<T>::worker_count(chunking);
  workspace.reserve_columns(g, chunking, workers);  // a padded image per worker
  const bool single = chunking.chunks == 1;         // no partials: write the result directly
  if (!single) workspace.reserve_partials(g, chunking);
  const std::size_t KF = g.kernel_size();
  // 1. Each chunk: its partial kernel gradient (3, 3, 1, F) and bias gradient (F).
  parallel_for_ranges(g.N, chunking.images_per_chunk, [&](const ChunkRange& chunk) {
    const std::size_t n0 = chunk.begin, n1 = chunk.end;
    const std::size_t row0 = n0 * g.pixels_per_image();
    const std::size_t rows = (n1 - n0) * g.pixels_per_image();
    T* kernel_part = single ? grad_kernel : workspace.partial(chunk.index);
    detail::conv2d_direct_weights(g, input, grad_output, relu_output, n0, n1, kernel_part,
                                  workspace.columns(Conv2DWorkspace<T>::worker_index(workers)));
    T* bias_part = !grad_bias ? nullptr : single ? grad_bias : workspace.partial(chunk.index) + KF;
    if (bias_part)  // row by row, in order; vectorised across F only
      detail::column_sums(grad_output + row0 * g.F, relu_output ? relu_output + row0 * g.F : nullptr, rows, g.F,
                          bias_part);
  });
  // 2. The partials summed in chunk order.
  if (!single) detail::conv2d_sum_partials(g, chunking.chunks, grad_kernel, grad_bias, workspace);
}

}  // namespace lamina::kernels
