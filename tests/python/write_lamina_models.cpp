// Writes what tests/python/check_pytorch_model.py compares PyTorch against:
//   <dir>/images.u8               N synthetic 28x28 images, one byte per pixel
//   <dir>/mlp.safetensors         the MLP of docs/model-files.md, saved by save_model
//   <dir>/mlp_probabilities.f32   its predict() on the images, (N, 10) little-endian float32
//   <dir>/cnn.safetensors         Conv2D(8, 3x3, same, ReLU), BatchNormalization,
//   <dir>/cnn_probabilities.f32     MaxPooling2D(2), Flatten, Dense(10): the layouts
//                                   the document's porting notes describe
// The images belong to ten synthetic classes (noisy copies of ten random
// patterns), and each model is trained on them for a few epochs so that it
// predicts many classes. Before training every parameter and moving statistic
// is drawn at random (biases and statistics too, which initialization leaves
// at 0 and 1), so that a tensor ported to the wrong place or in the wrong
// order changes the predictions.
#include <lamina/lamina.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace {

constexpr std::size_t kImages = 256;

template <class Values>
void write_bytes(const std::filesystem::path& path, const Values& values, std::size_t bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(values), static_cast<std::streamsize>(bytes));
  if (!out) throw lamina::Error("cannot write " + path.string());
}

// Redraws every parameter and buffer of the built model: uniform in
// [-scale, scale] for parameters, moving means in [-0.5, 0.5], moving
// variances in [0.5, 1.5].
void randomize(lamina::Sequential<float>& model, lamina::Rng& rng) {
  for (std::size_t i = 0; i < model.size(); ++i) {
    lamina::Layer<float>& layer = model.layer(i);
    for (const lamina::TensorView<float>& p : layer.parameters()) {
      const double scale = 1.0 / std::sqrt(static_cast<double>(p.size()) / static_cast<double>(p.dim(p.rank() - 1)));
      for (std::size_t k = 0; k < p.size(); ++k) p[k] = static_cast<float>(rng.uniform(-scale, scale));
    }
    const auto& buffers = layer.buffers();
    for (std::size_t b = 0; b < buffers.size(); ++b)
      for (std::size_t k = 0; k < buffers[b].size(); ++k)
        buffers[b][k] = static_cast<float>(b == 0 ? rng.uniform(-0.5, 0.5) : rng.uniform(0.5, 1.5));
  }
}

// A few epochs of Adam on the synthetic classes, then saves the model and its predictions.
void train_and_save(lamina::Sequential<float>& model, lamina::Rng& rng, const lamina::Tensor<float>& x,
                    const std::vector<std::int32_t>& labels, const std::filesystem::path& dir, const std::string& name) {
  model.build();
  randomize(model, rng);
  model.compile(std::make_unique<lamina::Adam<float>>(3e-3));
  lamina::FitOptions<float> options;
  options.epochs = 4;
  options.batch_size = 32;
  options.verbosity = lamina::Verbosity::quiet;
  lamina::fit(model, x.cview(), labels, options);
  std::printf("%s: training accuracy %.3f\n", name.c_str(), model.evaluate(x.cview(), labels).accuracy);
  lamina::save_model(model, dir / (name + ".safetensors"));
  const lamina::Tensor<float> probabilities = model.predict(x.cview());  // (N, 10)
  write_bytes(dir / (name + "_probabilities.f32"), probabilities.data(), probabilities.size() * sizeof(float));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <output directory>\n", argv[0]);
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);
  lamina::Rng rng(2024);

  // Ten patterns of random strokes; image n is a noisy copy of pattern n % 10
  // (a pixel of the pattern kept with probability 0.85, any other pixel lit
  // with probability 0.05), at a random intensity.
  std::vector<std::uint8_t> patterns(10 * 28 * 28, 0);
  for (std::uint8_t& p : patterns) p = rng.uniform() < 0.2 ? 1 : 0;
  std::vector<std::uint8_t> pixels(kImages * 28 * 28, 0);
  std::vector<std::int32_t> labels(kImages);
  lamina::Tensor<float> x(lamina::Shape{kImages, 28, 28, 1});  // (N, H, W, C)
  for (std::size_t n = 0; n < kImages; ++n) {
    labels[n] = static_cast<std::int32_t>(n % 10);
    for (std::size_t k = 0; k < 28 * 28; ++k) {
      const std::size_t i = n * 28 * 28 + k;
      const bool on = patterns[(n % 10) * 28 * 28 + k] != 0 ? rng.uniform() < 0.85 : rng.uniform() < 0.05;
      if (on) pixels[i] = static_cast<std::uint8_t>(rng.uniform(64.0, 256.0));
      x[i] = static_cast<float>(pixels[i]) / 255.0f;  // as the document's reader computes it
    }
  }
  write_bytes(dir / "images.u8", pixels.data(), pixels.size());

  lamina::Sequential<float> mlp(lamina::Shape{28, 28, 1}, 42);
  mlp.add<lamina::Flatten>();
  mlp.add<lamina::Dense>(256, lamina::Init::he_normal);
  mlp.add<lamina::ReLU>();
  mlp.add<lamina::Dense>(10);
  train_and_save(mlp, rng, x, labels, dir, "mlp");

  lamina::Sequential<float> cnn(lamina::Shape{28, 28, 1}, 42);
  cnn.add<lamina::Conv2D>(8, 3, 1, lamina::Padding::same, lamina::Activation::relu);
  cnn.add<lamina::BatchNormalization>(0.5);  // moving statistics that follow the few training steps
  cnn.add<lamina::MaxPooling2D>(2);
  cnn.add<lamina::Flatten>();
  cnn.add<lamina::Dense>(10);
  train_and_save(cnn, rng, x, labels, dir, "cnn");
  std::printf("wrote %zu images, mlp and cnn models and their probabilities to %s\n", kImages, dir.string().c_str());
  return 0;
}
