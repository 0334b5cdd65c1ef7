// lamina/io/layer_registry.hpp: from a layer's type name and config() text back
// to a layer, so that load_model can rebuild a model from its file.
//
// A model file records each layer as its type() ("Dense") and its config()
// pairs ({"units", "256"}, ...). The registry maps a type name to a factory that
// parses those pairs and constructs the layer. The built-in layers are
// registered on first use; users add their own layers with register_layer,
// once per value type they load:
//
//   lamina::register_layer<float>("Scale", [](const lamina::LayerConfig& config) {
//     lamina::LayerConfigReader read(config, "Scale");
//     const double factor = read.number("factor");
//     read.finish();  // refuses keys the factory did not read
//     return std::make_unique<Scale<float>>(factor);
//   });
//
// A factory reports a bad value by throwing lamina::Error (LayerConfigReader
// does, naming the key); load_model adds the file, layer index and type.
#pragma once

#include <array>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <locale>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "lamina/core/error.hpp"
#include "lamina/kernels/activation.hpp"
#include "lamina/layers/relu.hpp"
#include "lamina/layers/batchnorm.hpp"
#include "lamina/layers/dense.hpp"
#include "lamina/layers/dropout.hpp"
#include "lamina/layers/flatten.hpp"
#include "lamina/layers/initializers.hpp"
#include "lamina/layers/layer.hpp"
#include "lamina/layers/maxpool2d.hpp"
// Conv2D is registered when its header is in the checkout (it arrived after
// this file; the guard keeps this header building either way).
#if __has_include("lamina/layers/conv2d.hpp")
#include "lamina/core/padding.hpp"
#include "lamina/layers/conv2d.hpp"
#define LAMINA_IO_HAS_CONV2D 1
#endif

namespace lamina {

/// Builds a layer from its recorded config. Throws lamina::Error for a bad config.
template <class T>
using LayerFactory = std::function<std::unique_ptr<Layer<T>>(const LayerConfig&)>;

/// Parses a layer's config() pairs back, one typed value per key, with errors
/// that name the layer type, the key and the offending text. finish() then
/// refuses keys nobody asked for, so a file from a newer lamina with a new
/// option fails loudly instead of loading as something else.
class LayerConfigReader {
 public:
  LayerConfigReader(const LayerConfig& config, std::string layer_type)
      : config_(config), type_(std::move(layer_type)), used_(config.size(), false) {
    for (std::size_t i = 0; i < config_.size(); ++i)
      for (std::size_t j = 0; j < i; ++j)
        if (config_[i].first == config_[j].first)
          throw ArgumentError(type_ + ": config key '" + config_[i].first + "' is given twice");
  }

  /// The raw text of `key`; throws if it is missing.
  const std::string& text(const std::string& key) {
    for (std::size_t i = 0; i < config_.size(); ++i)
      if (config_[i].first == key) {
        used_[i] = true;
        return config_[i].second;
      }
    throw ArgumentError(type_ + ": config key '" + key + "' is missing");
  }
  /// A whole number >= `min` written in decimal digits ("256").
  std::size_t whole_number(const std::string& key, std::size_t min = 0) {
    const std::string& value = text(key);
    std::uint64_t n = 0;
    if (!parse_whole(value, n) || n > std::numeric_limits<std::size_t>::max())
      throw bad(key, value, "a whole number");
    if (n < min) throw bad(key, value, "a whole number >= " + std::to_string(min));
    return static_cast<std::size_t>(n);
  }
  /// A 64-bit unsigned number ("42"), e.g. a seed.
  std::uint64_t uint64(const std::string& key) {
    const std::string& value = text(key);
    std::uint64_t n = 0;
    if (!parse_whole(value, n)) throw bad(key, value, "a whole number below 2^64");
    return n;
  }
  /// A finite number in the C locale ("0.99", "1e-3"), read back exactly as
  /// the layers write it (shortest text that round-trips).
  double number(const std::string& key) {
    const std::string& value = text(key);
    std::istringstream in(value);
    in.imbue(std::locale::classic());
    double x = 0;
    in >> x;
    if (value.empty() || std::isspace(static_cast<unsigned char>(value[0])) || in.fail() || in.peek() != EOF ||
        !std::isfinite(x))
      throw bad(key, value, "a finite number");
    return x;
  }
  /// "true" or "false".
  bool boolean(const std::string& key) {
    const std::string& value = text(key);
    if (value == "true") return true;
    if (value == "false") return false;
    throw bad(key, value, "true or false");
  }
  /// A pair of whole numbers, "(2, 2)".
  std::pair<std::size_t, std::size_t> whole_pair(const std::string& key, std::size_t min = 0) {
    const std::string& value = text(key);
    const std::string what = "a pair of whole numbers >= " + std::to_string(min) + " such as (2, 2)";
    if (value.size() < 5 || value.front() != '(' || value.back() != ')') throw bad(key, value, what);
    const std::size_t comma = value.find(',');
    if (comma == std::string::npos) throw bad(key, value, what);
    auto trim = [](std::string s) {
      while (!s.empty() && s.front() == ' ') s.erase(s.begin());
      while (!s.empty() && s.back() == ' ') s.pop_back();
      return s;
    };
    std::uint64_t a = 0, b = 0;
    if (!parse_whole(trim(value.substr(1, comma - 1)), a) ||
        !parse_whole(trim(value.substr(comma + 1, value.size() - comma - 2)), b) || a < min || b < min ||
        a > std::numeric_limits<std::size_t>::max() || b > std::numeric_limits<std::size_t>::max())
      throw bad(key, value, what);
    return {static_cast<std::size_t>(a), static_cast<std::size_t>(b)};
  }
  /// One of `choices`.
  const std::string& choice(const std::string& key, const std::vector<std::string>& choices) {
    const std::string& value = text(key);
    std::string list;
    for (const auto& c : choices) {
      if (value == c) return value;
      list += (list.empty() ? "" : ", ") + c;
    }
    throw bad(key, value, "one of " + list);
  }

