// lamina/kernels/im2col.hpp: the im2col and col2im transforms of the Conv2D
// im2col kernels (kernels/conv2d_im2col.hpp); their scalar references are in
// kernels/conv2d_reference.hpp.
//
// For the images [n_begin, n_end) of an NHWC batch, the column matrix is
// ((n_end - n_begin) * OH * OW, KH * KW * C), row-major. Row
// ((n - n_begin) * OH + oh) * OW + ow holds the receptive field of output pixel
// (n, oh, ow): for each kernel tap (kh, kw), in that order, the C channels of
// input pixel (oh * sh + kh - pad_top, ow * sw + kw - pad_left), or zeros when
// that pixel lies in the padding. Its column order is the kernel's row order,
// so output (rows, F) = columns (rows, KH*KW*C) x kernel (KH*KW*C, F) is one
// GEMM whose result is already NHWC. Because each tap's C channels are
// contiguous in NHWC, and so are the in-range taps kw_lo..kw_hi of one kernel
// row (they are neighbouring pixels), one kernel row of one output pixel is a
// single contiguous copy of (kw_hi - kw_lo) * C values: im2col copies it with
// xsimd batches and a scalar tail, which also keeps C == 1 efficient (runs of
// KW pixels, not single values). col2im is the adjoint: it scatter-adds a
// column matrix back into the images.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>

#include <xsimd/xsimd.hpp>

#include "lamina/kernels/conv2d_geometry.hpp"

