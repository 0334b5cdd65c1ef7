// lamina/model/sequential.hpp: a linear stack of layers, trained with
// softmax cross-entropy.
//
//   Sequential<float> model(Shape{28, 28, 1}, /*seed=*/42);
//   model.add<Flatten>();
//   model.add<Dense>(256, Init::he_normal);
//   model.add<ReLU>();
//   model.add<Dense>(10);                    // logits; softmax is fused into the loss
//   model.compile(std::make_unique<Adam<float>>(1e-3));
//   History h = model.fit(x_train, y_train, options, &validation);
//
// The model owns one flat parameter buffer (see ParameterStore), built when the
// first layer-independent operation (compile, summary, fit, predict, ...) needs
// it; after that the architecture is fixed and add() throws.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <iostream>
#include <locale>
#include <memory>
#include <numeric>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "lamina/core/error.hpp"
#include "lamina/core/rng.hpp"
#include "lamina/core/tensor.hpp"
#include "lamina/io/layer_registry.hpp"
#include "lamina/io/safetensors.hpp"
#include "lamina/layers/layer.hpp"
#include "lamina/loss/softmax_cross_entropy.hpp"
#include "lamina/model/history.hpp"
#include "lamina/model/progress.hpp"
#include "lamina/optim/clip.hpp"
#include "lamina/optim/optimizer.hpp"
#include "lamina/optim/update_plan.hpp"

namespace lamina {

template <class T>
class Sequential;

/// What fit() does when a training step's loss or gradient is NaN or Inf. In
/// every case the step's parameter update is decided BEFORE it is applied.
enum class OnNonFinite {
  /// Throw NumericalError naming the epoch, the batch and (for a gradient) the
  /// layer and tensor. The step is not applied and BatchNormalization's moving
  /// statistics are restored, so the model is as the previous step left it.
  stop,
  /// Leave the parameters and moving statistics as they were, count the batch in
  /// EpochStats::skipped_batches and go on with the next batch.
  skip_batch,
  /// Apply the step anyway (Keras's behaviour): the weights may become NaN.
  apply,
};

template <class T>
struct FitOptions {
  std::size_t epochs = 1;
  std::size_t batch_size = 32;
  std::uint64_t shuffle_seed = 0;  // the order of the mini-batches
  bool shuffle = true;
  Verbosity verbosity = Verbosity::automatic;  // bar on a terminal, lines elsewhere
  std::ostream* log = &std::cout;
  /// What to do when the loss or a gradient is NaN or Inf (see OnNonFinite).
  OnNonFinite on_non_finite = OnNonFinite::stop;
  /// If > 0: before each update, scale the gradients down so that their global
  /// L2 norm (all trainable tensors together, summed in double in a fixed order)
  /// is at most this (PyTorch's clip_grad_norm_: g *= max / (norm + 1e-6)).
  double clip_gradient_norm = 0;
  /// Called before each epoch (1-based), e.g. to set the learning rate.
  std::function<void(std::size_t epoch, Sequential<T>& model)> on_epoch_begin;
  /// Called after each epoch with its statistics.
  std::function<void(const EpochStats&, Sequential<T>& model)> on_epoch_end;
  /// Transforms each training batch in place (N, ...) before the step, with a
  /// seeded stream of fit's own: data augmentation.
  std::function<void(TensorView<T> batch, Rng& rng)> augment;
  std::uint64_t augment_seed = 0;
  /// Checkpoints (docs/robustness.md): every `checkpoint_every` epochs (0:
  /// never) fit writes the weights, moving statistics, optimizer state, every
  /// random stream (shuffle, augmentation, Dropout), the sample order, the
  /// epoch and the history to `checkpoint_path`, atomically (the file is
  /// either the previous checkpoint or the new one, never half of each).
  std::filesystem::path checkpoint_path;
  std::size_t checkpoint_every = 0;
  /// A checkpoint to resume from: fit restores everything it holds and goes on
  /// with the next epoch up to `epochs`, so the result is bit-identical to a run
  /// that was never interrupted. The model and optimizer must be built and
  /// compiled as they were, and the data, batch size, shuffle and augment
  /// settings be the same: each is checked (the data by CRC-32) before anything
  /// changes, and a mismatch throws naming it.
  std::filesystem::path resume_from;
};

template <class T>
class Sequential;
template <class T>
void save_checkpoint(Sequential<T>& model, const FitProgress& progress, const std::filesystem::path& path);
template <class T>
void load_checkpoint(Sequential<T>& model, const std::filesystem::path& path, FitProgress& progress);

template <class T>
class Sequential {
 public:
  /// `input_shape`: one sample (no batch dimension), e.g. (28, 28, 1).
  /// `seed`: weight initialisation and the layers' own streams (Dropout).
  explicit Sequential(const Shape& input_shape, std::uint64_t seed = 0)
      : input_shape_(input_shape), seed_(seed) {
    if (input_shape.rank() == 0 || input_shape.size() == 0)
      throw ShapeError("Sequential: the input shape must have at least one element, got " + input_shape.to_string());
  }
  Sequential(const Sequential&) = delete;
  Sequential& operator=(const Sequential&) = delete;
  Sequential(Sequential&&) noexcept = default;
  Sequential& operator=(Sequential&&) noexcept = default;

