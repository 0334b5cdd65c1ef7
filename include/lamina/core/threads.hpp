// lamina/core/threads.hpp: the one thread knob.
//
// lamina::set_num_threads(n) sets how many threads lamina's OpenMP loops use.
// lamina never nests parallel regions: its kernels divide work into chunks whose
// boundaries depend only on the problem size, never on the thread count, and call
// Eigen's GEMM inside those chunks single-threaded (lamina pins Eigen's own thread
// count to 1 the first time it runs a loop, and set_num_threads keeps it there),
// so Eigen never adds threads of its own on top of lamina's. Fixed chunks are also
// what makes results bit-identical with 1 thread or many. If your own code calls
// Eigen::setNbThreads(k > 1) after that, lamina's results may depend on the
// thread count again.
#pragma once

#include <algorithm>
#include <cstddef>

#include <Eigen/Core>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "lamina/core/error.hpp"

namespace lamina {

namespace detail {
inline int& thread_count_storage() {
  static int count = 0;  // 0: not set yet, use the OpenMP default
  return count;
}
}  // namespace detail

/// Number of threads lamina uses (at least 1).
inline int num_threads() {
  const int n = detail::thread_count_storage();
  if (n > 0) return n;
#if defined(_OPENMP)
  return std::max(1, omp_get_max_threads());
#else
  return 1;
#endif
}

namespace detail {
// Eigen's GEMM must never start threads of its own (see the top of this file).
inline void pin_eigen_single_threaded() {
  static const bool pinned = (Eigen::setNbThreads(1), true);
  (void)pinned;
}
}  // namespace detail

/// Sets the number of threads lamina uses (n >= 1); Eigen stays at 1 inside.
inline void set_num_threads(int n) {
  if (n < 1) throw ArgumentError(detail::concat("set_num_threads: need at least 1 thread, got ", n));
  detail::thread_count_storage() = n;
  Eigen::setNbThreads(1);
}

/// How many threads parallel_for(chunks, ...) runs on: lamina's thread count,
/// at most one per chunk, and 1 inside an enclosing parallel region (lamina
/// never nests). Kernels that keep one scratch buffer per worker size them
/// with this, so the rule lives in one place.
inline std::size_t parallel_workers(std::ptrdiff_t chunks) {
#if defined(_OPENMP)
  if (chunks <= 1 || omp_in_parallel()) return 1;
  return static_cast<std::size_t>(std::min<std::ptrdiff_t>(num_threads(), chunks));
#else
  (void)chunks;
  return 1;
#endif
}

/// Inside a parallel_for body: the index of the worker running it, in
/// [0, parallel_workers(chunks)).
inline std::size_t parallel_worker_index() {
#if defined(_OPENMP)
  return static_cast<std::size_t>(omp_get_thread_num());
#else
  return 0;
#endif
}

/// Runs body(chunk) for chunk in [0, chunks) on lamina's threads. What a chunk
/// covers must not depend on the thread count; chunks run in any order, so they
/// must write disjoint outputs.
template <class Body>
void parallel_for(std::ptrdiff_t chunks, Body&& body) {
  detail::pin_eigen_single_threaded();
#if defined(_OPENMP)
  const int threads = static_cast<int>(parallel_workers(chunks));
  if (threads > 1) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (std::ptrdiff_t c = 0; c < chunks; ++c) body(c);
    return;
  }
#endif
  for (std::ptrdiff_t c = 0; c < chunks; ++c) body(c);
}

/// Chunks of `grain` items covering [0, n): the last may be shorter.
inline std::ptrdiff_t chunk_count(std::size_t n, std::size_t grain) {
  return static_cast<std::ptrdiff_t>((n + grain - 1) / grain);
}

/// One chunk of parallel_for_ranges: items [begin, end), chunk number `index`.
struct ChunkRange {
  std::size_t begin;
  std::size_t end;
  std::size_t index;
};

/// Runs body(ChunkRange) over [0, n) cut into chunks of `grain` items (the
/// last may be shorter), on lamina's threads as parallel_for does. The chunk
/// boundaries depend only on n and grain, never on the thread count, so a
/// body that reduces within its chunk (into a per-chunk slot) and a caller
/// that combines the slots in chunk order give the same bits on any number of
/// threads. `grain` must be at least 1.
template <class Body>
void parallel_for_ranges(std::size_t n, std::size_t grain, Body&& body) {
  parallel_for(chunk_count(n, grain), [&](std::ptrdiff_t k) {
    const std::size_t begin = static_cast<std::size_t>(k) * grain;
    body(ChunkRange{begin, std::min(n, begin + grain), static_cast<std::size_t>(k)});
  });
}

}  // namespace lamina
