// The catalogue of bad input (docs/errors.md): every situation a user can get
// wrong, through every public entry point it reaches, with
//  - the exception's exact type (lamina::FormatError, ArgumentError, ShapeError
//    or Error; a subclass is not enough),
//  - the exact, complete message (file, line and column for the loaders; layer
//    index, type and shapes, or sample and element, for the API), and
//  - no change of state: a loader leaves its destination, the file and its
//    directory as they were; a model call leaves the parameters, the buffers
//    (BatchNormalization's moving statistics), the optimizer state (Adam's m, v
//    and step count, the learning rate) and every layer's random stream
//    (Dropout) bit-identical, and the model then trains, evaluates and predicts
//    exactly as a twin that never saw the failing call.
// The files are synthetic (no real MNIST needed). Each SECTION is one row of the
// catalogue; docs/errors.md names them.
#include <lamina/lamina.hpp>
#include <lamina/io/model_io.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <typeinfo>
#include <vector>

#include <nlohmann/json.hpp>
#include <zlib.h>

#include "support.hpp"

using namespace lamina;
namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;
using Bytes = std::string;  // file contents, binary

namespace {

// ===========================================================================
// Checking one error
// ===========================================================================

template <class E>
const char* type_name() {
  if (std::is_same_v<E, FormatError>) return "lamina::FormatError";
  if (std::is_same_v<E, ArgumentError>) return "lamina::ArgumentError";
  if (std::is_same_v<E, ShapeError>) return "lamina::ShapeError";
  if (std::is_same_v<E, NumericalError>) return "lamina::NumericalError";
  return "lamina::Error";
}

// `call` must throw exactly an E whose what() is exactly `expected`. With
// `soft` (the known gaps at the end) a wrong message does not end the test
// case, so that the state checks after it still report.
template <class E>
void require_error(const std::function<void()>& call, const std::string& expected, bool soft = false) {
  INFO("expected " << type_name<E>() << ": " << expected);
  bool thrown = false;
  try {
    call();
  } catch (const E& e) {
    thrown = true;
    REQUIRE(typeid(e) == typeid(E));  // not a subclass either
    if (soft)
      CHECK(e.what() == std::string(expected));
    else
      REQUIRE(e.what() == std::string(expected));
  } catch (const std::exception& e) {
    if (soft)
      FAIL_CHECK("threw " << typeid(e).name() << " instead: " << e.what());
    else
      FAIL("threw " << typeid(e).name() << " instead: " << e.what());
  }
  if (!thrown) {
    if (soft)
      FAIL_CHECK("no exception");
    else
      FAIL("no exception");
  }
}

// ===========================================================================
// Files
// ===========================================================================

using lamina_test::write_file;
using lamina_test::write_gz;

Bytes read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

Bytes gzip_bytes(const fs::path& scratch, const Bytes& content) {
  write_gz(scratch, content);
  Bytes gz = read_bytes(scratch);
  fs::remove(scratch);
  return gz;
}

// How many bytes zlib can inflate from a truncated gzip stream: what the
// "(M bytes inflated)" of the truncated-gzip message must say.
std::size_t inflatable(const Bytes& truncated_gz) {
  z_stream s{};
  REQUIRE(inflateInit2(&s, 16 + MAX_WBITS) == Z_OK);
  std::vector<unsigned char> out(1 << 22);
  s.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(truncated_gz.data()));
  s.avail_in = static_cast<uInt>(truncated_gz.size());
  s.next_out = out.data();
  s.avail_out = static_cast<uInt>(out.size());
  const int ret = inflate(&s, Z_NO_FLUSH);
  REQUIRE((ret == Z_OK || ret == Z_BUF_ERROR));
  REQUIRE(s.avail_in == 0);
  REQUIRE(s.avail_out > 0);
  const std::size_t n = s.total_out;
  inflateEnd(&s);
  return n;
}

std::string truncated_gz_message(const Bytes& truncated_gz) {
  return ": truncated gzip stream: the file ends after " + std::to_string(truncated_gz.size()) +
         " compressed bytes (" + std::to_string(inflatable(truncated_gz)) +
         " bytes inflated) before the end of the compressed data";
}

// Every file under `dir` with its bytes: a failing loader must leave it so.
std::map<std::string, Bytes> listing(const fs::path& dir) {
  std::map<std::string, Bytes> files;
  for (const auto& entry : fs::recursive_directory_iterator(dir))
    files[entry.path().string()] = entry.is_regular_file() ? read_bytes(entry.path()) : Bytes("<dir>");
  return files;
}

// A destination with recognisable content: a failing load must not touch it.
MnistData sentinel_data() {
  MnistData d;
  d.count = 1;
  d.rows = 2;
  d.cols = 2;
  d.pixels = {1, 2, 3, 4};
  d.labels = {7};
  d.source = "sentinel";
  return d;
}
bool same_data(const MnistData& a, const MnistData& b) {
  return a.count == b.count && a.rows == b.rows && a.cols == b.cols && a.pixels == b.pixels &&
         a.labels == b.labels && a.source == b.source;
}

// One loader entry point: loads `path` into `out` (assignment only happens if
// the call returns).
struct Loader {
  std::string name;
  std::function<void(const fs::path& path, MnistData& out)> load;
};

// Runs `loader` on `path`: exactly E with message path + suffix, `out` and
// every file in `dir` untouched.
template <class E = FormatError>
void check_load(const Loader& loader, const fs::path& dir, const fs::path& path, const std::string& message) {
  INFO("loader: " << loader.name << ", file: " << path.string());
  const auto files_before = listing(dir);
  MnistData out = sentinel_data();
  require_error<E>([&] { loader.load(path, out); }, message);
  CHECK(same_data(out, sentinel_data()));
  CHECK(listing(dir) == files_before);
}

// ---- Kaggle CSV --------------------------------------------------------------

using Fields = std::vector<std::string>;

std::string join(const Fields& fields) {
  std::string s;
  for (std::size_t i = 0; i < fields.size(); ++i) s += (i ? "," : "") + fields[i];
  return s;
}
// The header of the train (label column) or test layout.
Fields csv_header(bool train) {
  Fields f;
  if (train) f.push_back("label");
  for (int k = 0; k < 784; ++k) f.push_back("pixel" + std::to_string(k));
  return f;
}
// A valid row of one-digit fields: field i (0-based) starts at column 2i + 1.
Fields csv_row(bool train) {
  Fields f;
  if (train) f.push_back("5");
  for (int k = 0; k < 784; ++k) f.push_back("0");
  return f;
}
// 0-based field index of pixel k.
std::size_t pixel_field(bool train, std::size_t k) { return k + (train ? 1 : 0); }
std::size_t column_of_field(std::size_t field) { return 2 * field + 1; }

// header, a good row (line 2), `bad` (line 3), a good row (line 4).
std::string csv_with_bad_row(bool train, const Fields& bad, const std::string& eol = "\n") {
  const std::string good = join(csv_row(train));
  return join(csv_header(train)) + eol + good + eol + join(bad) + eol + good + eol;
}

const Loader kLoadMnistCsv{"load_mnist_csv", [](const fs::path& p, MnistData& out) { out = load_mnist_csv(p); }};
const Loader kLoadMnist{"load_mnist", [](const fs::path& p, MnistData& out) { out = load_mnist(p); }};

// `content` as <name> and <name>.gz, through load_mnist_csv and load_mnist:
// each must throw FormatError(<file> + suffix).
void csv_case(const std::string& section, const std::string& content, const std::string& suffix) {
  const fs::path dir = lamina_test::temp_dir("catalogue_csv_" + section);
  for (const bool gz : {false, true}) {
    const fs::path path = dir / (gz ? "digits.csv.gz" : "digits.csv");
    if (gz)
      write_gz(path, content);
    else
      write_file(path, content);
    for (const Loader* loader : {&kLoadMnistCsv, &kLoadMnist}) check_load(*loader, dir, path, path.string() + suffix);
    fs::remove(path);
  }
}

// ---- IDX --------------------------------------------------------------------

void put_u32(Bytes& s, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) s += static_cast<char>((v >> shift) & 0xFF);
}
Bytes idx_images(std::uint32_t count, std::uint32_t rows = 28, std::uint32_t cols = 28, std::uint32_t magic = 2051,
                 std::size_t stored = std::size_t(-1)) {
  if (stored == std::size_t(-1)) stored = count;
  Bytes s;
  put_u32(s, magic);
  put_u32(s, count);
  put_u32(s, rows);
  put_u32(s, cols);
  for (std::size_t i = 0; i < stored * rows * cols; ++i) s += static_cast<char>((i * 37) % 256);
  return s;
}
Bytes idx_labels(std::uint32_t count, std::uint32_t magic = 2049, std::size_t stored = std::size_t(-1)) {
  if (stored == std::size_t(-1)) stored = count;
  Bytes s;
  put_u32(s, magic);
  put_u32(s, count);
  for (std::size_t i = 0; i < stored; ++i) s += static_cast<char>(i % 10);
  return s;
}

