// A small streaming JSON writer for the examples' metrics.json (examples only,
// never installed).
#pragma once

#include <cmath>
#include <cstdio>
#include <ostream>
#include <string>
#include <vector>

namespace lamina_examples {

class JsonWriter {
 public:
  explicit JsonWriter(std::ostream& out) : out_(out) {}

  JsonWriter& begin_object() { value_prefix(); out_ << '{'; stack_.push_back(true); return *this; }
  JsonWriter& end_object() { close('}'); return *this; }
  JsonWriter& begin_array() { value_prefix(); out_ << '['; stack_.push_back(true); return *this; }
  JsonWriter& end_array() { close(']'); return *this; }
  JsonWriter& key(const std::string& k) {
    separator();
    indent();
    write_string(k);
    out_ << ": ";
    after_key_ = true;
    return *this;
  }
  JsonWriter& value(const std::string& s) { value_prefix(); write_string(s); return *this; }
  JsonWriter& value(const char* s) { return value(std::string(s)); }
  JsonWriter& value(bool b) { value_prefix(); out_ << (b ? "true" : "false"); return *this; }
  JsonWriter& value(double d) {
    value_prefix();
    if (!std::isfinite(d)) {
      out_ << "null";  // JSON has no NaN or Inf
    } else {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.17g", d);
      out_ << buf;
    }
    return *this;
  }
  JsonWriter& value(long long i) { value_prefix(); out_ << i; return *this; }
  JsonWriter& value(unsigned long long i) { value_prefix(); out_ << i; return *this; }
  JsonWriter& value(int i) { return value(static_cast<long long>(i)); }
  JsonWriter& value(unsigned i) { return value(static_cast<unsigned long long>(i)); }
  JsonWriter& value(unsigned long i) { return value(static_cast<unsigned long long>(i)); }
  JsonWriter& value(long i) { return value(static_cast<long long>(i)); }
  template <class V>
  JsonWriter& field(const std::string& k, const V& v) { return key(k).value(v); }

 private:
  void separator() {
    if (stack_.empty()) return;
    if (!stack_.back()) out_ << ',';
    stack_.back() = false;
  }
  void indent() {
    out_ << '\n';
    for (std::size_t i = 0; i < stack_.size(); ++i) out_ << "  ";
  }
  void value_prefix() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (stack_.empty()) return;
    separator();
    indent();
  }
  void close(char c) {
    const bool empty = stack_.back();
    stack_.pop_back();
    if (!empty) indent();
    out_ << c;
    if (stack_.empty()) out_ << '\n';
  }
  void write_string(const std::string& s) {
    out_ << '"';
    for (char ch : s) {
      const unsigned char c = static_cast<unsigned char>(ch);
      if (c == '"' || c == '\\') out_ << '\\' << ch;
      else if (c == '\n') out_ << "\\n";
      else if (c < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        out_ << buf;
      } else out_ << ch;
    }
    out_ << '"';
  }

  std::ostream& out_;
  std::vector<bool> stack_;  // per open container: is it still empty?
  bool after_key_ = false;
};

}  // namespace lamina_examples
