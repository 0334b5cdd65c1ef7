// lamina/train/fit.hpp: the training loop, for any Model.
//
//   FitOptions<float> options;
//   options.epochs = 20;
//   options.batch_size = 64;
//   History history = fit(model, x_train, y_train, options, x_val, y_val);
//
// fit shuffles the samples each epoch (seeded), runs one training step per
// mini-batch through the model's compute_gradients and apply_gradients,
// guards against non-finite steps, clips gradients on request, evaluates on the
// validation data, reports progress, and writes and resumes checkpoints
// (io/checkpoint.hpp). It lives apart from the models, as dlib's dnn_trainer
// lives apart from its networks, so that every kind of Model shares one loop.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <iostream>
#include <numeric>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "lamina/core/error.hpp"
#include "lamina/core/rng.hpp"
#include "lamina/core/tensor.hpp"
#include "lamina/io/checkpoint.hpp"
#include "lamina/model/history.hpp"
#include "lamina/model/model.hpp"
#include "lamina/optim/clip.hpp"
#include "lamina/train/progress.hpp"

namespace lamina {

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
  std::function<void(std::size_t epoch, Model<T>& model)> on_epoch_begin;
  /// Called after each epoch with its statistics.
  std::function<void(const EpochStats&, Model<T>& model)> on_epoch_end;
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

namespace detail {

// The error for a step whose loss or gradient is not finite: names the epoch,
// the batch and, for a gradient, the tensor where backward met the fault
// first: the non-finite gradient of the LAST layer that has one (earlier
// layers only inherit it), its first such tensor.
template <class T>
NumericalError non_finite_error(const ParameterStore<T>& store, double loss, std::size_t epoch, std::size_t batch) {
  auto text = [](double v) { return std::isnan(v) ? std::string("NaN") : v > 0 ? std::string("+Inf") : std::string("-Inf"); };
  const std::string at = " at epoch " + std::to_string(epoch) + ", batch " + std::to_string(batch);
  const std::string hint = " (the step was not applied; lower the learning rate, set clip_gradient_norm, or choose "
                           "another FitOptions::on_non_finite)";
  if (!std::isfinite(loss)) return NumericalError("fit: the loss became " + text(loss) + at + hint);
  const Tensor<T>& g = store.grads();
  const typename ParameterStore<T>::Entry* culprit = nullptr;
  double value = 0;
  for (const auto& e : store.entries()) {
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

// Keeps an argument out of template deduction, so that a TensorView<T> (or a
// Tensor<T>) converts to the TensorView<const T> that fit takes, T coming
// from the model alone.
template <class U>
struct non_deduced {
  using type = U;
};

}  // namespace detail

/// Trains on (x, labels); validation data is optional. Every argument is
/// checked before anything changes; see FitOptions for non-finite steps,
/// gradient clipping, checkpoints and resuming.
template <class T>
History fit(Model<T>& model, typename detail::non_deduced<TensorView<const T>>::type x,
            const std::vector<std::int32_t>& labels, const FitOptions<T>& options,
            typename detail::non_deduced<TensorView<const T>>::type x_val = {},
            const std::vector<std::int32_t>& y_val = {}) {
  if (!model.optimizer()) throw Error("fit: call compile() before fit()");
  model.check_data(x, labels, "fit");
  const bool has_val = x_val.data() != nullptr || !y_val.empty();
  if (has_val) model.check_data(x_val, y_val, "fit (validation data)");
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

  ParameterStore<T>& store = model.store();
  const UpdatePlan& plan = model.update_plan();
  const std::size_t n = x.dim(0), batch = options.batch_size;
  const std::size_t batches = (n + batch - 1) / batch;
  const std::size_t sample = model.input_shape().size();

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
    load_checkpoint(model, options.resume_from, progress);  // checks everything, then restores
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
    if (options.on_epoch_begin) options.on_epoch_begin(epoch, model);
    const auto start = std::chrono::steady_clock::now();
    if (options.shuffle) shuffle_rng.shuffle(order);
    progress_bar.start_epoch(epoch, options.epochs, batches);
    EpochStats stats;
    double loss_sum = 0;
    std::size_t correct = 0, seen = 0;
    for (std::size_t b = 0; b < batches; ++b) {
      const std::size_t begin = b * batch, count = std::min(batch, n - begin);
      batch_x.resize(model.input_shape().prepend(count));
      batch_y.resize(count);
      for (std::size_t i = 0; i < count; ++i) {
        const std::size_t src = static_cast<std::size_t>(order[begin + i]);
        std::copy_n(x.data() + src * sample, sample, batch_x.data() + i * sample);
        batch_y[i] = labels[src];
      }
      if (options.augment) options.augment(batch_x.view(), augment_rng);
      saved_buffers.resize(store.buffers().shape());
      std::copy_n(store.buffers().data(), saved_buffers.size(), saved_buffers.data());
      const auto [loss, batch_correct] = model.compute_gradients_unchecked(batch_x.view(), batch_y.data());  // checked above
      const double norm = gradient_norm(store.grads().data(), plan);
      stats.max_gradient_norm = std::max(stats.max_gradient_norm, norm);  // NaN-safe: max keeps the first
      if ((!std::isfinite(loss) || !std::isfinite(norm)) && options.on_non_finite != OnNonFinite::apply) {
        std::copy_n(saved_buffers.data(), saved_buffers.size(), store.buffers().data());
        if (options.on_non_finite == OnNonFinite::stop) throw detail::non_finite_error(store, loss, epoch, b + 1);
        ++stats.skipped_batches;
      } else {
        if (options.clip_gradient_norm > 0 && norm > options.clip_gradient_norm) {
          scale_gradients(store.grads().data(), plan, options.clip_gradient_norm / (norm + 1e-6));
          ++stats.clipped_batches;
        }
        model.apply_gradients();
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
    stats.learning_rate = model.optimizer()->learning_rate();
    if (has_val) {
      const Evaluation val = model.evaluate(x_val, y_val);
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
    if (options.on_epoch_end) options.on_epoch_end(stats, model);
    if (options.checkpoint_every > 0 && epoch % options.checkpoint_every == 0) {
      progress.epochs_done = epoch;
      progress.shuffle_rng = shuffle_rng.snapshot();
      progress.augment_rng = augment_rng.snapshot();
      progress.epochs = history.epochs;
      save_checkpoint(model, progress, options.checkpoint_path);
    }
  }
  return history;
}

}  // namespace lamina