// The scratch folder of an IDX case: good images and labels (5 of each) under
// MNIST names, to pair a bad file with.
struct IdxDir {
  fs::path dir, good_images, good_labels;
};
IdxDir idx_dir(const std::string& section) {
  IdxDir d;
  d.dir = lamina_test::temp_dir("catalogue_idx_" + section);
  d.good_images = d.dir / "good-images-idx3-ubyte";
  d.good_labels = d.dir / "good-labels-idx1-ubyte";
  write_file(d.good_images, idx_images(5));
  write_file(d.good_labels, idx_labels(5));
  return d;
}

// A bad IDX images file, plain and gzip, through load_idx_images,
// load_mnist_idx(images, labels) and load_mnist(images, labels).
// load_mnist decides the format by content and has its own message for an
// empty file and for a labels file: `load_mnist_suffix` when not empty.
void idx_images_case(const std::string& section, const Bytes& content, const std::string& suffix,
                     const std::string& load_mnist_suffix = "") {
  const IdxDir d = idx_dir(section);
  const std::vector<Loader> loaders = {
      {"load_idx_images", [](const fs::path& p, MnistData& out) { out = load_idx_images(p); }},
      {"load_mnist_idx", [&](const fs::path& p, MnistData& out) { out = load_mnist_idx(p, d.good_labels); }},
      {"load_mnist", [&](const fs::path& p, MnistData& out) { out = load_mnist(p, d.good_labels); }},
  };
  for (const bool gz : {false, true}) {
    const fs::path path = d.dir / (gz ? "bad-images-idx3-ubyte.gz" : "bad-images-idx3-ubyte");
    if (gz)
      write_gz(path, content);
    else
      write_file(path, content);
    for (const Loader& loader : loaders)
      check_load(loader, d.dir, path,
                 path.string() + (loader.name == "load_mnist" && !load_mnist_suffix.empty() ? load_mnist_suffix : suffix));
    fs::remove(path);
  }
}

// A bad IDX labels file, plain and gzip, through load_idx_labels,
// load_mnist_idx(images, labels) and load_mnist(images, labels). The images
// file has `images` images.
void idx_labels_case(const std::string& section, const Bytes& content, const std::string& suffix,
                     std::uint32_t images = 5) {
  const IdxDir d = idx_dir(section);
  write_file(d.good_images, idx_images(images));
  const std::vector<Loader> loaders = {
      {"load_idx_labels",
       [](const fs::path& p, MnistData& out) {
         std::vector<std::int32_t> labels = load_idx_labels(p);
         out.labels = std::move(labels);  // only reached on success
       }},
      {"load_mnist_idx", [&](const fs::path& p, MnistData& out) { out = load_mnist_idx(d.good_images, p); }},
      {"load_mnist", [&](const fs::path& p, MnistData& out) { out = load_mnist(d.good_images, p); }},
  };
  for (const bool gz : {false, true}) {
    const fs::path path = d.dir / (gz ? "bad-labels-idx1-ubyte.gz" : "bad-labels-idx1-ubyte");
    if (gz)
      write_gz(path, content);
    else
      write_file(path, content);
    for (const Loader& loader : loaders) check_load(loader, d.dir, path, path.string() + suffix);
    fs::remove(path);
  }
}

// ===========================================================================
// Models
// ===========================================================================

using Net = Sequential<float>;
constexpr std::size_t kSamples = 24;

// Flatten -> Dense 8 (ReLU) -> BatchNormalization -> Dropout -> Dense 3 on
// (4, 4, 1): parameters, buffers and a random stream, all of which a failing
// call must leave alone.
std::unique_ptr<Net> fresh_model() {
  auto m = std::make_unique<Net>(Shape{4, 4, 1}, 21);
  m->add<Flatten>();
  m->add<Dense>(8, Init::he_normal, true, Activation::relu);
  m->add<BatchNormalization>(0.9, 1e-3);
  m->add<Dropout>(0.25);
  m->add<Dense>(3);
  return m;
}

Dataset<float> synthetic(std::size_t n, std::uint64_t seed) {
  Dataset<float> d;
  d.images.resize(Shape{n, 4, 4, 1});
  d.labels.resize(n);
  Rng rng(seed);
  for (std::size_t i = 0; i < n; ++i) {
    float sums[3] = {0, 0, 0};
    for (std::size_t j = 0; j < 16; ++j) {
      const float v = static_cast<float>(rng.uniform());
      d.images.data()[i * 16 + j] = v;
      sums[j * 3 / 16] += v;
    }
    d.labels[i] = static_cast<std::int32_t>(std::max_element(sums, sums + 3) - sums);
  }
  return d;
}

FitOptions<float> quiet_options(std::size_t epochs = 1, std::size_t batch = 8) {
  FitOptions<float> o;
  o.epochs = epochs;
  o.batch_size = batch;
  o.shuffle_seed = 3;
  o.verbosity = Verbosity::quiet;
  o.log = nullptr;
  return o;
}

// Compiled and trained for two epochs: Adam's moments and step count, the
// moving statistics and the Dropout stream are all away from their start.
std::unique_ptr<Net> trained_model(const Dataset<float>& data) {
  auto m = fresh_model();
  m->compile(std::make_unique<Adam<float>>(1e-2));
  fit(*m, data.images.view(), data.labels, quiet_options(2));
  return m;
}

// Everything a failing call must not change, as bits.
struct ModelState {
  bool built = false;
  std::size_t layers = 0;
  Bytes params, buffers;
  std::vector<Bytes> optimizer;
  std::uint64_t iterations = 0;
  double learning_rate = 0;
  std::vector<Bytes> rngs;  // one per layer with a stream
};

template <class T>
Bytes bits(const T* data, std::size_t n) {
  return Bytes(reinterpret_cast<const char*>(data), n * sizeof(T));
}

ModelState snapshot(Net& m) {
  ModelState s;
  s.built = m.built();
  s.layers = m.size();
  if (m.built()) {
    s.params = bits(m.store().params().data(), m.store().params().size());
    s.buffers = bits(m.store().buffers().data(), m.store().buffers().size());
  }
  if (Optimizer<float>* opt = m.optimizer()) {
    for (const auto& [name, tensor] : opt->state()) s.optimizer.push_back(name + ":" + bits(tensor->data(), tensor->size()));
    s.iterations = opt->iterations();
    s.learning_rate = opt->learning_rate();
  }
  for (std::size_t i = 0; i < m.size(); ++i)
    if (Rng* rng = m.layer(i).rng()) {
      const Rng::Snapshot snap = rng->snapshot();
      s.rngs.push_back(bits(snap.words.data(), snap.words.size()) + (snap.has_spare_normal ? "1" : "0") +
                       bits(&snap.spare_normal, 1));
    }
  return s;
}

// What differs between two states, e.g. "buffers, layer random streams"; ""
// when they are bit-identical.
std::string changed(const ModelState& a, const ModelState& b) {
  std::string what;
  const auto add = [&](bool differs, const char* name) {
    if (differs) what += (what.empty() ? "" : ", ") + std::string(name);
  };
  add(a.built != b.built, "built");
  add(a.layers != b.layers, "layers");
  add(a.params != b.params, "parameters");
  add(a.buffers != b.buffers, "buffers");
  add(a.optimizer != b.optimizer, "optimizer moments");
  add(a.iterations != b.iterations, "optimizer iterations");
  add(std::memcmp(&a.learning_rate, &b.learning_rate, sizeof(double)) != 0, "learning rate");
  add(a.rngs != b.rngs, "layer random streams");
  return what;
}

// "" if a and b are the same bytes, else where they first differ.
std::string difference(const Bytes& a, const Bytes& b) {
  if (a == b) return "";
  std::size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  return "differ from byte " + std::to_string(i) + " (sizes " + std::to_string(a.size()) + " and " +
         std::to_string(b.size()) + ")";
}

