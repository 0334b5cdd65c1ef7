// lamina/model/model.hpp: what every lamina model is, whatever its wiring.
//
// A Model<T> owns its layers, one flat parameter buffer (ParameterStore), the
// optimizer and the loss (softmax cross-entropy on logits). What a kind of
// model adds is its wiring: how a forward pass runs a list of layers and how
// the gradient flows back through them (Sequential: one after the other).
// Everything else is written here once and shared: building, compile, the
// training step in its two halves, evaluate, predict, the input checks.
// The training loop lives apart (train/fit.hpp), as do model files and
// checkpoints (io/), so that this header needs neither nlohmann-json nor stb.
//
// Shapes are fixed when the model is built (the first operation that needs the
// parameters builds it); after that the architecture cannot change.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "lamina/core/error.hpp"
#include "lamina/core/rng.hpp"
#include "lamina/core/tensor.hpp"
#include "lamina/layers/layer.hpp"
#include "lamina/loss/softmax_cross_entropy.hpp"
#include "lamina/metrics/classification.hpp"
#include "lamina/model/history.hpp"
#include "lamina/optim/optimizer.hpp"
#include "lamina/optim/update_plan.hpp"

namespace lamina {

template <class T>
class Model {
 public:
  using value_type = T;
  using LayerList = std::vector<std::unique_ptr<Layer<T>>>;

  virtual ~Model() = default;
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  Model(Model&&) noexcept = default;
  Model& operator=(Model&&) noexcept = default;

  /// The Keras-style table of the layers and their parameter counts.
  virtual std::string summary() const = 0;
  /// The output of one sample (no batch dimension), e.g. (10).
  virtual Shape output_shape() const = 0;

  /// Allocates and initialises the parameters (done implicitly by the first
  /// operation that needs them). Layer i draws from Rng(seed).fork(i).
  void build() {
    if (built_) return;
    if (layers_.empty()) throw Error(kind_ + ": the model has no layers");
    std::vector<Layer<T>*> raw;
    for (auto& l : layers_) raw.push_back(l.get());
    store_.allocate(raw);
    update_plan_ = make_update_plan(store_);
    const Rng root(seed_);
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      Rng rng = root.fork(i);
      layers_[i]->initialize(rng);
    }
    built_ = true;
  }
  bool built() const noexcept { return built_; }

  /// Builds the model and gives it the optimizer that apply_gradients uses.
  void compile(std::unique_ptr<Optimizer<T>> optimizer) {
    build();
    optimizer_ = std::move(optimizer);
    optimizer_->prepare(store_.params().size());
  }

  // ---- inspection ----------------------------------------------------------
  const Shape& input_shape() const noexcept { return input_shape_; }
  /// The layers in the order forward runs them (error messages use this index).
  std::size_t size() const noexcept { return layers_.size(); }
  Layer<T>& layer(std::size_t i) { return *layers_.at(i); }
  const Layer<T>& layer(std::size_t i) const { return *layers_.at(i); }
  ParameterStore<T>& store() { build(); return store_; }
  const ParameterStore<T>& store() const noexcept { return store_; }
  /// How apply_gradients splits the optimizer's work over threads (see
  /// optim/update_plan.hpp): the plan for store().
  const UpdatePlan& update_plan() { build(); return update_plan_; }
  Optimizer<T>* optimizer() noexcept { return optimizer_.get(); }
  std::uint64_t seed() const noexcept { return seed_; }

  std::size_t trainable_parameter_count() const {
    std::size_t n = 0;
    for (const auto& l : layers_) n += l->parameter_count();
    return n;
  }
  std::size_t non_trainable_parameter_count() const {
    std::size_t n = 0;
    for (const auto& l : layers_)
      for (const auto& spec : l->buffer_specs()) n += spec.shape.size();
    return n;
  }

  // ---- computation ---------------------------------------------------------
  /// Runs the layers on x (N, ...input shape) and returns the logits (N, C).
  TensorView<const T> forward(TensorView<const T> x, Mode mode) {
    build();
    return run_forward(layers_, x, mode);
  }
  /// Back-propagates d(loss)/d(logits) through the layers; fills the gradients.
  void backward(TensorView<const T> grad_logits) { run_backward(layers_, grad_logits); }

  /// One optimisation step on a batch; returns (mean loss, number correct).
  /// The batch and labels are checked first (shape, finite values, labels in
  /// range): a bad batch throws and changes nothing.
  std::pair<double, std::size_t> train_step(TensorView<const T> x, const std::int32_t* labels) {
    check_step(x, labels, "train_step");
    const auto result = compute_gradients_unchecked(x, labels);
    apply_gradients();
    return result;
  }
  /// The first half of train_step: forward in training mode, the loss, and
  /// backward, which fills the gradients (store().grads()). No parameter
  /// changes; BatchNormalization's moving statistics and Dropout's stream do
  /// advance, as in any training forward. Returns (mean loss, number correct).
  /// Checks its arguments as train_step does.
  std::pair<double, std::size_t> compute_gradients(TensorView<const T> x, const std::int32_t* labels) {
    check_step(x, labels, "compute_gradients");
    return compute_gradients_unchecked(x, labels);
  }
  /// compute_gradients without the checks, for a caller that has checked the
  /// whole data set once (fit does, with check_data): x must be (N, input
  /// shape) with finite values and the labels in range.
  std::pair<double, std::size_t> compute_gradients_unchecked(TensorView<const T> x, const std::int32_t* labels) {
    TensorView<const T> logits = forward(x, Mode::train);
    const double loss = loss_.forward(logits, labels);
    const std::size_t correct = count_correct(loss_.probabilities(), labels);
    backward(loss_.backward());
    return {loss, correct};
  }
  /// The second half of train_step: one optimizer update from the gradients.
  void apply_gradients() {
    if (!optimizer_) throw Error(kind_ + ": call compile() before training");
    optimizer_->step(store_.params().data(), store_.grads().data(), store_.params().size(), update_plan_);
  }

