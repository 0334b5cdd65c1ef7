// lamina/core/error.hpp: the one exception family lamina throws.
//
// Every error a user can cause (bad file, bad shape, bad option) is reported as a
// lamina::Error or one of its subclasses, with a message that names the culprit:
// file, line and column for input files; layer index, type and both shapes for
// models. Callers that want to tell kinds apart catch the subclass.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace lamina {

/// Base class of every exception lamina throws on purpose.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

/// A tensor or layer shape does not fit.
class ShapeError : public Error {
 public:
  using Error::Error;
};

/// An input file is missing, unreadable or malformed. The message starts with
/// "file:line:column: " (line and column are 1-based) when a position is known.
class FormatError : public Error {
 public:
  FormatError(const std::string& file, std::size_t line, std::size_t column,
              const std::string& what)
      : Error(position(file, line, column) + what),
        file_(file),
        line_(line),
        column_(column) {}
  FormatError(const std::string& file, const std::string& what)
      : Error(file + ": " + what), file_(file) {}

  const std::string& file() const noexcept { return file_; }
  std::size_t line() const noexcept { return line_; }      // 0 when unknown
  std::size_t column() const noexcept { return column_; }  // 0 when unknown

 private:
  static std::string position(const std::string& file, std::size_t line,
                              std::size_t column) {
    std::ostringstream out;
    out << file << ':' << line;
    if (column != 0) out << ':' << column;
    out << ": ";
    return out.str();
  }
  std::string file_;
  std::size_t line_ = 0;
  std::size_t column_ = 0;
};

/// A bad argument to the API (batch size 0, labels out of range, ...).
class ArgumentError : public Error {
 public:
  using Error::Error;
};

/// Training hit a numerical fault (NaN or Inf in the loss or a gradient).
class NumericalError : public Error {
 public:
  using Error::Error;
};

namespace detail {
// Builds a message from streamable parts: detail::concat("got ", n, " rows").
template <class... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  return out.str();
}
}  // namespace detail

}  // namespace lamina

// Debug-build checks (bounds, shapes on element access). On in builds without
// NDEBUG, or when LAMINA_CHECKS=1 is defined; free in Release otherwise.
#if !defined(LAMINA_CHECKS)
#if defined(NDEBUG)
#define LAMINA_CHECKS 0
#else
#define LAMINA_CHECKS 1
#endif
#endif

#if LAMINA_CHECKS
#define LAMINA_DEBUG_CHECK(cond, ...) \
  do {                                \
    if (!(cond)) throw ::lamina::ShapeError(::lamina::detail::concat(__VA_ARGS__)); \
  } while (0)
#else
#define LAMINA_DEBUG_CHECK(cond, ...) \
  do {                                \
  } while (0)
#endif
