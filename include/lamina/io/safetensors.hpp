// lamina/io/safetensors.hpp: reading and writing files in the safetensors
// format (https://github.com/huggingface/safetensors).
//
// The format, as the reference implementation writes and checks it:
//   bytes [0, 8)        N, the header length, an unsigned 64-bit little-endian integer
//   bytes [8, 8 + N)    the header: UTF-8 JSON, one object
//                         {"__metadata__": {"key": "value", ...},          (optional; strings only)
//                          "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
//                       padded with spaces so that 8 + N is a multiple of 8 (the data then
//                       starts 8-byte aligned, so a memory-mapped F64 tensor is aligned)
//   bytes [8 + N, end)  the data section: every tensor row-major (C order), little-endian,
//                       at [begin, end) relative to the start of the data section. The
//                       tensors cover the section exactly: sorted by begin, the first starts
//                       at 0, each starts where the previous ends, the last ends at the end
//                       of the file; end - begin = elements * dtype size.
// The reference refuses headers over 100,000,000 bytes; so does read_safetensors.
//
// read_safetensors checks all of that (and more: duplicate names, integer
// overflow in shapes) and throws a FormatError naming the file and what is
// wrong, so that code above it (load_model) can trust every offset. It reads
// any dtype's bytes; read_tensor converts F32/F64 to float/double.
//
// write_safetensors writes through AtomicFileWriter: the file at `path` is
// either the old one or the complete new one, never a half-written mix.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "lamina/core/error.hpp"
#include "lamina/core/file_io.hpp"
#include "lamina/io/json.hpp"

namespace lamina {

/// The reference implementation's limit on the header length N.
inline constexpr std::uint64_t kSafetensorsMaxHeaderSize = 100'000'000;

/// Free-form string metadata (the header's "__metadata__"), in the order written.
using SafetensorsMetadata = std::vector<std::pair<std::string, std::string>>;

/// Bytes per element of a safetensors dtype name ("F32" -> 4); 0 for a name the
/// format does not define (or one lamina does not know, such as the sub-byte
/// F4/F6 types, which no lamina model uses).
inline std::size_t safetensors_dtype_size(const std::string& dtype) noexcept {
  static const std::pair<const char*, std::size_t> kSizes[] = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2},
      {"U16", 2},  {"F16", 2}, {"BF16", 2}, {"I32", 4},    {"U32", 4},     {"F32", 4},
      {"F64", 8},  {"I64", 8}, {"U64", 8}};
  for (const auto& [name, size] : kSizes)
    if (dtype == name) return size;
  return 0;
}

/// The dtype name of float ("F32") and double ("F64").
template <class T>
constexpr const char* safetensors_dtype() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "lamina stores float and double");
  return std::is_same_v<T, float> ? "F32" : "F64";
}

namespace detail {

// Byte order of this machine: the format is little-endian whatever the host is,
// so a big-endian host swaps every element on the way in and out.
inline bool host_is_little_endian() noexcept {
  const std::uint16_t probe = 1;
  unsigned char first = 0;
  std::memcpy(&first, &probe, 1);
  return first == 1;
}

// Reverses each `element_size`-byte element of `bytes` in place.
inline void swap_elements(std::uint8_t* bytes, std::size_t size, std::size_t element_size) noexcept {
  if (element_size <= 1) return;
  for (std::size_t i = 0; i + element_size <= size; i += element_size)
    std::reverse(bytes + i, bytes + i + element_size);
}

// a * b, or false if it overflows 64 bits (shapes in a file are untrusted).
inline bool checked_multiply(std::uint64_t a, std::uint64_t b, std::uint64_t& out) noexcept {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return false;
  out = a * b;
  return true;
}

inline std::string shape_text(const std::vector<std::uint64_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

}  // namespace detail

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

/// One tensor to write: row-major elements of `dtype` in the HOST's byte order
/// (write_safetensors stores them little-endian), prod(shape) of them at `data`.
struct SafetensorsTensor {
  std::string name;
  std::string dtype;                 // "F32", "F64", ... (see safetensors_dtype_size)
  std::vector<std::uint64_t> shape;  // () for a scalar
  const void* data = nullptr;
};

namespace detail {

// Byte size of a tensor to write, after checking its name, dtype and shape.
inline std::uint64_t checked_tensor_bytes(const SafetensorsTensor& t, const std::string& where) {
  const std::size_t element = safetensors_dtype_size(t.dtype);
  if (element == 0) throw ArgumentError(where + ": tensor '" + t.name + "' has unknown dtype '" + t.dtype + "'");
  std::uint64_t count = 1;
  for (std::uint64_t d : t.shape)
    if (!checked_multiply(count, d, count))
      throw ArgumentError(where + ": tensor '" + t.name + "' shape " + shape_text(t.shape) + " overflows");
  std::uint64_t bytes = 0;
  if (!checked_multiply(count, element, bytes))
    throw ArgumentError(where + ": tensor '" + t.name + "' shape " + shape_text(t.shape) + " overflows");
  if (bytes > 0 && t.data == nullptr) throw ArgumentError(where + ": tensor '" + t.name + "' has no data");
  return bytes;
}

// Feeds a tensor's bytes, little-endian, to `sink(const uint8_t*, size)` in
// pieces (a big-endian host converts a piece at a time, without a full copy).
template <class Sink>
void for_each_le_piece(const SafetensorsTensor& t, std::uint64_t bytes, Sink&& sink) {
  const auto* data = static_cast<const std::uint8_t*>(t.data);
  const std::size_t element = safetensors_dtype_size(t.dtype);
  if (host_is_little_endian() || element == 1) {
    if (bytes) sink(data, static_cast<std::size_t>(bytes));
    return;
  }
  std::vector<std::uint8_t> piece;
  const std::size_t piece_size = (std::size_t{1} << 16) / element * element;
  for (std::uint64_t at = 0; at < bytes; at += piece_size) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(piece_size, bytes - at));
    piece.assign(data + at, data + at + n);
    swap_elements(piece.data(), n, element);
    sink(piece.data(), n);
  }
}

}  // namespace detail

