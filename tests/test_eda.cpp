// Exploratory data analysis: every figure of explore() on small synthetic data
// computed by hand, then the real Kaggle train.csv against the counts its data
// README publishes and against straightforward recomputation.
#include <lamina/data/data.hpp>
#include <lamina/metrics/eda.hpp>

#include <cmath>

#include "support.hpp"

using namespace lamina;
using Catch::Matchers::Contains;

namespace {

MnistData make_data(std::size_t rows, std::size_t cols, std::vector<std::vector<std::uint8_t>> images,
                    std::vector<std::int32_t> labels) {
  MnistData d;
  d.rows = rows;
  d.cols = cols;
  d.count = images.size();
  for (const auto& image : images) d.pixels.insert(d.pixels.end(), image.begin(), image.end());
  d.labels = std::move(labels);
  d.source = "synthetic";
  return d;
}

// Six 2x2 images (pixels p0 p1 / p2 p3):
//   row 0: 0 10 0 255  label 0
//   row 1: 0 20 5 255  label 1
//   row 2: 0 10 0 255  label 0   same image as row 0
//   row 3: 0 30 0 255  label 0
//   row 4: 0 20 5 255  label 2   same image as row 1, another label
//   row 5: 0 10 0 255  label 0   same image as row 0
MnistData six_images() {
  return make_data(2, 2,
                   {{0, 10, 0, 255}, {0, 20, 5, 255}, {0, 10, 0, 255}, {0, 30, 0, 255}, {0, 20, 5, 255},
                    {0, 10, 0, 255}},
                   {0, 1, 0, 0, 2, 0});
}

}  // namespace

TEST_CASE("explore: class distribution and mean images by hand") {
  const EdaReport r = explore(six_images());
  CHECK(r.count == 6);
  CHECK(r.rows == 2);
  CHECK(r.cols == 2);
  CHECK(r.labelled);
  REQUIRE(r.num_classes == 3);
  CHECK(r.class_counts == std::vector<std::size_t>{4, 1, 1});
  CHECK(r.class_shares[0] == Approx(4.0 / 6.0));
  CHECK(r.class_shares[1] == Approx(1.0 / 6.0));
  CHECK(r.imbalance_ratio == 4.0);
  REQUIRE(r.class_mean_images.shape() == Shape{3, 2, 2});
  // class 0 = rows 0, 2, 3, 5: p1 = (10 + 10 + 30 + 10) / 4 = 15
  CHECK(r.class_mean_images(0, 0, 0) == 0.0f);
  CHECK(r.class_mean_images(0, 0, 1) == 15.0f);
  CHECK(r.class_mean_images(0, 1, 0) == 0.0f);
  CHECK(r.class_mean_images(0, 1, 1) == 255.0f);
  // classes 1 and 2 are one image each: 0 20 5 255
  CHECK(r.class_mean_images(1, 0, 1) == 20.0f);
  CHECK(r.class_mean_images(2, 1, 0) == 5.0f);
}

TEST_CASE("explore: pixel statistics and histogram by hand") {
  const EdaReport r = explore(six_images());
  const PixelStatistics& p = r.pixels;
  CHECK(p.total == 24);
  // value: count -> 0: 6 (p0) + 4 (p2) = 10; 5: 2; 10: 3; 20: 2; 30: 1; 255: 6
  CHECK(p.histogram[0] == 10);
  CHECK(p.histogram[5] == 2);
  CHECK(p.histogram[10] == 3);
  CHECK(p.histogram[20] == 2);
  CHECK(p.histogram[30] == 1);
  CHECK(p.histogram[255] == 6);
  std::size_t sum = 0;
  for (std::size_t c : p.histogram) sum += c;
  CHECK(sum == 24);
  // sum = 5*2 + 10*3 + 20*2 + 30 + 255*6 = 1640; sum of squares = 25*2 + 100*3 + 400*2 + 900 + 65025*6 = 392200
  const double mean = 1640.0 / 24.0;
  CHECK(p.mean == Approx(mean).epsilon(1e-14));
  CHECK(p.std == Approx(std::sqrt(392200.0 / 24.0 - mean * mean)).epsilon(1e-12));
  CHECK(p.min == 0);
  CHECK(p.max == 255);
  CHECK(p.blank_share == Approx(10.0 / 24.0));
  // p0 is 0 in every image, p3 is 255 in every image.
  CHECK(r.constant_positions == std::vector<std::size_t>{0, 3});
  CHECK(r.always_blank_positions == 1);
  CHECK(r.always_blank_position_share == 0.25);
  CHECK(r.blank_images == 0);
}

