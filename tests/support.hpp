// Helpers shared by the tests (never installed): the real-data and scratch-file
// helpers, and the numeric helpers that the kernel and layer tests have in
// common (random operands, bit equality, the rounding bound of a sum, a thread
// count guard, a layer bound to a store of its own). A test that needs one of
// these uses this copy rather than its own, so that the bounds stay the same
// everywhere.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <zlib.h>

#include <catch2/catch.hpp>

#include "lamina/core/rng.hpp"
#include "lamina/core/tensor.hpp"
#include "lamina/core/threads.hpp"
#include "lamina/layers/layer.hpp"

namespace lamina_test {

/// Directory of the real MNIST data (LAMINA_DATA_DIR). When a test needs a file
/// that is not there, it fails if CI is set and skips otherwise.
inline std::filesystem::path data_dir() {
  const char* dir = std::getenv("LAMINA_DATA_DIR");
  return dir ? std::filesystem::path(dir) : std::filesystem::path("../shared/data");
}

/// Returns true if `relative` exists under data_dir(); otherwise fails the test
/// under CI and returns false (the caller then returns: a skip) elsewhere.
inline bool require_data(const std::string& relative) {
  const auto path = data_dir() / relative;
  if (std::filesystem::exists(path)) return true;
  if (std::getenv("CI") != nullptr) {
    FAIL("real MNIST data missing under CI: " << path.string()
                                              << " (set LAMINA_DATA_DIR; see README.md)");
  }
  WARN("skipping: " << path.string() << " not found (set LAMINA_DATA_DIR)");
  return false;
}

/// A fresh scratch directory for this test program.
inline std::filesystem::path temp_dir(const std::string& name) {
  const char* base = std::getenv("LAMINA_TEST_TMP");
  std::filesystem::path dir = base ? std::filesystem::path(base) : std::filesystem::temp_directory_path() / "lamina_test";
  dir /= name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

/// Writes `content` to `path` as is.
inline void write_file(const std::filesystem::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  REQUIRE(out.good());
}

/// Writes `content` to `path` gzip-compressed.
inline void write_gz(const std::filesystem::path& path, const std::string& content) {
  gzFile file = gzopen(path.string().c_str(), "wb");
  REQUIRE(file != nullptr);
  REQUIRE(gzwrite(file, content.data(), static_cast<unsigned>(content.size())) ==
          static_cast<int>(content.size()));
  REQUIRE(gzclose(file) == Z_OK);
}

// ---- random operands --------------------------------------------------------

/// n values uniform in [lo, hi), drawn from rng in order.
template <class T>
std::vector<T> random_values(std::size_t n, lamina::Rng& rng, double lo = -1.0, double hi = 1.0) {
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(rng.uniform(lo, hi));
  return v;
}

/// A tensor of `shape` with values uniform in [lo, hi), from a fresh Rng(seed).
template <class T>
lamina::Tensor<T> random_tensor(const lamina::Shape& shape, std::uint64_t seed, double lo = -1.0,
                                double hi = 1.0) {
  lamina::Tensor<T> t(shape);
  lamina::Rng rng(seed);
  for (T& v : t) v = static_cast<T>(rng.uniform(lo, hi));
  return t;
}

/// |v| element by element, in T (exact): the operands of the "magnitude" run
/// of a reference kernel, whose result is sum |terms| (see sum_rounding_bound).
template <class T>
std::vector<T> absolute(const std::vector<T>& v) {
  std::vector<T> a(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) a[i] = std::fabs(v[i]);
  return a;
}

// ---- bit equality ------------------------------------------------------------

/// The same bits (not merely equal values: -0 differs from 0, NaNs compare).
template <class T>
bool same_bits(const T* a, const T* b, std::size_t n) {
  return n == 0 || std::memcmp(a, b, n * sizeof(T)) == 0;
}
template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && same_bits(a.data(), b.data(), a.size());
}
/// Also requires the same shape.
template <class T>
bool same_bits(lamina::TensorView<const T> a, lamina::TensorView<const T> b) {
  return a.shape() == b.shape() && same_bits(a.data(), b.data(), a.size());
}
template <class T>
bool same_bits(const lamina::Tensor<T>& a, const lamina::Tensor<T>& b) {
  return same_bits<T>(a.view(), b.view());
}

// ---- rounding bounds ---------------------------------------------------------

/// u, the unit roundoff of T: 2^-24 for float, 2^-53 for double.
template <class T>
constexpr double unit_roundoff() {
  return std::numeric_limits<T>::epsilon() / 2;
}

/// The bound, in units of u * sum|terms|, on the rounding error of a value
/// computed as a sum of `products` products plus a bias (or an old value) and
/// one final rounding to T, summed in any order, with or without FMA, and
/// compared with a reference accumulated in double:
///     |fast - reference| <= sum_rounding_bound(products) * unit_roundoff<T>() * sum|terms|.
/// With n = products + 2 terms the worst case is gamma_n ~ n u [Higham,
/// Accuracy and Stability of Numerical Algorithms, sec. 3.1]; with rounding
/// errors of random sign it is 8 sqrt(n) u except with probability below
/// 2 exp(-8^2 / 2) = 3e-14 per value [Higham & Mary, SIAM J. Sci. Comput.
/// 41(5), 2019], and the seeds are fixed, so a test using it is not flaky.
/// The factor 2 covers the reference's own rounding to T. A missing or doubled
/// product (an error of about sum|terms| / n) exceeds it for the sizes the
/// tests use.
inline double sum_rounding_bound(std::size_t products) {
  const double n = static_cast<double>(products + 2);
  return 2.0 * std::min(n, 8.0 * std::sqrt(n));
}

// ---- threads and layers ------------------------------------------------------

/// Restores the thread count that a test changed (set_num_threads), on any exit.
struct ThreadCountGuard {
  int saved = lamina::num_threads();
  ~ThreadCountGuard() { lamina::set_num_threads(saved); }
};

/// Builds a standalone layer for `sample_shape` (no batch dimension), binds it
/// to a parameter store of its own (returned: the layer's views live as long as
/// it does) and initialises it from Rng(seed), so that a test can then set its
/// parameters and buffers by hand.
template <class T>
lamina::ParameterStore<T> bind_alone(lamina::Layer<T>& layer, const lamina::Shape& sample_shape,
                                     std::uint64_t seed = 1) {
  layer.build(sample_shape);
  lamina::ParameterStore<T> store;
  store.allocate({&layer});
  lamina::Rng rng(seed);
  layer.initialize(rng);
  return store;
}

}  // namespace lamina_test
