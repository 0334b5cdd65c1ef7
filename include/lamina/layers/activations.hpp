// lamina/layers/activations.hpp: ReLU.
#pragma once

#include <string>

#include "lamina/core/threads.hpp"
#include "lamina/layers/layer.hpp"

namespace lamina {

/// max(x, 0). The gradient at exactly 0 is taken as 0 (as TensorFlow does).
template <class T>
class ReLU final : public Layer<T> {
 public:
  std::string type() const override { return "ReLU"; }

  TensorView<const T> forward(TensorView<const T> input, Mode) override {
    this->check_input(input);
    output_.resize(input.shape());
    const T* x = input.data();
    T* y = output_.data();
    const std::size_t n = input.size();
    parallel_for(chunk_count(n, kChunk), [&](std::ptrdiff_t c) {
      const std::size_t begin = static_cast<std::size_t>(c) * kChunk, end = std::min(n, begin + kChunk);
      for (std::size_t i = begin; i < end; ++i) y[i] = x[i] > T(0) ? x[i] : T(0);
    });
    return output_.view();
  }

  TensorView<const T> backward(TensorView<const T> grad_output) override {
    this->check_grad_output(grad_output, output_.dim(0));
    grad_input_.resize(grad_output.shape());
    const T* y = output_.data();  // the mask is y > 0: no need to keep the input
    const T* dy = grad_output.data();
    T* dx = grad_input_.data();
    const std::size_t n = grad_output.size();
    parallel_for(chunk_count(n, kChunk), [&](std::ptrdiff_t c) {
      const std::size_t begin = static_cast<std::size_t>(c) * kChunk, end = std::min(n, begin + kChunk);
      for (std::size_t i = begin; i < end; ++i) dx[i] = y[i] > T(0) ? dy[i] : T(0);
    });
    return grad_input_.view();
  }

 protected:
  Shape do_build(const Shape& input_shape) override { return input_shape; }

 private:
  static constexpr std::size_t kChunk = 1 << 16;
  Tensor<T> output_;      // (N, ...) same shape as the input
  Tensor<T> grad_input_;  // (N, ...)
};

}  // namespace lamina
