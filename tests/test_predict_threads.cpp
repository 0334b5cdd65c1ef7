// predict() is const and may run on one model from several threads at once:
// each call gets the same bits as a serial call. scripts/run-sanitizers.sh also
// builds this test with ThreadSanitizer (with lamina's own thread count at 1:
// the OpenMP runtime is not instrumented, so its barriers would be reported).
#include <lamina/lamina.hpp>

#include <cstring>
#include <thread>

#include "test_support.hpp"

using namespace lamina;

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
  model->fit(x.view(), y, o);
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

 protected:
  Shape do_build(const Shape& input_shape) override { return input_shape; }

 private:
  Tensor<float> out_;
};

bool same_bits(const Tensor<float>& a, const Tensor<float>& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("predict on a const model from several threads gives the serial results bit for bit", "[threads]") {
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
  CHECK(std::memcmp(params_before.data(), trained->store().params().data(), params_before.size() * sizeof(float)) == 0);
  // And the const path agrees with a training-state model's own evaluation forward.
  const Tensor<float> again = trained->predict(inputs[0].view(), 500);
  CHECK(same_bits(again, serial[0]));
}

TEST_CASE("predict refuses a model without weights and names unregistered layer types", "[threads]") {
  Sequential<float> unbuilt(Shape{4}, 1);
  unbuilt.add<Dense>(3);
  Tensor<float> x(Shape{2, 4}, 1.0f);
  CHECK_THROWS_WITH(unbuilt.predict(x.view()),
                    "predict: the model is not built yet, so it has no weights (call build(), compile() or fit(), or "
                    "load one with load_model)");
  CHECK_FALSE(unbuilt.built());

  Sequential<float> custom(Shape{4}, 1);
  custom.add(std::make_unique<Doubler>());
  custom.add<Dense>(3);
  custom.build();
  CHECK_THROWS_WITH(custom.predict(x.view()),
                    "predict: layer 0 (Doubler) is not in the layer registry, so predict cannot make the private copy "
                    "it runs on; register the type with lamina::register_layer<T>");
  register_layer<float>("Doubler", [](const LayerConfig&) { return std::make_unique<Doubler>(); });
  const Tensor<float> p = custom.predict(x.view());
  CHECK(p.shape() == Shape{2, 3});
}
