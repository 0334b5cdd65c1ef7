// The weight initialisers: He normal and Glorot uniform have the variance and
// the range their definitions give.
#include <lamina/layers/initializers.hpp>

#include <algorithm>
#include <cmath>

#include <lamina/core/rng.hpp>
#include <lamina/core/tensor.hpp>

#include "support.hpp"

using namespace lamina;

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
