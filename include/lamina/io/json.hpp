// lamina/io/json.hpp: the JSON helpers that every lamina file format shares
// (safetensors headers, model architectures, checkpoint metadata): a parser
// that refuses duplicate keys, and nlohmann's error messages without their
// category prefix.
#pragma once

#include <cstddef>
#include <exception>
#include <string>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

namespace lamina {
namespace detail {

// nlohmann's messages start with "[json.exception.parse_error.101] "; the
// category is noise to a user, the rest is the useful part.
inline std::string json_error_text(const std::exception& e) {
  std::string what = e.what();
  if (!what.empty() && what[0] == '[') {
    const std::size_t close = what.find("] ");
    if (close != std::string::npos) what = what.substr(close + 2);
  }
  return what;
}

// Parses JSON text, refusing an object that names a key twice: JSON parsers
// keep one of the two silently (which one differs between parsers), so a file
// with a duplicate would mean different things to different readers. Throws
// nlohmann's parse_error for a syntax error and its out_of_range for a number
// that overflows a double ("1e999"), so callers catch their common base
// Json::exception; or `on_duplicate(key)`'s exception.
template <class Json, class OnDuplicate>
Json parse_json_unique_keys(const char* begin, const char* end, OnDuplicate on_duplicate) {
  std::vector<std::unordered_set<std::string>> open_objects;  // keys seen, innermost object last
  return Json::parse(begin, end, [&](int, typename Json::parse_event_t event, Json& parsed) {
    using Event = typename Json::parse_event_t;
    if (event == Event::object_start) {
      open_objects.emplace_back();
    } else if (event == Event::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == Event::key && !open_objects.empty()) {
      const std::string key = parsed.template get<std::string>();
      if (!open_objects.back().insert(key).second) on_duplicate(key);
    }
    return true;
  });
}

}  // namespace detail
}  // namespace lamina
