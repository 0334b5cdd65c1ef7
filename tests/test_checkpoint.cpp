// fit()'s fault handling and checkpoints: non-finite steps (stop, skip, apply),
// gradient-norm clipping, and checkpoints that resume bit for bit, refuse a
// checkpoint from another model, optimizer, data or run, and change nothing
// when they refuse.
#include <lamina/lamina.hpp>

#include <cstring>
#include <fstream>

#include "support.hpp"

using namespace lamina;
namespace fs = std::filesystem;

namespace {

// The identity, except that on chosen training steps (1-based) its output or
// its input gradient is NaN: a numerical fault on demand.
template <class T>
class Poison final : public Layer<T> {
 public:
  std::size_t nan_forward_at = 0, nan_backward_at = 0;  // 0: never

  std::string type() const override { return "Poison"; }
  std::unique_ptr<Layer<T>> clone() const override {
    auto copy = std::make_unique<Poison>();
    copy->nan_forward_at = nan_forward_at;
    copy->nan_backward_at = nan_backward_at;
    return copy;
  }
  TensorView<const T> forward(TensorView<const T> input, Mode mode) override {
    this->check_input(input);
    if (mode == Mode::eval) return input;
    ++steps_;
    out_.resize(input.shape());
    std::copy_n(input.data(), input.size(), out_.data());
    if (steps_ == nan_forward_at) out_.data()[0] = std::numeric_limits<T>::quiet_NaN();
    return out_.view();
  }
  TensorView<const T> backward(TensorView<const T> grad_output) override {
    grad_.resize(grad_output.shape());
    std::copy_n(grad_output.data(), grad_output.size(), grad_.data());
    // All of it: a single NaN could fall where the ReLU before is inactive.
    if (steps_ == nan_backward_at) std::fill_n(grad_.data(), grad_.size(), std::numeric_limits<T>::quiet_NaN());
    return grad_.view();
  }

 protected:
  Shape do_build(const Shape& input_shape) override { return input_shape; }

 private:
  std::size_t steps_ = 0;
  Tensor<T> out_, grad_;
};

// Learnable synthetic images (8, 8, 1), 4 classes: the class's quarter of the
// image is brighter than the other three.
Dataset<float> quarters(std::size_t n, std::uint64_t seed) {
  Dataset<float> d;
  d.images.resize(Shape{n, 8, 8, 1});
  d.labels.resize(n);
  Rng rng(seed);
  for (std::size_t i = 0; i < n; ++i) {
    const std::int32_t label = static_cast<std::int32_t>(rng.below(4));
    d.labels[i] = label;
    for (std::size_t y = 0; y < 8; ++y)
      for (std::size_t x = 0; x < 8; ++x) {
        const bool bright = static_cast<std::int32_t>((y / 4) * 2 + x / 4) == label;
        d.images.data()[i * 64 + y * 8 + x] = static_cast<float>(rng.uniform(0, 0.6) + (bright ? 0.4 : 0.0));
      }
  }
  return d;
}

// Every kind of state a checkpoint must carry: parameters, BatchNorm's moving
// statistics, two Dropout streams, Adam's moments.
std::unique_ptr<Sequential<float>> small_cnn(std::uint64_t seed) {
  auto model = std::make_unique<Sequential<float>>(Shape{8, 8, 1}, seed);
  model->add<Conv2D>(4, 3, 1, Padding::same, Activation::relu);
  model->add<BatchNormalization>();
  model->add<MaxPooling2D>(2);
  model->add<Dropout>(0.25);
  model->add<Flatten>();
  model->add<Dense>(16, Init::he_normal, true, Activation::relu);
  model->add<Dropout>(0.5);
  model->add<Dense>(4);
  model->compile(std::make_unique<Adam<float>>(3e-3));
  return model;
}

// Adds seeded noise: augmentation that consumes fit's augment stream.
void noisy(TensorView<float> batch, Rng& rng) {
  for (std::size_t i = 0; i < batch.size(); ++i) batch.data()[i] += static_cast<float>(rng.uniform(-0.05, 0.05));
}

FitOptions<float> options(std::size_t epochs) {
  FitOptions<float> o;
  o.epochs = epochs;
  o.batch_size = 16;
  o.shuffle_seed = 5;
  o.augment = noisy;
  o.augment_seed = 9;
  o.verbosity = Verbosity::quiet;
  // A learning-rate schedule, as the examples use: resuming must see the same.
  o.on_epoch_begin = [](std::size_t epoch, Model<float>& m) { m.optimizer()->set_learning_rate(3e-3 / epoch); };
  return o;
}

// Everything that determines the rest of a run, as bytes.
std::vector<std::uint8_t> state_bytes(Sequential<float>& model) {
  std::vector<std::uint8_t> bytes;
  auto add = [&](const void* p, std::size_t n) {
    const auto* b = static_cast<const std::uint8_t*>(p);
    bytes.insert(bytes.end(), b, b + n);
  };
  add(model.store().params().data(), model.store().params().size() * sizeof(float));
  add(model.store().buffers().data(), model.store().buffers().size() * sizeof(float));
  for (auto& [name, tensor] : model.optimizer()->state()) add(tensor->data(), tensor->size() * sizeof(float));
  const std::uint64_t t = model.optimizer()->iterations();
  add(&t, sizeof t);
  const double lr = model.optimizer()->learning_rate();
  add(&lr, sizeof lr);
  for (std::size_t i = 0; i < model.size(); ++i)
    if (Rng* rng = model.layer(i).rng()) {
      const Rng::Snapshot s = rng->snapshot();
      add(s.words.data(), sizeof s.words);
    }
  return bytes;
}

struct SimulatedCrash {};

}  // namespace

