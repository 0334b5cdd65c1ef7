// MaxPooling2D: output shapes (valid and same padding), forward and backward
// by hand (ties, padding, overlapping windows, NaN), gradients through the
// public checker, bit-identity with 1 and 2 threads, and shape errors that
// name the culprit.
#include <lamina/lamina.hpp>
#include <lamina/layers/maxpool2d.hpp>

#include <cmath>
#include <vector>

#include "support.hpp"

using namespace lamina;
using lamina_test::random_tensor;
using lamina_test::same_bits;
using lamina_test::ThreadCountGuard;

TEST_CASE("MaxPooling2D: config and output shapes (valid and same)") {
  MaxPooling2D<float> pool;
  CHECK(pool.type() == "MaxPooling2D");
  CHECK(pool.config() == LayerConfig{{"pool_size", "(2, 2)"}, {"strides", "(2, 2)"}, {"padding", "valid"}});
  CHECK(pool.build(Shape{7, 7, 3}) == Shape{3, 3, 3});
  CHECK(MaxPooling2D<float>(3, 2).build(Shape{7, 8, 1}) == Shape{3, 3, 1});
  CHECK(MaxPooling2D<float>(2, 0, Padding::same).build(Shape{7, 7, 2}) == Shape{4, 4, 2});
  CHECK(MaxPooling2D<float>(3, 2, Padding::same).build(Shape{6, 5, 1}) == Shape{3, 3, 1});
  MaxPooling2D<float> rect({3, 2}, {1, 2}, Padding::valid);
  CHECK(rect.config() == LayerConfig{{"pool_size", "(3, 2)"}, {"strides", "(1, 2)"}, {"padding", "valid"}});
  CHECK(rect.build(Shape{5, 5, 1}) == Shape{3, 2, 1});
  CHECK(pool.parameter_count() == 0);
  CHECK_THROWS_AS(MaxPooling2D<float>(0), ArgumentError);
}

