// lamina/data/dataset.hpp: what training eats.
//
// Dataset<T> is the model's input: a Tensor<T> of shape (N, H, W, 1) in NHWC,
// scaled to [0, 1], plus the labels. It is kept apart from MnistData (the
// file's uint8 content, mnist_data.hpp), which is what you explore and
// validate: to_dataset converts one into the other, subset selects samples,
// and stratified_split makes the seeded train/validation index split.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "lamina/core/error.hpp"
#include "lamina/core/rng.hpp"
#include "lamina/core/tensor.hpp"
#include "lamina/data/mnist_data.hpp"

namespace lamina {

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

}  // namespace lamina
