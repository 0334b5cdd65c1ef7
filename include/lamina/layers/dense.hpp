// lamina/layers/dense.hpp: fully connected layer, y = x W + b.
//
// The three products run lamina's GEMM (kernels/gemm.hpp) or Eigen's, chosen
// pass by pass from measurements (dense_prefers_lamina_gemm gives the reasons;
// Dense::set_gemm forces one). Both are split into chunks fixed by the problem
// size (rows of the batch; rows of dW, each reducing over the whole batch in
// one fixed order), so results are bit-identical with any thread count.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "lamina/core/threads.hpp"
#include "lamina/kernels/gemm.hpp"
#include "lamina/kernels/activation.hpp"
#include "lamina/layers/initializers.hpp"
#include "lamina/layers/layer.hpp"

namespace lamina {

/// The GEMM behind Dense's products: lamina's (kernels/gemm.hpp), Eigen's, or
/// the choice per pass (automatic; see dense_prefers_lamina_gemm).
enum class DenseGemm { automatic, lamina, eigen };

/// Dense's three products: Y = X W (+ b, ReLU); dW = X^T dY; dX = dY W^T.
enum class DenseGemmPass { forward, backward_weights, backward_data };

/// The automatic choice for a batch of n rows, `in` inputs, `out` outputs,
/// from bench_layers (1 thread, batch 128, AVX-512, 2026-11-24; see
/// docs/performance.md, "Dense on lamina's GEMM"):
///  - forward: lamina's GEMM always, bias and ReLU in its epilogue: 784 -> 256
///    and 3136 -> 256 run 1.3x faster than Eigen. On 256 -> 10 (10 outputs
///    computed as 16 with AVX-512 floats) it is about 5% slower (12.0 against
///    11.5 us, 0.05% of an MLP training step) but kept there too: lamina's
///    GEMM computes each row of Y as the same FMA chains whatever the batch,
///    so predictions have the same bits whatever predict()'s batch_size
///    (tests/test_predict_threads.cpp); Eigen's blocking depends on the batch.
///  - backward weights (dW = X^T dY, the reduction over the batch): lamina's
///    GEMM always: X^T is read in place, and each element is one FMA chain
///    over the batch rows in order. Faster on all three shapes, 256 -> 10
///    included (the whole backward 28.5 -> 23.9 us).
///  - backward data (dX = dY W^T): Eigen's GEMM. lamina's GEMM reads B by
///    rows, so W^T must be packed (a transposing copy of the whole kernel,
///    0.26 ms for 3136 x 256) on every call: the GEMM alone, packing included,
///    only ties Eigen's (2.53 against 2.60 ms), and inside the layer's backward
///    it was 0.3-0.5 ms slower; on 256 -> 10 the contraction is 10 long.
template <class T>
constexpr bool dense_prefers_lamina_gemm(DenseGemmPass pass, std::size_t n, std::size_t in,
                                         std::size_t out) noexcept {
  (void)n;
  (void)in;
  (void)out;
  return pass != DenseGemmPass::backward_data;
}

template <class T>
class Dense final : public Layer<T> {
 public:
  /// `units` outputs; kernel initialised with `init` (Keras's default is
  /// glorot_uniform; use he_normal before a ReLU); bias starts at zero;
  /// `activation` is fused into the output (see activation.hpp).
  explicit Dense(std::size_t units, Init init = Init::glorot_uniform, bool use_bias = true,
                 Activation activation = Activation::none)
      : units_(units), init_(init), use_bias_(use_bias), activation_(activation) {
    if (units == 0) throw ArgumentError("Dense: units must be at least 1");
  }

