// lamina/data/mnist_csv.hpp: the Kaggle "Digit Recognizer" CSV files.
//
// Two layouts, told apart by the header:
//   train.csv  `label,pixel0,...,pixel783`  then rows `label,p0,...,p783`
//   test.csv   `pixel0,...,pixel783`        then rows `p0,...,p783`
// Pixel k is image row k / 28, column k % 28. Plain or gzip (by content), LF or
// CRLF line ends (Kaggle ships CRLF), a final newline optional; a UTF-8 byte
// order mark before the header and empty lines at the very end are accepted.
//
// Anything else is refused with a lamina::FormatError whose message starts with
// "file:line:column: " (1-based; the header is line 1, the column counts bytes
// from the start of the line) and says what was found and what was expected:
//   train.csv:3:17: pixel value 256 out of range 0..255 (pixel7, field 9)
// Fields must be plain decimal integers: digits only (no sign, decimal point,
// spaces, quotes or empty fields), labels 0..9, pixels 0..255.
//
// Speed: the whole file is parsed from one in-memory buffer. A fast path reads
// each row assuming the common shape (1 to 3 digits, then ',' or the line end)
// and hands the row to a careful parser at the first surprise; the careful
// parser accepts every valid row (say with leading zeros) and writes the error
// message for an invalid one. No iostreams, no std::stoi, no allocation per row.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "lamina/core/error.hpp"
#include "lamina/data/gzip_reader.hpp"
#include "lamina/data/mnist_data.hpp"

namespace lamina {

namespace detail {

inline constexpr std::size_t kMnistSide = 28;
inline constexpr std::size_t kMnistPixels = kMnistSide * kMnistSide;  // 784 columns

// A piece of the file shown in a message: quoted, non-printable bytes escaped,
// cut after 24 bytes so a garbage line does not flood the terminal.
inline std::string csv_show(const char* begin, const char* end) {
  static const char* const kHex = "0123456789abcdef";
  std::string s = "'";
  std::size_t shown = 0;
  for (const char* p = begin; p != end; ++p, ++shown) {
    if (shown == 24) {
      s += "...";
      break;
    }
    const unsigned char c = static_cast<unsigned char>(*p);
    if (c == '\r') {
      s += "\\r";
    } else if (c == '\t') {
      s += "\\t";
    } else if (c < 0x20 || c >= 0x7f) {
      s += "\\x";
      s += kHex[c >> 4];
      s += kHex[c & 15];
    } else {
      s += static_cast<char>(c);
    }
  }
  return s + "'";
}

// Why a byte cannot be part of an integer field, in the user's terms.
inline std::string csv_why_not_digit(char c) {
  switch (c) {
    case '-':
    case '+': return "a sign is not allowed";
    case '.': return "a decimal point is not allowed";
    case ' ':
    case '\t': return "spaces are not allowed";
    case '"':
    case '\'': return "quoted fields are not supported";
    case '\r': return "a carriage return must be followed by a line feed";
    default: return csv_show(&c, &c + 1) + " is not a digit";
  }
}

inline bool csv_at_line_end(const char* p, const char* end) noexcept {
  // A lone '\r' at the very end is a CRLF file cut after its last '\r'.
  return p == end || *p == '\n' || (*p == '\r' && (p + 1 == end || p[1] == '\n'));
}

inline const char* csv_skip_line_end(const char* p, const char* end) noexcept {
  if (p != end && *p == '\r') ++p;
  if (p != end && *p == '\n') ++p;
  return p;
}

// Which of the two layouts a file has, and how to name its fields in messages.
struct MnistCsvLayout {
  const std::string* source = nullptr;
  bool has_label = false;
  std::size_t fields = 0;  // per line: 785 with the label column, 784 without

