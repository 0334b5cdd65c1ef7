// lamina/io/model_io.hpp: saving a trained model to one file and
// loading it back, ready to predict, in the safetensors format.
//
//   lamina::save_model(model, "out/model.safetensors");
//   lamina::Sequential<float> model = lamina::load_model<float>("out/model.safetensors");
//
// The file (docs/model-files.md has the details and a PyTorch example):
//  - one safetensors tensor per parameter and per buffer, named
//      layers.<index>.<type in snake_case>.<tensor>
//    e.g. layers.1.dense.kernel, layers.1.dense.bias,
//    layers.4.batch_normalization.moving_mean. <index> is the layer's position
//    in the model (0-based, as in error messages), so names are unique and
//    stable; the snake_case type follows Keras's rule (Dense -> dense,
//    BatchNormalization -> batch_normalization, MaxPooling2D -> max_pooling2d)
//    and is there for the humans reading a state dict. Tensors are stored in
//    model order: layer by layer, parameters then buffers, in spec order.
//  - "__metadata__" (all values strings, as the format requires):
//      format          "lamina"
//      format_version  "1" (kModelFormatVersion)
//      dtype           "F32" for float models, "F64" for double; every tensor has it
//      checksum        "crc32:<8 hex digits>", zlib's CRC-32 of the whole data section
//      architecture    JSON text: {"input_shape": [28, 28, 1], "seed": 42,
//                        "layers": [{"type": "Dense", "config": {"units": "256", ...},
//                                    "output_shape": [256]}, ...]}
//    plus any extra entries the caller passes to save_model.
//
// load_model validates everything before it returns a model, and it builds
// nothing the caller can see until every check has passed: a failure is one
// FormatError naming the file and the problem, and no model.
//
// Precision: a float model saves F32 and a double model F64. load_model<double>
// also reads F32 files (every float is exactly a double, so the values are the
// same numbers); load_model<float> refuses F64 files, because rounding to float
// would silently change the model.
//
// What is not saved: the optimizer (its moments and step count), the loss, and
// Dropout's stream position. A loaded model predicts exactly as the saved one;
// to train it further, compile() it again (its Dropout streams restart from the
// model seed).
#pragma once

#include <cctype>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "lamina/core/error.hpp"
#include "lamina/core/tensor.hpp"
#include "lamina/io/layer_registry.hpp"
#include "lamina/io/safetensors.hpp"
#include "lamina/layers/layer.hpp"
#include "lamina/model/model.hpp"
#include "lamina/model/sequential.hpp"

