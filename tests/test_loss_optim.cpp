// Softmax cross-entropy (by hand, stable at extreme logits, and its gradient
// by central differences), Adam and SGD by hand, and the update plan (which
// thread updates which parameters).
#include <lamina/lamina.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "support.hpp"

using namespace lamina;
using lamina_test::same_bits;
using lamina_test::ThreadCountGuard;

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

TEST_CASE("Softmax cross-entropy's backward matches central differences of its forward") {
  // The mean loss over 5 rows of 4 logits, differentiated at every logit with
  // the public checker's measure (GradientComparison, its default tolerance
  // and floor). Logits up to +-8 give probabilities from about 1e-7 to 1:
  // both the saturated and the balanced parts of the softmax are checked.
  SoftmaxCrossEntropy<double> loss;
  Tensor<double> z = lamina_test::random_tensor<double>(Shape{5, 4}, 3, -8.0, 8.0);
  const std::int32_t labels[] = {0, 3, 1, 2, 3};
  loss.forward(z.view(), labels);
  const Tensor<double> analytic = Tensor<double>::from(loss.backward());
  REQUIRE(analytic.shape() == z.shape());
  GradientComparison comparison(1e-6, 1e-2);
  SoftmaxCrossEntropy<double> probe;  // the objective's own instance: analytic stays as computed
  for (std::size_t i = 0; i < z.size(); ++i)
    comparison.compare(GradientOf::input, "logits", i, analytic[i],
                       central_difference(z[i], 1e-6, [&]() { return probe.forward(z.view(), labels); }));
  const GradCheckResult r = comparison.result("SoftmaxCrossEntropy");
  INFO(r.report());
  CHECK(r.passed);
  CHECK(r.positions_checked == 20);
  // Each row of the gradient, softmax minus one-hot over N, sums to 0.
  for (std::size_t row = 0; row < 5; ++row) {
    double sum = 0;
    for (std::size_t j = 0; j < 4; ++j) sum += analytic(row, j);
    CHECK(sum == Approx(0.0).margin(1e-15));
  }
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

// ---- which thread updates which parameters (optim/update_plan.hpp) ----------

namespace {

// A model with a kernel the Dense layer splits (300 x 130 = 39,000 weights,
// 9 dW chunks of 36 rows, the last of 12; 130 columns are not a multiple of
// the SIMD width) between parameters that go to the default chunks.
Sequential<float> planned_model() {
  Sequential<float> model(Shape{6, 5, 10}, 3);
  model.add<Flatten>();
  model.add<Dense>(130, Init::he_normal, true, Activation::relu);
  model.add<Dense>(7);
  return model;
}

}  // namespace

TEST_CASE("The update plan covers every parameter once and follows Dense's dW chunks") {
  Sequential<float> model = planned_model();
  const UpdatePlan& plan = model.update_plan();
  ParameterStore<float>& store = model.store();
  REQUIRE(plan.elements == store.params().size());
  std::vector<int> covered(plan.elements, 0);
  for (const auto& phase : plan.phases)
    for (const UpdateBlock& block : phase) {
      REQUIRE(block.offset + block.length <= plan.elements);
      for (std::size_t i = block.offset; i < block.offset + block.length; ++i) ++covered[i];
    }
  for (const auto& entry : store.entries()) {
    if (!entry.trainable) continue;
    INFO(entry.layer->describe() << " " << entry.spec.name);
    for (std::size_t i = entry.offset; i < entry.offset + entry.spec.shape.size(); ++i) REQUIRE(covered[i] == 1);
  }
  CHECK(*std::max_element(covered.begin(), covered.end()) == 1);  // padding at most once too

  // The first Dense kernel: a phase of its own, chunk c = dW rows [36c, 36c + 36).
  const auto& kernel = store.entries()[0];
  REQUIRE(kernel.spec.name == "kernel");
  CHECK(model.layer(1).parameter_row_chunk(0) == 36);
  CHECK(model.layer(1).parameter_row_chunk(1) == 0);   // the bias: default chunks
  CHECK(model.layer(2).parameter_row_chunk(0) == 0);   // 130 x 7: too small to split
  CHECK(model.layer(0).parameter_row_chunk(0) == 0);   // the Layer default
  REQUIRE(plan.phases.size() == 2);
  const auto& phase = plan.phases[1];
  REQUIRE(phase.size() == 9);
  for (std::size_t c = 0; c < phase.size(); ++c) {
    CHECK(phase[c].offset == kernel.offset + c * 36 * 130);
    CHECK(phase[c].length == (c + 1 < phase.size() ? 36 * 130 : 12 * 130));
  }
  // The default chunks: contiguous, kUpdateChunk long but at the ends of ranges.
  for (const UpdateBlock& block : plan.phases[0]) CHECK(block.length <= kUpdateChunk);
  CHECK_THROWS_WITH(make_update_plan(store, 0), Catch::Contains("chunk must be at least 1"));
}

TEST_CASE("Adam and SGD give the same bits with an update plan as without one, with 1 and 2 threads") {
  ThreadCountGuard guard;
  // Blocks of odd lengths move elements between the SIMD lanes and the scalar
  // tail: the update must not depend on which path an element takes.
  const std::size_t n = 3001;
  UpdatePlan plan;
  plan.elements = n;
  plan.phases = {{{0, 37}, {37, 1000}, {1037, 5}}, {{1042, 1959}}};
  Rng rng(11);
  std::vector<float> start(n);
  for (float& v : start) v = static_cast<float>(rng.uniform(-1.0, 1.0));
  std::vector<std::vector<float>> grads(3, std::vector<float>(n));
  for (auto& g : grads)
    for (float& v : g) v = static_cast<float>(rng.uniform(-1.0, 1.0));
  auto run = [&](Optimizer<float>& opt, const UpdatePlan* with, int threads) {
    set_num_threads(threads);
    std::vector<float> p = start;
    opt.prepare(n);
    for (const auto& g : grads) {
      if (with)
        opt.step(p.data(), g.data(), n, *with);
      else
        opt.step(p.data(), g.data(), n);
    }
    set_num_threads(1);
    return p;
  };
  for (int kind = 0; kind < 2; ++kind) {
    auto make = [&]() -> std::unique_ptr<Optimizer<float>> {
      if (kind == 0) return std::make_unique<Adam<float>>(1e-2);
      return std::make_unique<SGD<float>>(0.1, 0.9, true);
    };
    auto a = make(), b = make(), c = make();
    INFO(a->name());
    const std::vector<float> plain = run(*a, nullptr, 1);
    const std::vector<float> planned1 = run(*b, &plan, 1);
    const std::vector<float> planned2 = run(*c, &plan, 2);
    CHECK(same_bits(plain, planned1));
    CHECK(same_bits(plain, planned2));
    CHECK(plain != start);  // and the steps did change the parameters
    // The state too (what checkpoints save).
    auto sa = a->state(), sc = c->state();
    for (std::size_t k = 0; k < sa.size(); ++k)
      CHECK(same_bits(sa[k].second->data(), sc[k].second->data(), n));
  }
  // A plan for another buffer is refused, naming both sizes.
  Adam<float> adam;
  adam.prepare(10);
  std::vector<float> p(10), g(10);
  CHECK_THROWS_WITH(adam.step(p.data(), g.data(), 10, plan),
                    Catch::Contains("10 parameters") && Catch::Contains("plan for 3001"));
}

TEST_CASE("A model trains to the same bits through train_step (with its plan) as through the plain optimizer step") {
  ThreadCountGuard guard;
  Sequential<float> planned = planned_model(), plain = planned_model();
  planned.compile(std::make_unique<Adam<float>>(1e-2));
  plain.compile(std::make_unique<Adam<float>>(1e-2));
  Rng rng(5);
  Tensor<float> x(Shape{40, 6, 5, 10});
  for (float& v : x) v = static_cast<float>(rng.uniform(0.0, 1.0));
  std::vector<std::int32_t> labels(40);
  for (auto& l : labels) l = static_cast<std::int32_t>(rng.next_u64() % 7);
  set_num_threads(2);
  for (int step = 0; step < 3; ++step) {
    planned.train_step(x.view(), labels.data());
    plain.compute_gradients(x.view(), labels.data());
    plain.optimizer()->step(plain.store().params().data(), plain.store().grads().data(),
                            plain.store().params().size());
  }
  set_num_threads(1);
  const auto& a = planned.store().params();
  const auto& b = plain.store().params();
  CHECK(same_bits(a, b));
}

TEST_CASE("gradient_norm and scale_gradients over an update plan") {
  ThreadCountGuard guard;
  Sequential<float> model = planned_model();
  const UpdatePlan& plan = model.update_plan();
  Tensor<float>& grads = model.store().grads();
  Rng rng(21);
  double naive = 0;
  for (const auto& entry : model.store().entries()) {  // padding stays zero
    if (!entry.trainable) continue;
    for (std::size_t i = entry.offset; i < entry.offset + entry.spec.shape.size(); ++i) {
      grads[i] = static_cast<float>(rng.normal(0, 3));
      naive += static_cast<double>(grads[i]) * static_cast<double>(grads[i]);
    }
  }
  set_num_threads(1);
  const double one = gradient_norm(grads.data(), plan);
  set_num_threads(2);
  const double two = gradient_norm(grads.data(), plan);
  CHECK(same_bits(&one, &two, 1));
  CHECK(one == Approx(std::sqrt(naive)).epsilon(1e-12));

  std::vector<float> scaled(grads.data(), grads.data() + grads.size());
  scale_gradients(scaled.data(), scaled.size(), 0.37);
  scale_gradients(grads.data(), plan, 0.37);
  set_num_threads(1);
  CHECK(same_bits(scaled.data(), grads.data(), scaled.size()));

  // Non-finite values anywhere in the plan show, in the split kernel too.
  const std::size_t in_kernel = model.store().entries()[0].offset + 5000;
  grads[in_kernel] = std::numeric_limits<float>::infinity();
  CHECK(std::isinf(gradient_norm(grads.data(), plan)));
  grads[in_kernel] = std::numeric_limits<float>::quiet_NaN();
  CHECK(std::isnan(gradient_norm(grads.data(), plan)));
}