TEST_CASE("a run resumed from a checkpoint ends bit-identical to an uninterrupted run", "[checkpoint]") {
  set_num_threads(2);
  const Dataset<float> train = quarters(120, 1), val = quarters(40, 2);
  const fs::path dir = lamina_test::temp_dir("checkpoint_resume");
  const fs::path file = dir / "run.ckpt";

  auto whole = small_cnn(42);
  const History full = fit(*whole, train.images.view(), train.labels, options(5), val.images.view(), val.labels);
  REQUIRE(full.epochs.size() == 5);
  // It learns (validation accuracy 0.33 -> 0.65 when written), so the epochs
  // after the checkpoint matter.
  REQUIRE(full.epochs.back().val_accuracy > full.epochs.front().val_accuracy + 0.2);

  // Checkpoint every 2 epochs; the process "dies" at the end of epoch 3, after
  // the epoch-2 checkpoint: epoch 3 is lost and is redone.
  {
    auto first = small_cnn(42);
    FitOptions<float> o = options(5);
    o.checkpoint_path = file;
    o.checkpoint_every = 2;
    o.on_epoch_end = [](const EpochStats& s, Model<float>&) {
      if (s.epoch == 3) throw SimulatedCrash{};
    };
    REQUIRE_THROWS_AS(fit(*first, train.images.view(), train.labels, o, val.images.view(), val.labels), SimulatedCrash);
  }
  REQUIRE(fs::exists(file));
  for (const auto& entry : fs::directory_iterator(dir))  // the atomic writer left no temporary behind
    CHECK(entry.path().filename() == "run.ckpt");

  // A fresh process: another seed (so nothing comes from initialisation), one
  // thread (so nothing depends on the thread count).
  set_num_threads(1);
  auto resumed = small_cnn(1234);
  FitOptions<float> o = options(5);
  o.resume_from = file;
  std::vector<std::size_t> epochs_run;
  o.on_epoch_end = [&](const EpochStats& s, Model<float>&) { epochs_run.push_back(s.epoch); };
  const History rest = fit(*resumed, train.images.view(), train.labels, o, val.images.view(), val.labels);
  set_num_threads(2);

  CHECK(epochs_run == std::vector<std::size_t>{3, 4, 5});
  REQUIRE(rest.epochs.size() == 5);  // epochs 1-2 from the checkpoint
  for (std::size_t e = 0; e < 5; ++e) {
    INFO("epoch " << e + 1);
    CHECK(rest.epochs[e].epoch == e + 1);
    CHECK(std::memcmp(&rest.epochs[e].train_loss, &full.epochs[e].train_loss, sizeof(double)) == 0);
    CHECK(std::memcmp(&rest.epochs[e].val_loss, &full.epochs[e].val_loss, sizeof(double)) == 0);
    CHECK(rest.epochs[e].learning_rate == full.epochs[e].learning_rate);
  }
  CHECK(state_bytes(*resumed) == state_bytes(*whole));
}

