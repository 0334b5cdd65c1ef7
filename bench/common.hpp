// bench/common.hpp: what the three benchmark programs share.
//
// - Synthetic data from lamina::Rng (benchmarks never read MNIST).
// - The machine's fp32 peak, measured by the program itself: an xsimd FMA loop
//   with enough independent accumulators to hide the FMA latency, run on
//   lamina's own threads (lamina::parallel_for, one chunk per thread). It is
//   measured once per thread count, best of several runs, and cached, so every
//   benchmark can report the fraction of the peak it reaches.
// - Counters: "flops" (FLOP/s, 2 flops per multiply-add, Google Benchmark's
//   iteration-invariant rate) and "pct_peak" (percent of the fp32 peak with the
//   same thread count; a percentage because the console would print a fraction
//   such as 0.52 as "520m").
// - Peak resident memory (VmHWM) from /proc/self/status.
// - A main() that records the peak in the run's context, fails (exit status 1)
//   when a benchmark reported an error or when the filter matched nothing, so a
//   smoke run in ctest catches crashes, errors and stale filters, and never
//   compares a figure.
//
// Every benchmark uses real (wall-clock) time: lamina's OpenMP threads do not
// count in the CPU time of the thread that runs the benchmark.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <xsimd/xsimd.hpp>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <lamina/core/rng.hpp>
#include <lamina/core/tensor.hpp>
#include <lamina/core/threads.hpp>

