// Whole-model gradients: central differences of the mean loss through
// Sequential::compute_gradients, against the gradients it leaves in
// store().grads(), for a small CNN with every layer kind
//     Conv2D (fused ReLU, first layer: no input gradient) -> BatchNormalization
//     -> MaxPooling2D -> Dropout -> Conv2D (no bias) -> ReLU -> Flatten -> Dense
//     -> softmax cross-entropy,
// on each Conv2D algorithm, in double. The layers are checked one by one
// elsewhere (test_layer_*.cpp, test_layers_conv.cpp); this checks what only
// the chain shows: that each backward receives the gradient of its own output
// and the model stops where no input gradient is needed, while the first
// layer's weight gradients stay right.
//
// The error measure and the NaN rule are the public checker's
// (GradientComparison, check/gradient_check.hpp). Dropout's mask is replayed:
// its stream is restored before every forward, so every evaluation of the loss
// sees the same mask. The kinks are skipped on purpose rather than by a looser
// tolerance: the test first requires every ReLU input to be at least kMargin
// from 0 and every pooling window's maximum to lead the runner-up by kMargin
// (ties between units the ReLU switched off excepted: see smallest_pool_lead),
// far more than a step h moves any value.
#include <lamina/lamina.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "support.hpp"

using namespace lamina;
using kernels::Conv2DAlgorithm;

namespace {

constexpr double kStep = 1e-6;       // h of the central differences
constexpr double kTolerance = 1e-6;  // the public checker's defaults
constexpr double kFloor = 1e-2;
// A perturbation h of one parameter moves any value of the network by at most
// a few tens of h (fan-ins of 9 and 72 of values below 1, BatchNormalization's
// 1 / std): 1e-4 = 100 h keeps every central difference on one side of a kink.
constexpr double kMargin = 1e-4;

struct SmallCnn {
  Sequential<double> model{Shape{8, 8, 1}, 5};
  Conv2D<double>* conv1 = nullptr;
  Conv2D<double>* conv2 = nullptr;
  Dropout<double>* dropout = nullptr;

