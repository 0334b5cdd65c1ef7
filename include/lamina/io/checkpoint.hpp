// lamina/io/checkpoint.hpp: fit()'s checkpoints, written every N epochs and
// resumed from (FitOptions::checkpoint_path, checkpoint_every, resume_from).
//
// A checkpoint is one safetensors file, written atomically (AtomicFileWriter:
// a crash leaves the previous checkpoint or the new one, never a mix):
//   tensors   layers.<i>.<type>.<name>   every parameter and buffer, as a model file names them
//             optimizer.<name>           the optimizer's state (Adam's m and v, SGD's velocity), (P,)
//             fit.order                  U64 (N,): the last epoch's sample order
//   metadata  format "lamina-checkpoint", format_version, dtype, checksum (CRC-32 of the data),
//             architecture (as in a model file), optimizer {name, config, iterations,
//             learning_rate}, fit {epochs_done, the run's identity, the random streams'
//             states, the history}.
// Resuming restores all of it, so the rest of the run is bit-identical to a run
// that was never interrupted (tests/test_checkpoint.cpp checks it). Every part of
// the file is checked against the model, its optimizer and the fit call before
// anything is changed; a file that does not match throws and leaves them as
// they were. Doubles and random states are stored as the hex of their bits,
// so nothing is lost to decimal text.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "lamina/core/error.hpp"
#include "lamina/core/rng.hpp"
#include "lamina/io/model_io.hpp"
#include "lamina/io/safetensors.hpp"
#include "lamina/model/history.hpp"
#include "lamina/model/model.hpp"

namespace lamina {

/// The version of the checkpoint layout (the "format_version" metadata).
inline constexpr int kCheckpointFormatVersion = 1;

namespace detail {

inline std::string hex64(std::uint64_t value) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(value));
  return text;
}
inline bool parse_hex64(const nlohmann::ordered_json& value, std::uint64_t& out) {
  if (!value.is_string()) return false;
  const std::string& text = value.get_ref<const std::string&>();
  if (text.size() != 16) return false;
  std::uint64_t v = 0;
  for (char c : text) {
    int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (digit < 0) return false;
    v = v << 4 | static_cast<std::uint64_t>(digit);
  }
  out = v;
  return true;
}
inline std::string double_bits(double value) {
  std::uint64_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return hex64(bits);
}
inline bool parse_double_bits(const nlohmann::ordered_json& value, double& out) {
  std::uint64_t bits;
  if (!parse_hex64(value, bits)) return false;
  std::memcpy(&out, &bits, sizeof out);
  return true;
}

inline nlohmann::ordered_json rng_to_json(const Rng::Snapshot& snap) {
  nlohmann::ordered_json words = nlohmann::ordered_json::array();
  for (std::uint64_t w : snap.words) words.push_back(hex64(w));
  return {{"state", words}, {"has_spare_normal", snap.has_spare_normal}, {"spare_normal", double_bits(snap.spare_normal)}};
}
inline bool rng_from_json(const nlohmann::ordered_json& value, Rng::Snapshot& out) {
  if (!value.is_object()) return false;
  const auto words = value.find("state"), has = value.find("has_spare_normal"), spare = value.find("spare_normal");
  if (words == value.end() || has == value.end() || spare == value.end()) return false;
  if (!words->is_array() || words->size() != out.words.size() || !has->is_boolean()) return false;
  Rng::Snapshot snap{};
  for (std::size_t i = 0; i < snap.words.size(); ++i)
    if (!parse_hex64((*words)[i], snap.words[i])) return false;
  snap.has_spare_normal = has->get<bool>();
  if (!parse_double_bits(*spare, snap.spare_normal)) return false;
  out = snap;
  return true;
}

// One epoch's statistics; doubles as bits (a NaN loss survives too).
inline nlohmann::ordered_json epoch_to_json(const EpochStats& s) {
  return {{"epoch", s.epoch},
          {"train_loss", double_bits(s.train_loss)},
          {"train_accuracy", double_bits(s.train_accuracy)},
          {"has_validation", s.has_validation},
          {"val_loss", double_bits(s.val_loss)},
          {"val_accuracy", double_bits(s.val_accuracy)},
          {"seconds", double_bits(s.seconds)},
          {"train_images_per_second", double_bits(s.train_images_per_second)},
          {"learning_rate", double_bits(s.learning_rate)},
          {"max_gradient_norm", double_bits(s.max_gradient_norm)},
          {"clipped_batches", s.clipped_batches},
          {"skipped_batches", s.skipped_batches}};
}

