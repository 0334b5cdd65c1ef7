// Model files: save_model / load_model round trips bit for bit, the bytes on
// disk follow the safetensors format (parsed by hand here, and by Python's json
// module when python3 is installed), every kind of damage gives its own
// FormatError naming the file, and failures leave nothing behind.
#include <lamina/lamina.hpp>
#include <lamina/io/model_io.hpp>

#include <signal.h>
#include <sys/resource.h>
#include <zlib.h>

#include <cstring>
#include <fstream>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "support.hpp"

using namespace lamina;
namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;
using Bytes = std::vector<std::uint8_t>;

namespace {

// ---- models and data ------------------------------------------------------

// Flatten -> Dense 8 -> ReLU -> Dense 3 on (4, 4, 1): tensors
// layers.1.dense.kernel (16, 8), layers.1.dense.bias (8,),
// layers.3.dense.kernel (8, 3), layers.3.dense.bias (3,).
template <class T>
std::unique_ptr<Sequential<T>> small_mlp(std::uint64_t seed = 7) {
  auto model = std::make_unique<Sequential<T>>(Shape{4, 4, 1}, seed);
  model->template add<Flatten>();
  model->template add<Dense>(8, Init::he_normal);
  model->template add<ReLU>();
  model->template add<Dense>(3);
  return model;
}

// Every built-in layer with state: pooling, batch statistics (buffers), a fused
// activation, dropout with and without its own seed.
template <class T>
std::unique_ptr<Sequential<T>> small_cnn(std::uint64_t seed = 11) {
  auto model = std::make_unique<Sequential<T>>(Shape{6, 6, 2}, seed);
  model->template add<MaxPooling2D>(2);
  model->template add<BatchNormalization>(0.9, 1e-3);
  model->template add<Flatten>();
  model->template add<Dense>(8, Init::he_normal, true, Activation::relu);
  model->template add<Dropout>(0.25);
  model->template add<Dense>(6, Init::glorot_uniform, false);
  model->template add<Dropout>(0.1, std::uint64_t{99});
  model->template add<Dense>(3);
  return model;
}

// Learnable synthetic data: the class is which third of the sample holds the
// largest sum.
template <class T>
Dataset<T> synthetic(const Shape& sample, std::size_t n, std::uint64_t seed) {
  Dataset<T> d;
  d.images.resize(sample.prepend(n));
  d.labels.resize(n);
  Rng rng(seed);
  const std::size_t per = sample.size();
  for (std::size_t i = 0; i < n; ++i) {
    double sums[3] = {0, 0, 0};
    for (std::size_t j = 0; j < per; ++j) {
      const T v = static_cast<T>(rng.uniform(-1, 1));
      d.images.data()[i * per + j] = v;
      sums[j * 3 / per] += static_cast<double>(v);
    }
    d.labels[i] = static_cast<std::int32_t>(std::max_element(sums, sums + 3) - sums);
  }
  return d;
}

template <class T>
Dataset<T> train_a_little(Sequential<T>& model, std::uint64_t seed = 5) {
  Dataset<T> data = synthetic<T>(model.input_shape(), 64, seed);
  model.compile(std::make_unique<Adam<T>>(1e-2));
  FitOptions<T> options;
  options.epochs = 3;
  options.batch_size = 16;
  options.shuffle_seed = seed;
  options.verbosity = Verbosity::quiet;
  fit(model, data.images.view(), data.labels, options);
  return data;
}

template <class T>
bool same_bits(const T* a, const T* b, std::size_t n) {
  return n == 0 || std::memcmp(a, b, n * sizeof(T)) == 0;
}

// ---- files ----------------------------------------------------------------

Bytes read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const fs::path& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

std::uint64_t le64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// A file split into its JSON header and data section.
struct Parts {
  Json header;
  Bytes data;
};

Parts split(const Bytes& file) {
  REQUIRE(file.size() >= 8);
  const std::uint64_t n = le64(file.data());
  REQUIRE(8 + n <= file.size());
  Parts p;
  p.header = Json::parse(file.begin() + 8, file.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  p.data.assign(file.begin() + 8 + static_cast<std::ptrdiff_t>(n), file.end());
  return p;
}

// Header text -> file, padded as the reference pads.
Bytes join_text(std::string header, const Bytes& data) {
  header.append((8 - header.size() % 8) % 8, ' ');
  Bytes out;
  out.reserve(8 + header.size() + data.size());
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(header.size() >> (8 * i)));
  for (char c : header) out.push_back(static_cast<std::uint8_t>(c));
  for (std::uint8_t b : data) out.push_back(b);
  return out;
}
Bytes join(const Parts& p) { return join_text(p.header.dump(), p.data); }

// Edits the architecture JSON inside the header.
void edit_architecture(Parts& p, const std::function<void(Json&)>& edit) {
  Json arch = Json::parse(p.header["__metadata__"]["architecture"].get<std::string>());
  edit(arch);
  p.header["__metadata__"]["architecture"] = arch.dump();
}

// The message of the FormatError load_model<T> throws for `path`.
template <class T = float>
std::string load_error(const fs::path& path) {
  try {
    (void)load_model<T>(path);
  } catch (const FormatError& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL("load_model threw something else than a FormatError: " << e.what());
  }
  FAIL("load_model accepted a damaged file: " << path.string());
  return "";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::vector<std::string> temp_files_in(const fs::path& dir) {
  std::vector<std::string> found;
  for (const auto& entry : fs::directory_iterator(dir))
    if (contains(entry.path().filename().string(), ".tmp-")) found.push_back(entry.path().string());
  return found;
}

}  // namespace

// ---------------------------------------------------------------------------

TEST_CASE("Round trip: a trained MLP loads with identical parameters and bit-identical predictions") {
  const fs::path dir = lamina_test::temp_dir("model_io_round_trip");
  auto model = small_mlp<float>();
  const Dataset<float> data = train_a_little(*model);
  const fs::path path = dir / "mlp.safetensors";
  save_model(*model, path);

  Sequential<float> loaded = load_model<float>(path);
  REQUIRE(loaded.built());
  REQUIRE(loaded.size() == model->size());
  CHECK(loaded.input_shape() == model->input_shape());
  CHECK(loaded.seed() == model->seed());
  CHECK(loaded.summary() == model->summary());
  for (std::size_t i = 0; i < model->size(); ++i) {
    CHECK(loaded.layer(i).type() == model->layer(i).type());
    CHECK(loaded.layer(i).config() == model->layer(i).config());
  }
  // The same flat layout, the same bits (padding included).
  const Tensor<float>& a = model->store().params();
  const Tensor<float>& b = loaded.store().params();
  REQUIRE(a.size() == b.size());
  CHECK(same_bits(a.data(), b.data(), a.size()));

  const Tensor<float> p_saved = model->predict(data.images.view());
  const Tensor<float> p_loaded = loaded.predict(data.images.view());
  REQUIRE(p_saved.shape() == p_loaded.shape());
  CHECK(same_bits(p_saved.data(), p_loaded.data(), p_saved.size()));
  const Tensor<float> logits_saved = Tensor<float>::from(model->forward(data.images.view(), Mode::eval));
  const TensorView<const float> logits_loaded = loaded.forward(data.images.view(), Mode::eval);
  CHECK(same_bits(logits_saved.data(), logits_loaded.data(), logits_saved.size()));
  CHECK(model->evaluate(data.images.view(), data.labels).loss == loaded.evaluate(data.images.view(), data.labels).loss);

  // A loaded model trains on after compile().
  loaded.compile(std::make_unique<Adam<float>>(1e-3));
  CHECK_NOTHROW(loaded.train_step(data.images.view().slice(0, 8), data.labels.data()));
}

TEST_CASE("Round trip: BatchNormalization statistics, Dropout, pooling and fused activations, float and double") {
  const fs::path dir = lamina_test::temp_dir("model_io_round_trip_cnn");
  SECTION("float") {
    auto model = small_cnn<float>();
    const Dataset<float> data = train_a_little(*model);
    // Training moved the moving statistics away from (0, 1): the buffers carry information.
    const auto& bn = model->layer(1);
    REQUIRE(bn.buffers().size() == 2);
    CHECK(bn.buffers()[0][0] != 0.0f);
    save_model(*model, dir / "cnn.safetensors");
    Sequential<float> loaded = load_model<float>(dir / "cnn.safetensors");
    CHECK(same_bits(model->store().params().data(), loaded.store().params().data(), model->store().params().size()));
    REQUIRE(model->store().buffers().size() == loaded.store().buffers().size());
    CHECK(same_bits(model->store().buffers().data(), loaded.store().buffers().data(), model->store().buffers().size()));
    for (std::size_t i = 0; i < model->size(); ++i) CHECK(loaded.layer(i).config() == model->layer(i).config());
    const Tensor<float> p = model->predict(data.images.view()), q = loaded.predict(data.images.view());
    CHECK(same_bits(p.data(), q.data(), p.size()));
  }
  SECTION("double") {
    auto model = small_cnn<double>();
    const Dataset<double> data = train_a_little(*model);
    save_model(*model, dir / "cnn64.safetensors");
    Sequential<double> loaded = load_model<double>(dir / "cnn64.safetensors");
    CHECK(same_bits(model->store().params().data(), loaded.store().params().data(), model->store().params().size()));
    CHECK(same_bits(model->store().buffers().data(), loaded.store().buffers().data(), model->store().buffers().size()));
    const Tensor<double> p = model->predict(data.images.view()), q = loaded.predict(data.images.view());
    CHECK(same_bits(p.data(), q.data(), p.size()));
    // Rounding F64 to float would change the model: refused, with the way out.
    const std::string message = load_error<float>(dir / "cnn64.safetensors");
    CHECK(contains(message, "F64"));
    CHECK(contains(message, "load_model<double>"));
  }
  SECTION("an F32 file loads exactly into a double model") {
    auto model = small_cnn<float>();
    train_a_little(*model);
    save_model(*model, dir / "cnn32.safetensors");
    Sequential<double> wide = load_model<double>(dir / "cnn32.safetensors");
    // Tensor by tensor (the flat stores pad to 64 bytes, so their layouts differ).
    bool exact = true;
    std::size_t compared = 0;
    for (std::size_t i = 0; i < model->size(); ++i) {
      const auto& narrow_layer = model->layer(i);
      const auto& wide_layer = wide.layer(i);
      REQUIRE(narrow_layer.parameters().size() == wide_layer.parameters().size());
      REQUIRE(narrow_layer.buffers().size() == wide_layer.buffers().size());
      auto compare = [&](const TensorView<float>& a, const TensorView<double>& b) {
        REQUIRE(a.shape() == b.shape());
        for (std::size_t k = 0; k < a.size(); ++k) exact = exact && static_cast<double>(a[k]) == b[k];
        compared += a.size();
      };
      for (std::size_t k = 0; k < narrow_layer.parameters().size(); ++k)
        compare(narrow_layer.parameters()[k], wide_layer.parameters()[k]);
      for (std::size_t k = 0; k < narrow_layer.buffers().size(); ++k)
        compare(narrow_layer.buffers()[k], wide_layer.buffers()[k]);
    }
    CHECK(compared == model->trainable_parameter_count() + model->non_trainable_parameter_count());
    CHECK(exact);
  }
}

#if __has_include(<lamina/layers/conv2d.hpp>)
#include <lamina/layers/conv2d.hpp>
TEST_CASE("Round trip: Conv2D, in the CNN the examples train") {
  const fs::path dir = lamina_test::temp_dir("model_io_round_trip_conv");
  auto model = std::make_unique<Sequential<float>>(Shape{8, 8, 1}, 3);
  model->add<Conv2D>(4, 3, 1, Padding::same, Activation::relu);
  model->add<MaxPooling2D>(2);
  model->add<Conv2D>(6, 3, 1, Padding::valid, Activation::none, false, Init::glorot_uniform);
  model->add<BatchNormalization>();
  model->add<ReLU>();
  model->add<Flatten>();
  model->add<Dense>(3);
  const Dataset<float> data = train_a_little(*model);
  save_model(*model, dir / "conv.safetensors");
  Sequential<float> loaded = load_model<float>(dir / "conv.safetensors");
  for (std::size_t i = 0; i < model->size(); ++i) CHECK(loaded.layer(i).config() == model->layer(i).config());
  CHECK(same_bits(model->store().params().data(), loaded.store().params().data(), model->store().params().size()));
  CHECK(same_bits(model->store().buffers().data(), loaded.store().buffers().data(), model->store().buffers().size()));
  const Tensor<float> p = model->predict(data.images.view()), q = loaded.predict(data.images.view());
  CHECK(same_bits(p.data(), q.data(), p.size()));
  const SafetensorsFile file = read_safetensors(dir / "conv.safetensors");
  REQUIRE(file.find("layers.0.conv2d.kernel"));
  CHECK(file.find("layers.0.conv2d.kernel")->shape == std::vector<std::uint64_t>{3, 3, 1, 4});  // (KH, KW, C, F)
  CHECK(file.find("layers.2.conv2d.bias") == nullptr);
  CHECK(file.find("layers.3.batch_normalization.moving_variance"));
}
#endif

TEST_CASE("The file layout is the safetensors format, byte for byte") {
  const fs::path dir = lamina_test::temp_dir("model_io_layout");
  auto model = small_mlp<float>();
  train_a_little(*model);
  const fs::path path = dir / "mlp.safetensors";
  save_model(*model, path);
  const Bytes file = read_bytes(path);

  // 8-byte little-endian header length; the data section starts 8-byte aligned.
  REQUIRE(file.size() > 8);
  const std::uint64_t n = le64(file.data());
  REQUIRE(8 + n < file.size());
  CHECK((8 + n) % 8 == 0);
  const std::string header_text(file.begin() + 8, file.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  CHECK(header_text.front() == '{');
  // Padding: spaces only, after the JSON.
  const std::size_t last = header_text.find_last_not_of(' ');
  CHECK(header_text[last] == '}');
  CHECK(header_text.size() - last - 1 < 8);

  const Json header = Json::parse(header_text);
  REQUIRE(header.is_object());
  CHECK(header.begin().key() == "__metadata__");  // first, as the reference writes it
  const Json& meta = header["__metadata__"];
  for (auto it = meta.begin(); it != meta.end(); ++it) CHECK(it.value().is_string());
  CHECK(meta["format"] == "lamina");
  CHECK(meta["format_version"] == std::to_string(kModelFormatVersion));
  CHECK(meta["dtype"] == "F32");
  const Json arch = Json::parse(meta["architecture"].get<std::string>());
  CHECK(arch["input_shape"] == Json::array({4, 4, 1}));
  CHECK(arch["seed"] == 7);
  REQUIRE(arch["layers"].size() == 4);
  CHECK(arch["layers"][0]["type"] == "Flatten");
  CHECK(arch["layers"][1]["type"] == "Dense");
  CHECK(arch["layers"][1]["config"]["units"] == "8");
  CHECK(arch["layers"][1]["config"]["kernel_initializer"] == "he_normal");
  CHECK(arch["layers"][1]["output_shape"] == Json::array({8}));
  CHECK(arch["layers"][3]["config"]["units"] == "3");

  // The tensors: names in model order, contiguous offsets covering the data.
  const std::vector<std::string> names = {"layers.1.dense.kernel", "layers.1.dense.bias", "layers.3.dense.kernel",
                                          "layers.3.dense.bias"};
  const std::vector<std::vector<std::uint64_t>> shapes = {{16, 8}, {8}, {8, 3}, {3}};
  const std::vector<const Layer<float>*> owners = {&model->layer(1), &model->layer(1), &model->layer(3), &model->layer(3)};
  const std::uint8_t* data = file.data() + 8 + n;
  const std::size_t data_size = file.size() - 8 - n;
  std::vector<std::string> keys;
  for (auto it = header.begin(); it != header.end(); ++it)
    if (it.key() != "__metadata__") keys.push_back(it.key());
  CHECK(keys == names);
  std::uint64_t at = 0;
  for (std::size_t t = 0; t < names.size(); ++t) {
    INFO(names[t]);
    const Json& e = header[names[t]];
    CHECK(e["dtype"] == "F32");
    CHECK(e["shape"].get<std::vector<std::uint64_t>>() == shapes[t]);
    const auto offsets = e["data_offsets"].get<std::vector<std::uint64_t>>();
    REQUIRE(offsets.size() == 2);
    CHECK(offsets[0] == at);
    std::uint64_t count = 1;
    for (auto d : shapes[t]) count *= d;
    CHECK(offsets[1] - offsets[0] == 4 * count);
    at = offsets[1];
    // The values, decoded as little-endian IEEE 754 by hand, equal the model's.
    const TensorView<float>& weights = owners[t]->parameters()[t % 2];
    bool equal = true;
    for (std::uint64_t k = 0; k < count; ++k) {
      const std::uint8_t* p = data + offsets[0] + 4 * k;
      const std::uint32_t bits = static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
                                 static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
      std::uint32_t expected;
      std::memcpy(&expected, weights.data() + k, 4);
      equal = equal && bits == expected;
    }
    CHECK(equal);
  }
  CHECK(at == data_size);
  // The checksum is zlib's CRC-32 of the data section.
  char crc[16];
  std::snprintf(crc, sizeof crc, "%08lx", ::crc32(0L, data, static_cast<uInt>(data_size)));
  CHECK(meta["checksum"] == std::string("crc32:") + crc);

  // read_model_info reads the same header.
  const ModelFileInfo info = read_model_info(path);
  CHECK(info.format_version == kModelFormatVersion);
  CHECK(info.dtype == "F32");
  CHECK(info.input_shape == Shape{4, 4, 1});
  REQUIRE(info.layers.size() == 4);
  CHECK(info.layers[1].type == "Dense");
  CHECK(info.tensor_count == 4);
}

TEST_CASE("write_safetensors produces the reference implementation's bytes") {
  const fs::path dir = lamina_test::temp_dir("model_io_reference_bytes");
  const float values[] = {0, 1, 2, 3, 4, 5};
  // The vectors of huggingface/safetensors' own tests (safetensors/src/tensor.rs:
  // test_serialization, test_serialization_forced_alignement, test_empty).
  SECTION("a header that needs no padding") {
    write_safetensors(dir / "a.safetensors", {{"attn.0", "F32", {1, 2, 3}, values}});
    const Bytes expected = {64,  0,   0,   0,   0,   0,   0,   0,   123, 34,  97,  116, 116, 110, 46,  48,  34,  58,
                            123, 34,  100, 116, 121, 112, 101, 34,  58,  34,  70,  51,  50,  34,  44,  34,  115, 104,
                            97,  112, 101, 34,  58,  91,  49,  44,  50,  44,  51,  93,  44,  34,  100, 97,  116, 97,
                            95,  111, 102, 102, 115, 101, 116, 115, 34,  58,  91,  48,  44,  50,  52,  93,  125, 125,
                            0,   0,   0,   0,   0,   0,   128, 63,  0,   0,   0,   64,  0,   0,   64,  64,  0,   0,
                            128, 64,  0,   0,   160, 64};
    CHECK(read_bytes(dir / "a.safetensors") == expected);
  }
  SECTION("a header padded with spaces") {
    write_safetensors(dir / "b.safetensors", {{"attn0", "F32", {1, 1, 2, 3}, values}});
    const Bytes expected = {72,  0,   0,   0,   0,   0,  0,  0,   123, 34,  97,  116, 116, 110, 48,  34,  58,  123,
                            34,  100, 116, 121, 112, 101, 34, 58, 34,  70,  51,  50,  34,  44,  34,  115, 104, 97,
                            112, 101, 34,  58,  91,  49,  44, 49, 44,  50,  44,  51,  93,  44,  34,  100, 97,  116,
                            97,  95,  111, 102, 102, 115, 101, 116, 115, 34,  58,  91,  48,  44,  50,  52,  93,  125,
                            125, 32,  32,  32,  32,  32,  32, 32, 0,   0,   0,   0,   0,   0,   128, 63,  0,   0,
                            0,   64,  0,   0,   64,  64,  0,  0,  128, 64,  0,   0,   160, 64};
    CHECK(read_bytes(dir / "b.safetensors") == expected);
    const SafetensorsFile back = read_safetensors(dir / "b.safetensors");
    REQUIRE(back.tensors().size() == 1);
    float read[6];
    back.read_tensor(back.tensors()[0], read);
    CHECK(std::equal(read, read + 6, values));
  }
  SECTION("no tensors, with and without metadata") {
    write_safetensors(dir / "c.safetensors", {});
    CHECK(read_bytes(dir / "c.safetensors") == Bytes{8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32});
    write_safetensors(dir / "d.safetensors", {}, {{"framework", "pt"}});
    const Bytes expected = {40,  0,  0,   0,   0,   0,   0,   0,   123, 34,  95, 95, 109, 101, 116, 97,
                            100, 97, 116, 97,  95,  95,  34,  58,  123, 34,  102, 114, 97, 109, 101, 119,
                            111, 114, 107, 34, 58,  34,  112, 116, 34,  125, 125, 32,  32, 32,  32,  32};
    CHECK(read_bytes(dir / "d.safetensors") == expected);
    const SafetensorsFile back = read_safetensors(dir / "d.safetensors");
    CHECK(back.has_metadata());
    REQUIRE(back.metadata_value("framework"));
    CHECK(*back.metadata_value("framework") == "pt");
    // A plain safetensors file is not a model: said so.
    CHECK(contains(load_error(dir / "c.safetensors"), "has no __metadata__"));
  }
}

TEST_CASE("Every kind of damaged file gives its own FormatError naming the file") {
  const fs::path dir = lamina_test::temp_dir("model_io_damage");
  auto model = small_mlp<float>();
  train_a_little(*model);
  const fs::path good = dir / "good.safetensors";
  save_model(*model, good);
  const Bytes original = read_bytes(good);
  const Parts parts = split(original);

  std::set<std::string> messages;
  // Writes `bytes` to its own file, loads it, and checks the message names the
  // file first and holds `phrase`.
  auto expect = [&](const std::string& name, const Bytes& bytes, const std::string& phrase) {
    const fs::path path = dir / (name + ".safetensors");
    write_bytes(path, bytes);
    const std::string message = load_error(path);
    INFO(name << ": " << message);
    CHECK(message.rfind(path.string() + ":", 0) == 0);
    CHECK(contains(message, phrase));
    CHECK(messages.insert(message.substr(path.string().size())).second);  // not the same words as another case
    // Nothing half-built: the load throws and the caller has no model.
    std::optional<Sequential<float>> loaded;
    CHECK_THROWS_AS(loaded.emplace(load_model<float>(path)), FormatError);
    CHECK_FALSE(loaded.has_value());
  };
  auto edited = [&](const std::function<void(Parts&)>& edit) {
    Parts p = parts;
    edit(p);
    return join(p);
  };

  SECTION("the file itself") {
    expect("empty", Bytes{}, "empty file, expected a safetensors file");
    expect("short", Bytes{1, 2, 3, 4, 5}, "is 5 bytes long: too short for a safetensors file");
    expect("truncated", Bytes(original.begin(), original.end() - 10), "is truncated");
    Bytes long_header = original;
    const std::uint64_t bogus = original.size();  // more than follows the length
    for (int i = 0; i < 8; ++i) long_header[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(bogus >> (8 * i));
    expect("header_length", long_header, "runs past the end of the file");
    Bytes huge = original;
    for (int i = 0; i < 8; ++i) huge[static_cast<std::size_t>(i)] = 0xff;
    expect("header_length_huge", huge, "format's limit");
    Bytes bad_json = original;
    bad_json[9] = '#';  // the opening quote of the first key
    expect("bad_json", bad_json, "is malformed");
    const Bytes not_object = join_text("[1, 2, 3]", {});
    expect("not_object", not_object, "must be an object");
    const std::string text = parts.header.dump();
    const std::string dtype = "\"dtype\":\"F32\"";
    std::string duplicated = text;
    duplicated.insert(duplicated.find(dtype) + dtype.size(), "," + dtype);
    expect("duplicate_key", join_text(duplicated, parts.data), "the key 'dtype' twice");
  }
  SECTION("the metadata") {
    expect("no_metadata", edited([](Parts& p) { p.header.erase("__metadata__"); }), "has no __metadata__");
    expect("no_architecture", edited([](Parts& p) { p.header["__metadata__"].erase("architecture"); }),
           "no 'architecture' entry");
    expect("not_lamina", edited([](Parts& p) { p.header["__metadata__"]["format"] = "pt"; }), "format is 'pt'");
    expect("newer_version", edited([](Parts& p) { p.header["__metadata__"]["format_version"] = "2"; }),
           "format version 2 is newer");
    expect("bad_version", edited([](Parts& p) { p.header["__metadata__"]["format_version"] = "one"; }),
           "is not a version number");
    expect("metadata_dtype", edited([](Parts& p) { p.header["__metadata__"]["dtype"] = "F16"; }),
           "lamina models are F32 (float) or F64 (double)");
    expect("bad_checksum_text", edited([](Parts& p) { p.header["__metadata__"]["checksum"] = "md5:abc"; }),
           "crc32:<8 hex digits>");
    expect("metadata_not_string", edited([](Parts& p) { p.header["__metadata__"]["format_version"] = 1; }),
           "must be a string");
    expect("architecture_json", edited([](Parts& p) { p.header["__metadata__"]["architecture"] = "{\"layers\": ["; }),
           "architecture in __metadata__ is not valid JSON");
    expect("architecture_no_input",
           edited([](Parts& p) { edit_architecture(p, [](Json& a) { a.erase("input_shape"); }); }),
           "architecture: no 'input_shape'");
  }
  SECTION("the architecture") {
    expect("unknown_layer",
           edited([](Parts& p) { edit_architecture(p, [](Json& a) { a["layers"][3]["type"] = "Foo"; }); }),
           "unknown layer type 'Foo' at layer 3; known: BatchNormalization, ");  // sorted, then Dense, Dropout, ...
    expect("bad_config_value",
           edited([](Parts& p) { edit_architecture(p, [](Json& a) { a["layers"][1]["config"]["units"] = "eight"; }); }),
           "layer 1 (Dense): config 'units' is 'eight', expected a whole number");
    expect("bad_initializer",
           edited([](Parts& p) {
             edit_architecture(p, [](Json& a) { a["layers"][1]["config"]["kernel_initializer"] = "magic"; });
           }),
           "config 'kernel_initializer' is 'magic'");
    expect("unknown_config_key",
           edited([](Parts& p) { edit_architecture(p, [](Json& a) { a["layers"][2]["config"]["alpha"] = "0.1"; }); }),
           "layer 2 (ReLU): unknown config key 'alpha'");
    expect("missing_config_key",
           edited([](Parts& p) { edit_architecture(p, [](Json& a) { a["layers"][1]["config"].erase("use_bias"); }); }),
           "layer 1 (Dense): config key 'use_bias' is missing");
    expect("does_not_build",
           edited([](Parts& p) {
             edit_architecture(p, [](Json& a) { a["layers"].erase(a["layers"].begin()); });  // Dense on (4, 4, 1)
           }),
           "the architecture does not build");
    expect("output_shape",
           edited([](Parts& p) { edit_architecture(p, [](Json& a) { a["layers"][0]["output_shape"] = {15}; }); }),
           "but the file recorded (N, 15)");
  }
  SECTION("the tensors") {
    expect("shape_vs_architecture",
           edited([](Parts& p) { p.header["layers.1.dense.kernel"]["shape"] = {8, 16}; }),  // same bytes
           "tensor 'layers.1.dense.kernel' has shape (8, 16), but layer 1 (Dense) needs (16, 8)");
    expect("shape_vs_bytes", edited([](Parts& p) { p.header["layers.1.dense.kernel"]["shape"] = {16, 7}; }),
           "needs 448");
    expect("tensor_dtype", edited([](Parts& p) { p.header["layers.3.dense.kernel"]["dtype"] = "I32"; }),
           "has dtype I32, but __metadata__ dtype says F32");
    expect("unknown_dtype", edited([](Parts& p) { p.header["layers.3.dense.kernel"]["dtype"] = "F33"; }),
           "unknown dtype 'F33'");
    expect("offset_out_of_range", edited([](Parts& p) {
             auto& o = p.header["layers.3.dense.bias"]["data_offsets"];
             o = {o[0].get<std::uint64_t>() + 4096, o[1].get<std::uint64_t>() + 4096};
           }),
           "lie outside the data section");
    expect("overlap", edited([](Parts& p) {
             auto& o = p.header["layers.1.dense.bias"]["data_offsets"];
             o = {o[0].get<std::uint64_t>() - 4, o[1].get<std::uint64_t>() - 4};
           }),
           "overlap tensor 'layers.1.dense.kernel'");
    expect("gap", edited([](Parts& p) {
             auto& o = p.header["layers.3.dense.bias"]["data_offsets"];
             o = {o[0].get<std::uint64_t>() + 4, o[1].get<std::uint64_t>() + 4};
             p.data.insert(p.data.end(), 4, 0);
           }),
           "leave a gap of 4 bytes");
    expect("trailing_bytes", edited([](Parts& p) { p.data.insert(p.data.end(), 4, 0); }),
           "4 bytes follow the last tensor");
    expect("reversed_offsets", edited([](Parts& p) {
             auto& o = p.header["layers.3.dense.bias"]["data_offsets"];
             o = {o[1], o[0]};
           }),
           "end before they begin");
    expect("missing_tensor", edited([](Parts& p) {
             // The last tensor: drop its entry and its bytes, so the file stays well formed.
             p.header.erase("layers.3.dense.bias");
             p.data.resize(p.data.size() - 3 * 4);
           }),
           "tensor 'layers.3.dense.bias' is missing: layer 3 (Dense) needs its parameter 'bias'");
    expect("extra_tensor", edited([](Parts& p) {
             const std::uint64_t end = p.data.size();
             p.header["layers.9.dense.kernel"] = {{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {end, end + 4}}};
             p.data.insert(p.data.end(), 4, 0);
           }),
           "unexpected tensor 'layers.9.dense.kernel'");
    Bytes flipped = original;
    flipped[flipped.size() - 5] ^= 0x01;  // one bit of one weight
    expect("checksum", flipped, "checksum mismatch");
  }
}

TEST_CASE("A failed save leaves no temporary file and keeps the existing file") {
  const fs::path dir = lamina_test::temp_dir("model_io_failed_save");
  auto model = small_mlp<float>();
  train_a_little(*model);

  SECTION("into a directory that does not exist") {
    const fs::path path = dir / "no" / "such" / "model.safetensors";
    try {
      save_model(*model, path);
      FAIL("save_model wrote into a missing directory");
    } catch (const Error& e) {
      CHECK(contains(e.what(), path.string()));
      CHECK(contains(e.what(), "does not exist"));
    }
    CHECK_FALSE(fs::exists(dir / "no"));
    CHECK(fs::is_empty(dir));
  }
  SECTION("onto a directory") {
    fs::create_directories(dir / "taken.safetensors");
    CHECK_THROWS_WITH(save_model(*model, dir / "taken.safetensors"), Catch::Contains("is a directory"));
    CHECK(temp_files_in(dir).empty());
  }
  SECTION("a model that is not built") {
    auto fresh = small_mlp<float>();
    CHECK_THROWS_WITH(save_model(*fresh, dir / "fresh.safetensors"), Catch::Contains("not built"));
    CHECK_FALSE(fs::exists(dir / "fresh.safetensors"));
  }
  SECTION("reserved metadata keys") {
    CHECK_THROWS_AS(save_model(*model, dir / "m.safetensors", {{"format", "mine"}}), ArgumentError);
    CHECK(fs::is_empty(dir));
  }
  SECTION("a write that fails half-way (file size limit) keeps the old file") {
    const fs::path path = dir / "model.safetensors";
    save_model(*model, path);
    const Bytes before = read_bytes(path);
    auto other = small_mlp<float>(99);
    train_a_little(*other);
    // RLIMIT_FSIZE makes write() fail with EFBIG past 512 bytes, even for root;
    // SIGXFSZ is ignored so that the failure is an error, not a signal.
    struct rlimit saved;
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved) == 0);
    auto* old_handler = ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit low = saved;
    low.rlim_cur = 512;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &low) == 0);
    std::string message;
    try {
      save_model(*other, path);
    } catch (const Error& e) {
      message = e.what();
    }
    ::setrlimit(RLIMIT_FSIZE, &saved);
    ::signal(SIGXFSZ, old_handler);
    INFO(message);
    CHECK(contains(message, "cannot write " + path.string()));
    CHECK(contains(message, "write failed"));
    CHECK(read_bytes(path) == before);
    CHECK(temp_files_in(dir).empty());
    CHECK_NOTHROW(load_model<float>(path));
  }
  SECTION("a successful save replaces the file and leaves no temporary file") {
    const fs::path path = dir / "model.safetensors";
    write_bytes(path, Bytes{1, 2, 3});
    save_model(*model, path);
    CHECK(temp_files_in(dir).empty());
    CHECK_NOTHROW(load_model<float>(path));
  }
}

