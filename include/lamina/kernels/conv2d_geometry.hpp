// lamina/kernels/conv2d_geometry.hpp: what the Conv2D kernels know about one
// convolution (sizes, strides, the Keras/TensorFlow padding), computed and
// validated once.
//
// LAYOUTS (every Conv2D kernel)
//   input   (N, H, W, C)    NHWC, row-major: channels are contiguous.
//   kernel  (KH, KW, C, F)  as Keras stores it ("HWIO"); read as a row-major
//                           (KH*KW*C, F) matrix without any copy.
//   bias    (F)
//   output  (N, OH, OW, F)  NHWC.
//   Padding 'same' follows TensorFlow: OH = ceil(H / sh), total padding
//   max((OH - 1) * sh + KH - H, 0), pad_top = total / 2, the extra row at the
//   bottom (columns likewise). 'valid': OH = (H - KH) / sh + 1.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>

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

// The taps kw in [lo, hi) of a kernel row whose first tap sits at column
// `origin` (negative: in the padding) fall inside an image `extent` wide.
struct TapRange {
  std::ptrdiff_t lo, hi;
};
inline TapRange tap_range(std::ptrdiff_t origin, std::ptrdiff_t kernel, std::ptrdiff_t extent) noexcept {
  const std::ptrdiff_t lo = std::max<std::ptrdiff_t>(0, -origin);
  const std::ptrdiff_t hi = std::max(lo, std::min(kernel, extent - origin));
  return {lo, hi};
}

}  // namespace detail

}  // namespace lamina::kernels