TEST_CASE("explore: duplicates, conflicting labels and the warnings") {
  const EdaReport r = explore(six_images());
  const DuplicateSummary& d = r.duplicates;
  CHECK(d.groups == 2);
  CHECK(d.duplicate_rows == 3);  // rows 2, 5 repeat row 0; row 4 repeats row 1
  CHECK(d.conflicting_groups == 1);
  REQUIRE(d.examples.size() == 2);
  CHECK(d.examples[0].rows == std::vector<std::size_t>{0, 2, 5});
  CHECK(d.examples[0].labels == std::vector<std::int32_t>{0, 0, 0});
  CHECK_FALSE(d.examples[0].conflicting_labels);
  CHECK(d.examples[1].rows == std::vector<std::size_t>{1, 4});
  CHECK(d.examples[1].labels == std::vector<std::int32_t>{1, 2});
  CHECK(d.examples[1].conflicting_labels);
  REQUIRE(d.conflicting_examples.size() == 1);
  CHECK(d.conflicting_examples[0].rows == std::vector<std::size_t>{1, 4});

  REQUIRE(r.warnings.size() == 4);
  CHECK(r.warnings[0] ==
        "3 images are exact copies of an earlier row (2 distinct images occur more than once); "
        "e.g. rows 0, 2 and 5; rows 1 and 4");
  CHECK(r.warnings[1] == "1 set of identical images has conflicting labels: rows 1 (label 1) and 4 (label 2)");
  CHECK_THAT(r.warnings[2], Contains("2 of 4 pixel positions are constant in every image (1 always blank)"));
  CHECK(r.warnings[3] ==
        "class imbalance: the largest class (0, 4 images) has 4.00 times the images of the smallest (1, 1 images), "
        "above the threshold 1.5; prefer per-class recall and macro F1 to accuracy");

  EdaOptions lenient;
  lenient.imbalance_threshold = 4.0;  // a ratio of exactly 4 is not above it
  lenient.max_examples = 1;
  const EdaReport l = explore(six_images(), lenient);
  CHECK(l.warnings.size() == 3);
  CHECK(l.duplicates.examples.size() == 1);
  CHECK(l.warnings[0] == "3 images are exact copies of an earlier row (2 distinct images occur more than once); "
                         "e.g. rows 0, 2 and 5; ...");
}

TEST_CASE("explore: clean data gives no warnings") {
  // 1x2 images {1,2} {3,4} {2,1} {4,3}, labels 0 1 0 1: distinct, no constant position, balanced.
  const EdaReport r = explore(make_data(1, 2, {{1, 2}, {3, 4}, {2, 1}, {4, 3}}, {0, 1, 0, 1}));
  CHECK(r.warnings.empty());
  CHECK(r.imbalance_ratio == 1.0);
  CHECK(r.duplicates.groups == 0);
  CHECK(r.constant_positions.empty());
  CHECK(r.pixels.min == 1);
  CHECK(r.pixels.max == 4);
  CHECK(r.pixels.mean == 2.5);
}

TEST_CASE("explore: blank images and classes without samples") {
  // {0,0} {0,7} {0,0}, labels 0 0 2, with 4 classes: classes 1 and 3 are missing.
  EdaOptions o;
  o.num_classes = 4;
  const EdaReport r = explore(make_data(1, 2, {{0, 0}, {0, 7}, {0, 0}}, {0, 0, 2}), o);
  CHECK(r.class_counts == std::vector<std::size_t>{2, 0, 1, 0});
  CHECK(std::isinf(r.imbalance_ratio));
  CHECK(r.blank_images == 2);
  CHECK(r.class_mean_images(1, 0, 1) == 0.0f);  // no samples: zeros
  CHECK(r.class_mean_images(0, 0, 1) == 3.5f);  // (0 + 7) / 2
  // duplicates, their labels (0 and 2), blank images, constant position, missing classes
  REQUIRE(r.warnings.size() == 5);
  CHECK(r.warnings[1] == "1 set of identical images has conflicting labels: rows 0 (label 0) and 2 (label 2)");
  CHECK(r.warnings[2] == "2 images are entirely blank (every pixel 0)");
  CHECK_THAT(r.warnings[3], Contains("1 of 2 pixel positions are constant in every image (1 always blank)"));
  CHECK(r.warnings[4] == "classes 1 and 3 have no samples");
}

TEST_CASE("explore: unlabelled data gets pixel figures only") {
  MnistData d = make_data(1, 2, {{0, 9}, {3, 9}}, {});
  const EdaReport r = explore(d);
  CHECK_FALSE(r.labelled);
  CHECK(r.class_counts.empty());
  CHECK(r.class_mean_images.shape() == Shape{0, 1, 2});
  CHECK(r.constant_positions == std::vector<std::size_t>{1});
  CHECK(r.always_blank_positions == 0);
  CHECK(r.pixels.mean == 5.25);
}

