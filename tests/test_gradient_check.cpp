// The public gradient checker (check/gradient_check.hpp) itself: it passes a
// correct layer, and fails, naming the position, on a wrong gradient and on a
// NaN or an infinity in the input gradient, in a parameter gradient or in the
// forward (the numeric side). The layers here are fakes written for the
// purpose: y = s * x^2 per feature, with one fault injected on request.
#include <lamina/check/gradient_check.hpp>
#include <lamina/layers/dense.hpp>

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "support.hpp"

using namespace lamina;

namespace {

enum class Fault {
  none,
  input_off,        // input gradient 1% too large at kInputIndex
  input_nan,        // NaN input gradient at kInputIndex
  input_inf,        // +inf input gradient at kInputIndex
  parameter_nan,    // NaN scale gradient at kParameterIndex
  parameter_inf,    // -inf scale gradient at kParameterIndex
  forward_nan,      // a NaN output: every numeric gradient is NaN
  short_input_grad  // an input gradient of the wrong shape
};

// Not the first positions: a NaN at the first position compared was always
// recorded; the faults must be found wherever they are.
constexpr std::size_t kInputIndex = 5;
constexpr std::size_t kParameterIndex = 2;

// y = s_f * x^2 on (N, F): dx = 2 s_f x dy, ds_f = sum over rows of dy x^2.
class SquareScale final : public Layer<double> {
 public:
  explicit SquareScale(Fault fault = Fault::none) : fault_(fault) {}

  std::string type() const override { return "SquareScale"; }
  std::vector<TensorSpec> parameter_specs() const override { return {{"scale", Shape{features_}}}; }
  void initialize(Rng&) override {
    for (std::size_t f = 0; f < features_; ++f) this->param(0)[f] = 1.0 + 0.25 * static_cast<double>(f);
  }
  std::unique_ptr<Layer<double>> clone() const override { return std::make_unique<SquareScale>(fault_); }

  TensorView<const double> forward(TensorView<const double> input, Mode) override {
    this->check_input(input);
    input_ = input;
    output_.resize(input.shape());  // (N, F)
    const double* s = this->param(0).data();
    for (std::size_t i = 0; i < input.size(); ++i) output_[i] = s[i % features_] * input[i] * input[i];
    if (fault_ == Fault::forward_nan) output_[3] = std::numeric_limits<double>::quiet_NaN();
    return output_.view();
  }

  TensorView<const double> backward(TensorView<const double> grad_output) override {
    this->check_grad_output(grad_output, input_.dim(0));
    double* ds = this->grad(0).data();  // (F)
    std::fill(ds, ds + features_, 0.0);
    grad_input_.resize(fault_ == Fault::short_input_grad ? Shape{1, features_} : input_.shape());
    const double* s = this->param(0).data();
    for (std::size_t i = 0; i < input_.size(); ++i) {
      ds[i % features_] += grad_output[i] * input_[i] * input_[i];
      if (i < grad_input_.size()) grad_input_[i] = 2.0 * s[i % features_] * input_[i] * grad_output[i];
    }
    switch (fault_) {
      case Fault::input_off: grad_input_[kInputIndex] *= 1.01; break;
      case Fault::input_nan: grad_input_[kInputIndex] = std::numeric_limits<double>::quiet_NaN(); break;
      case Fault::input_inf: grad_input_[kInputIndex] = std::numeric_limits<double>::infinity(); break;
      case Fault::parameter_nan: ds[kParameterIndex] = std::numeric_limits<double>::quiet_NaN(); break;
      case Fault::parameter_inf: ds[kParameterIndex] = -std::numeric_limits<double>::infinity(); break;
      default: break;
    }
    return grad_input_.view();
  }

 protected:
  Shape do_build(const Shape& input_shape) override {
    if (input_shape.rank() != 1) throw this->build_error("(N, features)", input_shape);
    features_ = input_shape[0];
    return input_shape;
  }

