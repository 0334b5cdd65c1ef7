// stratified_split's guarantees, to_dataset and subset.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "lamina/core/rng.hpp"
#include "lamina/data/data.hpp"
#include "support.hpp"

using lamina::ArgumentError;
using lamina::StratifiedSplit;

namespace {

// Checks everything stratified_split promises for (labels, fraction).
void check_split(const std::vector<std::int32_t>& labels, double fraction,
                 const StratifiedSplit& split) {
  const std::size_t n = labels.size();
  const std::size_t v = static_cast<std::size_t>(std::floor(static_cast<double>(n) * fraction + 0.5));
  INFO("N = " << n << ", fraction = " << fraction << ", V = " << v);
  REQUIRE(split.validation.size() == v);
  REQUIRE(split.train.size() == n - v);

  // Disjoint and covering: every index exactly once across the two parts.
  std::vector<int> seen(n, 0);
  for (const std::size_t i : split.train) {
    REQUIRE(i < n);
    ++seen[i];
  }
  for (const std::size_t i : split.validation) {
    REQUIRE(i < n);
    ++seen[i];
  }
  CHECK(std::all_of(seen.begin(), seen.end(), [](int s) { return s == 1; }));

  // Per class: within one sample of the exact share, in both parts.
  std::map<std::int32_t, std::size_t> total, in_validation, in_train;
  for (const std::int32_t label : labels) ++total[label];
  for (const std::size_t i : split.validation) ++in_validation[labels[i]];
  for (const std::size_t i : split.train) ++in_train[labels[i]];
  for (const auto& [label, count] : total) {
    const double exact_validation = static_cast<double>(count) * static_cast<double>(v) / static_cast<double>(n);
    const double exact_train = static_cast<double>(count) * static_cast<double>(n - v) / static_cast<double>(n);
    INFO("class " << label << ": " << count << " samples, " << in_validation[label]
                  << " validation (exact " << exact_validation << "), " << in_train[label]
                  << " train (exact " << exact_train << ")");
    CHECK(std::abs(static_cast<double>(in_validation[label]) - exact_validation) < 1.0);
    CHECK(std::abs(static_cast<double>(in_train[label]) - exact_train) < 1.0);
    CHECK(in_validation[label] + in_train[label] == count);
  }
}

std::vector<std::int32_t> imbalanced_labels(std::uint64_t seed, std::size_t n) {
  // Classes of very different sizes, in random order, with gaps in the values.
  lamina::Rng rng(seed);
  const std::int32_t values[] = {-3, 0, 1, 2, 7, 9, 40};
  const double weights[] = {0.01, 0.3, 0.05, 0.2, 0.24, 0.15, 0.05};
  std::vector<std::int32_t> labels(n);
  for (auto& label : labels) {
    double u = rng.uniform();
    std::size_t c = 0;
    while (c + 1 < 7 && u >= weights[c]) u -= weights[c++];
    label = values[c];
  }
  return labels;
}

}  // namespace

TEST_CASE("stratified_split keeps every class's share within one sample", "[data][split]") {
  for (const std::size_t n : {std::size_t(2), std::size_t(7), std::size_t(10), std::size_t(101),
                              std::size_t(1000), std::size_t(4999)})
    for (const double fraction : {0.1, 0.2, 0.25, 1.0 / 3.0, 0.5, 0.77, 0.9})
      for (const std::uint64_t seed : {1ull, 2ull, 99ull}) {
        const std::vector<std::int32_t> labels = imbalanced_labels(seed * 31 + n, n);
        const std::size_t v =
            static_cast<std::size_t>(std::floor(static_cast<double>(n) * fraction + 0.5));
        if (v == 0 || v == n) continue;  // refused, tested below
        check_split(labels, fraction, lamina::stratified_split(labels, fraction, seed));
      }
}

TEST_CASE("stratified_split: largest remainder, ties to the smaller label", "[data][split]") {
  // 3 + 3 + 4 samples, half to validation: exact shares 1.5, 1.5, 2. The floors
  // give 1, 1, 2; the one leftover goes to the tied remainders' smaller label 0.
  const std::vector<std::int32_t> labels = {2, 0, 1, 2, 0, 1, 2, 0, 1, 2};
  const StratifiedSplit split = lamina::stratified_split(labels, 0.5, 5);
  std::array<int, 3> validation{};
  for (const std::size_t i : split.validation) ++validation[static_cast<std::size_t>(labels[i])];
  CHECK(validation == std::array<int, 3>{2, 1, 2});
  check_split(labels, 0.5, split);
}

