// lamina/optim/optimizer.hpp: the optimizer interface, Adam and SGD.
//
// Optimizers update the model's ONE flat parameter buffer from its one flat
// gradient buffer, element by element: no reduction is involved, so the update is
// the same with any number of threads, and with any split of the work
// (the training loop passes an UpdatePlan, optim/update_plan.hpp, so that each thread
// updates the parameters its layers' kernels read and wrote).
#pragma once

#include <algorithm>
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
#include "lamina/optim/update_plan.hpp"

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
  /// The same update, with the work split as `plan` says (plan.elements must
  /// be n). The default ignores the plan; Adam and SGD follow it, with the
  /// same bits as step(params, grads, n).
  virtual void step(T* params, const T* grads, std::size_t n, const UpdatePlan& plan) {
    check_plan(plan, n);
    step(params, grads, n);
  }
  /// Learning rate (schedules change it between epochs).
  virtual double learning_rate() const = 0;
  virtual void set_learning_rate(double lr) = 0;
  /// Optimizer state as named flat tensors (for checkpoints), and the step count.
  virtual std::vector<std::pair<std::string, Tensor<T>*>> state() = 0;
  virtual std::uint64_t iterations() const = 0;
  virtual void set_iterations(std::uint64_t t) = 0;

 protected:
  // Elements per parallel chunk of step(params, grads, n) (see kUpdateChunk).
  static constexpr std::size_t kChunk = kUpdateChunk;

  void check_plan(const UpdatePlan& plan, std::size_t n) const {
    if (plan.elements != n)
      throw Error(name() + ": step() on " + std::to_string(n) + " parameters with an update plan for " +
                  std::to_string(plan.elements));
  }
};

/// Base of the element-wise optimizers (Adam, SGD): both steps run
/// update(), with the plan or without (chunks of kChunk elements); every
/// element gets the same bits either way.
template <class T>
class ElementwiseOptimizer : public Optimizer<T> {
 public:
  void step(T* params, const T* grads, std::size_t n) final { update(params, grads, n, nullptr); }
  void step(T* params, const T* grads, std::size_t n, const UpdatePlan& plan) final {
    this->check_plan(plan, n);
    update(params, grads, n, &plan);
  }

 protected:
  /// One step over params (n) from grads (n), the work split by run_update.
  virtual void update(T* params, const T* grads, std::size_t n, const UpdatePlan* plan) = 0;

  // Runs body(begin, end) over [0, n) in chunks of kChunk, or over the
  // plan's blocks.
  template <class Body>
  void run_update(std::size_t n, const UpdatePlan* plan, Body&& body) {
    constexpr std::size_t chunk = Optimizer<T>::kChunk;
    if (plan) {
      for_each_update_block(*plan, [&](const UpdateBlock& block) { body(block.offset, block.offset + block.length); });
      return;
    }
    parallel_for_ranges(n, chunk, [&](const ChunkRange& range) { body(range.begin, range.end); });
  }
};

/// Adam with bias correction, in Keras's form: with t the step number,
///   m = b1 m + (1-b1) g,  v = b2 v + (1-b2) g^2,
///   p -= lr * sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + epsilon).
/// Defaults as Keras: lr 1e-3, b1 0.9, b2 0.999, epsilon 1e-7.
template <class T>
class Adam final : public ElementwiseOptimizer<T> {
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
  double learning_rate() const override { return lr_; }
  void set_learning_rate(double lr) override { lr_ = lr; }
  std::vector<std::pair<std::string, Tensor<T>*>> state() override { return {{"m", &m_}, {"v", &v_}}; }
  std::uint64_t iterations() const override { return t_; }
  void set_iterations(std::uint64_t t) override { t_ = t; }