// What a model does next, as bits: one epoch of fit with validation, then
// evaluate and predict.
Bytes next_steps(Net& m, const Dataset<float>& data) {
  const Dataset<float> val = synthetic(10, 77);
  const History h = fit(m, data.images.view(), data.labels, quiet_options(1), val.images.view(), val.labels);
  const Evaluation e = m.evaluate(data.images.view(), data.labels);
  const Tensor<float> p = m.predict(val.images.view());
  Bytes out = bits(&h.epochs.at(0).train_loss, 1) + bits(&h.epochs.at(0).val_loss, 1) + bits(&e.loss, 1) +
              bits(p.data(), p.size());
  const ModelState s = snapshot(m);
  return out + s.params + s.buffers;
}

// The API half of the catalogue: `call` on a trained model must throw exactly
// E(expected), change nothing, and leave a model that goes on exactly as its
// twin that never saw the call.
template <class E>
void api_case(const std::function<void(Net&, const Dataset<float>&)>& call, const std::string& expected,
              const std::function<std::unique_ptr<Net>(const Dataset<float>&)>& make = trained_model,
              bool soft = false) {
  const Dataset<float> data = synthetic(kSamples, 5);
  auto model = make(data);
  auto twin = make(data);
  const ModelState before = snapshot(*model);
  REQUIRE(changed(before, snapshot(*twin)) == "");
  require_error<E>([&] { call(*model, data); }, expected, soft);
  CHECK(changed(before, snapshot(*model)) == "");
  // Still works, exactly as if the call had never happened.
  if (!model->optimizer()) {
    model->compile(std::make_unique<Adam<float>>(1e-2));
    twin->compile(std::make_unique<Adam<float>>(1e-2));
  }
  CHECK(difference(next_steps(*model, data), next_steps(*twin, data)) == "");
}

// A tensor of the model's input shape holding `data`'s first n samples.
Tensor<float> first(const Dataset<float>& data, std::size_t n) {
  return Tensor<float>::from(data.images.view().slice(0, n));
}

// ---- model files --------------------------------------------------------------

struct HeaderAndData {
  Json header;
  Bytes data;
};
HeaderAndData split(const Bytes& file) {
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(file[static_cast<std::size_t>(i)]);
  return {Json::parse(file.substr(8, n)), file.substr(8 + n)};
}
Bytes join(const HeaderAndData& p) {
  std::string header = p.header.dump();
  header.append((8 - header.size() % 8) % 8, ' ');
  Bytes out;
  for (int i = 0; i < 8; ++i) out += static_cast<char>(header.size() >> (8 * i));
  return out + header + p.data;
}

const char* const kKnownLayers = "BatchNormalization, Conv2D, Dense, Dropout, Flatten, MaxPooling2D, ReLU";

// `content` as a model file, through load_model<float> and load_model<double>,
// also as `model = load_model(path)` over a loaded model, which must keep its
// weights and go on predicting.
void model_file_case(const std::string& section, const Bytes* content, const std::string& suffix,
                     const std::function<fs::path(const fs::path& dir)>& make_path = {}) {
  const fs::path dir = lamina_test::temp_dir("catalogue_model_" + section);
  const Dataset<float> data = synthetic(kSamples, 5);
  auto trained = trained_model(data);
  const fs::path good = dir / "good.safetensors";
  save_model(*trained, good);
  fs::path path = dir / "bad.safetensors";
  if (content) write_file(path, *content);
  if (make_path) path = make_path(dir);
  const std::string expected = path.string() + suffix;
  const auto files_before = listing(dir);
  require_error<FormatError>([&] { (void)load_model<float>(path); }, expected);
  require_error<FormatError>([&] { (void)load_model<double>(path); }, expected);

  Net model = load_model<float>(good);
  const ModelState before = snapshot(model);
  const Tensor<float> p_before = model.predict(data.images.view());
  require_error<FormatError>([&] { model = load_model<float>(path); }, expected);
  CHECK(changed(before, snapshot(model)) == "");
  const Tensor<float> p_after = model.predict(data.images.view());
  CHECK(difference(bits(p_after.data(), p_after.size()), bits(p_before.data(), p_before.size())) == "");
  CHECK(listing(dir) == files_before);
}

}  // namespace

// ===========================================================================
// The good files the bad ones are made from load, through every entry point:
// each bad case below differs from a valid file by its one defect.
// ===========================================================================

TEST_CASE("Catalogue: the synthetic good files load", "[catalogue]") {
  const fs::path dir = lamina_test::temp_dir("catalogue_good");
  for (const bool train : {true, false}) {
    const std::string text = csv_with_bad_row(train, csv_row(train), "\r\n");  // no bad row: 3 good rows
    write_file(dir / "good.csv", text);
    write_gz(dir / "good.csv.gz", text);
    for (const char* name : {"good.csv", "good.csv.gz"}) {
      CHECK(load_mnist_csv(dir / name).count == 3);
      CHECK(load_mnist(dir / name).has_labels() == train);
    }
  }
  const IdxDir d = idx_dir("good");
  write_gz(d.dir / "good-labels-idx1-ubyte.gz", idx_labels(5));
  CHECK(load_idx_images(d.good_images).count == 5);
  CHECK(load_idx_labels(d.good_labels).size() == 5);
  CHECK(load_mnist_idx(d.good_images).labels == load_idx_labels(d.dir / "good-labels-idx1-ubyte.gz"));
  CHECK(load_mnist(d.good_images, d.good_labels).count == 5);
  const Dataset<float> data = synthetic(kSamples, 5);
  save_model(*trained_model(data), dir / "m.safetensors");
  CHECK(load_model<double>(dir / "m.safetensors").size() == 5);
}

// ===========================================================================
// Loaders: Kaggle CSV (train and test layouts, plain and gzip, through
// load_mnist_csv and load_mnist)
// ===========================================================================

TEST_CASE("Catalogue CSV: wrong header", "[catalogue][csv]") {
  SECTION("train: wrong first column name") {
    Fields h = csv_header(true);
    h[0] = "Label";
    csv_case("header_first", join(h) + "\n" + join(csv_row(true)) + "\n",
             ":1:1: header field 1 is 'Label', expected 'label' (train file) or 'pixel0' (test file)");
  }
  SECTION("train: a wrong pixel column name") {
    Fields h = csv_header(true);
    h[101] = "pixel 100";  // field 102
    std::size_t column = 1;
    for (std::size_t i = 0; i < 101; ++i) column += h[i].size() + 1;
    csv_case("header_pixel", join(h) + "\n" + join(csv_row(true)) + "\n",
             ":1:" + std::to_string(column) + ": header field 102 is 'pixel 100', expected 'pixel100'");
  }
  SECTION("test: a wrong pixel column name") {
    Fields h = csv_header(false);
    h[3] = "Pixel3";
    std::size_t column = 1;
    for (std::size_t i = 0; i < 3; ++i) column += h[i].size() + 1;
    csv_case("header_test", join(h) + "\n" + join(csv_row(false)) + "\n",
             ":1:" + std::to_string(column) + ": header field 4 is 'Pixel3', expected 'pixel3'");
  }
  SECTION("no header line at all (train and test rows)") {
    csv_case("no_header_train", join(csv_row(true)) + "\n" + join(csv_row(true)) + "\n",
             ":1:1: header field 1 is '5', expected 'label' (train file) or 'pixel0' (test file); the file "
             "seems to have no header line");
    csv_case("no_header_test", join(csv_row(false)) + "\n",
             ":1:1: header field 1 is '0', expected 'label' (train file) or 'pixel0' (test file); the file "
             "seems to have no header line");
  }
  SECTION("a header with a column too few or too many") {
    Fields h = csv_header(true);
    h.pop_back();
    csv_case("header_short", join(h) + "\r\n" + join(csv_row(true)) + "\r\n",
             ":1:" + std::to_string(join(h).size() + 1) +
                 ": header has 784 fields, expected 785 (label,pixel0,...,pixel783)");
    Fields t = csv_header(false);
    t.push_back("pixel784");
    csv_case("header_long", join(t) + "\n" + join(csv_row(false)) + "\n",
             ":1:" + std::to_string(join(csv_header(false)).size() + 2) +
                 ": header has 785 fields, expected 784: unexpected extra field 'pixel784' after 'pixel783'");
  }
}