TEST_CASE("stratified_split follows its documented use of the Rng", "[data][split]") {
  // Rebuilds the split from the documentation: classes in ascending label order,
  // each class's indices (ascending) shuffled and its first v_c taken for
  // validation, then both lists shuffled, all with one Rng(seed).
  const std::vector<std::int32_t> labels = imbalanced_labels(4, 300);
  const std::uint64_t seed = 123;
  const StratifiedSplit split = lamina::stratified_split(labels, 0.2, seed);

  std::map<std::int32_t, std::vector<std::size_t>> classes;
  for (std::size_t i = 0; i < labels.size(); ++i) classes[labels[i]].push_back(i);
  std::map<std::int32_t, std::size_t> validation_count;
  for (const std::size_t i : split.validation) ++validation_count[labels[i]];

  lamina::Rng rng(seed);
  std::vector<std::size_t> train, validation;
  for (auto& [label, members] : classes) {
    rng.shuffle(members);
    const std::size_t v = validation_count[label];
    validation.insert(validation.end(), members.begin(), members.begin() + static_cast<std::ptrdiff_t>(v));
    train.insert(train.end(), members.begin() + static_cast<std::ptrdiff_t>(v), members.end());
  }
  rng.shuffle(train);
  rng.shuffle(validation);
  CHECK(split.train == train);
  CHECK(split.validation == validation);
}

TEST_CASE("stratified_split is deterministic for a seed and differs across seeds", "[data][split]") {
  const std::vector<std::int32_t> labels = imbalanced_labels(11, 2000);
  const StratifiedSplit a = lamina::stratified_split(labels, 0.15, 42);
  const StratifiedSplit b = lamina::stratified_split(labels, 0.15, 42);
  CHECK(a.train == b.train);
  CHECK(a.validation == b.validation);

  const StratifiedSplit c = lamina::stratified_split(labels, 0.15, 43);
  check_split(labels, 0.15, c);
  CHECK(c.validation.size() == a.validation.size());
  std::vector<std::size_t> va = a.validation, vc = c.validation;
  std::sort(va.begin(), va.end());
  std::sort(vc.begin(), vc.end());
  CHECK(va != vc);  // a different set of samples, not just another order
  // Not grouped by class: the validation list is not sorted by label.
  CHECK_FALSE(std::is_sorted(a.validation.begin(), a.validation.end(),
                             [&](std::size_t x, std::size_t y) { return labels[x] < labels[y]; }));
}

TEST_CASE("stratified_split refuses bad arguments, naming the value", "[data][split]") {
  const std::vector<std::int32_t> labels = imbalanced_labels(1, 50);
  for (const double bad : {0.0, 1.0, -0.1, 1.5})
    CHECK_THROWS_WITH(lamina::stratified_split(labels, bad, 1),
                      "stratified_split: validation_fraction must be in (0, 1), got " +
                          lamina::detail::concat(bad));
  CHECK_THROWS_AS(lamina::stratified_split(labels, std::numeric_limits<double>::quiet_NaN(), 1),
                  ArgumentError);
  CHECK_THROWS_AS(lamina::stratified_split(labels, std::numeric_limits<double>::infinity(), 1),
                  ArgumentError);
  CHECK_THROWS_WITH(lamina::stratified_split({}, 0.2, 1), "stratified_split: no labels to split");
  CHECK_THROWS_WITH(lamina::stratified_split({1, 2, 3}, 0.1, 1),
                    "stratified_split: validation_fraction 0.1 of 3 samples gives 0 validation and "
                    "3 train samples; both parts must be non-empty");
  CHECK_THROWS_WITH(lamina::stratified_split({1, 2, 3}, 0.9, 1),
                    "stratified_split: validation_fraction 0.9 of 3 samples gives 3 validation and "
                    "0 train samples; both parts must be non-empty");
}