  std::string type() const override { return "Dense"; }
  LayerConfig config() const override {
    return {{"units", std::to_string(units_)},
            {"activation", to_string(activation_)},
            {"kernel_initializer", to_string(init_)},
            {"use_bias", use_bias_ ? "true" : "false"}};
  }
  std::vector<TensorSpec> parameter_specs() const override {
    std::vector<TensorSpec> specs{{"kernel", Shape{in_features_, units_}}};
    if (use_bias_) specs.push_back({"bias", Shape{units_}});
    return specs;
  }
  void initialize(Rng& rng) override {
    initialize_weights(this->param(0), init_, in_features_, units_, rng);
    if (use_bias_)
      for (T& b : this->param(1)) b = T(0);
  }

  TensorView<const T> forward(TensorView<const T> input, Mode) override {
    this->check_input(input);
    const std::size_t n = input.dim(0);
    input_ = input;
    output_.resize(Shape{n, units_});
    const T* x = input.data();     // (N, in)
    const T* w = this->param(0).data();  // (in, out)
    const T* b = use_bias_ ? this->param(1).data() : nullptr;  // (out)
    T* y = output_.data();         // (N, out)
    const std::size_t in = in_features_, out = units_;
    const bool relu = activation_ == Activation::relu;
    if (uses_lamina_gemm(DenseGemmPass::forward, n, in, out)) {
      // Y = X W + b, ReLU in the epilogue. W is read as it is when `out` is a
      // multiple of the SIMD width, else from a zero-padded copy.
      const T* wb = w;
      std::size_t ldw = out;
      if (!kernels::gemm_b_usable<T>(out)) {
        ldw = kernels::gemm_padded_columns<T>(out);
        packed_.resize(in * ldw);  // (in, padded out)
        pack_rows_parallel(in, out, w, out, false, packed_.data());
        wb = packed_.data();
      }
      kernels::GemmEpilogue<T> epilogue;
      epilogue.bias = b;
      epilogue.relu = relu;
      if (splits_contraction()) {
        // Two fixed parts of the contraction, rows [0, k) and [k, in) of W:
        //   Y = relu((b + X[:, :k] W[:k, :]) + X[:, k:] W[k:, :]).
        // k is where a two-thread static schedule splits backward's dW
        // chunks (and the optimizer's: parameter_row_chunk), so with two
        // threads each reads only the rows of W it writes; a thread that also
        // read the other's rows made the next update invalidate them in the
        // other core's cache (optim/update_plan.hpp). The parts are fixed, so
        // the bits do not depend on the thread count or the batch.
        const std::size_t k = contraction_split();
        const std::ptrdiff_t row_chunks = chunk_count(n, kRowsPerChunk);
        partial_.resize(n * out);  // (N, out) the second part
        T* part = partial_.data();
        kernels::GemmEpilogue<T> first;
        first.bias = b;
        parallel_for(2 * row_chunks, [&](std::ptrdiff_t c) {
          const bool second = c >= row_chunks;
          const std::size_t r0 = static_cast<std::size_t>(second ? c - row_chunks : c) * kRowsPerChunk;
          const std::size_t rows = std::min(kRowsPerChunk, n - r0);
          if (!second)
            kernels::gemm_prepacked<T>(rows, out, k, x + r0 * in, in, false, wb, ldw, y + r0 * out, out, first);
          else
            kernels::gemm_prepacked<T>(rows, out, in - k, x + r0 * in + k, in, false, wb + k * ldw, ldw,
                                       part + r0 * out, out);
        });
        parallel_for(row_chunks, [&](std::ptrdiff_t c) {
          const std::size_t begin = static_cast<std::size_t>(c) * kRowsPerChunk * out;
          const std::size_t end = std::min(n * out, begin + kRowsPerChunk * out);
          for (std::size_t i = begin; i < end; ++i) {
            const T v = y[i] + part[i];
            y[i] = relu && !(v > T(0)) ? T(0) : v;
          }
        });
        return output_.view();
      }
      parallel_for(chunk_count(n, kRowsPerChunk), [&](std::ptrdiff_t c) {
        const std::size_t r0 = static_cast<std::size_t>(c) * kRowsPerChunk;
        const std::size_t rows = std::min(kRowsPerChunk, n - r0);
        kernels::gemm_prepacked<T>(rows, out, in, x + r0 * in, in, false, wb, ldw, y + r0 * out, out, epilogue);
      });
      return output_.view();
    }
    parallel_for(chunk_count(n, kRowsPerChunk), [&](std::ptrdiff_t c) {
      const std::size_t r0 = static_cast<std::size_t>(c) * kRowsPerChunk;
      const std::size_t rows = std::min(kRowsPerChunk, n - r0);
      kernels::ConstMatrixMap<T> xs(x + r0 * in, rows, in);
      kernels::ConstMatrixMap<T> ws(w, in, out);
      kernels::MatrixMap<T> ys(y + r0 * out, rows, out);
      ys.noalias() = xs * ws;
      if (b) ys.rowwise() += kernels::ConstRowVectorMap<T>(b, out);
    });
    activate_in_place(activation_, y, n * out);
    return output_.view();
  }

