// lamina/layers/batchnorm.hpp: batch normalization (Ioffe & Szegedy, 2015), as
// Keras's BatchNormalization with axis=-1.
//
// The last axis is the channel axis: for images (N, H, W, C) every channel is
// normalised over the N*H*W values it takes in the batch; for dense data (N, F)
// every feature over the N samples. Per channel c:
//   training:   y = gamma_c * (x - mean_c) / sqrt(var_c + epsilon) + beta_c,
//               mean_c and var_c the batch mean and the BIASED batch variance
//               (divided by the count m, not m - 1), and then
//               moving_mean     = momentum * moving_mean     + (1 - momentum) * mean_c
//               moving_variance = momentum * moving_variance + (1 - momentum) * var_c
//   evaluation: the same affine map with moving_mean and moving_variance.
//
// Which variance goes into moving_variance. Keras 3 (keras/src/layers/
// normalization/batch_normalization.py) uses ops.moments, the biased variance,
// for every input rank, and so did Keras 2's non-fused path (dense (N, F) input).
// Keras 2's fused path (tf.compat.v1.nn.fused_batch_norm, taken for 4-d input)
// updates it with TensorFlow's fused kernel's Bessel-corrected variance
// m / (m - 1) * var; Keras 2 leaves that in place (_bessels_correction_test_only).
// lamina uses the biased variance everywhere: it matches Keras 3 for every rank
// and Keras 2 for dense input, where m is a batch size and m / (m - 1) matters
// (3% at a batch of 32); for images m = N*H*W and the two differ by ~1e-5.
//
// Determinism and precision: the batch statistics and the gradient reductions are
// accumulated in double (also for float) over fixed chunks of rows whose partial
// sums are added in chunk order, so the bits do not depend on the thread count.
// The statistics take ONE pass over the data: the sums of d = x - s and of d^2
// about a shift s, the batch's first row, give mean = s + E[d] and the biased
// variance E[d^2] - E[d]^2. The subtraction cancels about log10(E[d]^2 / var)
// of double's 16 digits, and because s is one of the m values averaged,
// var >= (s - mean)^2 / m = E[d]^2 / m: at most log10(m) digits are lost (5
// for a batch of 128 28x28 images), whatever the data. The two-pass form it
// replaced read the activations twice, and BN's forward is memory-bound.
// Element-wise work runs in T over the same chunks.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <locale>
#include <sstream>
#include <string>
#include <vector>

#include "lamina/core/threads.hpp"
#include "lamina/core/format.hpp"
#include "lamina/layers/layer.hpp"

namespace lamina {

template <class T>
class BatchNormalization final : public Layer<T> {
 public:
  /// Elements per work chunk (a chunk is a whole number of rows of C channels,
  /// at least one row): a fixed split, never derived from the thread count.
  static constexpr std::size_t kElementsPerChunk = std::size_t{1} << 14;

  /// Keras's defaults: momentum 0.99, epsilon 1e-3. momentum in [0, 1], epsilon > 0.
  explicit BatchNormalization(double momentum = 0.99, double epsilon = 1e-3)
      : momentum_(momentum), epsilon_(epsilon) {
    if (!(momentum >= 0.0 && momentum <= 1.0))
      throw ArgumentError(detail::concat("BatchNormalization: momentum must be in [0, 1], got ", momentum));
    if (!(epsilon > 0.0) || !std::isfinite(epsilon))
      throw ArgumentError(detail::concat("BatchNormalization: epsilon must be a finite number > 0, got ", epsilon));
  }

  std::string type() const override { return "BatchNormalization"; }
  std::unique_ptr<Layer<T>> clone() const override {
    return std::make_unique<BatchNormalization<T>>(momentum_, epsilon_);
  }
  LayerConfig config() const override {
    return {{"momentum", number_text(momentum_)}, {"epsilon", number_text(epsilon_)}};
  }
  std::vector<TensorSpec> parameter_specs() const override {
    return {{"gamma", Shape{channels_}}, {"beta", Shape{channels_}}};
  }
  std::vector<TensorSpec> buffer_specs() const override {
    return {{"moving_mean", Shape{channels_}}, {"moving_variance", Shape{channels_}}};
  }
  void initialize(Rng&) override {
    for (T& g : this->param(0)) g = T(1);
    for (T& b : this->param(1)) b = T(0);
    for (T& m : this->buffer(0)) m = T(0);
    for (T& v : this->buffer(1)) v = T(1);
  }

