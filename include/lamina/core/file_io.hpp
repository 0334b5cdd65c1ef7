// lamina/core/file_io.hpp: whole files in, files written atomically, CRC-32.
//
// The plumbing that the data loaders, the model files, checkpoints and the
// examples' outputs share:
//  - read_file_raw reads a whole file into one buffer: the parsers above it
//    work on memory, which is faster than iostream extraction and lets them
//    point at the exact byte of an error. Every failure is a
//    lamina::FormatError naming the file (missing, a directory, unreadable).
//  - AtomicFileWriter writes a file so that it is never seen half-written.
//  - crc32_update is zlib's CRC-32, the checksum model files and checkpoints
//    record for their data.
// POSIX (open/fsync/rename) and zlib; nothing else.
#pragma once

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <system_error>
#include <vector>

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include "lamina/core/error.hpp"

namespace lamina {

namespace detail {
// strerror's text for an errno value, or "unknown error" when it is 0.
inline std::string errno_text(int err) { return err != 0 ? std::strerror(err) : "unknown error"; }
}  // namespace detail

/// The bytes of `path` exactly as stored on disk (no inflation).
/// Throws FormatError("<path>: no such file" / "is a directory, expected a
/// file" / "cannot open for reading: <reason>" / "read error: <reason>").
inline std::vector<std::uint8_t> read_file_raw(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  const std::string name = path.string();
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (status.type() == fs::file_type::not_found) throw FormatError(name, "no such file");
  if (ec) throw FormatError(name, "cannot access: " + ec.message());
  // std::ifstream happily "opens" a directory on Linux and then fails the read
  // with a vague error, so say what is wrong before trying.
  if (fs::is_directory(status)) throw FormatError(name, "is a directory, expected a file");

  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    throw FormatError(name, "cannot open for reading: " + detail::errno_text(err));
  }
  // The size is only a hint: FIFOs and /proc files report 0, and a file may
  // grow while we read it. The +1 lets a single read() reach end-of-file, and
  // leaves room for a parser's terminator without a reallocation.
  std::uintmax_t hint = 0;
  if (fs::is_regular_file(status)) {
    hint = fs::file_size(path, ec);
    if (ec) hint = 0;
  }
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(hint) + 1);
  std::size_t filled = 0;
  for (;;) {
    if (filled == bytes.size()) bytes.resize(bytes.size() * 2 + 4096);
    errno = 0;
    in.read(reinterpret_cast<char*>(bytes.data() + filled),
            static_cast<std::streamsize>(bytes.size() - filled));
    filled += static_cast<std::size_t>(in.gcount());
    if (in.eof()) break;
    if (in.fail()) {
      const int err = errno;
      throw FormatError(name, "read error: " + detail::errno_text(err));
    }
  }
  bytes.resize(filled);
  return bytes;
}

/// CRC-32 (zlib's, the one Python's zlib.crc32 computes) of `size` bytes,
/// continuing from `crc` (0 to start).
inline std::uint32_t crc32_update(std::uint32_t crc, const void* data, std::size_t size) noexcept {
  const auto* bytes = static_cast<const Bytef*>(data);
  uLong value = crc;
  // zlib takes uInt lengths: feed large buffers in pieces.
  while (size > 0) {
    const std::size_t piece = std::min<std::size_t>(size, std::numeric_limits<uInt>::max() / 2);
    value = ::crc32(value, bytes, static_cast<uInt>(piece));
    bytes += piece;
    size -= piece;
  }
  return static_cast<std::uint32_t>(value);
}