  /// The value of `key` parsed by `parse(text)` (e.g. init_from_string); a
  /// lamina::Error from `parse` is rethrown naming the key and the text.
  template <class Parse>
  auto parsed(const std::string& key, Parse&& parse) -> decltype(parse(std::string())) {
    const std::string& value = text(key);
    try {
      return parse(value);
    } catch (const Error& e) {
      throw ArgumentError(type_ + ": config '" + key + "' is '" + value + "': " + e.what());
    }
  }

  /// Throws if the config has keys that were never read.
  void finish() const {
    for (std::size_t i = 0; i < config_.size(); ++i)
      if (!used_[i]) {
        std::string known;
        for (std::size_t j = 0; j < config_.size(); ++j)
          if (used_[j]) known += (known.empty() ? "" : ", ") + config_[j].first;
        throw ArgumentError(type_ + ": unknown config key '" + config_[i].first + "' (" + type_ + " takes " +
                            (known.empty() ? std::string("no options") : known) + ")");
      }
  }

 private:
  static bool parse_whole(const std::string& s, std::uint64_t& out) {
    if (s.empty() || s.size() > 20) return false;
    std::uint64_t n = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return false;
      const std::uint64_t digit = static_cast<std::uint64_t>(c - '0');
      if (n > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) return false;
      n = n * 10 + digit;
    }
    out = n;
    return true;
  }
  ArgumentError bad(const std::string& key, const std::string& value, const std::string& expected) const {
    return ArgumentError(type_ + ": config '" + key + "' is '" + value + "', expected " + expected);
  }

  const LayerConfig& config_;
  std::string type_;
  std::vector<bool> used_;
};

template <class T>
class LayerRegistry;

namespace detail {
template <class T>
void register_builtin_layers(LayerRegistry<T>& registry);
}  // namespace detail

/// Type name -> factory, one registry per value type (float, double). Thread
/// safe: loads may run in parallel with each other and with registrations.
template <class T>
class LayerRegistry {
 public:
  /// The process-wide registry, with the built-in layers registered.
  static LayerRegistry& global() {
    static LayerRegistry registry = [] {
      LayerRegistry r;
      detail::register_builtin_layers(r);
      return r;
    }();
    return registry;
  }

  LayerRegistry() = default;
  LayerRegistry(LayerRegistry&& other) noexcept : factories_(std::move(other.factories_)) {}

