// lamina/layers/relu.hpp: ReLU.
#pragma once

#include <memory>
#include <string>

#include "lamina/kernels/activation.hpp"
#include "lamina/layers/layer.hpp"

namespace lamina {

/// max(x, 0). The gradient at exactly 0 is taken as 0 (as TensorFlow does).
template <class T>
class ReLU final : public Layer<T> {
 public:
  std::string type() const override { return "ReLU"; }
  std::unique_ptr<Layer<T>> clone() const override { return std::make_unique<ReLU<T>>(); }

  TensorView<const T> forward(TensorView<const T> input, Mode) override {
    this->check_input(input);
    output_.resize(input.shape());
    std::copy(input.begin(), input.end(), output_.data());
    activate_in_place(Activation::relu, output_.data(), output_.size());
    return output_.view();
  }

  TensorView<const T> backward(TensorView<const T> grad_output) override {
    this->check_grad_output(grad_output, output_.dim(0));
    grad_input_.resize(grad_output.shape());
    // The mask is output > 0: no need to keep the input.
    activation_backward(Activation::relu, output_.data(), grad_output.data(), grad_input_.data(), grad_output.size());
    return grad_input_.view();
  }

 protected:
  Shape do_build(const Shape& input_shape) override { return input_shape; }

 private:
  Tensor<T> output_;      // (N, ...) same shape as the input
  Tensor<T> grad_input_;  // (N, ...)
};

}  // namespace lamina
