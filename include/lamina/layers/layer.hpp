// lamina/layers/layer.hpp: the layer contract.
//
// This is the one place the contract is written down (docs/layers.md explains it
// with an example). A Layer<T> (T = float or double):
//
// 1. Is constructed with its hyperparameters only (units, kernel size, ...).
// 2. build(input_shape) is called exactly once, with the shape of ONE sample (no
//    batch dimension): the layer checks that it can take it (throwing ShapeError
//    otherwise), fixes every shape, and returns its output sample shape. After
//    build, parameter_specs() and buffer_specs() describe its tensors.
// 3. The owner (Sequential, or check_gradients) allocates ONE flat buffer of
//    parameters, one of gradients and one of buffers (non-trainable state such as
//    BatchNorm's running statistics) for all layers, and calls bind() to give
//    each layer views into them, then initialize(rng) to draw initial values.
// 4. forward(input, mode) takes a batch (N, ...sample shape), returns a view of
//    the output (N, ...output shape) and caches what backward needs. The output
//    view points into memory the layer owns and stays valid until the next
//    forward; the input view must stay valid and unchanged until backward.
//    mode is Mode::train or Mode::eval (BatchNorm and Dropout differ).
// 5. backward(grad_output) must follow a forward on the same batch and
//    differentiates what that forward computed, in its mode (training uses
//    Mode::train; the gradient checker also checks Mode::eval). It OVERWRITES
//    the layer's parameter gradients (it does not accumulate) and returns the
//    gradient with respect to the input, again a view into memory the layer owns.
//    The owner may declare that nobody needs the input gradient (the first
//    layer of a model: its input is data) with set_input_gradient_needed(false);
//    the layer may then skip computing it and return an empty view.
// 6. Buffers are sized for the largest batch seen and reused: after the first
//    step at a given batch size, forward and backward do not allocate.
// 7. Errors name the culprit: "layer 3 (Dense): expects ..., got ...". The
//    owner sets the index; a layer used alone is "layer ? (Dense)".
// 8. clone() makes an unbuilt copy of the layer's hyperparameters and kernel
//    choices (never of its tensors or caches), so that a model can be copied
//    without the layer registry.
// 9. Randomness comes only from Rngs the owner seeds: initialize(rng) for the
//    parameters, and for a stochastic layer (Dropout) its own stream, exposed by
//    rng() so that callers can snapshot it (gradient checks, checkpoints).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "lamina/core/error.hpp"
#include "lamina/core/rng.hpp"
#include "lamina/core/tensor.hpp"

namespace lamina {

enum class Mode { train, eval };

/// Name and shape of one parameter or buffer tensor of a layer ("kernel", (784, 256)).
struct TensorSpec {
  std::string name;
  Shape shape;
};

/// A layer's hyperparameters as (name, value) text pairs, in a fixed order: what
/// summary() shows and what a model file records.
using LayerConfig = std::vector<std::pair<std::string, std::string>>;

/// A layer type in snake_case, by Keras's rule: "Dense" -> "dense",
/// "BatchNormalization" -> "batch_normalization", "MaxPooling2D" ->
/// "max_pooling2d", "Conv2D" -> "conv2d", "ReLU" -> "re_lu". Characters other
/// than letters, digits and '_' become '_' (tensor names stay dot-separated).
inline std::string layer_type_snake_case(const std::string& type) {
  auto upper = [](char c) { return c >= 'A' && c <= 'Z'; };
  auto lower = [](char c) { return c >= 'a' && c <= 'z'; };
  auto lower_or_digit = [&](char c) { return lower(c) || (c >= '0' && c <= '9'); };
  // Keras: re.sub("(.)([A-Z][a-z0-9]+)", r"\1_\2", name), then
  // re.sub("([a-z])([A-Z])", r"\1_\2", ...).lower(); written out by hand to
  // keep <regex> out of the headers, with the same left-to-right matching.
  std::string first;
  for (std::size_t i = 0, n = type.size(); i < n;) {
    if (i + 2 < n && upper(type[i + 1]) && lower_or_digit(type[i + 2])) {
      std::size_t j = i + 2;
      while (j < n && lower_or_digit(type[j])) ++j;
      first += type[i];
      first += '_';
      first.append(type, i + 1, j - i - 1);
      i = j;
    } else {
      first += type[i++];
    }
  }
  std::string out;
  for (std::size_t i = 0, n = first.size(); i < n;) {
    if (i + 1 < n && lower(first[i]) && upper(first[i + 1])) {
      out += first[i];
      out += '_';
      out += first[i + 1];
      i += 2;
    } else {
      out += first[i++];
    }
  }
  for (char& c : out) {
    if (upper(c)) c = static_cast<char>(c - 'A' + 'a');
    else if (!lower(c) && !(c >= '0' && c <= '9') && c != '_') c = '_';
  }
  return out;
}

template <class T>
class Layer {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "lamina layers are defined for float and double");

