// lamina/metrics/eda.hpp: exploratory data analysis of an MNIST-style data set.
//
//   const MnistData raw = load_mnist(".../train.csv.gz");
//   const EdaReport eda = explore(raw);
//   for (const auto& w : eda.warnings) std::cout << "warning: " << w << "\n";
//
// explore() looks at the stored uint8 pixels (before any scaling) and answers
// what a notebook's first cells do: how many images of each class, what the
// pixel values look like, what the average digit of each class looks like, and
// whether the data has problems worth knowing before training (duplicates,
// conflicting labels, constant pixel positions, class imbalance, blank images).
// Every count is an exact integer and every figure is computed in a fixed
// order, so the report is the same on every run.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "lamina/core/error.hpp"
#include "lamina/core/tensor.hpp"
#include "lamina/data/mnist_data.hpp"

namespace lamina {

struct EdaOptions {
  /// Warn when the largest class has more than this many times the samples of
  /// the smallest. 1.5 flags a data set that plain accuracy starts to flatter
  /// (MNIST's own ratio, 1.23 on Kaggle's train.csv, stays below it).
  double imbalance_threshold = 1.5;
  /// Number of classes; 0 takes the largest label + 1. Set it (e.g. 10) to see
  /// a class that is missing altogether reported with 0 samples.
  std::size_t num_classes = 0;
  /// How many duplicate groups to keep as examples (and name in the warnings).
  std::size_t max_examples = 5;
};

/// Pixel-intensity statistics over every pixel of every image.
struct PixelStatistics {
  std::size_t total = 0;                     // number of pixels, count * rows * cols
  double mean = 0;                           // in pixel units, 0..255
  double std = 0;                            // population standard deviation (numpy's default, ddof=0)
  std::uint8_t min = 0, max = 0;
  std::array<std::size_t, 256> histogram{};  // (256,) pixels of each value
  double blank_share = 0;                    // share of pixels that are 0
};

/// A set of identical images (two or more rows).
struct DuplicateGroup {
  std::vector<std::size_t> rows;      // ascending row indices
  std::vector<std::int32_t> labels;   // (rows.size(),) their labels; empty for unlabelled data
  bool conflicting_labels = false;    // the rows do not all have the same label
};

/// Exact duplicate images, found by hashing each image and comparing the
/// images whose hashes agree byte for byte (so a hash collision never counts).
struct DuplicateSummary {
  std::size_t duplicate_rows = 0;      // rows identical to an earlier row
  std::size_t groups = 0;              // distinct images that occur more than once
  std::size_t conflicting_groups = 0;  // of those, how many carry more than one label
  std::vector<DuplicateGroup> examples;              // the first groups, by first row
  std::vector<DuplicateGroup> conflicting_examples;  // the first conflicting groups, by first row
};

/// What explore() finds.
struct EdaReport {
  std::string source;  // MnistData::source
  std::size_t count = 0, rows = 0, cols = 0;
  bool labelled = false;

  // Class distribution (empty for unlabelled data).
  std::size_t num_classes = 0;
  std::vector<std::size_t> class_counts;  // (C,)
  std::vector<double> class_shares;       // (C,) count / total
  /// Largest class count / smallest (infinity when a class has no sample; 0
  /// for unlabelled data).
  double imbalance_ratio = 0;
  double imbalance_threshold = 0;  // the EdaOptions value used

  PixelStatistics pixels;
  /// Mean image of each class, (C, rows, cols), in pixel units 0..255; all
  /// zeros for a class without samples; (0, rows, cols) for unlabelled data.
  Tensor<float> class_mean_images;

  /// Pixel positions (flat index r * cols + c) with the same value in every image.
  std::vector<std::size_t> constant_positions;
  /// How many of those are 0 in every image, and their share of all positions.
  std::size_t always_blank_positions = 0;
  double always_blank_position_share = 0;
  /// Images whose pixels are all 0.
  std::size_t blank_images = 0;

  DuplicateSummary duplicates;

