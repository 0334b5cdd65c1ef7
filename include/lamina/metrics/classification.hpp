// lamina/metrics/classification.hpp: how good is a classifier, per class.
//
//   std::vector<std::int32_t> y_pred = argmax_rows<float>(probabilities.view());
//   ConfusionMatrix cm(y_true, y_pred, 10);       // rows: true class, columns: predicted
//   std::cout << cm.to_string();
//   ClassificationReport r = classification_report(cm);
//   std::cout << r.to_string();                   // scikit-learn's classification_report layout
//   double top3 = top_k_accuracy(probabilities.view(), y_true, 3);
//
// Everything is counted in integers and divided once, in double, so the
// numbers are the exact ratios (and match scikit-learn's to the last digit
// printed). Classes are 0..C-1 and every one of them is reported, also a class
// that occurs neither in the labels nor in the predictions, which is what
// scikit-learn does when given labels=range(C).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "lamina/core/error.hpp"
#include "lamina/core/tensor.hpp"

namespace lamina {

namespace detail {

// Display width of UTF-8 text: one column per code point, so that a class
// named "ü" is padded like Python pads it (len() counts code points).
inline std::size_t display_width(const std::string& text) {
  std::size_t n = 0;
  for (unsigned char c : text)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}

inline std::string pad_left(const std::string& text, std::size_t width) {
  const std::size_t w = display_width(text);
  return w >= width ? text : std::string(width - w, ' ') + text;
}

inline std::string pad_right(const std::string& text, std::size_t width) {
  const std::size_t w = display_width(text);
  return w >= width ? text : text + std::string(width - w, ' ');
}

// printf's %.*f rounds the exact binary value to nearest, ties to even, the
// same as Python's format(): the two give the same digits.
inline std::string fixed(double value, int digits) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", digits, value);
  return buffer;
}

inline std::vector<std::string> default_class_names(std::size_t classes) {
  std::vector<std::string> names(classes);
  for (std::size_t c = 0; c < classes; ++c) names[c] = std::to_string(c);
  return names;
}

// The names to print for `classes` classes: the given ones (exactly one per
// class) or "0", "1", ...
inline std::vector<std::string> class_names_or_default(const std::vector<std::string>& names, std::size_t classes,
                                                       const char* what) {
  if (names.empty()) return default_class_names(classes);
  if (names.size() != classes)
    throw ArgumentError(concat(what, ": ", names.size(), " class names for ", classes, " classes"));
  return names;
}

}  // namespace detail

/// Index of the largest value of each row of (N, C), the predicted class of
/// each sample; ties go to the lowest index.
template <class T>
std::vector<std::int32_t> argmax_rows(TensorView<const T> scores) {
  const std::size_t n = scores.dim(0), c = scores.dim(1);
  std::vector<std::int32_t> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    const T* row = scores.data() + i * c;
    out[i] = static_cast<std::int32_t>(std::max_element(row, row + c) - row);
  }
  return out;
}

/// Counts of (true class, predicted class) pairs.
class ConfusionMatrix {
 public:
  ConfusionMatrix() = default;

  /// Counts y_true[i] -> y_pred[i] for every i. Labels must be in 0..num_classes-1.
  /// Throws ArgumentError when the vectors are empty or differ in length, when
  /// num_classes is 0, or naming the first label out of range (which vector,
  /// which position, which value).
  ConfusionMatrix(const std::vector<std::int32_t>& y_true, const std::vector<std::int32_t>& y_pred,
                  std::size_t num_classes)
      : classes_(num_classes) {
    if (num_classes == 0) throw ArgumentError("ConfusionMatrix: num_classes must be at least 1");
    if (y_true.empty()) throw ArgumentError("ConfusionMatrix: no labels (y_true and y_pred are empty)");
    if (y_true.size() != y_pred.size())
      throw ArgumentError(detail::concat("ConfusionMatrix: y_true has ", y_true.size(), " labels but y_pred has ",
                                         y_pred.size()));
    check_range(y_true, "y_true");
    check_range(y_pred, "y_pred");
    counts_.assign(num_classes * num_classes, 0);
    for (std::size_t i = 0; i < y_true.size(); ++i)
      ++counts_[static_cast<std::size_t>(y_true[i]) * num_classes + static_cast<std::size_t>(y_pred[i])];
    total_ = y_true.size();
  }