  explicit SmallCnn(Conv2DAlgorithm algorithm) {
    conv1 = &model.add<Conv2D>(8, 3, 1, Padding::same, Activation::relu);  // (N, 8, 8, 8)
    model.add<BatchNormalization>();
    model.add<MaxPooling2D>(2);  // (N, 4, 4, 8)
    dropout = &model.add<Dropout>(0.25);
    conv2 = &model.add<Conv2D>(8, 3, 1, Padding::same, Activation::none, /*use_bias=*/false);  // (N, 4, 4, 8)
    model.add<ReLU>();
    model.add<Flatten>();  // (N, 128)
    model.add<Dense>(3);   // (N, 3) logits
    // With 1 input channel and 8 filters the first layer runs the direct
    // kernels under automatic and direct; the second (8 channels in and out,
    // 3x3, stride 1) runs Winograd under automatic and winograd.
    conv1->set_algorithm(algorithm);
    conv2->set_algorithm(algorithm);
    model.compile(std::make_unique<SGD<double>>(0.1));
  }
};

// Values uniform in [-1, 1) for the images, labels cycling over the classes.
struct Batch {
  Tensor<double> x;  // (N, 8, 8, 1)
  std::vector<std::int32_t> labels;
};
Batch make_batch(std::size_t n, std::uint64_t seed) {
  Batch b{lamina_test::random_tensor<double>(Shape{n, 8, 8, 1}, seed), std::vector<std::int32_t>(n)};
  for (std::size_t i = 0; i < n; ++i) b.labels[i] = static_cast<std::int32_t>(i % 3);
  return b;
}

// The smallest |v| of a ReLU's input.
double smallest_magnitude(TensorView<const double> z) {
  double m = std::numeric_limits<double>::infinity();
  for (std::size_t i = 0; i < z.size(); ++i) m = std::min(m, std::abs(z[i]));
  return m;
}

// The smallest lead of a 2x2 stride-2 pooling window's maximum over the
// runner-up, on `a` (N, H, W, C) with even H and W. Units whose `relu_output`
// (same shape) is 0 are skipped against each other: in one channel they all
// hold the same function of the parameters (BatchNormalization of 0), so a
// tie between them is no kink: every one moves alike, and their upstream
// gradient is 0.
double smallest_pool_lead(TensorView<const double> a, TensorView<const double> relu_output) {
  const std::size_t N = a.dim(0), H = a.dim(1), W = a.dim(2), C = a.dim(3);
  double lead = std::numeric_limits<double>::infinity();
  for (std::size_t n = 0; n < N; ++n)
    for (std::size_t i = 0; i < H; i += 2)
      for (std::size_t j = 0; j < W; j += 2)
        for (std::size_t c = 0; c < C; ++c) {
          std::pair<double, bool> v[4];  // (value, inactive), in window order
          std::size_t k = 0;
          for (std::size_t di = 0; di < 2; ++di)
            for (std::size_t dj = 0; dj < 2; ++dj)
              v[k++] = {a(n, i + di, j + dj, c), relu_output(n, i + di, j + dj, c) == 0.0};
          std::sort(v, v + 4);
          for (std::size_t r = 3; r-- > 0;)
            if (!(v[r].second && v[3].second)) {  // the runner-up that can overtake the maximum
              lead = std::min(lead, v[3].first - v[r].first);
              break;
            }
        }
  return lead;
}

// Requires the batch to be away from every kink of the network as it stands:
// the first Conv2D's pre-activations (recomputed without its fused ReLU), the
// pooling windows of BatchNormalization's output, and the ReLU's input.
void require_away_from_kinks(SmallCnn& net, const Batch& batch, const Rng::Snapshot& mask_stream) {
  Conv2D<double> linear(8, 3, 1, Padding::same);  // conv1 without its ReLU
  ParameterStore<double> store = lamina_test::bind_alone<double>(linear, Shape{8, 8, 1});
  for (std::size_t p = 0; p < 2; ++p)
    std::copy(net.conv1->parameters()[p].data(), net.conv1->parameters()[p].data() + net.conv1->parameters()[p].size(),
              linear.parameters()[p].data());
  const double conv1_margin = smallest_magnitude(linear.forward(batch.x.view(), Mode::train));

  // The model's own layers, in training mode, with the mask of the check.
  net.dropout->rng()->restore(mask_stream);
  TensorView<const double> a = batch.x.view();
  Tensor<double> conv1_output;
  double pool_lead = 0.0, relu_margin = 0.0;
  for (std::size_t i = 0; i < net.model.size(); ++i) {
    if (i == 1) conv1_output = Tensor<double>::from(a);
    if (i == 2) pool_lead = smallest_pool_lead(a, conv1_output.view());  // MaxPooling2D's input
    if (i == 5) relu_margin = smallest_magnitude(a);  // ReLU's input
    a = net.model.layer(i).forward(a, Mode::train);
  }
  INFO("smallest |pre-activation| of the first Conv2D " << conv1_margin << ", smallest lead of a pooling maximum "
                                                        << pool_lead << ", smallest |input| of the ReLU "
                                                        << relu_margin << " (all must be >= " << kMargin
                                                        << "; if not, choose another seed)");
  REQUIRE(conv1_margin >= kMargin);
  REQUIRE(pool_lead >= kMargin);
  REQUIRE(relu_margin >= kMargin);
}

// Central differences of the mean loss at every trainable parameter, against
// the analytic gradients of one compute_gradients.
GradCheckResult check_model_gradients(SmallCnn& net, const Batch& batch) {
  Sequential<double>& model = net.model;
  const Rng::Snapshot mask_stream = net.dropout->rng()->snapshot();
  require_away_from_kinks(net, batch, mask_stream);
  auto loss = [&]() {
    net.dropout->rng()->restore(mask_stream);
    return model.compute_gradients(batch.x.view(), batch.labels.data()).first;
  };
  loss();
  const Tensor<double> analytic = model.store().grads();  // a copy: every loss() overwrites them

  GradientComparison comparison(kTolerance, kFloor);
  for (const auto& entry : model.store().entries()) {
    if (!entry.trainable) continue;
    const std::string tensor = entry.layer->describe() + " " + entry.spec.name;
    for (std::size_t i = 0; i < entry.spec.shape.size(); ++i) {
      double& z = model.store().params()[entry.offset + i];
      comparison.compare(GradientOf::parameter, tensor, i, analytic[entry.offset + i],
                         central_difference(z, kStep, loss));
    }
  }
  return comparison.result("the small CNN");
}

}  // namespace

