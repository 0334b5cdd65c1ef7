// lamina/kernels/conv2d.hpp: the Conv2D kernels' entry points (forward,
// backward data, backward weights) and the one function that chooses which
// algorithm and GEMM run each pass, conv2d_choose.
//
// WHERE THINGS ARE
//   conv2d_geometry.hpp   the layouts (NHWC input, HWIO kernel) and the padding
//   conv2d_workspace.hpp  Conv2DAlgorithm, the batch chunks, the workspace, the
//                         reductions over per-chunk partials; why the results
//                         are the same bits with any thread count
//   conv2d_reference.hpp  the references every kernel is tested against
//   im2col.hpp            the im2col / col2im transforms
//   conv2d_im2col.hpp     im2col + a GEMM (lamina's or Eigen's): every geometry
//   conv2d_direct.hpp     direct loops for one-channel 3x3 layers
//   winograd.hpp          Winograd F(2x2, 3x3) for 3x3 stride-1 layers
//                         (its transforms: winograd_transforms.hpp)
//   docs/conv2d-kernels.md has the measurements behind the choices.
//
// THE CHOICE (conv2d_choose), for the workspace's Conv2DAlgorithm:
//   automatic  Winograd on 3x3 stride-1 layers whose input channels and filters
//              both fill a SIMD batch (below that, the transformed tiles are
//              mostly padding and im2col is faster); else the direct kernels
//              where they apply (forward and backward weights of one-channel
//              3x3 layers with F a multiple of the batch size); else im2col.
//   winograd   Winograd wherever it applies (3x3, stride 1), else as automatic.
//   direct     the direct kernels wherever they apply, else as automatic.
//   im2col     im2col for every pass.
//   and, for the im2col kernels, the workspace's GemmKernel: lamina's or
//   Eigen's for every pass when set; automatic runs lamina's, except in
//   backward data when padding its output columns (K = KH*KW*C) to a multiple
//   of the batch size adds more than 25% (K = 9 for a one-channel 3x3 layer
//   computes 16 columns with AVX-512 floats and is slower than Eigen's).
//   The direct and Winograd kernels always run lamina's GEMM or their own loops.
#pragma once

#include <cstddef>

#include <xsimd/xsimd.hpp>

#include "lamina/core/error.hpp"
#include "lamina/core/tensor.hpp"
#include "lamina/kernels/conv2d_direct.hpp"
#include "lamina/kernels/conv2d_geometry.hpp"
#include "lamina/kernels/conv2d_im2col.hpp"
#include "lamina/kernels/conv2d_reference.hpp"
#include "lamina/kernels/conv2d_workspace.hpp"
#include "lamina/kernels/gemm.hpp"
#include "lamina/kernels/winograd.hpp"