TEST_CASE("Catalogue CSV: short, long and truncated rows", "[catalogue][csv]") {
  SECTION("train: a short row") {
    Fields row = csv_row(true);
    row.resize(400);  // 400 one-character fields and 399 commas end at column 799
    csv_case("short_train", csv_with_bad_row(true, row, "\r\n"),
             ":3:800: short row: 400 fields, expected 785 (label,pixel0,...,pixel783)");
  }
  SECTION("test: a short row") {
    Fields row = csv_row(false);
    row.pop_back();
    csv_case("short_test", csv_with_bad_row(false, row),
             ":3:1566: short row: 783 fields, expected 784 (pixel0,...,pixel783)");
  }
  SECTION("train: a long row") {
    Fields row = csv_row(true);
    row.push_back("0");
    csv_case("long_train", csv_with_bad_row(true, row),
             ":3:1570: long row: 786 fields, expected 785 (label,pixel0,...,pixel783)");
  }
  SECTION("test: a long row (a trailing comma)") {
    Fields row = csv_row(false);
    row.push_back("");  // 784 one-character fields, 783 commas, then the extra comma at column 1568
    csv_case("long_test", csv_with_bad_row(false, row, "\r\n"),
             ":3:1568: long row: 785 fields, expected 784 (pixel0,...,pixel783)");
  }
  SECTION("train: a last row cut short by the end of the file") {
    Fields row = csv_row(true);
    row.resize(300);
    csv_case("truncated_row", join(csv_header(true)) + "\r\n" + join(csv_row(true)) + "\r\n" + join(row),
             ":3:600: truncated last row: 300 of 785 fields, then the file ends");
  }
}

TEST_CASE("Catalogue CSV: fields that are not an integer in range", "[catalogue][csv]") {
  const std::size_t p7_train = column_of_field(pixel_field(true, 7));   // 17
  const std::size_t p7_test = column_of_field(pixel_field(false, 7));   // 15
  SECTION("train: a pixel that is not an integer") {
    Fields row = csv_row(true);
    row[pixel_field(true, 7)] = "1.5";
    csv_case("pixel_decimal_train", csv_with_bad_row(true, row),
             ":3:" + std::to_string(p7_train + 1) +
                 ": invalid pixel value '1.5' (pixel7, field 9): a decimal point is not allowed; expected an "
                 "integer 0..255");
  }
  SECTION("test: a pixel that is not an integer") {
    Fields row = csv_row(false);
    row[pixel_field(false, 7)] = "x";
    csv_case("pixel_letter_test", csv_with_bad_row(false, row, "\r\n"),
             ":3:" + std::to_string(p7_test) +
                 ": invalid pixel value 'x' (pixel7, field 8): 'x' is not a digit; expected an integer 0..255");
  }
  SECTION("train: a label that is not an integer") {
    Fields row = csv_row(true);
    row[0] = "7.0";
    csv_case("label_decimal", csv_with_bad_row(true, row),
             ":3:2: invalid label '7.0' (label, field 1): a decimal point is not allowed; expected an integer "
             "0..9");
  }
  SECTION("an empty field") {
    Fields row = csv_row(true);
    row[pixel_field(true, 7)] = "";
    csv_case("pixel_empty", csv_with_bad_row(true, row),
             ":3:" + std::to_string(p7_train) + ": empty field (pixel7, field 9), expected an integer 0..255");
  }
  SECTION("train and test: a negative pixel") {
    Fields row = csv_row(true);
    row[pixel_field(true, 7)] = "-3";
    csv_case("pixel_negative_train", csv_with_bad_row(true, row),
             ":3:" + std::to_string(p7_train) +
                 ": invalid pixel value '-3' (pixel7, field 9): a sign is not allowed; expected an integer 0..255");
    Fields t = csv_row(false);
    t[pixel_field(false, 7)] = "-3";
    csv_case("pixel_negative_test", csv_with_bad_row(false, t),
             ":3:" + std::to_string(p7_test) +
                 ": invalid pixel value '-3' (pixel7, field 8): a sign is not allowed; expected an integer 0..255");
  }
  SECTION("train and test: a pixel over 255") {
    Fields row = csv_row(true);
    row[pixel_field(true, 7)] = "256";
    csv_case("pixel_large_train", csv_with_bad_row(true, row, "\r\n"),
             ":3:" + std::to_string(p7_train) + ": pixel value 256 out of range 0..255 (pixel7, field 9)");
    Fields t = csv_row(false);
    t[pixel_field(false, 783)] = "1000";
    csv_case("pixel_large_test", csv_with_bad_row(false, t),
             ":3:" + std::to_string(column_of_field(783)) +
                 ": pixel value 1000 out of range 0..255 (pixel783, field 784)");
  }
  SECTION("train: a label outside 0..9 (too large, negative)") {
    Fields row = csv_row(true);
    row[0] = "10";
    csv_case("label_large", csv_with_bad_row(true, row), ":3:1: label 10 out of range 0..9 (label, field 1)");
    row[0] = "-1";
    csv_case("label_negative", csv_with_bad_row(true, row),
             ":3:1: invalid label '-1' (label, field 1): a sign is not allowed; expected an integer 0..9");
  }
}

TEST_CASE("Catalogue CSV: empty files and files without rows", "[catalogue][csv]") {
  const std::string either =
      "expected the header 'label,pixel0,...,pixel783' (train file) or 'pixel0,...,pixel783' (test file)";
  SECTION("an empty file (0 bytes, or a gzip of 0 bytes): load_mnist_csv") {
    const fs::path dir = lamina_test::temp_dir("catalogue_csv_empty");
    write_file(dir / "empty.csv", "");
    write_gz(dir / "empty.csv.gz", "");
    for (const char* name : {"empty.csv", "empty.csv.gz"})
      check_load(kLoadMnistCsv, dir, dir / name, (dir / name).string() + ":1:1: empty file, " + either);
  }
  SECTION("an empty file: load_mnist, which cannot tell CSV from IDX") {
    const fs::path dir = lamina_test::temp_dir("catalogue_mnist_empty");
    write_file(dir / "empty", "");
    write_gz(dir / "empty.gz", "");
    for (const char* name : {"empty", "empty.gz"})
      check_load(kLoadMnist, dir, dir / name,
                 (dir / name).string() +
                     ": empty file, expected a Kaggle MNIST CSV or an IDX images file");
  }
  SECTION("only a header: train and test, with and without a final newline") {
    csv_case("header_only_train", join(csv_header(true)) + "\r\n",
             ":2:1: no data rows after the header, expected rows of 785 fields (label,pixel0,...,pixel783)");
    csv_case("header_only_train_no_newline", join(csv_header(true)),
             ":2:1: no data rows after the header, expected rows of 785 fields (label,pixel0,...,pixel783)");
    csv_case("header_only_test", join(csv_header(false)) + "\n\n",
             ":2:1: no data rows after the header, expected rows of 784 fields (pixel0,...,pixel783)");
  }
  SECTION("an empty line between rows") {
    const std::string good = join(csv_row(true));
    csv_case("empty_line", join(csv_header(true)) + "\n" + good + "\n\n" + good + "\n",
             ":3:1: empty line, expected a row of 785 fields (label,pixel0,...,pixel783)");
  }
}

TEST_CASE("Catalogue CSV: truncated and corrupt gzip", "[catalogue][csv][gzip]") {
  const fs::path dir = lamina_test::temp_dir("catalogue_csv_gz");
  std::string text = join(csv_header(true)) + "\n";
  for (int r = 0; r < 40; ++r) {
    Fields row = csv_row(true);
    for (std::size_t k = 1; k < row.size(); ++k) row[k] = std::to_string((k * 7 + r * 31) % 256);
    text += join(row) + "\n";
  }
  const Bytes gz = gzip_bytes(dir / "scratch.gz", text);
  SECTION("truncated in the middle, in the gzip header and in the trailer") {
    for (const std::size_t keep : {gz.size() / 2, std::size_t(6), gz.size() - 3}) {
      const Bytes cut = gz.substr(0, keep);
      write_file(dir / "train.csv.gz", cut);
      for (const Loader* loader : {&kLoadMnistCsv, &kLoadMnist})
        check_load(*loader, dir, dir / "train.csv.gz", (dir / "train.csv.gz").string() + truncated_gz_message(cut));
    }
  }
  SECTION("junk after the gzip stream") {
    write_file(dir / "train.csv.gz", gz + "PK");
    for (const Loader* loader : {&kLoadMnistCsv, &kLoadMnist})
      check_load(*loader, dir, dir / "train.csv.gz",
                 (dir / "train.csv.gz").string() +
                     ": corrupt gzip file: 2 unexpected bytes after the end of the gzip stream, at byte offset " +
                     std::to_string(gz.size()));
  }
  SECTION("compressed twice") {
    write_gz(dir / "train.csv.gz", gz);
    // The first header field is the binary start of `gz`, up to the first ','
    // or line end, shown quoted with bytes outside printable ASCII escaped and
    // cut after 24 bytes.
    std::string shown = "'";
    std::size_t length = 0;
    while (length < gz.size() && gz[length] != ',' && gz[length] != '\n' &&
           !(gz[length] == '\r' && length + 1 < gz.size() && gz[length + 1] == '\n'))
      ++length;
    for (std::size_t i = 0; i < length; ++i) {
      if (i == 24) {
        shown += "...";
        break;
      }
      const unsigned char c = static_cast<unsigned char>(gz[i]);
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      shown += c == '\r' ? std::string("\\r") : c == '\t' ? std::string("\\t") : (c < 0x20 || c >= 0x7f) ? std::string(hex) : std::string(1, static_cast<char>(c));
    }
    shown += "'";
    const fs::path path = dir / "train.csv.gz";
    check_load(kLoadMnistCsv, dir, path,
               path.string() + ":1:1: header field 1 is " + shown +
                   ", expected 'label' (train file) or 'pixel0' (test file); this is gzip data (compressed twice?)");
    check_load(kLoadMnist, dir, path,
               path.string() + ": is gzip data inside gzip data (compressed twice?); gunzip it once and load the result");
  }
  SECTION("a wrong CRC-32 in the trailer") {
    Bytes bad = gz;
    bad[bad.size() - 8] = static_cast<char>(bad[bad.size() - 8] ^ 0x40);
    write_file(dir / "train.csv.gz", bad);
    for (const Loader* loader : {&kLoadMnistCsv, &kLoadMnist})
      check_load(*loader, dir, dir / "train.csv.gz",
                 (dir / "train.csv.gz").string() + ": corrupt gzip stream near compressed byte offset " +
                     std::to_string(gz.size() - 4) + ": incorrect data check");
  }
}

