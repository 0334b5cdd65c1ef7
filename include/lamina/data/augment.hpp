// lamina/data/augment.hpp: seeded image augmentation for (N, H, W, C) batches.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "lamina/core/error.hpp"
#include "lamina/core/rng.hpp"
#include "lamina/core/tensor.hpp"

namespace lamina {

struct AugmentOptions {
  double max_shift = 2.0;     // pixels, uniform in [-max_shift, max_shift] on each axis
  double max_degrees = 10.0;  // rotation about the image centre, uniform in [-max, max]
};

/// Moves every image of `batch` (N, H, W, C) in place by a random shift and a
/// small rotation about its centre, with bilinear interpolation and zero
/// (background) fill. Draws 3 numbers per image from `rng`, serially, so the
/// result depends only on the rng's state.
template <class T>
void random_shift_rotate(TensorView<T> batch, Rng& rng, const AugmentOptions& options = {}) {
  if (batch.rank() != 4)
    throw ShapeError("random_shift_rotate: expects images (N, H, W, C), got " + batch.shape().to_string());
  const std::size_t n = batch.dim(0), h = batch.dim(1), w = batch.dim(2), c = batch.dim(3);
  std::vector<T> source(h * w * c);  // (H, W, C) one image
  const double cy = (static_cast<double>(h) - 1) / 2, cx = (static_cast<double>(w) - 1) / 2;
  for (std::size_t i = 0; i < n; ++i) {
    const double dy = rng.uniform(-options.max_shift, options.max_shift);
    const double dx = rng.uniform(-options.max_shift, options.max_shift);
    const double angle = rng.uniform(-options.max_degrees, options.max_degrees) * 3.14159265358979323846 / 180.0;
    const double cs = std::cos(angle), sn = std::sin(angle);
    T* image = batch.data() + i * h * w * c;
    std::copy(image, image + h * w * c, source.begin());
    // Inverse mapping: each output pixel samples the source at the point that
    // the rotation + shift moves onto it.
    for (std::size_t y = 0; y < h; ++y)
      for (std::size_t x = 0; x < w; ++x) {
        const double oy = static_cast<double>(y) - cy - dy, ox = static_cast<double>(x) - cx - dx;
        const double sy = cs * oy + sn * ox + cy, sx = -sn * oy + cs * ox + cx;
        const double fy = std::floor(sy), fx = std::floor(sx);
        const double wy = sy - fy, wx = sx - fx;
        const long y0 = static_cast<long>(fy), x0 = static_cast<long>(fx);
        for (std::size_t ch = 0; ch < c; ++ch) {
          auto at = [&](long yy, long xx) -> double {
            if (yy < 0 || xx < 0 || yy >= static_cast<long>(h) || xx >= static_cast<long>(w)) return 0.0;
            return static_cast<double>(source[(static_cast<std::size_t>(yy) * w + static_cast<std::size_t>(xx)) * c + ch]);
          };
          const double v = (1 - wy) * ((1 - wx) * at(y0, x0) + wx * at(y0, x0 + 1)) +
                           wy * ((1 - wx) * at(y0 + 1, x0) + wx * at(y0 + 1, x0 + 1));
          image[(y * w + x) * c + ch] = static_cast<T>(v);
        }
      }
  }
}

}  // namespace lamina
