// The example layer of docs/layers.md, compiled and checked, so the page stays
// true: it passes the public gradient checker and trains inside a model.
// (Keep it in sync with the page: the class below is copied from it.)
#include <lamina/lamina.hpp>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <memory>
#include <vector>

#include "support.hpp"

// BEGIN docs/layers.md example
template <class T>
class Scale final : public lamina::Layer<T> {
 public:
  std::string type() const override { return "Scale"; }

  std::vector<lamina::TensorSpec> parameter_specs() const override {
    return {{"scale", lamina::Shape{features_}}};
  }
  void initialize(lamina::Rng&) override {
    for (T& s : this->param(0)) s = T(1);
  }
  std::unique_ptr<lamina::Layer<T>> clone() const override { return std::make_unique<Scale<T>>(); }

  lamina::TensorView<const T> forward(lamina::TensorView<const T> input, lamina::Mode) override {
    this->check_input(input);            // (N, F), or a ShapeError naming the layer
    input_ = input;                      // cached for backward
    output_.resize(input.shape());       // (N, F), reused across steps
    const T* s = this->param(0).data();  // (F)
    for (std::size_t i = 0; i < input.size(); ++i) output_[i] = input[i] * s[i % features_];
    return output_.view();
  }

  lamina::TensorView<const T> backward(lamina::TensorView<const T> grad_output) override {
    const std::size_t n = input_.dim(0);
    this->check_grad_output(grad_output, n);
    T* ds = this->grad(0).data();        // (F), overwritten
    std::fill(ds, ds + features_, T(0));
    grad_input_.resize(input_.shape());  // (N, F)
    for (std::size_t i = 0; i < input_.size(); ++i) {  // row order: a fixed order
      ds[i % features_] += grad_output[i] * input_[i];
      grad_input_[i] = grad_output[i] * this->param(0)[i % features_];
    }
    return grad_input_.view();
  }

 protected:
  lamina::Shape do_build(const lamina::Shape& input_shape) override {
    if (input_shape.rank() != 1) throw this->build_error("(N, features)", input_shape);
    features_ = input_shape[0];
    return input_shape;
  }

 private:
  std::size_t features_ = 0;
  lamina::TensorView<const T> input_;  // (N, F) from forward
  lamina::Tensor<T> output_;           // (N, F)
  lamina::Tensor<T> grad_input_;       // (N, F)
};
// END docs/layers.md example

TEST_CASE("The docs/layers.md example layer passes the gradient check") {
  Scale<double> scale;
  lamina::GradCheckResult r = lamina::check_gradients(scale, lamina::Shape{4, 7});
  REQUIRE(r.passed);  // r.report() names the worst position on failure
  CHECK(r.positions_checked == 4 * 7 + 7);
}

TEST_CASE("The docs/layers.md example layer trains in a model: the loss falls and its scales learn") {
  lamina::Sequential<float> model(lamina::Shape{784}, /*seed=*/1);
  model.add<Scale>();
  model.add<lamina::Dense>(10);
  CHECK(model.summary().find("Scale") != std::string::npos);
  CHECK(model.trainable_parameter_count() == 784 + 784 * 10 + 10);

  model.compile(std::make_unique<lamina::SGD<float>>(0.05));
  const lamina::Tensor<float> x = lamina_test::random_tensor<float>(lamina::Shape{20, 784}, 2, 0.0, 1.0);
  std::vector<std::int32_t> labels(20);
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::int32_t>(i % 10);
  double first = 0.0, last = 0.0;
  for (int step = 0; step < 20; ++step) {
    last = model.train_step(x.view(), labels.data()).first;
    if (step == 0) first = last;
  }
  CHECK(std::isfinite(last));
  CHECK(last < 0.5 * first);
  // The optimizer moved the layer's own parameters: its backward's gradients
  // reached the store.
  std::size_t moved = 0;
  for (float s : model.layer(0).parameters()[0]) moved += s != 1.0f;
  CHECK(moved == 784);
}

namespace {
std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}
}  // namespace

TEST_CASE("The example layer in docs/layers.md is the one this file compiles and tests") {
  const std::string source = read_text(std::string(LAMINA_SOURCE_DIR) + "/tests/test_docs_example.cpp");
  const std::string docs = read_text(std::string(LAMINA_SOURCE_DIR) + "/docs/layers.md");
  const std::string begin_marker = "// BEGIN docs/layers.md example\n", end_marker = "// END docs/layers.md example";
  const std::size_t begin = source.find(begin_marker);
  const std::size_t end = source.find(end_marker);
  REQUIRE(begin != std::string::npos);
  REQUIRE(end != std::string::npos);
  const std::string layer = source.substr(begin + begin_marker.size(), end - begin - begin_marker.size());
  REQUIRE(layer.find("class Scale final") != std::string::npos);
  INFO("copy the class between the markers of tests/test_docs_example.cpp into docs/layers.md");
  CHECK(docs.find(layer) != std::string::npos);
}