TEST_CASE("Catalogue files: a directory instead of a file, a missing file", "[catalogue][csv][idx]") {
  const fs::path dir = lamina_test::temp_dir("catalogue_files");
  fs::create_directories(dir / "train.csv");
  fs::create_directories(dir / "train-images-idx3-ubyte");
  fs::create_directories(dir / "train-labels-idx1-ubyte.gz");
  write_file(dir / "good-images-idx3-ubyte", idx_images(3));
  write_file(dir / "good-labels-idx1-ubyte", idx_labels(3));
  const fs::path images = dir / "good-images-idx3-ubyte";
  const fs::path labels = dir / "good-labels-idx1-ubyte";
  const std::vector<Loader> loaders = {
      kLoadMnistCsv,
      kLoadMnist,
      {"load_idx_images", [](const fs::path& p, MnistData& out) { out = load_idx_images(p); }},
      {"load_idx_labels", [](const fs::path& p, MnistData& out) { out.labels = load_idx_labels(p); }},
      {"load_mnist_idx (as images)", [&](const fs::path& p, MnistData& out) { out = load_mnist_idx(p, labels); }},
      {"load_mnist_idx (as labels)", [&](const fs::path& p, MnistData& out) { out = load_mnist_idx(images, p); }},
      {"load_mnist (as labels)", [&](const fs::path& p, MnistData& out) { out = load_mnist(images, p); }},
  };
  SECTION("a directory") {
    for (const char* name : {"train.csv", "train-images-idx3-ubyte", "train-labels-idx1-ubyte.gz"})
      for (const Loader& loader : loaders)
        check_load(loader, dir, dir / name, (dir / name).string() + ": is a directory, expected a file");
  }
  SECTION("a missing file, and a file in a missing directory") {
    for (const fs::path& path : {dir / "nope.csv", dir / "nope" / "t10k-images-idx3-ubyte.gz"})
      for (const Loader& loader : loaders) check_load(loader, dir, path, path.string() + ": no such file");
  }
}

// ===========================================================================
// Loaders: IDX (images and labels, plain and gzip, through load_idx_*,
// load_mnist_idx and load_mnist)
// ===========================================================================

TEST_CASE("Catalogue IDX: wrong magic number", "[catalogue][idx]") {
  SECTION("images: a labels file, another type") {
    idx_images_case("magic_labels", idx_labels(5),
                    ": bad magic number 0x00000801 (2049) at byte offset 0, expected 0x00000803 (2051) for an IDX "
                    "images file; this is an IDX labels file",
                    ": is an IDX labels file (magic 2049); pass the IDX images file (magic 2051) as the path and "
                    "this one as labels_path");
    idx_images_case("magic_other", idx_images(5, 28, 28, 0x00000C03),
                    ": bad magic number 0x00000c03 (3075) at byte offset 0, expected 0x00000803 (2051) for an IDX "
                    "images file");
  }
  SECTION("images and labels: compressed twice") {
    const IdxDir d = idx_dir("magic_gzip_twice");
    for (const bool images : {true, false}) {
      const Bytes once = gzip_bytes(d.dir / "scratch.gz", images ? idx_images(5) : idx_labels(5));
      const fs::path path = d.dir / (images ? "twice-images-idx3-ubyte.gz" : "twice-labels-idx1-ubyte.gz");
      write_gz(path, once);
      // zlib's gzip header: 1f 8b 08 00, then a zero modification time.
      const std::string bad_magic =
          ": bad magic number 0x1f8b0800 (529205248) at byte offset 0, expected " +
          std::string(images ? "0x00000803 (2051) for an IDX images" : "0x00000801 (2049) for an IDX labels") +
          " file; this is gzip data (compressed twice?)";
      const std::string twice =
          ": is gzip data inside gzip data (compressed twice?); gunzip it once and load the result";
      std::vector<std::pair<Loader, std::string>> cases;
      if (images) {
        cases = {{{"load_idx_images", [](const fs::path& p, MnistData& out) { out = load_idx_images(p); }}, bad_magic},
                 {{"load_mnist_idx", [&](const fs::path& p, MnistData& out) { out = load_mnist_idx(p, d.good_labels); }},
                  bad_magic},
                 {kLoadMnist, twice}};
      } else {
        cases = {{{"load_idx_labels", [](const fs::path& p, MnistData& out) { out.labels = load_idx_labels(p); }},
                  bad_magic},
                 {{"load_mnist_idx", [&](const fs::path& p, MnistData& out) { out = load_mnist_idx(d.good_images, p); }},
                  bad_magic},
                 {{"load_mnist", [&](const fs::path& p, MnistData& out) { out = load_mnist(d.good_images, p); }},
                  bad_magic}};
      }
      for (const auto& [loader, suffix] : cases) check_load(loader, d.dir, path, path.string() + suffix);
    }
  }
  SECTION("labels: an images file, another type") {
    idx_labels_case("magic_images", idx_images(5),
                    ": bad magic number 0x00000803 (2051) at byte offset 0, expected 0x00000801 (2049) for an IDX "
                    "labels file; this is an IDX images file");
    idx_labels_case("magic_other_labels", idx_labels(5, 0x00000901),
                    ": bad magic number 0x00000901 (2305) at byte offset 0, expected 0x00000801 (2049) for an IDX "
                    "labels file");
  }
  SECTION("load_mnist given the labels file as its images path") {
    const IdxDir d = idx_dir("magic_load_mnist");
    for (const bool gz : {false, true}) {
      const fs::path path = d.dir / (gz ? "x-labels-idx1-ubyte.gz" : "x-labels-idx1-ubyte");
      if (gz)
        write_gz(path, idx_labels(5));
      else
        write_file(path, idx_labels(5));
      check_load(kLoadMnist, d.dir, path,
                 path.string() +
                     ": is an IDX labels file (magic 2049); pass the IDX images file (magic 2051) as the path and "
                     "this one as labels_path");
    }
  }
}

TEST_CASE("Catalogue IDX: a count that does not match the file", "[catalogue][idx]") {
  SECTION("images: the header claims more images than the file holds") {
    idx_images_case("count_large", idx_images(5, 28, 28, 2051, 3),
                    ": file too short: the header says 5 images of 28x28, which take 3936 bytes, but the file has "
                    "2368 bytes (only 3 complete images)");
  }
  SECTION("images: the header claims fewer images than the file holds") {
    idx_images_case("count_small", idx_images(2, 28, 28, 2051, 3),
                    ": file too long: the header says 2 images of 28x28, which take 1584 bytes, but the file has "
                    "2368 (784 extra bytes from byte offset 1584)");
  }
  SECTION("images: zero images, zero rows") {
    idx_images_case("count_zero", idx_images(0),
                    ": the header says 0 images (count at byte offset 4); the file holds no images");
    idx_images_case("rows_zero", idx_images(3, 0, 28),
                    ": the header says the images are 0x28 (at byte offset 8); both must be at least 1");
  }
  SECTION("labels: the header claims more or fewer labels than the file holds, or none") {
    idx_labels_case("labels_count_large", idx_labels(7, 2049, 5),
                    ": file too short: the header says 7 labels, which take 15 bytes, but the file has 13 (only 5 "
                    "labels)");
    idx_labels_case("labels_count_small", idx_labels(4, 2049, 5),
                    ": file too long: the header says 4 labels, which take 12 bytes, but the file has 13 (1 extra "
                    "byte from byte offset 12)");
    idx_labels_case("labels_count_zero", idx_labels(0),
                    ": the header says 0 labels (count at byte offset 4); the file holds no labels");
  }
}

