// lamina/optim/update_plan.hpp: which thread updates which parameters.
//
// An optimizer step is elementwise, so any split of the parameters over threads
// gives the same bits. The split still matters for speed: a parameter that one
// thread updates and the other thread reads in the next forward travels between
// the two cores' caches, and a write to a cache line that the other core also
// holds has to invalidate that copy first. With two threads, Adam over the
// reference MLP takes about 2.5 times as long when both threads have read the
// whole Dense kernel in the forward as when each has read only the part it
// updates, and over ten times as long when the two cores do not share an L3
// cache (docs/performance.md, "Threads and caches").
//
// So a layer whose kernels split a parameter tensor between threads in a fixed
// way says so (Layer::parameter_row_chunk), and the optimizer follows the same
// split: the UpdatePlan below. Each phase is one parallel_for whose chunk i is
// block i; a layer's tensor gets a phase of its own with the same chunks as the
// layer's own loops, so OpenMP's static schedule hands chunk i to the same
// thread in both. Every other parameter is updated in contiguous chunks of
// kUpdateChunk elements. The split is by whole rows, so each thread owns one
// contiguous range: split by columns (each thread owning half of every 1 KB
// row of the MLP's kernel), the hardware prefetchers pull in the other
// thread's half, which is slower still than reading the whole kernel.
#pragma once

#include <algorithm>
#include <cstddef>
#include <utility>
#include <vector>

#include "lamina/core/error.hpp"
#include "lamina/core/threads.hpp"
#include "lamina/layers/layer.hpp"

namespace lamina {

/// Elements per chunk where no layer asks for a split of its own: the
/// reference MLP's 203,530 parameters make 25 chunks (13 + 12 on two threads;
/// chunks of 32768 would make 7, 4 + 3).
inline constexpr std::size_t kUpdateChunk = std::size_t{1} << 13;

/// elements [offset, offset + length) of the flat parameter buffer.
struct UpdateBlock {
  std::size_t offset = 0;
  std::size_t length = 0;
};

/// Every element of a flat parameter buffer of `elements` values in exactly
/// one block (padding between tensors may be left out: it stays zero).
struct UpdatePlan {
  std::size_t elements = 0;
  std::vector<std::vector<UpdateBlock>> phases;  // one parallel_for each, block i = chunk i
};

/// Calls body(block) for every block of the plan, phase by phase, each phase
/// as one parallel_for (blocks of a phase write disjoint elements).
template <class Body>
void for_each_update_block(const UpdatePlan& plan, Body&& body) {
  for (const auto& phase : plan.phases)
    parallel_for(static_cast<std::ptrdiff_t>(phase.size()),
                 [&](std::ptrdiff_t c) { body(phase[static_cast<std::size_t>(c)]); });
}

/// The plan for a store: one phase per tensor whose layer splits it by rows
/// (see Layer::parameter_row_chunk), and one phase of contiguous chunks of
/// `chunk` elements over everything else.
template <class T>
UpdatePlan make_update_plan(const ParameterStore<T>& store, std::size_t chunk = kUpdateChunk) {
  if (chunk == 0) throw ArgumentError("make_update_plan: chunk must be at least 1 element");
  UpdatePlan plan;
  plan.elements = store.params().size();
  std::vector<std::pair<std::size_t, std::size_t>> split;  // [begin, end) of the tensors with a phase of their own
  for (const auto& entry : store.entries()) {
    if (!entry.trainable) continue;
    const std::size_t rows_per_chunk = entry.layer->parameter_row_chunk(entry.index);
    const Shape& shape = entry.spec.shape;
    if (rows_per_chunk == 0 || shape.rank() == 0 || shape.size() == 0) continue;
    const std::size_t row = shape.size() / shape[0];  // elements per row
    const std::size_t end = entry.offset + shape.size();
    std::vector<UpdateBlock> phase;  // (chunk_count(rows, rows_per_chunk),)
    for (std::size_t at = entry.offset; at < end; at += rows_per_chunk * row)
      phase.push_back({at, std::min(rows_per_chunk * row, end - at)});
    plan.phases.push_back(std::move(phase));
    split.emplace_back(entry.offset, end);
  }
  std::sort(split.begin(), split.end());
  std::vector<UpdateBlock> rest;  // contiguous chunks between the split tensors
  auto add_range = [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; i += chunk) rest.push_back({i, std::min(chunk, end - i)});
  };
  std::size_t at = 0;
  for (const auto& [begin, end] : split) {
    add_range(at, begin);
    at = end;
  }
  add_range(at, plan.elements);
  if (!rest.empty()) plan.phases.insert(plan.phases.begin(), std::move(rest));
  return plan;
}

}  // namespace lamina