 private:
  Fault fault_;
  std::size_t features_ = 0;
  TensorView<const double> input_;  // (N, F) from forward
  Tensor<double> output_;           // (N, F)
  Tensor<double> grad_input_;       // (N, F)
};

const Shape kInput{3, 4};                   // 12 inputs, 4 scales
constexpr std::size_t kPositions = 12 + 4;  // every input and parameter

// A Dense whose kernel gradient is 1% too large at element 0.
class BrokenDense final : public Layer<double> {
 public:
  std::string type() const override { return "BrokenDense"; }
  std::vector<TensorSpec> parameter_specs() const override { return inner_.parameter_specs(); }
  void initialize(Rng& rng) override {
    inner_.bind(parameters(), gradients(), buffers());
    inner_.initialize(rng);
  }
  std::unique_ptr<Layer<double>> clone() const override { return std::make_unique<BrokenDense>(); }
  TensorView<const double> forward(TensorView<const double> x, Mode m) override { return inner_.forward(x, m); }
  TensorView<const double> backward(TensorView<const double> g) override {
    auto dx = inner_.backward(g);
    gradients()[0][0] *= 1.01;
    return dx;
  }

 protected:
  Shape do_build(const Shape& in) override { return inner_.build(in); }

 private:
  Dense<double> inner_{3};
};

}  // namespace

TEST_CASE("The gradient checker passes a correct layer at every position") {
  SquareScale layer;
  const GradCheckResult r = check_gradients(layer, kInput);
  INFO(r.report());
  CHECK(r.passed);
  CHECK(r.positions_checked == kPositions);
  CHECK(r.non_finite == 0);
  CHECK(r.max_error <= 1e-6);
  CHECK_THAT(r.report(), Catch::Contains("passed"));
}

TEST_CASE("The gradient checker fails a 1% error in the input gradient and names the position") {
  SquareScale layer(Fault::input_off);
  const GradCheckResult r = check_gradients(layer, kInput);
  INFO(r.report());
  CHECK_FALSE(r.passed);
  CHECK(r.non_finite == 0);
  CHECK(r.worst.of == GradientOf::input);
  CHECK(r.worst.tensor == "input");
  CHECK(r.worst.index == kInputIndex);
  CHECK(r.worst.analytic == Approx(1.01 * r.worst.numeric).epsilon(1e-6));
  CHECK_THAT(r.report(), Catch::Contains("FAILED") && Catch::Contains("input[5]"));
}

TEST_CASE("The gradient checker fails a 1% error in a parameter gradient and reports where") {
  BrokenDense broken;
  const GradCheckResult r = check_gradients(broken, Shape{2, 4});
  INFO(r.report());
  CHECK_FALSE(r.passed);
  CHECK(r.worst.of == GradientOf::parameter);
  CHECK(r.worst.tensor == "kernel");
  CHECK(r.worst.index == 0);
  CHECK(r.max_error == Approx(0.01 / 1.01).epsilon(1e-3));
  CHECK_THAT(r.report(), Catch::Contains("FAILED") && Catch::Contains("parameter kernel[0]"));
}

TEST_CASE("The gradient checker fails a NaN or an infinity in the input gradient and names the position") {
  const Fault fault = GENERATE(Fault::input_nan, Fault::input_inf);
  SquareScale layer(fault);
  const GradCheckResult r = check_gradients(layer, kInput);
  INFO(r.report());
  CHECK_FALSE(r.passed);
  CHECK(r.positions_checked == kPositions);
  CHECK(r.non_finite == 1);
  CHECK(r.first_non_finite.of == GradientOf::input);
  CHECK(r.first_non_finite.tensor == "input");
  CHECK(r.first_non_finite.index == kInputIndex);
  CHECK_FALSE(std::isfinite(r.first_non_finite.analytic));
  CHECK(std::isfinite(r.first_non_finite.numeric));
  CHECK(std::isnan(r.first_non_finite.error));
  // The finite positions are still compared, and are right.
  CHECK(r.max_error <= 1e-6);
  CHECK_THAT(r.report(), Catch::Contains("FAILED") && Catch::Contains("1 with a non-finite gradient") &&
                             Catch::Contains("input[5]"));
}

