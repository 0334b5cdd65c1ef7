// lamina/layers/maxpool2d.hpp: 2-d max pooling on NHWC images, as Keras's
// MaxPooling2D.
//
// Output (N, OH, OW, C): every channel of every window of pool_h x pool_w pixels,
// moved by (stride_h, stride_w), gives its maximum.
//   valid (Keras's default): OH = (H - pool_h) / stride_h + 1; the pool must fit.
//   same: OH = ceil(H / stride_h); TensorFlow's padding, max(0, (OH - 1) *
//         stride_h + pool_h - H) rows in total, the smaller half on top (the
//         odd one at the bottom; likewise left/right). Padded positions never
//         win: the maximum is over the pixels inside the image (every window
//         holds at least one).
//
// Ties: the window is scanned in row-major order (rows top to bottom, each row
// left to right) and a value replaces the running maximum only when it is
// strictly greater, so among equal maxima the FIRST in that order wins and
// receives the whole gradient. NaN counts as larger than every number (the first
// NaN of a window wins), so a NaN is propagated rather than silently dropped.
//
// Forward stores, per output element, the offset of the winning input element
// inside its image; backward routes each output gradient there. Windows that
// overlap (stride < pool) add their gradients, in output order. Work is split
// into fixed chunks of whole images (see core/threads.hpp).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>

#include "lamina/core/threads.hpp"
#include "lamina/core/padding.hpp"
#include "lamina/layers/layer.hpp"

namespace lamina {

template <class T>
class MaxPooling2D final : public Layer<T> {
 public:
  /// Elements of input per work chunk (rounded to whole images, at least one):
  /// a fixed split, never derived from the thread count.
  static constexpr std::size_t kElementsPerChunk = std::size_t{1} << 15;

  /// A square pool of `pool` pixels (Keras's default 2); `stride` 0 means the
  /// pool size (Keras's strides=None).
  explicit MaxPooling2D(std::size_t pool = 2, std::size_t stride = 0, Padding padding = Padding::valid)
      : MaxPooling2D(std::array<std::size_t, 2>{pool, pool}, std::array<std::size_t, 2>{stride, stride}, padding) {}

  /// pool_size (pool_h, pool_w), strides (stride_h, stride_w); a zero stride
  /// means the pool size along that axis.
  MaxPooling2D(std::array<std::size_t, 2> pool_size, std::array<std::size_t, 2> strides = {0, 0},
               Padding padding = Padding::valid)
      : pool_h_(pool_size[0]),
        pool_w_(pool_size[1]),
        stride_h_(strides[0] == 0 ? pool_size[0] : strides[0]),
        stride_w_(strides[1] == 0 ? pool_size[1] : strides[1]),
        padding_(padding) {
    if (pool_h_ == 0 || pool_w_ == 0)
      throw ArgumentError(detail::concat("MaxPooling2D: pool_size must be at least (1, 1), got (", pool_h_, ", ",
                                         pool_w_, ")"));
  }

  std::string type() const override { return "MaxPooling2D"; }
  std::unique_ptr<Layer<T>> clone() const override {
    return std::make_unique<MaxPooling2D<T>>(std::array<std::size_t, 2>{pool_h_, pool_w_},
                                             std::array<std::size_t, 2>{stride_h_, stride_w_}, padding_);
  }
  LayerConfig config() const override {
    return {{"pool_size", pair_text(pool_h_, pool_w_)},
            {"strides", pair_text(stride_h_, stride_w_)},
            {"padding", to_string(padding_)}};
  }

  TensorView<const T> forward(TensorView<const T> input, Mode) override {
    this->check_input(input);
    const std::size_t n = input.dim(0);
    batch_ = n;
    output_.resize(Shape{n, out_h_, out_w_, channels_});
    argmax_.resize(Shape{n, out_h_, out_w_, channels_});
    const std::size_t H = in_h_, W = in_w_, C = channels_, OH = out_h_, OW = out_w_;
    const std::size_t in_image = H * W * C, out_image = OH * OW * C;
    const T* x = input.data();                // (N, H, W, C)
    T* y = output_.data();                    // (N, OH, OW, C)
    std::uint32_t* arg = argmax_.data();      // (N, OH, OW, C) offsets inside the input image
    const std::size_t images = images_per_chunk();
    parallel_for_ranges(n, images, [&](ChunkRange range) {
      const std::size_t n0 = range.begin, n1 = range.end;
      for (std::size_t img = n0; img < n1; ++img) {
        const T* xi = x + img * in_image;
        T* yi = y + img * out_image;
        std::uint32_t* ai = arg + img * out_image;
        for (std::size_t oh = 0; oh < OH; ++oh) {
          const auto [h0, h1] = window(oh, stride_h_, pad_top_, pool_h_, H);
          for (std::size_t ow = 0; ow < OW; ++ow) {
            const auto [w0, w1] = window(ow, stride_w_, pad_left_, pool_w_, W);
            T* best = yi + (oh * OW + ow) * C;
            std::uint32_t* where = ai + (oh * OW + ow) * C;
            // The first pixel of the window starts the running maximum ...
            const std::size_t first = (h0 * W + w0) * C;
            for (std::size_t c = 0; c < C; ++c) {
              best[c] = xi[first + c];
              where[c] = static_cast<std::uint32_t>(first + c);
            }
            // ... and only a strictly greater value (or a first NaN) replaces it.
            for (std::size_t ih = h0; ih < h1; ++ih)
              for (std::size_t iw = (ih == h0 ? w0 + 1 : w0); iw < w1; ++iw) {
                const std::size_t offset = (ih * W + iw) * C;
                const T* xp = xi + offset;
                for (std::size_t c = 0; c < C; ++c) {
                  const T v = xp[c];
                  if (v > best[c] || (std::isnan(v) && !std::isnan(best[c]))) {
                    best[c] = v;
                    where[c] = static_cast<std::uint32_t>(offset + c);
                  }
                }
              }
          }
        }
      }
    });
    return output_.view();
  }