namespace lamina::kernels {

/// What runs one pass: the algorithm (never automatic) and, for im2col, the
/// GEMM (lamina or eigen; lamina for the other algorithms).
struct Conv2DChoice {
  Conv2DAlgorithm algorithm = Conv2DAlgorithm::im2col;
  GemmKernel gemm = GemmKernel::lamina;
};

/// The algorithm and GEMM that pass `pass` of geometry g runs for T with the
/// requested `algorithm` and `gemm` (see THE CHOICE at the top of this file).
/// Depends on the shapes and the settings only.
template <class T>
Conv2DChoice conv2d_choose(const Conv2DGeometry& g, Conv2DAlgorithm algorithm, GemmKernel gemm,
                           KernelPass pass) {
  constexpr std::size_t W = xsimd::batch<T>::size;
  const bool winograd = winograd_applicable(g) &&
                        (algorithm == Conv2DAlgorithm::winograd ||
                         ((algorithm == Conv2DAlgorithm::automatic || algorithm == Conv2DAlgorithm::direct) &&
                          g.C >= W && g.F >= W));
  if (winograd) return {Conv2DAlgorithm::winograd, GemmKernel::lamina};
  const bool direct = algorithm != Conv2DAlgorithm::im2col && pass != KernelPass::backward_data &&
                      conv2d_direct_applicable<T>(g);
  if (direct) return {Conv2DAlgorithm::direct, GemmKernel::lamina};
  if (gemm == GemmKernel::automatic) {
    const std::size_t K = g.patch_size();
    const bool pads_badly = pass == KernelPass::backward_data && gemm_padded_columns<T>(K) * 4 > K * 5;
    gemm = pads_badly ? GemmKernel::eigen : GemmKernel::lamina;
  }
  return {Conv2DAlgorithm::im2col, gemm};
}

/// conv2d_choose with the workspace's settings.
template <class T>
Conv2DChoice conv2d_choose(const Conv2DGeometry& g, const Conv2DWorkspace<T>& workspace, KernelPass pass) {
  return conv2d_choose<T>(g, workspace.algorithm(), workspace.gemm(), pass);
}

/// Whether conv2d_backward_weights (and, when input_gradient, also
/// conv2d_backward_data) accept a relu_output for g with this workspace: the
/// Winograd kernels read the ReLU mask where they load grad_output, and so do
/// the direct kernels' backward weights; the im2col kernels do not (the
/// Conv2D layer then runs activation_backward first).
template <class T>
bool conv2d_fuses_relu_backward(const Conv2DGeometry& g, const Conv2DWorkspace<T>& workspace, bool input_gradient) {
  const Conv2DAlgorithm weights = conv2d_choose(g, workspace, KernelPass::backward_weights).algorithm;
  if (weights == Conv2DAlgorithm::im2col) return false;
  return !input_gradient ||
         conv2d_choose(g, workspace, KernelPass::backward_data).algorithm == Conv2DAlgorithm::winograd;
}

/// output = conv(input, kernel) + bias, then ReLU (v > 0 ? v : 0, exactly as
/// activate_in_place) when relu is set, fused into the kernels' epilogue.
/// Overwrites output.
template <class T>
void conv2d_forward(const Conv2DGeometry& g,
                    const T* input,   // (N, H, W, C)
                    const T* kernel,  // (KH, KW, C, F)
                    const T* bias,    // (F) or nullptr
                    T* output,        // (N, OH, OW, F)
                    Conv2DWorkspace<T>& workspace, bool relu = false) {
  const Conv2DChoice choice = conv2d_choose(g, workspace, KernelPass::forward);
  switch (choice.algorithm) {
    case Conv2DAlgorithm::winograd:
      conv2d_winograd_forward(g, input, kernel, bias, output, workspace.winograd(), relu);
      return;
    case Conv2DAlgorithm::direct: conv2d_direct_forward(g, input, kernel, bias, output, workspace, relu); return;
    default: conv2d_im2col_forward(g, input, kernel, bias, output, workspace, choice.gemm, relu); return;
  }
}

/// grad_input = d(sum output * grad_output)/d input. Overwrites grad_input.
/// relu_output: when not null, the output of a ReLU fused after this
/// convolution, and grad_output the gradient after it: the kernel uses
/// relu_output > 0 ? grad_output : 0 where it reads grad_output, the values
/// activation_backward would have written, so the result has the same bits.
/// Only where conv2d_fuses_relu_backward(g, workspace, true); an ArgumentError
/// otherwise.
template <class T>
void conv2d_backward_data(const Conv2DGeometry& g,
                          const T* grad_output,  // (N, OH, OW, F)
                          const T* kernel,       // (KH, KW, C, F)
                          T* grad_input,         // (N, H, W, C)
                          Conv2DWorkspace<T>& workspace,
                          const T* relu_output = nullptr) {  // (N, OH, OW, F) or nullptr
  const Conv2DChoice choice = conv2d_choose(g, workspace, KernelPass::backward_data);
  if (choice.algorithm == Conv2DAlgorithm::winograd) {
    conv2d_winograd_backward_data(g, grad_output, kernel, grad_input, workspace.winograd(), relu_output);
    return;
  }
  if (relu_output)
    throw ArgumentError("conv2d_backward_data: a fused ReLU's output is only accepted by the Winograd kernels "
                        "(see conv2d_fuses_relu_backward); apply activation_backward first");
  conv2d_im2col_backward_data(g, grad_output, kernel, grad_input, workspace, choice.gemm);
}

/// grad_kernel = d(sum output * grad_output)/d kernel and grad_bias = its
/// derivative for the bias (skipped when grad_bias is nullptr). Both
/// overwritten; bit-identical for any thread count. relu_output: as for
/// conv2d_backward_data, where conv2d_fuses_relu_backward(g, workspace, false).
template <class T>
void conv2d_backward_weights(const Conv2DGeometry& g,
                             const T* input,        // (N, H, W, C)
                             const T* grad_output,  // (N, OH, OW, F)
                             T* grad_kernel,        // (KH, KW, C, F)
                             T* grad_bias,          // (F) or nullptr
                             Conv2DWorkspace<T>& workspace,
                             const T* relu_output = nullptr) {  // (N, OH, OW, F) or nullptr
  const Conv2DChoice choice = conv2d_choose(g, workspace, KernelPass::backward_weights);
  switch (choice.algorithm) {
    case Conv2DAlgorithm::winograd:
      conv2d_winograd_backward_weights(g, input, grad_output, grad_kernel, grad_bias, workspace.winograd(),
                                       relu_output);
      return;
    case Conv2DAlgorithm::direct:
      conv2d_direct_backward_weights(g, input, grad_output, grad_kernel, grad_bias, workspace, relu_output);
      return;
    default:
      if (relu_output)
        throw ArgumentError("conv2d_backward_weights: a fused ReLU's output is only accepted by the Winograd and "
                            "direct kernels (see conv2d_fuses_relu_backward); apply activation_backward first");
      conv2d_im2col_backward_weights(g, input, grad_output, grad_kernel, grad_bias, workspace, choice.gemm);
      return;
  }
}

// ---------------------------------------------------------------------------
// Checked overloads on tensor views: the same kernels, after checking every
// shape against the geometry (ShapeError naming expected and actual shapes).
// ---------------------------------------------------------------------------

namespace detail {
template <class T>
struct identity {
  using type = T;
};
template <class T>
using same_t = typename identity<T>::type;  // blocks deduction: T comes from the workspace

inline void check_conv_shape(const char* what, const char* operand, const Shape& expected,
                             const Shape& got) {
  if (expected != got)
    throw ShapeError(lamina::detail::concat(what, ": ", operand, " must be ", expected.to_string(),
                                            " for this geometry, got ", got.to_string()));
}
}  // namespace detail

/// conv2d_forward on views; a default-constructed (null) bias view means no bias.
template <class T>
void conv2d_forward(const Conv2DGeometry& g, TensorView<const detail::same_t<T>> input,
                    TensorView<const detail::same_t<T>> kernel,
                    TensorView<const detail::same_t<T>> bias, TensorView<detail::same_t<T>> output,
                    Conv2DWorkspace<T>& workspace, bool relu = false) {
  const char* what = "conv2d_forward";
  detail::check_conv_shape(what, "input", g.input_shape(), input.shape());
  detail::check_conv_shape(what, "kernel", g.kernel_shape(), kernel.shape());
  const bool has_bias = bias.data() != nullptr;
  if (has_bias) detail::check_conv_shape(what, "bias", Shape{g.F}, bias.shape());
  detail::check_conv_shape(what, "output", g.output_shape(), output.shape());
  conv2d_forward(g, input.data(), kernel.data(), has_bias ? bias.data() : nullptr,
                 output.data(), workspace, relu);
}

/// conv2d_backward_data on views.
template <class T>
void conv2d_backward_data(const Conv2DGeometry& g, TensorView<const detail::same_t<T>> grad_output,
                          TensorView<const detail::same_t<T>> kernel,
                          TensorView<detail::same_t<T>> grad_input, Conv2DWorkspace<T>& workspace) {
  const char* what = "conv2d_backward_data";
  detail::check_conv_shape(what, "grad_output", g.output_shape(), grad_output.shape());
  detail::check_conv_shape(what, "kernel", g.kernel_shape(), kernel.shape());
  detail::check_conv_shape(what, "grad_input", g.input_shape(), grad_input.shape());
  conv2d_backward_data(g, grad_output.data(), kernel.data(), grad_input.data(), workspace);
}

/// conv2d_backward_weights on views; a default-constructed (null) grad_bias view means no bias.
template <class T>
void conv2d_backward_weights(const Conv2DGeometry& g, TensorView<const detail::same_t<T>> input,
                             TensorView<const detail::same_t<T>> grad_output,
                             TensorView<detail::same_t<T>> grad_kernel,
                             TensorView<detail::same_t<T>> grad_bias,
                             Conv2DWorkspace<T>& workspace) {
  const char* what = "conv2d_backward_weights";
  detail::check_conv_shape(what, "input", g.input_shape(), input.shape());
  detail::check_conv_shape(what, "grad_output", g.output_shape(), grad_output.shape());
  detail::check_conv_shape(what, "grad_kernel", g.kernel_shape(), grad_kernel.shape());
  const bool has_bias = grad_bias.data() != nullptr;
  if (has_bias) detail::check_conv_shape(what, "grad_bias", Shape{g.F}, grad_bias.shape());
  conv2d_backward_weights(g, input.data(), grad_output.data(), grad_kernel.data(),
                          has_bias ? grad_bias.data() : nullptr, workspace);
}

}  // namespace lamina::kernels