/// CRC-32 of the data section write_safetensors would write for `tensors` (the
/// little-endian bytes of each tensor, in order): what a header can record so
/// that a reader detects corrupted data before using it.
inline std::uint32_t safetensors_data_crc32(const std::vector<SafetensorsTensor>& tensors) {
  std::uint32_t crc = 0;
  for (const SafetensorsTensor& t : tensors) {
    const std::uint64_t bytes = detail::checked_tensor_bytes(t, "safetensors_data_crc32");
    detail::for_each_le_piece(t, bytes, [&](const std::uint8_t* p, std::size_t n) { crc = crc32_update(crc, p, n); });
  }
  return crc;
}

/// The header bytes (JSON padded with spaces to make 8 + N a multiple of 8) for
/// `tensors` stored one after another in the given order. "__metadata__" comes
/// first and is left out when `metadata` is empty, and each tensor's keys come
/// in the order dtype, shape, data_offsets, as the reference writes them.
/// Throws ArgumentError for an empty, duplicate or reserved name, an unknown
/// dtype, an overflowing shape, a duplicate metadata key or text that is not UTF-8.
inline std::string safetensors_header(const std::vector<SafetensorsTensor>& tensors,
                                      const SafetensorsMetadata& metadata, const std::string& where = "safetensors") {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [key, value] : metadata) {
      if (meta.contains(key)) throw ArgumentError(where + ": metadata key '" + key + "' given twice");
      meta[key] = value;
    }
    header["__metadata__"] = std::move(meta);
  }
  std::uint64_t offset = 0;
  for (const SafetensorsTensor& t : tensors) {
    if (t.name.empty()) throw ArgumentError(where + ": a tensor has an empty name");
    if (t.name == "__metadata__") throw ArgumentError(where + ": '__metadata__' is reserved, not a tensor name");
    if (header.contains(t.name)) throw ArgumentError(where + ": tensor name '" + t.name + "' given twice");
    const std::uint64_t bytes = detail::checked_tensor_bytes(t, where);
    nlohmann::ordered_json entry = nlohmann::ordered_json::object();
    entry["dtype"] = t.dtype;
    entry["shape"] = t.shape;
    entry["data_offsets"] = {offset, offset + bytes};
    header[t.name] = std::move(entry);
    offset += bytes;
  }
  std::string text;
  try {
    text = header.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::strict);
  } catch (const nlohmann::ordered_json::exception& e) {
    throw ArgumentError(where + ": a name or metadata value is not valid UTF-8 (" + detail::json_error_text(e) + ")");
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  if (text.size() > kSafetensorsMaxHeaderSize)
    throw ArgumentError(where + ": the header would be " + std::to_string(text.size()) +
                        " bytes, more than the format's limit of " + std::to_string(kSafetensorsMaxHeaderSize));
  return text;
}

