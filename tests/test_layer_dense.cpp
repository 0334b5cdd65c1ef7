// Dense: forward and backward by hand, its fused ReLU against Dense + ReLU,
// gradients through the public checker (with and without bias, the fused ReLU,
// the split contraction), and shape errors that name the layer index, type and
// both shapes.
#include <lamina/lamina.hpp>

#include "support.hpp"

using namespace lamina;
using lamina_test::bind_alone;

TEST_CASE("Dense forward and backward match a hand computation") {
  Dense<float> dense(2);
  ParameterStore<float> store = bind_alone<float>(dense, Shape{3});
  // kernel (3, 2), bias (2)
  const float kernel[] = {1, 2, 3, 4, 5, 6};
  std::copy(kernel, kernel + 6, dense.parameters()[0].data());
  dense.parameters()[1][0] = 0.5f;
  dense.parameters()[1][1] = -1.0f;
  Tensor<float> x(Shape{2, 3});
  const float xs[] = {1, 0, -1, 2, 1, 0};
  std::copy(xs, xs + 6, x.data());
  TensorView<const float> y = dense.forward(x.view(), Mode::eval);
  REQUIRE(y.shape() == Shape{2, 2});
  // row 0: [1*1 + 0*3 - 1*5, 1*2 + 0*4 - 1*6] + b = [-4 + .5, -4 - 1]
  CHECK(y(0, 0) == -3.5f);
  CHECK(y(0, 1) == -5.0f);
  // row 1: [2*1 + 1*3, 2*2 + 1*4] + b = [5.5, 7]
  CHECK(y(1, 0) == 5.5f);
  CHECK(y(1, 1) == 7.0f);

  // Backward with dL/dy = 1 everywhere: db = N, dW = x^T 1, dx = 1 W^T.
  Tensor<float> ones(Shape{2, 2}, 1.0f);
  TensorView<const float> dx = dense.backward(ones.view());
  CHECK(dense.gradients()[1][0] == 2.0f);
  CHECK(dense.gradients()[0](0, 0) == 3.0f);   // 1 + 2
  CHECK(dense.gradients()[0](2, 1) == -1.0f);  // -1 + 0
  CHECK(dx(0, 0) == 3.0f);                     // 1 + 2
  CHECK(dx(1, 2) == 11.0f);                    // 5 + 6
}

TEST_CASE("Dense's fused ReLU equals Dense followed by ReLU, and the summary shows no ReLU layer") {
  Sequential<float> fused(Shape{8}, 3), separate(Shape{8}, 3);
  fused.add<Dense>(5, Init::he_normal, true, Activation::relu);
  separate.add<Dense>(5, Init::he_normal);
  separate.add<ReLU>();
  Tensor<float> x(Shape{4, 8});
  Rng rng(1);
  for (float& v : x) v = static_cast<float>(rng.uniform(-1, 1));
  auto a = fused.forward(x.view(), Mode::train);
  auto b = separate.forward(x.view(), Mode::train);
  REQUIRE(a.shape() == b.shape());
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == b[i]);
  CHECK(fused.summary().find("relu (ReLU)") == std::string::npos);
}

TEST_CASE("Gradient checks: Dense") {
  SECTION("Dense") {
    Dense<double> dense(5, Init::he_normal);
    auto r = check_gradients(dense, Shape{4, 7});
    INFO(r.report());
    CHECK(r.passed);
    CHECK(r.positions_checked == 4 * 7 + 7 * 5 + 5);
  }
  SECTION("Dense without bias, batch of one") {
    Dense<double> dense(3, Init::glorot_uniform, false);
    auto r = check_gradients(dense, Shape{1, 6});
    INFO(r.report());
    CHECK(r.passed);
  }
  SECTION("Dense with a fused ReLU") {
    Dense<double> dense(6, Init::he_normal, true, Activation::relu);
    auto r = check_gradients(dense, Shape{5, 4});
    INFO(r.report());
    CHECK(r.passed);
  }
  SECTION("Dense whose forward and backward data split the contraction in two parts") {
    // 72 x 456 = 32,832 weights: the smallest kind of kernel Dense reads in
    // two parts (rows [0, 36) and [36, 72) of W; dense.hpp, kSplitMinWeights).
    Dense<double> dense(456, Init::he_normal, true, Activation::relu);
    auto r = check_gradients(dense, Shape{2, 72});
    INFO(r.report());
    CHECK(r.passed);
    CHECK(dense.parameter_row_chunk(0) == 36);
    CHECK(r.positions_checked == 2 * 72 + 72 * 456 + 456);
  }
}

TEST_CASE("Dense: shape errors name the layer index, type and both shapes") {
  Sequential<float> model(Shape{28, 28, 1});
  model.add<ReLU>();
  CHECK_THROWS_WITH(model.add<Dense>(10),
                    "layer 1 (Dense): expects input (N, features); add a Flatten layer before Dense, got "
                    "(N, 28, 28, 1) (the output of layer 0 (ReLU))");
  model.add<Flatten>();
  model.add<Dense>(10);
  Tensor<float> wrong(Shape{4, 784});
  CHECK_THROWS_WITH(model.predict(wrong.view()),
                    "predict: the model takes input (N, 28, 28, 1), got (4, 784)");
  Dense<float> alone(3);
  alone.build(Shape{5});
  ParameterStore<float> store;
  store.allocate({&alone});
  CHECK_THROWS_WITH(alone.forward(wrong.view(), Mode::eval), "layer ? (Dense): expects input (N, 5), got (4, 784)");
}
