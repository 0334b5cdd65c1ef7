// Every input the fuzzers (fuzz/fuzz_*.cpp, scripts/run-fuzz.sh) ever crashed
// on is kept under fuzz/regressions/<harness>/ and replayed here through the
// same entry points as the harness, in the normal (gcc, no sanitizer) build:
// each call must return or throw a lamina::Error, nothing else. The seed
// corpora (fuzz/corpus/<harness>/) are replayed too, so a loader change that
// breaks them is seen here before a fuzzing run. docs/robustness.md lists
// what each regression input was.
#include <lamina/core/error.hpp>
#include <lamina/core/file_io.hpp>
#include <lamina/data/gzip_reader.hpp>
#include <lamina/data/load.hpp>
#include <lamina/data/mnist_csv.hpp>
#include <lamina/data/mnist_data.hpp>
#include <lamina/data/mnist_idx.hpp>
#include <lamina/io/model_io.hpp>
#include <lamina/io/safetensors.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <typeinfo>
#include <vector>

#include "support.hpp"

namespace fs = std::filesystem;
using Bytes = std::vector<std::uint8_t>;

namespace {

// fuzz/ next to this file's folder (CMake compiles tests by absolute path).
const fs::path kFuzzDir = fs::path(__FILE__).parent_path().parent_path() / "fuzz";

// The files under fuzz/<kind>/<harness>/, sorted so that failures are reported
// in a stable order.
std::vector<fs::path> inputs(const std::string& kind, const std::string& harness) {
  std::vector<fs::path> files;
  const fs::path dir = kFuzzDir / kind / harness;
  if (!fs::is_directory(dir)) return files;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.is_regular_file()) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

// Runs `call`; true if it returned or threw lamina::Error. Any other exception
// fails the test with its type and message.
bool only_lamina_errors(const fs::path& input, const std::string& entry_point, const std::function<void()>& call) {
  INFO(input.string() << " through " << entry_point);
  try {
    call();
  } catch (const lamina::Error&) {
  } catch (const std::exception& e) {
    FAIL("escaped a non-lamina exception: " << typeid(e).name() << ": " << e.what());
    return false;
  } catch (...) {
    FAIL("escaped a non-std exception");
    return false;
  }
  return true;
}

// The fuzz_csv harness: parse_mnist_csv on the bytes, and on their inflation when gzip.
void replay_csv(const fs::path& input) {
  const Bytes bytes = lamina::read_file_raw(input);
  only_lamina_errors(input, "parse_mnist_csv", [&] {
    (void)lamina::parse_mnist_csv(reinterpret_cast<const char*>(bytes.data()), bytes.size(), input.string());
  });
  if (lamina::is_gzip(bytes.data(), bytes.size()))
    only_lamina_errors(input, "inflate_gzip + parse_mnist_csv", [&] {
      const Bytes inflated = lamina::inflate_gzip(bytes.data(), bytes.size(), input.string());
      (void)lamina::parse_mnist_csv(reinterpret_cast<const char*>(inflated.data()), inflated.size(), input.string());
    });
  only_lamina_errors(input, "load_mnist", [&] { (void)lamina::load_mnist(input); });
}

// The fuzz_idx harness: both IDX parsers, plain and after inflate_gzip.
void replay_idx(const fs::path& input) {
  const Bytes bytes = lamina::read_file_raw(input);
  only_lamina_errors(input, "parse_idx_images", [&] {
    (void)lamina::parse_idx_images(bytes.data(), bytes.size(), input.string());
  });
  only_lamina_errors(input, "parse_idx_labels", [&] {
    (void)lamina::parse_idx_labels(bytes.data(), bytes.size(), input.string());
  });
  only_lamina_errors(input, "inflate_gzip + parse_idx_images/labels", [&] {
    const Bytes inflated = lamina::inflate_gzip(bytes.data(), bytes.size(), input.string());
    try {
      (void)lamina::parse_idx_images(inflated.data(), inflated.size(), input.string());
    } catch (const lamina::Error&) {
    }
    (void)lamina::parse_idx_labels(inflated.data(), inflated.size(), input.string());
  });
  only_lamina_errors(input, "load_idx_images", [&] { (void)lamina::load_idx_images(input); });
  only_lamina_errors(input, "load_idx_labels", [&] { (void)lamina::load_idx_labels(input); });
}

// The fuzz_model harness: read_safetensors (and its tensors), read_model_info, load_model.
void replay_model(const fs::path& input) {
  only_lamina_errors(input, "read_safetensors", [&] {
    const lamina::SafetensorsFile file = lamina::read_safetensors(input);
    for (const lamina::SafetensorsEntry& entry : file.tensors())
      if (entry.dtype == "F32" || entry.dtype == "F64") {
        std::vector<double> values(static_cast<std::size_t>(entry.element_count()));
        file.read_tensor<double>(entry, values.data());
      }
  });
  only_lamina_errors(input, "read_model_info", [&] { (void)lamina::read_model_info(input); });
  only_lamina_errors(input, "load_model<float>", [&] { (void)lamina::load_model<float>(input); });
  only_lamina_errors(input, "load_model<double>", [&] { (void)lamina::load_model<double>(input); });
}

// The FormatError message `call` throws ("" if it throws none).
std::string format_error(const std::function<void()>& call) {
  try {
    call();
  } catch (const lamina::FormatError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("fuzz regression inputs: only lamina::Error escapes the loaders", "[fuzz]") {
  std::size_t replayed = 0;
  for (const fs::path& p : inputs("regressions", "csv")) replay_csv(p), ++replayed;
  for (const fs::path& p : inputs("regressions", "idx")) replay_idx(p), ++replayed;
  for (const fs::path& p : inputs("regressions", "model")) replay_model(p), ++replayed;
  // The folder exists and holds the inputs of the crashes found (at least two).
  CHECK(replayed >= 2);
}

TEST_CASE("fuzz seed corpora: only lamina::Error escapes, and the valid seeds load", "[fuzz]") {
  const auto csv = inputs("corpus", "csv"), idx = inputs("corpus", "idx"), model = inputs("corpus", "model");
  REQUIRE(!csv.empty());
  REQUIRE(!idx.empty());
  REQUIRE(!model.empty());
  for (const fs::path& p : csv) replay_csv(p);
  for (const fs::path& p : idx) replay_idx(p);
  for (const fs::path& p : model) replay_model(p);

  // The valid seeds really are valid: a seed that no longer parses would make
  // the fuzzer start from error paths only.
  CHECK(lamina::load_mnist(kFuzzDir / "corpus/csv/train_lf.csv").count == 2);
  CHECK(lamina::load_mnist(kFuzzDir / "corpus/csv/train_crlf_no_final_newline.csv").count == 2);
  CHECK(lamina::load_mnist(kFuzzDir / "corpus/csv/test_crlf_bom.csv").count == 1);
  CHECK(lamina::load_mnist(kFuzzDir / "corpus/csv/train_lf.csv.gz").labels == std::vector<std::int32_t>{1});
  CHECK(lamina::load_idx_images(kFuzzDir / "corpus/idx/images-idx3-ubyte.gz").count == 2);
  CHECK(lamina::load_idx_labels(kFuzzDir / "corpus/idx/two_members-labels.gz") == std::vector<std::int32_t>{3, 9});
  CHECK(lamina::load_model<float>(kFuzzDir / "corpus/model/fuzz-seed-mlp2.safetensors").size() == 2);
  CHECK(lamina::load_model<float>(kFuzzDir / "corpus/model/fuzz-seed-cnn.safetensors").size() == 6);
}

TEST_CASE("fuzz findings: JSON numbers that overflow a double are FormatErrors", "[fuzz]") {
  // nlohmann throws out_of_range (406), not parse_error, for "1e999": it used
  // to escape read_safetensors and load_model as a nlohmann exception.
  const fs::path header = kFuzzDir / "regressions/model/header-number-overflow-1e308";
  const std::string in_header = format_error([&] { (void)lamina::read_safetensors(header); });
  CHECK(in_header.rfind(header.string() + ": the JSON header (bytes 8 to ", 0) == 0);
  CHECK(in_header.find("is malformed: number overflow parsing '") != std::string::npos);

  const fs::path arch = kFuzzDir / "regressions/model/architecture-number-overflow-1e999";
  const std::string in_arch = format_error([&] { (void)lamina::load_model<float>(arch); });
  CHECK(in_arch == arch.string() +
                       ": the architecture in __metadata__ is not valid JSON: number overflow parsing '1e999'");
}
