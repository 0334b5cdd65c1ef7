// lamina/layers/flatten.hpp: (N, d1, d2, ...) -> (N, d1*d2*...), without a copy.
#pragma once

#include <memory>
#include <string>

#include "lamina/layers/layer.hpp"

namespace lamina {

template <class T>
class Flatten final : public Layer<T> {
 public:
  std::string type() const override { return "Flatten"; }
  std::unique_ptr<Layer<T>> clone() const override { return std::make_unique<Flatten<T>>(); }

  // Row-major storage makes flattening a reshape: the output is a view of the
  // input and the input gradient a view of the output gradient.
  TensorView<const T> forward(TensorView<const T> input, Mode) override {
    this->check_input(input);
    batch_ = input.dim(0);
    return input.reshape(this->output_shape().prepend(batch_));
  }
  TensorView<const T> backward(TensorView<const T> grad_output) override {
    this->check_grad_output(grad_output, batch_);
    return grad_output.reshape(this->input_shape().prepend(batch_));
  }

 protected:
  Shape do_build(const Shape& input_shape) override {
    if (input_shape.rank() == 0 || input_shape.size() == 0)
      throw this->build_error("(N, d1, ...) with at least one element per sample", input_shape);
    return Shape{input_shape.size()};
  }

 private:
  std::size_t batch_ = 0;
};

}  // namespace lamina
