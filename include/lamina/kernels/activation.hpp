// lamina/kernels/activation.hpp: activations fused into a layer's output
// (Keras's `activation=` argument of Dense and Conv2D).
//
// Fusing saves a pass over memory and a buffer: the layer applies the
// activation to its output in place, and backward multiplies the incoming
// gradient by the activation's derivative, recovered from the cached output
// (for ReLU, output > 0).
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>

#include "lamina/core/error.hpp"
#include "lamina/core/threads.hpp"

namespace lamina {

enum class Activation { none, relu };

inline const char* to_string(Activation a) noexcept { return a == Activation::relu ? "relu" : "linear"; }

inline Activation activation_from_string(const std::string& name) {
  if (name == "relu") return Activation::relu;
  if (name == "linear" || name == "none") return Activation::none;
  throw ArgumentError("unknown activation '" + name + "' (known: linear, relu)");
}

namespace detail {
inline constexpr std::size_t kActivationChunk = 1 << 16;
}  // namespace detail

/// Applies `a` to values[0, n) in place.
template <class T>
void activate_in_place(Activation a, T* values, std::size_t n) {
  if (a == Activation::none) return;
  parallel_for_ranges(n, detail::kActivationChunk, [&](const ChunkRange& chunk) {
    const std::size_t begin = chunk.begin, end = chunk.end;
    for (std::size_t i = begin; i < end; ++i) values[i] = values[i] > T(0) ? values[i] : T(0);
  });
}

/// grad_in[i] = grad_out[i] * a'(.) where the derivative is read from the
/// activated output; returns grad_out itself when a is none (no copy).
template <class T>
const T* activation_backward(Activation a, const T* output, const T* grad_out, T* grad_in, std::size_t n) {
  if (a == Activation::none) return grad_out;
  parallel_for_ranges(n, detail::kActivationChunk, [&](const ChunkRange& chunk) {
    // Both operands are loaded unconditionally: a conditional load of grad_out
    // keeps GCC from vectorising this loop.
    const std::size_t begin = chunk.begin, end = chunk.end;
    for (std::size_t i = begin; i < end; ++i) {
      const T g = grad_out[i];
      grad_in[i] = output[i] > T(0) ? g : T(0);
    }
  });
  return grad_in;
}

}  // namespace lamina