namespace lamina_bench {

/// The thread counts every threaded benchmark runs with.
inline const std::vector<std::int64_t>& thread_counts() {
  static const std::vector<std::int64_t> counts{1, 2};
  return counts;
}

/// Sets lamina's thread count from a benchmark argument and returns it.
inline int use_threads(std::int64_t threads) {
  lamina::set_num_threads(static_cast<int>(threads));
  return static_cast<int>(threads);
}

// ---------------------------------------------------------------------------
// Synthetic data
// ---------------------------------------------------------------------------

/// Fills t with uniform values in [lo, hi).
inline void fill_uniform(lamina::TensorView<float> t, lamina::Rng& rng, double lo = -1.0, double hi = 1.0) {
  for (float& v : t) v = static_cast<float>(rng.uniform(lo, hi));
}

/// A tensor of the given shape with uniform values in [lo, hi).
inline lamina::Tensor<float> random_tensor(const lamina::Shape& shape, lamina::Rng& rng, double lo = -1.0,
                                           double hi = 1.0) {
  lamina::Tensor<float> t(shape);
  fill_uniform(t.view(), rng, lo, hi);
  return t;
}

/// n labels uniform in [0, classes).
inline std::vector<std::int32_t> random_labels(std::size_t n, std::size_t classes, lamina::Rng& rng) {
  std::vector<std::int32_t> labels(n);
  for (auto& l : labels) l = static_cast<std::int32_t>(rng.below(classes));
  return labels;
}

// ---------------------------------------------------------------------------
// fp32 peak
// ---------------------------------------------------------------------------

/// Independent FMA chains per thread. An FMA has a latency of 4-5 cycles and
/// current cores issue 1-2 of them per cycle, so 8-10 chains keep the units
/// busy; 12 leaves a margin and still fits the 16 vector registers of AVX2
/// (and the 32 of AVX-512) with the two constants.
inline constexpr std::size_t kFmaChains = 12;
using FloatBatch = xsimd::batch<float>;

namespace detail {

// `iterations` rounds of kFmaChains independent FMAs acc = acc * a + b (a
// contraction towards b / (1 - a) = 1: no overflow, no subnormals). Returns the
// sum of the lanes so that nothing can be optimised away.
template <std::size_t... I>
float fma_chains(std::size_t iterations, std::index_sequence<I...>) {
  const FloatBatch a(0.999999f), b(1e-6f);
  FloatBatch acc[] = {FloatBatch(1.0f + 1e-3f * static_cast<float>(I))...};
  for (std::size_t it = 0; it < iterations; ++it) {
    ((acc[I] = xsimd::fma(acc[I], a, b)), ...);
  }
  FloatBatch sum(0.0f);
  ((sum += acc[I]), ...);
  return xsimd::hadd(sum);
}

}  // namespace detail

/// Flops of one fma_loop iteration on one thread (an FMA is 2 flops per lane).
inline constexpr double kFlopsPerFmaIteration = 2.0 * kFmaChains * FloatBatch::size;

/// Runs the FMA loop on `threads` of lamina's threads (one chunk each), every
/// thread `iterations` rounds; returns a checksum.
inline float fma_loop(int threads, std::size_t iterations) {
  lamina::set_num_threads(threads);
  std::vector<float> sums(static_cast<std::size_t>(threads) * 16, 0.0f);  // a cache line each
  lamina::parallel_for(threads, [&](std::ptrdiff_t t) {
    sums[static_cast<std::size_t>(t) * 16] =
        detail::fma_chains(iterations, std::make_index_sequence<kFmaChains>{});
  });
  float total = 0;
  for (float s : sums) total += s;
  return total;
}

/// Measures the fp32 peak of `threads` threads in GFLOP/s: the best of 15 runs
/// of about 10 ms (the best, because interference only ever slows it down;
/// short runs, because on a busy machine a short window is more likely to find
/// every thread on a core of its own).
inline double measure_peak_gflops(int threads) {
  using clock = std::chrono::steady_clock;
  auto run = [threads](std::size_t iterations) {
    const auto start = clock::now();
    benchmark::DoNotOptimize(fma_loop(threads, iterations));
    return std::chrono::duration<double>(clock::now() - start).count();
  };
  // Calibrate to about 10 ms per run.
  std::size_t iterations = std::size_t(1) << 12;
  double seconds = run(iterations);
  while (seconds < 2e-3) {
    iterations *= 4;
    seconds = run(iterations);
  }
  iterations = std::max<std::size_t>(1, static_cast<std::size_t>(static_cast<double>(iterations) * 0.01 / seconds));
  double best = 0;
  for (int repetition = 0; repetition < 15; ++repetition) {
    const double s = run(iterations);
    best = std::max(best, threads * static_cast<double>(iterations) * kFlopsPerFmaIteration / s);
  }
  return best * 1e-9;
}

/// The fp32 peak of `threads` threads in GFLOP/s, measured on first use and cached.
inline double peak_gflops(int threads) {
  static std::map<int, double> cache;
  auto it = cache.find(threads);
  if (it == cache.end()) {
    const int previous = lamina::num_threads();
    it = cache.emplace(threads, measure_peak_gflops(threads)).first;
    lamina::set_num_threads(previous);
  }
  return it->second;
}

// ---------------------------------------------------------------------------
// Counters
// ---------------------------------------------------------------------------

/// Wall-clock time of the benchmark loop, for counters that must be divided by
/// time without the "/s" suffix Google Benchmark puts on rates. Start it just
/// before `for (auto _ : state)` and stop it just after.
class LoopTimer {
 public:
  void start() { start_ = std::chrono::steady_clock::now(); }
  double stop() {
    seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    return seconds_;
  }
  double seconds() const { return seconds_; }

