// predict() is const and may run on one model from several threads at once:
// each call gets the same bits as a serial call. scripts/run-sanitizers.sh also
// builds this test with ThreadSanitizer (with lamina's own thread count at 1:
// the OpenMP runtime is not instrumented, so its barriers would be reported).
#include <lamina/lamina.hpp>

#include <cstring>
#include <thread>

#include "support.hpp"

using namespace lamina;
using lamina_test::same_bits;

namespace {

// Every built-in layer kind that an evaluation-mode forward passes through.
std::unique_ptr<Sequential<float>> trained_cnn() {
  auto model = std::make_unique<Sequential<float>>(Shape{10, 10, 1}, 17);
  model->add<Conv2D>(6, 3, 1, Padding::same, Activation::relu);
  model->add<BatchNormalization>();
  model->add<MaxPooling2D>(2);
  model->add<Dropout>(0.25);
  model->add<Conv2D>(8, 3, 2, Padding::valid);
  model->add<ReLU>();
  model->add<Flatten>();
  model->add<Dense>(12, Init::he_normal, true, Activation::relu);
  model->add<BatchNormalization>();
  model->add<Dense>(5);
  model->compile(std::make_unique<Adam<float>>());
  // A few steps, so that BatchNormalization's moving statistics are not the defaults.
  Tensor<float> x(Shape{24, 10, 10, 1});
  Rng rng(3);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(rng.uniform(0, 1));
  std::vector<std::int32_t> y(24);
  for (std::size_t i = 0; i < y.size(); ++i) y[i] = static_cast<std::int32_t>(i % 5);
  FitOptions<float> o;
  o.epochs = 2;
  o.batch_size = 8;
  o.verbosity = Verbosity::quiet;
  fit(*model, x.view(), y, o);
  return model;
}

// A custom layer: doubles its input.
class Doubler final : public Layer<float> {
 public:
  std::string type() const override { return "Doubler"; }
  TensorView<const float> forward(TensorView<const float> input, Mode) override {
    this->check_input(input);
    out_.resize(input.shape());
    for (std::size_t i = 0; i < input.size(); ++i) out_[i] = 2 * input.data()[i];
    return out_.view();
  }
  TensorView<const float> backward(TensorView<const float> g) override { return g; }
  std::unique_ptr<Layer<float>> clone() const override { return std::make_unique<Doubler>(); }

 protected:
  Shape do_build(const Shape& input_shape) override { return input_shape; }

 private:
  Tensor<float> out_;
};

// A custom layer whose clone() is of another type.
class BadClone final : public Layer<float> {
 public:
  std::string type() const override { return "BadClone"; }
  TensorView<const float> forward(TensorView<const float> input, Mode) override { return input; }
  TensorView<const float> backward(TensorView<const float> g) override { return g; }
  std::unique_ptr<Layer<float>> clone() const override { return std::make_unique<Doubler>(); }

 protected:
  Shape do_build(const Shape& input_shape) override { return input_shape; }
};

}  // namespace

TEST_CASE("predict on a const model from several threads gives the serial results bit for bit, and those of the "
          "model's own evaluation forward", "[threads]") {
  const int lamina_threads = GENERATE(1, 2);
  set_num_threads(lamina_threads);
  const std::unique_ptr<Sequential<float>> trained = trained_cnn();
  const Sequential<float>& model = *trained;

  constexpr std::size_t kCallers = 4;
  std::vector<Tensor<float>> inputs;  // (N_k, 10, 10, 1): different sizes and batch splits per caller
  for (std::size_t k = 0; k < kCallers; ++k) {
    Tensor<float> x(Shape{13 + 7 * k, 10, 10, 1});
    Rng rng(100 + k);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(rng.uniform(0, 1));
    inputs.push_back(std::move(x));
  }
  std::vector<Tensor<float>> serial;
  for (std::size_t k = 0; k < kCallers; ++k) serial.push_back(model.predict(inputs[k].view(), 4 + k));
  const std::vector<float> params_before(trained->store().params().data(),
                                         trained->store().params().data() + trained->store().params().size());

  std::vector<Tensor<float>> parallel(kCallers);
  std::vector<std::thread> callers;
  for (std::size_t k = 0; k < kCallers; ++k)
    callers.emplace_back([&, k] {
      for (int repeat = 0; repeat < 3; ++repeat) parallel[k] = model.predict(inputs[k].view(), 4 + k);
    });
  for (auto& t : callers) t.join();

  INFO("lamina threads: " << lamina_threads);
  for (std::size_t k = 0; k < kCallers; ++k) CHECK(same_bits(parallel[k], serial[k]));
  // predict only read the model.
  CHECK(same_bits(params_before.data(), trained->store().params().data(), params_before.size()));
  // And the const path agrees with the model's own evaluation forward (on
  // its layers, not on copies, and in one batch instead of batches of 4),
  // through the same softmax.
  const Tensor<float> logits = Tensor<float>::from(trained->forward(inputs[0].view(), Mode::eval));  // (N, 5)
  Tensor<float> probabilities(logits.shape());
  for (std::size_t i = 0; i < logits.dim(0); ++i)
    SoftmaxCrossEntropy<float>::softmax_row(logits.data() + i * 5, probabilities.data() + i * 5, 5, -1);
  CHECK(same_bits(probabilities, serial[0]));
}

TEST_CASE("predict refuses a model without weights, runs a custom layer through its clone(), and refuses a clone "
          "of another type", "[threads]") {
  Sequential<float> unbuilt(Shape{4}, 1);
  unbuilt.add<Dense>(3);
  Tensor<float> x(Shape{2, 4}, 1.0f);
  CHECK_THROWS_WITH(unbuilt.predict(x.view()),
                    "predict: the model is not built yet, so it has no weights (call build(), compile() or fit(), or "
                    "load one with load_model)");
  CHECK_FALSE(unbuilt.built());

  // A custom layer needs no registration: predict copies it with clone().
  Sequential<float> custom(Shape{4}, 1);
  custom.add(std::make_unique<Doubler>());
  custom.add<Dense>(3);
  custom.build();
  const Tensor<float> p = custom.predict(x.view());
  CHECK(p.shape() == Shape{2, 3});
  const Tensor<float> logits = Tensor<float>::from(custom.forward(x.view(), Mode::eval));
  Tensor<float> expected(logits.shape());
  for (std::size_t i = 0; i < 2; ++i)
    SoftmaxCrossEntropy<float>::softmax_row(logits.data() + i * 3, expected.data() + i * 3, 3, -1);
  CHECK(same_bits(p, expected));

  Sequential<float> bad(Shape{4}, 1);
  bad.add(std::make_unique<BadClone>());
  bad.add<Dense>(3);
  bad.build();
  CHECK_THROWS_WITH(bad.predict(x.view()), "predict: layer 0 (BadClone)'s clone() did not return a layer of its type");
}
