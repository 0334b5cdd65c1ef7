// lamina/kernels/winograd_transforms.hpp: the transforms of Winograd's
// F(2x2, 3x3) (kernels/winograd.hpp has the algorithm and the kernels that
// run them): B^T d B of the input tiles, A dY A^T of the output gradient's,
// A^T M A back to the output, G g G^T of the kernel. Each is the same
// operations in a fixed order for every element, vectorised over the
// channels.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>

#include <xsimd/xsimd.hpp>

namespace lamina::kernels {

/// Tiles of 2x2 output pixels per image: ceil(OH/2) x ceil(OW/2).
struct WinogradTiling {
  std::size_t rows = 0, cols = 0;  // TH, TW
  std::size_t per_image() const noexcept { return rows * cols; }
};
inline WinogradTiling winograd_tiling(std::size_t out_h, std::size_t out_w) noexcept {
  return {(out_h + 1) / 2, (out_w + 1) / 2};
}

namespace detail {

// Loads `valid` values (the rest zero) from p, or zeros when p is null.
template <class T>
[[gnu::always_inline]] inline xsimd::batch<T> winograd_load(const T* p, std::size_t valid) {
  using Batch = xsimd::batch<T>;
  if (!p) return Batch(T(0));
  if (valid == Batch::size) return Batch::load_unaligned(p);
  alignas(64) T tmp[Batch::size] = {};
  std::memcpy(tmp, p, valid * sizeof(T));
  return Batch::load_aligned(tmp);
}

// Stores the first `valid` lanes of v at p.
template <class T>
[[gnu::always_inline]] inline void winograd_store(const xsimd::batch<T>& v, T* p, std::size_t valid) {
  using Batch = xsimd::batch<T>;
  if (valid == Batch::size) {
    v.store_unaligned(p);
    return;
  }
  alignas(64) T tmp[Batch::size];
  v.store_aligned(tmp);
  std::memcpy(p, tmp, valid * sizeof(T));
}

// Where tile t of a run starting at image n0 sits: its image and the corner of
// its 4x4 input patch (may be negative: the padding).
struct WinogradTile {
  std::size_t image, tile_row, tile_col;
};
inline WinogradTile winograd_tile(std::size_t n0, std::size_t t, const WinogradTiling& tiling) noexcept {
  const std::size_t per_image = tiling.per_image();
  const std::size_t r = t % per_image;
  return {n0 + t / per_image, r / tiling.cols, r % tiling.cols};
}

// V (count, 16, ldv) = B^T d B for the tiles [t0, t0 + count) counted from
// image n0's first tile. The source is (N, SH, SW, CS); patches start at
// (2 th - pad_t, 2 tw - pad_l). Columns CS..ldv of V are zero. With a mask
// (same layout as the source: a fused ReLU's output), d is read as
// mask > 0 ? src : 0, exactly as activation_backward computes it.
template <class T>
void winograd_input_transform(const T* src, std::size_t SH, std::size_t SW, std::size_t CS, std::ptrdiff_t pad_t,
                              std::ptrdiff_t pad_l, const WinogradTiling& tiling, std::size_t n0, std::size_t t0,
                              std::size_t count, T* V, std::size_t ldv, const T* mask = nullptr) {
  using Batch = xsimd::batch<T>;
  constexpr std::size_t W = Batch::size;
  for (std::size_t k = 0; k < count; ++k) {
    const WinogradTile tile = winograd_tile(n0, t0 + k, tiling);
    const std::ptrdiff_t y0 = 2 * static_cast<std::ptrdiff_t>(tile.tile_row) - pad_t;
    const std::ptrdiff_t x0 = 2 * static_cast<std::ptrdiff_t>(tile.tile_col) - pad_l;
    const T* pixel[4][4];  // the patch's pixels (CS channels each), null in the padding
    std::size_t offset[4][4] = {};  // their offsets in the source (and the mask)
    for (std::ptrdiff_t i = 0; i < 4; ++i)
      for (std::ptrdiff_t j = 0; j < 4; ++j) {
        const std::ptrdiff_t y = y0 + i, x = x0 + j;
        const bool inside = y >= 0 && x >= 0 && y < static_cast<std::ptrdiff_t>(SH) &&
                            x < static_cast<std::ptrdiff_t>(SW);
        offset[i][j] = inside ? ((tile.image * SH + static_cast<std::size_t>(y)) * SW + static_cast<std::size_t>(x)) * CS : 0;
        pixel[i][j] = inside ? src + offset[i][j] : nullptr;
      }
    T* v = V + k * 16 * ldv;  // (16, ldv)
    for (std::size_t c = 0; c < ldv; c += W) {
      const std::size_t valid = c < CS ? std::min(W, CS - c) : 0;
      Batch d[4][4];
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) d[i][j] = winograd_load(valid && pixel[i][j] ? pixel[i][j] + c : nullptr, valid);
      if (mask) {
        const Batch zero(T(0));
        for (int i = 0; i < 4; ++i)
          for (int j = 0; j < 4; ++j)
            if (valid && pixel[i][j])
              d[i][j] = xsimd::select(winograd_load(mask + offset[i][j] + c, valid) > zero, d[i][j], zero);
      }
      Batch t[4][4];  // B^T d
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        t[0][j] = d[0][j] - d[2][j];
        t[1][j] = d[1][j] + d[2][j];
        t[2][j] = d[2][j] - d[1][j];
        t[3][j] = d[1][j] - d[3][j];
      }
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) {  // (B^T d) B
        (t[i][0] - t[i][2]).store_unaligned(v + (4 * i + 0) * ldv + c);
        (t[i][1] + t[i][2]).store_unaligned(v + (4 * i + 1) * ldv + c);
        (t[i][2] - t[i][1]).store_unaligned(v + (4 * i + 2) * ldv + c);
        (t[i][1] - t[i][3]).store_unaligned(v + (4 * i + 3) * ldv + c);
      }
    }
  }
}

