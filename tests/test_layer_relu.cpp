// ReLU: forward and backward by hand, and its gradient through the public
// checker away from the kink at 0.
#include <lamina/layers/relu.hpp>
#include <lamina/check/gradient_check.hpp>

#include <algorithm>

#include "support.hpp"

using namespace lamina;

TEST_CASE("ReLU forward and backward by hand, the kink counting as inactive") {
  ReLU<float> relu;
  relu.build(Shape{4});
  Tensor<float> x(Shape{1, 4});
  const float xs[] = {-2, 0, 0.5f, 3};
  std::copy(xs, xs + 4, x.data());
  auto y = relu.forward(x.view(), Mode::train);
  CHECK(y[0] == 0.0f);
  CHECK(y[1] == 0.0f);
  CHECK(y[2] == 0.5f);
  CHECK(y[3] == 3.0f);
  Tensor<float> g(Shape{1, 4}, 2.0f);
  auto dx = relu.backward(g.view());
  CHECK(dx[0] == 0.0f);
  CHECK(dx[1] == 0.0f);  // the kink counts as inactive
  CHECK(dx[2] == 2.0f);
  CHECK(dx[3] == 2.0f);
}

TEST_CASE("Gradient check: ReLU, with inputs kept 1e-3 away from the kink") {
  // The kink is skipped on purpose: 1e-3 is a thousand steps h from 0, so no
  // central difference straddles it.
  ReLU<double> relu;
  GradCheckOptions o;
  o.min_abs_input = 1e-3;
  auto r = check_gradients(relu, Shape{3, 2, 5, 2}, o);
  INFO(r.report());
  CHECK(r.passed);
  CHECK(r.positions_checked == 3 * 2 * 5 * 2);
}