TEST_CASE("Whole-model gradients of a small CNN match central differences of the loss, on each Conv2D algorithm") {
  const Conv2DAlgorithm algorithm =
      GENERATE(Conv2DAlgorithm::automatic, Conv2DAlgorithm::im2col, Conv2DAlgorithm::winograd,
               Conv2DAlgorithm::direct);
  INFO("Conv2D algorithm " << kernels::to_string(algorithm));
  SmallCnn net(algorithm);
  const Batch batch = make_batch(2, 11);

  // The first layer has data for its input: no input gradient, but weights.
  CHECK_FALSE(net.model.layer(0).input_gradient_needed());
  CHECK(net.model.layer(4).input_gradient_needed());
  REQUIRE(net.conv2->parameter_specs().size() == 1);  // use_bias = false: a kernel only

  const GradCheckResult r = check_model_gradients(net, batch);
  INFO(r.report());
  CHECK(r.passed);
  // Every trainable parameter was checked: conv1 3*3*1*8 + 8, BatchNormalization
  // 8 + 8, conv2 3*3*8*8, Dense 128*3 + 3.
  CHECK(r.positions_checked == (72 + 8) + (8 + 8) + 576 + (384 + 3));
  CHECK(r.positions_checked == net.model.trainable_parameter_count());
  // The mask the check replayed did drop units: Dropout was not an identity.
  std::size_t dropped = 0;
  for (double m : net.dropout->mask()) dropped += m == 0.0;
  CHECK(dropped > 0);
  CHECK(dropped < net.dropout->mask().size());
}

TEST_CASE("The whole-model check fails when one layer's gradient is off") {
  // The same model and check with the Dense kernel's largest gradient made 1%
  // too large after compute_gradients: the comparison must see it, so the
  // tolerance above is known to be able to fail on this model.
  SmallCnn net(Conv2DAlgorithm::im2col);
  const Batch batch = make_batch(2, 11);
  const Rng::Snapshot mask_stream = net.dropout->rng()->snapshot();
  auto loss = [&]() {
    net.dropout->rng()->restore(mask_stream);
    return net.model.compute_gradients(batch.x.view(), batch.labels.data()).first;
  };
  loss();
  Tensor<double> analytic = net.model.store().grads();
  const auto& entries = net.model.store().entries();
  const auto dense_kernel = std::find_if(entries.begin(), entries.end(), [&](const auto& e) {
    return e.trainable && e.layer == &net.model.layer(7) && e.spec.name == "kernel";
  });
  REQUIRE(dense_kernel != entries.end());
  const std::size_t count = dense_kernel->spec.shape.size();
  const double* first = analytic.data() + dense_kernel->offset;
  const std::size_t largest = static_cast<std::size_t>(
      std::max_element(first, first + count, [](double a, double b) { return std::abs(a) < std::abs(b); }) - first);
  REQUIRE(std::abs(first[largest]) > kFloor);  // a relative error of 1%, above the floor
  analytic[dense_kernel->offset + largest] *= 1.01;
  GradientComparison comparison(kTolerance, kFloor);
  for (std::size_t i = 0; i < count; ++i)
    comparison.compare(GradientOf::parameter, "Dense kernel", i, analytic[dense_kernel->offset + i],
                       central_difference(net.model.store().params()[dense_kernel->offset + i], kStep, loss));
  const GradCheckResult r = comparison.result("the small CNN with a wrong Dense gradient");
  INFO(r.report());
  CHECK_FALSE(r.passed);
  CHECK(r.worst.index == largest);
  CHECK(r.max_error == Approx(0.01 / 1.01).epsilon(1e-3));
}

TEST_CASE("Sequential switches off the input gradient of layers that only parameter-free layers separate from the "
          "data, and their backward returns nothing") {
  Sequential<float> model(Shape{4, 4, 1}, 1);
  model.add<Flatten>();
  model.add<Dense>(8);
  model.add<ReLU>();
  model.add<Dense>(3);
  CHECK_FALSE(model.layer(0).input_gradient_needed());
  CHECK_FALSE(model.layer(1).input_gradient_needed());
  CHECK(model.layer(2).input_gradient_needed());
  CHECK(model.layer(3).input_gradient_needed());
  model.compile(std::make_unique<SGD<float>>(0.1));
  Tensor<float> x(Shape{2, 4, 4, 1}, 0.5f);
  const std::int32_t y[] = {0, 2};
  const auto [loss, correct] = model.train_step(x.view(), y);  // backward stops at layer 1
  CHECK(std::isfinite(loss));
  CHECK(correct <= 2);
  CHECK(model.layer(1).backward(Tensor<float>(Shape{2, 8}).view()).empty());
}
