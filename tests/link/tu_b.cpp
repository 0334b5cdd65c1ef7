#include <lamina/lamina.hpp>

#include <cstdio>

float tu_a_forward();

int main() {
  lamina::set_num_threads(1);
  lamina::Sequential<double> model(lamina::Shape{4}, 1);
  model.add<lamina::Dense>(3);
  model.build();
  lamina::Tensor<double> x(lamina::Shape{2, 4}, 1.0);
  const double b = model.predict(x.view())[0];
  const float a = tu_a_forward();
  // Same seed and architecture: both units see the same library.
  std::printf("tu_a %g tu_b %g\n", static_cast<double>(a), b);
  return (a > 0 && a < 1 && b > 0 && b < 1) ? 0 : 1;
}
