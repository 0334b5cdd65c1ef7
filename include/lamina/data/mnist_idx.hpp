// lamina/data/mnist_idx.hpp: the original MNIST files (LeCun's IDX format).
//
// An images file is a 16-byte header of big-endian uint32 (magic 2051 =
// 0x00000803, count, rows, cols) then count * rows * cols pixel bytes; a labels
// file is an 8-byte header (magic 2049 = 0x00000801, count) then count label
// bytes. Plain or gzip, decided by content.
//
// Everything the header promises is checked against the bytes actually there:
// the magic number, the file being too short (truncated download) or too long
// (wrong header, or two files glued together), labels 0..9, and an images file
// and a labels file paired together having the same count. Errors are
// lamina::FormatError naming the file, with the byte offset where it helps.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "lamina/core/error.hpp"
#include "lamina/data/gzip_reader.hpp"
#include "lamina/data/mnist_data.hpp"

namespace lamina {

namespace detail {

inline constexpr std::uint32_t kIdxImagesMagic = 0x00000803;  // 2051: unsigned bytes, 3 dimensions
inline constexpr std::uint32_t kIdxLabelsMagic = 0x00000801;  // 2049: unsigned bytes, 1 dimension

inline std::uint32_t idx_read_u32(const std::uint8_t* p) noexcept {
  return static_cast<std::uint32_t>(p[0]) << 24 | static_cast<std::uint32_t>(p[1]) << 16 |
         static_cast<std::uint32_t>(p[2]) << 8 | static_cast<std::uint32_t>(p[3]);
}

inline std::string idx_magic_text(std::uint32_t magic) {
  char hex[16];
  std::snprintf(hex, sizeof hex, "0x%08x", static_cast<unsigned>(magic));
  return concat(hex, " (", magic, ")");
}

// Checks the header size and magic number of an IDX file.
inline void idx_check_header(const std::uint8_t* data, std::size_t size, std::uint32_t expected,
                             std::size_t header_size, const char* kind,
                             const std::string& source) {
  // An empty file is most often a failed download: say so, and what was expected,
  // rather than "too short for a header".
  if (size == 0)
    throw FormatError(source, concat("empty file, expected an IDX ", kind, " file (",
                                     header_size == 16 ? "a 16-byte header" : "an 8-byte header",
                                     " with magic number ", expected, ", then the ",
                                     header_size == 16 ? "pixels" : "labels", ")"));
  if (size >= 4) {
    const std::uint32_t magic = idx_read_u32(data);
    if (magic != expected) {
      const char* hint = "";
      if (magic == kIdxLabelsMagic) hint = "; this is an IDX labels file";
      if (magic == kIdxImagesMagic) hint = "; this is an IDX images file";
      // The loaders inflate gzip before parsing: gzip here was compressed twice.
      if (data[0] == 0x1f && data[1] == 0x8b) hint = "; this is gzip data (compressed twice?)";
      throw FormatError(source, concat("bad magic number ", idx_magic_text(magic),
                                       " at byte offset 0, expected ", idx_magic_text(expected),
                                       " for an IDX ", kind, " file", hint));
    }
  }
  if (size < header_size)
    throw FormatError(source, concat("file too short for an IDX ", kind, " header: ", size,
                                     " bytes, expected at least ", header_size));
}

}  // namespace detail

/// Parses an IDX images file held in memory (already inflated). The result has
/// no labels. Throws FormatError naming `source`.
inline MnistData parse_idx_images(const std::uint8_t* data, std::size_t size,
                                  const std::string& source) {
  constexpr std::size_t kHeader = 16;
  detail::idx_check_header(data, size, detail::kIdxImagesMagic, kHeader, "images", source);
  const std::uint64_t count = detail::idx_read_u32(data + 4);
  const std::uint64_t rows = detail::idx_read_u32(data + 8);
  const std::uint64_t cols = detail::idx_read_u32(data + 12);
  if (count == 0)
    throw FormatError(source, "the header says 0 images (count at byte offset 4); the file holds no images");
  if (rows == 0 || cols == 0)
    throw FormatError(source, detail::concat("the header says the images are ", rows, "x", cols,
                                             " (at byte offset 8); both must be at least 1"));
  const std::uint64_t per_image = rows * cols;  // < 2^64: both are < 2^32
  const std::uint64_t payload = size - kHeader;
  if (count > (std::numeric_limits<std::uint64_t>::max() - kHeader) / per_image ||
      count * per_image > payload) {
    const std::string needed =
        count > (std::numeric_limits<std::uint64_t>::max() - kHeader) / per_image
            ? std::string("more than 2^64 bytes")
            : detail::concat(kHeader + count * per_image, " bytes");
    throw FormatError(source, detail::concat("file too short: the header says ", detail::count_of(count, "image"),
                                             " of ", rows, "x", cols, ", which take ",
                                             needed, ", but the file has ", size,
                                             " bytes (only ",
                                             detail::count_of(payload / per_image, "complete image"),
                                             ")"));
  }
  const std::uint64_t needed = kHeader + count * per_image;
  if (size > needed)
    throw FormatError(source, detail::concat("file too long: the header says ", detail::count_of(count, "image"),
                                             " of ", rows, "x", cols, ", which take ",
                                             needed, " bytes, but the file has ", size, " (",
                                             detail::count_of(size - needed, "extra byte"),
                                             " from byte offset ", needed, ")"));
  MnistData out;
  out.count = static_cast<std::size_t>(count);
  out.rows = static_cast<std::size_t>(rows);
  out.cols = static_cast<std::size_t>(cols);
  out.pixels.assign(data + kHeader, data + size);  // (count, rows, cols)
  out.source = source;
  return out;
}

/// Parses an IDX labels file held in memory (already inflated): one int32 per
/// label, each checked to be 0..9. Throws FormatError naming `source`.
inline std::vector<std::int32_t> parse_idx_labels(const std::uint8_t* data, std::size_t size,
                                                  const std::string& source) {
  constexpr std::size_t kHeader = 8;
  detail::idx_check_header(data, size, detail::kIdxLabelsMagic, kHeader, "labels", source);
  const std::uint64_t count = detail::idx_read_u32(data + 4);
  const std::uint64_t payload = size - kHeader;
  if (count == 0)
    throw FormatError(source, "the header says 0 labels (count at byte offset 4); the file holds no labels");
  if (count > payload)
    throw FormatError(source, detail::concat("file too short: the header says ", detail::count_of(count, "label"),
                                             ", which take ", kHeader + count,
                                             " bytes, but the file has ", size, " (only ",
                                             detail::count_of(payload, "label"), ")"));
  if (count < payload)
    throw FormatError(source, detail::concat("file too long: the header says ", detail::count_of(count, "label"),
                                             ", which take ", kHeader + count,
                                             " bytes, but the file has ", size, " (",
                                             detail::count_of(payload - count, "extra byte"),
                                             " from byte offset ", kHeader + count, ")"));
  std::vector<std::int32_t> labels(static_cast<std::size_t>(count));  // (count,)
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const std::uint8_t value = data[kHeader + i];
    if (value > 9)
      throw FormatError(source, detail::concat("label ", unsigned(value), " at byte offset ",
                                               kHeader + i, " (item ", i,
                                               ") out of range 0..9"));
    labels[i] = value;
  }
  return labels;
}