TEST_CASE("Catalogue IDX: labels file shorter (or longer) than its images file", "[catalogue][idx]") {
  const IdxDir d = idx_dir("pairing");
  const fs::path images = d.dir / "train-images-idx3-ubyte";
  const fs::path labels = d.dir / "train-labels-idx1-ubyte";
  write_file(images, idx_images(5));
  const std::vector<Loader> loaders = {
      {"load_mnist_idx (explicit)", [&](const fs::path& p, MnistData& out) { out = load_mnist_idx(images, p); }},
      {"load_mnist_idx (by name)", [&](const fs::path&, MnistData& out) { out = load_mnist_idx(images); }},
      {"load_mnist (explicit)", [&](const fs::path& p, MnistData& out) { out = load_mnist(images, p); }},
      {"load_mnist (by name)", [&](const fs::path&, MnistData& out) { out = load_mnist(images); }},
  };
  for (const std::uint32_t count : {4u, 6u}) {
    write_file(labels, idx_labels(count));
    for (const Loader& loader : loaders)
      check_load(loader, d.dir, labels,
                 labels.string() + ": has " + std::to_string(count) + " labels, but the images file " +
                     images.string() + " has 5 images; the two files must have one label per image");
  }
}

TEST_CASE("Catalogue IDX: a label outside 0..9", "[catalogue][idx]") {
  Bytes bad = idx_labels(5);
  bad[8 + 2] = static_cast<char>(10);
  idx_labels_case("label_10", bad, ": label 10 at byte offset 10 (item 2) out of range 0..9");
  bad[8 + 2] = static_cast<char>(255);  // what a signed reader would see as -1
  idx_labels_case("label_255", bad, ": label 255 at byte offset 10 (item 2) out of range 0..9");
}

TEST_CASE("Catalogue IDX: empty files, cut headers, truncated gzip", "[catalogue][idx]") {
  SECTION("an empty file") {
    idx_images_case("empty_images", "",
                    ": empty file, expected an IDX images file (a 16-byte header with magic number 2051, then the "
                    "pixels)",
                    ": empty file, expected a Kaggle MNIST CSV or an IDX images file");
    idx_labels_case("empty_labels", "",
                    ": empty file, expected an IDX labels file (an 8-byte header with magic number 2049, then the "
                    "labels)");
  }
  SECTION("a header cut short") {
    idx_images_case("cut_images", idx_images(5).substr(0, 12),
                    ": file too short for an IDX images header: 12 bytes, expected at least 16");
    idx_labels_case("cut_labels", idx_labels(5).substr(0, 6),
                    ": file too short for an IDX labels header: 6 bytes, expected at least 8");
  }
  SECTION("a truncated gzip images or labels file") {
    const IdxDir d = idx_dir("truncated_gz");
    const Bytes images_gz = gzip_bytes(d.dir / "scratch.gz", idx_images(50));
    const Bytes labels_gz = gzip_bytes(d.dir / "scratch.gz", idx_labels(5));
    const Bytes images_cut = images_gz.substr(0, images_gz.size() / 2);
    const Bytes labels_cut = labels_gz.substr(0, labels_gz.size() - 4);
    const fs::path images = d.dir / "cut-images-idx3-ubyte.gz";
    const fs::path labels = d.dir / "cut-labels-idx1-ubyte.gz";
    write_file(images, images_cut);
    write_file(labels, labels_cut);
    const std::vector<Loader> image_loaders = {
        {"load_idx_images", [](const fs::path& p, MnistData& out) { out = load_idx_images(p); }},
        {"load_mnist_idx", [&](const fs::path& p, MnistData& out) { out = load_mnist_idx(p, d.good_labels); }},
        {"load_mnist", [&](const fs::path& p, MnistData& out) { out = load_mnist(p); }},
    };
    for (const Loader& loader : image_loaders)
      check_load(loader, d.dir, images, images.string() + truncated_gz_message(images_cut));
    const std::vector<Loader> label_loaders = {
        {"load_idx_labels", [](const fs::path& p, MnistData& out) { out.labels = load_idx_labels(p); }},
        {"load_mnist_idx", [&](const fs::path& p, MnistData& out) { out = load_mnist_idx(d.good_images, p); }},
        {"load_mnist", [&](const fs::path& p, MnistData& out) { out = load_mnist(d.good_images, p); }},
    };
    for (const Loader& loader : label_loaders)
      check_load(loader, d.dir, labels, labels.string() + truncated_gz_message(labels_cut));
  }
  SECTION("no labels file next to the images") {
    const fs::path dir = lamina_test::temp_dir("catalogue_idx_no_labels");
    const fs::path images = dir / "t10k-images-idx3-ubyte.gz";
    write_gz(images, idx_images(2));
    const std::string tried = (dir / "t10k-labels-idx1-ubyte.gz").string() + ", " +
                              (dir / "t10k-labels-idx1-ubyte").string();
    for (const Loader& loader : std::vector<Loader>{
             {"load_mnist_idx", [](const fs::path& p, MnistData& out) { out = load_mnist_idx(p); }}, kLoadMnist})
      check_load(loader, dir, images,
                 images.string() + ": no labels file found for these images; tried " + tried +
                     "; pass the labels file explicitly");
  }
}

// ===========================================================================
// Loaders: model files (safetensors)
// ===========================================================================

TEST_CASE("Catalogue model files", "[catalogue][model]") {
  const fs::path dir = lamina_test::temp_dir("catalogue_model_source");
  const Dataset<float> data = synthetic(kSamples, 5);
  auto trained = trained_model(data);
  save_model(*trained, dir / "m.safetensors");
  const Bytes good = read_bytes(dir / "m.safetensors");

  SECTION("an unknown layer name") {
    HeaderAndData p = split(good);
    Json arch = Json::parse(p.header["__metadata__"]["architecture"].get<std::string>());
    arch["layers"][1]["type"] = "Dence";
    p.header["__metadata__"]["architecture"] = arch.dump();
    const Bytes bad = join(p);
    model_file_case("unknown_layer", &bad,
                    std::string(": unknown layer type 'Dence' at layer 1; known: ") + kKnownLayers +
                        " (register your own with lamina::register_layer before loading)");
  }
  SECTION("an empty file") {
    const Bytes empty;
    model_file_case("empty", &empty,
                    ": empty file, expected a safetensors file (an 8-byte header length, a JSON header, then the "
                    "tensor data)");
  }
  SECTION("a file cut in its data section") {
    const Bytes cut = good.substr(0, good.size() - 10);
    const HeaderAndData p = split(good);
    const std::size_t data_size = p.data.size();
    model_file_case("truncated", &cut,
                    ": is truncated: its header describes " + std::to_string(data_size) +
                        " bytes of tensor data, but only " + std::to_string(data_size - 10) +
                        " follow the header (10 missing)");
  }
  SECTION("a file cut in its header") {
    const Bytes cut = good.substr(0, 100);
    const HeaderAndData p = split(good);
    const std::size_t header_size = good.size() - 8 - p.data.size();
    model_file_case("truncated_header", &cut,
                    ": header length " + std::to_string(header_size) +
                        " runs past the end of the file: only 92 bytes follow the 8-byte length (truncated file?)");
  }
  SECTION("a corrupted weight (checksum)") {
    Bytes bad = good;
    bad[bad.size() - 1] = static_cast<char>(bad[bad.size() - 1] ^ 0x01);
    const std::uint32_t recorded = static_cast<std::uint32_t>(
        std::stoul(split(good).header["__metadata__"]["checksum"].get<std::string>().substr(6), nullptr, 16));
    const Bytes data = split(bad).data;
    const std::uint32_t actual = static_cast<std::uint32_t>(
        ::crc32(0L, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size())));
    char text[96];
    std::snprintf(text, sizeof text, "the tensor data has CRC-32 %08x, the header records %08x", actual, recorded);
    model_file_case("checksum", &bad, std::string(": checksum mismatch: ") + text + ": the file is corrupt");
  }
  SECTION("a safetensors file that is not a lamina model") {
    HeaderAndData p = split(good);
    p.header.erase("__metadata__");
    const Bytes plain = join(p);
    model_file_case("not_lamina", &plain,
                    ": has no __metadata__, so it is not a lamina model file (lamina records the format, dtype, "
                    "architecture and checksum there; see docs/model-files.md). It is a valid safetensors file: "
                    "lamina::read_safetensors reads its tensors.");
  }
  SECTION("a directory, a missing file") {
    model_file_case("directory", nullptr, ": is a directory, expected a file", [](const fs::path& d) {
      fs::create_directories(d / "model.safetensors");
      return d / "model.safetensors";
    });
    model_file_case("missing", nullptr, ": no such file", [](const fs::path& d) { return d / "nope.safetensors"; });
  }
}

