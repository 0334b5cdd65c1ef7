// lamina/kernels/conv2d_reference.hpp: the references every Conv2D kernel is
// tested against (tests/test_conv2d_conformance.cpp and the kernels' own
// tests): plain loops over the definition, in the layouts of
// kernels/conv2d_geometry.hpp.
//   - conv2d_forward_reference, conv2d_backward_data_reference and
//     conv2d_backward_weights_reference accumulate in double and round once
//     to T, so they are exact to T's rounding, whatever the algorithm they
//     check (im2col, direct, Winograd);
//   - im2col_reference and col2im_reference are scalar, one element at a
//     time, in the order im2col and col2im (kernels/im2col.hpp) use, so
//     those must match them bit for bit.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include "lamina/kernels/conv2d_geometry.hpp"

namespace lamina::kernels {

/// output[n, oh, ow, f] = bias[f] + sum_{kh, kw, c} input[n, oh*sh+kh-pad_top,
/// ow*sw+kw-pad_left, c] * kernel[kh, kw, c, f] (padding reads as zero).
template <class T>
void conv2d_forward_reference(const Conv2DGeometry& g,
                              const T* input,   // (N, H, W, C)
                              const T* kernel,  // (KH, KW, C, F)
                              const T* bias,    // (F) or nullptr
                              T* output) {      // (N, OH, OW, F)
  for (std::size_t n = 0; n < g.N; ++n)
    for (std::size_t oh = 0; oh < g.OH; ++oh)
      for (std::size_t ow = 0; ow < g.OW; ++ow)
        for (std::size_t f = 0; f < g.F; ++f) {
          double sum = bias ? double(bias[f]) : 0.0;
          for (std::size_t kh = 0; kh < g.KH; ++kh)
            for (std::size_t kw = 0; kw < g.KW; ++kw) {
              // Unsigned arithmetic: a pixel above/left of the image wraps to a huge index.
              const std::size_t ih = oh * g.sh + kh - g.pad_top;
              const std::size_t iw = ow * g.sw + kw - g.pad_left;
              if (ih >= g.H || iw >= g.W) continue;
              for (std::size_t c = 0; c < g.C; ++c)
                sum += double(input[((n * g.H + ih) * g.W + iw) * g.C + c]) *
                       double(kernel[((kh * g.KW + kw) * g.C + c) * g.F + f]);
            }
          output[((n * g.OH + oh) * g.OW + ow) * g.F + f] = static_cast<T>(sum);
        }
}

/// grad_input = d(sum output * grad_output)/d input: every product of the
/// forward, scattered back onto the input pixel it read.
template <class T>
void conv2d_backward_data_reference(const Conv2DGeometry& g,
                                    const T* grad_output,  // (N, OH, OW, F)
                                    const T* kernel,       // (KH, KW, C, F)
                                    T* grad_input) {       // (N, H, W, C)
  std::vector<double> sum(g.input_size(), 0.0);
  for (std::size_t n = 0; n < g.N; ++n)
    for (std::size_t oh = 0; oh < g.OH; ++oh)
      for (std::size_t ow = 0; ow < g.OW; ++ow)
        for (std::size_t kh = 0; kh < g.KH; ++kh)
          for (std::size_t kw = 0; kw < g.KW; ++kw) {
            const std::size_t ih = oh * g.sh + kh - g.pad_top;
            const std::size_t iw = ow * g.sw + kw - g.pad_left;
            if (ih >= g.H || iw >= g.W) continue;
            for (std::size_t c = 0; c < g.C; ++c)
              for (std::size_t f = 0; f < g.F; ++f)
                sum[((n * g.H + ih) * g.W + iw) * g.C + c] +=
                    double(grad_output[((n * g.OH + oh) * g.OW + ow) * g.F + f]) *
                    double(kernel[((kh * g.KW + kw) * g.C + c) * g.F + f]);
          }
  for (std::size_t i = 0; i < sum.size(); ++i) grad_input[i] = static_cast<T>(sum[i]);
}

/// grad_kernel[kh, kw, c, f] = sum_{n, oh, ow} input[n, ih, iw, c] * grad_output[n, oh, ow, f];
/// grad_bias[f] = sum_{n, oh, ow} grad_output[n, oh, ow, f]. Both overwritten.
template <class T>
void conv2d_backward_weights_reference(const Conv2DGeometry& g,
                                       const T* input,        // (N, H, W, C)
                                       const T* grad_output,  // (N, OH, OW, F)
                                       T* grad_kernel,        // (KH, KW, C, F)
                                       T* grad_bias) {        // (F) or nullptr
  for (std::size_t kh = 0; kh < g.KH; ++kh)
    for (std::size_t kw = 0; kw < g.KW; ++kw)
      for (std::size_t c = 0; c < g.C; ++c)
        for (std::size_t f = 0; f < g.F; ++f) {
          double sum = 0.0;
          for (std::size_t n = 0; n < g.N; ++n)
            for (std::size_t oh = 0; oh < g.OH; ++oh)
              for (std::size_t ow = 0; ow < g.OW; ++ow) {
                const std::size_t ih = oh * g.sh + kh - g.pad_top;
                const std::size_t iw = ow * g.sw + kw - g.pad_left;
                if (ih >= g.H || iw >= g.W) continue;
                sum += double(input[((n * g.H + ih) * g.W + iw) * g.C + c]) *
                       double(grad_output[((n * g.OH + oh) * g.OW + ow) * g.F + f]);
              }
          grad_kernel[((kh * g.KW + kw) * g.C + c) * g.F + f] = static_cast<T>(sum);
        }
  if (grad_bias) {
    for (std::size_t f = 0; f < g.F; ++f) {
      double sum = 0.0;
      for (std::size_t p = 0; p < g.N * g.OH * g.OW; ++p) sum += double(grad_output[p * g.F + f]);
      grad_bias[f] = static_cast<T>(sum);
    }
  }
}

/// Scalar reference of im2col (same contract), one element at a time.
template <class T>
void im2col_reference(const Conv2DGeometry& g, const T* input, std::size_t n_begin,
                      std::size_t n_end, T* columns) {
  std::size_t i = 0;
  for (std::size_t n = n_begin; n < n_end; ++n)
    for (std::size_t oh = 0; oh < g.OH; ++oh)
      for (std::size_t ow = 0; ow < g.OW; ++ow)
        for (std::size_t kh = 0; kh < g.KH; ++kh)
          for (std::size_t kw = 0; kw < g.KW; ++kw)
            for (std::size_t c = 0; c < g.C; ++c, ++i) {
              // Unsigned wrap-around makes "ih < 0" show up as ih >= H.
              const std::size_t ih = oh * g.sh + kh - g.pad_top;
              const std::size_t iw = ow * g.sw + kw - g.pad_left;
              columns[i] = (ih < g.H && iw < g.W) ? input[((n * g.H + ih) * g.W + iw) * g.C + c] : T(0);
            }
}

/// Scalar reference of col2im (same contract, same order of additions).
template <class T>
void col2im_reference(const Conv2DGeometry& g, const T* columns, std::size_t n_begin,
                      std::size_t n_end, T* input_grad) {
  const std::size_t image_size = g.H * g.W * g.C;
  std::fill(input_grad + n_begin * image_size, input_grad + n_end * image_size, T(0));
  std::size_t i = 0;
  for (std::size_t n = n_begin; n < n_end; ++n)
    for (std::size_t oh = 0; oh < g.OH; ++oh)
      for (std::size_t ow = 0; ow < g.OW; ++ow)
        for (std::size_t kh = 0; kh < g.KH; ++kh)
          for (std::size_t kw = 0; kw < g.KW; ++kw)
            for (std::size_t c = 0; c < g.C; ++c, ++i) {
              const std::size_t ih = oh * g.sh + kh - g.pad_top;
              const std::size_t iw = ow * g.sw + kw - g.pad_left;
              if (ih < g.H && iw < g.W) input_grad[((n * g.H + ih) * g.W + iw) * g.C + c] += columns[i];
            }
}

}  // namespace lamina::kernels
