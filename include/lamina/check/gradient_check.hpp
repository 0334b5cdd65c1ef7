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
// A NaN or infinite gradient (analytic or numeric) at any position fails the
// check whatever the tolerance, and the first such position is reported: a
// NaN error compares false with everything, so a plain "worst error" would
// miss it.
//
// Kinks (ReLU at 0, ties in max pooling) are avoided on purpose rather than by
// loosening the tolerance: inputs are drawn at least `min_abs_input` away from 0,
// and random real inputs have no ties. Stochastic layers (Dropout) have their
// random stream snapshotted and restored around every forward, so every
// evaluation sees the same mask.
//
// GradientComparison and central_difference are the same measure and rule,
// for checks of something other than one layer (a whole model, a loss).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
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

/// Whose gradient a position belongs to.
enum class GradientOf { input, parameter };

/// One compared position: the tensor, the element, both gradients, the error.
struct GradCheckPosition {
  GradientOf of = GradientOf::input;
  std::string tensor;     // "input", or the parameter's name ("kernel", "gamma", ...)
  std::size_t index = 0;  // flat row-major index into that tensor
  double analytic = 0.0;
  double numeric = 0.0;
  double error = 0.0;     // NaN when either gradient is not finite

  /// "parameter kernel[5] (analytic 0.25, numeric 0.2525)".
  std::string to_string() const {
    std::ostringstream out;
    out.precision(6);
    out << (of == GradientOf::input ? "" : "parameter ") << tensor << "[" << index << "] (analytic " << analytic
        << ", numeric " << numeric << ")";
    return out.str();
  }
};

struct GradCheckResult {
  /// No gradient was NaN or infinite, and max_error <= tolerance.
  bool passed = true;
  double max_error = 0.0;  // over the positions whose two gradients are finite
  std::size_t positions_checked = 0;
  GradCheckPosition worst;  // where max_error is
  /// Positions where the analytic or the numeric gradient is NaN or infinite;
  /// any one fails the check, whatever the tolerance.
  std::size_t non_finite = 0;
  GradCheckPosition first_non_finite;
  std::string layer;  // what was checked (the layer's describe())

  std::string report() const {
    std::ostringstream out;
    out.precision(6);
    out << layer << ": gradient check " << (passed ? "passed" : "FAILED") << ", " << positions_checked
        << " positions";
    if (non_finite)
      out << ", " << non_finite << " with a non-finite gradient, the first at " << first_non_finite.to_string();
    if (positions_checked > non_finite) out << ", max error " << max_error << " at " << worst.to_string();
    return out.str();
  }
};

/// The comparison of analytic and numeric gradients, position by position,
/// with the error measure above; check_gradients runs one over a layer, and a
/// test can run one over anything it differentiates (a whole model, a loss).
class GradientComparison {
 public:
  GradientComparison(double tolerance, double floor) : tolerance_(tolerance), floor_(floor) {
    if (!(tolerance >= 0.0) || !(floor >= 0.0))
      throw ArgumentError("gradient check: tolerance and floor must be >= 0");
  }

  void compare(GradientOf of, const std::string& tensor, std::size_t index, double analytic, double numeric) {
    GradCheckPosition position{of, tensor, index, analytic, numeric, 0.0};
    ++result_.positions_checked;
    if (!std::isfinite(analytic) || !std::isfinite(numeric)) {
      // Recorded apart: a NaN error would never compare greater than the worst.
      position.error = std::numeric_limits<double>::quiet_NaN();
      if (result_.non_finite++ == 0) result_.first_non_finite = position;
      return;
    }
    const double denom = std::max({std::abs(analytic), std::abs(numeric), floor_});
    position.error = analytic == numeric ? 0.0 : std::abs(analytic - numeric) / denom;
    if (result_.positions_checked - result_.non_finite == 1 || position.error > result_.max_error) {
      result_.max_error = position.error;
      result_.worst = position;
    }
  }

  /// The result so far; `what` names what was checked in the report.
  GradCheckResult result(const std::string& what) const {
    GradCheckResult r = result_;
    r.layer = what;
    r.passed = r.non_finite == 0 && r.max_error <= tolerance_;
    return r;
  }

 private:
  double tolerance_, floor_;
  GradCheckResult result_;
};

/// (L(z + h) - L(z - h)) / 2h, with `objective` evaluating L at the current z;
/// z is restored afterwards.
template <class Objective>
double central_difference(double& z, double step, Objective&& objective) {
  const double saved = z;
  z = saved + step;
  const double plus = objective();
  z = saved - step;
  const double minus = objective();
  z = saved;
  return (plus - minus) / (2.0 * step);
}

/// Checks `layer` (built here with input_shape minus its batch dimension if it
/// is not built yet; input_shape includes the batch dimension). The checker
/// binds the layer to a parameter store of its own and initialises it; on
/// return the layer is unbound again (its parameter views are empty).
inline GradCheckResult check_gradients(Layer<double>& layer, const Shape& input_shape,
                                       const GradCheckOptions& options = {}) {
  if (input_shape.rank() < 1 || input_shape[0] == 0)
    throw ArgumentError("check_gradients: input_shape must start with a batch dimension >= 1, got " +
                        input_shape.to_string());
  if (!(options.step > 0.0) || !std::isfinite(options.step))
    throw ArgumentError("check_gradients: step must be a positive finite number");
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
  if (options.check_input && analytic_input.shape() != input.shape())
    throw Error("check_gradients: " + layer.describe() + " returned an input gradient of shape " +
                analytic_input.shape().to_string() + " for an input of shape " + input.shape().to_string() +
                (layer.input_gradient_needed() ? std::string() : " (its input gradient is switched off: "
                                                                 "set check_input = false)"));

  GradientComparison comparison(options.tolerance, options.floor);
  auto numeric_derivative = [&](double& z) { return central_difference(z, options.step, objective); };
  if (options.check_input)
    for (std::size_t i = 0; i < input.size(); ++i)
      comparison.compare(GradientOf::input, "input", i, analytic_input[i], numeric_derivative(input[i]));
  if (options.check_parameters)
    for (const auto& entry : store.entries()) {
      if (!entry.trainable) continue;
      for (std::size_t i = 0; i < entry.spec.shape.size(); ++i)
        comparison.compare(GradientOf::parameter, entry.spec.name, i, analytic_params[entry.offset + i],
                           numeric_derivative(store.params()[entry.offset + i]));
    }
  // The store dies with this function: leave the layer unbound rather than
  // holding views into freed memory.
  layer.bind({}, {}, {});
  return comparison.result(layer.describe());
}

}  // namespace lamina