// dM (count, 16, ldm) = A dY A^T for the same tiles, dY the tile's 2x2 pixels
// of grad_output (N, OH, OW, F) (zero past the image). Columns F..ldm are zero.
// With a mask (a fused ReLU's output, same layout), dY = mask > 0 ? grad : 0.
template <class T>
void winograd_output_gradient_transform(const T* grad_output, std::size_t OH, std::size_t OW, std::size_t F,
                                        const WinogradTiling& tiling, std::size_t n0, std::size_t t0,
                                        std::size_t count, T* dM, std::size_t ldm, const T* mask = nullptr) {
  using Batch = xsimd::batch<T>;
  constexpr std::size_t W = Batch::size;
  for (std::size_t k = 0; k < count; ++k) {
    const WinogradTile tile = winograd_tile(n0, t0 + k, tiling);
    const T* pixel[2][2];
    const T* mask_pixel[2][2];
    for (std::size_t i = 0; i < 2; ++i)
      for (std::size_t j = 0; j < 2; ++j) {
        const std::size_t y = 2 * tile.tile_row + i, x = 2 * tile.tile_col + j;
        const std::size_t at = ((tile.image * OH + y) * OW + x) * F;
        pixel[i][j] = y < OH && x < OW ? grad_output + at : nullptr;
        mask_pixel[i][j] = mask && pixel[i][j] ? mask + at : nullptr;
      }
    T* m = dM + k * 16 * ldm;  // (16, ldm)
    for (std::size_t f = 0; f < ldm; f += W) {
      const std::size_t valid = f < F ? std::min(W, F - f) : 0;
      Batch y[2][2];
#pragma GCC unroll 2
      for (int i = 0; i < 2; ++i)
#pragma GCC unroll 2
        for (int j = 0; j < 2; ++j) y[i][j] = winograd_load(valid && pixel[i][j] ? pixel[i][j] + f : nullptr, valid);
      if (mask) {
        const Batch zero(T(0));
        for (int i = 0; i < 2; ++i)
          for (int j = 0; j < 2; ++j)
            if (valid && mask_pixel[i][j])
              y[i][j] = xsimd::select(winograd_load(mask_pixel[i][j] + f, valid) > zero, y[i][j], zero);
      }
      Batch t[4][2];  // A dY
#pragma GCC unroll 2
      for (int j = 0; j < 2; ++j) {
        t[0][j] = y[0][j];
        t[1][j] = y[0][j] + y[1][j];
        t[2][j] = y[0][j] - y[1][j];
        t[3][j] = -y[1][j];
      }
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) {  // (A dY) A^T
        t[i][0].store_unaligned(m + (4 * i + 0) * ldm + f);
        (t[i][0] + t[i][1]).store_unaligned(m + (4 * i + 1) * ldm + f);
        (t[i][0] - t[i][1]).store_unaligned(m + (4 * i + 2) * ldm + f);
        (-t[i][1]).store_unaligned(m + (4 * i + 3) * ldm + f);
      }
    }
  }
}