  std::string name(std::size_t f) const {  // f is 0-based
    if (has_label) return f == 0 ? "label" : "pixel" + std::to_string(f - 1);
    return "pixel" + std::to_string(f);
  }
  // "pixel7, field 9": both the header name and the 1-based position.
  std::string describe(std::size_t f) const { return concat(name(f), ", field ", f + 1); }
  const char* kind(std::size_t f) const { return has_label && f == 0 ? "label" : "pixel value"; }
  unsigned max_value(std::size_t f) const { return has_label && f == 0 ? 9u : 255u; }
  const char* header() const {
    return has_label ? "label,pixel0,...,pixel783" : "pixel0,...,pixel783";
  }
  [[noreturn]] void fail(std::size_t line, const char* line_begin, const char* at,
                         const std::string& what) const {
    throw FormatError(*source, line, static_cast<std::size_t>(at - line_begin) + 1, what);
  }
};

// Reads and checks the header line at `line_begin`; returns the start of line 2.
inline const char* parse_mnist_csv_header(const char* line_begin, const char* end,
                                          MnistCsvLayout& layout) {
  const char* const expected_either =
      "expected the header 'label,pixel0,...,pixel783' (train file) or 'pixel0,...,pixel783' "
      "(test file)";
  if (line_begin == end) layout.fail(1, line_begin, line_begin, concat("empty file, ", expected_either));
  if (csv_at_line_end(line_begin, end))
    layout.fail(1, line_begin, line_begin, concat("empty first line, ", expected_either));

  std::vector<std::string_view> fields;  // views into the buffer
  const char* p = line_begin;
  for (;;) {
    const char* field = p;
    while (p != end && *p != ',' && !csv_at_line_end(p, end)) ++p;
    fields.emplace_back(field, static_cast<std::size_t>(p - field));
    if (p != end && *p == ',') {
      ++p;
      continue;
    }
    break;
  }
  const auto column_of = [&](std::size_t f) { return fields[f].data(); };

  if (fields[0] == "label") {
    layout.has_label = true;
  } else if (fields[0] == "pixel0") {
    layout.has_label = false;
  } else {
    const bool numeric = std::all_of(fields[0].begin(), fields[0].end(),
                                     [](char c) { return c >= '0' && c <= '9'; });
    // The loaders inflate gzip before parsing: gzip here was compressed twice.
    const bool gzip = fields[0].size() >= 2 && static_cast<unsigned char>(fields[0][0]) == 0x1f &&
                      static_cast<unsigned char>(fields[0][1]) == 0x8b;
    layout.fail(1, line_begin, line_begin,
                concat("header field 1 is ",
                       csv_show(fields[0].data(), fields[0].data() + fields[0].size()),
                       ", expected 'label' (train file) or 'pixel0' (test file)",
                       numeric ? "; the file seems to have no header line" : "",
                       gzip ? "; this is gzip data (compressed twice?)" : ""));
  }
  layout.fields = kMnistPixels + (layout.has_label ? 1 : 0);

  const std::size_t checked = std::min(fields.size(), layout.fields);
  for (std::size_t f = 1; f < checked; ++f) {
    const std::string expected = layout.name(f);
    if (fields[f] != expected)
      layout.fail(1, line_begin, column_of(f),
                  concat("header field ", f + 1, " is ",
                         csv_show(fields[f].data(), fields[f].data() + fields[f].size()),
                         ", expected '", expected, "'"));
  }
  if (fields.size() < layout.fields)
    layout.fail(1, line_begin, p,
                concat("header has ", fields.size(), " fields, expected ", layout.fields, " (",
                       layout.header(), ")"));
  if (fields.size() > layout.fields) {
    const std::string_view extra = fields[layout.fields];
    layout.fail(1, line_begin, column_of(layout.fields),
                concat("header has ", fields.size(), " fields, expected ", layout.fields,
                       ": unexpected extra field ",
                       csv_show(extra.data(), extra.data() + extra.size()), " after '",
                       layout.name(layout.fields - 1), "'"));
  }
  return csv_skip_line_end(p, end);
}

// The careful parser: one data row starting at `line_begin`, every rule checked,
// an error message for the first violation. Returns the start of the next line.
inline const char* parse_mnist_csv_row_checked(const MnistCsvLayout& layout, std::size_t line,
                                               const char* line_begin, const char* end,
                                               std::int32_t* label, std::uint8_t* pixels) {
  const char* p = line_begin;
  for (std::size_t f = 0; f < layout.fields; ++f) {
    const char* field = p;
    while (p != end && *p != ',' && !csv_at_line_end(p, end)) ++p;
    const unsigned max = layout.max_value(f);
    if (p == field)
      layout.fail(line, line_begin, field,
                  concat("empty field (", layout.describe(f), "), expected an integer 0..", max));
    unsigned value = 0;
    for (const char* q = field; q != p; ++q) {
      const unsigned digit = static_cast<unsigned>(static_cast<unsigned char>(*q)) - '0';
      if (digit > 9)
        layout.fail(line, line_begin, q,
                    concat("invalid ", layout.kind(f), " ", csv_show(field, p), " (",
                           layout.describe(f), "): ", csv_why_not_digit(*q),
                           "; expected an integer 0..", max));
      // Saturate: every value over 255 is an error, and leading zeros are fine.
      value = std::min(value * 10 + digit, 1000u);
    }
    if (value > max) {
      const std::size_t length = static_cast<std::size_t>(p - field);
      const std::string digits =
          length <= 24 ? std::string(field, length) : std::string(field, 24) + "...";
      layout.fail(line, line_begin, field,
                  concat(layout.kind(f), " ", digits, " out of range 0..", max, " (",
                         layout.describe(f), ")"));
    }
    if (layout.has_label && f == 0)
      *label = static_cast<std::int32_t>(value);
    else
      pixels[f - (layout.has_label ? 1 : 0)] = static_cast<std::uint8_t>(value);

    if (f + 1 < layout.fields) {
      if (p != end && *p == ',') {
        ++p;
        continue;
      }
      if (p == end)
        layout.fail(line, line_begin, p,
                    concat("truncated last row: ", f + 1, " of ", layout.fields,
                           " fields, then the file ends"));
      layout.fail(line, line_begin, p,
                  concat("short row: ", f + 1, " fields, expected ", layout.fields, " (",
                         layout.header(), ")"));
    }
    if (p != end && *p == ',') {
      std::size_t total = layout.fields;
      for (const char* q = p; !csv_at_line_end(q, end); ++q)
        if (*q == ',') ++total;
      layout.fail(line, line_begin, p,
                  concat("long row: ", total, " fields, expected ", layout.fields, " (",
                         layout.header(), ")"));
    }
  }
  return csv_skip_line_end(p, end);
}

// Reads one unsigned field of 1 to 3 digits; nullptr if it is not that.
inline const char* csv_small_uint(const char* p, unsigned& value) noexcept {
  unsigned v = static_cast<unsigned>(static_cast<unsigned char>(p[0])) - '0';
  if (v > 9) return nullptr;
  unsigned d = static_cast<unsigned>(static_cast<unsigned char>(p[1])) - '0';
  if (d > 9) {
    value = v;
    return p + 1;
  }
  v = v * 10 + d;
  d = static_cast<unsigned>(static_cast<unsigned char>(p[2])) - '0';
  if (d > 9) {
    value = v;
    return p + 2;
  }
  value = v * 10 + d;  // a fourth digit fails the separator check of the caller
  return p + 3;
}

// The fast path for one row, in the shape Kaggle writes. Returns the start of
// the next line, or nullptr at anything unusual (the row is then re-read by the
// careful parser, which also owns all error messages). Reads at most
// 4 * fields + 2 bytes from `p`; the caller guarantees that many exist.
template <bool kHasLabel>
const char* parse_mnist_csv_row_fast(const char* p, std::int32_t* label,
                                     std::uint8_t* pixels) noexcept {
  unsigned value = 0;
  if constexpr (kHasLabel) {
    const unsigned digit = static_cast<unsigned>(static_cast<unsigned char>(p[0])) - '0';
    if (digit > 9 || p[1] != ',') return nullptr;
    *label = static_cast<std::int32_t>(digit);
    p += 2;
  }
  for (std::size_t k = 0; k + 1 < kMnistPixels; ++k) {
    p = csv_small_uint(p, value);
    if (p == nullptr || value > 255 || *p != ',') return nullptr;
    pixels[k] = static_cast<std::uint8_t>(value);
    ++p;
  }
  p = csv_small_uint(p, value);
  if (p == nullptr || value > 255) return nullptr;
  pixels[kMnistPixels - 1] = static_cast<std::uint8_t>(value);
  if (*p == '\n') return p + 1;
  if (*p == '\r' && p[1] == '\n') return p + 2;
  return nullptr;
}

}  // namespace detail

/// Parses a Kaggle MNIST CSV held in memory (already inflated). `source` names
/// the file in error messages. Returns 28x28 images, with labels for a train
/// file and without for a test file. Throws FormatError (see the top of this
/// file for the rules and the message format).
inline MnistData parse_mnist_csv(const char* data, std::size_t size, const std::string& source) {
  const char* const end = data + size;
  const char* header = data;
  // A UTF-8 byte order mark, as spreadsheet programs write; not part of column 1.
  if (size >= 3 && static_cast<unsigned char>(data[0]) == 0xEF &&
      static_cast<unsigned char>(data[1]) == 0xBB && static_cast<unsigned char>(data[2]) == 0xBF)
    header += 3;
  detail::MnistCsvLayout layout;
  layout.source = &source;
  const char* const body = detail::parse_mnist_csv_header(header, end, layout);
  const std::size_t fields = layout.fields;
  const std::size_t pixels_per_row = detail::kMnistPixels;

  // Room for every row up front, so the loop never reallocates: a row ends at a
  // newline or at the end of the file, and a valid row has at least 2F-1 bytes
  // (F one-digit fields and F-1 commas), which bounds the count for junk input.
  std::size_t newlines = 0;
  for (const char* q = body; q != end;) {
    const void* hit = std::memchr(q, '\n', static_cast<std::size_t>(end - q));
    if (hit == nullptr) break;
    ++newlines;
    q = static_cast<const char*>(hit) + 1;
  }
  std::size_t capacity =
      std::min(newlines + 1, static_cast<std::size_t>(end - body) / (2 * fields - 1) + 1);

  MnistData out;
  out.rows = detail::kMnistSide;
  out.cols = detail::kMnistSide;
  out.source = source;
  out.pixels.resize(capacity * pixels_per_row);  // (capacity, 28, 28), trimmed to (count, 28, 28)
  if (layout.has_label) out.labels.resize(capacity);  // (capacity,), trimmed to (count,)

  // The fast path may look 4 * F + 2 bytes ahead without checking for the end.
  const std::size_t fast_margin = 4 * fields + 8;
  std::size_t row = 0;
  const char* p = body;
  while (p != end) {
    const std::size_t line = row + 2;  // the header is line 1; no empty lines before this one
    if (detail::csv_at_line_end(p, end)) {
      const char* q = p;
      while (q != end && (*q == '\r' || *q == '\n')) ++q;
      if (q == end) break;  // empty lines at the very end are harmless
      layout.fail(line, p, p,
                  detail::concat("empty line, expected a row of ", fields, " fields (",
                                 layout.header(), ")"));
    }
    if (row == capacity) {  // cannot happen by the bound above; kept so a bug cannot overflow
      capacity *= 2;
      out.pixels.resize(capacity * pixels_per_row);
      if (layout.has_label) out.labels.resize(capacity);
    }
    std::uint8_t* pixels = out.pixels.data() + row * pixels_per_row;  // (28, 28)
    std::int32_t* label = layout.has_label ? out.labels.data() + row : nullptr;
    const char* next = nullptr;
    if (static_cast<std::size_t>(end - p) >= fast_margin)
      next = layout.has_label ? detail::parse_mnist_csv_row_fast<true>(p, label, pixels)
                              : detail::parse_mnist_csv_row_fast<false>(p, label, pixels);
    if (next == nullptr) next = detail::parse_mnist_csv_row_checked(layout, line, p, end, label, pixels);
    p = next;
    ++row;
  }
  if (row == 0)
    throw FormatError(source, 2, 1,
                      detail::concat("no data rows after the header, expected rows of ", fields,
                                     " fields (", layout.header(), ")"));
  out.count = row;
  out.pixels.resize(row * pixels_per_row);
  if (layout.has_label) out.labels.resize(row);
  return out;
}

/// Parses a Kaggle MNIST CSV held in a string (already inflated).
inline MnistData parse_mnist_csv(const std::string& text, const std::string& source) {
  return parse_mnist_csv(text.data(), text.size(), source);
}

/// Loads a Kaggle MNIST CSV file, plain or gzip (decided by content).
/// Throws FormatError naming the file (and line and column for content errors).
inline MnistData load_mnist_csv(const std::filesystem::path& path) {
  const std::vector<std::uint8_t> bytes = read_file_inflated(path);
  return parse_mnist_csv(reinterpret_cast<const char*>(bytes.data()), bytes.size(), path.string());
}

}  // namespace lamina