TEST_CASE("MaxPooling2D forward and backward by hand") {
  SECTION("2x2, stride 2, valid, two channels") {
    MaxPooling2D<float> pool;
    pool.build(Shape{4, 4, 2});
    Tensor<float> x(Shape{1, 4, 4, 2});
    // channel 0: 0..15 row-major; channel 1: 15..0 (its maxima sit top-left)
    for (std::size_t i = 0; i < 16; ++i) {
      x[2 * i] = static_cast<float>(i);
      x[2 * i + 1] = static_cast<float>(15 - i);
    }
    auto y = pool.forward(x.view(), Mode::train);
    REQUIRE(y.shape() == Shape{1, 2, 2, 2});
    CHECK(y(0, 0, 0, 0) == 5.0f);
    CHECK(y(0, 0, 1, 0) == 7.0f);
    CHECK(y(0, 1, 0, 0) == 13.0f);
    CHECK(y(0, 1, 1, 0) == 15.0f);
    CHECK(y(0, 0, 0, 1) == 15.0f);
    CHECK(y(0, 0, 1, 1) == 13.0f);
    CHECK(y(0, 1, 0, 1) == 7.0f);
    CHECK(y(0, 1, 1, 1) == 5.0f);
    Tensor<float> dy(Shape{1, 2, 2, 2});
    for (std::size_t i = 0; i < 8; ++i) dy[i] = static_cast<float>(i + 1);
    auto dx = pool.backward(dy.view());
    // channel 0 winners: pixels (1,1), (1,3), (3,1), (3,3); channel 1: (0,0), (0,2), (2,0), (2,2)
    CHECK(dx(0, 1, 1, 0) == 1.0f);
    CHECK(dx(0, 1, 3, 0) == 3.0f);
    CHECK(dx(0, 3, 1, 0) == 5.0f);
    CHECK(dx(0, 3, 3, 0) == 7.0f);
    CHECK(dx(0, 0, 0, 1) == 2.0f);
    CHECK(dx(0, 2, 2, 1) == 8.0f);
    float total = 0;
    for (float v : dx) total += v;
    CHECK(total == 36.0f);  // nothing else received gradient
  }
  SECTION("2x2, stride 2, same padding on 3x3: the extra row and column are padding") {
    MaxPooling2D<float> pool(2, 2, Padding::same);
    pool.build(Shape{3, 3, 1});
    Tensor<float> x(Shape{1, 3, 3, 1});
    const float xs[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    std::copy(xs, xs + 9, x.data());
    auto y = pool.forward(x.view(), Mode::train);
    REQUIRE(y.shape() == Shape{1, 2, 2, 1});
    CHECK(y[0] == 5.0f);
    CHECK(y[1] == 6.0f);
    CHECK(y[2] == 8.0f);
    CHECK(y[3] == 9.0f);
  }
  SECTION("same padding with negative values: padding never wins") {
    // pool 3, stride 1, same on 3x3: pad 1 all round; all values negative.
    MaxPooling2D<float> pool(3, 1, Padding::same);
    pool.build(Shape{3, 3, 1});
    Tensor<float> x(Shape{1, 3, 3, 1});
    const float xs[] = {-9, -8, -7, -6, -5, -4, -3, -2, -1};
    std::copy(xs, xs + 9, x.data());
    auto y = pool.forward(x.view(), Mode::eval);
    REQUIRE(y.shape() == Shape{1, 3, 3, 1});
    const float expected[] = {-5, -4, -4, -2, -1, -1, -2, -1, -1};
    for (std::size_t i = 0; i < 9; ++i) CHECK(y[i] == expected[i]);
  }
  SECTION("overlapping windows add their gradients") {
    MaxPooling2D<float> pool(2, 1);  // 2x2, stride 1, valid: 3x3 -> 2x2
    pool.build(Shape{3, 3, 1});
    Tensor<float> x(Shape{1, 3, 3, 1});
    const float xs[] = {1, 2, 3, 4, 9, 5, 6, 7, 8};  // the centre is in every window
    std::copy(xs, xs + 9, x.data());
    auto y = pool.forward(x.view(), Mode::train);
    for (std::size_t i = 0; i < 4; ++i) CHECK(y[i] == 9.0f);
    Tensor<float> dy(Shape{1, 2, 2, 1});
    const float dys[] = {1, 2, 4, 8};
    std::copy(dys, dys + 4, dy.data());
    auto dx = pool.backward(dy.view());
    for (std::size_t i = 0; i < 9; ++i) CHECK(dx[i] == (i == 4 ? 15.0f : 0.0f));
  }
}

TEST_CASE("MaxPooling2D: ties send the gradient to the first maximum in row-major window order") {
  MaxPooling2D<float> pool;
  pool.build(Shape{4, 4, 1});
  Tensor<float> x(Shape{1, 4, 4, 1});
  // Window (0,0): all equal. Window (0,1): maxima at (0,3) and (1,2): (0,3) comes
  // first in row-major order. Window (1,0): maxima at (3,0) and (3,1): (3,0).
  // Window (1,1): maxima at (2,3) and (3,2): (2,3).
  const float xs[] = {2, 2, 0, 7,   //
                      2, 2, 7, 1,   //
                      0, 1, 4, 6,   //
                      5, 5, 6, 3};
  std::copy(xs, xs + 16, x.data());
  auto y = pool.forward(x.view(), Mode::train);
  CHECK(y[0] == 2.0f);
  CHECK(y[1] == 7.0f);
  CHECK(y[2] == 5.0f);
  CHECK(y[3] == 6.0f);
  Tensor<float> dy(Shape{1, 2, 2, 1});
  const float dys[] = {1, 10, 100, 1000};
  std::copy(dys, dys + 4, dy.data());
  auto dx = pool.backward(dy.view());
  std::vector<float> expected(16, 0.0f);
  expected[0] = 1;        // (0,0)
  expected[3] = 10;       // (0,3), not (1,2)
  expected[12] = 100;     // (3,0), not (3,1)
  expected[11] = 1000;    // (2,3), not (3,2)
  for (std::size_t i = 0; i < 16; ++i) {
    CAPTURE(i);
    CHECK(dx[i] == expected[i]);
  }
}

TEST_CASE("MaxPooling2D propagates NaN") {
  MaxPooling2D<double> pool;
  pool.build(Shape{2, 2, 1});
  Tensor<double> x(Shape{1, 2, 2, 1});
  x[0] = 1.0;
  x[1] = std::nan("");
  x[2] = 5.0;
  x[3] = 2.0;
  CHECK(std::isnan(pool.forward(x.view(), Mode::eval)[0]));
}

TEST_CASE("Gradient checks: MaxPooling2D") {
  SECTION("7x7, pool 2, stride 2, valid (the last row and column are dropped)") {
    MaxPooling2D<double> pool(2);
    auto r = check_gradients(pool, Shape{2, 7, 7, 3});
    INFO(r.report());
    CHECK(r.passed);
    CHECK(r.positions_checked == 2 * 7 * 7 * 3);
  }
  SECTION("7x7, pool 3, stride 2, valid (overlapping windows)") {
    MaxPooling2D<double> pool(3, 2);
    auto r = check_gradients(pool, Shape{2, 7, 7, 2});
    INFO(r.report());
    CHECK(r.passed);
  }
  SECTION("7x6, pool 3, stride 2, same") {
    MaxPooling2D<double> pool(3, 2, Padding::same);
    auto r = check_gradients(pool, Shape{3, 7, 6, 2});
    INFO(r.report());
    CHECK(r.passed);
  }
  SECTION("5x5, pool (2, 3), strides (1, 2), same") {
    MaxPooling2D<double> pool({2, 3}, {1, 2}, Padding::same);
    auto r = check_gradients(pool, Shape{2, 5, 5, 1});
    INFO(r.report());
    CHECK(r.passed);
  }
}

TEST_CASE("MaxPooling2D: bit-identical with 1 and 2 threads") {
  ThreadCountGuard guard;
  const Shape shape{80, 15, 15, 8};  // 18 images per chunk: 5 chunks
  REQUIRE(shape.size() > 4 * MaxPooling2D<float>::kElementsPerChunk);
  const Tensor<float> x = random_tensor<float>(shape, 21);
  auto run = [&](int threads, Tensor<float>& y, Tensor<float>& dx) {
    set_num_threads(threads);
    MaxPooling2D<float> pool(3, 2, Padding::same);
    pool.build(shape.drop_first());
    y = Tensor<float>::from(pool.forward(x.view(), Mode::train));
    const Tensor<float> dy = random_tensor<float>(y.shape(), 22);
    dx = Tensor<float>::from(pool.backward(dy.view()));
  };
  Tensor<float> y1, dx1, y2, dx2;
  run(1, y1, dx1);
  run(2, y2, dx2);
  CHECK(same_bits<float>(y1.view(), y2.view()));
  CHECK(same_bits<float>(dx1.view(), dx2.view()));
}

TEST_CASE("MaxPooling2D: shape errors name the layer and the shapes") {
  MaxPooling2D<float> pool;
  CHECK_THROWS_WITH(pool.build(Shape{10}), "layer ? (MaxPooling2D): expects input (N, H, W, C) images, got (N, 10)");
  MaxPooling2D<float> big(3);
  CHECK_THROWS_WITH(big.build(Shape{2, 5, 1}),
                    "layer ? (MaxPooling2D): expects input (N, H, W, C) with H >= 3 and W >= 3 for pool_size "
                    "(3, 3) with padding 'valid', got (N, 2, 5, 1)");
  // With same padding the same pool fits.
  CHECK(MaxPooling2D<float>(3, 0, Padding::same).build(Shape{2, 5, 1}) == Shape{1, 2, 1});
  Sequential<float> model(Shape{784});
  CHECK_THROWS_WITH(model.add<MaxPooling2D>(),
                    "layer 0 (MaxPooling2D): expects input (N, H, W, C) images, got (N, 784) (the model input)");
  MaxPooling2D<float> ok;
  ok.build(Shape{4, 4, 1});
  Tensor<float> wrong(Shape{2, 4, 4, 2});
  CHECK_THROWS_WITH(ok.forward(wrong.view(), Mode::eval),
                    "layer ? (MaxPooling2D): expects input (N, 4, 4, 1), got (2, 4, 4, 2)");
}
