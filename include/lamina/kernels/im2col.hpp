// lamina/kernels/im2col.hpp: Conv2D geometry and the im2col / col2im transforms.
//
// See the comment block at the top of lamina/kernels/conv2d.hpp (and
// docs/conv2d-kernels.md) for the layouts and how the transforms are used.
//
// In short: for the images [n_begin, n_end) of an NHWC batch, the column matrix
// is ((n_end - n_begin) * OH * OW, KH * KW * C), row-major. Row
// ((n - n_begin) * OH + oh) * OW + ow holds the receptive field of output pixel
// (n, oh, ow): for each kernel tap (kh, kw), in that order, the C channels of
// input pixel (oh * sh + kh - pad_top, ow * sw + kw - pad_left), or zeros when
// that pixel lies in the padding. Because each tap's C channels are contiguous
// in NHWC, and so are the in-range taps kw_lo..kw_hi of one kernel row (they are
// neighbouring pixels), one kernel row of one output pixel is a single
// contiguous copy of (kw_hi - kw_lo) * C values: this is what im2col does with
// xsimd batches (and scalar tails), which also keeps C == 1 efficient.
// col2im is the adjoint: it scatter-adds a column matrix back into the images.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string>

#include <xsimd/xsimd.hpp>

#include "lamina/core/error.hpp"
#include "lamina/core/padding.hpp"
#include "lamina/core/tensor.hpp"

namespace lamina::kernels {

/// Everything the Conv2D kernels need to know about one convolution: sizes,
/// strides and the padding Keras/TensorFlow would use. Build it with the
/// constructor, which computes OH, OW, pad_top and pad_left and throws
/// ShapeError (naming the input and kernel shapes) when the geometry is invalid.
struct Conv2DGeometry {
  std::size_t N = 0, H = 0, W = 0, C = 0;  // input (N, H, W, C)
  std::size_t F = 0;                       // filters
  std::size_t KH = 0, KW = 0;              // kernel (KH, KW, C, F)
  std::size_t sh = 1, sw = 1;              // strides
  std::size_t pad_top = 0, pad_left = 0;   // zeros before the first row/column
  std::size_t OH = 0, OW = 0;              // output (N, OH, OW, F)
  Padding padding = Padding::valid;       // lamina::Padding (core/padding.hpp)

  Conv2DGeometry() = default;
  Conv2DGeometry(std::size_t n, std::size_t h, std::size_t w, std::size_t c, std::size_t f,
                 std::size_t kh, std::size_t kw, std::size_t stride_h, std::size_t stride_w,
                 Padding pad)
      : N(n), H(h), W(w), C(c), F(f), KH(kh), KW(kw), sh(stride_h), sw(stride_w), padding(pad) {
    if (N == 0 || H == 0 || W == 0 || C == 0)
      throw ShapeError("Conv2D: every input dimension must be at least 1, got input " +
                       input_shape_text() + " for kernel " + kernel_shape().to_string());
    if (F == 0 || KH == 0 || KW == 0)
      throw ShapeError("Conv2D: every kernel dimension must be at least 1, got kernel " +
                       kernel_shape().to_string() + " for input " + input_shape_text());
    if (sh == 0 || sw == 0)
      throw ShapeError(lamina::detail::concat("Conv2D: strides must be at least 1, got (", sh, ", ", sw,
                                      ") for input ", input_shape_text(), " and kernel ",
                                      kernel_shape().to_string()));
    if (padding == Padding::same) {
      OH = (H + sh - 1) / sh;
      OW = (W + sw - 1) / sw;
      // TensorFlow: total = max((OH - 1) * stride + K - H, 0), the smaller half first.
      const std::size_t need_h = (OH - 1) * sh + KH, need_w = (OW - 1) * sw + KW;
      pad_top = (need_h > H ? need_h - H : 0) / 2;
      pad_left = (need_w > W ? need_w - W : 0) / 2;
    } else {
      if (KH > H || KW > W)
        throw ShapeError(lamina::detail::concat(
            "Conv2D: kernel ", kernel_shape().to_string(), " with padding 'valid' and strides (", sh,
            ", ", sw, ") does not fit input ", input_shape_text(), ": the input must be at least ",
            KH, "x", KW, " pixels"));
      OH = (H - KH) / sh + 1;
      OW = (W - KW) / sw + 1;
      pad_top = pad_left = 0;
    }
  }