 public:
  using value_type = T;

  virtual ~Layer() = default;
  Layer() = default;
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;

  /// Type name as in Keras: "Dense", "Conv2D", ...
  virtual std::string type() const = 0;
  /// Hyperparameters (see LayerConfig).
  virtual LayerConfig config() const { return {}; }

  /// Fixes the shapes (see the contract above). Throws ShapeError naming both shapes.
  Shape build(const Shape& input_shape) {
    if (built_) throw Error(describe() + ": build() called twice");
    output_shape_ = do_build(input_shape);
    input_shape_ = input_shape;
    built_ = true;
    return output_shape_;
  }
  bool built() const noexcept { return built_; }
  const Shape& input_shape() const noexcept { return input_shape_; }   // one sample
  const Shape& output_shape() const noexcept { return output_shape_; } // one sample

  /// Trainable tensors, in a fixed order. Valid after build.
  virtual std::vector<TensorSpec> parameter_specs() const { return {}; }
  /// Non-trainable state (running statistics), in a fixed order. Valid after build.
  virtual std::vector<TensorSpec> buffer_specs() const { return {}; }

  /// Gives the layer its views, one per spec, in the order of the specs.
  void bind(std::vector<TensorView<T>> params, std::vector<TensorView<T>> grads,
            std::vector<TensorView<T>> buffers) {
    params_ = std::move(params);
    grads_ = std::move(grads);
    buffers_ = std::move(buffers);
  }
  /// Draws initial parameter values and resets buffers.
  virtual void initialize(Rng& rng) { (void)rng; }

  virtual TensorView<const T> forward(TensorView<const T> input, Mode mode) = 0;
  virtual TensorView<const T> backward(TensorView<const T> grad_output) = 0;

  /// A new layer of the same type, with the same hyperparameters and the same
  /// settings that choose how (not what) it computes (a kernel or GEMM
  /// choice, a fused activation), so that it computes the same bits; not
  /// built, with no parameters, buffers or caches: the owner builds and binds
  /// it (see 3.). What predict() runs its private copy of a model on.
  virtual std::unique_ptr<Layer<T>> clone() const = 0;

  /// How the layer's kernels split parameter `index` between threads, so that
  /// the optimizer can follow (optim/update_plan.hpp): 0 (the default) when
  /// they do not; otherwise a row count r. The tensor is viewed as (rows,
  /// the rest), and the layer's parallel loops hand its rows to threads as a
  /// static schedule over chunk_count(rows, r) chunks of r rows does: the
  /// optimizer updates it in the same chunks, which the static schedule gives
  /// to the same threads. Fixed once the layer is built.
  virtual std::size_t parameter_row_chunk(std::size_t index) const {
    (void)index;
    return 0;
  }

  /// The layer's own random stream, for stochastic layers; nullptr otherwise.
  virtual Rng* rng() noexcept { return nullptr; }

  const std::vector<TensorView<T>>& parameters() const noexcept { return params_; }
  const std::vector<TensorView<T>>& gradients() const noexcept { return grads_; }
  const std::vector<TensorView<T>>& buffers() const noexcept { return buffers_; }
  std::size_t parameter_count() const {
    std::size_t n = 0;
    for (const auto& spec : parameter_specs()) n += spec.shape.size();
    return n;
  }

  /// Whether backward must return the input gradient (see 5.); true by default.
  void set_input_gradient_needed(bool needed) noexcept { input_gradient_needed_ = needed; }
  bool input_gradient_needed() const noexcept { return input_gradient_needed_; }

  /// Position in the owning model, used in error messages; -1 when alone.
  void set_index(int index) noexcept { index_ = index; }
  int index() const noexcept { return index_; }
  /// "layer 3 (Dense)".
  std::string describe() const {
    return "layer " + (index_ >= 0 ? std::to_string(index_) : std::string("?")) + " (" + type() + ")";
  }

 protected:
  /// Checks the input shape and returns the output shape of one sample.
  virtual Shape do_build(const Shape& input_shape) = 0;

