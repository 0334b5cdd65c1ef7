// Flatten: its output shape, its forward as a view of the input, and its
// gradient through the public checker.
#include <lamina/layers/flatten.hpp>
#include <lamina/check/gradient_check.hpp>

#include "support.hpp"

using namespace lamina;

TEST_CASE("Flatten: output shape, forward as a view without a copy") {
  Flatten<float> flatten;
  CHECK(flatten.build(Shape{28, 28, 1}) == Shape{784});
  Tensor<float> img(Shape{3, 28, 28, 1});
  img(2, 27, 27, 0) = 7.0f;
  auto flat = flatten.forward(img.view(), Mode::eval);
  CHECK(flat.shape() == Shape{3, 784});
  CHECK(flat.data() == img.data());  // a view, no copy
  CHECK(flat(2, 783) == 7.0f);
}

TEST_CASE("Gradient check: Flatten") {
  Flatten<double> flatten;
  auto r = check_gradients(flatten, Shape{2, 3, 3, 2});
  INFO(r.report());
  CHECK(r.passed);
  CHECK(r.positions_checked == 2 * 3 * 3 * 2);
}
