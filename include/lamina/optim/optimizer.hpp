// lamina/optim/optimizer.hpp: the optimizer interface, Adam and SGD.
//
// Optimizers update the model's ONE flat parameter buffer from its one flat
// gradient buffer, element by element: no reduction is involved, so the update is
// the same with any number of threads.
#pragma once

#include <cmath>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "lamina/core/error.hpp"
#include "lamina/core/format.hpp"
#include "lamina/core/tensor.hpp"
#include "lamina/core/threads.hpp"
#include "lamina/layers/layer.hpp"

namespace lamina {

template <class T>
class Optimizer {
 public:
  virtual ~Optimizer() = default;
  virtual std::string name() const = 0;
  /// Hyperparameters as text, for summaries and model files.
  virtual LayerConfig config() const = 0;
  /// Called once with the number of parameters before the first step.
  virtual void prepare(std::size_t n) = 0;
  /// One update of params (n) from grads (n).
  virtual void step(T* params, const T* grads, std::size_t n) = 0;
  /// Learning rate (schedules change it between epochs).
  virtual double learning_rate() const = 0;
  virtual void set_learning_rate(double lr) = 0;
  /// Optimizer state as named flat tensors (for checkpoints), and the step count.
  virtual std::vector<std::pair<std::string, Tensor<T>*>> state() = 0;
  virtual std::uint64_t iterations() const = 0;
  virtual void set_iterations(std::uint64_t t) = 0;

 protected:
  // Elements per parallel chunk: small enough that the reference MLP's 203,530
  // parameters make 25 chunks (13 + 12 on two threads; 32768 made 7, 4 + 3).
  static constexpr std::size_t kChunk = 1 << 13;
};

/// Adam with bias correction, in Keras's form: with t the step number,
///   m = b1 m + (1-b1) g,  v = b2 v + (1-b2) g^2,
///   p -= lr * sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + epsilon).
/// Defaults as Keras: lr 1e-3, b1 0.9, b2 0.999, epsilon 1e-7.
template <class T>
class Adam final : public Optimizer<T> {
 public:
  explicit Adam(double learning_rate = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-7)
      : lr_(learning_rate), beta1_(beta1), beta2_(beta2), epsilon_(epsilon) {
    if (!(learning_rate > 0)) throw ArgumentError("Adam: learning rate must be > 0");
    if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1))
      throw ArgumentError("Adam: beta1 and beta2 must be in [0, 1)");
    if (!(epsilon > 0)) throw ArgumentError("Adam: epsilon must be > 0");
  }
  std::string name() const override { return "Adam"; }
  LayerConfig config() const override {
    return {{"learning_rate", number_text(lr_)}, {"beta_1", number_text(beta1_)},
            {"beta_2", number_text(beta2_)}, {"epsilon", number_text(epsilon_)}};
  }
  void prepare(std::size_t n) override {
    m_ = Tensor<T>(Shape{n});
    v_ = Tensor<T>(Shape{n});
    t_ = 0;
  }
  void step(T* params, const T* grads, std::size_t n) override {
    if (m_.size() != n) throw Error("Adam: step() on " + std::to_string(n) + " parameters, prepared for " + std::to_string(m_.size()));
    ++t_;
    const double td = static_cast<double>(t_);
    const T alpha = static_cast<T>(lr_ * std::sqrt(1.0 - std::pow(beta2_, td)) / (1.0 - std::pow(beta1_, td)));
    const T b1 = static_cast<T>(beta1_), b2 = static_cast<T>(beta2_), eps = static_cast<T>(epsilon_);
    const T one_minus_b1 = T(1) - b1, one_minus_b2 = T(1) - b2;
    T* m = m_.data();  // (P,)
    T* v = v_.data();  // (P,)
    // The same operations, in the same order, in SIMD lanes and in the scalar
    // tail (multiplies and adds kept separate, sqrt and division exact in both),
    // so every element gets the same bits whichever path it takes.
    using Batch = xsimd::batch<T>;
    constexpr std::size_t W = Batch::size;
    parallel_for(chunk_count(n, this->kChunk), [&](std::ptrdiff_t c) {
      const std::size_t begin = static_cast<std::size_t>(c) * this->kChunk;
      const std::size_t end = std::min(n, begin + this->kChunk);
      std::size_t i = begin;
      const Batch vb1(b1), vb2(b2), va(one_minus_b1), vc(one_minus_b2), valpha(alpha), veps(eps);
      for (; i + W <= end; i += W) {
        const Batch g = Batch::load_unaligned(grads + i);
        const Batch mi = vb1 * Batch::load_unaligned(m + i) + va * g;
        const Batch vi = vb2 * Batch::load_unaligned(v + i) + vc * g * g;
        mi.store_unaligned(m + i);
        vi.store_unaligned(v + i);
        (Batch::load_unaligned(params + i) - valpha * mi / (xsimd::sqrt(vi) + veps)).store_unaligned(params + i);
      }
      for (; i < end; ++i) {
        const T g = grads[i];
        m[i] = b1 * m[i] + one_minus_b1 * g;
        v[i] = b2 * v[i] + one_minus_b2 * g * g;
        params[i] -= alpha * m[i] / (std::sqrt(v[i]) + eps);
      }
    });
  }
  double learning_rate() const override { return lr_; }
  void set_learning_rate(double lr) override { lr_ = lr; }
  std::vector<std::pair<std::string, Tensor<T>*>> state() override { return {{"m", &m_}, {"v", &v_}}; }
  std::uint64_t iterations() const override { return t_; }
  void set_iterations(std::uint64_t t) override { t_ = t; }

 private:
  double lr_, beta1_, beta2_, epsilon_;
  Tensor<T> m_;  // (P,) first moment
  Tensor<T> v_;  // (P,) second moment
  std::uint64_t t_ = 0;
};