namespace {
// A user layer: y = x * alpha (per feature), alpha initialised to `start`.
template <class T>
class Scale final : public Layer<T> {
 public:
  explicit Scale(double start) : start_(start) {}
  std::string type() const override { return "TestScale"; }
  std::unique_ptr<Layer<T>> clone() const override { return std::make_unique<Scale>(start_); }
  LayerConfig config() const override { return {{"start", std::to_string(start_)}}; }
  std::vector<TensorSpec> parameter_specs() const override { return {{"alpha", this->input_shape()}}; }
  void initialize(Rng&) override {
    for (T& a : this->param(0)) a = static_cast<T>(start_);
  }
  TensorView<const T> forward(TensorView<const T> input, Mode) override {
    this->check_input(input);
    out_.resize(input.shape());
    const std::size_t per = this->input_shape().size();
    for (std::size_t i = 0; i < input.size(); ++i) out_[i] = input[i] * this->param(0)[i % per];
    return out_.view();
  }
  TensorView<const T> backward(TensorView<const T> grad) override { return grad; }

 protected:
  Shape do_build(const Shape& input_shape) override { return input_shape; }

 private:
  double start_;
  Tensor<T> out_;
};
}  // namespace

TEST_CASE("register_layer: user layers save and load; unknown types list the known ones") {
  const fs::path dir = lamina_test::temp_dir("model_io_registry");
  Sequential<float> model(Shape{5}, 1);
  model.add<Dense>(4);
  model.add(std::make_unique<Scale<float>>(0.5));
  model.add<Dense>(2);
  model.build();
  model.layer(1).parameters()[0][2] = 3.25f;
  save_model(model, dir / "scale.safetensors");

  // Before registration: the error names the type, the layer and what is known.
  const std::string message = load_error(dir / "scale.safetensors");
  CHECK(contains(message, "unknown layer type 'TestScale' at layer 1; known: "));
  CHECK(contains(message, "Dense"));
  CHECK(contains(message, "register_layer"));

  register_layer<float>("TestScale", [](const LayerConfig& config) {
    LayerConfigReader read(config, "TestScale");
    const double start = read.number("start");
    read.finish();
    return std::make_unique<Scale<float>>(start);
  });
  CHECK_THROWS_AS(register_layer<float>("TestScale", [](const LayerConfig&) { return std::make_unique<Scale<float>>(1.0); }),
                  ArgumentError);
  CHECK_THROWS_AS(register_layer<float>("Dense", [](const LayerConfig&) { return std::make_unique<Scale<float>>(1.0); }),
                  ArgumentError);
  CHECK(LayerRegistry<float>::global().contains("TestScale"));
  CHECK_FALSE(LayerRegistry<double>::global().contains("TestScale"));  // one registry per value type

  Sequential<float> loaded = load_model<float>(dir / "scale.safetensors");
  REQUIRE(loaded.layer(1).type() == "TestScale");
  CHECK(loaded.layer(1).parameters()[0][2] == 3.25f);
  CHECK(loaded.layer(1).parameters()[0][0] == 0.5f);
  CHECK(model_tensor_name(1, "TestScale", "alpha") == "layers.1.test_scale.alpha");
  CHECK(read_safetensors(dir / "scale.safetensors").find("layers.1.test_scale.alpha") != nullptr);
}