  TensorView<const T> backward(TensorView<const T> grad_output) override {
    const std::size_t n = input_.dim(0);
    this->check_grad_output(grad_output, n);
    const std::size_t in = in_features_, out = units_;
    const T* x = input_.data();        // (N, in)
    if (activation_ != Activation::none) grad_pre_activation_.resize(grad_output.shape());
    // (N, out) gradient before the fused activation
    const T* dy = activation_backward(activation_, output_.data(), grad_output.data(),
                                      grad_pre_activation_.data(), grad_output.size());
    const T* w = this->param(0).data();  // (in, out)
    T* dw = this->grad(0).data();        // (in, out)

    // dW = x^T dy, split over rows of dW: each chunk reduces over the whole batch
    // in one fixed order (lamina's GEMM: one FMA chain over the batch rows,
    // 0, 1, ..., N-1; Eigen: its blocking, fixed by the sizes), so the result
    // does not depend on the thread count.
    if (uses_lamina_gemm(DenseGemmPass::backward_weights, n, in, out)) {
      const T* dyb = dy;
      std::size_t ldd = out;
      if (!kernels::gemm_b_usable<T>(out)) {
        ldd = kernels::gemm_padded_columns<T>(out);
        packed_.resize(n * ldd);  // (N, padded out)
        pack_rows_parallel(n, out, dy, out, false, packed_.data());
        dyb = packed_.data();
      }
      parallel_for(chunk_count(in, kWeightRowsPerChunk), [&](std::ptrdiff_t c) {
        const std::size_t k0 = static_cast<std::size_t>(c) * kWeightRowsPerChunk;
        const std::size_t rows = std::min(kWeightRowsPerChunk, in - k0);
        // op(A) = x^T: columns [k0, k0 + rows) of x (N, in).
        kernels::gemm_prepacked<T>(rows, out, n, x + k0, in, true, dyb, ldd, dw + k0 * out, out);
      });
    } else {
      parallel_for(chunk_count(in, kWeightRowsPerChunk), [&](std::ptrdiff_t c) {
        const std::size_t k0 = static_cast<std::size_t>(c) * kWeightRowsPerChunk;
        const std::size_t rows = std::min(kWeightRowsPerChunk, in - k0);
        Eigen::Map<const kernels::RowMajorMatrix<T>, 0, Eigen::OuterStride<>> xs(
            x + k0, n, rows, Eigen::OuterStride<>(static_cast<Eigen::Index>(in)));
        kernels::MatrixMap<T> dws(dw + k0 * out, rows, out);
        dws.noalias() = xs.transpose() * kernels::ConstMatrixMap<T>(dy, n, out);
      });
    }
    if (use_bias_) {
      // Column sums in row order: a fixed order.
      T* db = this->grad(1).data();
      std::fill(db, db + out, T(0));
      for (std::size_t r = 0; r < n; ++r)
        for (std::size_t j = 0; j < out; ++j) db[j] += dy[r * out + j];
    }
    if (!this->input_gradient_needed()) return {};
    grad_input_.resize(Shape{n, in});
    T* dx = grad_input_.data();  // (N, in)
    // dx = dy W^T, split over rows of the batch.
    if (uses_lamina_gemm(DenseGemmPass::backward_data, n, in, out)) {
      // W^T (out, in), packed once per call (zero-padded to the SIMD width).
      const std::size_t ldt = kernels::gemm_padded_columns<T>(in);
      packed_.resize(out * ldt);  // (out, padded in)
      pack_rows_parallel(out, in, w, out, true, packed_.data());
      const T* wt = packed_.data();
      parallel_for(chunk_count(n, kRowsPerChunk), [&](std::ptrdiff_t c) {
        const std::size_t r0 = static_cast<std::size_t>(c) * kRowsPerChunk;
        const std::size_t rows = std::min(kRowsPerChunk, n - r0);
        kernels::gemm_prepacked<T>(rows, in, out, dy + r0 * out, out, false, wt, ldt, dx + r0 * in, in);
      });
      return grad_input_.view();
    }
    if (splits_contraction()) {
      // Columns [0, k) and [k, in) of dx from rows [0, k) and [k, in) of W:
      // the forward's two parts, so that each thread reads only its rows of W.
      const std::size_t k = contraction_split();
      const std::ptrdiff_t row_chunks = chunk_count(n, kRowsPerChunk);
      parallel_for(2 * row_chunks, [&](std::ptrdiff_t c) {
        const bool second = c >= row_chunks;
        const std::size_t r0 = static_cast<std::size_t>(second ? c - row_chunks : c) * kRowsPerChunk;
        const std::size_t rows = std::min(kRowsPerChunk, n - r0);
        const std::size_t k0 = second ? k : 0, cols = second ? in - k : k;
        Eigen::Map<kernels::RowMajorMatrix<T>, 0, Eigen::OuterStride<>> dxs(
            dx + r0 * in + k0, rows, cols, Eigen::OuterStride<>(static_cast<Eigen::Index>(in)));
        dxs.noalias() = kernels::ConstMatrixMap<T>(dy + r0 * out, rows, out) *
                        kernels::ConstMatrixMap<T>(w + k0 * out, cols, out).transpose();
      });
      return grad_input_.view();
    }
    parallel_for(chunk_count(n, kRowsPerChunk), [&](std::ptrdiff_t c) {
      const std::size_t r0 = static_cast<std::size_t>(c) * kRowsPerChunk;
      const std::size_t rows = std::min(kRowsPerChunk, n - r0);
      kernels::MatrixMap<T> dxs(dx + r0 * in, rows, in);
      dxs.noalias() = kernels::ConstMatrixMap<T>(dy + r0 * out, rows, out) *
                      kernels::ConstMatrixMap<T>(w, in, out).transpose();
    });
    return grad_input_.view();
  }

