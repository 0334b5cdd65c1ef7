// lamina/data/gzip_reader.hpp: gzip streams inflated in memory;
// read_file_inflated reads a whole file (read_file_raw, core/file_io.hpp) and
// inflates it when it is gzip.
//
// Whether a file is gzip is decided by its content (the magic bytes 1f 8b),
// never by its name, so `train.csv.gz` renamed to `train.csv` (or an
// uncompressed file called `.gz`) still loads. The whole stream is inflated in
// one pass into one buffer, which the parsers above then read.
//
// Every failure is a lamina::FormatError naming the file: missing, a directory,
// unreadable, or a gzip stream that is truncated, corrupt or followed by junk.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <new>
#include <string>
#include <vector>

#include <zlib.h>

#include "lamina/core/error.hpp"
#include "lamina/core/file_io.hpp"

namespace lamina {

/// True if `data` starts with the gzip magic bytes 1f 8b.
inline bool is_gzip(const std::uint8_t* data, std::size_t size) noexcept {
  return size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
}

/// The most bytes inflate_gzip produces by default (2 GiB): MNIST's largest
/// file inflates to 110 MB, and a 10 MB "compression bomb" could otherwise
/// claim 10 GB before any parser sees a byte.
inline constexpr std::size_t kMaxInflatedBytes = std::size_t{1} << 31;

/// Inflates a complete gzip file held in memory. Several concatenated gzip
/// members (what `cat a.gz b.gz` makes) are inflated one after the other, as
/// gunzip does; zero bytes after the last member (tape padding) are ignored,
/// any other trailing bytes are an error. `source` names the file in messages.
/// Throws FormatError("<source>: truncated gzip stream ..." / "corrupt gzip
/// stream ..." / "... bytes after the end of the gzip stream ..." /
/// "inflates to more than <max_bytes> bytes ..."); never allocates more than
/// about max_bytes.
inline std::vector<std::uint8_t> inflate_gzip(const std::uint8_t* data, std::size_t size,
                                              const std::string& source,
                                              std::size_t max_bytes = kMaxInflatedBytes) {
  if (!is_gzip(data, size))
    throw FormatError(source, "not a gzip stream (it does not start with the bytes 1f 8b)");

  // The gzip trailer stores the uncompressed size mod 2^32 (of the last member).
  // Trust it as the first allocation only when it is plausible: a truncated file
  // ends in arbitrary bytes, and a 4 GB zero-filled buffer for a broken 10 MB
  // file would be a bad way to report the error. Otherwise grow by doubling.
  std::size_t expected = 4 * size;
  if (size >= 18) {
    const std::size_t trailer_size = static_cast<std::size_t>(data[size - 4]) |
                                     static_cast<std::size_t>(data[size - 3]) << 8 |
                                     static_cast<std::size_t>(data[size - 2]) << 16 |
                                     static_cast<std::size_t>(data[size - 1]) << 24;
    if (trailer_size <= 32 * size + 4096) expected = trailer_size;
  }
  expected = std::min(expected, max_bytes);
  // +1: the common case (trailer right) then never reallocates, even when a
  // parser appends a terminator.
  std::vector<std::uint8_t> out(expected + 1);

  z_stream stream{};
  // 16 + MAX_WBITS: expect a gzip wrapper (header, CRC-32 and length checked).
  if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK) throw std::bad_alloc();
  struct End {
    z_stream* s;
    ~End() { inflateEnd(s); }
  } end_guard{&stream};

  // zlib counts in 32-bit uInt: feed inputs and outputs over 4 GB in pieces.
  constexpr std::size_t kPiece = std::size_t(1) << 30;
  std::size_t in_pos = 0;
  std::size_t out_pos = 0;
  for (;;) {
    if (out_pos == out.size()) {
      // out holds max_bytes + 1 at most: one byte past the limit proves it is exceeded.
      if (out_pos > max_bytes)
        throw FormatError(source, detail::concat("inflates to more than ", max_bytes,
                                                 " bytes, lamina's limit for a gzip input (a "
                                                 "compression bomb?); inflate it yourself if it is genuine"));
      out.resize(std::min(out.size() * 2, max_bytes + 1));
    }
    const std::size_t in_avail = std::min(size - in_pos, kPiece);
    const std::size_t out_avail = std::min(out.size() - out_pos, kPiece);
    stream.next_in = const_cast<Bytef*>(data + in_pos);
    stream.avail_in = static_cast<uInt>(in_avail);
    stream.next_out = out.data() + out_pos;
    stream.avail_out = static_cast<uInt>(out_avail);
    const int ret = inflate(&stream, Z_NO_FLUSH);
    in_pos += in_avail - stream.avail_in;
    out_pos += out_avail - stream.avail_out;

    if (ret == Z_STREAM_END) {
      if (in_pos == size) break;
      if (is_gzip(data + in_pos, size - in_pos)) {  // another member follows
        inflateReset(&stream);
        continue;
      }
      if (std::all_of(data + in_pos, data + size, [](std::uint8_t b) { return b == 0; })) break;
      throw FormatError(source, detail::concat("corrupt gzip file: ", size - in_pos,
                                               " unexpected bytes after the end of the gzip "
                                               "stream, at byte offset ",
                                               in_pos));
    }
    if (ret == Z_OK) continue;
    if (ret == Z_BUF_ERROR) {  // no progress possible
      if (stream.avail_out == 0) continue;  // output full: grow and go on
      if (in_pos == size)
        throw FormatError(source, detail::concat("truncated gzip stream: the file ends after ", size,
                                                 " compressed bytes (", out_pos,
                                                 " bytes inflated) before the end of the "
                                                 "compressed data"));
    }
    if (ret == Z_MEM_ERROR) throw std::bad_alloc();
    throw FormatError(source, detail::concat("corrupt gzip stream near compressed byte offset ",
                                             in_pos, ": ",
                                             stream.msg != nullptr ? stream.msg : "invalid data"));
  }
  if (out_pos > max_bytes)
    throw FormatError(source, detail::concat("inflates to more than ", max_bytes,
                                             " bytes, lamina's limit for a gzip input (a "
                                             "compression bomb?); inflate it yourself if it is genuine"));
  out.resize(out_pos);
  return out;
}

/// The content of `path`: inflated if it is gzip (by its magic bytes), as
/// stored otherwise. Errors as read_file_raw and inflate_gzip.
inline std::vector<std::uint8_t> read_file_inflated(const std::filesystem::path& path) {
  std::vector<std::uint8_t> raw = read_file_raw(path);
  if (!is_gzip(raw.data(), raw.size())) return raw;
  return inflate_gzip(raw.data(), raw.size(), path.string());
}

}  // namespace lamina