 private:
  void update(T* params, const T* grads, std::size_t n, const UpdatePlan* plan) override {
    if (m_.size() != n) throw Error("Adam: step() on " + std::to_string(n) + " parameters, prepared for " + std::to_string(m_.size()));
    ++t_;
    const double td = static_cast<double>(t_);
    const T alpha = static_cast<T>(lr_ * std::sqrt(1.0 - std::pow(beta2_, td)) / (1.0 - std::pow(beta1_, td)));
    const T b1 = static_cast<T>(beta1_), b2 = static_cast<T>(beta2_), eps = static_cast<T>(epsilon_);
    const T one_minus_b1 = T(1) - b1, one_minus_b2 = T(1) - b2;
    T* m = m_.data();  // (P,)
    T* v = v_.data();  // (P,)
    // Every element goes through the same SIMD code, the last partial batch of
    // a range through zero-padded copies: a scalar tail would be compiled on
    // its own, and GCC contracts a * b + c into an FMA differently there (the
    // plan moves elements between the two: tests/test_loss_optim.cpp), so the
    // bits would depend on where a range ends.
    using Batch = xsimd::batch<T>;
    constexpr std::size_t W = Batch::size;
    const Batch vb1(b1), vb2(b2), va(one_minus_b1), vc(one_minus_b2), valpha(alpha), veps(eps);
    auto update_batch = [&](T* p, const T* g_in, T* m_io, T* v_io) {
      const Batch g = Batch::load_unaligned(g_in);
      const Batch mi = vb1 * Batch::load_unaligned(m_io) + va * g;
      const Batch vi = vb2 * Batch::load_unaligned(v_io) + vc * g * g;
      mi.store_unaligned(m_io);
      vi.store_unaligned(v_io);
      (Batch::load_unaligned(p) - valpha * mi / (xsimd::sqrt(vi) + veps)).store_unaligned(p);
    };
    this->run_update(n, plan, [&](std::size_t begin, std::size_t end) {
      std::size_t i = begin;
      for (; i + W <= end; i += W) update_batch(params + i, grads + i, m + i, v + i);
      if (i < end) {
        const std::size_t rest = end - i;
        alignas(kAlignment) T tp[W] = {}, tg[W] = {}, tm[W] = {}, tv[W] = {};
        std::copy_n(params + i, rest, tp);
        std::copy_n(grads + i, rest, tg);
        std::copy_n(m + i, rest, tm);
        std::copy_n(v + i, rest, tv);
        update_batch(tp, tg, tm, tv);
        std::copy_n(tp, rest, params + i);
        std::copy_n(tm, rest, m + i);
        std::copy_n(tv, rest, v + i);
      }
    });
  }

  double lr_, beta1_, beta2_, epsilon_;
  Tensor<T> m_;  // (P,) first moment
  Tensor<T> v_;  // (P,) second moment
  std::uint64_t t_ = 0;
};

/// SGD with optional (Nesterov) momentum, in Keras's form:
///   velocity = momentum * velocity - lr * g;  p += velocity
/// (Nesterov: p += momentum * velocity - lr * g).
template <class T>
class SGD final : public ElementwiseOptimizer<T> {
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
  double learning_rate() const override { return lr_; }
  void set_learning_rate(double lr) override { lr_ = lr; }
  std::vector<std::pair<std::string, Tensor<T>*>> state() override { return {{"velocity", &velocity_}}; }
  std::uint64_t iterations() const override { return t_; }
  void set_iterations(std::uint64_t t) override { t_ = t; }

 private:
  void update(T* params, const T* grads, std::size_t n, const UpdatePlan* plan) override {
    if (velocity_.size() != n) throw Error("SGD: step() on " + std::to_string(n) + " parameters, prepared for " + std::to_string(velocity_.size()));
    ++t_;
    const T lr = static_cast<T>(lr_), mu = static_cast<T>(momentum_);
    T* vel = velocity_.data();  // (P,)
    this->run_update(n, plan, [&](std::size_t begin, std::size_t end) {
      for (std::size_t i = begin; i < end; ++i) {
        vel[i] = mu * vel[i] - lr * grads[i];
        params[i] += nesterov_ ? mu * vel[i] - lr * grads[i] : vel[i];
      }
    });
  }

  double lr_, momentum_;
  bool nesterov_;
  Tensor<T> velocity_;  // (P,)
  std::uint64_t t_ = 0;
};

}  // namespace lamina