  std::size_t num_classes() const noexcept { return classes_; }
  /// Number of samples of class `true_class` predicted as `predicted_class`.
  std::size_t operator()(std::size_t true_class, std::size_t predicted_class) const {
    if (true_class >= classes_ || predicted_class >= classes_)
      throw ArgumentError(detail::concat("ConfusionMatrix: cell (", true_class, ", ", predicted_class,
                                         ") out of range for ", classes_, " classes"));
    return counts_[true_class * classes_ + predicted_class];
  }
  /// All cells, (C, C) row-major: counts()[t * C + p].
  const std::vector<std::size_t>& counts() const noexcept { return counts_; }
  /// Number of samples counted.
  std::size_t total() const noexcept { return total_; }
  /// Samples whose true class is c (the support of c).
  std::size_t true_count(std::size_t c) const {
    std::size_t n = 0;
    for (std::size_t p = 0; p < classes_; ++p) n += (*this)(c, p);
    return n;
  }
  /// Samples predicted as c.
  std::size_t predicted_count(std::size_t c) const {
    std::size_t n = 0;
    for (std::size_t t = 0; t < classes_; ++t) n += (*this)(t, c);
    return n;
  }
  /// Samples on the diagonal.
  std::size_t correct() const noexcept {
    std::size_t n = 0;
    for (std::size_t c = 0; c < classes_; ++c) n += counts_[c * classes_ + c];
    return n;
  }
  double accuracy() const noexcept {
    return total_ == 0 ? 0.0 : static_cast<double>(correct()) / static_cast<double>(total_);
  }

  /// An aligned text table, true classes down, predicted classes across:
  ///
  ///   true\pred  0  1  2
  ///           0  1  0  0
  ///           1  1  0  0
  ///           2  0  1  2
  ///
  /// Every column is as wide as its widest entry (name or count), columns are
  /// separated by two spaces, and every line ends in '\n'. `class_names`, when
  /// given, must have one name per class.
  std::string to_string(const std::vector<std::string>& class_names = {}) const {
    const std::vector<std::string> names =
        detail::class_names_or_default(class_names, classes_, "ConfusionMatrix::to_string");
    const std::string corner = "true\\pred";
    std::size_t first = detail::display_width(corner);
    for (const auto& n : names) first = std::max(first, detail::display_width(n));
    std::vector<std::size_t> width(classes_);  // (C,) width of each predicted-class column
    for (std::size_t p = 0; p < classes_; ++p) {
      width[p] = detail::display_width(names[p]);
      for (std::size_t t = 0; t < classes_; ++t)
        width[p] = std::max(width[p], std::to_string(counts_[t * classes_ + p]).size());
    }
    std::string out = detail::pad_left(corner, first);
    for (std::size_t p = 0; p < classes_; ++p) out += "  " + detail::pad_left(names[p], width[p]);
    out += '\n';
    for (std::size_t t = 0; t < classes_; ++t) {
      out += detail::pad_left(names[t], first);
      for (std::size_t p = 0; p < classes_; ++p)
        out += "  " + detail::pad_left(std::to_string(counts_[t * classes_ + p]), width[p]);
      out += '\n';
    }
    return out;
  }

 private:
  void check_range(const std::vector<std::int32_t>& labels, const char* which) const {
    for (std::size_t i = 0; i < labels.size(); ++i)
      if (labels[i] < 0 || static_cast<std::size_t>(labels[i]) >= classes_)
        throw ArgumentError(detail::concat("ConfusionMatrix: ", which, "[", i, "] = ", labels[i],
                                           " is outside 0..", classes_ - 1, " (", classes_, " classes)"));
  }

  std::size_t classes_ = 0;
  std::vector<std::size_t> counts_;  // (C, C) row-major: true class, predicted class
  std::size_t total_ = 0;
};

/// Precision, recall and F1 averaged over classes.
struct ClassAverages {
  double precision = 0, recall = 0, f1 = 0;
};

/// Per-class precision, recall, F1 and support, plus accuracy and the macro
/// and support-weighted averages: scikit-learn's classification_report as data.
///
/// Zero division gives 0, as scikit-learn's default (zero_division="warn")
/// does after its warning: precision of a class never predicted, recall of a
/// class with no samples, and F1 when precision + recall is 0.
struct ClassificationReport {
  std::vector<std::string> class_names;  // (C,)
  std::vector<double> precision;         // (C,) tp / (tp + fp)
  std::vector<double> recall;            // (C,) tp / (tp + fn)
  std::vector<double> f1;                // (C,) 2 tp / (2 tp + fp + fn)
  std::vector<std::size_t> support;      // (C,) samples whose true class is c
  double accuracy = 0;                   // correct / total
  ClassAverages macro_avg;               // unweighted mean over the C classes
  ClassAverages weighted_avg;            // mean weighted by support
  std::size_t total_support = 0;         // number of samples

  std::size_t num_classes() const noexcept { return precision.size(); }