/// Writes a file so that `target` is never seen half-written: the bytes go to a
/// temporary file in the same directory (`<target>.tmp-<pid>-<n>`, the same
/// file system, so the final rename is atomic), which commit() flushes, fsyncs
/// and renames over `target` (then fsyncs the directory, so that the rename
/// itself survives a crash). If anything fails, or the writer is destroyed
/// before commit() (an exception on the caller's side), the temporary file is
/// removed and an existing `target` is left as it was.
///
/// Every failure throws lamina::Error("cannot write <target>: <reason>").
/// Not copyable; one writer per file. POSIX only (open/fsync/rename).
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(const std::filesystem::path& target) : target_(target) {
    namespace fs = std::filesystem;
    if (target_.empty()) throw Error("cannot write a file with an empty path");
    std::error_code ec;
    if (fs::is_directory(target_, ec)) fail("it is a directory", 0, false);
    const fs::path parent = target_.has_parent_path() ? target_.parent_path() : fs::path(".");
    if (!fs::exists(parent, ec)) fail("the directory " + parent.string() + " does not exist", 0, false);
    if (!fs::is_directory(parent, ec)) fail(parent.string() + " is not a directory", 0, false);
    // The pid keeps processes apart, the counter threads (and a leftover file
    // of a crashed process that had the same pid: O_EXCL moves on past it).
    static std::atomic<unsigned> counter{0};
    for (int attempt = 0;; ++attempt) {
      temp_ = target_;
      temp_ += ".tmp-" + std::to_string(static_cast<long long>(::getpid())) + "-" + std::to_string(counter++);
      fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd_ >= 0) break;
      const int err = errno;
      if (err != EEXIST || attempt >= 100)
        fail("cannot create the temporary file " + temp_.string(), err, false);
    }
    buffer_.reserve(kBufferSize);
  }
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
  ~AtomicFileWriter() { discard(); }

  /// Appends bytes (buffered).
  void write(const void* data, std::size_t size) {
    if (fd_ < 0) throw Error("cannot write " + target_.string() + ": the file is already committed or abandoned");
    const auto* bytes = static_cast<const std::uint8_t*>(data);
    if (buffer_.size() + size > kBufferSize) flush_buffer();
    if (size >= kBufferSize) {
      write_all(bytes, size);  // large blocks skip the copy
    } else {
      buffer_.insert(buffer_.end(), bytes, bytes + size);
    }
  }
  void write(const std::string& text) { write(text.data(), text.size()); }

  /// Flushes, fsyncs and renames the temporary file over the target.
  void commit() {
    if (fd_ < 0) throw Error("cannot write " + target_.string() + ": the file is already committed or abandoned");
    flush_buffer();
    if (::fsync(fd_) != 0) fail("fsync failed", errno, true);
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail("close failed", errno, true);
    if (::rename(temp_.c_str(), target_.c_str()) != 0)
      fail("cannot rename " + temp_.string() + " to it", errno, true);
    committed_ = true;
    // Best effort: the data is safe in the file already; syncing the directory
    // makes the new name durable too. Some file systems refuse, which is fine.
    const std::filesystem::path parent = target_.has_parent_path() ? target_.parent_path() : std::filesystem::path(".");
    const int dir = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
      (void)::fsync(dir);
      ::close(dir);
    }
  }

  const std::filesystem::path& target() const noexcept { return target_; }
  /// The temporary file (gone after commit() or a failure).
  const std::filesystem::path& temporary_path() const noexcept { return temp_; }

 private:
  static constexpr std::size_t kBufferSize = std::size_t{1} << 20;

  void write_all(const std::uint8_t* bytes, std::size_t size) {
    while (size > 0) {
      const std::size_t piece = std::min<std::size_t>(size, std::size_t{1} << 30);
      const ssize_t n = ::write(fd_, bytes, piece);
      if (n < 0) {
        if (errno == EINTR) continue;
        fail("write failed", errno, true);
      }
      if (n == 0) fail("write failed (no progress)", 0, true);
      bytes += n;
      size -= static_cast<std::size_t>(n);
    }
  }
  void flush_buffer() {
    if (!buffer_.empty()) write_all(buffer_.data(), buffer_.size());
    buffer_.clear();
  }
  // Closes and removes the temporary file unless committed.
  void discard() noexcept {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
    if (!committed_ && !temp_.empty()) {
      ::unlink(temp_.c_str());
      temp_.clear();
    }
  }
  [[noreturn]] void fail(const std::string& what, int err, bool cleanup) {
    if (cleanup) discard();
    throw Error("cannot write " + target_.string() + ": " + what + (err ? ": " + detail::errno_text(err) : ""));
  }

  std::filesystem::path target_;
  std::filesystem::path temp_;
  int fd_ = -1;
  bool committed_ = false;
  std::vector<std::uint8_t> buffer_;
};

}  // namespace lamina