  /// Which GEMM the three products use (DenseGemm::automatic unless set; see
  /// uses_lamina_gemm). Results of lamina's GEMM and Eigen's differ in the
  /// last bits; each is deterministic and independent of the thread count.
  DenseGemm gemm() const noexcept { return gemm_; }
  void set_gemm(DenseGemm gemm) noexcept { gemm_ = gemm; }
  void copy_execution_settings(const Layer<T>& original) override {
    if (const auto* dense = dynamic_cast<const Dense*>(&original)) set_gemm(dense->gemm());
  }

  /// Whether `pass` on a batch of n rows runs lamina's GEMM.
  bool uses_lamina_gemm(DenseGemmPass pass, std::size_t n, std::size_t in, std::size_t out) const noexcept {
    if (gemm_ != DenseGemm::automatic) return gemm_ == DenseGemm::lamina;
    return dense_prefers_lamina_gemm<T>(pass, n, in, out);
  }

  std::size_t units() const noexcept { return units_; }

  /// The kernel (in, out) is split by rows, kWeightRowsPerChunk at a time,
  /// as backward's dW loop splits it (see Layer::parameter_row_chunk), when
  /// it is large enough for the forward (on lamina's GEMM) to split its
  /// contraction in two parts at the two-thread boundary, and for backward
  /// data (on Eigen's) to split dx's columns there. With DenseGemm::eigen the
  /// forward, and with DenseGemm::lamina backward data (which packs W^T),
  /// read all of W on every thread: following the plan then costs cache
  /// traffic, never bits.
  std::size_t parameter_row_chunk(std::size_t index) const override {
    return index == 0 && splits_contraction() ? kWeightRowsPerChunk : 0;
  }

