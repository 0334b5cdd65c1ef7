// lamina/model/sequential.hpp: a linear stack of layers, trained with
// softmax cross-entropy.
//
//   Sequential<float> model(Shape{28, 28, 1}, /*seed=*/42);
//   model.add<Flatten>();
//   model.add<Dense>(256, Init::he_normal);
//   model.add<ReLU>();
//   model.add<Dense>(10);                    // logits; softmax is fused into the loss
//   model.compile(std::make_unique<Adam<float>>(1e-3));
//   History h = fit(model, x_train, y_train, options, x_val, y_val);   // train/fit.hpp
//
// Everything but the wiring (building, the training step, evaluate, predict)
// is Model's (model/model.hpp). Each layer is built against the output of the
// one before it when it is added, so shape errors name the layer at once.
#pragma once

#include <algorithm>
#include <iomanip>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "lamina/core/error.hpp"
#include "lamina/core/format.hpp"
#include "lamina/core/tensor.hpp"
#include "lamina/layers/layer.hpp"
#include "lamina/model/model.hpp"

namespace lamina {

template <class T>
class Sequential final : public Model<T> {
  using Base = Model<T>;
  using typename Base::LayerList;

 public:
  /// `input_shape`: one sample (no batch dimension), e.g. (28, 28, 1).
  /// `seed`: weight initialisation and the layers' own streams (Dropout).
  explicit Sequential(const Shape& input_shape, std::uint64_t seed = 0) : Base("Sequential", input_shape, seed) {}

  /// Adds a layer, builds it against the current output shape, and returns it.
  Layer<T>& add(std::unique_ptr<Layer<T>> layer) {
    if (this->built()) throw Error("Sequential: cannot add layers after the model is built");
    const LayerList& layers = this->layers();
    const Shape in = output_shape();
    layer->set_index(static_cast<int>(layers.size()));
    try {
      layer->build(in);
    } catch (const ShapeError& e) {
      std::string where = layers.empty() ? std::string("the model input")
                                         : "the output of " + layers.back()->describe();
      throw ShapeError(std::string(e.what()) + " (" + where + ")");
    }
    // The model's input is data: nobody needs its gradient, nor the gradient of
    // any layer's input that only parameter-free layers separate from the data.
    bool parameters_before = false;
    for (const auto& l : layers) parameters_before |= !l->parameter_specs().empty();
    layer->set_input_gradient_needed(parameters_before);
    return this->append_layer(std::move(layer));
  }
  /// model.add<Dense>(256, Init::he_normal): constructs L<T>(args...).
  template <template <class> class L, class... Args>
  L<T>& add(Args&&... args) {
    return static_cast<L<T>&>(add(std::make_unique<L<T>>(std::forward<Args>(args)...)));
  }

  Shape output_shape() const override {
    const LayerList& layers = this->layers();
    return layers.empty() ? this->input_shape() : layers.back()->output_shape();
  }

  /// The Keras-style table: layer (type), output shape, parameter count, totals.
  /// Layers are named as Keras names them: the snake_case type, numbered from
  /// the second of a kind ("conv2d", "conv2d_1", ...).
  std::string summary() const override {
    std::vector<std::string> names, shapes, counts;
    std::vector<std::pair<std::string, int>> seen;  // base name -> how many so far
    for (const auto& l : this->layers()) {
      const std::string base = layer_type_snake_case(l->type());
      int k = 0;
      bool found = false;
      for (auto& [name, count] : seen)
        if (name == base) {
          k = ++count;
          found = true;
        }
      if (!found) seen.emplace_back(base, 0);
      names.push_back(" " + (k == 0 ? base : base + "_" + std::to_string(k)) + " (" + l->type() + ")");
      shapes.push_back(l->output_shape().to_string("None"));
      std::size_t params = l->parameter_count();
      for (const auto& spec : l->buffer_specs()) params += spec.shape.size();
      counts.push_back(group_thousands(params));
    }
    std::size_t w1 = 29, w2 = 26;
    for (std::size_t i = 0; i < names.size(); ++i) {
      w1 = std::max(w1, names[i].size() + 2);
      w2 = std::max(w2, shapes[i].size() + 2);
    }
    const std::size_t width = w1 + w2 + 11;
    const std::string rule(width, '_'), thick(width, '=');
    std::ostringstream out;
    out << "Model: \"sequential\"\n" << rule << "\n" << std::left << std::setw(static_cast<int>(w1))
        << " Layer (type)" << std::setw(static_cast<int>(w2)) << "Output Shape" << "Param #\n" << thick << "\n";
    for (std::size_t i = 0; i < names.size(); ++i)
      out << std::setw(static_cast<int>(w1)) << names[i] << std::setw(static_cast<int>(w2)) << shapes[i] << counts[i]
          << "\n";
    const std::size_t trainable = this->trainable_parameter_count(), frozen = this->non_trainable_parameter_count();
    out << thick << "\n";
    out << "Total params: " << group_thousands(trainable + frozen) << "\n";
    out << "Trainable params: " << group_thousands(trainable) << "\n";
    out << "Non-trainable params: " << group_thousands(frozen) << "\n";
    out << "(softmax is fused into the loss: the last layer outputs logits)\n" << rule << "\n";
    return out.str();
  }

 protected:
  // One layer after the other.
  TensorView<const T> run_forward(const LayerList& layers, TensorView<const T> x, Mode mode) const override {
    TensorView<const T> h = x;
    for (const auto& l : layers) h = l->forward(h, mode);
    return h;
  }
  // Stops at the first layer whose input gradient nobody needs: the layers
  // before it have no parameters.
  void run_backward(const LayerList& layers, TensorView<const T> grad_logits) const override {
    TensorView<const T> g = grad_logits;
    for (std::size_t i = layers.size(); i-- > 0;) {
      g = layers[i]->backward(g);
      if (!layers[i]->input_gradient_needed()) break;
    }
  }
};

}  // namespace lamina
