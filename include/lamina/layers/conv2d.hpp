// lamina/layers/conv2d.hpp: 2-D convolution on NHWC images.
//
// The compute is in kernels/conv2d.hpp, which chooses per pass between
// Winograd F(2x2, 3x3) on 3x3 stride-1 layers wide enough for it, direct
// kernels on one-channel 3x3 layers and im2col + a GEMM elsewhere
// (kernels::Conv2DAlgorithm; set_algorithm), each over fixed chunks of the
// batch and tested against the references of kernels/conv2d_reference.hpp.
// This layer owns the shapes, the parameters, the fused activation (ReLU in
// the forward kernels' epilogue, its mask inside the backward kernels where
// they support it) and the workspace, which it reuses from step to step.
#pragma once

#include <memory>
#include <string>

#include "lamina/core/padding.hpp"
#include "lamina/kernels/conv2d.hpp"
#include "lamina/kernels/activation.hpp"
#include "lamina/layers/initializers.hpp"
#include "lamina/layers/layer.hpp"

namespace lamina {

template <class T>
class Conv2D final : public Layer<T> {
 public:
  /// `filters` output channels, a square `kernel_size` window, `stride` in both
  /// directions. Padding defaults to `valid` as in Keras; the kernel is
  /// initialised with He normal (for the ReLU networks lamina targets), the bias
  /// with zeros.
  Conv2D(std::size_t filters, std::size_t kernel_size, std::size_t stride = 1, Padding padding = Padding::valid,
         Activation activation = Activation::none, bool use_bias = true, Init init = Init::he_normal)
      : filters_(filters),
        kernel_size_(kernel_size),
        stride_(stride),
        padding_(padding),
        activation_(activation),
        use_bias_(use_bias),
        init_(init) {
    if (filters == 0) throw ArgumentError("Conv2D: filters must be at least 1");
    if (kernel_size == 0) throw ArgumentError("Conv2D: kernel_size must be at least 1");
    if (stride == 0) throw ArgumentError("Conv2D: strides must be at least 1");
  }

  std::string type() const override { return "Conv2D"; }
  LayerConfig config() const override {
    return {{"filters", std::to_string(filters_)},
            {"kernel_size", std::to_string(kernel_size_)},
            {"strides", std::to_string(stride_)},
            {"padding", to_string(padding_)},
            {"activation", to_string(activation_)},
            {"use_bias", use_bias_ ? "true" : "false"},
            {"kernel_initializer", to_string(init_)}};
  }
  std::vector<TensorSpec> parameter_specs() const override {
    std::vector<TensorSpec> specs{{"kernel", geometry_.kernel_shape()}};
    if (use_bias_) specs.push_back({"bias", Shape{filters_}});
    return specs;
  }
  void initialize(Rng& rng) override {
    const std::size_t taps = kernel_size_ * kernel_size_;
    initialize_weights(this->param(0), init_, taps * geometry_.C, taps * filters_, rng);
    if (use_bias_)
      for (T& b : this->param(1)) b = T(0);
  }

  /// The kernels' algorithm (kernels::Conv2DAlgorithm; automatic by default:
  /// Winograd F(2x2, 3x3) on 3x3 stride-1 layers wide enough for it). Not part
  /// of the architecture: a saved model does not record it; results differ
  /// between algorithms only by rounding.
  void set_algorithm(kernels::Conv2DAlgorithm algorithm) noexcept { workspace_.set_algorithm(algorithm); }
  kernels::Conv2DAlgorithm algorithm() const noexcept { return workspace_.algorithm(); }
  /// Which GEMM the im2col kernels run (kernels::GemmKernel; automatic by
  /// default: lamina's, Eigen's in backward data where lamina's would compute
  /// mostly padding; see kernels::conv2d_choose).
  void set_gemm(kernels::GemmKernel gemm) noexcept { workspace_.set_gemm(gemm); }
  kernels::GemmKernel gemm() const noexcept { return workspace_.gemm(); }
  /// The same hyperparameters (fused activation included), algorithm and
  /// GEMM; unbuilt.
  std::unique_ptr<Layer<T>> clone() const override {
    auto copy = std::make_unique<Conv2D<T>>(filters_, kernel_size_, stride_, padding_, activation_, use_bias_, init_);
    copy->set_algorithm(algorithm());
    copy->set_gemm(gemm());
    return copy;
  }