  TensorView<const T> forward(TensorView<const T> input, Mode mode) override {
    this->check_input(input);
    input_ = input;
    mode_ = mode;
    const std::size_t C = channels_, rows = input.size() / C;
    output_.resize(input.shape());
    const T* x = input.data();  // (M, C), M = N*H*W or N
    const T* gamma = this->param(0).data();
    const T* beta = this->param(1).data();
    T* moving_mean = this->buffer(0).data();
    T* moving_var = this->buffer(1).data();
    double* mean = mean_.data();        // (C)
    double* inv_std = inv_std_.data();  // (C)

    if (mode == Mode::train) {
      const std::size_t chunk_rows = rows_per_chunk(), chunks = static_cast<std::size_t>(chunk_count(rows, chunk_rows));
      partials_.resize(Shape{chunks, 2 * C});
      double* part = partials_.data();  // (chunks, 2C): [sum d | sum d^2], d = x - shift
      // One pass: the sums of d = x - shift and of d^2, shift the batch's first
      // row (see the top of the file).
      const T* shift = x;  // (C)
      parallel_for_ranges(rows, chunk_rows, [&](ChunkRange range) {
        const std::size_t r0 = range.begin, r1 = range.end;
        double* sum = part + range.index * 2 * C;
        double* sum_sq = sum + C;
        std::fill(sum, sum + 2 * C, 0.0);
        for (std::size_t r = r0; r < r1; ++r) {
          const T* xr = x + r * C;
          for (std::size_t c = 0; c < C; ++c) {
            const double d = static_cast<double>(xr[c]) - static_cast<double>(shift[c]);
            sum[c] += d;
            sum_sq[c] += d * d;
          }
        }
      });
      const double count = static_cast<double>(rows);
      double* var = inv_std;  // the variance first, turned into 1/sqrt(var + eps) below
      for (std::size_t c = 0; c < C; ++c) {
        double s1 = 0.0, s2 = 0.0;  // in chunk order
        for (std::size_t k = 0; k < chunks; ++k) {
          s1 += part[k * 2 * C + c];
          s2 += part[k * 2 * C + C + c];
        }
        const double mean_d = s1 / count;
        mean[c] = static_cast<double>(shift[c]) + mean_d;
        var[c] = std::max(0.0, s2 / count - mean_d * mean_d);
      }
      for (std::size_t c = 0; c < C; ++c) {
        moving_mean[c] = static_cast<T>(momentum_ * static_cast<double>(moving_mean[c]) + (1.0 - momentum_) * mean[c]);
        moving_var[c] = static_cast<T>(momentum_ * static_cast<double>(moving_var[c]) + (1.0 - momentum_) * var[c]);
        inv_std[c] = 1.0 / std::sqrt(var[c] + epsilon_);
      }
    } else {
      for (std::size_t c = 0; c < C; ++c) {
        mean[c] = static_cast<double>(moving_mean[c]);
        inv_std[c] = 1.0 / std::sqrt(static_cast<double>(moving_var[c]) + epsilon_);
      }
    }

    // y = (x - mean) * (gamma * inv_std) + beta, element-wise in T, with the mean
    // split into hi + lo (see centre()).
    split_means();
    const T* mean_hi = mean_hi_.data();
    const T* mean_lo = mean_lo_.data();
    T* scale = scale_.data();
    for (std::size_t c = 0; c < C; ++c) scale[c] = static_cast<T>(static_cast<double>(gamma[c]) * inv_std[c]);
    T* y = output_.data();  // (M, C)
    const std::size_t chunk_rows = rows_per_chunk();
    parallel_for_ranges(rows, chunk_rows, [&](ChunkRange range) {
      const std::size_t r0 = range.begin, r1 = range.end;
      for (std::size_t r = r0; r < r1; ++r) {
        const T* xr = x + r * C;
        T* yr = y + r * C;
        for (std::size_t c = 0; c < C; ++c) yr[c] = centre(xr[c], mean_hi[c], mean_lo[c]) * scale[c] + beta[c];
      }
    });
    return output_.view();
  }

