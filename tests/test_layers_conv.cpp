// The Conv2D layer: forward by hand, gradients through the public checker on
// odd geometries, the fused ReLU, the skipped input gradient and shape errors.
#include <lamina/lamina.hpp>

#include "support.hpp"

using namespace lamina;

TEST_CASE("Conv2D forward matches a hand computation") {
  // One 3x3 image, one channel, a 2x2 kernel of ones, valid padding, bias 1.
  Conv2D<float> conv(1, 2, 1, Padding::valid);
  conv.build(Shape{3, 3, 1});
  ParameterStore<float> store;
  store.allocate({&conv});
  for (float& w : conv.parameters()[0]) w = 1.0f;
  conv.parameters()[1][0] = 1.0f;
  Tensor<float> x(Shape{1, 3, 3, 1});
  for (std::size_t i = 0; i < 9; ++i) x[i] = static_cast<float>(i + 1);  // 1..9
  auto y = conv.forward(x.view(), Mode::eval);
  REQUIRE(y.shape() == Shape{1, 2, 2, 1});
  CHECK(y[0] == 1 + 1 + 2 + 4 + 5);
  CHECK(y[1] == 1 + 2 + 3 + 5 + 6);
  CHECK(y[2] == 1 + 4 + 5 + 7 + 8);
  CHECK(y[3] == 1 + 5 + 6 + 8 + 9);
}

TEST_CASE("Conv2D output shapes follow Keras") {
  CHECK(Conv2D<float>(8, 3, 1, Padding::same).build(Shape{28, 28, 1}) == Shape{28, 28, 8});
  CHECK(Conv2D<float>(8, 3, 1, Padding::valid).build(Shape{28, 28, 1}) == Shape{26, 26, 8});
  CHECK(Conv2D<float>(8, 3, 2, Padding::same).build(Shape{7, 7, 3}) == Shape{4, 4, 8});
  CHECK(Conv2D<float>(8, 5, 2, Padding::valid).build(Shape{9, 13, 3}) == Shape{3, 5, 8});
}

TEST_CASE("Conv2D gradient checks on odd geometries") {
  struct Case {
    std::size_t filters, kernel, stride;
    Padding padding;
    Activation activation;
    Shape input;
  };
  const Case cases[] = {
      {4, 3, 1, Padding::same, Activation::none, Shape{2, 5, 7, 1}},
      {3, 3, 2, Padding::same, Activation::none, Shape{2, 7, 7, 3}},
      {5, 1, 1, Padding::valid, Activation::none, Shape{3, 4, 3, 3}},
      {2, 5, 2, Padding::valid, Activation::none, Shape{1, 9, 9, 2}},
      {17, 3, 1, Padding::same, Activation::relu, Shape{2, 5, 5, 3}},
      // One channel, 3x3, filters a multiple of the SIMD batch: the direct kernels.
      {xsimd::batch<double>::size, 3, 1, Padding::same, Activation::relu, Shape{2, 5, 7, 1}},
      {2 * xsimd::batch<double>::size, 3, 2, Padding::valid, Activation::none, Shape{2, 7, 6, 1}},
  };
  for (const Case& c : cases) {
    Conv2D<double> conv(c.filters, c.kernel, c.stride, c.padding, c.activation);
    const GradCheckResult r = check_gradients(conv, c.input);
    INFO("filters " << c.filters << " kernel " << c.kernel << " stride " << c.stride << " "
                    << to_string(c.padding) << " " << to_string(c.activation) << " input "
                    << c.input.to_string() << ": " << r.report());
    CHECK(r.passed);
  }
}

TEST_CASE("Conv2D as a first layer skips the input gradient, and its weights still learn") {
  Sequential<double> model(Shape{6, 6, 1}, 5);
  auto& conv = model.add<Conv2D>(2, 3, 1, Padding::same, Activation::relu);
  model.add<Flatten>();
  model.add<Dense>(3);
  CHECK_FALSE(conv.input_gradient_needed());
  CHECK(model.layer(1).input_gradient_needed());
  CHECK(model.layer(2).input_gradient_needed());
  model.compile(std::make_unique<SGD<double>>(0.1));
  Tensor<double> x(Shape{4, 6, 6, 1});
  Rng rng(2);
  for (double& v : x) v = rng.uniform();
  const std::vector<std::int32_t> y = {0, 1, 2, 1};
  const Tensor<double> before = model.store().params();
  model.train_step(x.view(), y.data());
  const auto& after = model.store().params();
  bool kernel_moved = false;
  for (std::size_t i = 0; i < conv.parameters()[0].size(); ++i)
    kernel_moved |= before[i] != after[i];
  CHECK(kernel_moved);
}

TEST_CASE("Conv2D shape errors name the layer and both shapes") {
  Sequential<float> model(Shape{784});
  CHECK_THROWS_WITH(model.add<Conv2D>(8, 3),
                    "layer 0 (Conv2D): expects input (N, height, width, channels), got (N, 784) (the model input)");
  Sequential<float> small(Shape{2, 2, 1});
  CHECK_THROWS_WITH(small.add<Conv2D>(8, 3, 1, Padding::valid),
                    Catch::StartsWith("layer 0 (Conv2D): Conv2D: kernel (3, 3, 1, 8) with padding 'valid'"));
}