namespace lamina::kernels {

namespace detail {

// dst[0, len) = src[0, len) with full SIMD batches and a scalar tail.
template <class T>
inline void simd_copy(T* dst, const T* src, std::size_t len) noexcept {
  using Batch = xsimd::batch<T>;
  constexpr std::size_t width = Batch::size;
  std::size_t i = 0;
  for (; i + width <= len; i += width) Batch::load_unaligned(src + i).store_unaligned(dst + i);
  for (; i < len; ++i) dst[i] = src[i];
}

// dst[0, len) = 0.
template <class T>
inline void simd_zero(T* dst, std::size_t len) noexcept {
  using Batch = xsimd::batch<T>;
  constexpr std::size_t width = Batch::size;
  const Batch zero(T(0));
  std::size_t i = 0;
  for (; i + width <= len; i += width) zero.store_unaligned(dst + i);
  for (; i < len; ++i) dst[i] = T(0);
}

// dst[0, len) += src[0, len). Each element gets exactly one addition, so the
// result does not depend on the batch width.
template <class T>
inline void simd_add(T* dst, const T* src, std::size_t len) noexcept {
  using Batch = xsimd::batch<T>;
  constexpr std::size_t width = Batch::size;
  std::size_t i = 0;
  for (; i + width <= len; i += width)
    (Batch::load_unaligned(dst + i) + Batch::load_unaligned(src + i)).store_unaligned(dst + i);
  for (; i < len; ++i) dst[i] += src[i];
}

// Walks the column matrix of images [n_begin, n_end) row by row, kernel row by
// kernel row, calling visit(column_segment, image_run, taps) for each kernel row
// of each output pixel: column_segment points at the KW * C values of that
// kernel row, image_run at the first in-range input pixel (nullptr when the
// whole kernel row is in the padding) and taps is the in-range [lo, hi).
template <class T, class Input, class Visit>
inline void for_each_kernel_row(const Conv2DGeometry& g, Input* images, std::size_t n_begin,
                                std::size_t n_end, T* columns, Visit&& visit) {
  const auto H = static_cast<std::ptrdiff_t>(g.H), W = static_cast<std::ptrdiff_t>(g.W);
  const auto C = static_cast<std::ptrdiff_t>(g.C);
  const auto KH = static_cast<std::ptrdiff_t>(g.KH), KW = static_cast<std::ptrdiff_t>(g.KW);
  const auto sh = static_cast<std::ptrdiff_t>(g.sh), sw = static_cast<std::ptrdiff_t>(g.sw);
  const auto pt = static_cast<std::ptrdiff_t>(g.pad_top), pl = static_cast<std::ptrdiff_t>(g.pad_left);
  const auto OH = static_cast<std::ptrdiff_t>(g.OH), OW = static_cast<std::ptrdiff_t>(g.OW);
  const std::ptrdiff_t kernel_row = KW * C;   // values per kernel row in a column row
  const std::ptrdiff_t patch = KH * kernel_row;
  T* row = columns;
  for (std::size_t n = n_begin; n < n_end; ++n) {
    Input* image = images + static_cast<std::ptrdiff_t>(n) * H * W * C;  // (H, W, C)
    for (std::ptrdiff_t oh = 0; oh < OH; ++oh) {
      const std::ptrdiff_t ih0 = oh * sh - pt;
      for (std::ptrdiff_t ow = 0; ow < OW; ++ow, row += patch) {
        const std::ptrdiff_t iw0 = ow * sw - pl;
        const TapRange taps = tap_range(iw0, KW, W);
        for (std::ptrdiff_t kh = 0; kh < KH; ++kh) {
          const std::ptrdiff_t ih = ih0 + kh;
          T* segment = row + kh * kernel_row;
          if (ih < 0 || ih >= H || taps.lo == taps.hi) {
            visit(segment, static_cast<Input*>(nullptr), TapRange{0, 0});
          } else {
            visit(segment, image + (ih * W + iw0 + taps.lo) * C, taps);
          }
        }
      }
    }
  }
}

}  // namespace detail

/// im2col of images [n_begin, n_end) of `input` (N, H, W, C) into `columns`
/// ((n_end - n_begin) * OH * OW, KH * KW * C), row-major; padding becomes zeros.
/// SIMD (xsimd) over the contiguous channels of each kernel row.
template <class T>
void im2col(const Conv2DGeometry& g, const T* input, std::size_t n_begin, std::size_t n_end,
            T* columns) {
  const std::size_t C = g.C, KW = g.KW;
  detail::for_each_kernel_row(
      g, input, n_begin, n_end, columns,
      [C, KW](T* segment, const T* run, detail::TapRange taps) {
        const std::size_t lo = static_cast<std::size_t>(taps.lo) * C;
        const std::size_t hi = static_cast<std::size_t>(taps.hi) * C;
        if (!run) {
          detail::simd_zero(segment, KW * C);
          return;
        }
        if (lo) detail::simd_zero(segment, lo);
        detail::simd_copy(segment + lo, run, hi - lo);
        if (hi < KW * C) detail::simd_zero(segment + hi, KW * C - hi);
      });
}

/// col2im, the adjoint of im2col: OVERWRITES images [n_begin, n_end) of
/// `input_grad` (N, H, W, C) with the scatter-add of `columns`
/// ((n_end - n_begin) * OH * OW, KH * KW * C); other images are untouched.
/// Each input element receives its contributions in column-row order, then
/// kernel-tap order (kh, kw): a fixed order, independent of the SIMD width.
template <class T>
void col2im(const Conv2DGeometry& g, const T* columns, std::size_t n_begin, std::size_t n_end,
            T* input_grad) {
  const std::size_t image_size = g.H * g.W * g.C;
  detail::simd_zero(input_grad + n_begin * image_size, (n_end - n_begin) * image_size);
  const std::size_t C = g.C;
  detail::for_each_kernel_row(g, input_grad, n_begin, n_end, columns,
                              [C](const T* segment, T* run, detail::TapRange taps) {
                                if (!run) return;
                                const std::size_t lo = static_cast<std::size_t>(taps.lo) * C;
                                const std::size_t hi = static_cast<std::size_t>(taps.hi) * C;
                                detail::simd_add(run, segment + lo, hi - lo);
                              });
}

}  // namespace lamina::kernels
