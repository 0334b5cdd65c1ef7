// BatchNormalization: forward against hand-computed values (eval and train),
// the precision of its statistics, gradients through the public checker in
// both modes, bit-identity with 1 and 2 threads, shape errors that name the
// culprit, and its state in a model's store.
#include <lamina/lamina.hpp>
#include <lamina/layers/batchnorm.hpp>

#include <cmath>
#include <memory>
#include <vector>

#include "support.hpp"

using namespace lamina;
using lamina_test::bind_alone;
using lamina_test::random_tensor;
using lamina_test::same_bits;
using lamina_test::ThreadCountGuard;

namespace {
// A BatchNormalization whose moving statistics are moved well away from their
// initial (0, 1) by training forwards inside initialize(): check_gradients calls
// initialize(), which resets them, so the eval-mode check needs this to test the
// eval function with non-trivial statistics.
class WarmedBatchNorm final : public Layer<double> {
 public:
  std::string type() const override { return "WarmedBatchNorm"; }
  std::vector<TensorSpec> parameter_specs() const override { return inner_.parameter_specs(); }
  std::vector<TensorSpec> buffer_specs() const override { return inner_.buffer_specs(); }
  void initialize(Rng& rng) override {
    inner_.bind(parameters(), gradients(), buffers());
    inner_.initialize(rng);
    // Channel c of the warm-up data: mean 2 + c, spread growing with c.
    Tensor<double> warm(input_shape().prepend(8));
    const std::size_t C = inner_.channels();
    Rng data(99);
    for (int step = 0; step < 6; ++step) {
      for (std::size_t i = 0; i < warm.size(); ++i) {
        const double c = static_cast<double>(i % C);
        warm[i] = 2.0 + c + (0.5 + c) * data.uniform(-1.0, 1.0);
      }
      inner_.forward(warm.view(), Mode::train);
    }
    // Copies: the views die with check_gradients's store.
    warmed_mean = Tensor<double>::from(buffers()[0]);
    warmed_variance = Tensor<double>::from(buffers()[1]);
  }
  Tensor<double> warmed_mean, warmed_variance;  // (C) the statistics after warm-up
  TensorView<const double> forward(TensorView<const double> x, Mode m) override { return inner_.forward(x, m); }
  TensorView<const double> backward(TensorView<const double> g) override { return inner_.backward(g); }
  std::unique_ptr<Layer<double>> clone() const override { return std::make_unique<WarmedBatchNorm>(); }

 protected:
  Shape do_build(const Shape& in) override { return inner_.build(in); }

 private:
  BatchNormalization<double> inner_{0.5};  // momentum 0.5: six steps move the statistics far
};
}  // namespace

TEST_CASE("BatchNormalization: type, config, specs") {
  BatchNormalization<float> bn;
  CHECK(bn.type() == "BatchNormalization");
  CHECK(bn.config() == LayerConfig{{"momentum", "0.99"}, {"epsilon", "0.001"}});
  CHECK(bn.build(Shape{5, 5, 3}) == Shape{5, 5, 3});
  REQUIRE(bn.parameter_specs().size() == 2);
  CHECK(bn.parameter_specs()[0].name == "gamma");
  CHECK(bn.parameter_specs()[1].name == "beta");
  CHECK(bn.parameter_specs()[1].shape == Shape{3});
  REQUIRE(bn.buffer_specs().size() == 2);
  CHECK(bn.buffer_specs()[0].name == "moving_mean");
  CHECK(bn.buffer_specs()[1].name == "moving_variance");
  CHECK(bn.buffer_specs()[1].shape == Shape{3});
  CHECK(bn.parameter_count() == 6);
  CHECK_THROWS_AS(BatchNormalization<float>(1.5), ArgumentError);
  CHECK_THROWS_AS(BatchNormalization<float>(0.9, 0.0), ArgumentError);
  CHECK(BatchNormalization<double>(0.9, 1e-5).config()[1].second == "1e-05");
}

TEST_CASE("BatchNormalization: initial values are Keras's") {
  BatchNormalization<float> bn;
  auto store = bind_alone<float>(bn, Shape{4});
  for (float g : bn.parameters()[0]) CHECK(g == 1.0f);
  for (float b : bn.parameters()[1]) CHECK(b == 0.0f);
  for (float m : bn.buffers()[0]) CHECK(m == 0.0f);
  for (float v : bn.buffers()[1]) CHECK(v == 1.0f);
}