 private:
  std::chrono::steady_clock::time_point start_;
  double seconds_ = 0;
};

/// Sets "flops" (FLOP/s) and "pct_peak" (percent of the measured fp32 peak of
/// `threads` threads) for a loop of state.iterations() passes of
/// `flops_per_iteration` flops that took `seconds`.
inline void report_flops(benchmark::State& state, double flops_per_iteration, int threads, double seconds) {
  state.counters["flops"] = benchmark::Counter(flops_per_iteration, benchmark::Counter::kIsIterationInvariantRate);
  const double achieved = flops_per_iteration * static_cast<double>(state.iterations()) / std::max(seconds, 1e-12);
  state.counters["pct_peak"] = 100.0 * achieved / (peak_gflops(threads) * 1e9);
}

/// 2 * N * OH * OW * F * KH * KW * C: the flops of one Conv2D pass (forward,
/// backward data or backward weights all multiply-add the same products).
inline double conv_flops(std::size_t n, std::size_t oh, std::size_t ow, std::size_t f, std::size_t kh,
                         std::size_t kw, std::size_t c) {
  return 2.0 * static_cast<double>(n) * static_cast<double>(oh * ow) * static_cast<double>(f) *
         static_cast<double>(kh * kw * c);
}

// ---------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------

/// A field of /proc/self/status in bytes ("VmHWM", "VmRSS"); 0 when unavailable.
inline double proc_status_bytes(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.compare(0, field.size() + 1, field + ":") != 0) continue;
    std::istringstream in(line.substr(field.size() + 1));
    double kib = 0;
    in >> kib;
    return kib * 1024.0;
  }
  return 0;
}

/// Gives freed heap memory back to the system and resets the peak resident
/// set (VmHWM) to the current one (Linux: "5" > /proc/self/clear_refs).
/// Returns false when the reset is not possible.
inline bool reset_peak_rss() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
  std::ofstream clear("/proc/self/clear_refs");
  if (!clear) return false;
  clear << "5";
  clear.flush();
  return static_cast<bool>(clear);
}

// ---------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------

/// Forwards to the reporter --benchmark_format asks for and remembers errors.
class ErrorCountingReporter : public benchmark::BenchmarkReporter {
 public:
  explicit ErrorCountingReporter(benchmark::BenchmarkReporter* inner) : inner_(inner) {}
  bool ReportContext(const Context& context) override { return inner_->ReportContext(context); }
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs)
      if (run.error_occurred) ++errors_;
    inner_->ReportRuns(runs);
  }
  void Finalize() override { inner_->Finalize(); }
  int errors() const { return errors_; }

 private:
  benchmark::BenchmarkReporter* inner_;
  int errors_ = 0;
};

/// The benchmark programs' main. With measure_peak, the fp32 peak for every
/// thread count is measured first and written into the run's context (console
/// header, JSON "context"). Exit status 1 when a benchmark failed or none ran.
inline int run_main(int argc, char** argv, bool measure_peak) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("simd", std::string(FloatBatch::arch_type::name()) + ", " +
                                          std::to_string(FloatBatch::size) + " floats per batch");
  if (measure_peak) {
    for (std::int64_t threads : thread_counts()) {
      const double peak = peak_gflops(static_cast<int>(threads));
      char text[160];
      std::snprintf(text, sizeof text, "%.1f GFLOP/s%s", peak,
                    threads > 1 && peak < 1.5 * peak_gflops(1)
                        ? " (less than 1.5x one thread's: the cores are busy, multi-thread figures are disturbed)"
                        : "");
      benchmark::AddCustomContext("fp32_peak_" + std::to_string(threads) + "_thread" + (threads > 1 ? "s" : ""),
                                  text);
    }
  }
  // The default reporter is owned by the library (a static it never frees).
  ErrorCountingReporter reporter(benchmark::CreateDefaultDisplayReporter());
  const std::size_t ran = benchmark::RunSpecifiedBenchmarks(&reporter);
  const std::string filter = benchmark::GetBenchmarkFilter();
  benchmark::Shutdown();
  const int errors = reporter.errors();
  if (ran == 0) {
    std::fprintf(stderr, "%s: no benchmark matches --benchmark_filter=%s\n", argv[0], filter.c_str());
    return 1;
  }
  if (errors > 0) {
    std::fprintf(stderr, "%s: %d benchmark(s) reported an error\n", argv[0], errors);
    return 1;
  }
  return 0;
}

}  // namespace lamina_bench