  /// Throws unless `input` is (N, input_shape()) with N >= 1.
  void check_input(TensorView<const T> input) const {
    if (!built_) throw Error(describe() + ": forward() before build()");
    if (input.rank() != input_shape_.rank() + 1 || input.shape().drop_first() != input_shape_ ||
        input.dim(0) == 0)
      throw ShapeError(describe() + ": expects input " + input_shape_.to_string("N") + ", got " +
                       input.shape().to_string());
  }
  /// Throws unless grad_output matches the last forward's output.
  void check_grad_output(TensorView<const T> grad_output, std::size_t batch) const {
    const Shape expected = output_shape_.prepend(batch);
    if (grad_output.shape() != expected)
      throw ShapeError(describe() + ": backward expects a gradient of shape " + expected.to_string() +
                       " (the last forward's output), got " + grad_output.shape().to_string());
  }
  /// A ShapeError for build(): "layer 1 (Dense): expects input (N, features), got (N, 28, 28, 1)".
  ShapeError build_error(const std::string& expected, const Shape& got) const {
    return ShapeError(describe() + ": expects input " + expected + ", got " + got.to_string("N"));
  }

  TensorView<T> param(std::size_t i) const { return params_.at(i); }
  TensorView<T> grad(std::size_t i) const { return grads_.at(i); }
  TensorView<T> buffer(std::size_t i) const { return buffers_.at(i); }

 private:
  bool built_ = false;
  bool input_gradient_needed_ = true;
  int index_ = -1;
  Shape input_shape_;
  Shape output_shape_;
  std::vector<TensorView<T>> params_;
  std::vector<TensorView<T>> grads_;
  std::vector<TensorView<T>> buffers_;
};

/// The flat parameter, gradient and buffer storage of a list of layers: each
/// tensor starts on a 64-byte boundary, in layer order then spec order, so
/// optimizers, model files and gradient checks each walk one buffer.
template <class T>
class ParameterStore {
 public:
  /// Allocates the buffers for `layers` (all built) and binds every layer.
  void allocate(const std::vector<Layer<T>*>& layers) {
    constexpr std::size_t kAlignElems = kAlignment / sizeof(T);
    auto padded = [&](std::size_t n) { return (n + kAlignElems - 1) / kAlignElems * kAlignElems; };
    std::size_t n_params = 0, n_buffers = 0;
    for (Layer<T>* layer : layers) {
      for (const auto& spec : layer->parameter_specs()) n_params += padded(spec.shape.size());
      for (const auto& spec : layer->buffer_specs()) n_buffers += padded(spec.shape.size());
    }
    params_ = Tensor<T>(Shape{n_params});
    grads_ = Tensor<T>(Shape{n_params});
    buffers_ = Tensor<T>(Shape{n_buffers});
    entries_.clear();
    std::size_t p = 0, b = 0;
    for (Layer<T>* layer : layers) {
      std::vector<TensorView<T>> pv, gv, bv;
      const std::vector<TensorSpec> param_specs = layer->parameter_specs();
      for (std::size_t i = 0; i < param_specs.size(); ++i) {
        const TensorSpec& spec = param_specs[i];
        pv.emplace_back(params_.data() + p, spec.shape);
        gv.emplace_back(grads_.data() + p, spec.shape);
        entries_.push_back({layer, spec, p, true, i});
        p += padded(spec.shape.size());
      }
      const std::vector<TensorSpec> buffer_specs = layer->buffer_specs();
      for (std::size_t i = 0; i < buffer_specs.size(); ++i) {
        const TensorSpec& spec = buffer_specs[i];
        bv.emplace_back(buffers_.data() + b, spec.shape);
        entries_.push_back({layer, spec, b, false, i});
        b += padded(spec.shape.size());
      }
      layer->bind(std::move(pv), std::move(gv), std::move(bv));
    }
  }

  /// One tensor of the store: which layer, which spec, where in its buffer.
  struct Entry {
    Layer<T>* layer;
    TensorSpec spec;
    std::size_t offset;
    bool trainable;  // in params/grads (true) or in buffers (false)
    std::size_t index;  // position in the layer's parameter_specs() or buffer_specs()
  };
  const std::vector<Entry>& entries() const noexcept { return entries_; }

  // The flat buffers include padding between tensors; padding stays zero in
  // params and grads, so optimizers may run over the whole buffer.
  Tensor<T>& params() noexcept { return params_; }
  Tensor<T>& grads() noexcept { return grads_; }
  Tensor<T>& buffers() noexcept { return buffers_; }
  const Tensor<T>& params() const noexcept { return params_; }
  const Tensor<T>& grads() const noexcept { return grads_; }
  const Tensor<T>& buffers() const noexcept { return buffers_; }

 private:
  Tensor<T> params_;   // (P,) all trainable parameters
  Tensor<T> grads_;    // (P,) their gradients
  Tensor<T> buffers_;  // (B,) non-trainable state
  std::vector<Entry> entries_;
};

}  // namespace lamina