  TensorView<const T> backward(TensorView<const T> grad_output) override {
    if (input_.data() == nullptr) throw Error(this->describe() + ": backward() before forward()");
    this->check_grad_output(grad_output, input_.dim(0));
    const std::size_t C = channels_, rows = input_.size() / C;
    const T* x = input_.data();        // (M, C)
    const T* dy = grad_output.data();  // (M, C)
    const T* gamma = this->param(0).data();
    T* dgamma = this->grad(0).data();
    T* dbeta = this->grad(1).data();
    const double* mean = mean_.data();
    const double* inv_std = inv_std_.data();
    grad_input_.resize(input_.shape());
    T* dx = grad_input_.data();  // (M, C)

    // Per channel, sum(dy) and sum(dy * (x - mean)), in double and in a fixed order.
    const std::size_t chunk_rows = rows_per_chunk(), chunks = static_cast<std::size_t>(chunk_count(rows, chunk_rows));
    partials_.resize(Shape{chunks, 2 * C});
    double* part = partials_.data();  // (chunks, 2C): [sum dy | sum dy (x - mean)]
    parallel_for_ranges(rows, chunk_rows, [&](ChunkRange range) {
      const std::size_t r0 = range.begin, r1 = range.end;
      double* sum_dy = part + range.index * 2 * C;
      double* sum_dyx = sum_dy + C;
      std::fill(sum_dy, sum_dy + 2 * C, 0.0);
      for (std::size_t r = r0; r < r1; ++r) {
        const T* xr = x + r * C;
        const T* dyr = dy + r * C;
        for (std::size_t c = 0; c < C; ++c) {
          const double g = static_cast<double>(dyr[c]);
          sum_dy[c] += g;
          sum_dyx[c] += g * (static_cast<double>(xr[c]) - mean[c]);
        }
      }
    });
    std::vector<double>& sums = sums_;  // (2C), sized in build
    std::fill(sums.begin(), sums.end(), 0.0);
    for (std::size_t k = 0; k < chunks; ++k)  // chunk order: a fixed order
      for (std::size_t j = 0; j < 2 * C; ++j) sums[j] += part[k * 2 * C + j];

    // dbeta = sum(dy); dgamma = sum(dy * x_hat), x_hat = (x - mean) * inv_std.
    split_means();
    const T* mean_hi = mean_hi_.data();
    const T* mean_lo = mean_lo_.data();
    T* k_dy = scale_.data();    // (C) gamma * inv_std: the coefficient of dy
    T* k_x = dx_coef_x_.data();  // (C) the coefficient of (x - mean)
    T* k_0 = dx_const_.data();   // (C) the constant term
    const double count = static_cast<double>(rows);
    for (std::size_t c = 0; c < C; ++c) {
      const double sum_dy = sums[c], sum_dy_xhat = sums[C + c] * inv_std[c];
      dbeta[c] = static_cast<T>(sum_dy);
      dgamma[c] = static_cast<T>(sum_dy_xhat);
      const double a = static_cast<double>(gamma[c]) * inv_std[c];  // dy/dx_hat * dx_hat/dx, statistics held fixed
      k_dy[c] = static_cast<T>(a);
      if (mode_ == Mode::train) {
        // Through the batch statistics:
        //   dx = a * (dy - mean(dy) - x_hat * mean(dy * x_hat))
        //      = a * dy - a * mean(dy) - a * inv_std * mean(dy * x_hat) * (x - mean).
        k_0[c] = static_cast<T>(-a * sum_dy / count);
        k_x[c] = static_cast<T>(-a * inv_std[c] * sum_dy_xhat / count);
      } else {
        // Evaluation: an affine map of x, dx = a * dy.
        k_0[c] = T(0);
        k_x[c] = T(0);
      }
    }
    parallel_for_ranges(rows, chunk_rows, [&](ChunkRange range) {
      const std::size_t r0 = range.begin, r1 = range.end;
      for (std::size_t r = r0; r < r1; ++r) {
        const T* xr = x + r * C;
        const T* dyr = dy + r * C;
        T* dxr = dx + r * C;
        if (mode_ == Mode::train)
          for (std::size_t c = 0; c < C; ++c) dxr[c] = k_dy[c] * dyr[c] + k_x[c] * centre(xr[c], mean_hi[c], mean_lo[c]) + k_0[c];
        else
          for (std::size_t c = 0; c < C; ++c) dxr[c] = k_dy[c] * dyr[c];
      }
    });
    return grad_input_.view();
  }