  /// Human-readable data-quality warnings, in a fixed order: duplicates,
  /// conflicting labels, blank images, constant positions, imbalance, missing
  /// classes. Empty when nothing was found.
  std::vector<std::string> warnings;
};

namespace detail {

// 64-bit FNV-1a over the bytes, then a final avalanche (splitmix64's), so that
// images differing in one pixel land far apart. Only used to find candidates:
// equality is always confirmed with memcmp.
inline std::uint64_t hash_bytes(const std::uint8_t* data, std::size_t size) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (std::size_t i = 0; i < size; ++i) {
    h ^= data[i];
    h *= 0x100000001b3ULL;
  }
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 31;
  return h;
}

inline std::string join_rows(const std::vector<std::size_t>& rows, const std::vector<std::int32_t>& labels,
                             std::size_t max_shown) {
  std::string out;
  const std::size_t shown = std::min(rows.size(), max_shown);
  for (std::size_t i = 0; i < shown; ++i) {
    if (i) out += i + 1 == shown && shown == rows.size() ? " and " : ", ";
    out += std::to_string(rows[i]);
    if (!labels.empty()) out += " (label " + std::to_string(labels[i]) + ")";
  }
  if (shown < rows.size()) out += concat(", ... (", rows.size(), " rows)");
  return out;
}

inline std::string format_share(double share) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.1f%%", 100.0 * share);
  return buffer;
}

inline DuplicateSummary find_duplicates(const MnistData& data, std::size_t max_examples) {
  const std::size_t n = data.count, size = data.image_size();
  const std::uint8_t* pixels = data.pixels.data();
  std::vector<std::uint64_t> hashes(n);  // (N,)
  for (std::size_t i = 0; i < n; ++i) hashes[i] = hash_bytes(pixels + i * size, size);
  std::vector<std::size_t> order(n);  // (N,) rows sorted by (hash, row)
  for (std::size_t i = 0; i < n; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return hashes[a] != hashes[b] ? hashes[a] < hashes[b] : a < b;
  });

  std::vector<DuplicateGroup> groups;
  std::vector<std::size_t> run, rest;
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i + 1;
    while (j < n && hashes[order[j]] == hashes[order[i]]) ++j;
    if (j - i > 1) {
      // Split the run of equal hashes into classes of equal images (runs are
      // tiny, so the quadratic split costs nothing).
      run.assign(order.begin() + static_cast<std::ptrdiff_t>(i), order.begin() + static_cast<std::ptrdiff_t>(j));
      while (run.size() > 1) {
        DuplicateGroup g;
        rest.clear();
        const std::uint8_t* first = pixels + run[0] * size;
        for (std::size_t r : run)
          (std::memcmp(first, pixels + r * size, size) == 0 ? g.rows : rest).push_back(r);
        if (g.rows.size() > 1) groups.push_back(std::move(g));
        run.swap(rest);
      }
    }
    i = j;
  }
  std::sort(groups.begin(), groups.end(),
            [](const DuplicateGroup& a, const DuplicateGroup& b) { return a.rows[0] < b.rows[0]; });

  DuplicateSummary s;
  s.groups = groups.size();
  for (DuplicateGroup& g : groups) {
    s.duplicate_rows += g.rows.size() - 1;
    if (data.has_labels()) {
      for (std::size_t r : g.rows) g.labels.push_back(data.labels[r]);
      g.conflicting_labels = std::any_of(g.labels.begin(), g.labels.end(),
                                         [&](std::int32_t l) { return l != g.labels[0]; });
    }
    if (g.conflicting_labels) {
      ++s.conflicting_groups;
      if (s.conflicting_examples.size() < max_examples) s.conflicting_examples.push_back(g);
    }
    if (s.examples.size() < max_examples) s.examples.push_back(g);
  }
  return s;
}

}  // namespace detail