  /// The text of scikit-learn's classification_report(..., digits=digits),
  /// character for character: right-aligned columns of width 9 separated by one
  /// space, the name column as wide as the longest of the class names,
  /// "weighted avg" and `digits`, a blank line after the header and after the
  /// classes, and a final '\n'. For y_true = {0,1,2,2,2}, y_pred = {0,0,2,2,1}:
  ///
  ///                 precision    recall  f1-score   support
  ///
  ///              0       0.50      1.00      0.67         1
  ///              1       0.00      0.00      0.00         1
  ///              2       1.00      0.67      0.80         3
  ///
  ///       accuracy                           0.60         5
  ///      macro avg       0.50      0.56      0.49         5
  ///   weighted avg       0.70      0.60      0.61         5
  ///
  /// Throws ArgumentError when digits is not in 0..15.
  std::string to_string(int digits = 2) const {
    if (digits < 0 || digits > 15)
      throw ArgumentError(detail::concat("ClassificationReport::to_string: digits must be in 0..15, got ", digits));
    const std::string last_heading = "weighted avg";
    std::size_t width = std::max(detail::display_width(last_heading), static_cast<std::size_t>(digits));
    for (const auto& n : class_names) width = std::max(width, detail::display_width(n));
    auto column = [](const std::string& s) { return " " + detail::pad_left(s, 9); };
    auto row = [&](const std::string& heading, double p, double r, double f, std::size_t s) {
      return detail::pad_left(heading, width) + " " + column(detail::fixed(p, digits)) +
             column(detail::fixed(r, digits)) + column(detail::fixed(f, digits)) + column(std::to_string(s)) + "\n";
    };
    std::string out = std::string(width, ' ') + " " + column("precision") + column("recall") + column("f1-score") +
                      column("support") + "\n\n";
    for (std::size_t c = 0; c < num_classes(); ++c)
      out += row(class_names[c], precision[c], recall[c], f1[c], support[c]);
    out += "\n";
    // scikit-learn prints accuracy in the f1-score column with empty precision
    // and recall cells.
    out += detail::pad_left("accuracy", width) + " " + column("") + column("") +
           column(detail::fixed(accuracy, digits)) + column(std::to_string(total_support)) + "\n";
    out += row("macro avg", macro_avg.precision, macro_avg.recall, macro_avg.f1, total_support);
    out += row(last_heading, weighted_avg.precision, weighted_avg.recall, weighted_avg.f1, total_support);
    return out;
  }
};

/// The report of a confusion matrix. `class_names`: one per class, or empty
/// for "0", "1", ... Throws ArgumentError for a default-constructed (empty)
/// matrix or a wrong number of names.
inline ClassificationReport classification_report(const ConfusionMatrix& cm,
                                                  const std::vector<std::string>& class_names = {}) {
  const std::size_t classes = cm.num_classes();
  if (classes == 0 || cm.total() == 0)
    throw ArgumentError("classification_report: the confusion matrix is empty");
  ClassificationReport r;
  r.class_names = detail::class_names_or_default(class_names, classes, "classification_report");
  r.precision.resize(classes);
  r.recall.resize(classes);
  r.f1.resize(classes);
  r.support.resize(classes);
  r.total_support = cm.total();
  auto ratio = [](std::size_t num, std::size_t den) {
    return den == 0 ? 0.0 : static_cast<double>(num) / static_cast<double>(den);
  };
  // Sums in class order: a fixed order, so the averages are reproducible.
  for (std::size_t c = 0; c < classes; ++c) {
    const std::size_t tp = cm(c, c), actual = cm.true_count(c), predicted = cm.predicted_count(c);
    r.precision[c] = ratio(tp, predicted);
    r.recall[c] = ratio(tp, actual);
    // 2tp / (2tp + fp + fn) is the harmonic mean of precision and recall
    // without the rounding of the two divisions (scikit-learn computes it so).
    r.f1[c] = ratio(2 * tp, actual + predicted);
    r.support[c] = actual;
    r.macro_avg.precision += r.precision[c];
    r.macro_avg.recall += r.recall[c];
    r.macro_avg.f1 += r.f1[c];
    const double w = static_cast<double>(actual);
    r.weighted_avg.precision += w * r.precision[c];
    r.weighted_avg.recall += w * r.recall[c];
    r.weighted_avg.f1 += w * r.f1[c];
  }
  const double n_classes = static_cast<double>(classes), n = static_cast<double>(r.total_support);
  r.macro_avg.precision /= n_classes;
  r.macro_avg.recall /= n_classes;
  r.macro_avg.f1 /= n_classes;
  r.weighted_avg.precision /= n;
  r.weighted_avg.recall /= n;
  r.weighted_avg.f1 /= n;
  r.accuracy = cm.accuracy();
  return r;
}

