// Synthetic inputs for the report tests: digits drawn from a 5x7 bitmap font
// (so that a person looking at a screenshot sees digits), a real model's
// summary, a made-up history and predictions with known mistakes.
#pragma once

#include <lamina/lamina.hpp>
#include <lamina/report/html_report.hpp>

#include <memory>
#include <string>
#include <vector>

namespace lamina_test {

// 5x7 glyphs of 0..9, '#' = ink.
inline const char* const kGlyphs[10][7] = {
    {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."},
    {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."},
    {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"},
    {"#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."},
    {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."},
    {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."},
    {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."},
    {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."},
    {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."},
    {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."}};

/// `per_class` 28x28 images of each digit, interleaved (labels 0, 1, ..., 9, 0,
/// ...), each glyph scaled 3x, shifted by up to 3 pixels and with ink of varying
/// strength; seeded, so the same call gives the same pixels.
inline lamina::MnistData synthetic_digits(std::size_t per_class, std::uint64_t seed) {
  lamina::MnistData d;
  d.rows = d.cols = 28;
  d.count = per_class * 10;
  d.pixels.assign(d.count * 784, 0);  // (count, 28, 28)
  d.labels.resize(d.count);
  d.source = "synthetic digits <seed " + std::to_string(seed) + ">";
  lamina::Rng rng(seed);
  for (std::size_t i = 0; i < d.count; ++i) {
    const int digit = static_cast<int>(i % 10);
    d.labels[i] = digit;
    const std::size_t dy = 3 + rng.below(4), dx = 6 + rng.below(4);
    for (std::size_t gy = 0; gy < 7; ++gy)
      for (std::size_t gx = 0; gx < 5; ++gx) {
        if (kGlyphs[digit][gy][gx] != '#') continue;
        for (std::size_t y = 0; y < 3; ++y)
          for (std::size_t x = 0; x < 3; ++x)
            d.pixels[i * 784 + (dy + gy * 3 + y) * 28 + dx + gx * 3 + x] =
                static_cast<std::uint8_t>(150 + rng.below(106));
      }
  }
  return d;
}

/// Everything a report needs, kept alive together (ReportInputs holds views
/// into it, so it must not move: make it with make_synthetic_report).
struct SyntheticReport {
  lamina::MnistData data;                     // 10 per class + one conflicting duplicate
  lamina::Dataset<float> validation;          // (40, 28, 28, 1)
  lamina::Tensor<float> probabilities;        // (40, 10)
  std::vector<std::size_t> wrong;             // rows predicted wrongly
  lamina::ReportInputs inputs;
};

inline std::unique_ptr<SyntheticReport> make_synthetic_report() {
  auto r = std::make_unique<SyntheticReport>();
  r->data = synthetic_digits(10, 7);
  // A copy of row 0 (a 0) labelled 6: a duplicate with conflicting labels.
  r->data.pixels.insert(r->data.pixels.end(), r->data.pixels.begin(), r->data.pixels.begin() + 784);
  r->data.labels.push_back(6);
  ++r->data.count;

  r->validation = lamina::to_dataset<float>(synthetic_digits(4, 11));
  const std::size_t n = r->validation.size();
  r->probabilities.resize(lamina::Shape{n, 10});
  // Row i predicts its label, except rows 3, 10, 17, ... which predict label + 1;
  // the confidence varies from row to row, the rest is spread evenly.
  for (std::size_t i = 0; i < n; ++i) {
    const int label = r->validation.labels[i];
    const bool wrong = i % 7 == 3;
    if (wrong) r->wrong.push_back(i);
    const int predicted = wrong ? (label + 1) % 10 : label;
    const float confidence = 0.5f + 0.45f * static_cast<float>((i * 37) % 100) / 100.0f;
    for (int c = 0; c < 10; ++c)
      r->probabilities(i, static_cast<std::size_t>(c)) = c == predicted ? confidence : (1.0f - confidence) / 9.0f;
  }

  lamina::Sequential<float> model(lamina::Shape{28, 28, 1}, 1);
  model.add<lamina::Flatten>();
  model.add<lamina::Dense>(32, lamina::Init::he_normal);
  model.add<lamina::ReLU>();
  model.add<lamina::Dense>(10);

  lamina::ReportInputs& in = r->inputs;
  in.title = "Synthetic <report> & \"quotes\"";
  in.facts = {{"program", "test_report"}, {"note", "<b>not bold</b>"}, {"seed", "7"}};
  in.data = &r->data;
  in.model_summary = model.summary();
  const double loss[] = {1.9, 1.1, 0.7, 0.5, 0.42}, val_loss[] = {1.5, 0.95, 0.72, 0.61, 0.63};
  const double acc[] = {0.42, 0.68, 0.79, 0.86, 0.9}, val_acc[] = {0.55, 0.72, 0.8, 0.84, 0.85};
  for (std::size_t e = 0; e < 5; ++e) {
    lamina::EpochStats s;
    s.epoch = e + 1;
    s.train_loss = loss[e];
    s.train_accuracy = acc[e];
    s.has_validation = true;
    s.val_loss = val_loss[e];
    s.val_accuracy = val_acc[e];
    s.seconds = 1.5;
    s.train_images_per_second = 12345;
    s.learning_rate = 1e-3;
    in.history.epochs.push_back(s);
  }
  in.images = r->validation.images.view();
  in.labels = r->validation.labels;
  in.probabilities = r->probabilities.view();
  return r;
}

}  // namespace lamina_test
