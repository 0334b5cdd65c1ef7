// A user's program: trains a tiny model on XOR-like data through the public API.
#include <lamina/lamina.hpp>

#include <cstdio>

// The package's switches travel with its target: a package configured with
// LAMINA_ENABLE_CHECKS=ON must compile this program with LAMINA_CHECKS=1.
#if defined(EXPECT_CHECKS)
static_assert(LAMINA_CHECKS == EXPECT_CHECKS, "LAMINA_CHECKS did not travel with lamina::lamina");
#endif

int main() {
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
  model.fit(x.view(), y, options);
  const Evaluation e = model.evaluate(x.view(), y);
  std::printf("consumer: XOR accuracy %.2f, LAMINA_CHECKS=%d\n", e.accuracy, LAMINA_CHECKS);
  return e.accuracy == 1.0 ? 0 : 1;
}