  /// Registers `factory` for `type`. Registering a name twice throws
  /// ArgumentError unless `replace` is true (so a typo cannot silently shadow
  /// a built-in layer).
  void add(const std::string& type, LayerFactory<T> factory, bool replace = false) {
    if (type.empty()) throw ArgumentError("register_layer: the type name is empty");
    if (!factory) throw ArgumentError("register_layer: the factory for '" + type + "' is empty");
    std::lock_guard<std::mutex> lock(mutex_);
    if (!replace && factories_.count(type))
      throw ArgumentError("register_layer: layer type '" + type +
                          "' is already registered (pass replace = true to replace it)");
    factories_[type] = std::move(factory);
  }
  bool contains(const std::string& type) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return factories_.count(type) != 0;
  }
  /// The registered type names, sorted.
  std::vector<std::string> types() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::string> names;
    for (const auto& entry : factories_) names.push_back(entry.first);
    return names;
  }
  /// "BatchNormalization, Dense, Flatten, ...": for error messages.
  std::string known_types() const {
    std::string list;
    for (const auto& name : types()) list += (list.empty() ? "" : ", ") + name;
    return list;
  }
  /// Builds a `type` layer from `config`. Throws ArgumentError for an unknown
  /// type, and whatever the factory throws for a bad config.
  std::unique_ptr<Layer<T>> create(const std::string& type, const LayerConfig& config) const {
    LayerFactory<T> factory;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto it = factories_.find(type);
      if (it != factories_.end()) factory = it->second;
    }
    // Outside the lock: a factory may itself look up the registry.
    if (!factory) throw ArgumentError("unknown layer type '" + type + "'; known: " + known_types());
    std::unique_ptr<Layer<T>> layer = factory(config);
    if (!layer) throw ArgumentError("the factory for layer type '" + type + "' returned no layer");
    if (layer->type() != type)
      throw ArgumentError("the factory for layer type '" + type + "' made a '" + layer->type() + "' layer");
    return layer;
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::string, LayerFactory<T>> factories_;
};

/// Registers a layer type for load_model<T> (see the top of this file).
template <class T>
void register_layer(const std::string& type, LayerFactory<T> factory, bool replace = false) {
  LayerRegistry<T>::global().add(type, std::move(factory), replace);
}

namespace detail {

// The built-in layers, each parsing exactly the keys its config() writes.
template <class T>
void register_builtin_layers(LayerRegistry<T>& registry) {
  registry.add("Flatten", [](const LayerConfig& config) {
    LayerConfigReader(config, "Flatten").finish();
    return std::make_unique<Flatten<T>>();
  });
  registry.add("ReLU", [](const LayerConfig& config) {
    LayerConfigReader(config, "ReLU").finish();
    return std::make_unique<ReLU<T>>();
  });
  registry.add("Dense", [](const LayerConfig& config) {
    LayerConfigReader read(config, "Dense");
    const std::size_t units = read.whole_number("units", 1);
    const Activation activation = read.parsed("activation", activation_from_string);
    const Init init = read.parsed("kernel_initializer", init_from_string);
    const bool use_bias = read.boolean("use_bias");
    read.finish();
    return std::make_unique<Dense<T>>(units, init, use_bias, activation);
  });
  registry.add("BatchNormalization", [](const LayerConfig& config) {
    LayerConfigReader read(config, "BatchNormalization");
    const double momentum = read.number("momentum");
    const double epsilon = read.number("epsilon");
    read.finish();
    return std::make_unique<BatchNormalization<T>>(momentum, epsilon);
  });
  registry.add("Dropout", [](const LayerConfig& config) {
    LayerConfigReader read(config, "Dropout");
    const double rate = read.number("rate");
    std::optional<std::uint64_t> seed;
    if (read.text("seed") != "none") seed = read.uint64("seed");
    read.finish();
    return std::make_unique<Dropout<T>>(rate, seed);
  });
  registry.add("MaxPooling2D", [](const LayerConfig& config) {
    // The padding enum as MaxPooling2D declares it (both of lamina's padding
    // enums spell the modes valid and same).
    using PaddingMode = std::decay_t<decltype(std::declval<const MaxPooling2D<T>&>().padding())>;
    LayerConfigReader read(config, "MaxPooling2D");
    const auto pool = read.whole_pair("pool_size", 1);
    const auto strides = read.whole_pair("strides", 1);
    const PaddingMode padding =
        read.choice("padding", {"valid", "same"}) == "same" ? PaddingMode::same : PaddingMode::valid;
    read.finish();
    return std::make_unique<MaxPooling2D<T>>(std::array<std::size_t, 2>{pool.first, pool.second},
                                             std::array<std::size_t, 2>{strides.first, strides.second}, padding);
  });
#ifdef LAMINA_IO_HAS_CONV2D
  registry.add("Conv2D", [](const LayerConfig& config) {
    LayerConfigReader read(config, "Conv2D");
    const std::size_t filters = read.whole_number("filters", 1);
    const std::size_t kernel_size = read.whole_number("kernel_size", 1);
    const std::size_t strides = read.whole_number("strides", 1);
    const Padding padding = read.parsed("padding", padding_from_string);
    const Activation activation = read.parsed("activation", activation_from_string);
    const bool use_bias = read.boolean("use_bias");
    const Init init = read.parsed("kernel_initializer", init_from_string);
    read.finish();
    return std::make_unique<Conv2D<T>>(filters, kernel_size, strides, padding, activation, use_bias, init);
  });
#endif
}

}  // namespace detail

}  // namespace lamina
