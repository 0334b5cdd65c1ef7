// The IDX loader, the labels-file lookup, load_mnist's format sniffing, and the
// real MNIST files (including a cross-check that the Kaggle CSVs hold exactly
// the MNIST images with the MNIST labels).
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include <zlib.h>

#include "lamina/data/data.hpp"
#include "support.hpp"

namespace fs = std::filesystem;
using lamina::ArgumentError;
using lamina::FormatError;
using lamina::MnistData;

namespace {

void put_u32(std::string& s, std::uint32_t v) {
  s += static_cast<char>(v >> 24);
  s += static_cast<char>(v >> 16);
  s += static_cast<char>(v >> 8);
  s += static_cast<char>(v);
}

std::uint8_t pixel_value(std::size_t i, std::size_t k) { return static_cast<std::uint8_t>((i * 13 + k * 5) % 256); }

// An IDX images file: header (magic, count, rows, cols) then count images.
std::string idx_images(std::uint32_t count, std::uint32_t rows, std::uint32_t cols,
                       std::uint32_t magic = 2051) {
  std::string s;
  put_u32(s, magic);
  put_u32(s, count);
  put_u32(s, rows);
  put_u32(s, cols);
  for (std::size_t i = 0; i < count; ++i)
    for (std::size_t k = 0; k < std::size_t(rows) * cols; ++k) s += static_cast<char>(pixel_value(i, k));
  return s;
}

std::uint8_t label_value(std::size_t i) { return static_cast<std::uint8_t>((i * 7 + 3) % 10); }

std::string idx_labels(std::uint32_t count, std::uint32_t magic = 2049) {
  std::string s;
  put_u32(s, magic);
  put_u32(s, count);
  for (std::size_t i = 0; i < count; ++i) s += static_cast<char>(label_value(i));
  return s;
}

using lamina_test::write_file;
using lamina_test::write_gz;

template <class F>
std::string format_error(F&& f) {
  try {
    f();
  } catch (const FormatError& e) {
    return e.what();
  }
  FAIL("no FormatError");
  return "";
}

void check_images(const MnistData& data, std::size_t count, std::size_t rows, std::size_t cols,
                  bool with_labels) {
  REQUIRE(data.count == count);
  CHECK(data.rows == rows);
  CHECK(data.cols == cols);
  REQUIRE(data.pixels.size() == count * rows * cols);
  for (std::size_t i = 0; i < count; ++i)
    for (std::size_t k = 0; k < rows * cols; ++k)
      REQUIRE(data.pixels[i * rows * cols + k] == pixel_value(i, k));
  REQUIRE(data.has_labels() == with_labels);
  if (with_labels)
    for (std::size_t i = 0; i < count; ++i) REQUIRE(data.labels[i] == label_value(i));
}

}  // namespace