TEST_CASE("The gradient checker fails a NaN or an infinity in a parameter gradient and names the position") {
  const Fault fault = GENERATE(Fault::parameter_nan, Fault::parameter_inf);
  SquareScale layer(fault);
  const GradCheckResult r = check_gradients(layer, kInput);
  INFO(r.report());
  CHECK_FALSE(r.passed);
  CHECK(r.non_finite == 1);
  CHECK(r.first_non_finite.of == GradientOf::parameter);
  CHECK(r.first_non_finite.tensor == "scale");
  CHECK(r.first_non_finite.index == kParameterIndex);
  CHECK_FALSE(std::isfinite(r.first_non_finite.analytic));
  CHECK(r.max_error <= 1e-6);
  CHECK_THAT(r.report(), Catch::Contains("FAILED") && Catch::Contains("parameter scale[2]"));
  // Even with a tolerance that would accept anything finite.
  GradCheckOptions lenient;
  lenient.tolerance = 1e300;
  SquareScale again(fault);
  CHECK_FALSE(check_gradients(again, kInput, lenient).passed);
}

TEST_CASE("The gradient checker fails a NaN in the forward: every numeric gradient is NaN") {
  SquareScale layer(Fault::forward_nan);
  const GradCheckResult r = check_gradients(layer, kInput);
  INFO(r.report());
  CHECK_FALSE(r.passed);
  CHECK(r.non_finite == kPositions);
  CHECK(r.first_non_finite.of == GradientOf::input);
  CHECK(r.first_non_finite.index == 0);
  CHECK(std::isfinite(r.first_non_finite.analytic));
  CHECK(std::isnan(r.first_non_finite.numeric));
}

TEST_CASE("The gradient checker throws when backward returns an input gradient of the wrong shape") {
  SquareScale layer(Fault::short_input_grad);
  CHECK_THROWS_WITH(check_gradients(layer, kInput),
                    "check_gradients: layer ? (SquareScale) returned an input gradient of shape (1, 4) for an input "
                    "of shape (3, 4)");
  // Without the input check the parameters are still checked, and are right.
  GradCheckOptions o;
  o.check_input = false;
  SquareScale again(Fault::short_input_grad);
  const GradCheckResult r = check_gradients(again, kInput, o);
  INFO(r.report());
  CHECK(r.passed);
  CHECK(r.positions_checked == 4);
}

TEST_CASE("GradientComparison: the error measure, the floor, and a NaN after the worst finite error") {
  GradientComparison c(1e-6, 1e-2);
  c.compare(GradientOf::parameter, "w", 0, 2.0, 2.0);      // exact: 0
  c.compare(GradientOf::parameter, "w", 1, 1.0, 1.0 + 1e-3);  // relative: 1e-3 / 1.001
  c.compare(GradientOf::parameter, "w", 2, 1e-6, 2e-6);    // below the floor: 1e-6 / 1e-2
  c.compare(GradientOf::input, "x", 3, std::nan(""), 1.0);
  c.compare(GradientOf::input, "x", 4, std::numeric_limits<double>::infinity(),
            std::numeric_limits<double>::infinity());  // equal, but not finite: still a failure
  const GradCheckResult r = c.result("three numbers");
  CHECK_FALSE(r.passed);
  CHECK(r.positions_checked == 5);
  CHECK(r.non_finite == 2);
  CHECK(r.first_non_finite.index == 3);
  CHECK(r.worst.index == 1);
  CHECK(r.max_error == Approx(1e-3 / (1.0 + 1e-3)).epsilon(1e-9));
  CHECK_THAT(r.report(), Catch::StartsWith("three numbers: gradient check FAILED, 5 positions, 2 with a non-finite"));

  GradientComparison fine(1e-6, 1e-2);
  fine.compare(GradientOf::parameter, "w", 0, 1e-9, 2e-9);  // 1e-9 / 1e-2 = 1e-7: within tolerance
  CHECK(fine.result("small").passed);
  CHECK_THROWS_AS(GradientComparison(std::nan(""), 1e-2), ArgumentError);
}