TEST_CASE("BatchNormalization eval: the affine map of the moving statistics, by hand") {
  // epsilon 0.25 and moving variances 3.75 / 0.75 make sqrt(var + eps) 2 and 1:
  // every value below is exact in binary.
  BatchNormalization<float> bn(0.99, 0.25);
  auto store = bind_alone<float>(bn, Shape{2});
  bn.parameters()[0][0] = 3.0f;   // gamma
  bn.parameters()[0][1] = -2.0f;
  bn.parameters()[1][0] = 1.0f;   // beta
  bn.parameters()[1][1] = 0.5f;
  bn.buffers()[0][0] = 2.0f;      // moving_mean
  bn.buffers()[0][1] = -1.0f;
  bn.buffers()[1][0] = 3.75f;     // moving_variance
  bn.buffers()[1][1] = 0.75f;
  Tensor<float> x(Shape{3, 2});
  const float xs[] = {6, 0, 2, -1, -2, 3};
  std::copy(xs, xs + 6, x.data());
  auto y = bn.forward(x.view(), Mode::eval);
  // channel 0: 3 * (x - 2) / 2 + 1;  channel 1: -2 * (x + 1) / 1 + 0.5
  CHECK(y(0, 0) == 7.0f);
  CHECK(y(0, 1) == -1.5f);
  CHECK(y(1, 0) == 1.0f);
  CHECK(y(1, 1) == 0.5f);
  CHECK(y(2, 0) == -5.0f);
  CHECK(y(2, 1) == -7.5f);
  // Evaluation leaves the moving statistics alone.
  CHECK(bn.buffers()[0][0] == 2.0f);
  CHECK(bn.buffers()[1][1] == 0.75f);

  // Its gradient is that of the affine map: dx = gamma / sqrt(var + eps) * dy,
  // dgamma = sum(dy * x_hat), dbeta = sum(dy).
  Tensor<float> dy(Shape{3, 2});
  const float dys[] = {1, 2, -1, 1, 0.5f, -4};
  std::copy(dys, dys + 6, dy.data());
  auto dx = bn.backward(dy.view());
  CHECK(dx(0, 0) == 1.5f);   // 3 / 2 * 1
  CHECK(dx(0, 1) == -4.0f);  // -2 / 1 * 2
  CHECK(dx(2, 1) == 8.0f);
  CHECK(bn.gradients()[1][0] == 0.5f);    // 1 - 1 + 0.5
  CHECK(bn.gradients()[1][1] == -1.0f);   // 2 + 1 - 4
  // x_hat channel 0: (6-2)/2 = 2, 0, -2: dgamma = 2 - 0 - 1 = 1
  CHECK(bn.gradients()[0][0] == 1.0f);
  // x_hat channel 1: 1, 0, 4: dgamma = 2 + 0 - 16 = -14
  CHECK(bn.gradients()[0][1] == -14.0f);
}

TEST_CASE("BatchNormalization train: batch statistics, moving update by hand") {
  BatchNormalization<double> bn(0.9, 1e-3);
  auto store = bind_alone<double>(bn, Shape{2});
  Tensor<double> x(Shape{4, 2});
  // channel 0: 1, 2, 3, 6 (mean 3, biased variance (4 + 1 + 0 + 9) / 4 = 3.5)
  // channel 1: -1, -1, 1, 1 (mean 0, biased variance 1)
  const double xs[] = {1, -1, 2, -1, 3, 1, 6, 1};
  std::copy(xs, xs + 8, x.data());
  auto y = bn.forward(x.view(), Mode::train);
  CHECK(y(0, 0) == Approx((1 - 3) / std::sqrt(3.5 + 1e-3)).epsilon(1e-14));
  CHECK(y(3, 0) == Approx((6 - 3) / std::sqrt(3.5 + 1e-3)).epsilon(1e-14));
  CHECK(y(0, 1) == Approx(-1 / std::sqrt(1 + 1e-3)).epsilon(1e-14));
  // moving = 0.9 * moving + 0.1 * batch, from (0, 1), with the BIASED variance.
  CHECK(bn.buffers()[0][0] == Approx(0.1 * 3).epsilon(1e-15));
  CHECK(bn.buffers()[0][1] == Approx(0.0).margin(1e-15));
  CHECK(bn.buffers()[1][0] == Approx(0.9 + 0.1 * 3.5).epsilon(1e-15));
  CHECK(bn.buffers()[1][1] == Approx(0.9 + 0.1 * 1.0).epsilon(1e-15));
  // A second step compounds.
  bn.forward(x.view(), Mode::train);
  CHECK(bn.buffers()[0][0] == Approx(0.9 * 0.3 + 0.1 * 3).epsilon(1e-15));
  CHECK(bn.buffers()[1][0] == Approx(0.9 * 1.25 + 0.1 * 3.5).epsilon(1e-15));
}

