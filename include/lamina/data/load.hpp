// lamina/data/load.hpp: load_mnist, the one entry point that reads either
// MNIST format.
//
// It decides by content, never by the file name: an IDX file starts with two
// zero bytes (00 00 08 03 for images, once inflated), which no text file does;
// anything else goes to the Kaggle CSV parser, which explains what it expected.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "lamina/core/error.hpp"
#include "lamina/data/gzip_reader.hpp"
#include "lamina/data/mnist_csv.hpp"
#include "lamina/data/mnist_data.hpp"
#include "lamina/data/mnist_idx.hpp"

namespace lamina {

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