/// Loads an IDX images file (plain or gzip). The result has no labels.
inline MnistData load_idx_images(const std::filesystem::path& path) {
  const std::vector<std::uint8_t> bytes = read_file_inflated(path);
  return parse_idx_images(bytes.data(), bytes.size(), path.string());
}

/// Loads an IDX labels file (plain or gzip).
inline std::vector<std::int32_t> load_idx_labels(const std::filesystem::path& path) {
  const std::vector<std::uint8_t> bytes = read_file_inflated(path);
  return parse_idx_labels(bytes.data(), bytes.size(), path.string());
}

namespace detail {
// The MNIST names of the labels file that goes with an images file, in the
// order they are tried: `images` -> `labels` and `idx3` -> `idx1` in the file
// name, first with the images file's own compression suffix, then the other.
// Empty if the name has nothing to replace.
inline std::vector<std::filesystem::path> idx_labels_candidates(
    const std::filesystem::path& images_path) {
  const auto replace_all = [](std::string s, const std::string& from, const std::string& to) {
    for (std::size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
      s.replace(at, from.size(), to);
    return s;
  };
  std::string base = images_path.filename().string();
  const bool gz = base.size() > 3 && base.compare(base.size() - 3, 3, ".gz") == 0;
  if (gz) base.resize(base.size() - 3);
  const std::string labels = replace_all(replace_all(base, "images", "labels"), "idx3", "idx1");
  if (labels == base) return {};
  const std::filesystem::path dir = images_path.parent_path();
  return {dir / (labels + (gz ? ".gz" : "")), dir / (labels + (gz ? "" : ".gz"))};
}
}  // namespace detail

/// The labels file next to an MNIST images file, found by the MNIST naming:
/// `train-images-idx3-ubyte.gz` -> `train-labels-idx1-ubyte.gz` (or without
/// .gz), `t10k-images.idx3-ubyte` -> `t10k-labels.idx1-ubyte` (or with .gz).
/// Throws FormatError naming the images file and every name it tried.
inline std::filesystem::path find_idx_labels_file(const std::filesystem::path& images_path) {
  const std::vector<std::filesystem::path> candidates = detail::idx_labels_candidates(images_path);
  if (candidates.empty())
    throw FormatError(images_path.string(),
                      "cannot guess the labels file: the name contains neither 'images' nor "
                      "'idx3' (MNIST naming); pass the labels file explicitly");
  std::string tried;
  for (const std::filesystem::path& candidate : candidates) {
    std::error_code ec;
    if (std::filesystem::exists(candidate, ec)) return candidate;
    tried += (tried.empty() ? "" : ", ") + candidate.string();
  }
  throw FormatError(images_path.string(), "no labels file found for these images; tried " +
                                              tried + "; pass the labels file explicitly");
}

namespace detail {
// Loads the labels for `images` (from `labels_path`, or found by the MNIST
// naming when it is empty) and checks that both files have the same count.
inline void attach_idx_labels(MnistData& images, const std::filesystem::path& images_path,
                              const std::filesystem::path& labels_path) {
  const std::filesystem::path labels_file =
      labels_path.empty() ? find_idx_labels_file(images_path) : labels_path;
  std::vector<std::int32_t> labels = load_idx_labels(labels_file);
  if (labels.size() != images.count)
    throw FormatError(labels_file.string(),
                      concat("has ", count_of(labels.size(), "label"), ", but the images file ",
                             images.source, " has ", count_of(images.count, "image"),
                             "; the two files must have one label per image"));
  images.labels = std::move(labels);
}
}  // namespace detail

/// Loads an IDX images file and its labels file (plain or gzip). An empty
/// `labels_path` means the file next to the images with the MNIST name (see
/// find_idx_labels_file). Throws FormatError on a bad file or a count mismatch.
inline MnistData load_mnist_idx(const std::filesystem::path& images_path,
                                const std::filesystem::path& labels_path = {}) {
  MnistData data = load_idx_images(images_path);
  detail::attach_idx_labels(data, images_path, labels_path);
  return data;
}

}  // namespace lamina
