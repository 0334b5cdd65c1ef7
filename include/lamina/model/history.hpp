// lamina/model/history.hpp: what training records: the statistics of each
// epoch, the history of a fit, an evaluation's loss and accuracy, and where a
// fit stands between two epochs (what a checkpoint holds besides the tensors).
// Plain data, so that the report and the model files need nothing else of the
// model.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "lamina/core/rng.hpp"

namespace lamina {

/// One epoch of fit().
struct EpochStats {
  std::size_t epoch = 0;  // 1-based
  double train_loss = 0, train_accuracy = 0;
  bool has_validation = false;
  double val_loss = 0, val_accuracy = 0;
  double seconds = 0;                  // the whole epoch, validation included
  double train_images_per_second = 0;  // training steps only
  double learning_rate = 0;
  /// Gradient health: the largest global gradient L2 norm of the epoch (before
  /// clipping), how many batches clip_gradient_norm scaled down, and how many
  /// OnNonFinite::skip_batch left out.
  double max_gradient_norm = 0;
  std::size_t clipped_batches = 0;
  std::size_t skipped_batches = 0;
};

struct History {
  std::vector<EpochStats> epochs;
};

/// Loss and accuracy of evaluate().
struct Evaluation {
  double loss = 0;
  double accuracy = 0;
  std::size_t count = 0;
};

/// Where a fit() stands between two epochs: what a checkpoint holds besides
/// the model's tensors and the optimizer's state (see io/checkpoint.hpp), and
/// what the run must match to resume from it.
struct FitProgress {
  std::size_t epochs_done = 0;
  Rng::Snapshot shuffle_rng{};          // fit's mini-batch order stream
  Rng::Snapshot augment_rng{};          // fit's augmentation stream
  std::vector<std::uint64_t> order;     // (N,) the last epoch's sample order: the next shuffle permutes it
  std::vector<EpochStats> epochs;       // the history so far

  // The run's identity: a resumed fit must have the same.
  std::size_t samples = 0;
  std::size_t batch_size = 0;
  bool shuffle = true;
  std::uint64_t shuffle_seed = 0;
  bool augment = false;
  std::uint64_t augment_seed = 0;
  std::uint32_t data_crc32 = 0;         // of the training images' bytes, then the labels'
};

}  // namespace lamina
