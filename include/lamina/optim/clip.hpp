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
#include "lamina/optim/update_plan.hpp"

namespace lamina {

namespace detail {
inline constexpr std::size_t kNormChunk = std::size_t{1} << 16;  // elements per parallel chunk
}  // namespace detail

namespace detail {
// sum of grads[begin..end)^2 in double, in a fixed order: eight interleaved
// partial sums, then the tail, then the eight.
template <class T>
double sum_of_squares(const T* grads, std::size_t begin, std::size_t end) {
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
  return sum;
}
}  // namespace detail

/// The L2 norm of grads[0..n), computed in double. NaN if any element is NaN,
/// +Inf if any is infinite (so it doubles as the finiteness check).
template <class T>
double gradient_norm(const T* grads, std::size_t n) {
  const std::ptrdiff_t chunks = chunk_count(n, detail::kNormChunk);
  std::vector<double> partial(static_cast<std::size_t>(chunks), 0.0);  // (chunks,) sums of squares
  parallel_for_ranges(n, detail::kNormChunk, [&](const ChunkRange& chunk) {
    partial[chunk.index] = detail::sum_of_squares(grads, chunk.begin, chunk.end);
  });
  double total = 0;
  for (double s : partial) total += s;
  return std::sqrt(total);
}

/// The same norm over a buffer of plan.elements gradients, split as the
/// optimizer splits them (optim/update_plan.hpp), so that each thread reads
/// the gradients its own loops wrote: each block summed as above, the block
/// sums added in the plan's order (phase by phase). Also the same bits with
/// any number of threads; not always those of gradient_norm(grads, n), which
/// sums other chunks.
template <class T>
double gradient_norm(const T* grads, const UpdatePlan& plan) {
  std::vector<std::size_t> first;  // (phases,) index of each phase's first block sum
  std::size_t blocks = 0;
  for (const auto& phase : plan.phases) {
    first.push_back(blocks);
    blocks += phase.size();
  }
  std::vector<double> partial(blocks, 0.0);  // (blocks,) sums of squares
  for (std::size_t p = 0; p < plan.phases.size(); ++p) {
    const auto& phase = plan.phases[p];
    parallel_for(static_cast<std::ptrdiff_t>(phase.size()), [&](std::ptrdiff_t c) {
      const UpdateBlock& block = phase[static_cast<std::size_t>(c)];
      partial[first[p] + static_cast<std::size_t>(c)] =
          detail::sum_of_squares(grads, block.offset, block.offset + block.length);
    });
  }
  double total = 0;
  for (double s : partial) total += s;
  return std::sqrt(total);
}

/// grads[0..n) *= factor (rounded to T once).
template <class T>
void scale_gradients(T* grads, std::size_t n, double factor) {
  const T f = static_cast<T>(factor);
  parallel_for_ranges(n, detail::kNormChunk, [&](const ChunkRange& chunk) {
    const std::size_t begin = chunk.begin, end = chunk.end;
    for (std::size_t i = begin; i < end; ++i) grads[i] *= f;
  });
}

/// The same scaling, split as the plan splits the gradients.
template <class T>
void scale_gradients(T* grads, const UpdatePlan& plan, double factor) {
  const T f = static_cast<T>(factor);
  for_each_update_block(plan, [&](const UpdateBlock& block) {
    for (std::size_t i = block.offset; i < block.offset + block.length; ++i) grads[i] *= f;
  });
}

}  // namespace lamina
