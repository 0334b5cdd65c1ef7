// lamina/report/png.hpp: 8-bit images to PNG bytes and data: URIs.
//
// The encoder is stb_image_write's (Debian's libstb-dev), whose implementation
// lives in libstb: link `stb` (pkg-config stb). lamina never defines
// STB_IMAGE_WRITE_IMPLEMENTATION, so a program that also uses stb keeps one
// copy of it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#if __has_include(<stb_image_write.h>)
#include <stb_image_write.h>  // pkg-config stb puts /usr/include/stb on the path
#else
#include <stb/stb_image_write.h>
#endif

#include "lamina/core/error.hpp"

namespace lamina {

namespace detail {
// stb hands the encoded file over in pieces; collect them.
inline void append_bytes(void* context, void* data, int size) {
  auto* out = static_cast<std::vector<std::uint8_t>*>(context);
  const auto* bytes = static_cast<const std::uint8_t*>(data);
  out->insert(out->end(), bytes, bytes + size);
}
}  // namespace detail

/// Encodes `pixels` (height, width, channels), row-major, 8 bits per sample, as
/// a PNG file in memory. channels: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA.
/// Throws ArgumentError for an empty or oversized image, a bad channel count
/// or too few pixels, Error if the encoder fails.
inline std::vector<std::uint8_t> encode_png(const std::vector<std::uint8_t>& pixels, std::size_t width,
                                            std::size_t height, int channels = 1) {
  if (width == 0 || height == 0)
    throw ArgumentError(detail::concat("encode_png: the image is empty (", width, "x", height, ")"));
  if (channels < 1 || channels > 4)
    throw ArgumentError(detail::concat("encode_png: channels must be 1..4, got ", channels));
  const std::size_t limit = static_cast<std::size_t>(std::numeric_limits<int>::max()) / 4;
  if (width > limit / height)
    throw ArgumentError(detail::concat("encode_png: ", width, "x", height, " is too large"));
  const std::size_t needed = width * height * static_cast<std::size_t>(channels);
  if (pixels.size() != needed)
    throw ArgumentError(detail::concat("encode_png: ", pixels.size(), " bytes for a ", width, "x", height, "x",
                                       channels, " image, expected ", needed));
  std::vector<std::uint8_t> png;
  const int stride = static_cast<int>(width) * channels;
  if (!stbi_write_png_to_func(&detail::append_bytes, &png, static_cast<int>(width), static_cast<int>(height),
                              channels, pixels.data(), stride))
    throw Error(detail::concat("encode_png: stb_image_write failed on a ", width, "x", height, " image"));
  return png;
}

/// Standard base64 (RFC 4648, with '=' padding, no line breaks).
inline std::string base64_encode(const std::vector<std::uint8_t>& bytes) {
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const std::uint32_t v = (std::uint32_t{bytes[i]} << 16) | (std::uint32_t{bytes[i + 1]} << 8) | bytes[i + 2];
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += alphabet[v & 63];
  }
  if (i + 1 == bytes.size()) {
    const std::uint32_t v = std::uint32_t{bytes[i]} << 16;
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == bytes.size()) {
    const std::uint32_t v = (std::uint32_t{bytes[i]} << 16) | (std::uint32_t{bytes[i + 1]} << 8);
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

/// "data:image/png;base64,..." for an <img src>: the image travels inside the page.
inline std::string png_data_uri(const std::vector<std::uint8_t>& png) {
  return "data:image/png;base64," + base64_encode(png);
}

}  // namespace lamina
