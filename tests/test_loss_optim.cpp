// Softmax cross-entropy (stable at extreme logits), Adam and SGD by hand.
#include <lamina/lamina.hpp>

#include <cmath>

#include "test_support.hpp"

using namespace lamina;

TEST_CASE("Softmax cross-entropy on ordinary logits") {
  SoftmaxCrossEntropy<double> loss;
  Tensor<double> z(Shape{1, 3});
  z[0] = 1;
  z[1] = 2;
  z[2] = 3;
  std::int32_t label = 2;
  const double expected = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 3.0;
  CHECK(loss.forward(z.view(), &label) == Approx(expected).epsilon(1e-14));
  auto g = loss.backward();
  const double sum = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  CHECK(g[0] == Approx(std::exp(1.0) / sum));
  CHECK(g[2] == Approx(std::exp(3.0) / sum - 1.0));
}

TEST_CASE("Softmax cross-entropy is finite and exact at extreme logits") {
  SoftmaxCrossEntropy<float> loss;
  Tensor<float> z(Shape{3, 3});
  // A confident right answer, a confident wrong answer at +-1e30, and huge equal logits.
  const float v[] = {1e30f, -1e30f, 0.f, 1e30f, -1e30f, 0.f, 88.f, 88.f, 88.f};
  std::copy(v, v + 9, z.data());
  const std::int32_t labels[] = {0, 1, 2};
  const double mean = loss.forward(z.view(), labels);
  REQUIRE(std::isfinite(mean));
  // Row 0: loss 0. Row 1: 2e30 (finite in double). Row 2: log 3.
  CHECK(mean == Approx((0.0 + 2e30 + std::log(3.0)) / 3.0));
  auto g = loss.backward();
  for (float x : g) CHECK(std::isfinite(x));
  CHECK(g(0, 0) == 0.0f);             // p = 1 for the label
  CHECK(g(1, 1) == Approx(-1.0 / 3));  // p = 0 for the label
  CHECK(g(2, 2) == Approx((1.0 / 3 - 1.0) / 3));
}

TEST_CASE("Softmax cross-entropy rejects labels outside the outputs") {
  SoftmaxCrossEntropy<float> loss;
  Tensor<float> z(Shape{2, 10});
  const std::int32_t labels[] = {3, 10};
  CHECK_THROWS_WITH(loss.forward(z.view(), labels),
                    "SoftmaxCrossEntropy: label 10 of sample 1 is outside 0..9 (the model has 10 outputs)");
}

TEST_CASE("Adam matches three steps computed by hand") {
  Adam<double> adam(0.1, 0.9, 0.999, 1e-7);
  adam.prepare(2);
  double p[2] = {1.0, -2.0};
  const double grads[3][2] = {{0.5, -1.0}, {0.25, 2.0}, {-1.0, 0.0}};
  double m[2] = {0, 0}, v[2] = {0, 0}, expected[2] = {1.0, -2.0};
  for (int t = 1; t <= 3; ++t) {
    adam.step(p, grads[t - 1], 2);
    const double alpha = 0.1 * std::sqrt(1 - std::pow(0.999, t)) / (1 - std::pow(0.9, t));
    for (int i = 0; i < 2; ++i) {
      m[i] = 0.9 * m[i] + 0.1 * grads[t - 1][i];
      v[i] = 0.999 * v[i] + 0.001 * grads[t - 1][i] * grads[t - 1][i];
      expected[i] -= alpha * m[i] / (std::sqrt(v[i]) + 1e-7);
    }
    CHECK(p[0] == Approx(expected[0]).epsilon(1e-12));
    CHECK(p[1] == Approx(expected[1]).epsilon(1e-12));
  }
  // Step 1 with bias correction moves each weight by almost exactly lr.
  Adam<double> fresh(0.1);
  fresh.prepare(1);
  double q = 0, g = 123.0;
  fresh.step(&q, &g, 1);
  CHECK(q == Approx(-0.1).epsilon(1e-6));
  CHECK(fresh.iterations() == 1);
}

TEST_CASE("SGD with momentum matches Keras's update") {
  SGD<double> sgd(0.1, 0.9);
  sgd.prepare(1);
  double p = 1.0;
  const double g1 = 1.0, g2 = 0.5;
  sgd.step(&p, &g1, 1);  // v = -0.1, p = 0.9
  CHECK(p == Approx(0.9));
  sgd.step(&p, &g2, 1);  // v = -0.09 - 0.05 = -0.14, p = 0.76
  CHECK(p == Approx(0.76));
  SGD<double> nesterov(0.1, 0.9, true);
  nesterov.prepare(1);
  double q = 1.0;
  nesterov.step(&q, &g1, 1);  // v = -0.1, p += 0.9 * -0.1 - 0.1 = -0.19
  CHECK(q == Approx(0.81));
  CHECK_THROWS_WITH(SGD<double>(0.1, 1.5), Catch::Contains("momentum must be in [0, 1)"));
}

TEST_CASE("Optimizer configs keep small values exactly") {
  Adam<float> adam(1e-3, 0.9, 0.999, 1e-7);
  const LayerConfig c = adam.config();
  REQUIRE(c.size() == 4);
  CHECK(c[0].second == "0.001");
  CHECK(c[3].second == "1e-07");
  CHECK(number_text(0.1 + 0.2) == "0.30000000000000004");
}
