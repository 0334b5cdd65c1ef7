// lamina/check/gradient_check.hpp: the public gradient checker.
//
// check_gradients(layer, input_shape, options) compares a layer's backward()
// with central differences, in double:
//   L(x, params) = sum_i w_i * forward(x)_i   with fixed random weights w,
//   numeric dL/dz = (L(z + h) - L(z - h)) / 2h  for every input and parameter z,
//   analytic dL/dz from backward(w).
// The error at a position is |analytic - numeric| / max(|analytic|, |numeric|, floor):
// relative where gradients are large, absolute below the floor, where
// finite differences cannot do better. The worst position is reported.
//
// Kinks (ReLU at 0, ties in max pooling) are avoided on purpose rather than by
// loosening the tolerance: inputs are drawn at least `min_abs_input` away from 0,
// and random real inputs have no ties. Stochastic layers (Dropout) have their
// random stream snapshotted and restored around every forward, so every
// evaluation sees the same mask.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "lamina/core/rng.hpp"
#include "lamina/core/tensor.hpp"
#include "lamina/layers/layer.hpp"

namespace lamina {

struct GradCheckOptions {
  Mode mode = Mode::train;
  double step = 1e-6;          // h of the central difference
  double tolerance = 1e-6;     // largest acceptable error (see above)
  // Denominator floor of the relative error. Central differences in double
  // carry absolute noise of about 1e-16 * |L| / h, 1e-10 to 1e-9 for the
  // layers tested here; with floor 1e-2 a small gradient may be off by
  // tolerance * floor = 1e-8 in absolute terms, ten times that noise, while a
  // 1% error on any gradient larger than 1e-6 still fails.
  double floor = 1e-2;
  std::uint64_t seed = 1;      // input, weights w, parameter jitter, layer streams
  double input_scale = 1.0;    // inputs uniform in +-input_scale ...
  double min_abs_input = 0.0;  // ... but at least this far from 0
  double parameter_jitter = 0.1;  // uniform noise added after initialize(), so that zero biases are tested too
  bool check_input = true;
  bool check_parameters = true;
};

struct GradCheckResult {
  bool passed = true;
  double max_error = 0.0;
  std::size_t positions_checked = 0;
  // The worst position: which tensor ("input" or "kernel", ...), its flat index,
  // and both gradients.
  std::string worst_tensor;
  std::size_t worst_index = 0;
  double worst_analytic = 0.0;
  double worst_numeric = 0.0;
  std::string layer;

  std::string report() const {
    std::ostringstream out;
    out.precision(6);
    out << layer << ": gradient check " << (passed ? "passed" : "FAILED") << ", " << positions_checked
        << " positions, max error " << max_error;
    if (positions_checked)
      out << " at " << worst_tensor << "[" << worst_index << "] (analytic " << worst_analytic << ", numeric "
          << worst_numeric << ")";
    return out.str();
  }
};

/// Checks `layer` (built here with input_shape minus its batch dimension if it
/// is not built yet; input_shape includes the batch dimension). The checker
/// binds the layer to a parameter store of its own and initialises it; on
/// return the layer is unbound again (its parameter views are empty).
inline GradCheckResult check_gradients(Layer<double>& layer, const Shape& input_shape,
                                       const GradCheckOptions& options = {}) {
  if (input_shape.rank() < 1 || input_shape[0] == 0)
    throw ArgumentError("check_gradients: input_shape must start with a batch dimension >= 1, got " +
                        input_shape.to_string());
  if (!layer.built()) layer.build(input_shape.drop_first());
  ParameterStore<double> store;
  store.allocate({&layer});
  Rng rng(options.seed);
  Rng init_rng = rng.fork(1);
  layer.initialize(init_rng);
  Rng jitter_rng = rng.fork(2);
  for (double& p : store.params()) p += jitter_rng.uniform(-options.parameter_jitter, options.parameter_jitter);

  Tensor<double> input(input_shape);  // (N, ...)
  Rng input_rng = rng.fork(3);
  for (double& x : input) {
    const double magnitude = options.min_abs_input + (options.input_scale - options.min_abs_input) * input_rng.uniform();
    x = input_rng.uniform() < 0.5 ? -magnitude : magnitude;
  }

  // Stochastic layers: every forward starts from the same stream state.
  Rng* layer_rng = layer.rng();
  const Rng::Snapshot stream = layer_rng ? layer_rng->snapshot() : Rng::Snapshot{};
  auto run_forward = [&]() {
    if (layer_rng) layer_rng->restore(stream);
    return layer.forward(input.view(), options.mode);
  };

  TensorView<const double> out = run_forward();
  Tensor<double> weights(out.shape());  // w: dL/d(output)
  Rng weight_rng = rng.fork(4);
  for (double& w : weights) w = weight_rng.uniform(-1.0, 1.0);
  auto objective = [&]() {
    TensorView<const double> y = run_forward();
    double sum = 0.0;
    for (std::size_t i = 0; i < y.size(); ++i) sum += weights[i] * y[i];
    return sum;
  };

  // Analytic gradients: a fresh forward, then backward(w).
  run_forward();
  const Tensor<double> analytic_input = Tensor<double>::from(layer.backward(weights.view()));
  const Tensor<double> analytic_params = store.grads();

  GradCheckResult result;
  result.layer = layer.describe();
  auto compare = [&](const std::string& tensor, std::size_t index, double analytic, double numeric) {
    const double denom = std::max({std::abs(analytic), std::abs(numeric), options.floor});
    const double error = std::abs(analytic - numeric) / denom;
    ++result.positions_checked;
    if (result.positions_checked == 1 || error > result.max_error) {
      result.max_error = error;
      result.worst_tensor = tensor;
      result.worst_index = index;
      result.worst_analytic = analytic;
      result.worst_numeric = numeric;
    }
  };
  auto numeric_derivative = [&](double& z) {
    const double saved = z;
    z = saved + options.step;
    const double plus = objective();
    z = saved - options.step;
    const double minus = objective();
    z = saved;
    return (plus - minus) / (2.0 * options.step);
  };

  if (options.check_input)
    for (std::size_t i = 0; i < input.size(); ++i)
      compare("input", i, analytic_input[i], numeric_derivative(input[i]));
  if (options.check_parameters)
    for (const auto& entry : store.entries()) {
      if (!entry.trainable) continue;
      for (std::size_t i = 0; i < entry.spec.shape.size(); ++i)
        compare(entry.spec.name, i, analytic_params[entry.offset + i],
                numeric_derivative(store.params()[entry.offset + i]));
    }
  result.passed = result.max_error <= options.tolerance;
  // The store dies with this function: leave the layer unbound rather than
  // holding views into freed memory.
  layer.bind({}, {}, {});
  return result;
}

}  // namespace lamina