TEST_CASE("real data: a 10% stratified split of MNIST train", "[data][split][real]") {
  const std::string name = "mnist-idx/train-labels-idx1-ubyte.gz";
  if (!lamina_test::require_data(name)) return;
  const std::vector<std::int32_t> labels = lamina::load_idx_labels(lamina_test::data_dir() / name);
  REQUIRE(labels.size() == 60000);
  const StratifiedSplit split = lamina::stratified_split(labels, 0.1, 2024);
  check_split(labels, 0.1, split);
  CHECK(split.validation.size() == 6000);
}

TEST_CASE("to_dataset: NHWC tensor scaled to [0, 1], labels kept", "[data][dataset]") {
  lamina::MnistData data;
  data.count = 3;
  data.rows = 2;
  data.cols = 4;
  data.source = "made up";
  for (int i = 0; i < 24; ++i) data.pixels.push_back(static_cast<std::uint8_t>(i * 11));
  data.pixels[5] = 255;
  data.labels = {4, 0, 9};

  const lamina::Dataset<float> f = lamina::to_dataset<float>(data);
  CHECK(f.images.shape() == lamina::Shape{3, 2, 4, 1});
  CHECK(f.size() == 3);
  CHECK(f.labels == data.labels);
  for (std::size_t i = 0; i < 24; ++i)
    CHECK(f.images[i] == static_cast<float>(data.pixels[i]) * (1.0f / 255.0f));
  CHECK(f.images[5] == 1.0f);  // 255 maps to exactly 1
  CHECK(f.images[0] == 0.0f);
  CHECK(f.images(1, 0, 2, 0) == static_cast<float>(data.pixels[8 + 2]) * (1.0f / 255.0f));

  const lamina::Dataset<double> d = lamina::to_dataset<double>(data);
  CHECK(d.images[5] == 1.0);
  CHECK(d.images[7] == 77.0 * (1.0 / 255.0));
  const lamina::Dataset<float> raw = lamina::to_dataset<float>(data, 1.0f);
  CHECK(raw.images[5] == 255.0f);

  data.labels.clear();
  CHECK_FALSE(lamina::to_dataset<float>(data).has_labels());

  lamina::MnistData broken = data;
  broken.pixels.pop_back();
  CHECK_THROWS_WITH(lamina::to_dataset<float>(broken),
                    "to_dataset: made up has 23 pixels, expected count * rows * cols = 3 * 2 * 4");
  broken = data;
  broken.labels = {1, 2};
  CHECK_THROWS_WITH(lamina::to_dataset<float>(broken), "to_dataset: made up has 2 labels for 3 images");
  CHECK_THROWS_AS(lamina::to_dataset<float>(data, std::numeric_limits<float>::infinity()), ArgumentError);
}

TEST_CASE("subset: samples in the given order, with their labels", "[data][dataset]") {
  lamina::MnistData data;
  data.count = 5;
  data.rows = 2;
  data.cols = 2;
  for (int i = 0; i < 20; ++i) data.pixels.push_back(static_cast<std::uint8_t>(i));
  data.labels = {0, 1, 2, 3, 4};
  const lamina::Dataset<float> all = lamina::to_dataset<float>(data, 1.0f);

  const lamina::Dataset<float> some = lamina::subset(all, {4, 1, 1});
  CHECK(some.images.shape() == lamina::Shape{3, 2, 2, 1});
  CHECK(some.labels == std::vector<std::int32_t>{4, 1, 1});
  for (std::size_t k = 0; k < 4; ++k) {
    CHECK(some.images[k] == static_cast<float>(16 + k));
    CHECK(some.images[4 + k] == static_cast<float>(4 + k));
    CHECK(some.images[8 + k] == static_cast<float>(4 + k));
  }
  const lamina::Dataset<float> none = lamina::subset(all, {});
  CHECK(none.size() == 0);
  CHECK(none.images.shape() == lamina::Shape{0, 2, 2, 1});

  CHECK_THROWS_WITH(lamina::subset(all, {0, 5}),
                    "subset: index 5 at position 1 is out of range for a dataset of 5 samples");

  // A split applied through subset: the parts partition the data.
  const StratifiedSplit split = lamina::stratified_split(all.labels, 0.4, 3);
  const lamina::Dataset<float> train = lamina::subset(all, split.train);
  const lamina::Dataset<float> validation = lamina::subset(all, split.validation);
  CHECK(train.size() + validation.size() == 5);
  CHECK(validation.size() == 2);
}
