// Dense, ReLU, Flatten: forward against hand-computed values, gradients through
// the public checker, and shape errors that name the culprit.
#include <lamina/lamina.hpp>

#include "test_support.hpp"

using namespace lamina;

namespace {
// Binds a standalone layer to a store so its parameters can be set by hand.
template <class T>
ParameterStore<T> bind_alone(Layer<T>& layer, const Shape& sample_shape) {
  layer.build(sample_shape);
  ParameterStore<T> store;
  store.allocate({&layer});
  return store;
}
}  // namespace

TEST_CASE("Dense forward matches a hand computation") {
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

TEST_CASE("Dense's fused ReLU equals Dense followed by ReLU") {
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

TEST_CASE("Layers after only parameter-free layers skip their input gradient") {
  Sequential<float> model(Shape{4, 4, 1}, 1);
  model.add<Flatten>();
  model.add<Dense>(8);
  model.add<ReLU>();
  model.add<Dense>(3);
  CHECK_FALSE(model.layer(0).input_gradient_needed());
  CHECK_FALSE(model.layer(1).input_gradient_needed());
  CHECK(model.layer(2).input_gradient_needed());
  CHECK(model.layer(3).input_gradient_needed());
  model.compile(std::make_unique<SGD<float>>(0.1));
  Tensor<float> x(Shape{2, 4, 4, 1}, 0.5f);
  const std::int32_t y[] = {0, 2};
  const auto [loss, correct] = model.train_step(x.view(), y);  // backward stops at layer 1
  CHECK(std::isfinite(loss));
  CHECK(correct <= 2);
  CHECK(model.layer(1).backward(Tensor<float>(Shape{2, 8}).view()).empty());
}

TEST_CASE("ReLU and Flatten forward") {
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

  Flatten<float> flatten;
  CHECK(flatten.build(Shape{28, 28, 1}) == Shape{784});
  Tensor<float> img(Shape{3, 28, 28, 1});
  img(2, 27, 27, 0) = 7.0f;
  auto flat = flatten.forward(img.view(), Mode::eval);
  CHECK(flat.shape() == Shape{3, 784});
  CHECK(flat.data() == img.data());  // a view, no copy
  CHECK(flat(2, 783) == 7.0f);
}

TEST_CASE("Gradient checks: Dense, ReLU, Flatten") {
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
  SECTION("ReLU away from its kink") {
    ReLU<double> relu;
    GradCheckOptions o;
    o.min_abs_input = 1e-3;
    auto r = check_gradients(relu, Shape{3, 2, 5, 2}, o);
    INFO(r.report());
    CHECK(r.passed);
  }
  SECTION("Flatten") {
    Flatten<double> flatten;
    auto r = check_gradients(flatten, Shape{2, 3, 3, 2});
    INFO(r.report());
    CHECK(r.passed);
  }
}

namespace {
// A Dense whose kernel gradient is 1% too large: the checker must catch it, so
// that its tolerance is known to be able to fail.
class BrokenDense final : public Layer<double> {
 public:
  std::string type() const override { return "BrokenDense"; }
  std::vector<TensorSpec> parameter_specs() const override { return inner_.parameter_specs(); }
  void initialize(Rng& rng) override {
    inner_.bind(parameters(), gradients(), buffers());
    inner_.initialize(rng);
  }
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

TEST_CASE("The gradient checker catches a 1% error and reports where") {
  BrokenDense broken;
  auto r = check_gradients(broken, Shape{2, 4});
  CHECK_FALSE(r.passed);
  CHECK(r.worst_tensor == "kernel");
  CHECK(r.worst_index == 0);
  CHECK(r.max_error == Approx(0.01 / 1.01).epsilon(1e-3));
  CHECK_THAT(r.report(), Catch::Contains("FAILED") && Catch::Contains("kernel[0]"));
}

TEST_CASE("Shape errors name the layer index, type and both shapes") {
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

TEST_CASE("He and Glorot initialisation have the intended spread") {
  Rng rng(3);
  Tensor<double> w(Shape{400, 300});
  initialize_weights<double>(w.view(), Init::he_normal, 400, 300, rng);
  double s2 = 0;
  for (double v : w) s2 += v * v;
  CHECK(s2 / w.size() == Approx(2.0 / 400).epsilon(0.02));
  initialize_weights<double>(w.view(), Init::glorot_uniform, 400, 300, rng);
  double maxabs = 0;
  s2 = 0;
  for (double v : w) {
    s2 += v * v;
    maxabs = std::max(maxabs, std::abs(v));
  }
  CHECK(s2 / w.size() == Approx(2.0 / 700).epsilon(0.02));
  CHECK(maxabs <= std::sqrt(6.0 / 700));
}
