// lamina/core/format.hpp: numbers as text for configs, summaries and model files.
#pragma once

#include <cstddef>
#include <limits>
#include <locale>
#include <sstream>
#include <string>

namespace lamina {

/// The shortest text that reads back as the same double, independent of the
/// locale: 0.99 -> "0.99", 1e-07 -> "1e-07" (std::to_string would give
/// "0.000000"). Layer and optimizer configs use it, so model files round-trip.
inline std::string number_text(double value) {
  std::string text;
  for (int precision = 1; precision <= std::numeric_limits<double>::max_digits10; ++precision) {
    std::ostringstream out;
    out.imbue(std::locale::classic());
    out.precision(precision);
    out << value;
    text = out.str();
    std::istringstream in(text);
    in.imbue(std::locale::classic());
    double back = 0;
    if (in >> back && back == value) break;
  }
  return text;
}

/// n with a comma between groups of three digits: 1234567 -> "1,234,567"
/// (Keras's summary and the report write parameter counts this way).
inline std::string group_thousands(std::size_t n) {
  const std::string digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

}  // namespace lamina