// Reads the "fit" and "optimizer" JSON of a checkpoint, throwing FormatError
// naming the file and the field.
class CheckpointJsonReader {
 public:
  CheckpointJsonReader(std::string file, std::string section) : file_(std::move(file)), section_(std::move(section)) {}
  const nlohmann::ordered_json& field(const nlohmann::ordered_json& object, const std::string& key) const {
    const auto it = object.find(key);
    if (it == object.end()) throw error("'" + key + "' is missing");
    return *it;
  }
  std::uint64_t u64(const nlohmann::ordered_json& object, const std::string& key) const {
    const auto& v = field(object, key);
    if (!v.is_number_unsigned()) throw error("'" + key + "' must be a non-negative integer, got " + v.dump());
    return v.get<std::uint64_t>();
  }
  bool boolean(const nlohmann::ordered_json& object, const std::string& key) const {
    const auto& v = field(object, key);
    if (!v.is_boolean()) throw error("'" + key + "' must be true or false, got " + v.dump());
    return v.get<bool>();
  }
  double bits(const nlohmann::ordered_json& object, const std::string& key) const {
    double out;
    if (!parse_double_bits(field(object, key), out))
      throw error("'" + key + "' must be 16 lowercase hex digits (a double's bits), got " + field(object, key).dump());
    return out;
  }
  Rng::Snapshot rng(const nlohmann::ordered_json& object, const std::string& key) const {
    Rng::Snapshot snap{};
    if (!rng_from_json(field(object, key), snap))
      throw error("'" + key + "' is not a random-stream state {state: 4 hex words, has_spare_normal, spare_normal}");
    return snap;
  }
  EpochStats epoch(const nlohmann::ordered_json& value) const {
    if (!value.is_object()) throw error("each history entry must be an object");
    EpochStats s;
    s.epoch = static_cast<std::size_t>(u64(value, "epoch"));
    s.train_loss = bits(value, "train_loss");
    s.train_accuracy = bits(value, "train_accuracy");
    s.has_validation = boolean(value, "has_validation");
    s.val_loss = bits(value, "val_loss");
    s.val_accuracy = bits(value, "val_accuracy");
    s.seconds = bits(value, "seconds");
    s.train_images_per_second = bits(value, "train_images_per_second");
    s.learning_rate = bits(value, "learning_rate");
    s.max_gradient_norm = bits(value, "max_gradient_norm");
    s.clipped_batches = static_cast<std::size_t>(u64(value, "clipped_batches"));
    s.skipped_batches = static_cast<std::size_t>(u64(value, "skipped_batches"));
    return s;
  }
  FormatError error(const std::string& what) const { return FormatError(file_, section_ + ": " + what); }

 private:
  std::string file_, section_;
};

inline nlohmann::ordered_json config_json(const LayerConfig& config) {
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  for (const auto& [key, value] : config) out[key] = value;
  return out;
}

}  // namespace detail

