// libFuzzer harness: the IDX (LeCun MNIST) images and labels parsers on
// arbitrary bytes, and the gzip path (inflate_gzip, then both parsers), as
// load_idx_images / load_idx_labels / load_mnist read a file.
//
// Contract under test: every call returns consistent data or throws
// lamina::Error; anything else escaping is a bug. Built and run by
// scripts/run-fuzz.sh.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include <lamina/core/error.hpp>
#include <lamina/data/gzip_reader.hpp>
#include <lamina/data/mnist_idx.hpp>
#include <lamina/data/mnist_data.hpp>

namespace {

void parse_both(const std::uint8_t* data, std::size_t size) {
  try {
    const lamina::MnistData d = lamina::parse_idx_images(data, size, "fuzz-images-idx3-ubyte");
    if (d.count == 0 || d.rows == 0 || d.cols == 0 || d.pixels.size() != d.count * d.rows * d.cols ||
        d.has_labels())
      std::abort();
  } catch (const lamina::Error&) {
  }
  try {
    const std::vector<std::int32_t> labels = lamina::parse_idx_labels(data, size, "fuzz-labels-idx1-ubyte");
    if (labels.empty() || labels.size() + 8 != size) std::abort();
    for (std::int32_t label : labels)
      if (label < 0 || label > 9) std::abort();
  } catch (const lamina::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  parse_both(data, size);
  // The gzip path: whatever the bytes are (inflate_gzip refuses non-gzip data
  // with a FormatError, which is part of the contract too).
  std::vector<std::uint8_t> inflated;
  try {
    inflated = lamina::inflate_gzip(data, size, "fuzz-images-idx3-ubyte.gz");
  } catch (const lamina::Error&) {
    return 0;
  }
  parse_both(inflated.data(), inflated.size());
  return 0;
}
