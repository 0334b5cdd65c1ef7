// libFuzzer harness: the Kaggle MNIST CSV parser on arbitrary bytes, plain and
// (when the bytes are gzip) inflated first, as load_mnist_csv does.
//
// Contract under test: for any input, parse_mnist_csv either returns data that
// is self-consistent or throws lamina::Error. Anything else escaping (another
// exception type, a crash, a sanitizer report, a hang, a huge allocation) is a
// bug. Built and run by scripts/run-fuzz.sh.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include <lamina/core/error.hpp>
#include <lamina/data/gzip_reader.hpp>
#include <lamina/data/mnist_csv.hpp>
#include <lamina/data/mnist_data.hpp>

namespace {

void check(const lamina::MnistData& d) {
  // A returned result must be what the header promises, or it is a bug too.
  if (d.rows != 28 || d.cols != 28 || d.count == 0 || d.pixels.size() != d.count * 784 ||
      (d.has_labels() && d.labels.size() != d.count))
    std::abort();
  for (std::int32_t label : d.labels)
    if (label < 0 || label > 9) std::abort();
}

void parse(const std::uint8_t* data, std::size_t size) {
  try {
    check(lamina::parse_mnist_csv(reinterpret_cast<const char*>(data), size, "fuzz.csv"));
  } catch (const lamina::Error&) {
    // expected: a FormatError for a bad file
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  parse(data, size);
  if (lamina::is_gzip(data, size)) {
    std::vector<std::uint8_t> inflated;
    try {
      inflated = lamina::inflate_gzip(data, size, "fuzz.csv.gz");
    } catch (const lamina::Error&) {
      return 0;
    }
    parse(inflated.data(), inflated.size());
  }
  return 0;
}
