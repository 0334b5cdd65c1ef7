// lamina/optim/schedule.hpp: learning-rate schedules, applied per epoch.
#pragma once

#include <cmath>
#include <cstddef>
#include <string>

#include "lamina/core/error.hpp"

namespace lamina {

/// The learning rate for a 1-based `epoch` of `epochs`.
struct LearningRateSchedule {
  enum class Kind { constant, step, cosine };
  Kind kind = Kind::constant;
  double initial = 1e-3;
  std::size_t step_every = 3;  // step: multiply by step_factor every step_every epochs
  double step_factor = 0.5;
  double minimum = 0.0;        // cosine: the rate approached at the end

  double at(std::size_t epoch, std::size_t epochs) const {
    if (epoch == 0 || epoch > epochs) throw ArgumentError("LearningRateSchedule: epoch out of range");
    switch (kind) {
      case Kind::constant: return initial;
      case Kind::step:
        return initial * std::pow(step_factor, static_cast<double>((epoch - 1) / step_every));
      case Kind::cosine: {
        // (epoch - 1) / epochs: the last epoch still learns (the rate reaches
        // `minimum` only after it).
        const double progress = static_cast<double>(epoch - 1) / static_cast<double>(epochs);
        return minimum + (initial - minimum) * 0.5 * (1.0 + std::cos(3.14159265358979323846 * progress));
      }
    }
    return initial;
  }
  static LearningRateSchedule from_name(const std::string& name, double initial) {
    LearningRateSchedule s;
    s.initial = initial;
    if (name == "none" || name == "constant") s.kind = Kind::constant;
    else if (name == "step") s.kind = Kind::step;
    else if (name == "cosine") s.kind = Kind::cosine;
    else throw ArgumentError("unknown learning-rate schedule '" + name + "' (known: none, step, cosine)");
    return s;
  }
};

}  // namespace lamina