// out (N, OH, OW, FO) at the tiles' pixels = A^T M A [+ bias] [then ReLU], for
// M (count, 16, ldm); pixels past the image are dropped.
template <class T>
void winograd_output_transform(const T* M, std::size_t ldm, const WinogradTiling& tiling, std::size_t n0,
                               std::size_t t0, std::size_t count, const T* bias, bool relu, T* out, std::size_t OH,
                               std::size_t OW, std::size_t FO) {
  using Batch = xsimd::batch<T>;
  constexpr std::size_t W = Batch::size;
  const Batch zero(T(0));
  for (std::size_t k = 0; k < count; ++k) {
    const WinogradTile tile = winograd_tile(n0, t0 + k, tiling);
    const std::size_t y0 = 2 * tile.tile_row, x0 = 2 * tile.tile_col;
    const bool rows2 = y0 + 1 < OH, cols2 = x0 + 1 < OW;
    T* pixel = out + ((tile.image * OH + y0) * OW + x0) * FO;  // top-left output pixel
    const T* m = M + k * 16 * ldm;
    for (std::size_t f = 0; f < FO; f += W) {
      const std::size_t valid = std::min(W, FO - f);
      Batch s[2][4];  // A^T M
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        const Batch m0 = Batch::load_unaligned(m + (0 + j) * ldm + f);
        const Batch m1 = Batch::load_unaligned(m + (4 + j) * ldm + f);
        const Batch m2 = Batch::load_unaligned(m + (8 + j) * ldm + f);
        const Batch m3 = Batch::load_unaligned(m + (12 + j) * ldm + f);
        s[0][j] = m0 + m1 + m2;
        s[1][j] = m1 - m2 - m3;
      }
      const Batch b = bias ? winograd_load(bias + f, valid) : zero;
#pragma GCC unroll 2
      for (int i = 0; i < 2; ++i) {
        if (i == 1 && !rows2) break;
        Batch y[2] = {s[i][0] + s[i][1] + s[i][2], s[i][1] - s[i][2] - s[i][3]};
#pragma GCC unroll 2
        for (int j = 0; j < 2; ++j) {
          if (j == 1 && !cols2) break;
          Batch v = y[j];
          if (bias) v = v + b;
          if (relu) v = xsimd::select(v > zero, v, zero);
          winograd_store(v, pixel + (static_cast<std::size_t>(i) * OW + static_cast<std::size_t>(j)) * FO + f, valid);
        }
      }
    }
  }
}

// U (16, rows, ldu) = G g G^T in T, vectorised over the columns, the same
// operations in a fixed order for every element (the halves are exact). Not
// flipped: rows are the input channels c, columns the filters f (forward),
// read from kernel (3, 3, rows, cols). flipped: the kernel rotated by 180
// degrees with its channel axes swapped (backward data): rows are the filters
// f, columns the channels c; the caller passes the kernel transposed to
// (3, 3, F, C) so that the columns are contiguous, and the taps are read
// mirrored. Columns past the last are zero.
template <class T>
void winograd_kernel_transform(const T* kernel, std::size_t rows, std::size_t cols, bool flipped, T* U,
                               std::size_t ldu) {
  using Batch = xsimd::batch<T>;
  constexpr std::size_t W = Batch::size;
  const Batch half(T(0.5));
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t q = 0; q < ldu; q += W) {
      const std::size_t valid = q < cols ? std::min(W, cols - q) : 0;
      Batch g[3][3];
      for (std::size_t u = 0; u < 3; ++u)
        for (std::size_t v = 0; v < 3; ++v) {
          const std::size_t ku = flipped ? 2 - u : u, kv = flipped ? 2 - v : v;
          g[u][v] = winograd_load(valid ? kernel + ((ku * 3 + kv) * rows + r) * cols + q : nullptr, valid);
        }
      Batch gg[4][3];  // G g
      for (std::size_t v = 0; v < 3; ++v) {
        gg[0][v] = g[0][v];
        gg[1][v] = (g[0][v] + g[1][v] + g[2][v]) * half;
        gg[2][v] = (g[0][v] - g[1][v] + g[2][v]) * half;
        gg[3][v] = g[2][v];
      }
      for (std::size_t i = 0; i < 4; ++i) {  // (G g) G^T
        const Batch row[4] = {gg[i][0], (gg[i][0] + gg[i][1] + gg[i][2]) * half,
                              (gg[i][0] - gg[i][1] + gg[i][2]) * half, gg[i][2]};
        for (std::size_t j = 0; j < 4; ++j) row[j].store_unaligned(U + ((4 * i + j) * rows + r) * ldu + q);
      }
    }
}

}  // namespace detail

}  // namespace lamina::kernels
