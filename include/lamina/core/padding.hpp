// lamina/core/padding.hpp: the padding modes of Conv2D and MaxPooling2D.
#pragma once

#include <string>

#include "lamina/core/error.hpp"

namespace lamina {

/// As in Keras/TensorFlow: `valid` uses only whole windows; `same` pads so the
/// output has ceil(input / stride) positions, the smaller half of the padding
/// before (top/left) and the larger after (bottom/right).
enum class Padding { valid, same };

inline const char* to_string(Padding padding) noexcept { return padding == Padding::same ? "same" : "valid"; }

inline Padding padding_from_string(const std::string& name) {
  if (name == "same") return Padding::same;
  if (name == "valid") return Padding::valid;
  throw ArgumentError("unknown padding '" + name + "' (known: valid, same)");
}

}  // namespace lamina
