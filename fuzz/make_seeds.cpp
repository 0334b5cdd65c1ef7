// Writes the seed corpora under fuzz/corpus/ (committed; run this only to
// regenerate them after a format change):
//
//   g++ -std=c++17 -O1 -Iinclude -I/usr/include/eigen3 fuzz/make_seeds.cpp -lz -o /tmp/make_seeds
//   /tmp/make_seeds fuzz/corpus
//
// Seeds are tiny on purpose (libFuzzer mutates them; big seeds only slow it
// down): a valid file of each kind plus a few broken ones that reach the
// error paths. Model seeds are written by save_model / write_safetensors
// themselves, so they are exactly what lamina produces.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <zlib.h>

#include <lamina/lamina.hpp>

namespace fs = std::filesystem;

namespace {

void write(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

std::string gzip(const std::string& bytes) {
  z_stream s{};
  if (deflateInit2(&s, 9, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_DEFAULT_STRATEGY) != Z_OK) throw std::bad_alloc();
  std::string out(deflateBound(&s, bytes.size()) + 32, '\0');
  s.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  s.avail_in = static_cast<uInt>(bytes.size());
  s.next_out = reinterpret_cast<Bytef*>(out.data());
  s.avail_out = static_cast<uInt>(out.size());
  if (deflate(&s, Z_FINISH) != Z_STREAM_END) throw std::runtime_error("deflate");
  out.resize(s.total_out);
  deflateEnd(&s);
  return out;
}

std::string csv_header(bool label) {
  std::string h = label ? "label" : "";
  for (int k = 0; k < 784; ++k) h += (h.empty() ? "" : ",") + std::string("pixel") + std::to_string(k);
  return h;
}

// A row of mostly zeros with a few inked pixels of 1 to 3 digits, as Kaggle's.
std::string csv_row(int label, int variant) {
  std::string r = label >= 0 ? std::to_string(label) : "";
  for (int k = 0; k < 784; ++k) {
    const int v = (k % 97 == variant) ? 255 : (k % 131 == variant ? 7 : (k % 149 == variant ? 42 : 0));
    r += (k == 0 && label < 0 ? "" : ",") + std::to_string(v);
  }
  return r;
}

std::string idx_u32(std::uint32_t v) {
  return {char(v >> 24), char(v >> 16 & 0xff), char(v >> 8 & 0xff), char(v & 0xff)};
}

void csv_seeds(const fs::path& dir) {
  const std::string train = csv_header(true), test = csv_header(false);
  write(dir / "train_lf.csv", train + "\n" + csv_row(3, 1) + "\n" + csv_row(9, 5) + "\n");
  write(dir / "train_crlf_no_final_newline.csv", train + "\r\n" + csv_row(0, 2) + "\r\n" + csv_row(7, 3));
  write(dir / "test_lf.csv", test + "\n" + csv_row(-1, 4) + "\n");
  write(dir / "test_crlf_bom.csv", "\xEF\xBB\xBF" + test + "\r\n" + csv_row(-1, 6) + "\r\n\r\n");
  write(dir / "train_lf.csv.gz", gzip(train + "\n" + csv_row(1, 0) + "\n"));
  // Broken files: each reaches a different error path.
  std::string bad_pixel = csv_row(4, 1);
  bad_pixel.replace(bad_pixel.find(",255"), 4, ",256");
  write(dir / "broken_pixel_256.csv", train + "\n" + bad_pixel + "\n");
  std::string short_row = csv_row(2, 1);
  short_row.resize(short_row.rfind(','));
  write(dir / "broken_short_row.csv", train + "\n" + short_row + "\n" + csv_row(2, 2) + "\n");
  write(dir / "broken_no_header.csv", csv_row(5, 1) + "\n");
  write(dir / "broken_signs_and_quotes.csv", train + "\n-1,\"0\", 3,4.5\n");
  write(dir / "broken_empty_line.csv", train + "\n\n" + csv_row(6, 1) + "\n");
}

void idx_seeds(const fs::path& dir) {
  // 2 images of 3x4, and their labels.
  std::string images = idx_u32(2051) + idx_u32(2) + idx_u32(3) + idx_u32(4);
  for (int i = 0; i < 24; ++i) images += char(i * 11);
  const std::string labels = idx_u32(2049) + idx_u32(2) + std::string{char(3), char(9)};
  write(dir / "images-idx3-ubyte", images);
  write(dir / "labels-idx1-ubyte", labels);
  write(dir / "images-idx3-ubyte.gz", gzip(images));
  write(dir / "labels-idx1-ubyte.gz", gzip(labels));
  // One 28x28 image, as MNIST's.
  std::string mnist = idx_u32(2051) + idx_u32(1) + idx_u32(28) + idx_u32(28);
  for (int i = 0; i < 784; ++i) mnist += char(i % 29 == 0 ? 255 : 0);
  write(dir / "mnist-1-images-idx3-ubyte.gz", gzip(mnist));
  // Broken: truncated, too long, a huge declared count, a bad label, two gzip members, junk after gzip.
  write(dir / "broken_truncated-images", images.substr(0, images.size() - 5));
  write(dir / "broken_too_long-labels", labels + "\x01");
  write(dir / "broken_huge_count-images", idx_u32(2051) + idx_u32(0x80000000u) + idx_u32(28) + idx_u32(28) + "\x01\x02");
  write(dir / "broken_label_10-labels", idx_u32(2049) + idx_u32(1) + "\x0a");
  write(dir / "two_members-labels.gz", gzip(labels.substr(0, 5)) + gzip(labels.substr(5)));
  write(dir / "broken_junk_after-images.gz", gzip(images) + "junk");
}

void model_seeds(const fs::path& dir) {
  using namespace lamina;
  {  // The 2-layer MLP: Dense 3 (ReLU) -> Dense 2 on 4 inputs; 2 x (kernel, bias).
    Sequential<float> model(Shape{4}, 1);
    model.add<Dense>(3, Init::glorot_uniform, true, Activation::relu);
    model.add<Dense>(2);
    model.build();
    save_model(model, dir / "fuzz-seed-mlp2.safetensors");
  }
  {  // Every other registered layer type, tiny: Conv2D, MaxPooling2D, BatchNormalization, Dropout, Flatten.
    Sequential<float> model(Shape{4, 4, 1}, 2);
    model.add<Conv2D>(2, 3, 1, Padding::same);
    model.add<MaxPooling2D>(2);
    model.add<BatchNormalization>(0.9, 1e-3);
    model.add<Flatten>();
    model.add<Dropout>(0.25);
    model.add<Dense>(2);
    model.build();
    save_model(model, dir / "fuzz-seed-cnn.safetensors");
  }
  {  // A plain safetensors file (no lamina metadata), with an F64 and an I32 tensor.
    const double a[3] = {1.5, -2, 0.25};
    const std::int32_t b[2] = {7, -1};
    write_safetensors(dir / "fuzz-seed-plain.safetensors",
                      {{"a", "F64", {3}, a}, {"b", "I32", {1, 2}, b}}, {{"note", "plain"}});
  }
}

}  // namespace

int main(int argc, char** argv) {
  const fs::path root = argc > 1 ? argv[1] : "fuzz/corpus";
  for (const char* sub : {"csv", "idx", "model"}) fs::create_directories(root / sub);
  csv_seeds(root / "csv");
  idx_seeds(root / "idx");
  model_seeds(root / "model");
  std::printf("seeds written under %s\n", root.c_str());
  return 0;
}