TEST_CASE("IDX: good files, plain and gzip, paired by name or explicitly", "[data][idx]") {
  const fs::path dir = lamina_test::temp_dir("idx_good");

  SECTION("images and labels, plain and gzip") {
    write_file(dir / "a-images.idx3-ubyte", idx_images(7, 28, 28));
    write_gz(dir / "b-images-idx3-ubyte.gz", idx_images(7, 28, 28));
    write_file(dir / "a-labels.idx1-ubyte", idx_labels(7));
    write_gz(dir / "b-labels-idx1-ubyte.gz", idx_labels(7));
    check_images(lamina::load_idx_images(dir / "a-images.idx3-ubyte"), 7, 28, 28, false);
    check_images(lamina::load_idx_images(dir / "b-images-idx3-ubyte.gz"), 7, 28, 28, false);
    const std::vector<std::int32_t> labels = lamina::load_idx_labels(dir / "b-labels-idx1-ubyte.gz");
    CHECK(labels == lamina::load_idx_labels(dir / "a-labels.idx1-ubyte"));

    // Paired explicitly, and found by the MNIST naming.
    check_images(lamina::load_mnist_idx(dir / "a-images.idx3-ubyte", dir / "b-labels-idx1-ubyte.gz"),
                 7, 28, 28, true);
    check_images(lamina::load_mnist_idx(dir / "a-images.idx3-ubyte"), 7, 28, 28, true);
    check_images(lamina::load_mnist_idx(dir / "b-images-idx3-ubyte.gz"), 7, 28, 28, true);
    CHECK(lamina::load_mnist_idx(dir / "b-images-idx3-ubyte.gz").source ==
          (dir / "b-images-idx3-ubyte.gz").string());
  }
  SECTION("any image size is kept as stored") {
    write_file(dir / "odd-images-idx3-ubyte", idx_images(3, 5, 2));
    check_images(lamina::load_idx_images(dir / "odd-images-idx3-ubyte"), 3, 5, 2, false);
  }
  SECTION("find_idx_labels_file: the MNIST names, same compression first, then the other") {
    write_file(dir / "train-labels-idx1-ubyte", idx_labels(2));
    CHECK(lamina::find_idx_labels_file(dir / "train-images-idx3-ubyte.gz") ==
          dir / "train-labels-idx1-ubyte");
    write_gz(dir / "train-labels-idx1-ubyte.gz", idx_labels(2));
    CHECK(lamina::find_idx_labels_file(dir / "train-images-idx3-ubyte.gz") ==
          dir / "train-labels-idx1-ubyte.gz");
    CHECK(lamina::find_idx_labels_file(dir / "train-images-idx3-ubyte") ==
          dir / "train-labels-idx1-ubyte");
    write_file(dir / "t10k-labels.idx1-ubyte.gz", idx_labels(2));
    CHECK(lamina::find_idx_labels_file(dir / "t10k-images.idx3-ubyte") ==
          dir / "t10k-labels.idx1-ubyte.gz");
  }
}

