// lamina/layers/dense.hpp: fully connected layer, y = x W + b.
//
// The compute is in kernels/dense.hpp: lamina's GEMM or Eigen's, chosen pass
// by pass (kernels::dense_gemm gives the reasons; set_gemm forces one), over
// chunks fixed by the problem size, so results are bit-identical with any
// thread count. This layer owns the shapes, the parameters, the fused
// activation and the kernels' workspace.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "lamina/kernels/activation.hpp"
#include "lamina/kernels/dense.hpp"
#include "lamina/kernels/gemm.hpp"
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
    kernels::dense_forward<T>(n, in_features_, units_, input.data(), this->param(0).data(),
                              use_bias_ ? this->param(1).data() : nullptr, output_.data(),
                              activation_ == Activation::relu, gemm_, workspace_);
    return output_.view();
  }

  TensorView<const T> backward(TensorView<const T> grad_output) override {
    const std::size_t n = input_.dim(0);
    this->check_grad_output(grad_output, n);
    if (activation_ != Activation::none) grad_pre_activation_.resize(grad_output.shape());
    // (N, out) gradient before the fused activation
    const T* dy = activation_backward(activation_, output_.data(), grad_output.data(),
                                      grad_pre_activation_.data(), grad_output.size());
    kernels::dense_backward_weights<T>(n, in_features_, units_, input_.data(), dy, this->grad(0).data(),
                                       use_bias_ ? this->grad(1).data() : nullptr, gemm_, workspace_);
    if (!this->input_gradient_needed()) return {};
    grad_input_.resize(Shape{n, in_features_});
    kernels::dense_backward_data<T>(n, in_features_, units_, dy, this->param(0).data(), grad_input_.data(), gemm_,
                                    workspace_);
    return grad_input_.view();
  }

  /// Which GEMM the three products use (kernels::GemmKernel::automatic unless
  /// set: kernels::dense_gemm's choice per pass). Results of lamina's GEMM and
  /// Eigen's differ in the last bits; each is deterministic and independent of
  /// the thread count.
  kernels::GemmKernel gemm() const noexcept { return gemm_; }
  void set_gemm(kernels::GemmKernel gemm) noexcept { gemm_ = gemm; }
  /// The same hyperparameters (units, initializer, bias, fused activation) and
  /// GEMM; unbuilt.
  std::unique_ptr<Layer<T>> clone() const override {
    auto copy = std::make_unique<Dense<T>>(units_, init_, use_bias_, activation_);
    copy->set_gemm(gemm());
    return copy;
  }

  /// The GEMM `pass` runs on a batch of n rows (kernels::dense_gemm).
  kernels::GemmKernel gemm_for(kernels::KernelPass pass, std::size_t n) const noexcept {
    return kernels::dense_gemm<T>(gemm_, pass, n, in_features_, units_);
  }

  std::size_t units() const noexcept { return units_; }

  /// The kernel (in, out) is split by rows, kDenseWeightRowsPerChunk at a
  /// time, as backward's dW loop splits it (see Layer::parameter_row_chunk),
  /// when it is large enough for the forward (on lamina's GEMM) to split its
  /// contraction in two parts at the two-thread boundary, and for backward
  /// data (on Eigen's) to split dx's columns there (kernels/dense.hpp, THE
  /// SPLIT CONTRACTION). With GemmKernel::eigen the forward, and with
  /// GemmKernel::lamina backward data (which packs W^T), read all of W on
  /// every thread: following the plan then costs cache traffic, never bits.
  std::size_t parameter_row_chunk(std::size_t index) const override {
    return index == 0 && kernels::dense_splits_contraction(in_features_, units_) ? kernels::kDenseWeightRowsPerChunk
                                                                                 : 0;
  }

 protected:
  Shape do_build(const Shape& input_shape) override {
    if (input_shape.rank() != 1 || input_shape[0] == 0)
      throw this->build_error("(N, features); add a Flatten layer before Dense", input_shape);
    in_features_ = input_shape[0];
    return Shape{units_};
  }

 private:
  std::size_t units_;
  Init init_;
  bool use_bias_;
  Activation activation_;
  std::size_t in_features_ = 0;
  TensorView<const T> input_;  // (N, in) cached by forward
  Tensor<T> output_;           // (N, out)
  Tensor<T> grad_input_;       // (N, in)
  Tensor<T> grad_pre_activation_;  // (N, out), only with a fused activation
  kernels::DenseWorkspace<T> workspace_;  // packed operands and the forward's second part
  kernels::GemmKernel gemm_ = kernels::GemmKernel::automatic;
};

}  // namespace lamina
