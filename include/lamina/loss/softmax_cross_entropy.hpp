// lamina/loss/softmax_cross_entropy.hpp: softmax fused with sparse categorical cross-entropy.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "lamina/core/error.hpp"
#include "lamina/core/tensor.hpp"

namespace lamina {

/// Softmax followed by sparse categorical cross-entropy, computed together from
/// the logits with the log-sum-exp trick, so that it is exact and finite even
/// for logits of +-1e30: loss_i = logsumexp(z_i) - z_i[y_i].
/// The model's last layer outputs logits; Keras's "Dense 10 softmax" is
/// Dense(10) followed by this loss.
template <class T>
class SoftmaxCrossEntropy {
 public:
  /// Mean loss over the batch of `logits` (N, C) for integer `labels` (N).
  /// Keeps the softmax probabilities for backward() and for accuracy.
  double forward(TensorView<const T> logits, const std::int32_t* labels) {
    if (logits.rank() != 2)
      throw ShapeError("SoftmaxCrossEntropy: expects logits (N, classes), got " + logits.shape().to_string());
    const std::size_t n = logits.dim(0), c = logits.dim(1);
    probabilities_.resize(logits.shape());
    labels_.assign(labels, labels + n);
    double total = 0.0;  // summed in row order: a fixed order
    for (std::size_t i = 0; i < n; ++i) {
      const int label = labels[i];
      if (label < 0 || static_cast<std::size_t>(label) >= c)
        throw ArgumentError("SoftmaxCrossEntropy: label " + std::to_string(label) + " of sample " +
                            std::to_string(i) + " is outside 0.." + std::to_string(c - 1) +
                            " (the model has " + std::to_string(c) + " outputs)");
      total += softmax_row(logits.data() + i * c, probabilities_.data() + i * c, c, label);
    }
    return total / static_cast<double>(n);
  }

  /// d(mean loss)/d(logits) = (softmax - onehot) / N, shape (N, C).
  TensorView<const T> backward() {
    const std::size_t n = probabilities_.dim(0), c = probabilities_.dim(1);
    grad_.resize(probabilities_.shape());
    const T scale = T(1) / static_cast<T>(n);
    for (std::size_t i = 0; i < n; ++i) {
      const T* p = probabilities_.data() + i * c;
      T* g = grad_.data() + i * c;
      for (std::size_t j = 0; j < c; ++j) g[j] = p[j] * scale;
      g[labels_[i]] -= scale;
    }
    return grad_.view();
  }

  /// The probabilities of the last forward (N, C).
  TensorView<const T> probabilities() const { return probabilities_.view(); }

  /// Writes softmax(z) to p and returns -log p[label] (computed from the logits,
  /// not from p, so a probability that underflows to 0 still gives a finite loss).
  static double softmax_row(const T* z, T* p, std::size_t c, int label) {
    T max = z[0];
    for (std::size_t j = 1; j < c; ++j) max = std::max(max, z[j]);
    double sum = 0.0;
    for (std::size_t j = 0; j < c; ++j) {
      const double e = std::exp(static_cast<double>(z[j]) - static_cast<double>(max));
      p[j] = static_cast<T>(e);
      sum += e;
    }
    const double inv = 1.0 / sum;
    for (std::size_t j = 0; j < c; ++j) p[j] = static_cast<T>(static_cast<double>(p[j]) * inv);
    if (label < 0) return 0.0;
    return std::log(sum) - (static_cast<double>(z[label]) - static_cast<double>(max));
  }

 private:
  Tensor<T> probabilities_;  // (N, C)
  Tensor<T> grad_;           // (N, C)
  std::vector<std::int32_t> labels_;
};

}  // namespace lamina
