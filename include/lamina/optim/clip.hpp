// lamina/optim/clip.hpp: the global gradient norm, and scaling gradients by a
// factor: what fit()'s clip_gradient_norm and its non-finite check use.
//
// The norm is summed in double over fixed chunks, each chunk in a fixed order
// with eight interleaved partial sums, and the chunk sums are added in chunk
// order: the result is the same bits with any number of threads.
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <vector>

#include "lamina/core/threads.hpp"

namespace lamina {

namespace detail {
inline constexpr std::size_t kNormChunk = std::size_t{1} << 16;  // elements per parallel chunk
}  // namespace detail

/// The L2 norm of grads[0..n), computed in double. NaN if any element is NaN,
/// +Inf if any is infinite (so it doubles as the finiteness check).
template <class T>
double gradient_norm(const T* grads, std::size_t n) {
  const std::ptrdiff_t chunks = chunk_count(n, detail::kNormChunk);
  std::vector<double> partial(static_cast<std::size_t>(chunks), 0.0);  // (chunks,) sums of squares
  parallel_for(chunks, [&](std::ptrdiff_t c) {
    const std::size_t begin = static_cast<std::size_t>(c) * detail::kNormChunk;
    const std::size_t end = std::min(n, begin + detail::kNormChunk);
    std::array<double, 8> lane{};  // independent sums: the loop vectorises without reordering
    std::size_t i = begin;
    for (; i + 8 <= end; i += 8)
      for (std::size_t k = 0; k < 8; ++k) {
        const double g = static_cast<double>(grads[i + k]);
        lane[k] += g * g;
      }
    double sum = 0;
    for (; i < end; ++i) sum += static_cast<double>(grads[i]) * static_cast<double>(grads[i]);
    for (double s : lane) sum += s;
    partial[static_cast<std::size_t>(c)] = sum;
  });
  double total = 0;
  for (double s : partial) total += s;
  return std::sqrt(total);
}

/// grads[0..n) *= factor (rounded to T once).
template <class T>
void scale_gradients(T* grads, std::size_t n, double factor) {
  const T f = static_cast<T>(factor);
  parallel_for(chunk_count(n, detail::kNormChunk), [&](std::ptrdiff_t c) {
    const std::size_t begin = static_cast<std::size_t>(c) * detail::kNormChunk;
    const std::size_t end = std::min(n, begin + detail::kNormChunk);
    for (std::size_t i = begin; i < end; ++i) grads[i] *= f;
  });
}

}  // namespace lamina
