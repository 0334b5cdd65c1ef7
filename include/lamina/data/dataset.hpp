// lamina/data/dataset.hpp: what the MNIST loaders return, and what training eats.
//
// Two stages, kept apart on purpose:
//  - MnistData is the file's content as stored: uint8 pixels plus int32 labels,
//    whatever the format (Kaggle CSV or LeCun IDX). It is cheap (1 byte per pixel)
//    and is what you explore, count and validate.
//  - Dataset<T> is the model's input: a Tensor<T> of shape (N, H, W, 1) in NHWC,
//    scaled to [0, 1], plus the labels. to_dataset converts, subset selects, and
//    stratified_split makes the seeded train/validation index split.
//
// load_mnist(path) is the one entry point that reads either format, deciding by
// content (an IDX images file starts with 00 00 08 03 once inflated), never by
// the file name.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "lamina/core/error.hpp"
#include "lamina/core/rng.hpp"
#include "lamina/core/tensor.hpp"
#include "lamina/data/gzip_reader.hpp"

namespace lamina {

namespace detail {
// "1 image", "5 images": counts in messages.
inline std::string count_of(std::uint64_t n, const char* noun) {
  return concat(n, " ", noun, n == 1 ? "" : "s");
}
}  // namespace detail

/// The content of an MNIST file (Kaggle CSV or IDX images + labels), as stored.
struct MnistData {
  std::size_t count = 0;  // number of images
  std::size_t rows = 0;   // image height (28 for MNIST)
  std::size_t cols = 0;   // image width (28 for MNIST)
  std::vector<std::uint8_t> pixels;   // (count, rows, cols), row-major; 0 = background, 255 = ink
  std::vector<std::int32_t> labels;   // (count,), 0..9; empty when the file has none (Kaggle test.csv)
  std::string source;                 // the file the data came from, for messages

  bool has_labels() const noexcept { return !labels.empty(); }
  std::size_t image_size() const noexcept { return rows * cols; }
};

/// Images and labels ready for a model.
template <class T>
struct Dataset {
  Tensor<T> images;                  // (N, H, W, 1), NHWC
  std::vector<std::int32_t> labels;  // (N,), or empty for unlabelled data