// ===========================================================================
// The API: Sequential (fit, evaluate, predict, predict_classes, train_step, add)
// ===========================================================================

TEST_CASE("Catalogue API: an input shape that does not match the model", "[catalogue][api]") {
  const auto flat = [](const Dataset<float>& d, std::size_t n) {
    return Tensor<float>::from(d.images.view().slice(0, n).reshape(Shape{n, 16}));
  };
  SECTION("fit") {
    api_case<ShapeError>(
        [&](Net& m, const Dataset<float>& d) {
          const Tensor<float> x = flat(d, kSamples);
          fit(m, x.view(), d.labels, quiet_options());
        },
        "fit: the model takes input (N, 4, 4, 1), got (24, 16)");
  }
  SECTION("fit: validation data of the wrong shape") {
    api_case<ShapeError>(
        [&](Net& m, const Dataset<float>& d) {
          const Tensor<float> xv = Tensor<float>::from(d.images.view().slice(0, 6).reshape(Shape{6, 2, 8, 1}));
          const std::vector<std::int32_t> yv(d.labels.begin(), d.labels.begin() + 6);
          fit(m, d.images.view(), d.labels, quiet_options(), xv.view(), yv);
        },
        "fit (validation data): the model takes input (N, 4, 4, 1), got (6, 2, 8, 1)");
  }
  SECTION("evaluate") {
    api_case<ShapeError>(
        [&](Net& m, const Dataset<float>& d) {
          const Tensor<float> x = Tensor<float>::from(d.images.view().reshape(Shape{kSamples, 4, 4}));
          m.evaluate(x.view(), d.labels);
        },
        "evaluate: the model takes input (N, 4, 4, 1), got (24, 4, 4)");
  }
  SECTION("predict and predict_classes") {
    api_case<ShapeError>([&](Net& m, const Dataset<float>& d) { m.predict(flat(d, 5).view()); },
                         "predict: the model takes input (N, 4, 4, 1), got (5, 16)");
    api_case<ShapeError>([&](Net& m, const Dataset<float>& d) { m.predict_classes(flat(d, 5).view()); },
                         "predict: the model takes input (N, 4, 4, 1), got (5, 16)");
  }
  SECTION("train_step (the first layer names itself and both shapes)") {
    api_case<ShapeError>(
        [&](Net& m, const Dataset<float>& d) { m.train_step(flat(d, 8).view(), d.labels.data()); },
        "train_step: the model takes input (N, 4, 4, 1), got (8, 16)");
  }
  SECTION("add: a layer that does not fit the output before it (the model is unchanged)") {
    Net m(Shape{4, 4, 1}, 1);
    require_error<ShapeError>([&] { m.add<Dense>(8); },
                              "layer 0 (Dense): expects input (N, features); add a Flatten layer before Dense, got "
                              "(N, 4, 4, 1) (the model input)");
    CHECK(m.size() == 0);
    m.add<Flatten>();
    m.add<Dense>(8);
    require_error<ShapeError>([&] { m.add<MaxPooling2D>(2); },
                              "layer 2 (MaxPooling2D): expects input (N, H, W, C) images, got (N, 8) (the output of "
                              "layer 1 (Dense))");
    CHECK(m.size() == 2);
    m.add<Dense>(3);
    m.compile(std::make_unique<Adam<float>>(1e-2));
    const Dataset<float> d = synthetic(kSamples, 5);
    CHECK_NOTHROW(fit(m, d.images.view(), d.labels, quiet_options()));
  }
}

TEST_CASE("Catalogue API: labels outside the output range, or as many labels as samples", "[catalogue][api]") {
  SECTION("fit: a label too large, a negative label") {
    api_case<ArgumentError>(
        [&](Net& m, const Dataset<float>& d) {
          std::vector<std::int32_t> y = d.labels;
          y[5] = 3;
          fit(m, d.images.view(), y, quiet_options());
        },
        "fit: label 3 of sample 5 is outside 0..2 (the model has 3 outputs)");
    api_case<ArgumentError>(
        [&](Net& m, const Dataset<float>& d) {
          std::vector<std::int32_t> y = d.labels;
          y[23] = -1;
          fit(m, d.images.view(), y, quiet_options());
        },
        "fit: label -1 of sample 23 is outside 0..2 (the model has 3 outputs)");
  }
  SECTION("fit: a validation label out of range") {
    api_case<ArgumentError>(
        [&](Net& m, const Dataset<float>& d) {
          const Tensor<float> xv = first(d, 6);
          std::vector<std::int32_t> yv(d.labels.begin(), d.labels.begin() + 6);
          yv[4] = 9;
          fit(m, d.images.view(), d.labels, quiet_options(), xv.view(), yv);
        },
        "fit (validation data): label 9 of sample 4 is outside 0..2 (the model has 3 outputs)");
  }
  SECTION("evaluate: a label out of range") {
    api_case<ArgumentError>(
        [&](Net& m, const Dataset<float>& d) {
          std::vector<std::int32_t> y = d.labels;
          y[0] = 10;
          m.evaluate(d.images.view(), y);
        },
        "evaluate: label 10 of sample 0 is outside 0..2 (the model has 3 outputs)");
  }
  SECTION("fit, evaluate, validation data: labels and samples of different counts") {
    api_case<ArgumentError>(
        [&](Net& m, const Dataset<float>& d) {
          const std::vector<std::int32_t> y(d.labels.begin(), d.labels.end() - 1);
          fit(m, d.images.view(), y, quiet_options());
        },
        "fit: 24 samples but 23 labels");
    api_case<ArgumentError>(
        [&](Net& m, const Dataset<float>& d) {
          std::vector<std::int32_t> y = d.labels;
          y.push_back(0);
          m.evaluate(d.images.view(), y);
        },
        "evaluate: 24 samples but 25 labels");
    api_case<ArgumentError>(
        [&](Net& m, const Dataset<float>& d) {
          const Tensor<float> xv = first(d, 6);
          const std::vector<std::int32_t> yv(d.labels.begin(), d.labels.begin() + 5);
          fit(m, d.images.view(), d.labels, quiet_options(), xv.view(), yv);
        },
        "fit (validation data): 6 samples but 5 labels");
  }
}

TEST_CASE("Catalogue API: an empty data set", "[catalogue][api]") {
  const Tensor<float> none(Shape{0, 4, 4, 1});  // no samples
  const std::vector<std::int32_t> no_labels;
  SECTION("fit") {
    api_case<ArgumentError>([&](Net& m, const Dataset<float>&) { fit(m, none.view(), no_labels, quiet_options()); },
                            "fit: the data set is empty");
    api_case<ArgumentError>(
        [&](Net& m, const Dataset<float>&) { fit(m, TensorView<const float>{}, no_labels, quiet_options()); },
        "fit: the data set is empty");
  }
  SECTION("evaluate, predict") {
    api_case<ArgumentError>([&](Net& m, const Dataset<float>&) { m.evaluate(none.view(), no_labels); },
                            "evaluate: the data set is empty");
    api_case<ArgumentError>([&](Net& m, const Dataset<float>&) { m.predict(none.view()); },
                            "predict: the data set is empty");
    api_case<ArgumentError>([&](Net& m, const Dataset<float>&) { m.predict_classes(TensorView<const float>{}); },
                            "predict: the data set is empty");
  }
}