/// Explores `data`: class distribution, pixel statistics and histogram, mean
/// image per class, blank and constant pixels, duplicates, and the warnings.
/// Unlabelled data (Kaggle's test.csv) gets everything but the class figures.
/// Throws ArgumentError when the data is empty or inconsistent (pixels or labels
/// of the wrong length), when a label is negative or not below
/// options.num_classes (naming the row), or when the threshold is not finite
/// and at least 1.
inline EdaReport explore(const MnistData& data, const EdaOptions& options = {}) {
  const std::size_t n = data.count, size = data.image_size();
  if (n == 0 || size == 0)
    throw ArgumentError(detail::concat("explore: ", data.source.empty() ? "the data" : data.source, " has no images (",
                                       n, " images of ", data.rows, "x", data.cols, ")"));
  if (data.pixels.size() != n * size)
    throw ArgumentError(detail::concat("explore: ", data.source, " has ", data.pixels.size(),
                                       " pixels, expected count * rows * cols = ", n, " * ", data.rows, " * ",
                                       data.cols));
  if (data.has_labels() && data.labels.size() != n)
    throw ArgumentError(detail::concat("explore: ", data.source, " has ", data.labels.size(), " labels for ", n,
                                       " images"));
  if (!(options.imbalance_threshold >= 1.0) || !std::isfinite(options.imbalance_threshold))
    throw ArgumentError(detail::concat("explore: imbalance_threshold must be a finite number >= 1, got ",
                                       options.imbalance_threshold));

  EdaReport r;
  r.source = data.source;
  r.count = n;
  r.rows = data.rows;
  r.cols = data.cols;
  r.labelled = data.has_labels();
  r.imbalance_threshold = options.imbalance_threshold;
  const std::uint8_t* pixels = data.pixels.data();  // (N, rows, cols)

  // ---- classes -------------------------------------------------------------
  if (r.labelled) {
    std::int32_t largest = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (data.labels[i] < 0)
        throw ArgumentError(detail::concat("explore: ", data.source, ": label ", data.labels[i], " of row ", i,
                                           " is negative"));
      largest = std::max(largest, data.labels[i]);
    }
    r.num_classes = options.num_classes ? options.num_classes : static_cast<std::size_t>(largest) + 1;
    if (static_cast<std::size_t>(largest) >= r.num_classes) {
      for (std::size_t i = 0; i < n; ++i)
        if (static_cast<std::size_t>(data.labels[i]) >= r.num_classes)
          throw ArgumentError(detail::concat("explore: ", data.source, ": label ", data.labels[i], " of row ", i,
                                             " is outside 0..", r.num_classes - 1, " (num_classes ", r.num_classes,
                                             ")"));
    }
    r.class_counts.assign(r.num_classes, 0);
    for (std::int32_t label : data.labels) ++r.class_counts[static_cast<std::size_t>(label)];
    r.class_shares.resize(r.num_classes);
    for (std::size_t c = 0; c < r.num_classes; ++c)
      r.class_shares[c] = static_cast<double>(r.class_counts[c]) / static_cast<double>(n);
    const auto [smallest_it, largest_it] = std::minmax_element(r.class_counts.begin(), r.class_counts.end());
    r.imbalance_ratio = *smallest_it == 0 ? std::numeric_limits<double>::infinity()
                                          : static_cast<double>(*largest_it) / static_cast<double>(*smallest_it);

    // Mean image per class: sums in double, image by image in row order.
    std::vector<double> sums(r.num_classes * size, 0.0);  // (C, rows * cols)
    for (std::size_t i = 0; i < n; ++i) {
      double* sum = sums.data() + static_cast<std::size_t>(data.labels[i]) * size;
      const std::uint8_t* image = pixels + i * size;
      for (std::size_t p = 0; p < size; ++p) sum[p] += image[p];
    }
    r.class_mean_images.resize(Shape{r.num_classes, data.rows, data.cols});
    for (std::size_t c = 0; c < r.num_classes; ++c)
      for (std::size_t p = 0; p < size; ++p)
        r.class_mean_images[c * size + p] =
            r.class_counts[c] ? static_cast<float>(sums[c * size + p] / static_cast<double>(r.class_counts[c])) : 0.0f;
  }

  if (!r.labelled) r.class_mean_images.resize(Shape{0, data.rows, data.cols});

  // ---- pixels ----------------------------------------------------------------
  PixelStatistics& ps = r.pixels;
  ps.total = n * size;
  for (std::size_t i = 0; i < ps.total; ++i) ++ps.histogram[pixels[i]];
  // Mean and variance from the histogram: exact integer sums, then one division.
  double sum = 0;
  for (int v = 0; v < 256; ++v) sum += static_cast<double>(v) * static_cast<double>(ps.histogram[v]);
  ps.mean = sum / static_cast<double>(ps.total);
  double squares = 0;
  for (int v = 0; v < 256; ++v) {
    const double d = static_cast<double>(v) - ps.mean;
    squares += d * d * static_cast<double>(ps.histogram[v]);
  }
  ps.std = std::sqrt(squares / static_cast<double>(ps.total));
  int lo = 0, hi = 255;
  while (ps.histogram[lo] == 0) ++lo;
  while (ps.histogram[hi] == 0) --hi;
  ps.min = static_cast<std::uint8_t>(lo);
  ps.max = static_cast<std::uint8_t>(hi);
  ps.blank_share = static_cast<double>(ps.histogram[0]) / static_cast<double>(ps.total);

  // Constant positions: a position is constant when every image has the first
  // image's value there.
  std::vector<char> constant(size, 1);  // (rows * cols,)
  for (std::size_t i = 1; i < n; ++i) {
    const std::uint8_t* image = pixels + i * size;
    for (std::size_t p = 0; p < size; ++p) constant[p] &= static_cast<char>(image[p] == pixels[p]);
  }
  for (std::size_t p = 0; p < size; ++p)
    if (constant[p]) {
      r.constant_positions.push_back(p);
      if (pixels[p] == 0) ++r.always_blank_positions;
    }
  r.always_blank_position_share = static_cast<double>(r.always_blank_positions) / static_cast<double>(size);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint8_t* image = pixels + i * size;
    if (std::all_of(image, image + size, [](std::uint8_t v) { return v == 0; })) ++r.blank_images;
  }

  r.duplicates = detail::find_duplicates(data, options.max_examples);

  // ---- warnings ----------------------------------------------------------------
  const DuplicateSummary& d = r.duplicates;
  if (d.groups > 0) {
    std::string w = detail::concat(d.duplicate_rows, d.duplicate_rows == 1 ? " image is an exact copy" : " images are exact copies",
                                   " of an earlier row (", d.groups,
                                   d.groups == 1 ? " distinct image occurs" : " distinct images occur",
                                   " more than once); e.g. rows ");
    for (std::size_t g = 0; g < d.examples.size(); ++g)
      w += (g ? "; rows " : "") + detail::join_rows(d.examples[g].rows, {}, 4);
    if (d.groups > d.examples.size()) w += "; ...";
    r.warnings.push_back(w);
  }
  if (d.conflicting_groups > 0) {
    std::string w = detail::concat(d.conflicting_groups,
                                   d.conflicting_groups == 1 ? " set of identical images has" : " sets of identical images have",
                                   " conflicting labels: rows ");
    for (std::size_t g = 0; g < d.conflicting_examples.size(); ++g)
      w += (g ? "; rows " : "") + detail::join_rows(d.conflicting_examples[g].rows, d.conflicting_examples[g].labels, 4);
    if (d.conflicting_groups > d.conflicting_examples.size()) w += "; ...";
    r.warnings.push_back(w);
  }
  if (r.blank_images > 0)
    r.warnings.push_back(detail::concat(r.blank_images, r.blank_images == 1 ? " image is" : " images are",
                                        " entirely blank (every pixel 0)"));
  if (!r.constant_positions.empty())
    r.warnings.push_back(detail::concat(
        r.constant_positions.size(), " of ", size, " pixel positions are constant in every image (",
        r.always_blank_positions, " always blank): they carry no information, and per-pixel standardisation "
        "would divide by a zero standard deviation there"));
  if (r.labelled) {
    const auto [smallest_it, largest_it] = std::minmax_element(r.class_counts.begin(), r.class_counts.end());
    const std::size_t smallest = static_cast<std::size_t>(smallest_it - r.class_counts.begin());
    const std::size_t largest = static_cast<std::size_t>(largest_it - r.class_counts.begin());
    if (*smallest_it > 0 && r.imbalance_ratio > options.imbalance_threshold) {
      char ratio[32];
      std::snprintf(ratio, sizeof ratio, "%.2f", r.imbalance_ratio);
      r.warnings.push_back(detail::concat("class imbalance: the largest class (", largest, ", ", *largest_it,
                                          " images) has ", ratio, " times the images of the smallest (", smallest,
                                          ", ", *smallest_it, " images), above the threshold ",
                                          options.imbalance_threshold,
                                          "; prefer per-class recall and macro F1 to accuracy"));
    }
    std::vector<std::size_t> missing;
    for (std::size_t c = 0; c < r.num_classes; ++c)
      if (r.class_counts[c] == 0) missing.push_back(c);
    if (!missing.empty())
      r.warnings.push_back(detail::concat(missing.size() == 1 ? "class " : "classes ",
                                          detail::join_rows(missing, {}, missing.size()),
                                          missing.size() == 1 ? " has" : " have", " no samples"));
  }
  return r;
}

}  // namespace lamina
