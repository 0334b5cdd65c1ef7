// lamina/train/progress.hpp: the training progress display.
//
// On a terminal: a bar redrawn in place with the ETA and running loss and
// accuracy. Elsewhere (a log file, CI): one plain line per epoch, so logs stay
// readable.
#pragma once

#include <chrono>
#include <cstdio>
#include <iomanip>
#include <ostream>
#include <sstream>
#include <string>

#include <unistd.h>

namespace lamina {

enum class Verbosity { automatic, quiet, lines, bar };

namespace detail {

inline bool stdout_is_terminal() { return ::isatty(STDOUT_FILENO) == 1; }

inline std::string format_seconds(double s) {
  std::ostringstream out;
  if (s < 60) {
    out << std::fixed << std::setprecision(s < 10 ? 1 : 0) << s << "s";
  } else {
    const long total = static_cast<long>(s + 0.5);
    if (total >= 3600) out << total / 3600 << "h";
    out << std::setw(total >= 3600 ? 2 : 1) << std::setfill('0') << (total % 3600) / 60 << "m" << std::setw(2)
        << total % 60 << "s";
  }
  return out.str();
}

class ProgressBar {
 public:
  ProgressBar(std::ostream& out, bool bar) : out_(out), bar_(bar) {}

  void start_epoch(std::size_t epoch, std::size_t epochs, std::size_t batches) {
    epoch_ = epoch;
    epochs_ = epochs;
    batches_ = batches;
    start_ = std::chrono::steady_clock::now();
    last_draw_ = start_ - std::chrono::seconds(1);
    if (!bar_) return;
    out_ << "Epoch " << epoch << "/" << epochs << "\n";
  }
  void update(std::size_t batch_done, double loss, double accuracy) {
    if (!bar_) return;
    const auto now = std::chrono::steady_clock::now();
    if (batch_done != batches_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const double eta = batch_done ? elapsed / static_cast<double>(batch_done) * static_cast<double>(batches_ - batch_done) : 0;
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(kWidth * batch_done / (batches_ ? batches_ : 1));
    std::ostringstream line;
    line << "\r" << std::setw(static_cast<int>(std::to_string(batches_).size())) << batch_done << "/" << batches_ << " [";
    for (int i = 0; i < kWidth; ++i) line << (i < filled ? '=' : (i == filled ? '>' : '.'));
    line << "] " << (batch_done == batches_ ? format_seconds(elapsed) : "ETA " + format_seconds(eta))
         << " - loss: " << std::fixed << std::setprecision(4) << loss << " - accuracy: " << accuracy << "   ";
    out_ << line.str() << std::flush;
  }
  /// The epoch's closing text (" - val_loss: ..."), on the bar's line or as a line of its own.
  void end_epoch(const std::string& summary) {
    if (bar_) {
      out_ << summary << "\n" << std::flush;
    } else {
      out_ << "Epoch " << epoch_ << "/" << epochs_ << summary << "\n" << std::flush;
    }
  }

 private:
  std::ostream& out_;
  bool bar_;
  std::size_t epoch_ = 0, epochs_ = 0, batches_ = 0;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace detail
}  // namespace lamina