  /// Adds a layer, builds it against the current output shape, and returns it.
  Layer<T>& add(std::unique_ptr<Layer<T>> layer) {
    if (built_) throw Error("Sequential: cannot add layers after the model is built");
    const Shape in = output_shape();
    layer->set_index(static_cast<int>(layers_.size()));
    try {
      layer->build(in);
    } catch (const ShapeError& e) {
      std::string where = layers_.empty() ? std::string("the model input")
                                          : "the output of " + layers_.back()->describe();
      throw ShapeError(std::string(e.what()) + " (" + where + ")");
    }
    // The model's input is data: nobody needs its gradient, nor the gradient of
    // any layer's input that only parameter-free layers separate from the data.
    bool parameters_before = false;
    for (const auto& l : layers_) parameters_before |= !l->parameter_specs().empty();
    layer->set_input_gradient_needed(parameters_before);
    layers_.push_back(std::move(layer));
    return *layers_.back();
  }
  /// model.add<Dense>(256, Init::he_normal): constructs L<T>(args...).
  template <template <class> class L, class... Args>
  L<T>& add(Args&&... args) {
    return static_cast<L<T>&>(add(std::make_unique<L<T>>(std::forward<Args>(args)...)));
  }

  /// Allocates and initialises the parameters (done implicitly by the first
  /// operation that needs them). Layer i draws from Rng(seed).fork(i).
  void build() {
    if (built_) return;
    if (layers_.empty()) throw Error("Sequential: the model has no layers");
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

  void compile(std::unique_ptr<Optimizer<T>> optimizer) {
    build();
    optimizer_ = std::move(optimizer);
    optimizer_->prepare(store_.params().size());
  }

  // ---- inspection ----------------------------------------------------------
  const Shape& input_shape() const noexcept { return input_shape_; }
  Shape output_shape() const { return layers_.empty() ? input_shape_ : layers_.back()->output_shape(); }
  std::size_t size() const noexcept { return layers_.size(); }
  Layer<T>& layer(std::size_t i) { return *layers_.at(i); }
  const Layer<T>& layer(std::size_t i) const { return *layers_.at(i); }
  ParameterStore<T>& store() { build(); return store_; }
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

  /// The Keras-style table: layer (type), output shape, parameter count, totals.
  /// Layers are named as Keras names them: the snake_case type, numbered from
  /// the second of a kind ("conv2d", "conv2d_1", ...).
  std::string summary() const {
    std::vector<std::string> names, shapes, counts;
    std::vector<std::pair<std::string, int>> seen;  // base name -> how many so far
    for (const auto& l : layers_) {
      const std::string base = layer_type_snake_case(l->type());
      int k = 0;
      bool found = false;
      for (auto& [name, count] : seen)
        if (name == base) {
          k = ++count;
          found = true;
        }
      if (!found) seen.emplace_back(base, 0);
      names.push_back(" " + (k == 0 ? base : base + "_" + std::to_string(k)) + " (" + l->type() + ")");
      shapes.push_back(l->output_shape().to_string("None"));
      std::size_t params = l->parameter_count();
      for (const auto& spec : l->buffer_specs()) params += spec.shape.size();
      counts.push_back(group_thousands(params));
    }
    std::size_t w1 = 29, w2 = 26;
    for (std::size_t i = 0; i < names.size(); ++i) {
      w1 = std::max(w1, names[i].size() + 2);
      w2 = std::max(w2, shapes[i].size() + 2);
    }
    const std::size_t width = w1 + w2 + 11;
    const std::string rule(width, '_'), thick(width, '=');
    std::ostringstream out;
    out << "Model: \"sequential\"\n" << rule << "\n" << std::left << std::setw(static_cast<int>(w1))
        << " Layer (type)" << std::setw(static_cast<int>(w2)) << "Output Shape" << "Param #\n" << thick << "\n";
    for (std::size_t i = 0; i < names.size(); ++i)
      out << std::setw(static_cast<int>(w1)) << names[i] << std::setw(static_cast<int>(w2)) << shapes[i] << counts[i]
          << "\n";
    const std::size_t trainable = trainable_parameter_count(), frozen = non_trainable_parameter_count();
    out << thick << "\n";
    out << "Total params: " << group_thousands(trainable + frozen) << "\n";
    out << "Trainable params: " << group_thousands(trainable) << "\n";
    out << "Non-trainable params: " << group_thousands(frozen) << "\n";
    out << "(softmax is fused into the loss: the last layer outputs logits)\n" << rule << "\n";
    return out.str();
  }

  // ---- computation ---------------------------------------------------------
  /// Runs the layers on x (N, ...input shape) and returns the logits (N, C).
  TensorView<const T> forward(TensorView<const T> x, Mode mode) {
    build();
    TensorView<const T> h = x;
    for (auto& l : layers_) h = l->forward(h, mode);
    return h;
  }
  /// Back-propagates d(loss)/d(logits) through the layers; fills the gradients.
  /// Stops at the first layer whose input gradient nobody needs: the layers
  /// before it have no parameters.
  void backward(TensorView<const T> grad_logits) {
    TensorView<const T> g = grad_logits;
    for (std::size_t i = layers_.size(); i-- > 0;) {
      g = layers_[i]->backward(g);
      if (!layers_[i]->input_gradient_needed()) break;
    }
  }

  /// One optimisation step on a batch; returns (mean loss, number correct).
  /// The batch and labels are checked first (shape, finite values, labels in
  /// range): a bad batch throws and changes nothing.
  std::pair<double, std::size_t> train_step(TensorView<const T> x, const std::int32_t* labels) {
    check_step(x, labels, "train_step");
    const auto result = gradients_unchecked(x, labels);
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
    return gradients_unchecked(x, labels);
  }
  /// The second half of train_step: one optimizer update from the gradients.
  void apply_gradients() {
    if (!optimizer_) throw Error("Sequential: call compile() before training");
    optimizer_->step(store_.params().data(), store_.grads().data(), store_.params().size(), update_plan_);
  }

  /// Writes the model to a safetensors file, atomically (see io/model_io.hpp
  /// and docs/model-files.md); lamina::load_model<T>(path) reads it back.
  void save(const std::string& path) const { save_model(*this, path); }

  /// Trains on (x, labels); validation data is optional. Every argument is
  /// checked before anything changes; see FitOptions for non-finite steps,
  /// gradient clipping, checkpoints and resuming.
  History fit(TensorView<const T> x, const std::vector<std::int32_t>& labels, const FitOptions<T>& options,
              TensorView<const T> x_val = {}, const std::vector<std::int32_t>& y_val = {}) {
    if (!optimizer_) throw Error("Sequential: call compile() before fit()");
    check_data(x, labels, "fit");
    const bool has_val = x_val.data() != nullptr || !y_val.empty();
    if (has_val) check_data(x_val, y_val, "fit (validation data)");
    if (options.batch_size == 0) throw ArgumentError("fit: batch_size must be at least 1");
    if (options.batch_size > x.dim(0))
      throw ArgumentError("fit: batch_size " + std::to_string(options.batch_size) + " is larger than the " +
                          std::to_string(x.dim(0)) + " training samples");
    if (!(options.clip_gradient_norm >= 0) || !std::isfinite(options.clip_gradient_norm))
      throw ArgumentError("fit: clip_gradient_norm must be a finite number >= 0 (0: no clipping), got " +
                          std::to_string(options.clip_gradient_norm));
    if (options.checkpoint_every > 0 && options.checkpoint_path.empty())
      throw ArgumentError("fit: checkpoint_every is " + std::to_string(options.checkpoint_every) +
                          " but checkpoint_path is empty");

    const std::size_t n = x.dim(0), batch = options.batch_size;
    const std::size_t batches = (n + batch - 1) / batch;
    const std::size_t sample = input_shape_.size();

    FitProgress progress;
    progress.samples = n;
    progress.batch_size = batch;
    progress.shuffle = options.shuffle;
    progress.shuffle_seed = options.shuffle_seed;
    progress.augment = static_cast<bool>(options.augment);
    progress.augment_seed = options.augment_seed;
    if (options.checkpoint_every > 0 || !options.resume_from.empty()) {
      std::uint32_t crc = crc32_update(0, x.data(), x.size() * sizeof(T));
      progress.data_crc32 = crc32_update(crc, labels.data(), labels.size() * sizeof(std::int32_t));
    }
    Rng shuffle_rng(options.shuffle_seed);
    Rng augment_rng = Rng(options.augment_seed).fork(0xA09);
    progress.order.resize(n);
    std::iota(progress.order.begin(), progress.order.end(), std::uint64_t{0});
    if (!options.resume_from.empty()) {
      load_checkpoint(*this, options.resume_from, progress);  // checks everything, then restores
      shuffle_rng.restore(progress.shuffle_rng);
      augment_rng.restore(progress.augment_rng);
    }
    std::vector<std::uint64_t>& order = progress.order;

    Tensor<T> batch_x;  // (B, ...input) gathered samples, reused
    std::vector<std::int32_t> batch_y;
    Tensor<T> saved_buffers;  // (B,) moving statistics before a step, restored if the step is refused
    const bool bar = options.verbosity == Verbosity::bar ||
                     (options.verbosity == Verbosity::automatic && options.log == &std::cout &&
                      detail::stdout_is_terminal());
    const bool quiet = options.verbosity == Verbosity::quiet || options.log == nullptr;
    std::ostringstream sink;
    detail::ProgressBar progress_bar(quiet ? sink : *options.log, bar && !quiet);

    History history;
    history.epochs = progress.epochs;
    for (std::size_t epoch = progress.epochs_done + 1; epoch <= options.epochs; ++epoch) {
      if (options.on_epoch_begin) options.on_epoch_begin(epoch, *this);
      const auto start = std::chrono::steady_clock::now();
      if (options.shuffle) shuffle_rng.shuffle(order);
      progress_bar.start_epoch(epoch, options.epochs, batches);
      EpochStats stats;
      double loss_sum = 0;
      std::size_t correct = 0, seen = 0;
      for (std::size_t b = 0; b < batches; ++b) {
        const std::size_t begin = b * batch, count = std::min(batch, n - begin);
        batch_x.resize(input_shape_.prepend(count));
        batch_y.resize(count);
        for (std::size_t i = 0; i < count; ++i) {
          const std::size_t src = static_cast<std::size_t>(order[begin + i]);
          std::copy_n(x.data() + src * sample, sample, batch_x.data() + i * sample);
          batch_y[i] = labels[src];
        }
        if (options.augment) options.augment(batch_x.view(), augment_rng);
        saved_buffers.resize(store_.buffers().shape());
        std::copy_n(store_.buffers().data(), saved_buffers.size(), saved_buffers.data());
        const auto [loss, batch_correct] = gradients_unchecked(batch_x.view(), batch_y.data());  // checked above
        const double norm = gradient_norm(store_.grads().data(), update_plan_);
        stats.max_gradient_norm = std::max(stats.max_gradient_norm, norm);  // NaN-safe: max keeps the first
        if ((!std::isfinite(loss) || !std::isfinite(norm)) && options.on_non_finite != OnNonFinite::apply) {
          std::copy_n(saved_buffers.data(), saved_buffers.size(), store_.buffers().data());
          if (options.on_non_finite == OnNonFinite::stop) throw non_finite_error(loss, epoch, b + 1);
          ++stats.skipped_batches;
        } else {
          if (options.clip_gradient_norm > 0 && norm > options.clip_gradient_norm) {
            scale_gradients(store_.grads().data(), update_plan_, options.clip_gradient_norm / (norm + 1e-6));
            ++stats.clipped_batches;
          }
          apply_gradients();
          loss_sum += loss * static_cast<double>(count);
          correct += batch_correct;
          seen += count;
        }
        progress_bar.update(b + 1, seen ? loss_sum / static_cast<double>(seen) : 0.0,
                            seen ? static_cast<double>(correct) / static_cast<double>(seen) : 0.0);
      }
      const double train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      stats.epoch = epoch;
      // Over the batches that were applied (all of them unless some were skipped).
      stats.train_loss = seen ? loss_sum / static_cast<double>(seen) : std::nan("");
      stats.train_accuracy = seen ? static_cast<double>(correct) / static_cast<double>(seen) : 0.0;
      stats.train_images_per_second = static_cast<double>(n) / train_seconds;
      stats.learning_rate = optimizer_->learning_rate();
      if (has_val) {
        const Evaluation val = evaluate(x_val, y_val);
        stats.has_validation = true;
        stats.val_loss = val.loss;
        stats.val_accuracy = val.accuracy;
      }
      stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::ostringstream line;
      line << std::fixed << std::setprecision(4);
      if (!bar) line << " - " << detail::format_seconds(stats.seconds) << " - " << std::setprecision(0)
                     << stats.train_images_per_second << " images/s" << std::setprecision(4)
                     << " - loss: " << stats.train_loss << " - accuracy: " << stats.train_accuracy;
      if (bar) line << " - " << std::setprecision(0) << stats.train_images_per_second << " images/s" << std::setprecision(4);
      if (has_val) line << " - val_loss: " << stats.val_loss << " - val_accuracy: " << stats.val_accuracy;
      if (stats.clipped_batches) line << " - clipped: " << stats.clipped_batches;
      if (stats.skipped_batches) line << " - skipped (non-finite): " << stats.skipped_batches;
      progress_bar.end_epoch(line.str());
      history.epochs.push_back(stats);
      if (options.on_epoch_end) options.on_epoch_end(stats, *this);
      if (options.checkpoint_every > 0 && epoch % options.checkpoint_every == 0) {
        progress.epochs_done = epoch;
        progress.shuffle_rng = shuffle_rng.snapshot();
        progress.augment_rng = augment_rng.snapshot();
        progress.epochs = history.epochs;
        save_checkpoint(*this, progress, options.checkpoint_path);
      }
    }
    return history;
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
  /// same time). Each call runs on a private copy of the layers (made through
  /// the layer registry from their types and configs, so custom layers must be
  /// registered with lamina::register_layer) that reads the model's parameters
  /// and moving statistics in place and owns its own activation buffers. The
  /// result is bit-identical to serial calls. lamina's thread count applies
  /// inside each call: with k calling threads, set_num_threads(1) avoids
  /// running k * num_threads() OpenMP threads on the cores.
  Tensor<T> predict(TensorView<const T> x, std::size_t batch_size = 500) const {
    check_input(x, "predict");
    check_finite_input(x, "predict");
    if (batch_size == 0) throw ArgumentError("predict: batch_size must be at least 1");
    if (!built_)
      throw Error("predict: the model is not built yet, so it has no weights (call build(), compile() or fit(), "
                  "or load one with load_model)");
    const Shape out_shape = output_shape();
    if (out_shape.rank() != 1) throw ShapeError("predict: the model output must be (N, classes), got " + out_shape.to_string("N"));
    const std::vector<std::unique_ptr<Layer<T>>> replica = inference_replica();
    const std::size_t n = x.dim(0);
    const std::size_t c = out_shape[0];
    Tensor<T> probabilities(Shape{n, c});  // (N, C)
    for (std::size_t begin = 0; begin < n; begin += batch_size) {
      const std::size_t count = std::min(batch_size, n - begin);
      TensorView<const T> logits = x.slice(begin, begin + count);  // (B, ...) then (B, C)
      for (const auto& layer : replica) logits = layer->forward(logits, Mode::eval);
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

 private:
  static std::string group_thousands(std::size_t n) {
    std::string digits = std::to_string(n), out;
    for (std::size_t i = 0; i < digits.size(); ++i) {
      if (i && (digits.size() - i) % 3 == 0) out += ',';
      out += digits[i];
    }
    return out;
  }
  static std::size_t count_correct(TensorView<const T> probabilities, const std::int32_t* labels) {
    const std::size_t n = probabilities.dim(0), c = probabilities.dim(1);
    std::size_t correct = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const T* row = probabilities.data() + i * c;
      if (std::max_element(row, row + c) - row == labels[i]) ++correct;
    }
    return correct;
  }
  void check_input(TensorView<const T> x, const char* what) const {
    if (x.data() == nullptr || x.rank() == 0 || x.dim(0) == 0)
      throw ArgumentError(std::string(what) + ": the data set is empty");
    if (x.shape().drop_first() != input_shape_ || x.rank() != input_shape_.rank() + 1)
      throw ShapeError(std::string(what) + ": the model takes input " + input_shape_.to_string("N") + ", got " +
                       x.shape().to_string());
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
  void check_labels(const std::int32_t* labels, std::size_t n, const char* what) const {
    const std::size_t classes = output_shape().size();
    for (std::size_t i = 0; i < n; ++i)
      if (labels[i] < 0 || static_cast<std::size_t>(labels[i]) >= classes)
        throw ArgumentError(std::string(what) + ": label " + std::to_string(labels[i]) + " of sample " +
                            std::to_string(i) + " is outside 0.." + std::to_string(classes - 1) +
                            " (the model has " + std::to_string(classes) + " outputs)");
  }
  void check_finite_input(TensorView<const T> x, const char* what) const {
    const T* data = x.data();
    if (all_finite(data, x.size())) return;
    for (std::size_t i = 0; i < x.size(); ++i)
      if (!std::isfinite(data[i]))
        throw ArgumentError(std::string(what) + ": input value " + std::to_string(static_cast<double>(data[i])) +
                            " (not finite) at sample " + std::to_string(i / input_shape_.size()) + ", element " +
                            std::to_string(i % input_shape_.size()));
  }
  void check_data(TensorView<const T> x, const std::vector<std::int32_t>& labels, const char* what) {
    build();
    check_input(x, what);
    if (labels.size() != x.dim(0))
      throw ArgumentError(std::string(what) + ": " + std::to_string(x.dim(0)) + " samples but " +
                          std::to_string(labels.size()) + " labels");
    check_labels(labels.data(), labels.size(), what);
    check_finite_input(x, what);
  }
  // train_step's and compute_gradients' checks, before anything changes.
  void check_step(TensorView<const T> x, const std::int32_t* labels, const char* what) const {
    if (!optimizer_) throw Error("Sequential: call compile() before training");
    check_input(x, what);
    if (labels == nullptr) throw ArgumentError(std::string(what) + ": no labels");
    check_labels(labels, x.dim(0), what);
    check_finite_input(x, what);
  }
  // compute_gradients without the checks: fit checked the whole data set.
  std::pair<double, std::size_t> gradients_unchecked(TensorView<const T> x, const std::int32_t* labels) {
    TensorView<const T> logits = forward(x, Mode::train);
    const double loss = loss_.forward(logits, labels);
    const std::size_t correct = count_correct(loss_.probabilities(), labels);
    backward(loss_.backward());
    return {loss, correct};
  }
  // Fresh layers of the same types and configs, built for the same shapes and
  // bound to this model's parameters, gradients and buffers (which an
  // evaluation-mode forward only reads): what predict() runs on.
  std::vector<std::unique_ptr<Layer<T>>> inference_replica() const {
    const LayerRegistry<T>& registry = LayerRegistry<T>::global();
    std::vector<std::unique_ptr<Layer<T>>> replica;
    for (const auto& original : layers_) {
      if (!registry.contains(original->type()))
        throw Error("predict: " + original->describe() + " is not in the layer registry, so predict cannot make "
                    "the private copy it runs on; register the type with lamina::register_layer<T>");
      std::unique_ptr<Layer<T>> layer = registry.create(original->type(), original->config());
      layer->set_index(original->index());
      layer->copy_execution_settings(*original);
      layer->build(original->input_shape());
      layer->set_input_gradient_needed(false);
      layer->bind(original->parameters(), original->gradients(), original->buffers());
      replica.push_back(std::move(layer));
    }
    return replica;
  }

  // The error for a step whose loss or gradient is not finite: names the epoch,
  // the batch and, for a gradient, the tensor where backward met the fault
  // first: the non-finite gradient of the LAST layer that has one (earlier
  // layers only inherit it), its first such tensor.
  NumericalError non_finite_error(double loss, std::size_t epoch, std::size_t batch) const {
    auto text = [](double v) { return std::isnan(v) ? std::string("NaN") : v > 0 ? std::string("+Inf") : std::string("-Inf"); };
    const std::string at = " at epoch " + std::to_string(epoch) + ", batch " + std::to_string(batch);
    const std::string hint = " (the step was not applied; lower the learning rate, set clip_gradient_norm, or choose "
                             "another FitOptions::on_non_finite)";
    if (!std::isfinite(loss)) return NumericalError("fit: the loss became " + text(loss) + at + hint);
    const Tensor<T>& g = store_.grads();
    const typename ParameterStore<T>::Entry* culprit = nullptr;
    double value = 0;
    for (const auto& e : store_.entries()) {
      if (!e.trainable || (culprit && e.layer->index() <= culprit->layer->index())) continue;
      for (std::size_t i = e.offset; i < e.offset + e.spec.shape.size(); ++i)
        if (!std::isfinite(g[i])) {
          culprit = &e;
          value = static_cast<double>(g[i]);
          break;
        }
    }
    if (culprit)
      return NumericalError("fit: a gradient became " + text(value) + at + ", in " + culprit->layer->describe() + " " +
                            culprit->spec.name + hint);
    // Every gradient is finite, but the sum of their squares overflowed a double.
    return NumericalError("fit: the gradient norm overflowed" + at + hint);
  }

  Shape input_shape_;
  std::uint64_t seed_;
  std::vector<std::unique_ptr<Layer<T>>> layers_;
  ParameterStore<T> store_;
  UpdatePlan update_plan_;  // which thread updates which parameters (optim/update_plan.hpp)
  bool built_ = false;
  std::unique_ptr<Optimizer<T>> optimizer_;
  SoftmaxCrossEntropy<T> loss_;       // training
  SoftmaxCrossEntropy<T> eval_loss_;  // evaluate(), so that it does not disturb training state
  double last_loss_ = 0;
};

}  // namespace lamina

// fit() writes and resumes checkpoints, and save() writes model files: their
// definitions need Sequential complete, so they come after it.
#include "lamina/io/checkpoint.hpp"
#include "lamina/io/model_io.hpp"