TEST_CASE("BatchNormalization train: per-channel mean 0 and variance var/(var+eps), and train != eval") {
  for (const Shape& shape : {Shape{8, 5, 6, 3}, Shape{50, 4}}) {
    CAPTURE(shape.to_string());
    BatchNormalization<double> bn;
    auto store = bind_alone<double>(bn, shape.drop_first());
    const std::size_t C = shape[shape.rank() - 1];
    Tensor<double> x = random_tensor<double>(shape, 5);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = 3.0 * (i % C + 1) * x[i] + 10.0 * (i % C);  // offset, spread
    Tensor<double> y = Tensor<double>::from(bn.forward(x.view(), Mode::train));
    const std::size_t m = x.size() / C;
    for (std::size_t c = 0; c < C; ++c) {
      double sx = 0, sy = 0;
      for (std::size_t r = 0; r < m; ++r) {
        sx += x[r * C + c];
        sy += y[r * C + c];
      }
      const double mx = sx / m, my = sy / m;
      double vx = 0, vy = 0;
      for (std::size_t r = 0; r < m; ++r) {
        vx += (x[r * C + c] - mx) * (x[r * C + c] - mx);
        vy += (y[r * C + c] - my) * (y[r * C + c] - my);
      }
      vx /= m;
      vy /= m;
      CHECK(my == Approx(0.0).margin(1e-12));
      CHECK(vy == Approx(vx / (vx + 1e-3)).epsilon(1e-12));
    }
    // Eval uses the moving statistics (here barely moved from (0, 1)): different.
    auto e = bn.forward(x.view(), Mode::eval);
    double max_diff = 0;
    for (std::size_t i = 0; i < e.size(); ++i) max_diff = std::max(max_diff, std::abs(e[i] - y[i]));
    CHECK(max_diff > 1.0);
  }
}

TEST_CASE("BatchNormalization float: a large offset costs no precision") {
  // Values 1000 + small noise. A float one-pass sum of squares would lose the
  // variance, and subtracting float(mean) would shift every output by up to
  // ulp(1000) / std ~ 1e-3: the margins below catch both.
  BatchNormalization<float> bn;
  auto store = bind_alone<float>(bn, Shape{1});
  Tensor<float> x(Shape{4096, 1});
  Rng rng(4);
  for (float& v : x) v = 1000.0f + static_cast<float>(rng.uniform(-0.01, 0.01));
  auto y = bn.forward(x.view(), Mode::train);
  double s = 0, s2 = 0;
  for (float v : y) s += v;
  for (float v : y) s2 += (v - s / 4096) * (v - s / 4096);
  // variance of the input is ~3.3e-5, so var / (var + eps) is ~0.032
  double sx = 0, vx = 0;
  for (float v : x) sx += v;
  for (float v : x) vx += (v - sx / 4096) * (v - sx / 4096);
  vx /= 4096;
  CHECK(s / 4096 == Approx(0.0).margin(1e-5));
  CHECK(s2 / 4096 == Approx(vx / (vx + 1e-3)).epsilon(1e-4));
}

TEST_CASE("BatchNormalization: one-pass statistics about the first row keep the variance with an outlier first") {
  // The worst case of the shifted one-pass variance (see batchnorm.hpp): the
  // first row far from all the others. var >= (x0 - mean)^2 / m bounds the
  // cancellation by log10(m) digits; compare with a two-pass long double
  // reference through the moving variance (momentum 0: it is the batch's).
  BatchNormalization<double> bn(0.0);
  auto store = bind_alone<double>(bn, Shape{2});
  const std::size_t m = 5000;
  Tensor<double> x(Shape{m, 2});
  Rng rng(8);
  for (std::size_t r = 0; r < m; ++r) {
    x[r * 2] = 1.0 + rng.uniform(-1e-3, 1e-3);    // channel 0: small spread
    x[r * 2 + 1] = rng.uniform(-1.0, 1.0) * 1e6;  // channel 1: large values
  }
  x[0] = 1e4;  // an outlier first row in channel 0
  bn.forward(x.view(), Mode::train);
  for (std::size_t c = 0; c < 2; ++c) {
    long double mean = 0, var = 0;
    for (std::size_t r = 0; r < m; ++r) mean += x[r * 2 + c];
    mean /= m;
    for (std::size_t r = 0; r < m; ++r) var += (x[r * 2 + c] - mean) * (x[r * 2 + c] - mean);
    var /= m;
    INFO("channel " << c);
    // Relative to the variance, and to the standard deviation for the mean
    // (what the normalised output depends on); a float model needs about 1e-7.
    const double var_error = std::fabs(double(bn.buffers()[1][c]) - double(var)) / double(var);
    const double mean_error = std::fabs(double(bn.buffers()[0][c]) - double(mean)) / std::sqrt(double(var));
    INFO("variance error " << var_error << ", mean error / std " << mean_error);
    CHECK(var_error <= 1e-10);
    CHECK(mean_error <= 1e-12);
  }
}