/// Writes `tensors` (in this order) and `metadata` to `path` as a safetensors
/// file, atomically (see AtomicFileWriter). Throws ArgumentError for bad input
/// (see safetensors_header) before touching the disk, lamina::Error naming the
/// path and the reason if writing fails.
inline void write_safetensors(const std::filesystem::path& path, const std::vector<SafetensorsTensor>& tensors,
                              const SafetensorsMetadata& metadata = {}) {
  const std::string header = safetensors_header(tensors, metadata, "write_safetensors " + path.string());
  AtomicFileWriter out(path);
  std::uint8_t length[8];
  const std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) length[i] = static_cast<std::uint8_t>(n >> (8 * i));
  out.write(length, 8);
  out.write(header);
  for (const SafetensorsTensor& t : tensors)
    detail::for_each_le_piece(t, detail::checked_tensor_bytes(t, "write_safetensors"),
                              [&](const std::uint8_t* p, std::size_t size) { out.write(p, size); });
  out.commit();
}

// ---------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------

/// One tensor of a file, as its header describes it (validated).
struct SafetensorsEntry {
  std::string name;
  std::string dtype;
  std::vector<std::uint64_t> shape;
  std::uint64_t begin = 0, end = 0;  // data_offsets, relative to the data section

  std::uint64_t element_count() const {
    std::uint64_t n = 1;
    for (std::uint64_t d : shape) n *= d;  // no overflow: read_safetensors checked it
    return n;
  }
};

class SafetensorsFile;
inline SafetensorsFile read_safetensors(const std::filesystem::path& path);

/// A safetensors file in memory, checked against the format.
class SafetensorsFile {
 public:
  /// The file name, as given to read_safetensors (used in every message).
  const std::string& path() const noexcept { return path_; }
  /// The header length N; the data section starts at byte 8 + N.
  std::uint64_t header_size() const noexcept { return header_size_; }
  std::uint64_t data_offset() const noexcept { return 8 + header_size_; }
  /// Bytes of the whole file.
  std::uint64_t file_size() const noexcept { return bytes_.size(); }

  /// The tensors, sorted by their position in the data section.
  const std::vector<SafetensorsEntry>& tensors() const noexcept { return tensors_; }
  /// The tensor called `name`, or nullptr.
  const SafetensorsEntry* find(const std::string& name) const noexcept {
    for (const auto& t : tensors_)
      if (t.name == name) return &t;
    return nullptr;
  }

  /// Whether the header has a "__metadata__" object, and its entries in file order.
  bool has_metadata() const noexcept { return has_metadata_; }
  const SafetensorsMetadata& metadata() const noexcept { return metadata_; }
  /// The metadata value of `key`, or nullptr.
  const std::string* metadata_value(const std::string& key) const noexcept {
    for (const auto& [k, v] : metadata_)
      if (k == key) return &v;
    return nullptr;
  }

  /// The data section: every tensor's little-endian bytes.
  const std::uint8_t* data() const noexcept { return bytes_.data() + data_offset(); }
  std::size_t data_size() const noexcept { return bytes_.size() - static_cast<std::size_t>(data_offset()); }
  /// A tensor's little-endian bytes (entry.end - entry.begin of them).
  const std::uint8_t* bytes(const SafetensorsEntry& entry) const noexcept {
    return data() + static_cast<std::size_t>(entry.begin);
  }

  /// Copies a tensor into `out` (entry.element_count() elements), converting
  /// from little-endian. F32 reads as float or (exactly) as double; F64 reads
  /// as double only: rounding it to float would silently change the values.
  /// Throws FormatError for any other combination.
  template <class T>
  void read_tensor(const SafetensorsEntry& entry, T* out) const {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "read_tensor reads float or double");
    const std::uint8_t* src = bytes(entry);
    const std::size_t n = static_cast<std::size_t>(entry.element_count());
    const bool swap = !detail::host_is_little_endian();
    if (entry.dtype == "F32") {
      static_assert(sizeof(float) == 4 && std::numeric_limits<float>::is_iec559, "lamina needs IEEE 754 float");
      for (std::size_t i = 0; i < n; ++i) {
        std::uint8_t b[4];
        std::memcpy(b, src + 4 * i, 4);
        if (swap) std::reverse(b, b + 4);
        float v;
        std::memcpy(&v, b, 4);
        out[i] = static_cast<T>(v);
      }
    } else if (entry.dtype == "F64" && std::is_same_v<T, double>) {
      static_assert(sizeof(double) == 8 && std::numeric_limits<double>::is_iec559, "lamina needs IEEE 754 double");
      for (std::size_t i = 0; i < n; ++i) {
        std::uint8_t b[8];
        std::memcpy(b, src + 8 * i, 8);
        if (swap) std::reverse(b, b + 8);
        double v;
        std::memcpy(&v, b, 8);
        out[i] = static_cast<T>(v);
      }
    } else {
      throw FormatError(path_, "tensor '" + entry.name + "' has dtype " + entry.dtype + ", which cannot be read as " +
                                   (std::is_same_v<T, float> ? "float" : "double") +
                                   (entry.dtype == "F64" ? " without rounding (read it as double)" : ""));
    }
  }

 private:
  friend SafetensorsFile read_safetensors(const std::filesystem::path& path);  // declared inline above

  std::string path_;
  std::vector<std::uint8_t> bytes_;  // the whole file
  std::uint64_t header_size_ = 0;
  std::vector<SafetensorsEntry> tensors_;
  bool has_metadata_ = false;
  SafetensorsMetadata metadata_;
};