TEST_CASE("Tensor names: layers.<index>.<Keras snake_case type>.<tensor>") {
  CHECK(layer_type_snake_case("Dense") == "dense");
  CHECK(layer_type_snake_case("BatchNormalization") == "batch_normalization");
  CHECK(layer_type_snake_case("MaxPooling2D") == "max_pooling2d");
  CHECK(layer_type_snake_case("Conv2D") == "conv2d");
  CHECK(layer_type_snake_case("ReLU") == "re_lu");
  CHECK(layer_type_snake_case("Flatten") == "flatten");
  CHECK(layer_type_snake_case("Conv2DTranspose") == "conv2d_transpose");
  CHECK(layer_type_snake_case("XY2") == "x_y2");  // [A-Z][a-z0-9]+ starts a word, as in Keras
  CHECK(layer_type_snake_case("HTTPServer") == "http_server");
  CHECK(layer_type_snake_case("My.Layer") == "my__layer");
  CHECK(model_tensor_name(4, "BatchNormalization", "moving_mean") == "layers.4.batch_normalization.moving_mean");

  auto model = small_cnn<float>();
  model->build();
  const fs::path dir = lamina_test::temp_dir("model_io_names");
  save_model(*model, dir / "cnn.safetensors");
  std::vector<std::string> names;
  const SafetensorsFile file = read_safetensors(dir / "cnn.safetensors");
  for (const auto& t : file.tensors()) names.push_back(t.name);
  const std::vector<std::string> expected = {
      "layers.1.batch_normalization.gamma", "layers.1.batch_normalization.beta",
      "layers.1.batch_normalization.moving_mean", "layers.1.batch_normalization.moving_variance",
      "layers.3.dense.kernel", "layers.3.dense.bias", "layers.5.dense.kernel", "layers.7.dense.kernel",
      "layers.7.dense.bias"};
  CHECK(names == expected);
}

