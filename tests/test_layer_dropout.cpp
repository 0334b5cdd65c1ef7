// Dropout: the rate checks, eval as the identity, the mask's rate, scale and
// definition (counter-based draws), seeds, streams and thread counts,
// gradients through the public checker (the mask replayed), and shape errors
// that name the culprit.
#include <lamina/layers/dropout.hpp>
#include <lamina/check/gradient_check.hpp>

#include <cmath>
#include <cstdint>

#include "support.hpp"

using namespace lamina;
using lamina_test::random_tensor;
using lamina_test::same_bits;
using lamina_test::ThreadCountGuard;

TEST_CASE("Dropout: config and rate checks") {
  Dropout<float> d(0.25);
  CHECK(d.type() == "Dropout");
  CHECK(d.config() == LayerConfig{{"rate", "0.25"}, {"seed", "none"}});
  CHECK(Dropout<float>(0.5, 42).config() == LayerConfig{{"rate", "0.5"}, {"seed", "42"}});
  CHECK(d.rng() != nullptr);
  CHECK_THROWS_AS(Dropout<float>(1.0), ArgumentError);
  CHECK_THROWS_AS(Dropout<float>(-0.1), ArgumentError);
  CHECK_THROWS_AS(Dropout<float>(std::nan("")), ArgumentError);
  CHECK_THROWS_WITH(Dropout<float>(1.5), "Dropout: rate must be in [0, 1), got 1.5");
}

TEST_CASE("Dropout eval is the identity, bit for bit, both ways") {
  Dropout<float> d(0.5, 3);
  d.build(Shape{6, 7});
  Tensor<float> x = random_tensor<float>(Shape{5, 6, 7}, 1);
  x[3] = -0.0f;
  x[4] = std::nanf("");
  const Rng::Snapshot before = d.rng()->snapshot();
  auto y = d.forward(x.view(), Mode::eval);
  CHECK(same_bits<float>(y, x.view()));
  Tensor<float> g = random_tensor<float>(Shape{5, 6, 7}, 2);
  CHECK(same_bits<float>(d.backward(g.view()), g.view()));
  // Evaluation does not consume the stream.
  const Rng::Snapshot after = d.rng()->snapshot();
  CHECK(before.words == after.words);
}

TEST_CASE("Dropout train: drops about `rate`, scales the rest by 1/(1-rate), backward uses the mask") {
  const double rate = 0.3;
  Dropout<float> d(rate, 7);
  d.build(Shape{1000});
  Tensor<float> x = random_tensor<float>(Shape{200, 1000}, 8, 0.5, 2.0);  // no zeros
  auto y = d.forward(x.view(), Mode::train);
  const float scale = static_cast<float>(1.0 / (1.0 - rate));
  std::size_t dropped = 0;
  bool scaled_exactly = true;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (y[i] == 0.0f)
      ++dropped;
    else if (y[i] != x[i] * scale)
      scaled_exactly = false;
  }
  CHECK(scaled_exactly);
  // 200 000 Bernoulli(0.3) draws: standard deviation of the fraction ~0.001; allow 5.
  const double fraction = static_cast<double>(dropped) / x.size();
  CHECK(fraction == Approx(rate).margin(0.005));
  // The mask is what was applied, and backward applies it again.
  Tensor<float> g = random_tensor<float>(x.shape(), 9);
  auto dx = d.backward(g.view());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const float m = y[i] == 0.0f ? 0.0f : scale;
    if (d.mask()[i] != m || dx[i] != g[i] * m) {
      FAIL_CHECK("mask or gradient differs at " << i);
      break;
    }
  }
}