TEST_CASE("Catalogue API: batch size 0 or larger than the data", "[catalogue][api]") {
  SECTION("fit") {
    api_case<ArgumentError>(
        [&](Net& m, const Dataset<float>& d) { fit(m, d.images.view(), d.labels, quiet_options(1, 0)); },
        "fit: batch_size must be at least 1");
    api_case<ArgumentError>(
        [&](Net& m, const Dataset<float>& d) { fit(m, d.images.view(), d.labels, quiet_options(1, 25)); },
        "fit: batch_size 25 is larger than the 24 training samples");
  }
  SECTION("evaluate, predict, predict_classes") {
    api_case<ArgumentError>([&](Net& m, const Dataset<float>& d) { m.evaluate(d.images.view(), d.labels, 0); },
                            "evaluate: batch_size must be at least 1");
    api_case<ArgumentError>([&](Net& m, const Dataset<float>& d) { m.predict(d.images.view(), 0); },
                            "predict: batch_size must be at least 1");
    api_case<ArgumentError>([&](Net& m, const Dataset<float>& d) { m.predict_classes(d.images.view(), 0); },
                            "predict: batch_size must be at least 1");
  }
  SECTION("not an error: evaluate and predict with a batch larger than the data (one batch)") {
    const Dataset<float> d = synthetic(kSamples, 5);
    auto m = trained_model(d);
    const Evaluation larger = m->evaluate(d.images.view(), d.labels, 1000);
    const Evaluation exact = m->evaluate(d.images.view(), d.labels, kSamples);
    CHECK(larger.count == kSamples);
    CHECK(bits(&larger.loss, 1) == bits(&exact.loss, 1));
    CHECK(larger.accuracy == exact.accuracy);
    const Tensor<float> p = m->predict(d.images.view(), 1000), q = m->predict(d.images.view(), kSamples);
    CHECK(difference(bits(p.data(), p.size()), bits(q.data(), q.size())) == "");
  }
}

TEST_CASE("Catalogue API: NaN or Inf in the input", "[catalogue][api]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const auto poisoned = [](const Dataset<float>& d, std::size_t sample, std::size_t element, float value) {
    Tensor<float> x = Tensor<float>::from(d.images.view());
    x.data()[sample * 16 + element] = value;
    return x;
  };
  SECTION("fit: NaN, +Inf, -Inf") {
    api_case<ArgumentError>(
        [&](Net& m, const Dataset<float>& d) {
          fit(m, poisoned(d, 3, 5, nan).view(), d.labels, quiet_options());
        },
        "fit: input value nan (not finite) at sample 3, element 5");
    api_case<ArgumentError>(
        [&](Net& m, const Dataset<float>& d) {
          fit(m, poisoned(d, 23, 15, inf).view(), d.labels, quiet_options());
        },
        "fit: input value inf (not finite) at sample 23, element 15");
    api_case<ArgumentError>(
        [&](Net& m, const Dataset<float>& d) {
          fit(m, poisoned(d, 0, 0, -inf).view(), d.labels, quiet_options());
        },
        "fit: input value -inf (not finite) at sample 0, element 0");
  }
  SECTION("fit: NaN in the validation data") {
    api_case<ArgumentError>(
        [&](Net& m, const Dataset<float>& d) {
          const Tensor<float> xv = poisoned(d, 7, 2, nan);
          fit(m, d.images.view(), d.labels, quiet_options(), xv.view(), d.labels);
        },
        "fit (validation data): input value nan (not finite) at sample 7, element 2");
  }
  SECTION("evaluate") {
    api_case<ArgumentError>(
        [&](Net& m, const Dataset<float>& d) { m.evaluate(poisoned(d, 1, 1, inf).view(), d.labels); },
        "evaluate: input value inf (not finite) at sample 1, element 1");
  }
}

TEST_CASE("Catalogue API: an unknown layer name in a model file", "[catalogue][api][model]") {
  // The same entry as in "Catalogue model files", from the API side: the
  // model being replaced keeps its weights.
  const fs::path dir = lamina_test::temp_dir("catalogue_api_unknown_layer");
  const Dataset<float> d = synthetic(kSamples, 5);
  save_model(*trained_model(d), dir / "m.safetensors");
  HeaderAndData p = split(read_bytes(dir / "m.safetensors"));
  Json arch = Json::parse(p.header["__metadata__"]["architecture"].get<std::string>());
  arch["layers"][4]["type"] = "Softmax";
  p.header["__metadata__"]["architecture"] = arch.dump();
  write_file(dir / "softmax.safetensors", join(p));
  Net model = load_model<float>(dir / "m.safetensors");
  const ModelState before = snapshot(model);
  require_error<FormatError>([&] { model = load_model<float>(dir / "softmax.safetensors"); },
                             (dir / "softmax.safetensors").string() +
                                 ": unknown layer type 'Softmax' at layer 4; known: " + kKnownLayers +
                                 " (register your own with lamina::register_layer before loading)");
  CHECK(changed(before, snapshot(model)) == "");
  CHECK(model.predict(d.images.view()).size() == kSamples * 3);
}

TEST_CASE("Catalogue data API: bad arguments to to_dataset, subset, stratified_split", "[catalogue][api][data]") {
  MnistData bad = sentinel_data();
  bad.pixels.pop_back();
  require_error<ArgumentError>([&] { (void)to_dataset<float>(bad); },
                               "to_dataset: sentinel has 3 pixels, expected count * rows * cols = 1 * 2 * 2");
  MnistData labels = sentinel_data();
  labels.labels.push_back(1);
  require_error<ArgumentError>([&] { (void)to_dataset<float>(labels); }, "to_dataset: sentinel has 2 labels for 1 image");
  const Dataset<float> d = synthetic(kSamples, 5);
  require_error<ArgumentError>([&] { (void)subset(d, {0, 24}); },
                               "subset: index 24 at position 1 is out of range for a dataset of 24 samples");
  require_error<ArgumentError>([&] { (void)stratified_split(d.labels, 1.5, 1); },
                               "stratified_split: validation_fraction must be in (0, 1), got 1.5");
  require_error<ArgumentError>([&] { (void)stratified_split({}, 0.2, 1); }, "stratified_split: no labels to split");
  require_error<ArgumentError>([&] { (void)stratified_split({1, 2}, 0.1, 1); },
                               "stratified_split: validation_fraction 0.1 of 2 samples gives 0 validation and 2 "
                               "train samples; both parts must be non-empty");
}

TEST_CASE("Catalogue API: validation data without labels, or labels without data", "[catalogue][api]") {
  api_case<ArgumentError>(
      [&](Net& m, const Dataset<float>& d) {
        const Tensor<float> xv = first(d, 6);
        fit(m, d.images.view(), d.labels, quiet_options(), xv.view(), {});
      },
      "fit (validation data): 6 samples but 0 labels");
  api_case<ArgumentError>(
      [&](Net& m, const Dataset<float>& d) {
        fit(m, d.images.view(), d.labels, quiet_options(), TensorView<const float>{}, d.labels);
      },
      "fit (validation data): the data set is empty");
}

// ---- train_step, predict and fit check everything before they change anything
TEST_CASE("train_step checks its labels before it changes anything",
          "[catalogue][api]") {
  // The labels are checked before the training forward (which would move
  // BatchNormalization's moving statistics and the Dropout stream).
  api_case<ArgumentError>(
      [&](Net& m, const Dataset<float>& d) {
        std::vector<std::int32_t> y(d.labels.begin(), d.labels.begin() + 8);
        y[1] = 3;
        m.train_step(first(d, 8).view(), y.data());
      },
      "train_step: label 3 of sample 1 is outside 0..2 (the model has 3 outputs)", trained_model, true);
}

TEST_CASE("train_step refuses NaN or Inf input", "[catalogue][api]") {
  // Undetected, one step would write NaN into every weight.
  api_case<ArgumentError>(
      [&](Net& m, const Dataset<float>& d) {
        Tensor<float> x = first(d, 8);
        x.data()[3] = std::numeric_limits<float>::infinity();
        m.train_step(x.view(), d.labels.data());
      },
      "train_step: input value inf (not finite) at sample 0, element 3", trained_model, true);
}

TEST_CASE("predict refuses NaN or Inf input", "[catalogue][api]") {
  // Undetected, the probabilities would be NaN and predict_classes would say 0.
  api_case<ArgumentError>(
      [&](Net& m, const Dataset<float>& d) {
        Tensor<float> x = first(d, 6);
        x.data()[2 * 16 + 5] = std::numeric_limits<float>::quiet_NaN();
        m.predict(x.view());
      },
      "predict: input value nan (not finite) at sample 2, element 5", trained_model, true);
}

TEST_CASE("fit on a model that is not compiled fails before building it",
          "[catalogue][api]") {
  // The compile check comes before check_data(), which builds the model.
  api_case<Error>([&](Net& m, const Dataset<float>& d) { fit(m, d.images.view(), d.labels, quiet_options()); },
                  "fit: call compile() before fit()", [](const Dataset<float>&) { return fresh_model(); }, true);
}