TEST_CASE("Python's json module reads the file as the safetensors format describes it") {
  // LAMINA_PYTHON: the interpreter CMake found with numpy (tests/python/python.cmake).
  const char* python_variable = std::getenv("LAMINA_PYTHON");
  const std::string python = python_variable != nullptr && *python_variable != '\0' ? python_variable : "python3";
  if (std::system(("'" + python + "' -c 'import json, struct, zlib, numpy' > /dev/null 2>&1").c_str()) != 0) {
    const std::string why = python + " cannot import json, struct, zlib and numpy (Debian: apt install python3-numpy)";
    if (std::getenv("CI") != nullptr) FAIL(why);
    WARN("skipping: " << why);
    return;
  }
  const fs::path dir = lamina_test::temp_dir("model_io_python");
  auto model = small_mlp<float>();
  train_a_little(*model);
  const fs::path path = dir / "mlp.safetensors";
  save_model(*model, path);
  std::uint32_t first_bits;
  std::memcpy(&first_bits, model->layer(1).parameters()[0].data(), 4);

  const fs::path script = dir / "check.py";
  std::ofstream(script) << R"(import json, struct, sys, zlib
path, first_bits = sys.argv[1], int(sys.argv[2])
with open(path, 'rb') as f:
    b = f.read()
n = struct.unpack('<Q', b[:8])[0]
assert (8 + n) % 8 == 0, 'data start not 8-aligned'
header = json.loads(b[8:8 + n].decode('utf-8'))
meta = header.pop('__metadata__')
assert all(isinstance(v, str) for v in meta.values())
assert meta['format'] == 'lamina' and meta['dtype'] == 'F32'
arch = json.loads(meta['architecture'])
assert [l['type'] for l in arch['layers']] == ['Flatten', 'Dense', 'ReLU', 'Dense']
data = b[8 + n:]
pos = 0
for name, e in sorted(header.items(), key=lambda kv: kv[1]['data_offsets']):
    begin, end = e['data_offsets']
    assert begin == pos, name
    count = 1
    for d in e['shape']:
        count *= d
    assert e['dtype'] == 'F32' and end - begin == 4 * count, name
    pos = end
assert pos == len(data), 'data section not covered'
assert meta['checksum'] == 'crc32:%08x' % zlib.crc32(data)
k = header['layers.1.dense.kernel']['data_offsets'][0]
assert struct.unpack('<I', data[k:k + 4])[0] == first_bits
import numpy
kernel_entry = header['layers.1.dense.kernel']
kernel = numpy.frombuffer(data, dtype='<f4', count=16 * 8, offset=kernel_entry['data_offsets'][0])
kernel = kernel.reshape(kernel_entry['shape'])
assert kernel.shape == (16, 8) and kernel.flags['C_CONTIGUOUS']
assert kernel.view('<u4')[0, 0] == first_bits
assert numpy.isfinite(kernel).all()
print('python: ok')
)";
  const std::string command = "'" + python + "' '" + script.string() + "' '" + path.string() + "' " + std::to_string(first_bits);
  CHECK(std::system(command.c_str()) == 0);
}