TEST_CASE("Gradient checks: BatchNormalization") {
  SECTION("train, images (N, H, W, C)") {
    BatchNormalization<double> bn;
    auto r = check_gradients(bn, Shape{4, 3, 5, 3});
    INFO(r.report());
    CHECK(r.passed);
    CHECK(r.positions_checked == 4 * 3 * 5 * 3 + 3 + 3);
  }
  SECTION("train, dense (N, F)") {
    BatchNormalization<double> bn;
    auto r = check_gradients(bn, Shape{6, 7});
    INFO(r.report());
    CHECK(r.passed);
    CHECK(r.positions_checked == 6 * 7 + 7 + 7);
  }
  SECTION("eval, dense, fresh statistics (0, 1)") {
    BatchNormalization<double> bn;
    GradCheckOptions o;
    o.mode = Mode::eval;
    auto r = check_gradients(bn, Shape{5, 4}, o);
    INFO(r.report());
    CHECK(r.passed);
  }
  SECTION("eval, images, after training forwards moved the statistics") {
    WarmedBatchNorm bn;
    GradCheckOptions o;
    o.mode = Mode::eval;
    auto r = check_gradients(bn, Shape{3, 4, 3, 2}, o);
    INFO(r.report());
    CHECK(r.passed);
    // The statistics the check ran with really were non-trivial.
    REQUIRE(bn.warmed_mean.size() == 2);
    CHECK(bn.warmed_mean[0] > 1.5);      // moving_mean of channel 0 near 2
    CHECK(bn.warmed_mean[1] > 2.5);      // channel 1 near 3
    CHECK(bn.warmed_variance[1] > 0.6);  // channel 1's variance (1.5^2/3 = 0.75), far from...
    CHECK(bn.warmed_variance[0] < 0.2);  // ... channel 0's (0.5^2/3 ~ 0.083)
  }
}

TEST_CASE("The gradient checker catches BatchNormalization's eval gradient used in training") {
  // Differentiating train mode as if the statistics were constants is the classic
  // batch-norm bug; the check must see it.
  class StatisticsHeldFixed final : public Layer<double> {
   public:
    std::string type() const override { return "StatisticsHeldFixed"; }
    std::vector<TensorSpec> parameter_specs() const override { return inner_.parameter_specs(); }
    std::vector<TensorSpec> buffer_specs() const override { return inner_.buffer_specs(); }
    void initialize(Rng& rng) override {
      inner_.bind(parameters(), gradients(), buffers());
      inner_.initialize(rng);
    }
    TensorView<const double> forward(TensorView<const double> x, Mode) override {
      // Train output, but with the moving statistics set to this batch's (momentum 0),
      // then differentiated as eval.
      inner_.forward(x, Mode::train);
      return inner_.forward(x, Mode::eval);
    }
    TensorView<const double> backward(TensorView<const double> g) override { return inner_.backward(g); }
    std::unique_ptr<Layer<double>> clone() const override { return std::make_unique<StatisticsHeldFixed>(); }

   protected:
    Shape do_build(const Shape& in) override { return inner_.build(in); }

   private:
    BatchNormalization<double> inner_{0.0, 1e-3};
  } wrong;
  auto r = check_gradients(wrong, Shape{6, 3});
  CHECK_FALSE(r.passed);
  CHECK(r.worst.tensor == "input");
  CHECK(r.worst.of == GradientOf::input);
}

namespace {
// Everything a BatchNormalization computes in two training steps, then an eval
// step, with `threads` threads.
template <class T>
struct BatchNormRun {
  Tensor<T> y, dx, eval_y, eval_dx, params, grads, buffers;

