// A user's library: trains a tiny model on XOR through lamina's public API.
#include "consumer/xor.hpp"

#include <lamina/lamina.hpp>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

// The package's switches travel with its target: a package configured with
// LAMINA_ENABLE_CHECKS=ON must compile this file with LAMINA_CHECKS=1.
#if defined(EXPECT_CHECKS)
static_assert(LAMINA_CHECKS == EXPECT_CHECKS, "LAMINA_CHECKS did not travel with lamina::lamina");
#endif

namespace consumer {

double xor_accuracy() {
  using namespace lamina;
  set_num_threads(1);
  Tensor<float> x(Shape{4, 2});
  const float points[] = {0, 0, 0, 1, 1, 0, 1, 1};
  std::copy(points, points + 8, x.data());
  std::vector<std::int32_t> y = {0, 1, 1, 0};

  Sequential<float> model(Shape{2}, 7);
  model.add<Dense>(16, Init::he_normal);
  model.add<ReLU>();
  model.add<Dense>(2);
  model.compile(std::make_unique<Adam<float>>(0.05));
  FitOptions<float> options;
  options.epochs = 200;
  options.batch_size = 4;
  options.verbosity = Verbosity::quiet;
  fit(model, x.cview(), y, options);
  return model.evaluate(x.cview(), y).accuracy;
}

int lamina_checks() { return LAMINA_CHECKS; }

}  // namespace consumer
