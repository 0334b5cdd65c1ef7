// The Keras notebook's two models, defined once: the example trainers train them, the
// tests check them (summary, determinism, accuracy) and the benchmarks time
// them, so all three always mean the same network. Examples only, never
// installed.
#pragma once

#include <lamina/lamina.hpp>

namespace lamina_examples {

/// The MLP baseline: Flatten -> Dense 256 ReLU -> Dense 10 (softmax fused into
/// the loss).
template <class T>
void add_reference_mlp(lamina::Sequential<T>& model) {
  using namespace lamina;
  model.template add<Flatten>();
  model.template add<Dense>(256, Init::he_normal, true, Activation::relu);
  model.template add<Dense>(10, Init::glorot_uniform);
}

/// The notebook's CNN, a small VGG with batch normalisation and dropout:
///   [Conv 3x3 32 same ReLU -> BatchNorm] x2 -> MaxPool 2 -> Dropout 0.25
///   [Conv 3x3 64 same ReLU -> BatchNorm] x2 -> MaxPool 2 -> Dropout 0.25
///   Flatten -> Dense 256 ReLU -> BatchNorm -> Dropout 0.5 -> Dense 10
/// Conv2D's and Dense's ReLU are fused into the layer, as Keras's
/// activation="relu"; the last Dense outputs logits.
template <class T>
void add_reference_cnn(lamina::Sequential<T>& model) {
  using namespace lamina;
  for (std::size_t filters : {32, 64}) {
    model.template add<Conv2D>(filters, 3, 1, Padding::same, Activation::relu);
    model.template add<BatchNormalization>();
    model.template add<Conv2D>(filters, 3, 1, Padding::same, Activation::relu);
    model.template add<BatchNormalization>();
    model.template add<MaxPooling2D>(2);
    model.template add<Dropout>(0.25);
  }
  model.template add<Flatten>();
  model.template add<Dense>(256, Init::he_normal, true, Activation::relu);
  model.template add<BatchNormalization>();
  model.template add<Dropout>(0.5);
  model.template add<Dense>(10);
}

}  // namespace lamina_examples