  double momentum() const noexcept { return momentum_; }
  double epsilon() const noexcept { return epsilon_; }
  /// Channels (the last axis) that are normalised.
  std::size_t channels() const noexcept { return channels_; }

 protected:
  Shape do_build(const Shape& input_shape) override {
    const bool dense = input_shape.rank() == 1, image = input_shape.rank() == 3;
    if ((!dense && !image) || input_shape.size() == 0)
      throw this->build_error("(N, features) or (N, H, W, C)", input_shape);
    channels_ = input_shape[input_shape.rank() - 1];
    mean_.resize(Shape{channels_});
    inv_std_.resize(Shape{channels_});
    mean_hi_.resize(Shape{channels_});
    mean_lo_.resize(Shape{channels_});
    scale_.resize(Shape{channels_});
    dx_coef_x_.resize(Shape{channels_});
    dx_const_.resize(Shape{channels_});
    sums_.assign(2 * channels_, 0.0);
    return input_shape;
  }

 private:
  std::size_t rows_per_chunk() const noexcept { return std::max<std::size_t>(1, kElementsPerChunk / channels_); }

  // x - mean in T without rounding the mean to T first: mean = hi + lo (both T,
  // lo = the rest), and x - hi is exact when x is within a factor 2 of hi (and
  // otherwise |x - hi| is large enough for its rounding not to matter). For float
  // with |mean| >> std, x - float(mean) would shift every output by up to
  // ulp(mean) / std.
  static T centre(T x, T hi, T lo) noexcept { return (x - hi) - lo; }
  void split_means() noexcept {
    for (std::size_t c = 0; c < channels_; ++c) {
      mean_hi_[c] = static_cast<T>(mean_[c]);
      mean_lo_[c] = static_cast<T>(mean_[c] - static_cast<double>(mean_hi_[c]));
    }
  }

  double momentum_;
  double epsilon_;
  std::size_t channels_ = 0;
  Mode mode_ = Mode::train;      // of the last forward: what backward differentiates
  TensorView<const T> input_;    // (N, ..., C) cached by forward
  Tensor<T> output_;             // (N, ..., C)
  Tensor<T> grad_input_;         // (N, ..., C)
  Tensor<double> mean_;          // (C) mean used by the last forward (batch or moving)
  Tensor<double> inv_std_;       // (C) 1 / sqrt(variance + epsilon) used by the last forward
  Tensor<double> partials_;      // (chunks, C) or (chunks, 2C): per-chunk partial sums
  // Per-channel constants of the element-wise loops, in T:
  Tensor<T> mean_hi_, mean_lo_;  // (C) each: mean_ = mean_hi_ + mean_lo_ (see centre())
  Tensor<T> scale_;              // (C) gamma * inv_std
  Tensor<T> dx_coef_x_;          // (C) train backward: coefficient of (x - mean) in dx
  Tensor<T> dx_const_;           // (C) train backward: constant term of dx
  std::vector<double> sums_;     // (2C) chunk partials summed in chunk order
};

}  // namespace lamina
