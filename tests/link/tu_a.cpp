// Two translation units that both include the whole library: if any function
// defined in a header were not inline, linking them together would fail with a
// multiple-definition error.
#include <lamina/lamina.hpp>

float tu_a_forward() {
  lamina::Sequential<float> model(lamina::Shape{4}, 1);
  model.add<lamina::Dense>(3);
  model.build();
  lamina::Tensor<float> x(lamina::Shape{2, 4}, 1.0f);
  return model.predict(x.view())[0];
}