TEST_CASE("Dropout: seeds, streams and threads") {
  const Shape shape{64, 700};  // several chunks
  REQUIRE(shape.size() > 2 * Dropout<float>::kElementsPerChunk);
  const Tensor<float> x = random_tensor<float>(shape, 1, 0.5, 1.5);
  auto mask_of = [&](Dropout<float>& d) {
    if (!d.built()) d.build(shape.drop_first());
    d.forward(x.view(), Mode::train);
    return Tensor<float>::from(d.mask());
  };
  Dropout<float> a(0.5, 123), b(0.5, 123), c(0.5, 124);
  const Tensor<float> ma = mask_of(a);
  CHECK(same_bits<float>(ma.view(), mask_of(b).view()));
  CHECK_FALSE(same_bits<float>(ma.view(), mask_of(c).view()));
  // The stream advances: the next step draws another mask ...
  const Tensor<float> ma2 = mask_of(a);
  CHECK_FALSE(same_bits<float>(ma.view(), ma2.view()));
  // ... and restoring a snapshot replays it.
  Dropout<float> e(0.5, 123);
  const Rng::Snapshot start = e.rng()->snapshot();
  mask_of(e);
  e.rng()->restore(start);
  CHECK(same_bits<float>(ma.view(), mask_of(e).view()));
  // An explicit seed wins over initialize()'s rng and initialize() rewinds to it.
  Rng model_rng(555);
  a.initialize(model_rng);
  CHECK(same_bits<float>(ma.view(), mask_of(a).view()));

  // Without a seed, initialize() decides: equal rngs give equal masks, other rngs others.
  Dropout<float> f(0.5), g(0.5), h(0.5);
  Rng r1 = Rng(9).fork(2), r2 = Rng(9).fork(2), r3 = Rng(9).fork(3);
  f.initialize(r1);
  g.initialize(r2);
  h.initialize(r3);
  const Tensor<float> mf = mask_of(f);
  CHECK(same_bits<float>(mf.view(), mask_of(g).view()));
  CHECK_FALSE(same_bits<float>(mf.view(), mask_of(h).view()));
  CHECK(r1.snapshot().words == Rng(9).fork(2).snapshot().words);  // the caller's rng is untouched

  // The mask does not depend on the thread count.
  ThreadCountGuard guard;
  set_num_threads(1);
  Dropout<float> t1(0.4, 77);
  const Tensor<float> m1 = mask_of(t1);
  set_num_threads(2);
  Dropout<float> t2(0.4, 77);
  CHECK(same_bits<float>(m1.view(), mask_of(t2).view()));
}

TEST_CASE("Dropout: unit i is kept when the uniform of its counter-based draw is >= rate") {
  // The definition at the top of dropout.hpp, recomputed in double: the key is
  // the stream's next draw, the uniform (h >> 11) * 2^-53. Rates whose
  // threshold is not a whole number of 2^-53 steps check the integer compare.
  for (double rate : {0.25, 0.5, 0.3, 0.1 + 1e-17}) {
    INFO("rate " << rate);
    Dropout<float> d(rate, 99);
    d.build(Shape{3000});
    const Tensor<float> x = random_tensor<float>(Shape{7, 3000}, 5, 0.5, 1.5);
    Rng replay = *d.rng();
    const std::uint64_t key = replay.next_u64();
    d.forward(x.view(), Mode::train);
    const float scale = static_cast<float>(1.0 / (1.0 - rate));
    std::size_t mismatches = 0, kept = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double uniform = static_cast<double>(Dropout<float>::unit_draw(key, i) >> 11) * 0x1.0p-53;
      const float expected = uniform >= rate ? scale : 0.0f;
      if (d.mask()[i] != expected) ++mismatches;
      if (expected != 0.0f) ++kept;
    }
    CHECK(mismatches == 0);
    // 21000 units: the kept fraction is within 5 standard deviations of 1 - rate.
    const double p = 1.0 - rate, sd = std::sqrt(p * rate / 21000.0);
    CHECK(std::fabs(double(kept) / 21000.0 - p) < 5 * sd);
  }
}

TEST_CASE("Dropout: rate 0 keeps everything") {
  Dropout<double> d(0.0, 1);
  d.build(Shape{5});
  Tensor<double> x = random_tensor<double>(Shape{3, 5}, 4);
  CHECK(same_bits<double>(d.forward(x.view(), Mode::train), x.view()));
}

TEST_CASE("Gradient checks: Dropout") {
  SECTION("train (the checker replays the same mask)") {
    Dropout<double> d(0.4);
    auto r = check_gradients(d, Shape{4, 3, 3, 2});
    INFO(r.report());
    CHECK(r.passed);
    // The mask the check used did drop units: the check was not of an identity.
    std::size_t zeros = 0;
    for (double m : d.mask()) zeros += m == 0.0;
    CHECK(zeros > 0);
    CHECK(zeros < d.mask().size());
  }
  SECTION("eval") {
    Dropout<double> d(0.4, 5);
    GradCheckOptions o;
    o.mode = Mode::eval;
    auto r = check_gradients(d, Shape{3, 8}, o);
    INFO(r.report());
    CHECK(r.passed);
  }
}

TEST_CASE("Dropout: shape errors name the layer and the shapes") {
  Dropout<float> d(0.5);
  d.build(Shape{10});
  Tensor<float> wrong(Shape{2, 11});
  CHECK_THROWS_WITH(d.forward(wrong.view(), Mode::train), "layer ? (Dropout): expects input (N, 10), got (2, 11)");
  Tensor<float> x(Shape{2, 10}, 1.0f);
  d.forward(x.view(), Mode::train);
  Tensor<float> bad_grad(Shape{3, 10});
  CHECK_THROWS_WITH(d.backward(bad_grad.view()),
                    "layer ? (Dropout): backward expects a gradient of shape (2, 10) (the last forward's output), "
                    "got (3, 10)");
}