TEST_CASE("IDX: bad files name the file and what is wrong", "[data][idx]") {
  const fs::path dir = lamina_test::temp_dir("idx_bad");
  const fs::path images = dir / "x-images-idx3-ubyte";
  const fs::path labels = dir / "x-labels-idx1-ubyte";
  const std::string fi = images.string();
  const std::string fl = labels.string();
  const auto images_error = [&](const std::string& content) {
    write_file(images, content);
    return format_error([&] { lamina::load_idx_images(images); });
  };
  const auto labels_error = [&](const std::string& content) {
    write_file(labels, content);
    return format_error([&] { lamina::load_idx_labels(labels); });
  };

  SECTION("wrong magic numbers") {
    CHECK(images_error(idx_labels(4)) ==
          fi + ": bad magic number 0x00000801 (2049) at byte offset 0, expected 0x00000803 "
               "(2051) for an IDX images file; this is an IDX labels file");
    CHECK(images_error(idx_images(2, 28, 28, 0x00000D03)) ==
          fi + ": bad magic number 0x00000d03 (3331) at byte offset 0, expected 0x00000803 "
               "(2051) for an IDX images file");
    CHECK(labels_error(idx_images(2, 28, 28)) ==
          fl + ": bad magic number 0x00000803 (2051) at byte offset 0, expected 0x00000801 "
               "(2049) for an IDX labels file; this is an IDX images file");
    CHECK(images_error("label,pixel0\n") ==
          fi + ": bad magic number 0x6c616265 (1818321509) at byte offset 0, expected "
               "0x00000803 (2051) for an IDX images file");
  }
  SECTION("header cut short") {
    CHECK(images_error(idx_images(1, 28, 28).substr(0, 10)) ==
          fi + ": file too short for an IDX images header: 10 bytes, expected at least 16");
    CHECK(images_error(std::string(2, '\0')) ==
          fi + ": file too short for an IDX images header: 2 bytes, expected at least 16");
    CHECK(images_error("") ==
          fi + ": empty file, expected an IDX images file (a 16-byte header with magic number 2051, "
               "then the pixels)");
    CHECK(labels_error("") ==
          fl + ": empty file, expected an IDX labels file (an 8-byte header with magic number 2049, "
               "then the labels)");
    CHECK(labels_error(idx_labels(1).substr(0, 6)) ==
          fl + ": file too short for an IDX labels header: 6 bytes, expected at least 8");
  }
  SECTION("zero count or zero image size") {
    CHECK(images_error(idx_images(0, 28, 28)) ==
          fi + ": the header says 0 images (count at byte offset 4); the file holds no images");
    CHECK(images_error(idx_images(3, 0, 28)) ==
          fi + ": the header says the images are 0x28 (at byte offset 8); both must be at least 1");
    CHECK(labels_error(idx_labels(0)) ==
          fl + ": the header says 0 labels (count at byte offset 4); the file holds no labels");
  }
  SECTION("images file too short or too long for its header") {
    const std::string good = idx_images(5, 28, 28);  // 16 + 5 * 784 = 3936 bytes
    CHECK(images_error(good.substr(0, 3000)) ==
          fi + ": file too short: the header says 5 images of 28x28, which take 3936 bytes, "
               "but the file has 3000 bytes (only 3 complete images)");
    CHECK(images_error(good + std::string(10, '\x07')) ==
          fi + ": file too long: the header says 5 images of 28x28, which take 3936 bytes, but "
               "the file has 3946 (10 extra bytes from byte offset 3936)");
    std::string huge;
    put_u32(huge, 2051);
    put_u32(huge, 0xFFFFFFFFu);
    put_u32(huge, 0xFFFFFFFFu);
    put_u32(huge, 0xFFFFFFFFu);
    CHECK(images_error(huge + "abc") ==
          fi + ": file too short: the header says 4294967295 images of 4294967295x4294967295, "
               "which take more than 2^64 bytes, but the file has 19 bytes (only 0 complete "
               "images)");
  }
  SECTION("labels file too short, too long, label out of range") {
    CHECK(labels_error(idx_labels(6).substr(0, 10)) ==
          fl + ": file too short: the header says 6 labels, which take 14 bytes, but the file "
               "has 10 (only 2 labels)");
    CHECK(labels_error(idx_labels(6) + "\x01\x02") ==
          fl + ": file too long: the header says 6 labels, which take 14 bytes, but the file has "
               "16 (2 extra bytes from byte offset 14)");
    std::string bad = idx_labels(6);
    bad[8 + 3] = 10;
    CHECK(labels_error(bad) == fl + ": label 10 at byte offset 11 (item 3) out of range 0..9");
  }
  SECTION("images and labels with different counts") {
    write_file(images, idx_images(5, 28, 28));
    write_file(labels, idx_labels(4));  // a valid labels file, but one label short
    CHECK(format_error([&] { lamina::load_mnist_idx(images); }) ==
          fl + ": has 4 labels, but the images file " + fi +
              " has 5 images; the two files must have one label per image");
    write_file(labels, idx_labels(6));
    CHECK(format_error([&] { lamina::load_mnist_idx(images, labels); }) ==
          fl + ": has 6 labels, but the images file " + fi +
              " has 5 images; the two files must have one label per image");
  }
  SECTION("a truncated gzip IDX file") {
    write_gz(dir / "t.gz", idx_images(50, 28, 28));
    std::ifstream in(dir / "t.gz", std::ios::binary);
    const std::string gz((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    write_file(images, gz.substr(0, gz.size() / 2));
    CHECK(format_error([&] { lamina::load_idx_images(images); })
              .rfind(fi + ": truncated gzip stream: the file ends after " +
                         std::to_string(gz.size() / 2) + " compressed bytes",
                     0) == 0);
  }
  SECTION("no labels file to be found") {
    write_file(images, idx_images(2, 28, 28));
    CHECK(format_error([&] { lamina::find_idx_labels_file(images); }) ==
          fi + ": no labels file found for these images; tried " + fl + ", " + fl +
              ".gz; pass the labels file explicitly");
    CHECK(format_error([&] { lamina::load_mnist_idx(images); }) ==
          fi + ": no labels file found for these images; tried " + fl + ", " + fl +
              ".gz; pass the labels file explicitly");
    const fs::path odd = dir / "digits.bin.gz";
    CHECK(format_error([&] { lamina::find_idx_labels_file(odd); }) ==
          odd.string() + ": cannot guess the labels file: the name contains neither 'images' "
                         "nor 'idx3' (MNIST naming); pass the labels file explicitly");
  }
  SECTION("a missing labels file given explicitly") {
    write_file(images, idx_images(2, 28, 28));
    CHECK(format_error([&] { lamina::load_mnist_idx(images, dir / "nope"); }) ==
          (dir / "nope").string() + ": no such file");
  }
}

TEST_CASE("load_mnist decides the format by content", "[data][idx][csv]") {
  const fs::path dir = lamina_test::temp_dir("idx_sniff");
  write_gz(dir / "s-images-idx3-ubyte.gz", idx_images(4, 28, 28));
  write_file(dir / "s-labels-idx1-ubyte", idx_labels(4));
  write_file(dir / "other-labels", idx_labels(4));

  check_images(lamina::load_mnist(dir / "s-images-idx3-ubyte.gz"), 4, 28, 28, true);
  check_images(lamina::load_mnist(dir / "s-images-idx3-ubyte.gz", dir / "other-labels"), 4, 28, 28,
               true);
  // An IDX file with an unexpected name still loads as IDX (labels given).
  write_file(dir / "images.csv", idx_images(4, 28, 28));
  check_images(lamina::load_mnist(dir / "images.csv", dir / "other-labels"), 4, 28, 28, true);

  CHECK(format_error([&] { lamina::load_mnist(dir / "s-labels-idx1-ubyte"); }) ==
        (dir / "s-labels-idx1-ubyte").string() +
            ": is an IDX labels file (magic 2049); pass the IDX images file (magic 2051) as the "
            "path and this one as labels_path");
  // An IDX file of another element type goes to the IDX parser, not the CSV one.
  write_file(dir / "floats", idx_images(1, 28, 28, 0x00000D03));
  CHECK(format_error([&] { lamina::load_mnist(dir / "floats"); }) ==
        (dir / "floats").string() +
            ": bad magic number 0x00000d03 (3331) at byte offset 0, expected 0x00000803 (2051) "
            "for an IDX images file");

  // CSV: the labels are in the file, so a labels_path is a mistake.
  std::string csv = "label";
  for (int k = 0; k < 784; ++k) csv += ",pixel" + std::to_string(k);
  csv += "\n3";
  for (int k = 0; k < 784; ++k) csv += "," + std::to_string(k % 256);
  csv += "\n";
  write_gz(dir / "digits.data", csv);
  const MnistData data = lamina::load_mnist(dir / "digits.data");
  REQUIRE(data.count == 1);
  CHECK(data.labels == std::vector<std::int32_t>{3});
  CHECK(data.pixels[783] == 783 % 256);
  CHECK_THROWS_AS(lamina::load_mnist(dir / "digits.data", dir / "other-labels"), ArgumentError);
  CHECK_THROWS_WITH(lamina::load_mnist(dir / "digits.data", dir / "other-labels"),
                    "load_mnist: labels_path '" + (dir / "other-labels").string() + "' given, but " +
                        (dir / "digits.data").string() +
                        " is a CSV file, whose labels are its first column");
  CHECK(format_error([&] { lamina::load_mnist(dir / "missing"); }) ==
        (dir / "missing").string() + ": no such file");
}

namespace {
std::array<int, 10> count_labels(const std::vector<std::int32_t>& labels) {
  std::array<int, 10> counts{};
  for (const std::int32_t label : labels) {
    REQUIRE((label >= 0 && label <= 9));
    ++counts[static_cast<std::size_t>(label)];
  }
  return counts;
}
}  // namespace

TEST_CASE("real data: MNIST train and t10k", "[data][idx][real]") {
  const std::string train_images = "mnist-idx/train-images-idx3-ubyte.gz";
  const std::string t10k_images = "mnist-idx/t10k-images-idx3-ubyte.gz";
  if (!lamina_test::require_data(train_images) || !lamina_test::require_data(t10k_images) ||
      !lamina_test::require_data("mnist-idx/train-labels-idx1-ubyte.gz") ||
      !lamina_test::require_data("mnist-idx/t10k-labels-idx1-ubyte.gz"))
    return;
  using Clock = std::chrono::steady_clock;

  const auto start = Clock::now();
  const MnistData train = lamina::load_mnist_idx(lamina_test::data_dir() / train_images);
  const double train_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  WARN("load_mnist_idx(train-images-idx3-ubyte.gz + labels): " << train_ms << " ms");
  REQUIRE(train.count == 60000);
  CHECK(train.rows == 28);
  CHECK(train.cols == 28);
  CHECK(train.pixels.size() == 47040000u);
  CHECK(count_labels(train.labels) ==
        std::array<int, 10>{5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949});
  // The well-known first labels of each file.
  CHECK(std::vector<std::int32_t>(train.labels.begin(), train.labels.begin() + 10) ==
        std::vector<std::int32_t>{5, 0, 4, 1, 9, 2, 1, 3, 1, 4});

  const MnistData t10k = lamina::load_mnist(lamina_test::data_dir() / t10k_images);
  REQUIRE(t10k.count == 10000);
  CHECK(t10k.rows == 28);
  CHECK(t10k.cols == 28);
  CHECK(t10k.pixels.size() == 7840000u);
  CHECK(count_labels(t10k.labels) ==
        std::array<int, 10>{980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009});
  CHECK(std::vector<std::int32_t>(t10k.labels.begin(), t10k.labels.begin() + 10) ==
        std::vector<std::int32_t>{7, 2, 1, 0, 4, 1, 4, 9, 5, 9});
}

namespace {
// FNV-1a over one image: a fingerprint to match images across files.
std::uint64_t image_hash(const std::uint8_t* pixels, std::size_t n) {
  std::uint64_t h = 1469598103934665603ull;
  for (std::size_t i = 0; i < n; ++i) h = (h ^ pixels[i]) * 1099511628211ull;
  return h;
}
}  // namespace

TEST_CASE("real data: the Kaggle CSVs hold exactly the 70000 MNIST images", "[data][idx][csv][real]") {
  // Two independent parsers on two independent files must agree: every row of
  // train.csv is an MNIST image with its MNIST label, and train.csv plus
  // test.csv are the 70000 MNIST images (data/README.md).
  const std::string names[] = {"mnist-idx/train-images-idx3-ubyte.gz",
                               "mnist-idx/t10k-images-idx3-ubyte.gz",
                               "kaggle-digit-recognizer/train.csv.gz",
                               "kaggle-digit-recognizer/test.csv.gz"};
  for (const std::string& name : names)
    if (!lamina_test::require_data(name)) return;
  std::vector<std::pair<std::uint64_t, std::int32_t>> mnist, kaggle;  // (image hash, label)
  std::vector<std::uint64_t> mnist_images, kaggle_images;
  for (int i = 0; i < 4; ++i) {
    const MnistData data = lamina::load_mnist(lamina_test::data_dir() / names[i]);
    REQUIRE(data.rows * data.cols == 784);
    for (std::size_t n = 0; n < data.count; ++n) {
      const std::uint64_t h = image_hash(data.pixels.data() + n * 784, 784);
      (i < 2 ? mnist_images : kaggle_images).push_back(h);
      if (data.has_labels()) (i < 2 ? mnist : kaggle).emplace_back(h, data.labels[n]);
    }
  }
  REQUIRE(mnist_images.size() == 70000);
  REQUIRE(kaggle_images.size() == 70000);
  std::sort(mnist_images.begin(), mnist_images.end());
  std::sort(kaggle_images.begin(), kaggle_images.end());
  CHECK(mnist_images == kaggle_images);

  std::sort(mnist.begin(), mnist.end());
  std::sort(kaggle.begin(), kaggle.end());
  REQUIRE(kaggle.size() == 42000);
  CHECK(std::includes(mnist.begin(), mnist.end(), kaggle.begin(), kaggle.end()));
}