/// Writes fit()'s checkpoint of `model` (built and compiled) at `progress` to
/// `path`, atomically. fit() calls it (FitOptions::checkpoint_every); it is
/// public so that a caller can checkpoint from an on_epoch_end callback of its
/// own. Throws lamina::Error naming the path and the reason.
template <class T>
void save_checkpoint(Model<T>& model, const FitProgress& progress, const std::filesystem::path& path) {
  using Json = nlohmann::ordered_json;
  const std::string where = "save_checkpoint " + path.string();
  Optimizer<T>* optimizer = model.optimizer();
  if (!model.built() || optimizer == nullptr)
    throw Error(where + ": the model is not compiled (a checkpoint holds the optimizer's state)");
  if (progress.order.size() != progress.samples)
    throw Error(where + ": the sample order has " + std::to_string(progress.order.size()) + " entries for " +
                std::to_string(progress.samples) + " samples");

  std::vector<SafetensorsTensor> tensors = detail::model_tensors(model, where);
  const std::size_t parameters = model.store().params().size();
  for (const auto& [name, tensor] : optimizer->state()) {
    if (tensor->size() != parameters)
      throw Error(where + ": optimizer state '" + name + "' has " + std::to_string(tensor->size()) + " values for " +
                  std::to_string(parameters) + " parameters");
    tensors.push_back({"optimizer." + name, safetensors_dtype<T>(), {tensor->size()}, tensor->data()});
  }
  tensors.push_back({"fit.order", "U64", {progress.order.size()}, progress.order.data()});

  Json optimizer_json = {{"name", optimizer->name()},
                         {"config", detail::config_json(optimizer->config())},
                         {"iterations", optimizer->iterations()},
                         {"learning_rate", detail::double_bits(optimizer->learning_rate())}};
  Json layer_streams = Json::array();
  for (std::size_t i = 0; i < model.size(); ++i)
    if (const Rng* stream = model.layer(i).rng()) layer_streams.push_back({{"layer", i}, {"stream", detail::rng_to_json(stream->snapshot())}});
  Json history = Json::array();
  for (const EpochStats& s : progress.epochs) history.push_back(detail::epoch_to_json(s));
  Json fit_json = {{"epochs_done", progress.epochs_done},
                   {"samples", progress.samples},
                   {"batch_size", progress.batch_size},
                   {"shuffle", progress.shuffle},
                   {"shuffle_seed", progress.shuffle_seed},
                   {"augment", progress.augment},
                   {"augment_seed", progress.augment_seed},
                   {"data_crc32", detail::hex32(progress.data_crc32)},
                   {"shuffle_stream", detail::rng_to_json(progress.shuffle_rng)},
                   {"augment_stream", detail::rng_to_json(progress.augment_rng)},
                   {"layer_streams", layer_streams},
                   {"history", history}};
  const SafetensorsMetadata metadata = {
      {"format", "lamina-checkpoint"},
      {"format_version", std::to_string(kCheckpointFormatVersion)},
      {"dtype", safetensors_dtype<T>()},
      {"checksum", "crc32:" + detail::hex32(safetensors_data_crc32(tensors))},
      {"architecture", detail::model_architecture(model).dump()},
      {"optimizer", optimizer_json.dump()},
      {"fit", fit_json.dump()}};
  write_safetensors(path, tensors, metadata);
}