  TensorView<const T> forward(TensorView<const T> input, Mode) override {
    this->check_input(input);
    input_ = input;
    const kernels::Conv2DGeometry g = geometry_.with_batch(input.dim(0));
    output_.resize(g.output_shape());
    // ReLU is fused into the GEMM's epilogue; any other activation runs after it.
    kernels::conv2d_forward<T>(g, input.data(), this->param(0).data(), use_bias_ ? this->param(1).data() : nullptr,
                               output_.data(), workspace_, activation_ == Activation::relu);
    if (activation_ != Activation::relu) activate_in_place(activation_, output_.data(), output_.size());
    return output_.view();
  }

  TensorView<const T> backward(TensorView<const T> grad_output) override {
    const std::size_t n = input_.dim(0);
    this->check_grad_output(grad_output, n);
    const kernels::Conv2DGeometry g = geometry_.with_batch(n);
    // A fused ReLU's mask is applied inside the kernels where they read the
    // gradient, when they can (Winograd, the direct kernels): the same values
    // without a pass over the activations. Otherwise activation_backward first.
    const bool fused_mask = activation_ == Activation::relu &&
                            kernels::conv2d_fuses_relu_backward(g, workspace_, this->input_gradient_needed());
    const T* relu_output = fused_mask ? output_.data() : nullptr;  // (N, OH, OW, F)
    if (activation_ != Activation::none && !fused_mask) grad_pre_activation_.resize(grad_output.shape());
    // (N, OH, OW, F) gradient before the fused activation (or after it, with relu_output)
    const T* dy = fused_mask ? grad_output.data()
                             : activation_backward(activation_, output_.data(), grad_output.data(),
                                                   grad_pre_activation_.data(), grad_output.size());
    kernels::conv2d_backward_weights<T>(g, input_.data(), dy, this->grad(0).data(),
                                        use_bias_ ? this->grad(1).data() : nullptr, workspace_, relu_output);
    if (!this->input_gradient_needed()) return {};
    grad_input_.resize(input_.shape());
    kernels::conv2d_backward_data<T>(g, dy, this->param(0).data(), grad_input_.data(), workspace_, relu_output);
    return grad_input_.view();
  }

 protected:
  Shape do_build(const Shape& input_shape) override {
    if (input_shape.rank() != 3)
      throw this->build_error("(N, height, width, channels)", input_shape);
    try {
      geometry_ = kernels::Conv2DGeometry(1, input_shape[0], input_shape[1], input_shape[2], filters_, kernel_size_,
                                          kernel_size_, stride_, stride_, padding_);
    } catch (const ShapeError& e) {
      throw ShapeError(this->describe() + ": " + e.what());
    }
    return geometry_.output_shape().drop_first();
  }

 private:
  std::size_t filters_, kernel_size_, stride_;
  Padding padding_;
  Activation activation_;
  bool use_bias_;
  Init init_;
  kernels::Conv2DGeometry geometry_;  // for a batch of 1; with_batch(N) per call
  kernels::Conv2DWorkspace<T> workspace_;
  TensorView<const T> input_;      // (N, H, W, C) cached by forward
  Tensor<T> output_;               // (N, OH, OW, F)
  Tensor<T> grad_pre_activation_;  // (N, OH, OW, F), only with a fused activation the kernels do not mask
  Tensor<T> grad_input_;           // (N, H, W, C)
};

}  // namespace lamina