  /// Loss and accuracy in evaluation mode, in batches of `batch_size`.
  Evaluation evaluate(TensorView<const T> x, const std::vector<std::int32_t>& labels, std::size_t batch_size = 500) {
    check_data(x, labels, "evaluate");
    if (batch_size == 0) throw ArgumentError("evaluate: batch_size must be at least 1");
    const std::size_t n = x.dim(0);
    double loss_sum = 0;
    std::size_t correct = 0;
    for (std::size_t begin = 0; begin < n; begin += batch_size) {
      const std::size_t count = std::min(batch_size, n - begin);
      TensorView<const T> logits = forward(x.slice(begin, begin + count), Mode::eval);
      loss_sum += eval_loss_.forward(logits, labels.data() + begin) * static_cast<double>(count);
      correct += count_correct(eval_loss_.probabilities(), labels.data() + begin);
    }
    return {loss_sum / static_cast<double>(n), static_cast<double>(correct) / static_cast<double>(n), n};
  }

  /// Class probabilities (N, C) in evaluation mode.
  ///
  /// Const, and safe to call from several threads at once on one model (while
  /// nothing modifies it: no fit, train_step, compile or load into it at the
  /// same time). Each call runs on a private copy of the layers (Layer::clone:
  /// the same types, configs and kernel choices) that reads the model's
  /// parameters and moving statistics in place and owns its own activation
  /// buffers. The result is bit-identical to serial calls. lamina's thread
  /// count applies inside each call: with k calling threads,
  /// set_num_threads(1) avoids running k * num_threads() OpenMP threads on the
  /// cores.
  Tensor<T> predict(TensorView<const T> x, std::size_t batch_size = 500) const {
    check_input(x, "predict");
    check_finite_input(x, "predict");
    if (batch_size == 0) throw ArgumentError("predict: batch_size must be at least 1");
    if (!built_)
      throw Error("predict: the model is not built yet, so it has no weights (call build(), compile() or fit(), "
                  "or load one with load_model)");
    const Shape out_shape = output_shape();
    if (out_shape.rank() != 1) throw ShapeError("predict: the model output must be (N, classes), got " + out_shape.to_string("N"));
    const LayerList replica = inference_replica();
    const std::size_t n = x.dim(0);
    const std::size_t c = out_shape[0];
    Tensor<T> probabilities(Shape{n, c});  // (N, C)
    for (std::size_t begin = 0; begin < n; begin += batch_size) {
      const std::size_t count = std::min(batch_size, n - begin);
      TensorView<const T> logits = run_forward(replica, x.slice(begin, begin + count), Mode::eval);  // (B, C)
      for (std::size_t i = 0; i < count; ++i)
        SoftmaxCrossEntropy<T>::softmax_row(logits.data() + i * c, probabilities.data() + (begin + i) * c, c, -1);
    }
    return probabilities;
  }
  /// The most probable class of each sample (thread safety as predict()).
  std::vector<std::int32_t> predict_classes(TensorView<const T> x, std::size_t batch_size = 500) const {
    Tensor<T> p = predict(x, batch_size);
    return argmax_rows<T>(p.view());
  }

  // ---- checks, shared with the training loop ------------------------------
  /// Throws unless x is (N >= 1, input shape).
  void check_input(TensorView<const T> x, const char* what) const {
    if (x.data() == nullptr || x.rank() == 0 || x.dim(0) == 0)
      throw ArgumentError(std::string(what) + ": the data set is empty");
    if (x.shape().drop_first() != input_shape_ || x.rank() != input_shape_.rank() + 1)
      throw ShapeError(std::string(what) + ": the model takes input " + input_shape_.to_string("N") + ", got " +
                       x.shape().to_string());
  }
  /// Throws naming the first label outside 0..classes-1.
  void check_labels(const std::int32_t* labels, std::size_t n, const char* what) const {
    const std::size_t classes = output_shape().size();
    for (std::size_t i = 0; i < n; ++i)
      if (labels[i] < 0 || static_cast<std::size_t>(labels[i]) >= classes)
        throw ArgumentError(std::string(what) + ": label " + std::to_string(labels[i]) + " of sample " +
                            std::to_string(i) + " is outside 0.." + std::to_string(classes - 1) +
                            " (the model has " + std::to_string(classes) + " outputs)");
  }
  /// Throws naming the first NaN or Inf of x, by sample and element.
  void check_finite_input(TensorView<const T> x, const char* what) const {
    const T* data = x.data();
    if (all_finite(data, x.size())) return;
    for (std::size_t i = 0; i < x.size(); ++i)
      if (!std::isfinite(data[i]))
        throw ArgumentError(std::string(what) + ": input value " + std::to_string(static_cast<double>(data[i])) +
                            " (not finite) at sample " + std::to_string(i / input_shape_.size()) + ", element " +
                            std::to_string(i % input_shape_.size()));
  }
  /// A whole labelled data set: builds the model, then every check above and
  /// one label per sample.
  void check_data(TensorView<const T> x, const std::vector<std::int32_t>& labels, const char* what) {
    build();
    check_input(x, what);
    if (labels.size() != x.dim(0))
      throw ArgumentError(std::string(what) + ": " + std::to_string(x.dim(0)) + " samples but " +
                          std::to_string(labels.size()) + " labels");
    check_labels(labels.data(), labels.size(), what);
    check_finite_input(x, what);
  }

