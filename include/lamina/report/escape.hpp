// lamina/report/escape.hpp: text into HTML and SVG, safely.
//
// Every piece of text the report writes (titles, class names, file names, the
// model summary, warnings) goes through escape_html, so a '<' in a file name
// can never open a tag and a '"' can never end an attribute.
#pragma once

#include <string>

namespace lamina {

/// Escapes the five characters that are special in HTML and XML text and in
/// quoted attribute values: & < > " '.
inline std::string escape_html(const std::string& text) {
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace lamina
