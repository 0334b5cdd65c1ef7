// libFuzzer harness: model files. The bytes are written to a file (lamina has
// no in-memory entry point for safetensors: read_safetensors and load_model
// take a path) and read back with read_safetensors, read_model_info,
// load_model<float> and load_model<double>.
//
// Contract under test: each call returns or throws lamina::Error; anything
// else escaping (nlohmann exceptions, std::bad_alloc, std::out_of_range, ...),
// a crash or a huge allocation is a bug. Built and run by scripts/run-fuzz.sh.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <lamina/core/error.hpp>
#include <lamina/io/model_io.hpp>
#include <lamina/io/safetensors.hpp>

namespace {

// One scratch file per fuzzing process (libFuzzer -jobs/-workers run several),
// in /dev/shm when there is one so that no disk is involved.
const std::filesystem::path& scratch_file() {
  static const std::filesystem::path path = [] {
    std::filesystem::path dir = "/dev/shm";
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) dir = std::filesystem::temp_directory_path();
    return dir / ("lamina-fuzz-model-" + std::to_string(::getpid()) + ".safetensors");
  }();
  return path;
}

void write_bytes(const std::filesystem::path& path, const std::uint8_t* data, std::size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (size != 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  if (std::fclose(f) != 0) std::abort();
}

struct RemoveAtExit {
  ~RemoveAtExit() {
    std::error_code ec;
    std::filesystem::remove(scratch_file(), ec);
  }
} remove_at_exit;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::filesystem::path& path = scratch_file();
  write_bytes(path, data, size);
  try {
    const lamina::SafetensorsFile file = lamina::read_safetensors(path);
    // Every tensor the reader vouches for must be readable in place.
    for (const lamina::SafetensorsEntry& entry : file.tensors()) {
      if (entry.end - entry.begin > file.data_size() || entry.end > file.data_size()) std::abort();
      if (entry.dtype == "F32" || entry.dtype == "F64") {
        std::vector<double> values(static_cast<std::size_t>(entry.element_count()));
        file.read_tensor<double>(entry, values.data());
      }
    }
  } catch (const lamina::Error&) {
  }
  try {
    (void)lamina::read_model_info(path);
  } catch (const lamina::Error&) {
  }
  try {
    (void)lamina::load_model<float>(path);
  } catch (const lamina::Error&) {
  }
  try {
    (void)lamina::load_model<double>(path);
  } catch (const lamina::Error&) {
  }
  return 0;
}
