// lamina/layers/dense.hpp: fully connected layer, y = x W + b.
#pragma once

#include <algorithm>
#include <string>

#include "lamina/core/threads.hpp"
#include "lamina/kernels/gemm.hpp"
#include "lamina/layers/activation.hpp"
#include "lamina/layers/initializers.hpp"
#include "lamina/layers/layer.hpp"

namespace lamina {

template <class T>
class Dense final : public Layer<T> {
 public:
  /// `units` outputs; kernel initialised with `init` (Keras's default is
  /// glorot_uniform; use he_normal before a ReLU); bias starts at zero;
  /// `activation` is fused into the output (see activation.hpp).
  explicit Dense(std::size_t units, Init init = Init::glorot_uniform, bool use_bias = true,
                 Activation activation = Activation::none)
      : units_(units), init_(init), use_bias_(use_bias), activation_(activation) {
    if (units == 0) throw ArgumentError("Dense: units must be at least 1");
  }

  std::string type() const override { return "Dense"; }
  LayerConfig config() const override {
    return {{"units", std::to_string(units_)},
            {"activation", to_string(activation_)},
            {"kernel_initializer", to_string(init_)},
            {"use_bias", use_bias_ ? "true" : "false"}};
  }
  std::vector<TensorSpec> parameter_specs() const override {
    std::vector<TensorSpec> specs{{"kernel", Shape{in_features_, units_}}};
    if (use_bias_) specs.push_back({"bias", Shape{units_}});
    return specs;
  }
  void initialize(Rng& rng) override {
    initialize_weights(this->param(0), init_, in_features_, units_, rng);
    if (use_bias_)
      for (T& b : this->param(1)) b = T(0);
  }

  TensorView<const T> forward(TensorView<const T> input, Mode) override {
    this->check_input(input);
    const std::size_t n = input.dim(0);
    input_ = input;
    output_.resize(Shape{n, units_});
    const T* x = input.data();     // (N, in)
    const T* w = this->param(0).data();  // (in, out)
    const T* b = use_bias_ ? this->param(1).data() : nullptr;  // (out)
    T* y = output_.data();         // (N, out)
    const std::size_t in = in_features_, out = units_;
    parallel_for(chunk_count(n, kRowsPerChunk), [&](std::ptrdiff_t c) {
      const std::size_t r0 = static_cast<std::size_t>(c) * kRowsPerChunk;
      const std::size_t rows = std::min(kRowsPerChunk, n - r0);
      kernels::ConstMatrixMap<T> xs(x + r0 * in, rows, in);
      kernels::ConstMatrixMap<T> ws(w, in, out);
      kernels::MatrixMap<T> ys(y + r0 * out, rows, out);
      ys.noalias() = xs * ws;
      if (b) ys.rowwise() += kernels::ConstRowVectorMap<T>(b, out);
    });
    activate_in_place(activation_, y, n * out);
    return output_.view();
  }

  TensorView<const T> backward(TensorView<const T> grad_output) override {
    const std::size_t n = input_.dim(0);
    this->check_grad_output(grad_output, n);
    const std::size_t in = in_features_, out = units_;
    const T* x = input_.data();        // (N, in)
    if (activation_ != Activation::none) grad_pre_activation_.resize(grad_output.shape());
    // (N, out) gradient before the fused activation
    const T* dy = activation_backward(activation_, output_.data(), grad_output.data(),
                                      grad_pre_activation_.data(), grad_output.size());
    const T* w = this->param(0).data();  // (in, out)
    T* dw = this->grad(0).data();        // (in, out)

    // dW = x^T dy, split over rows of dW: each chunk reduces over the whole batch
    // in Eigen's fixed order, so the result does not depend on the thread count.
    parallel_for(chunk_count(in, kWeightRowsPerChunk), [&](std::ptrdiff_t c) {
      const std::size_t k0 = static_cast<std::size_t>(c) * kWeightRowsPerChunk;
      const std::size_t rows = std::min(kWeightRowsPerChunk, in - k0);
      Eigen::Map<const kernels::RowMajorMatrix<T>, 0, Eigen::OuterStride<>> xs(
          x + k0, n, rows, Eigen::OuterStride<>(static_cast<Eigen::Index>(in)));
      kernels::MatrixMap<T> dws(dw + k0 * out, rows, out);
      dws.noalias() = xs.transpose() * kernels::ConstMatrixMap<T>(dy, n, out);
    });
    if (use_bias_) {
      // Column sums in row order: a fixed order.
      T* db = this->grad(1).data();
      std::fill(db, db + out, T(0));
      for (std::size_t r = 0; r < n; ++r)
        for (std::size_t j = 0; j < out; ++j) db[j] += dy[r * out + j];
    }
    if (!this->input_gradient_needed()) return {};
    grad_input_.resize(Shape{n, in});
    T* dx = grad_input_.data();  // (N, in)
    // dx = dy W^T, split over rows of the batch.
    parallel_for(chunk_count(n, kRowsPerChunk), [&](std::ptrdiff_t c) {
      const std::size_t r0 = static_cast<std::size_t>(c) * kRowsPerChunk;
      const std::size_t rows = std::min(kRowsPerChunk, n - r0);
      kernels::MatrixMap<T> dxs(dx + r0 * in, rows, in);
      dxs.noalias() = kernels::ConstMatrixMap<T>(dy + r0 * out, rows, out) *
                      kernels::ConstMatrixMap<T>(w, in, out).transpose();
    });
    return grad_input_.view();
  }

  std::size_t units() const noexcept { return units_; }

 protected:
  Shape do_build(const Shape& input_shape) override {
    if (input_shape.rank() != 1 || input_shape[0] == 0)
      throw this->build_error("(N, features); add a Flatten layer before Dense", input_shape);
    in_features_ = input_shape[0];
    return Shape{units_};
  }

 private:
  // Fixed work split (never derived from the thread count: see core/threads.hpp).
  static constexpr std::size_t kRowsPerChunk = 64;
  static constexpr std::size_t kWeightRowsPerChunk = 64;

  std::size_t units_;
  Init init_;
  bool use_bias_;
  Activation activation_;
  std::size_t in_features_ = 0;
  TensorView<const T> input_;  // (N, in) cached by forward
  Tensor<T> output_;           // (N, out)
  Tensor<T> grad_input_;       // (N, in)
  Tensor<T> grad_pre_activation_;  // (N, out), only with a fused activation
};

}  // namespace lamina