  BatchNormRun(int threads, const Shape& shape) {
    set_num_threads(threads);
    const Tensor<T> x = random_tensor<T>(shape, 11, -2.0, 3.0);
    const Tensor<T> dy = random_tensor<T>(shape, 12);
    BatchNormalization<T> bn;
    auto store = bind_alone<T>(bn, shape.drop_first());
    Rng jitter(3);
    for (T& p : store.params()) p += static_cast<T>(jitter.uniform(-0.3, 0.3));
    bn.forward(x.view(), Mode::train);
    y = Tensor<T>::from(bn.forward(x.view(), Mode::train));  // second step: moving stats compound
    dx = Tensor<T>::from(bn.backward(dy.view()));
    grads = store.grads();
    eval_y = Tensor<T>::from(bn.forward(x.view(), Mode::eval));
    eval_dx = Tensor<T>::from(bn.backward(dy.view()));
    buffers = store.buffers();
  }
  void check_same_bits(const BatchNormRun& other) const {
    CHECK(same_bits<T>(y.view(), other.y.view()));
    CHECK(same_bits<T>(dx.view(), other.dx.view()));
    CHECK(same_bits<T>(grads.view(), other.grads.view()));
    CHECK(same_bits<T>(buffers.view(), other.buffers.view()));
    CHECK(same_bits<T>(eval_y.view(), other.eval_y.view()));
    CHECK(same_bits<T>(eval_dx.view(), other.eval_dx.view()));
  }
};
}  // namespace

TEST_CASE("BatchNormalization: bit-identical with 1 and 2 threads") {
  ThreadCountGuard guard;
  const Shape shape{24, 16, 16, 16};  // 6144 rows of 16 channels: 6 chunks
  REQUIRE(shape.size() > 4 * BatchNormalization<float>::kElementsPerChunk);
  // Both types: in float, a reordering of the double statistics would mostly
  // vanish when they are rounded to float; in double it shows.
  SECTION("float") { BatchNormRun<float>(1, shape).check_same_bits(BatchNormRun<float>(2, shape)); }
  SECTION("double") { BatchNormRun<double>(1, shape).check_same_bits(BatchNormRun<double>(2, shape)); }
}

TEST_CASE("BatchNormalization: shape errors name the layer and the shapes") {
  BatchNormalization<float> bn;
  CHECK_THROWS_AS(bn.build(Shape{5, 7}), ShapeError);
  BatchNormalization<float> bn2;
  CHECK_THROWS_WITH(bn2.build(Shape{5, 7}),
                    "layer ? (BatchNormalization): expects input (N, features) or (N, H, W, C), got (N, 5, 7)");
  Sequential<float> model(Shape{5, 7});
  CHECK_THROWS_WITH(model.add<BatchNormalization>(),
                    "layer 0 (BatchNormalization): expects input (N, features) or (N, H, W, C), got (N, 5, 7) "
                    "(the model input)");
  BatchNormalization<float> bn3;
  auto store = bind_alone<float>(bn3, Shape{4, 4, 2});
  Tensor<float> wrong(Shape{2, 4, 4, 3});
  CHECK_THROWS_WITH(bn3.forward(wrong.view(), Mode::train),
                    "layer ? (BatchNormalization): expects input (N, 4, 4, 2), got (2, 4, 4, 3)");
}

TEST_CASE("BatchNormalization with MaxPooling2D and Dropout in a Sequential: parameter counts, the loss falls over 30 "
          "steps, and the moving mean in the store follows the data") {
  Sequential<float> model(Shape{8, 8, 1}, 3);
  model.add<BatchNormalization>();
  model.add<MaxPooling2D>(2);
  model.add<Dropout>(0.25);
  model.add<Flatten>();
  model.add<Dense>(3);
  model.compile(std::make_unique<SGD<float>>(0.1));
  CHECK(model.non_trainable_parameter_count() == 2);
  CHECK(model.trainable_parameter_count() == 2 + 16 * 3 + 3);
  Tensor<float> x = random_tensor<float>(Shape{16, 8, 8, 1}, 2, 1.0, 3.0);
  std::vector<std::int32_t> labels(16);
  for (std::size_t i = 0; i < 16; ++i) labels[i] = static_cast<std::int32_t>(i % 3);
  double first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    const double loss = model.train_step(x.view(), labels.data()).first;
    if (step == 0) first = loss;
    last = loss;
  }
  CHECK(std::isfinite(last));
  CHECK(last < first);
  // The moving mean followed the batch mean from 0: 1 - 0.99^30 of the way.
  double data_mean = 0;
  for (float v : x) data_mean += v;
  data_mean /= static_cast<double>(x.size());
  const float moving_mean = model.layer(0).buffers()[0][0];
  CHECK(moving_mean == Approx(data_mean * (1.0 - std::pow(0.99, 30))).epsilon(1e-5));
}