/// SGD with optional (Nesterov) momentum, in Keras's form:
///   velocity = momentum * velocity - lr * g;  p += velocity
/// (Nesterov: p += momentum * velocity - lr * g).
template <class T>
class SGD final : public Optimizer<T> {
 public:
  explicit SGD(double learning_rate = 0.01, double momentum = 0.0, bool nesterov = false)
      : lr_(learning_rate), momentum_(momentum), nesterov_(nesterov) {
    if (!(learning_rate > 0)) throw ArgumentError("SGD: learning rate must be > 0");
    if (!(momentum >= 0 && momentum < 1)) throw ArgumentError("SGD: momentum must be in [0, 1)");
  }
  std::string name() const override { return "SGD"; }
  LayerConfig config() const override {
    return {{"learning_rate", number_text(lr_)}, {"momentum", number_text(momentum_)},
            {"nesterov", nesterov_ ? "true" : "false"}};
  }
  void prepare(std::size_t n) override {
    velocity_ = Tensor<T>(Shape{n});
    t_ = 0;
  }
  void step(T* params, const T* grads, std::size_t n) override {
    if (velocity_.size() != n) throw Error("SGD: step() on " + std::to_string(n) + " parameters, prepared for " + std::to_string(velocity_.size()));
    ++t_;
    const T lr = static_cast<T>(lr_), mu = static_cast<T>(momentum_);
    T* vel = velocity_.data();
    parallel_for(chunk_count(n, this->kChunk), [&](std::ptrdiff_t c) {
      const std::size_t begin = static_cast<std::size_t>(c) * this->kChunk;
      const std::size_t end = std::min(n, begin + this->kChunk);
      for (std::size_t i = begin; i < end; ++i) {
        vel[i] = mu * vel[i] - lr * grads[i];
        params[i] += nesterov_ ? mu * vel[i] - lr * grads[i] : vel[i];
      }
    });
  }
  double learning_rate() const override { return lr_; }
  void set_learning_rate(double lr) override { lr_ = lr; }
  std::vector<std::pair<std::string, Tensor<T>*>> state() override { return {{"velocity", &velocity_}}; }
  std::uint64_t iterations() const override { return t_; }
  void set_iterations(std::uint64_t t) override { t_ = t; }

 private:
  double lr_, momentum_;
  bool nesterov_;
  Tensor<T> velocity_;  // (P,)
  std::uint64_t t_ = 0;
};

}  // namespace lamina