/// Restores a checkpoint written by save_checkpoint into `model` (built and
/// compiled as when it was written) and `progress`, whose run identity
/// (samples, batch size, shuffle and augment settings, data CRC-32) the caller
/// has filled in and the checkpoint must match. Checks everything before
/// changing anything: FormatError (naming the file) for a damaged or foreign
/// file, ArgumentError when the file is sound but belongs to another model,
/// optimizer or run.
template <class T>
void load_checkpoint(Model<T>& model, const std::filesystem::path& path, FitProgress& progress) {
  using Json = nlohmann::ordered_json;
  Optimizer<T>* optimizer = model.optimizer();
  if (optimizer == nullptr) throw Error("load_checkpoint " + path.string() + ": compile the model before resuming");
  const SafetensorsFile file = read_safetensors(path);
  const std::string& name = file.path();
  const std::string mismatch = "cannot resume from " + name + ": ";

  // 1. The metadata.
  if (!file.has_metadata()) throw FormatError(name, "has no __metadata__: not a lamina checkpoint");
  auto required = [&](const char* key) -> const std::string& {
    const std::string* value = file.metadata_value(key);
    if (!value) throw FormatError(name, std::string("__metadata__ has no '") + key + "' entry: not a lamina checkpoint");
    return *value;
  };
  const std::string& format = required("format");
  if (format == "lamina")
    throw FormatError(name, "is a lamina model file, not a checkpoint: load it with load_model (checkpoints are "
                            "written by fit with FitOptions::checkpoint_path)");
  if (format != "lamina-checkpoint")
    throw FormatError(name, "__metadata__ format is '" + format + "', expected 'lamina-checkpoint'");
  if (required("format_version") != std::to_string(kCheckpointFormatVersion))
    throw FormatError(name, "checkpoint format version '" + required("format_version") + "' is not the version " +
                                std::to_string(kCheckpointFormatVersion) + " this lamina reads");
  const std::string& dtype = required("dtype");
  if (dtype != safetensors_dtype<T>())
    throw ArgumentError(mismatch + "it holds " + dtype + " values, the model is " + safetensors_dtype<T>() +
                        " (resume in the precision the run started with)");
  const std::string& checksum = required("checksum");
  auto parse = [&](const char* key) {
    const std::string& text = required(key);
    try {
      return detail::parse_json_unique_keys<Json>(text.data(), text.data() + text.size(), [&](const std::string& k) {
        throw FormatError(name, std::string(key) + " JSON names the key '" + k + "' twice");
      });
    } catch (const Json::exception& e) {
      throw FormatError(name, std::string("the ") + key + " in __metadata__ is not valid JSON: " + detail::json_error_text(e));
    }
  };
  const Json architecture = parse("architecture"), optimizer_json = parse("optimizer"), fit_json = parse("fit");

  // 2. The same model: input shape, then each layer's type, config and output.
  Json expected = detail::model_architecture(model);
  Json found = architecture;
  if (found.is_object()) found.erase("seed");  // initialisation only: the weights come from the file
  expected.erase("seed");
  if (found != expected) {
    std::string what = "the model's architecture differs from the checkpoint's";
    const auto& fl = found.is_object() && found.contains("layers") ? found["layers"] : Json::array();
    const auto& el = expected["layers"];
    if (!found.is_object() || found.value("input_shape", Json()) != expected["input_shape"])
      what += ": the input shapes differ";
    else if (!fl.is_array() || fl.size() != el.size())
      what += ": " + std::to_string(fl.is_array() ? fl.size() : 0) + " layers in the file, " +
              std::to_string(el.size()) + " in the model";
    else
      for (std::size_t i = 0; i < el.size(); ++i)
        if (fl[i] != el[i]) {
          what += ": layer " + std::to_string(i) + " is " + fl[i].dump() + " in the file, " + el[i].dump() + " in the model";
          break;
        }
    throw ArgumentError(mismatch + what);
  }

  // 3. The same optimizer (its learning rate may differ: schedules change it).
  const detail::CheckpointJsonReader opt(name, "optimizer");
  if (!optimizer_json.is_object()) throw opt.error("must be a JSON object");
  const Json& opt_name = opt.field(optimizer_json, "name");
  if (!opt_name.is_string()) throw opt.error("'name' must be a string");
  if (opt_name.get<std::string>() != optimizer->name())
    throw ArgumentError(mismatch + "it was written with optimizer " + opt_name.get<std::string>() + ", the model is compiled with " +
                        optimizer->name());
  Json opt_config = opt.field(optimizer_json, "config"), own_config = detail::config_json(optimizer->config());
  if (opt_config.is_object()) opt_config.erase("learning_rate");
  own_config.erase("learning_rate");
  if (opt_config != own_config)
    throw ArgumentError(mismatch + "the optimizer's settings differ: " + opt_config.dump() + " in the file, " +
                        own_config.dump() + " in the model");
  const std::uint64_t iterations = opt.u64(optimizer_json, "iterations");
  const double learning_rate = opt.bits(optimizer_json, "learning_rate");

  // 4. The same run.
  const detail::CheckpointJsonReader fit(name, "fit");
  if (!fit_json.is_object()) throw fit.error("must be a JSON object");
  auto same = [&](const char* what, auto in_file, auto in_call) {
    if (in_file != in_call)
      throw ArgumentError(mismatch + "it was written by a fit with " + what + " " + std::to_string(in_file) +
                          ", this fit has " + std::to_string(in_call));
  };
  same("samples", fit.u64(fit_json, "samples"), std::uint64_t{progress.samples});
  same("batch_size", fit.u64(fit_json, "batch_size"), std::uint64_t{progress.batch_size});
  same("shuffle", int{fit.boolean(fit_json, "shuffle")}, int{progress.shuffle});
  same("shuffle_seed", fit.u64(fit_json, "shuffle_seed"), progress.shuffle_seed);
  same("augment (1: a function was set)", int{fit.boolean(fit_json, "augment")}, int{progress.augment});
  same("augment_seed", fit.u64(fit_json, "augment_seed"), progress.augment_seed);
  const Json& crc = fit.field(fit_json, "data_crc32");
  if (!crc.is_string() || crc.get<std::string>() != detail::hex32(progress.data_crc32))
    throw ArgumentError(mismatch + "its training data had CRC-32 " + crc.dump() + ", this fit's data has \"" +
                        detail::hex32(progress.data_crc32) + "\" (other images or labels, or another order)");
  FitProgress restored = progress;
  restored.epochs_done = static_cast<std::size_t>(fit.u64(fit_json, "epochs_done"));
  restored.shuffle_rng = fit.rng(fit_json, "shuffle_stream");
  restored.augment_rng = fit.rng(fit_json, "augment_stream");
  const Json& history = fit.field(fit_json, "history");
  if (!history.is_array() || history.size() != restored.epochs_done)
    throw fit.error("'history' must hold one entry per epoch done (" + std::to_string(restored.epochs_done) + ")");
  restored.epochs.clear();
  for (const Json& entry : history) restored.epochs.push_back(fit.epoch(entry));
  std::vector<std::pair<Rng*, Rng::Snapshot>> streams;
  const Json& layer_streams = fit.field(fit_json, "layer_streams");
  if (!layer_streams.is_array()) throw fit.error("'layer_streams' must be an array");
  std::size_t next = 0;
  for (std::size_t i = 0; i < model.size(); ++i) {
    Rng* stream = model.layer(i).rng();
    if (!stream) continue;
    if (next >= layer_streams.size() || !layer_streams[next].is_object() ||
        fit.u64(layer_streams[next], "layer") != i)
      throw fit.error("'layer_streams' has no state for " + model.layer(i).describe() + "'s random stream");
    streams.emplace_back(stream, fit.rng(layer_streams[next], "stream"));
    ++next;
  }
  if (next != layer_streams.size()) throw fit.error("'layer_streams' has states for layers without a random stream");

  // 5. The tensors: exactly the model's, the optimizer's and the order, each of
  //    the right dtype and shape; then the checksum.
  std::vector<SafetensorsTensor> wanted = detail::model_tensors(model, "load_checkpoint " + name);
  const std::vector<std::pair<std::string, Tensor<T>*>> state = optimizer->state();
  const std::size_t parameters = model.store().params().size();
  for (const auto& [key, tensor] : state) wanted.push_back({"optimizer." + key, safetensors_dtype<T>(), {parameters}, nullptr});
  wanted.push_back({"fit.order", "U64", {progress.samples}, nullptr});
  if (file.tensors().size() != wanted.size())
    throw FormatError(name, "has " + std::to_string(file.tensors().size()) + " tensors, a checkpoint of this model and optimizer has " +
                                std::to_string(wanted.size()));
  std::vector<const SafetensorsEntry*> entries;
  for (const SafetensorsTensor& t : wanted) {
    const SafetensorsEntry* entry = file.find(t.name);
    if (!entry) throw FormatError(name, "tensor '" + t.name + "' is missing");
    if (entry->dtype != t.dtype || entry->shape != t.shape)
      throw FormatError(name, "tensor '" + t.name + "' is " + entry->dtype + " " + detail::shape_text(entry->shape) +
                                  ", expected " + t.dtype + " " + detail::shape_text(t.shape));
    entries.push_back(entry);
  }
  const std::string checksum_text = "crc32:" + detail::hex32(crc32_update(0, file.data(), file.data_size()));
  if (checksum != checksum_text)
    throw FormatError(name, "checksum mismatch: the data has " + checksum_text + ", the header records " + checksum +
                                ": the file is corrupt");
  std::vector<std::uint64_t> order(progress.samples);
  const std::uint8_t* order_bytes = file.bytes(*entries.back());
  std::vector<bool> seen(progress.samples, false);
  for (std::size_t i = 0; i < order.size(); ++i) {
    std::uint64_t v = 0;
    for (int b = 7; b >= 0; --b) v = v << 8 | order_bytes[8 * i + static_cast<std::size_t>(b)];
    if (v >= progress.samples || seen[v]) throw FormatError(name, "tensor 'fit.order' is not a permutation of the samples");
    seen[v] = true;
    order[i] = v;
  }
  restored.order = std::move(order);

  // 6. Everything matched: restore.
  std::size_t k = 0;
  for (std::size_t i = 0; i < model.size(); ++i) {
    const Layer<T>& layer = model.layer(i);
    for (const TensorView<T>& view : layer.parameters()) file.read_tensor<T>(*entries[k++], view.data());
    for (const TensorView<T>& view : layer.buffers()) file.read_tensor<T>(*entries[k++], view.data());
  }
  for (const auto& [key, tensor] : state) file.read_tensor<T>(*entries[k++], tensor->data());
  optimizer->set_iterations(iterations);
  optimizer->set_learning_rate(learning_rate);
  for (auto& [stream, snap] : streams) stream->restore(snap);
  progress = std::move(restored);
}

}  // namespace lamina
