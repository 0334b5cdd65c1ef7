// Helpers shared by the tests (never installed).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <zlib.h>

#include <catch2/catch.hpp>

namespace lamina_test {

/// Directory of the real MNIST data (LAMINA_DATA_DIR). When a test needs a file
/// that is not there, it fails if CI is set and skips otherwise.
inline std::filesystem::path data_dir() {
  const char* dir = std::getenv("LAMINA_DATA_DIR");
  return dir ? std::filesystem::path(dir) : std::filesystem::path("../shared/data");
}

/// Returns true if `relative` exists under data_dir(); otherwise fails the test
/// under CI and returns false (the caller then returns: a skip) elsewhere.
inline bool require_data(const std::string& relative) {
  const auto path = data_dir() / relative;
  if (std::filesystem::exists(path)) return true;
  if (std::getenv("CI") != nullptr) {
    FAIL("real MNIST data missing under CI: " << path.string()
                                              << " (set LAMINA_DATA_DIR; see README.md)");
  }
  WARN("skipping: " << path.string() << " not found (set LAMINA_DATA_DIR)");
  return false;
}

/// A fresh scratch directory for this test program.
inline std::filesystem::path temp_dir(const std::string& name) {
  const char* base = std::getenv("LAMINA_TEST_TMP");
  std::filesystem::path dir = base ? std::filesystem::path(base) : std::filesystem::temp_directory_path() / "lamina_test";
  dir /= name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

/// Writes `content` to `path` as is.
inline void write_file(const std::filesystem::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  REQUIRE(out.good());
}

/// Writes `content` to `path` gzip-compressed.
inline void write_gz(const std::filesystem::path& path, const std::string& content) {
  gzFile file = gzopen(path.string().c_str(), "wb");
  REQUIRE(file != nullptr);
  REQUIRE(gzwrite(file, content.data(), static_cast<unsigned>(content.size())) ==
          static_cast<int>(content.size()));
  REQUIRE(gzclose(file) == Z_OK);
}

}  // namespace lamina_test