  TensorView<const T> backward(TensorView<const T> grad_output) override {
    if (batch_ == 0) throw Error(this->describe() + ": backward() before forward()");
    this->check_grad_output(grad_output, batch_);
    const std::size_t n = batch_;
    const std::size_t in_image = in_h_ * in_w_ * channels_, out_image = out_h_ * out_w_ * channels_;
    grad_input_.resize(Shape{n, in_h_, in_w_, channels_});
    const T* dy = grad_output.data();          // (N, OH, OW, C)
    const std::uint32_t* arg = argmax_.data();  // (N, OH, OW, C)
    T* dx = grad_input_.data();                 // (N, H, W, C)
    const std::size_t images = images_per_chunk();
    parallel_for_ranges(n, images, [&](ChunkRange range) {
      const std::size_t n0 = range.begin, n1 = range.end;
      std::fill(dx + n0 * in_image, dx + n1 * in_image, T(0));
      for (std::size_t img = n0; img < n1; ++img) {
        T* dxi = dx + img * in_image;
        const T* dyi = dy + img * out_image;
        const std::uint32_t* ai = arg + img * out_image;
        for (std::size_t j = 0; j < out_image; ++j) dxi[ai[j]] += dyi[j];  // output order: a fixed order
      }
    });
    return grad_input_.view();
  }

  std::array<std::size_t, 2> pool_size() const noexcept { return {pool_h_, pool_w_}; }
  std::array<std::size_t, 2> strides() const noexcept { return {stride_h_, stride_w_}; }
  Padding padding() const noexcept { return padding_; }

 protected:
  Shape do_build(const Shape& input_shape) override {
    if (input_shape.rank() != 3 || input_shape.size() == 0)
      throw this->build_error("(N, H, W, C) images", input_shape);
    in_h_ = input_shape[0];
    in_w_ = input_shape[1];
    channels_ = input_shape[2];
    if (input_shape.size() > std::numeric_limits<std::uint32_t>::max())
      throw this->build_error("(N, H, W, C) with fewer than 2^32 values per image", input_shape);
    if (padding_ == Padding::valid) {
      if (pool_h_ > in_h_ || pool_w_ > in_w_)
        throw this->build_error(detail::concat("(N, H, W, C) with H >= ", pool_h_, " and W >= ", pool_w_,
                                               " for pool_size ", pair_text(pool_h_, pool_w_),
                                               " with padding 'valid'"),
                                input_shape);
      out_h_ = (in_h_ - pool_h_) / stride_h_ + 1;
      out_w_ = (in_w_ - pool_w_) / stride_w_ + 1;
      pad_top_ = pad_left_ = 0;
    } else {
      out_h_ = (in_h_ + stride_h_ - 1) / stride_h_;
      out_w_ = (in_w_ + stride_w_ - 1) / stride_w_;
      const std::size_t need_h = (out_h_ - 1) * stride_h_ + pool_h_, need_w = (out_w_ - 1) * stride_w_ + pool_w_;
      pad_top_ = (need_h > in_h_ ? need_h - in_h_ : 0) / 2;
      pad_left_ = (need_w > in_w_ ? need_w - in_w_ : 0) / 2;
    }
    return Shape{out_h_, out_w_, channels_};
  }

 private:
  struct Range {
    std::size_t begin, end;
  };
  // Input rows (or columns) [begin, end) of output row `o`, clipped to the image.
  static Range window(std::size_t o, std::size_t stride, std::size_t pad, std::size_t pool, std::size_t size) noexcept {
    const std::size_t start = o * stride;  // in padded coordinates
    const std::size_t begin = start > pad ? start - pad : 0;
    const std::size_t end = std::min(size, start + pool - pad);  // start + pool > pad: never empty
    return {begin, end};
  }
  std::size_t images_per_chunk() const noexcept {
    return std::max<std::size_t>(1, kElementsPerChunk / (in_h_ * in_w_ * channels_));
  }
  static std::string pair_text(std::size_t a, std::size_t b) {
    return "(" + std::to_string(a) + ", " + std::to_string(b) + ")";
  }

  std::size_t pool_h_, pool_w_, stride_h_, stride_w_;
  Padding padding_;
  std::size_t in_h_ = 0, in_w_ = 0, channels_ = 0;
  std::size_t out_h_ = 0, out_w_ = 0;
  std::size_t pad_top_ = 0, pad_left_ = 0;
  std::size_t batch_ = 0;             // N of the last forward
  Tensor<T> output_;                  // (N, OH, OW, C)
  Tensor<std::uint32_t> argmax_;      // (N, OH, OW, C) winner's offset inside its input image
  Tensor<T> grad_input_;              // (N, H, W, C)
};

}  // namespace lamina