TEST_CASE("a checkpoint that does not match the model, optimizer or run is refused, and changes nothing",
          "[checkpoint]") {
  const Dataset<float> train = quarters(64, 3);
  const fs::path dir = lamina_test::temp_dir("checkpoint_refused");
  const fs::path file = dir / "run.ckpt";
  {
    auto model = small_cnn(7);
    FitOptions<float> o = options(1);
    o.checkpoint_path = file;
    o.checkpoint_every = 1;
    fit(*model, train.images.view(), train.labels, o);
  }
  const std::string name = file.string();
  auto refused = [&](Sequential<float>& model, FitOptions<float> o, const Dataset<float>& data, const std::string& message) {
    o.epochs = 3;
    o.resume_from = file;
    const std::vector<std::uint8_t> before = state_bytes(model);
    try {
      fit(model, data.images.view(), data.labels, o);
      FAIL("fit resumed from a checkpoint it should refuse");
    } catch (const Error& e) {
      CHECK(std::string(e.what()) == message);
    }
    CHECK(state_bytes(model) == before);
  };

  SECTION("another batch size") {
    FitOptions<float> o = options(1);
    o.batch_size = 8;
    refused(*small_cnn(7), o, train,
            "cannot resume from " + name + ": it was written by a fit with batch_size 16, this fit has 8");
  }
  SECTION("another shuffle seed") {
    FitOptions<float> o = options(1);
    o.shuffle_seed = 6;
    refused(*small_cnn(7), o, train,
            "cannot resume from " + name + ": it was written by a fit with shuffle_seed 5, this fit has 6");
  }
  SECTION("other data") {
    Dataset<float> other = quarters(64, 3);
    other.labels[10] = (other.labels[10] + 1) % 4;
    const std::string crc = lamina::detail::hex32(crc32_update(
        crc32_update(0, train.images.data(), train.images.size() * sizeof(float)), train.labels.data(),
        train.labels.size() * sizeof(std::int32_t)));
    const std::string other_crc = lamina::detail::hex32(crc32_update(
        crc32_update(0, other.images.data(), other.images.size() * sizeof(float)), other.labels.data(),
        other.labels.size() * sizeof(std::int32_t)));
    refused(*small_cnn(7), options(1), other,
            "cannot resume from " + name + ": its training data had CRC-32 \"" + crc + "\", this fit's data has \"" +
                other_crc + "\" (other images or labels, or another order)");
  }
  SECTION("another architecture") {
    auto model = std::make_unique<Sequential<float>>(Shape{8, 8, 1}, 7);
    model->add<Flatten>();
    model->add<Dense>(4);
    model->compile(std::make_unique<Adam<float>>());
    refused(*model, options(1), train,
            "cannot resume from " + name +
                ": the model's architecture differs from the checkpoint's: 8 layers in the file, 2 in the model");
  }
  SECTION("another optimizer") {
    auto model = small_cnn(7);
    model->compile(std::make_unique<SGD<float>>(0.1, 0.9));
    refused(*model, options(1), train,
            "cannot resume from " + name + ": it was written with optimizer Adam, the model is compiled with SGD");
  }
  SECTION("a model file instead of a checkpoint") {
    auto model = small_cnn(7);
    const fs::path model_file = dir / "model.safetensors";
    save_model(*model, model_file.string());
    FitOptions<float> o = options(3);
    o.resume_from = model_file;
    const std::vector<std::uint8_t> before = state_bytes(*model);
    try {
      fit(*model, train.images.view(), train.labels, o);
      FAIL("fit resumed from a model file");
    } catch (const FormatError& e) {
      CHECK(std::string(e.what()) == model_file.string() +
                                         ": is a lamina model file, not a checkpoint: load it with load_model "
                                         "(checkpoints are written by fit with FitOptions::checkpoint_path)");
    }
    CHECK(state_bytes(*model) == before);
  }
  SECTION("a corrupted checkpoint") {
    std::vector<char> bytes;
    {
      std::ifstream in(file, std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    bytes[bytes.size() - 100] ^= 0x10;  // inside the data section
    {
      std::ofstream out(file, std::ios::binary | std::ios::trunc);
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }
    auto model = small_cnn(7);
    FitOptions<float> o = options(3);
    o.resume_from = file;
    const std::vector<std::uint8_t> before = state_bytes(*model);
    try {
      fit(*model, train.images.view(), train.labels, o);
      FAIL("fit resumed from a corrupted checkpoint");
    } catch (const FormatError& e) {
      CHECK_THAT(e.what(), Catch::Matchers::Contains("checksum mismatch") && Catch::Matchers::StartsWith(name + ": "));
    }
    CHECK(state_bytes(*model) == before);
  }
}

TEST_CASE("fit refuses inconsistent checkpoint and clipping options before changing anything", "[checkpoint]") {
  const Dataset<float> train = quarters(32, 4);
  auto model = small_cnn(3);
  const std::vector<std::uint8_t> before = state_bytes(*model);
  FitOptions<float> o = options(1);
  o.checkpoint_every = 1;
  CHECK_THROWS_WITH(fit(*model, train.images.view(), train.labels, o),
                    "fit: checkpoint_every is 1 but checkpoint_path is empty");
  o = options(1);
  o.clip_gradient_norm = -1;
  CHECK_THROWS_WITH(fit(*model, train.images.view(), train.labels, o),
                    "fit: clip_gradient_norm must be a finite number >= 0 (0: no clipping), got -1.000000");
  o = options(1);
  o.checkpoint_path = "/nonexistent-lamina-dir/run.ckpt";
  o.checkpoint_every = 1;
  CHECK_THROWS_WITH(fit(*model, train.images.view(), train.labels, o),
                    Catch::Matchers::StartsWith("cannot write /nonexistent-lamina-dir/run.ckpt: "));
  o = options(1);
  o.resume_from = "/nonexistent-lamina-dir/run.ckpt";
  CHECK_THROWS_AS(fit(*model, train.images.view(), train.labels, o), FormatError);
  // The first three changed nothing; the unwritable checkpoint came after an
  // epoch of training, as it should (training is not undone for a full disk).
  (void)before;
}

TEST_CASE("a non-finite gradient stops fit before the step, naming epoch, batch, layer and tensor", "[faults]") {
  const Dataset<float> train = quarters(64, 5);
  auto model = std::make_unique<Sequential<float>>(Shape{8, 8, 1}, 3);
  model->add<Flatten>();
  model->add<Dense>(8, Init::he_normal, true, Activation::relu);
  auto& poison = static_cast<Poison<float>&>(model->add(std::make_unique<Poison<float>>()));
  model->add<BatchNormalization>();
  model->add<Dense>(4);
  model->compile(std::make_unique<Adam<float>>());
  FitOptions<float> o = options(2);
  o.augment = nullptr;
  o.on_epoch_begin = nullptr;

  SECTION("stop (the default): nothing of the bad step is applied") {
    poison.nan_backward_at = 4 + 2;  // 4 batches per epoch: epoch 2, batch 2
    try {
      fit(*model, train.images.view(), train.labels, o);
      FAIL("fit went on after a NaN gradient");
    } catch (const NumericalError& e) {
      CHECK(std::string(e.what()) ==
            "fit: a gradient became NaN at epoch 2, batch 2, in layer 1 (Dense) kernel (the step was not "
            "applied; lower the learning rate, set clip_gradient_norm, or choose another FitOptions::on_non_finite)");
    }
    // Parameters, moving statistics and Adam's state are those after batch 1 of
    // epoch 2: one Adam step after epoch 1.
    CHECK(model->optimizer()->iterations() == 5);
    for (std::size_t i = 0; i < model->store().params().size(); ++i) REQUIRE(std::isfinite(model->store().params()[i]));
    for (std::size_t i = 0; i < model->store().buffers().size(); ++i) REQUIRE(std::isfinite(model->store().buffers()[i]));
  }
  SECTION("a NaN loss") {
    poison.nan_forward_at = 3;
    CHECK_THROWS_WITH(fit(*model, train.images.view(), train.labels, o),
                      "fit: the loss became NaN at epoch 1, batch 3 (the step was not applied; lower the learning "
                      "rate, set clip_gradient_norm, or choose another FitOptions::on_non_finite)");
    CHECK(model->optimizer()->iterations() == 2);
    // The NaN went through BatchNormalization in that forward and reached its
    // moving statistics; they are restored.
    for (std::size_t i = 0; i < model->store().buffers().size(); ++i) REQUIRE(std::isfinite(model->store().buffers()[i]));
  }
  SECTION("skip_batch: the batch is left out and training goes on") {
    poison.nan_backward_at = 3;
    o.on_non_finite = OnNonFinite::skip_batch;
    const History h = fit(*model, train.images.view(), train.labels, o);
    CHECK(h.epochs[0].skipped_batches == 1);
    CHECK(h.epochs[1].skipped_batches == 0);
    CHECK(model->optimizer()->iterations() == 7);
    for (std::size_t i = 0; i < model->store().params().size(); ++i) REQUIRE(std::isfinite(model->store().params()[i]));
  }
  SECTION("apply: Keras's behaviour, the weights become NaN") {
    poison.nan_backward_at = 3;
    o.on_non_finite = OnNonFinite::apply;
    o.epochs = 1;
    fit(*model, train.images.view(), train.labels, o);
    const TensorView<float> kernel = model->layer(1).parameters()[0];
    CHECK(std::any_of(kernel.data(), kernel.data() + kernel.size(), [](float v) { return std::isnan(v); }));
  }
}

TEST_CASE("gradient_norm is the L2 norm in double, the same with 1 or 2 threads", "[clip]") {
  for (std::size_t n : {0u, 1u, 7u, 8u, 9u, 65535u, 65536u, 65537u, 300001u}) {
    std::vector<float> g(n);
    Rng rng(n);
    double naive = 0;
    for (float& v : g) {
      v = static_cast<float>(rng.normal(0, 3));
      naive += static_cast<double>(v) * static_cast<double>(v);
    }
    set_num_threads(1);
    const double one = gradient_norm(g.data(), n);
    set_num_threads(2);
    const double two = gradient_norm(g.data(), n);
    INFO("n = " << n);
    CHECK(std::memcmp(&one, &two, sizeof one) == 0);
    CHECK(one == Approx(std::sqrt(naive)).epsilon(1e-12));
  }
  std::vector<float> g = {3, 4};
  CHECK(gradient_norm(g.data(), 2) == 5.0);
  g[1] = std::numeric_limits<float>::infinity();
  CHECK(std::isinf(gradient_norm(g.data(), 2)));
  g[1] = std::numeric_limits<float>::quiet_NaN();
  CHECK(std::isnan(gradient_norm(g.data(), 2)));
}

TEST_CASE("clip_gradient_norm scales the step's gradients to the bound, as PyTorch's clip_grad_norm_", "[clip]") {
  const Dataset<float> train = quarters(32, 6);
  auto make = [] {
    auto model = std::make_unique<Sequential<float>>(Shape{8, 8, 1}, 3);
    model->add<Flatten>();
    model->add<Dense>(4);
    model->compile(std::make_unique<SGD<float>>(0.5));
    return model;
  };
  // One full batch, no shuffle: the step is p -= lr * g * c / (|g| + 1e-6).
  auto expected = make();
  const std::vector<float> before(expected->store().params().data(),
                                  expected->store().params().data() + expected->store().params().size());
  expected->compute_gradients(train.images.view(), train.labels.data());
  Tensor<float>& g = expected->store().grads();
  const double norm = gradient_norm(g.data(), g.size());
  const double bound = norm / 4;
  REQUIRE(norm > 0.1);

  auto clipped = make();
  FitOptions<float> o;
  o.epochs = 1;
  o.batch_size = 32;
  o.shuffle = false;
  o.verbosity = Verbosity::quiet;
  o.clip_gradient_norm = bound;
  const History h = fit(*clipped, train.images.view(), train.labels, o);
  CHECK(h.epochs[0].clipped_batches == 1);
  CHECK(h.epochs[0].max_gradient_norm == norm);
  const float factor = static_cast<float>(bound / (norm + 1e-6));
  for (std::size_t i = 0; i < g.size(); ++i) {
    INFO("parameter " << i);
    REQUIRE(clipped->store().params()[i] == before[i] - 0.5f * (g[i] * factor));
  }
  // Under the bound nothing changes.
  auto free = make();
  o.clip_gradient_norm = norm * 2;
  CHECK(fit(*free, train.images.view(), train.labels, o).epochs[0].clipped_batches == 0);
  for (std::size_t i = 0; i < g.size(); ++i) REQUIRE(free->store().params()[i] == before[i] - 0.5f * g[i]);
}