 protected:
  Shape do_build(const Shape& input_shape) override {
    if (input_shape.rank() != 1 || input_shape[0] == 0)
      throw this->build_error("(N, features); add a Flatten layer before Dense", input_shape);
    in_features_ = input_shape[0];
    return Shape{units_};
  }

 private:
  // Fixed work split (never derived from the thread count: see core/threads.hpp).
  static constexpr std::size_t kRowsPerChunk = 64;
  // dW rows per chunk: six tiles of lamina's GEMM (6 rows each with 64
  // columns), and an even chunk count for the reference models, so that two
  // threads get near-equal halves: 784 inputs make 22 chunks (396 + 388 rows;
  // 24 rows made 33 chunks, 17 + 16; 56 rows left 2-row tiles), 3136 make 88.
  // The forward's contraction split follows (784: rows [0, 396), [396, 784)).
  static constexpr std::size_t kWeightRowsPerChunk = 36;
  static constexpr std::size_t kPackRowsPerChunk = 64;
  // Kernels of at least this many weights (and two dW chunks) are read in two
  // parts of the contraction by the forward: 784 x 256 and 3136 x 256 are,
  // 256 x 10 is not (too small for the extra pass to pay).
  static constexpr std::size_t kSplitMinWeights = std::size_t{1} << 15;
  bool splits_contraction() const noexcept {
    return in_features_ >= 2 * kWeightRowsPerChunk && in_features_ * units_ >= kSplitMinWeights;
  }
  // First row of the contraction's second part: the rows of the first
  // ceil(C / 2) of backward's C dW chunks, which a static schedule gives to
  // the first of two threads (784 inputs: 11 of 22 chunks, rows [0, 396)).
  std::size_t contraction_split() const noexcept {
    const std::size_t chunks = (in_features_ + kWeightRowsPerChunk - 1) / kWeightRowsPerChunk;
    return (chunks + 1) / 2 * kWeightRowsPerChunk;
  }

  // packed (rows, padded cols) = B (rows, cols) or, with trans, the transpose
  // of B stored (cols, rows): gemm_pack_b over fixed chunks of rows (a copy,
  // so the split does not matter for the bits).
  static void pack_rows_parallel(std::size_t rows, std::size_t cols, const T* b, std::size_t ldb, bool trans,
                                 T* packed) {
    const std::size_t ld = kernels::gemm_padded_columns<T>(cols);
    parallel_for(chunk_count(rows, kPackRowsPerChunk), [&](std::ptrdiff_t c) {
      const std::size_t p0 = static_cast<std::size_t>(c) * kPackRowsPerChunk;
      const std::size_t count = std::min(kPackRowsPerChunk, rows - p0);
      kernels::gemm_pack_b<T>(count, cols, trans ? b + p0 : b + p0 * ldb, ldb, trans, packed + p0 * ld);
    });
  }

  std::size_t units_;
  Init init_;
  bool use_bias_;
  Activation activation_;
  std::size_t in_features_ = 0;
  TensorView<const T> input_;  // (N, in) cached by forward
  Tensor<T> output_;           // (N, out)
  Tensor<T> grad_input_;       // (N, in)
  Tensor<T> grad_pre_activation_;  // (N, out), only with a fused activation
  std::vector<T> packed_;          // B operand of lamina's GEMM when it must be padded or transposed
  std::vector<T> partial_;         // (N, out) the forward's second contraction part
  DenseGemm gemm_ = DenseGemm::automatic;
};

}  // namespace lamina