  std::size_t size() const { return images.rank() == 0 ? 0 : images.dim(0); }
  bool has_labels() const noexcept { return !labels.empty(); }
};

/// Converts stored pixels to a model input: element = T(pixel) * scale, so the
/// default scale maps 0..255 onto [0, 1] (255 * (1/255) rounds to exactly 1 in
/// float and double). The result has shape (count, rows, cols, 1).
/// Throws ArgumentError if `data` is inconsistent (pixels or labels of the wrong
/// length) or `scale` is not finite.
template <class T>
Dataset<T> to_dataset(const MnistData& data, T scale = T(1) / T(255)) {
  static_assert(std::is_floating_point_v<T>, "to_dataset converts to float or double");
  if (!std::isfinite(scale))
    throw ArgumentError(detail::concat("to_dataset: scale must be finite, got ", scale));
  const std::size_t per_image = data.rows * data.cols;
  if (data.pixels.size() != data.count * per_image)
    throw ArgumentError(detail::concat("to_dataset: ", data.source, " has ", data.pixels.size(),
                                       " pixels, expected count * rows * cols = ", data.count,
                                       " * ", data.rows, " * ", data.cols));
  if (data.has_labels() && data.labels.size() != data.count)
    throw ArgumentError(detail::concat("to_dataset: ", data.source, " has ",
                                       detail::count_of(data.labels.size(), "label"), " for ",
                                       detail::count_of(data.count, "image")));
  Dataset<T> out;
  out.images.resize(Shape{data.count, data.rows, data.cols, 1});
  // A 256-entry table: one multiply per distinct value instead of per pixel,
  // and every pixel with the same value gets the same bits by construction.
  T table[256];
  for (int v = 0; v < 256; ++v) table[v] = static_cast<T>(v) * scale;
  const std::uint8_t* src = data.pixels.data();
  T* dst = out.images.data();
  for (std::size_t i = 0, n = data.pixels.size(); i < n; ++i) dst[i] = table[src[i]];
  out.labels = data.labels;
  return out;
}

/// The samples at `indices`, in that order (repeats allowed, e.g. for a
/// bootstrap). Labels follow when the dataset has them. Throws ArgumentError
/// naming the first index that is out of range and its position.
template <class T>
Dataset<T> subset(const Dataset<T>& data, const std::vector<std::size_t>& indices) {
  const std::size_t n = data.size();
  if (data.has_labels() && data.labels.size() != n)
    throw ArgumentError(detail::concat("subset: the dataset has ", data.labels.size(),
                                       " labels for ", n, " samples"));
  for (std::size_t k = 0; k < indices.size(); ++k)
    if (indices[k] >= n)
      throw ArgumentError(detail::concat("subset: index ", indices[k], " at position ", k,
                                         " is out of range for a dataset of ", n, " samples"));
  Dataset<T> out;
  const Shape sample_shape = data.images.shape().drop_first();
  const std::size_t per_sample = sample_shape.size();
  out.images.resize(sample_shape.prepend(indices.size()));
  for (std::size_t k = 0; k < indices.size(); ++k)
    std::memcpy(out.images.data() + k * per_sample, data.images.data() + indices[k] * per_sample,
                per_sample * sizeof(T));
  if (data.has_labels()) {
    out.labels.resize(indices.size());
    for (std::size_t k = 0; k < indices.size(); ++k) out.labels[k] = data.labels[indices[k]];
  }
  return out;
}

/// Indices of a train/validation split.
struct StratifiedSplit {
  std::vector<std::size_t> train;       // indices into the labels, in shuffled order
  std::vector<std::size_t> validation;  // indices into the labels, in shuffled order
};

/// A seeded, stratified train/validation split of the samples with `labels`.
///
/// Guarantees, with N = labels.size(), V = floor(N * validation_fraction + 0.5)
/// (round half up) and n_c the number of samples of class c:
///  - validation.size() == V exactly and train.size() == N - V;
///  - class c has v_c validation samples with |v_c - n_c * V / N| < 1, i.e. v_c is
///    n_c * V / N rounded down or up (largest-remainder apportionment: every class
///    gets the floor, and the V - sum(floors) leftover samples go to the classes
///    with the largest remainders, ties to the smaller label). Its train count
///    n_c - v_c is then within one sample of n_c * (N - V) / N too;
///  - train and validation are disjoint and together hold every index once;
///  - the same (labels, fraction, seed) gives the same split on every platform.
/// Any int32 label values work (classes are the distinct values). A class may
/// end up with no validation (or no train) sample when it is very small.
///
/// How the randomness is used (one lamina::Rng(seed), in this order): the indices
/// of each class, taken in ascending label order, are shuffled and the first v_c
/// go to validation; then the train list and the validation list (each built in
/// ascending class order) are shuffled once more, so neither is grouped by class.
///
/// Throws ArgumentError if labels is empty or has 2^32 or more entries, if
/// validation_fraction is not in (0, 1), or if it rounds to an empty part.
inline StratifiedSplit stratified_split(const std::vector<std::int32_t>& labels,
                                        double validation_fraction, std::uint64_t seed) {
  if (!(validation_fraction > 0.0 && validation_fraction < 1.0))  // also rejects NaN
    throw ArgumentError(detail::concat(
        "stratified_split: validation_fraction must be in (0, 1), got ", validation_fraction));
  const std::size_t n = labels.size();
  if (n == 0) throw ArgumentError("stratified_split: no labels to split");
  // n_c * V must fit in 64 bits for the exact remainders below.
  if (n > std::numeric_limits<std::uint32_t>::max())
    throw ArgumentError(detail::concat("stratified_split: ", n,
                                       " labels, at most 4294967295 are supported"));
  const std::size_t n_validation =
      static_cast<std::size_t>(std::floor(static_cast<double>(n) * validation_fraction + 0.5));
  if (n_validation == 0 || n_validation == n)
    throw ArgumentError(detail::concat("stratified_split: validation_fraction ",
                                       validation_fraction, " of ", n, " samples gives ",
                                       n_validation, " validation and ", n - n_validation,
                                       " train samples; both parts must be non-empty"));

  // Group indices by class, classes in ascending label order.
  std::vector<std::size_t> order(n);  // (N,) indices sorted by (label, index)
  for (std::size_t i = 0; i < n; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return labels[a] < labels[b]; });
  struct Group {
    std::size_t begin, size;   // the class's range in `order`
    std::size_t validation;    // v_c
    std::uint64_t remainder;   // (n_c * V) mod N
  };
  std::vector<Group> groups;
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i;
    while (j < n && labels[order[j]] == labels[order[i]]) ++j;
    groups.push_back({i, j - i, 0, 0});
    i = j;
  }

  // Largest remainder apportionment of V over the classes, in exact integers.
  std::size_t assigned = 0;
  for (Group& g : groups) {
    const std::uint64_t product = static_cast<std::uint64_t>(g.size) * n_validation;
    g.validation = static_cast<std::size_t>(product / n);
    g.remainder = product % n;
    assigned += g.validation;
  }
  std::vector<std::size_t> by_remainder(groups.size());  // group ids, largest remainder first
  for (std::size_t c = 0; c < groups.size(); ++c) by_remainder[c] = c;
  std::stable_sort(by_remainder.begin(), by_remainder.end(), [&](std::size_t a, std::size_t b) {
    return groups[a].remainder > groups[b].remainder;
  });
  // The leftover is sum(remainders) / N < number of classes, and it only goes to
  // classes with a non-zero remainder, so each v_c stays floor or ceil.
  for (std::size_t k = 0; assigned < n_validation; ++k, ++assigned)
    ++groups[by_remainder[k]].validation;

  Rng rng(seed);
  StratifiedSplit split;
  split.validation.reserve(n_validation);
  split.train.reserve(n - n_validation);
  std::vector<std::size_t> members;
  for (const Group& g : groups) {
    members.assign(order.begin() + static_cast<std::ptrdiff_t>(g.begin),
                   order.begin() + static_cast<std::ptrdiff_t>(g.begin + g.size));
    rng.shuffle(members);
    split.validation.insert(split.validation.end(), members.begin(),
                            members.begin() + static_cast<std::ptrdiff_t>(g.validation));
    split.train.insert(split.train.end(),
                       members.begin() + static_cast<std::ptrdiff_t>(g.validation), members.end());
  }
  rng.shuffle(split.train);
  rng.shuffle(split.validation);
  return split;
}

