// lamina/core/rng.hpp: the one random generator type.
//
// xoshiro256** seeded through splitmix64. Every draw (uniform, normal, integer,
// shuffle) is computed by lamina itself, never by <random>'s distributions, whose
// results differ between standard libraries: the same seed gives the same bits
// on every platform. Randomness enters lamina only through an Rng the caller
// seeds explicitly (weight initialisation, shuffling, splits, dropout,
// augmentation); independent streams come from Rng::fork.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

namespace lamina {

class Rng {
 public:
  using State = std::array<std::uint64_t, 4>;

  explicit Rng(std::uint64_t seed = 0) { reseed(seed); }

  void reseed(std::uint64_t seed) {
    std::uint64_t x = seed;
    for (auto& word : s_) word = splitmix64(x);
    has_spare_normal_ = false;
  }

  /// 64 random bits.
  std::uint64_t next_u64() noexcept {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  /// Uniform in [0, 1), 53 random bits.
  double uniform() noexcept { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
  /// Uniform in [lo, hi).
  double uniform(double lo, double hi) noexcept { return lo + (hi - lo) * uniform(); }
  /// Uniform integer in [0, n), without modulo bias (Lemire's method). n > 0.
  std::uint64_t below(std::uint64_t n) noexcept {
    // 128-bit multiply (a GCC/Clang extension); rejection keeps the distribution exact.
    __extension__ typedef unsigned __int128 u128;
    u128 m = static_cast<u128>(next_u64()) * n;
    std::uint64_t low = static_cast<std::uint64_t>(m);
    if (low < n) {
      const std::uint64_t threshold = (0 - n) % n;
      while (low < threshold) {
        m = static_cast<u128>(next_u64()) * n;
        low = static_cast<std::uint64_t>(m);
      }
    }
    return static_cast<std::uint64_t>(m >> 64);
  }
  /// Standard normal (Box-Muller; the second value of each pair is kept).
  double normal() noexcept {
    if (has_spare_normal_) {
      has_spare_normal_ = false;
      return spare_normal_;
    }
    double u1 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    const double radius = std::sqrt(-2.0 * std::log(u1));
    const double angle = 6.283185307179586476925286766559 * u2;
    spare_normal_ = radius * std::sin(angle);
    has_spare_normal_ = true;
    return radius * std::cos(angle);
  }
  double normal(double mean, double stddev) noexcept { return mean + stddev * normal(); }
  /// Normal truncated to [-2, 2] standard deviations by redrawing (as Keras does
  /// for its "truncated normal" initialisers), then scaled.
  double truncated_normal(double stddev) noexcept {
    double z = normal();
    while (z < -2.0 || z > 2.0) z = normal();
    return stddev * z;
  }
  /// Fisher-Yates shuffle.
  template <class Vec>
  void shuffle(Vec& v) noexcept {
    for (std::size_t i = v.size(); i > 1; --i) {
      const std::size_t j = static_cast<std::size_t>(below(i));
      using std::swap;
      swap(v[i - 1], v[j]);
    }
  }
  /// An independent generator for a named purpose: forks with different ids
  /// give unrelated streams, and forking does not advance this generator.
  Rng fork(std::uint64_t stream_id) const noexcept {
    std::uint64_t x = s_[0] ^ rotl(s_[1], 13) ^ rotl(s_[2], 29) ^ rotl(s_[3], 43) ^
                      (stream_id * 0x9E3779B97F4A7C15ull);
    Rng child(splitmix64(x));
    return child;
  }

  /// The full state, for checkpoints and for the gradient checker.
  struct Snapshot {
    State words;
    bool has_spare_normal;
    double spare_normal;
  };
  Snapshot snapshot() const noexcept { return {s_, has_spare_normal_, spare_normal_}; }
  void restore(const Snapshot& snap) noexcept {
    s_ = snap.words;
    has_spare_normal_ = snap.has_spare_normal;
    spare_normal_ = snap.spare_normal;
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
  static std::uint64_t splitmix64(std::uint64_t& x) noexcept {
    std::uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

  State s_{};
  bool has_spare_normal_ = false;
  double spare_normal_ = 0.0;
};

}  // namespace lamina