/// Reads and validates a safetensors file. Throws FormatError naming the file for:
/// a missing or unreadable file; an empty file; a file shorter than 8 bytes; a header length
/// past the end of the file or over the format's limit; a header that is not a
/// JSON object (with the position of the syntax error) or names a key twice; a
/// "__metadata__" that is not an object of strings; a tensor entry without a
/// known dtype, a shape of non-negative integers or two data_offsets; offsets
/// reversed, out of the data section, overlapping, leaving a gap or not matching
/// dtype x shape; a data section shorter (a truncated file) or longer than the
/// tensors need.
inline SafetensorsFile read_safetensors(const std::filesystem::path& path) {
  using Json = nlohmann::ordered_json;
  SafetensorsFile file;
  file.path_ = path.string();
  const std::string& name = file.path_;
  file.bytes_ = read_file_raw(path);
  const std::vector<std::uint8_t>& bytes = file.bytes_;

  if (bytes.empty())
    throw FormatError(name, "empty file, expected a safetensors file (an 8-byte header length, a JSON header, then "
                            "the tensor data)");
  if (bytes.size() < 8)
    throw FormatError(name, "is " + std::to_string(bytes.size()) +
                                " bytes long: too short for a safetensors file (truncated? it must start with an "
                                "8-byte header length)");
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[static_cast<std::size_t>(i)];
  const std::uint64_t available = bytes.size() - 8;
  if (n > kSafetensorsMaxHeaderSize && n > available)
    throw FormatError(name, "header length " + std::to_string(n) + " (the first 8 bytes, little-endian) is larger than the file (" +
                                std::to_string(bytes.size()) + " bytes) and than the format's limit of " +
                                std::to_string(kSafetensorsMaxHeaderSize) + ": not a safetensors file, or a corrupt one");
  if (n > available)
    throw FormatError(name, "header length " + std::to_string(n) + " runs past the end of the file: only " +
                                std::to_string(available) + " bytes follow the 8-byte length (truncated file?)");
  if (n > kSafetensorsMaxHeaderSize)
    throw FormatError(name, "header length " + std::to_string(n) + " is over the format's limit of " +
                                std::to_string(kSafetensorsMaxHeaderSize) + " bytes");
  file.header_size_ = n;

  const char* header_begin = reinterpret_cast<const char*>(bytes.data() + 8);
  const char* header_end = header_begin + n;
  Json header;
  try {
    header = detail::parse_json_unique_keys<Json>(header_begin, header_end, [&](const std::string& key) {
      throw FormatError(name, "the JSON header has the key '" + key + "' twice in one object");
    });
  } catch (const Json::exception& e) {  // parse_error, or out_of_range for "1e999"
    throw FormatError(name, "the JSON header (bytes 8 to " + std::to_string(8 + n) + ") is malformed: " +
                                detail::json_error_text(e));
  }
  if (!header.is_object())
    throw FormatError(name, std::string("the JSON header must be an object {...}, got ") + header.type_name());

  auto entry_error = [&](const std::string& tensor, const std::string& what) {
    return FormatError(name, "tensor '" + tensor + "': " + what);
  };
  auto read_uint = [](const Json& value, std::uint64_t& out) {
    if (!value.is_number_unsigned()) return false;  // nlohmann keeps non-negative integers unsigned
    out = value.get<std::uint64_t>();
    return true;
  };

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& key = it.key();
    const Json& value = it.value();
    if (key == "__metadata__") {
      if (!value.is_object())
        throw FormatError(name, std::string("__metadata__ must be an object of strings, got ") + value.type_name());
      for (auto m = value.begin(); m != value.end(); ++m) {
        if (!m.value().is_string())
          throw FormatError(name, "__metadata__ entry '" + m.key() + "' must be a string, got " +
                                      m.value().type_name() + " (the format allows only string values)");
        file.metadata_.emplace_back(m.key(), m.value().get<std::string>());
      }
      file.has_metadata_ = true;
      continue;
    }
    if (!value.is_object()) throw entry_error(key, std::string("expected an object {dtype, shape, data_offsets}, got ") + value.type_name());
    SafetensorsEntry entry;
    entry.name = key;
    const auto dtype = value.find("dtype");
    if (dtype == value.end() || !dtype->is_string()) throw entry_error(key, "no \"dtype\" string");
    entry.dtype = dtype->get<std::string>();
    const std::size_t element = safetensors_dtype_size(entry.dtype);
    if (element == 0) throw entry_error(key, "unknown dtype '" + entry.dtype + "'");
    const auto shape = value.find("shape");
    if (shape == value.end() || !shape->is_array()) throw entry_error(key, "no \"shape\" array");
    for (const Json& d : *shape) {
      std::uint64_t dim = 0;
      if (!read_uint(d, dim)) throw entry_error(key, "shape " + shape->dump() + " must hold non-negative integers");
      entry.shape.push_back(dim);
    }
    const auto offsets = value.find("data_offsets");
    if (offsets == value.end() || !offsets->is_array() || offsets->size() != 2 || !read_uint((*offsets)[0], entry.begin) ||
        !read_uint((*offsets)[1], entry.end))
      throw entry_error(key, "\"data_offsets\" must be [begin, end], two non-negative integers");
    std::uint64_t count = 1, needed = 0;
    for (std::uint64_t d : entry.shape)
      if (!detail::checked_multiply(count, d, count)) throw entry_error(key, "shape " + detail::shape_text(entry.shape) + " overflows");
    if (!detail::checked_multiply(count, element, needed))
      throw entry_error(key, "shape " + detail::shape_text(entry.shape) + " overflows");
    if (entry.end < entry.begin)
      throw entry_error(key, "data_offsets [" + std::to_string(entry.begin) + ", " + std::to_string(entry.end) +
                                 "] end before they begin");
    if (entry.end - entry.begin != needed)
      throw entry_error(key, "data_offsets [" + std::to_string(entry.begin) + ", " + std::to_string(entry.end) + "] hold " +
                                 std::to_string(entry.end - entry.begin) + " bytes, but " + entry.dtype + " " +
                                 detail::shape_text(entry.shape) + " needs " + std::to_string(needed));
    file.tensors_.push_back(std::move(entry));
  }

  // The reference sorts by offsets too: files may list tensors in any order.
  std::vector<SafetensorsEntry>& tensors = file.tensors_;
  std::stable_sort(tensors.begin(), tensors.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const std::uint64_t data_size = available - n;
  auto range = [](const SafetensorsEntry& e) {
    return "[" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]";
  };
  // A self-consistent layout that only runs past the end of the file means a
  // truncated file; say so rather than blame the last tensor's offsets.
  bool contiguous = true;
  std::uint64_t at = 0;
  for (const SafetensorsEntry& e : tensors) {
    if (e.begin != at) contiguous = false;
    at = e.end;
  }
  if (contiguous && at > data_size)
    throw FormatError(name, "is truncated: its header describes " + std::to_string(at) +
                                " bytes of tensor data, but only " + std::to_string(data_size) +
                                " follow the header (" + std::to_string(at - data_size) + " missing)");
  at = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const SafetensorsEntry& e = tensors[i];
    if (e.end > data_size)
      throw entry_error(e.name, "data_offsets " + range(e) + " lie outside the data section, which holds " +
                                    std::to_string(data_size) + " bytes");
    if (e.begin < at)
      throw entry_error(e.name, "data_offsets " + range(e) + " overlap tensor '" + tensors[i - 1].name + "' at " +
                                    range(tensors[i - 1]));
    if (e.begin > at)
      throw entry_error(e.name, "data_offsets " + range(e) + " leave a gap of " + std::to_string(e.begin - at) +
                                    " bytes before them (the format requires the tensors to cover the data section "
                                    "without holes)");
    at = e.end;
  }
  if (at != data_size)
    throw FormatError(name, std::to_string(data_size - at) + " bytes follow the last tensor (the tensors end at byte " +
                                std::to_string(at) + " of a " + std::to_string(data_size) +
                                "-byte data section; the format allows no trailing bytes)");
  return file;
}

}  // namespace lamina