  /// The same convolution on a batch of n images.
  Conv2DGeometry with_batch(std::size_t n) const {
    return Conv2DGeometry(n, H, W, C, F, KH, KW, sh, sw, padding);
  }

  Shape input_shape() const { return Shape{N, H, W, C}; }
  Shape kernel_shape() const { return Shape{KH, KW, C, F}; }
  Shape output_shape() const { return Shape{N, OH, OW, F}; }
  std::size_t input_size() const noexcept { return N * H * W * C; }
  std::size_t kernel_size() const noexcept { return KH * KW * C * F; }
  std::size_t output_size() const noexcept { return N * OH * OW * F; }
  /// Columns of the column matrix: one receptive field, KH * KW * C.
  std::size_t patch_size() const noexcept { return KH * KW * C; }
  /// Rows of the column matrix per image: OH * OW.
  std::size_t pixels_per_image() const noexcept { return OH * OW; }
  /// True when the column matrix IS the input (1x1 kernel, stride 1: no padding
  /// in either mode), so the kernels skip im2col and col2im.
  bool is_pointwise() const noexcept { return KH == 1 && KW == 1 && sh == 1 && sw == 1; }

  friend bool operator==(const Conv2DGeometry& a, const Conv2DGeometry& b) noexcept {
    return a.N == b.N && a.H == b.H && a.W == b.W && a.C == b.C && a.F == b.F && a.KH == b.KH &&
           a.KW == b.KW && a.sh == b.sh && a.sw == b.sw && a.padding == b.padding;
  }
  friend bool operator!=(const Conv2DGeometry& a, const Conv2DGeometry& b) noexcept {
    return !(a == b);
  }

 private:
  std::string input_shape_text() const { return input_shape().to_string(); }
};

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

// The taps kw in [lo, hi) of output column ow fall inside the image.
struct TapRange {
  std::ptrdiff_t lo, hi;
};
inline TapRange tap_range(std::ptrdiff_t origin, std::ptrdiff_t kernel, std::ptrdiff_t extent) noexcept {
  const std::ptrdiff_t lo = std::max<std::ptrdiff_t>(0, -origin);
  const std::ptrdiff_t hi = std::max(lo, std::min(kernel, extent - origin));
  return {lo, hi};
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

/// Scalar reference of im2col (same contract), one element at a time.
template <class T>
void im2col_reference(const Conv2DGeometry& g, const T* input, std::size_t n_begin,
                      std::size_t n_end, T* columns) {
  std::size_t i = 0;
  for (std::size_t n = n_begin; n < n_end; ++n)
    for (std::size_t oh = 0; oh < g.OH; ++oh)
      for (std::size_t ow = 0; ow < g.OW; ++ow)
        for (std::size_t kh = 0; kh < g.KH; ++kh)
          for (std::size_t kw = 0; kw < g.KW; ++kw)
            for (std::size_t c = 0; c < g.C; ++c, ++i) {
              // Unsigned wrap-around makes "ih < 0" show up as ih >= H.
              const std::size_t ih = oh * g.sh + kh - g.pad_top;
              const std::size_t iw = ow * g.sw + kw - g.pad_left;
              columns[i] = (ih < g.H && iw < g.W) ? input[((n * g.H + ih) * g.W + iw) * g.C + c] : T(0);
            }
}

/// Scalar reference of col2im (same contract, same order of additions).
template <class T>
void col2im_reference(const Conv2DGeometry& g, const T* columns, std::size_t n_begin,
                      std::size_t n_end, T* input_grad) {
  const std::size_t image_size = g.H * g.W * g.C;
  std::fill(input_grad + n_begin * image_size, input_grad + n_end * image_size, T(0));
  std::size_t i = 0;
  for (std::size_t n = n_begin; n < n_end; ++n)
    for (std::size_t oh = 0; oh < g.OH; ++oh)
      for (std::size_t ow = 0; ow < g.OW; ++ow)
        for (std::size_t kh = 0; kh < g.KH; ++kh)
          for (std::size_t kw = 0; kw < g.KW; ++kw)
            for (std::size_t c = 0; c < g.C; ++c, ++i) {
              const std::size_t ih = oh * g.sh + kh - g.pad_top;
              const std::size_t iw = ow * g.sw + kw - g.pad_left;
              if (ih < g.H && iw < g.W) input_grad[((n * g.H + ih) * g.W + iw) * g.C + c] += columns[i];
            }
}

}  // namespace lamina::kernels