// The loaders (mnist_csv.hpp, mnist_idx.hpp) return MnistData and so include
// this header; load_mnist below needs them in turn. To keep either include
// order working, the three functions it calls are declared here and defined
// there (those headers are included at the end of this one).
inline MnistData parse_mnist_csv(const char* data, std::size_t size, const std::string& source);
inline MnistData parse_idx_images(const std::uint8_t* data, std::size_t size,
                                  const std::string& source);
namespace detail {
inline void attach_idx_labels(MnistData& images, const std::filesystem::path& images_path,
                              const std::filesystem::path& labels_path);
}  // namespace detail

/// Loads MNIST from a Kaggle CSV (train with labels, or test without) or from
/// an IDX images file plus its labels file, plain or gzip, deciding by content.
/// For IDX, `labels_path` defaults to the file next to the images named the
/// MNIST way (see find_idx_labels_file); for CSV it must be empty, since the
/// labels are the CSV's first column.
/// Throws FormatError for bad files (an empty one: "<path>: empty file, expected
/// a Kaggle MNIST CSV or an IDX images file"), ArgumentError for a labels_path
/// with a CSV.
inline MnistData load_mnist(const std::filesystem::path& path,
                            const std::filesystem::path& labels_path = {}) {
  const std::string name = path.string();
  const std::vector<std::uint8_t> bytes = read_file_inflated(path);
  // Nothing to decide the format by (a failed download, say): the CSV parser's
  // "expected the header ..." would wrongly suggest that a CSV was expected.
  if (bytes.empty())
    throw FormatError(name, "empty file, expected a Kaggle MNIST CSV or an IDX images file");
  // Still gzip after inflating: neither format starts with 1f 8b.
  if (is_gzip(bytes.data(), bytes.size()))
    throw FormatError(name, "is gzip data inside gzip data (compressed twice?); gunzip it once and load the "
                            "result");
  // Every IDX file starts with two zero bytes, which no text file does; the
  // IDX parser then explains any other wrong magic number.
  const bool idx = bytes.size() >= 2 && bytes[0] == 0 && bytes[1] == 0;
  if (idx) {
    if (bytes.size() >= 4 && bytes[2] == 0x08 && bytes[3] == 1)
      throw FormatError(name, "is an IDX labels file (magic 2049); pass the IDX images file "
                              "(magic 2051) as the path and this one as labels_path");
    MnistData data = parse_idx_images(bytes.data(), bytes.size(), name);
    detail::attach_idx_labels(data, path, labels_path);
    return data;
  }
  if (!labels_path.empty())
    throw ArgumentError("load_mnist: labels_path '" + labels_path.string() + "' given, but " +
                        name + " is a CSV file, whose labels are its first column");
  return parse_mnist_csv(reinterpret_cast<const char*>(bytes.data()), bytes.size(), name);
}

}  // namespace lamina

#include "lamina/data/mnist_csv.hpp"
#include "lamina/data/mnist_idx.hpp"