 protected:
  /// `kind`: the model's kind in messages ("Sequential"); `input_shape`: one
  /// sample; `seed`: weight initialisation and the layers' own streams.
  Model(std::string kind, const Shape& input_shape, std::uint64_t seed)
      : kind_(std::move(kind)), input_shape_(input_shape), seed_(seed) {
    if (input_shape.rank() == 0 || input_shape.size() == 0)
      throw ShapeError(kind_ + ": the input shape must have at least one element, got " + input_shape.to_string());
  }

  /// The wiring: runs `layers` (the model's own, or predict's private copy of
  /// them, in the same order) on x and returns the logits.
  virtual TensorView<const T> run_forward(const LayerList& layers, TensorView<const T> x, Mode mode) const = 0;
  /// The wiring backwards: from d(loss)/d(logits) through the model's layers.
  virtual void run_backward(const LayerList& layers, TensorView<const T> grad_logits) const = 0;

  /// Appends a built layer (the kind of model builds it against its input).
  Layer<T>& append_layer(std::unique_ptr<Layer<T>> layer) {
    if (built_) throw Error(kind_ + ": cannot add layers after the model is built");
    layers_.push_back(std::move(layer));
    return *layers_.back();
  }
  const LayerList& layers() const noexcept { return layers_; }
  const std::string& kind() const noexcept { return kind_; }

 private:
  static std::size_t count_correct(TensorView<const T> probabilities, const std::int32_t* labels) {
    const std::size_t n = probabilities.dim(0), c = probabilities.dim(1);
    std::size_t correct = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const T* row = probabilities.data() + i * c;
      if (std::max_element(row, row + c) - row == labels[i]) ++correct;
    }
    return correct;
  }
  // Whether no element is NaN or Inf: an exponent of all ones, tested on the
  // bits so that the loop vectorises (an OR reduction is exact in any order).
  static bool all_finite(const T* data, std::size_t n) {
    using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    constexpr Bits exponent = static_cast<Bits>(sizeof(T) == 4 ? 0x7f800000ull : 0x7ff0000000000000ull);
    Bits bad = 0;
    for (std::size_t i = 0; i < n; ++i) {
      Bits bits;
      std::memcpy(&bits, data + i, sizeof bits);
      bad |= static_cast<Bits>((bits & exponent) == exponent);
    }
    return bad == 0;
  }
  // train_step's and compute_gradients' checks, before anything changes.
  void check_step(TensorView<const T> x, const std::int32_t* labels, const char* what) const {
    if (!optimizer_) throw Error(kind_ + ": call compile() before training");
    check_input(x, what);
    if (labels == nullptr) throw ArgumentError(std::string(what) + ": no labels");
    check_labels(labels, x.dim(0), what);
    check_finite_input(x, what);
  }
  // Copies of the layers (Layer::clone), built for the same shapes and bound
  // to this model's parameters, gradients and buffers (which an
  // evaluation-mode forward only reads): what predict() runs on.
  LayerList inference_replica() const {
    LayerList replica;
    for (const auto& original : layers_) {
      std::unique_ptr<Layer<T>> layer = original->clone();
      if (!layer || layer->type() != original->type())
        throw Error("predict: " + original->describe() + "'s clone() did not return a layer of its type");
      layer->set_index(original->index());
      layer->build(original->input_shape());
      layer->set_input_gradient_needed(false);
      layer->bind(original->parameters(), original->gradients(), original->buffers());
      replica.push_back(std::move(layer));
    }
    return replica;
  }

  std::string kind_;
  Shape input_shape_;
  std::uint64_t seed_;
  LayerList layers_;
  ParameterStore<T> store_;
  UpdatePlan update_plan_;  // which thread updates which parameters (optim/update_plan.hpp)
  bool built_ = false;
  std::unique_ptr<Optimizer<T>> optimizer_;
  SoftmaxCrossEntropy<T> loss_;       // training
  SoftmaxCrossEntropy<T> eval_loss_;  // evaluate(), so that it does not disturb training state
};

}  // namespace lamina
