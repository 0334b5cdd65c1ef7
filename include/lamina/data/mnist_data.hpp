// lamina/data/mnist_data.hpp: what the MNIST parsers return.
//
// MnistData is the file's content as stored: uint8 pixels plus int32 labels,
// whatever the format (Kaggle CSV or LeCun IDX). It is cheap (1 byte per pixel)
// and is what you explore, count and validate; to_dataset (dataset.hpp) turns
// it into a model's input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "lamina/core/error.hpp"

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

}  // namespace lamina
