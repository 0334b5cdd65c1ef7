// lamina/layers/dropout.hpp: inverted dropout, as Keras's Dropout.
//
// Training: every unit is kept with probability 1 - rate and then scaled by
// 1 / (1 - rate), or set to 0; so the expected output equals the input and
// evaluation needs no rescaling. Evaluation: the identity (the output is the
// input itself, bit for bit, and backward passes the gradient through).
//
// Randomness: the layer draws from its OWN lamina::Rng stream, exposed by rng()
// so that callers can snapshot and restore it (the gradient checker does, so that
// every evaluation sees the same mask; checkpoints will). The stream is seeded
//   - with the constructor's `seed` when one is given: then the model's seed does
//     not matter, and initialize() rewinds the stream to Rng(seed);
//   - otherwise by initialize(rng), which the model calls with its per-layer fork
//     Rng(model seed).fork(layer index): the stream becomes rng.fork(kStreamId)
//     (forking leaves the caller's rng untouched). A Dropout used alone and
//     never initialized draws from Rng(0).
// Every training forward takes ONE 64-bit draw from the stream as that step's
// key. Unit i's draw is then a pure function of the key and i: the SplitMix64
// output for the Weyl sequence started at the key,
//     h(i) = mix64(key + (i + 1) * 0x9E3779B97F4A7C15)
// (Steele, Lea & Flood, OOPSLA 2014; the generator that seeds xoshiro), and
// the unit is kept when its uniform (h(i) >> 11) * 2^-53 in [0, 1) is >= rate,
// compared exactly as the integer h(i) >> 11 >= ceil(rate * 2^53). So the mask
// depends only on the stream state and the unit's index, never on the thread
// count or the chunking, and the stream advances by exactly one draw per
// training step. Being counter-based, the draws vectorise: a stream per chunk
// (the previous scheme, xoshiro's serial state) cost 4 ns per unit, a third of
// a MaxPool + Dropout block's time in the reference CNN. rate 0 draws nothing
// and keeps every unit.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <locale>
#include <optional>
#include <sstream>
#include <string>

#include "lamina/core/threads.hpp"
#include "lamina/core/format.hpp"
#include "lamina/layers/layer.hpp"

namespace lamina {

template <class T>
class Dropout final : public Layer<T> {
 public:
  /// Units of mask per work chunk: a fixed split, never derived from the
  /// thread count (the mask does not depend on it either).
  static constexpr std::size_t kElementsPerChunk = std::size_t{1} << 14;
  /// Which fork of initialize()'s rng becomes the stream (when no seed is given).
  static constexpr std::uint64_t kStreamId = 0xD60F;

  /// rate in [0, 1): the fraction of units dropped in training. `seed`: see above.
  explicit Dropout(double rate, std::optional<std::uint64_t> seed = std::nullopt) : rate_(rate), seed_(seed) {
    if (!(rate >= 0.0 && rate < 1.0))
      throw ArgumentError(detail::concat("Dropout: rate must be in [0, 1), got ", rate));
    if (seed_) rng_.reseed(*seed_);
  }

  std::string type() const override { return "Dropout"; }
  /// The same rate and seed; the copy's stream starts where initialize() puts it.
  std::unique_ptr<Layer<T>> clone() const override { return std::make_unique<Dropout<T>>(rate_, seed_); }
  LayerConfig config() const override {
    return {{"rate", number_text(rate_)}, {"seed", seed_ ? std::to_string(*seed_) : std::string("none")}};
  }
  void initialize(Rng& rng) override {
    if (seed_)
      rng_.reseed(*seed_);
    else
      rng_ = rng.fork(kStreamId);
  }
  Rng* rng() noexcept override { return &rng_; }

  TensorView<const T> forward(TensorView<const T> input, Mode mode) override {
    this->check_input(input);
    mode_ = mode;
    batch_ = input.dim(0);
    if (mode == Mode::eval) return input;  // the identity, without a copy (as Flatten)

    const std::size_t n = input.size();
    output_.resize(input.shape());
    mask_.resize(input.shape());
    const T* x = input.data();  // (N, ...)
    T* y = output_.data();      // (N, ...)
    T* mask = mask_.data();     // (N, ...) 0 or 1 / (1 - rate)
    const T keep_scale = static_cast<T>(1.0 / (1.0 - rate_));
    if (rate_ == 0.0) {
      std::fill(mask, mask + n, T(1));
      std::copy(x, x + n, y);
      return output_.view();
    }
    const std::uint64_t key = rng_.next_u64();  // this step's key: one draw from the stream
    // uniform >= rate  <=>  (h >> 11) >= rate * 2^53 (exact: a power-of-two
    // scaling), and the left side is an integer.
    const auto threshold = static_cast<std::uint64_t>(std::ceil(std::ldexp(rate_, 53)));
    parallel_for_ranges(n, kElementsPerChunk, [&](ChunkRange range) {
      const std::size_t begin = range.begin, end = range.end;
      // Locals, not the captured references: a store to mask[i] could alias
      // those, and the reloads keep GCC from vectorising the loop.
      const std::uint64_t k_key = key, k_threshold = threshold;
      const T k_keep = keep_scale;
      T* k_mask = mask;
      for (std::size_t i = begin; i < end; ++i)
        k_mask[i] = (unit_draw(k_key, i) >> 11) >= k_threshold ? k_keep : T(0);
      for (std::size_t i = begin; i < end; ++i) y[i] = x[i] * mask[i];
    });
    return output_.view();
  }

  TensorView<const T> backward(TensorView<const T> grad_output) override {
    if (batch_ == 0) throw Error(this->describe() + ": backward() before forward()");
    this->check_grad_output(grad_output, batch_);
    if (mode_ == Mode::eval) return grad_output;  // the identity's gradient

    const std::size_t n = grad_output.size();
    grad_input_.resize(grad_output.shape());
    const T* dy = grad_output.data();  // (N, ...)
    const T* mask = mask_.data();      // (N, ...) from the forward
    T* dx = grad_input_.data();        // (N, ...)
    parallel_for_ranges(n, kElementsPerChunk, [&](ChunkRange range) {
      const std::size_t begin = range.begin, end = range.end;
      for (std::size_t i = begin; i < end; ++i) dx[i] = dy[i] * mask[i];
    });
    return grad_input_.view();
  }

  double rate() const noexcept { return rate_; }

  /// Unit i's 64 random bits for the step key `key` (see the top of the file).
  static std::uint64_t unit_draw(std::uint64_t key, std::uint64_t i) noexcept {
    std::uint64_t z = key + (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  std::optional<std::uint64_t> seed() const noexcept { return seed_; }
  /// The scale factors of the last training forward (N, ...): 0 or 1 / (1 - rate).
  TensorView<const T> mask() const noexcept { return mask_.view(); }

 protected:
  Shape do_build(const Shape& input_shape) override {
    if (input_shape.rank() == 0 || input_shape.size() == 0)
      throw this->build_error("(N, d1, ...) with at least one value per sample", input_shape);
    return input_shape;
  }

 private:

  double rate_;
  std::optional<std::uint64_t> seed_;
  Rng rng_;                   // the layer's own stream (see the top of the file)
  Mode mode_ = Mode::train;   // of the last forward: what backward differentiates
  std::size_t batch_ = 0;     // N of the last forward
  Tensor<T> output_;          // (N, ...)
  Tensor<T> mask_;            // (N, ...) 0 or 1 / (1 - rate)
  Tensor<T> grad_input_;      // (N, ...)
};

}  // namespace lamina