TEST_CASE("explore: bad input is named") {
  MnistData empty;
  empty.source = "empty.csv";
  CHECK_THROWS_WITH(explore(empty), Contains("empty.csv has no images"));
  MnistData short_pixels = six_images();
  short_pixels.pixels.pop_back();
  CHECK_THROWS_WITH(explore(short_pixels), Contains("has 23 pixels, expected count * rows * cols = 6 * 2 * 2"));
  MnistData few_labels = six_images();
  few_labels.labels.pop_back();
  CHECK_THROWS_WITH(explore(few_labels), Contains("has 5 labels for 6 images"));
  MnistData negative = six_images();
  negative.labels[3] = -1;
  CHECK_THROWS_WITH(explore(negative), Contains("label -1 of row 3 is negative"));
  EdaOptions two;
  two.num_classes = 2;
  CHECK_THROWS_WITH(explore(six_images(), two), Contains("label 2 of row 4 is outside 0..1"));
  EdaOptions bad_threshold;
  bad_threshold.imbalance_threshold = 0.5;
  CHECK_THROWS_AS(explore(six_images(), bad_threshold), ArgumentError);
}

TEST_CASE("explore on the real Kaggle train.csv") {
  if (!lamina_test::require_data("kaggle-digit-recognizer/train.csv.gz")) return;
  const MnistData raw = load_mnist(lamina_test::data_dir() / "kaggle-digit-recognizer" / "train.csv.gz");
  const EdaReport r = explore(raw);
  REQUIRE(r.count == 42000);
  CHECK(r.rows == 28);
  CHECK(r.cols == 28);
  REQUIRE(r.num_classes == 10);
  // The counts of the data README (those of Kaggle's train.csv).
  CHECK(r.class_counts ==
        std::vector<std::size_t>{4132, 4684, 4177, 4351, 4072, 3795, 4137, 4401, 4063, 4188});
  CHECK(r.imbalance_ratio == Approx(4684.0 / 3795.0));
  for (const auto& w : r.warnings) CHECK_THAT(w, !Contains("class imbalance"));

  // Recompute the pixel figures straightforwardly.
  std::size_t zeros = 0;
  double sum = 0, squares = 0;
  for (std::uint8_t v : raw.pixels) {
    zeros += v == 0;
    sum += v;
  }
  const double mean = sum / static_cast<double>(raw.pixels.size());
  for (std::uint8_t v : raw.pixels) squares += (v - mean) * (v - mean);
  CHECK(r.pixels.total == 42000u * 784u);
  CHECK(r.pixels.mean == Approx(mean).epsilon(1e-12));
  // explore() sums exact integer counts per value; the running double sum of
  // 33 million squares here drifts by ~1e-10 relative, hence the tolerance.
  CHECK(r.pixels.std == Approx(std::sqrt(squares / static_cast<double>(raw.pixels.size()))).epsilon(1e-8));
  CHECK(r.pixels.histogram[0] == zeros);
  CHECK(r.pixels.min == 0);
  CHECK(r.pixels.max == 255);
  CHECK(r.pixels.blank_share > 0.75);  // MNIST is mostly background

  // Constant positions: recompute; the top-left corner is blank in every MNIST digit.
  std::vector<std::size_t> constant;
  for (std::size_t p = 0; p < 784; ++p) {
    bool same = true;
    for (std::size_t i = 1; i < raw.count && same; ++i) same = raw.pixels[i * 784 + p] == raw.pixels[p];
    if (same) constant.push_back(p);
  }
  CHECK(r.constant_positions == constant);
  CHECK(r.constant_positions.front() == 0);
  CHECK(r.always_blank_positions == constant.size());  // every constant position is background
  CHECK_FALSE(r.warnings.empty());                      // which includes those positions

  // The mean image of class 1 at its centre, recomputed.
  double centre = 0;
  for (std::size_t i = 0; i < raw.count; ++i)
    if (raw.labels[i] == 1) centre += raw.pixels[i * 784 + 14 * 28 + 14];
  CHECK(r.class_mean_images(1, 14, 14) == Approx(centre / 4684.0).epsilon(1e-6));
  CHECK(r.class_mean_images(1, 14, 14) > 200.0f);  // every 1 crosses the centre

  INFO("duplicates: " << r.duplicates.duplicate_rows << " rows in " << r.duplicates.groups << " groups");
  CHECK(r.duplicates.conflicting_groups <= r.duplicates.groups);
}