/// The report of predictions `y_pred` for labels `y_true` (see ConfusionMatrix
/// for what is checked).
inline ClassificationReport classification_report(const std::vector<std::int32_t>& y_true,
                                                  const std::vector<std::int32_t>& y_pred, std::size_t num_classes,
                                                  const std::vector<std::string>& class_names = {}) {
  return classification_report(ConfusionMatrix(y_true, y_pred, num_classes), class_names);
}

namespace detail {
template <class T>
void check_scores(TensorView<const T> scores, const std::vector<std::int32_t>& labels, const char* what) {
  if (scores.rank() != 2)
    throw ShapeError(concat(what, ": expects probabilities (N, classes), got ", scores.shape().to_string()));
  const std::size_t n = scores.dim(0), c = scores.dim(1);
  if (n == 0 || c == 0) throw ArgumentError(concat(what, ": no samples (probabilities ", scores.shape().to_string(), ")"));
  if (labels.size() != n)
    throw ArgumentError(concat(what, ": ", n, " rows of probabilities but ", labels.size(), " labels"));
  for (std::size_t i = 0; i < n; ++i) {
    if (labels[i] < 0 || static_cast<std::size_t>(labels[i]) >= c)
      throw ArgumentError(concat(what, ": label ", labels[i], " of sample ", i, " is outside 0..", c - 1));
    for (std::size_t j = 0; j < c; ++j)
      if (!std::isfinite(static_cast<double>(scores.data()[i * c + j])))
        throw ArgumentError(concat(what, ": probability (", i, ", ", j, ") is not finite"));
  }
}
}  // namespace detail

/// Share of samples whose true class is among the k highest-scoring classes of
/// `probabilities` (N, C) (any scores work: logits rank the same).
///
/// Ties: the classes of a row are ranked by score, and equal scores by class
/// index, lower first, which is argmax_rows's rule; so top_k_accuracy(p, y, 1)
/// is exactly the accuracy of argmax_rows(p). (scikit-learn's
/// top_k_accuracy_score breaks ties the other way, towards the higher index; the
/// two differ only on rows with tied scores at the k-th place.)
///
/// Throws ShapeError when probabilities is not (N, C); ArgumentError when N is
/// 0, labels.size() != N, a label is outside 0..C-1, a score is not finite, or
/// k is not in 1..C.
template <class T>
double top_k_accuracy(TensorView<const T> probabilities, const std::vector<std::int32_t>& labels, std::size_t k) {
  detail::check_scores(probabilities, labels, "top_k_accuracy");
  const std::size_t n = probabilities.dim(0), c = probabilities.dim(1);
  if (k == 0 || k > c)
    throw ArgumentError(detail::concat("top_k_accuracy: k must be in 1..", c, " (the number of classes), got ", k));
  std::size_t hits = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const T* row = probabilities.data() + i * c;
    const std::size_t y = static_cast<std::size_t>(labels[i]);
    // Rank of the true class = classes ranked before it.
    std::size_t ahead = 0;
    for (std::size_t j = 0; j < c; ++j)
      if (row[j] > row[y] || (row[j] == row[y] && j < y)) ++ahead;
    if (ahead < k) ++hits;
  }
  return static_cast<double>(hits) / static_cast<double>(n);
}

/// One misclassified sample.
struct Misclassification {
  std::size_t index = 0;           // row in the probabilities
  std::int32_t true_label = 0;     // the label
  std::int32_t predicted = 0;      // argmax of the row (ties: lowest index)
  double confidence = 0;           // probability of the predicted class
  double true_probability = 0;     // probability given to the true class
};

/// The misclassified samples of `probabilities` (N, C), most confident first
/// (by the probability of the predicted class, descending; equal confidences in
/// row order), at most `max_count` of them. Checks its input like top_k_accuracy.
template <class T>
std::vector<Misclassification> most_confident_errors(TensorView<const T> probabilities,
                                                     const std::vector<std::int32_t>& labels, std::size_t max_count) {
  detail::check_scores(probabilities, labels, "most_confident_errors");
  const std::size_t n = probabilities.dim(0), c = probabilities.dim(1);
  std::vector<Misclassification> errors;
  for (std::size_t i = 0; i < n; ++i) {
    const T* row = probabilities.data() + i * c;
    const std::size_t best = static_cast<std::size_t>(std::max_element(row, row + c) - row);
    if (static_cast<std::int32_t>(best) == labels[i]) continue;
    errors.push_back({i, labels[i], static_cast<std::int32_t>(best), static_cast<double>(row[best]),
                      static_cast<double>(row[labels[i]])});
  }
  std::stable_sort(errors.begin(), errors.end(),
                   [](const Misclassification& a, const Misclassification& b) { return a.confidence > b.confidence; });
  if (errors.size() > max_count) errors.resize(max_count);
  return errors;
}

}  // namespace lamina