namespace lamina {


/// The version of the lamina model file layout written by save_model (the
/// "format_version" metadata). load_model reads this version and refuses newer ones.
inline constexpr int kModelFormatVersion = 1;

/// The file name of tensor `tensor` of layer `layer_index` of type `layer_type`:
/// "layers.1.dense.kernel".
inline std::string model_tensor_name(std::size_t layer_index, const std::string& layer_type, const std::string& tensor) {
  return "layers." + std::to_string(layer_index) + "." + layer_type_snake_case(layer_type) + "." + tensor;
}

/// One layer as a model file records it.
struct ModelFileLayer {
  std::string type;
  LayerConfig config;
  bool has_output_shape = false;
  Shape output_shape;  // one sample, as recorded when saved (when has_output_shape)
};

/// What a model file's header says (read_model_info): checked for form, not
/// against the tensors (load_model does that).
struct ModelFileInfo {
  std::string path;
  int format_version = 0;
  std::string dtype;              // "F32" or "F64"
  std::uint32_t checksum = 0;     // recorded CRC-32 of the data section
  std::string architecture;       // the JSON text
  Shape input_shape;              // one sample
  std::uint64_t seed = 0;         // the model's seed (initialisation, Dropout streams)
  std::vector<ModelFileLayer> layers;
  std::size_t tensor_count = 0;
  std::uint64_t parameter_bytes = 0;  // the data section
  SafetensorsMetadata metadata;   // every __metadata__ entry, lamina's and the caller's
};

namespace detail {

inline const char* const kModelReservedKeys[] = {"format", "format_version", "dtype", "checksum", "architecture"};

inline std::vector<std::uint64_t> shape_dims(const Shape& shape) {
  std::vector<std::uint64_t> dims;
  for (std::size_t i = 0; i < shape.rank(); ++i) dims.push_back(shape[i]);
  return dims;
}

inline std::string hex32(std::uint32_t value) {
  char text[9];
  std::snprintf(text, sizeof text, "%08x", static_cast<unsigned>(value));
  return text;
}

// A JSON array of 1..4 positive integers (an architecture's input_shape or
// output_shape) as a Shape; false if `value` is not one.
inline bool json_to_shape(const nlohmann::ordered_json& value, Shape& out) {
  if (!value.is_array() || value.empty() || value.size() > kMaxRank) return false;
  for (const auto& d : value)
    if (!d.is_number_unsigned() || d.get<std::uint64_t>() == 0) return false;
  Shape shape{static_cast<std::size_t>(value.back().get<std::uint64_t>())};
  for (std::size_t i = value.size() - 1; i-- > 0;) shape = shape.prepend(static_cast<std::size_t>(value[i].get<std::uint64_t>()));
  out = shape;
  return true;
}

// Reads and checks the lamina part of a model file's header.
inline ModelFileInfo model_file_info(const SafetensorsFile& file) {
  using Json = nlohmann::ordered_json;
  const std::string& name = file.path();
  ModelFileInfo info;
  info.path = name;
  info.metadata = file.metadata();
  info.tensor_count = file.tensors().size();
  info.parameter_bytes = file.data_size();
  if (!file.has_metadata())
    throw FormatError(name, "has no __metadata__, so it is not a lamina model file (lamina records the format, dtype, "
                            "architecture and checksum there; see docs/model-files.md). It is a valid safetensors file: "
                            "lamina::read_safetensors reads its tensors.");
  auto required = [&](const char* key) -> const std::string& {
    const std::string* value = file.metadata_value(key);
    if (!value)
      throw FormatError(name, std::string("__metadata__ has no '") + key +
                                  "' entry, which every lamina model file has (written by another program?)");
    return *value;
  };
  const std::string& format = required("format");
  if (format != "lamina")
    throw FormatError(name, "__metadata__ format is '" + format + "', expected 'lamina': not a lamina model file");

  const std::string& version = required("format_version");
  bool digits = !version.empty() && version.size() <= 9;
  for (char c : version) digits = digits && c >= '0' && c <= '9';
  if (!digits || std::stoi(version) < 1)
    throw FormatError(name, "__metadata__ format_version '" + version + "' is not a version number");
  info.format_version = std::stoi(version);
  if (info.format_version > kModelFormatVersion)
    throw FormatError(name, "format version " + version + " is newer than this lamina reads (version " +
                                std::to_string(kModelFormatVersion) + "): update lamina to load it");

  info.dtype = required("dtype");
  if (info.dtype != "F32" && info.dtype != "F64")
    throw FormatError(name, "__metadata__ dtype is '" + info.dtype + "': lamina models are F32 (float) or F64 (double)");

  const std::string& checksum = required("checksum");
  bool hex = checksum.size() == 14 && checksum.compare(0, 6, "crc32:") == 0;
  for (std::size_t i = 6; hex && i < checksum.size(); ++i) hex = std::isxdigit(static_cast<unsigned char>(checksum[i])) != 0;
  if (!hex)
    throw FormatError(name, "__metadata__ checksum '" + checksum + "' is not of the form crc32:<8 hex digits>");
  info.checksum = static_cast<std::uint32_t>(std::stoul(checksum.substr(6), nullptr, 16));

  info.architecture = required("architecture");
  Json arch;
  try {
    arch = parse_json_unique_keys<Json>(info.architecture.data(), info.architecture.data() + info.architecture.size(),
                                        [&](const std::string& key) {
                                          throw FormatError(name, "the architecture JSON has the key '" + key +
                                                                      "' twice in one object");
                                        });
  } catch (const Json::exception& e) {  // parse_error, or out_of_range for "1e999"
    throw FormatError(name, "the architecture in __metadata__ is not valid JSON: " + json_error_text(e));
  }
  auto arch_error = [&](const std::string& what) { return FormatError(name, "architecture: " + what); };
  if (!arch.is_object()) throw arch_error("expected a JSON object, got " + std::string(arch.type_name()));
  const auto input = arch.find("input_shape");
  if (input == arch.end()) throw arch_error("no 'input_shape'");
  if (!json_to_shape(*input, info.input_shape))
    throw arch_error("'input_shape' must be 1 to 4 positive integers, got " + input->dump());
  const auto seed = arch.find("seed");
  if (seed != arch.end()) {
    if (!seed->is_number_unsigned()) throw arch_error("'seed' must be a non-negative integer, got " + seed->dump());
    info.seed = seed->get<std::uint64_t>();
  }
  const auto layers = arch.find("layers");
  if (layers == arch.end() || !layers->is_array() || layers->empty())
    throw arch_error("'layers' must be a non-empty array");
  for (std::size_t i = 0; i < layers->size(); ++i) {
    const Json& l = (*layers)[i];
    const std::string at = "layer " + std::to_string(i);
    if (!l.is_object()) throw arch_error(at + " must be an object {type, config}");
    const auto type = l.find("type");
    if (type == l.end() || !type->is_string() || type->get<std::string>().empty())
      throw arch_error(at + " has no 'type' string");
    ModelFileLayer layer;
    layer.type = type->get<std::string>();
    const auto config = l.find("config");
    if (config == l.end() || !config->is_object())
      throw arch_error(at + " (" + layer.type + ") has no 'config' object");
    for (auto c = config->begin(); c != config->end(); ++c) {
      if (!c.value().is_string())
        throw arch_error(at + " (" + layer.type + "): config '" + c.key() + "' must be a string, got " + c.value().dump());
      layer.config.emplace_back(c.key(), c.value().get<std::string>());
    }
    const auto out = l.find("output_shape");
    if (out != l.end()) {
      if (!json_to_shape(*out, layer.output_shape))
        throw arch_error(at + " (" + layer.type + "): 'output_shape' must be 1 to 4 positive integers, got " + out->dump());
      layer.has_output_shape = true;
    }
    info.layers.push_back(std::move(layer));
  }
  return info;
}

// "Dense: config 'units' ..." -> "config 'units' ...": the caller names the layer.
inline std::string without_type_prefix(const std::string& message, const std::string& type) {
  const std::string prefix = type + ": ";
  return message.compare(0, prefix.size(), prefix) == 0 ? message.substr(prefix.size()) : message;
}

}  // namespace detail

namespace detail {

// A model's architecture as model files (and checkpoints) record it: the input
// shape, the seed, and each layer's type, config and output shape.
template <class T>
nlohmann::ordered_json model_architecture(const Model<T>& model) {
  using Json = nlohmann::ordered_json;
  Json arch = Json::object();
  arch["input_shape"] = shape_dims(model.input_shape());
  arch["seed"] = model.seed();
  Json layers = Json::array();
  for (std::size_t i = 0; i < model.size(); ++i) {
    const Layer<T>& layer = model.layer(i);
    Json config = Json::object();
    for (const auto& [key, value] : layer.config()) {
      if (config.contains(key)) throw Error(layer.describe() + " has the config key '" + key + "' twice");
      config[key] = value;
    }
    Json entry = Json::object();
    entry["type"] = layer.type();
    entry["config"] = std::move(config);
    entry["output_shape"] = shape_dims(layer.output_shape());
    layers.push_back(std::move(entry));
  }
  arch["layers"] = std::move(layers);
  return arch;
}

// Every parameter and buffer of a built model, named as model files name them
// ("layers.1.dense.kernel"), layer by layer, parameters before buffers.
// `where` starts the error messages.
template <class T>
std::vector<SafetensorsTensor> model_tensors(const Model<T>& model, const std::string& where) {
  std::vector<SafetensorsTensor> tensors;
  for (std::size_t i = 0; i < model.size(); ++i) {
    const Layer<T>& layer = model.layer(i);
    auto add = [&](const std::vector<TensorSpec>& specs, const std::vector<TensorView<T>>& views) {
      if (specs.size() != views.size())
        throw Error(where + ": " + layer.describe() + " has " + std::to_string(specs.size()) + " tensor specs but " +
                    std::to_string(views.size()) + " bound tensors");
      for (std::size_t k = 0; k < specs.size(); ++k) {
        if (views[k].shape() != specs[k].shape)
          throw Error(where + ": " + layer.describe() + " tensor '" + specs[k].name + "' is bound with shape " +
                      views[k].shape().to_string() + ", its spec says " + specs[k].shape.to_string());
        tensors.push_back({model_tensor_name(i, layer.type(), specs[k].name), safetensors_dtype<T>(),
                           shape_dims(specs[k].shape), views[k].data()});
      }
    };
    add(layer.parameter_specs(), layer.parameters());
    add(layer.buffer_specs(), layer.buffers());
  }
  // A layer's parameter and buffer with the same name would collide.
  for (std::size_t a = 0; a < tensors.size(); ++a)
    for (std::size_t b = a + 1; b < tensors.size(); ++b)
      if (tensors[a].name == tensors[b].name)
        throw Error(where + ": two tensors would both be named '" + tensors[a].name +
                    "' (a layer has a parameter and a buffer of the same name)");
  return tensors;
}

}  // namespace detail

/// Reads a model file's header: format, version, dtype, architecture (checked
/// for form). Cheaper to reason about than load_model, but it does not check
/// the tensors, the checksum or whether the layers are known: load_model does.
/// Throws FormatError as load_model does for the header.
inline ModelFileInfo read_model_info(const std::filesystem::path& path) {
  return detail::model_file_info(read_safetensors(path));
}

/// Saves `model` (built: trained, compiled or build() called) to `path`,
/// atomically: `path` is either left as it was or replaced by the complete
/// file. `extra_metadata` adds string entries to __metadata__ (e.g. the
/// validation accuracy); lamina's own keys (format, format_version, dtype,
/// checksum, architecture) are reserved.
/// Throws lamina::Error naming the path and the reason (model not built,
/// directory missing, disk full, ...); ArgumentError for bad extra metadata.
template <class T>
void save_model(const Model<T>& model, const std::filesystem::path& path,
                const SafetensorsMetadata& extra_metadata = {}) {
  using Json = nlohmann::ordered_json;
  const std::string where = "save_model " + path.string();
  if (!model.built())
    throw Error(where + ": the model is not built yet, so it has no weights (call build(), compile() or fit() first)");
  for (const auto& [key, value] : extra_metadata)
    for (const char* reserved : detail::kModelReservedKeys)
      if (key == reserved) throw ArgumentError(where + ": metadata key '" + key + "' is reserved for lamina");

  const Json arch = detail::model_architecture(model);
  const std::vector<SafetensorsTensor> tensors = detail::model_tensors(model, where);

  SafetensorsMetadata metadata = {
      {"format", "lamina"},
      {"format_version", std::to_string(kModelFormatVersion)},
      {"dtype", safetensors_dtype<T>()},
      {"checksum", "crc32:" + detail::hex32(safetensors_data_crc32(tensors))},
      {"architecture", arch.dump()}};
  metadata.insert(metadata.end(), extra_metadata.begin(), extra_metadata.end());
  write_safetensors(path, tensors, metadata);
}

/// Loads a model saved by save_model: built, with its parameters and buffers
/// (BatchNormalization's moving statistics, ...) as saved, ready for predict()
/// and evaluate(). Not compiled: call compile() to train it further.
///
/// Checks, each failure a FormatError naming the file: everything
/// read_safetensors checks (length, JSON, offsets); the metadata (present,
/// format "lamina", a version this lamina reads, dtype F32/F64 and readable as
/// T, a well-formed checksum and architecture); every layer type registered
/// ("unknown layer type 'Foo' at layer 3; known: ..."), its config parsing and
/// the architecture building; every tensor the architecture needs present, of
/// the model's dtype and the layer's shape, and no other tensor; the CRC-32 of
/// the data. Nothing is returned unless all of these pass.
template <class T>
Sequential<T> load_model(const std::filesystem::path& path) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "load_model<float> or load_model<double>");
  const SafetensorsFile file = read_safetensors(path);
  const ModelFileInfo info = detail::model_file_info(file);
  const std::string& name = file.path();
  if (std::is_same_v<T, float> && info.dtype == "F64")
    throw FormatError(name, "holds F64 (double) weights; load_model<float> would round them: use load_model<double>");

  // 1. The architecture. Layers are built (shapes fixed) but nothing is
  //    allocated until every check below has passed.
  Sequential<T> model(info.input_shape, info.seed);
  const LayerRegistry<T>& registry = LayerRegistry<T>::global();
  for (std::size_t i = 0; i < info.layers.size(); ++i) {
    const ModelFileLayer& record = info.layers[i];
    const std::string at = "layer " + std::to_string(i) + " (" + record.type + ")";
    if (!registry.contains(record.type))
      throw FormatError(name, "unknown layer type '" + record.type + "' at layer " + std::to_string(i) +
                                  "; known: " + registry.known_types() +
                                  " (register your own with lamina::register_layer before loading)");
    std::unique_ptr<Layer<T>> layer;
    try {
      layer = registry.create(record.type, record.config);
    } catch (const Error& e) {
      throw FormatError(name, at + ": " + detail::without_type_prefix(e.what(), record.type));
    }
    try {
      model.add(std::move(layer));
    } catch (const Error& e) {
      throw FormatError(name, "the architecture does not build: " + std::string(e.what()));
    }
    if (record.has_output_shape && model.layer(i).output_shape() != record.output_shape)
      throw FormatError(name, at + " outputs " + model.layer(i).output_shape().to_string("N") +
                                  ", but the file recorded " + record.output_shape.to_string("N") +
                                  " (did the layer's behaviour change since the file was written?)");
  }

  // 2. Every tensor the architecture needs, with its dtype and shape, and no other.
  std::unordered_map<std::string, const SafetensorsEntry*> by_name;
  for (const SafetensorsEntry& entry : file.tensors()) by_name.emplace(entry.name, &entry);
  struct Slot {
    std::size_t layer;
    bool parameter;
    std::size_t index;
    const SafetensorsEntry* entry;
  };
  std::vector<Slot> slots;
  for (std::size_t i = 0; i < model.size(); ++i) {
    const Layer<T>& layer = model.layer(i);
    auto expect = [&](const std::vector<TensorSpec>& specs, bool parameter) {
      for (std::size_t k = 0; k < specs.size(); ++k) {
        const std::string tensor = model_tensor_name(i, layer.type(), specs[k].name);
        const auto found = by_name.find(tensor);
        if (found == by_name.end())
          throw FormatError(name, "tensor '" + tensor + "' is missing: " + layer.describe() + " needs its " +
                                      (parameter ? "parameter '" : "buffer '") + specs[k].name + "' of shape " +
                                      specs[k].shape.to_string());
        const SafetensorsEntry& entry = *found->second;
        if (entry.dtype != info.dtype)
          throw FormatError(name, "tensor '" + tensor + "' has dtype " + entry.dtype + ", but __metadata__ dtype says " +
                                      info.dtype + " (lamina model files use one dtype throughout)");
        if (entry.shape != detail::shape_dims(specs[k].shape))
          throw FormatError(name, "tensor '" + tensor + "' has shape " + detail::shape_text(entry.shape) + ", but " +
                                      layer.describe() + " needs " + specs[k].shape.to_string() + " for its '" +
                                      specs[k].name + "' on input " + layer.input_shape().to_string("N"));
        slots.push_back({i, parameter, k, &entry});
        by_name.erase(found);
      }
    };
    expect(layer.parameter_specs(), true);
    expect(layer.buffer_specs(), false);
  }
  if (!by_name.empty()) {
    const SafetensorsEntry* extra = nullptr;  // the first in file order, for a stable message
    for (const SafetensorsEntry& entry : file.tensors())
      if (by_name.count(entry.name)) {
        extra = &entry;
        break;
      }
    throw FormatError(name, "unexpected tensor '" + extra->name + "': no layer of the architecture has it (the file has " +
                                std::to_string(file.tensors().size()) + " tensors, the architecture needs " +
                                std::to_string(slots.size()) + ")");
  }

  // 3. The data itself.
  const std::uint32_t crc = crc32_update(0, file.data(), file.data_size());
  if (crc != info.checksum)
    throw FormatError(name, "checksum mismatch: the tensor data has CRC-32 " + detail::hex32(crc) + ", the header records " +
                                detail::hex32(info.checksum) + ": the file is corrupt");

  // 4. Allocate (build() also runs the initialisers; the file then overwrites
  //    every parameter and buffer) and fill.
  model.build();
  for (const Slot& slot : slots) {
    const Layer<T>& layer = model.layer(slot.layer);
    const TensorView<T>& view = slot.parameter ? layer.parameters().at(slot.index) : layer.buffers().at(slot.index);
    file.read_tensor<T>(*slot.entry, view.data());
  }
  return model;
}

}  // namespace lamina
