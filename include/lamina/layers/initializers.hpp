// lamina/layers/initializers.hpp: weight initialisation schemes.
#pragma once

#include <cmath>
#include <cstddef>
#include <string>

#include "lamina/core/error.hpp"
#include "lamina/core/rng.hpp"
#include "lamina/core/tensor.hpp"

namespace lamina {

/// Keras's names: he_normal and glorot_uniform (Keras's Dense default) and friends.
enum class Init { he_normal, he_uniform, glorot_normal, glorot_uniform, zeros };

inline std::string to_string(Init init) {
  switch (init) {
    case Init::he_normal: return "he_normal";
    case Init::he_uniform: return "he_uniform";
    case Init::glorot_normal: return "glorot_normal";
    case Init::glorot_uniform: return "glorot_uniform";
    case Init::zeros: return "zeros";
  }
  return "?";
}

inline Init init_from_string(const std::string& name) {
  for (Init i : {Init::he_normal, Init::he_uniform, Init::glorot_normal, Init::glorot_uniform, Init::zeros})
    if (to_string(i) == name) return i;
  throw ArgumentError("unknown initializer '" + name +
                      "' (known: he_normal, he_uniform, glorot_normal, glorot_uniform, zeros)");
}

/// Fills `weights` as Keras does: normal schemes draw from a normal truncated at
/// two standard deviations, whose stddev is corrected by 0.87962566 so that the
/// truncated distribution has the intended variance (He: 2/fan_in,
/// Glorot: 2/(fan_in+fan_out)); uniform schemes draw from [-limit, limit] with
/// limit = sqrt(3 * variance).
template <class T>
void initialize_weights(TensorView<T> weights, Init init, std::size_t fan_in, std::size_t fan_out,
                        Rng& rng) {
  double variance = 0.0;
  switch (init) {
    case Init::he_normal:
    case Init::he_uniform: variance = 2.0 / static_cast<double>(fan_in); break;
    case Init::glorot_normal:
    case Init::glorot_uniform: variance = 2.0 / static_cast<double>(fan_in + fan_out); break;
    case Init::zeros:
      for (T& w : weights) w = T(0);
      return;
  }
  if (init == Init::he_normal || init == Init::glorot_normal) {
    const double stddev = std::sqrt(variance) / 0.87962566103423978;
    for (T& w : weights) w = static_cast<T>(rng.truncated_normal(stddev));
  } else {
    const double limit = std::sqrt(3.0 * variance);
    for (T& w : weights) w = static_cast<T>(rng.uniform(-limit, limit));
  }
}

}  // namespace lamina
