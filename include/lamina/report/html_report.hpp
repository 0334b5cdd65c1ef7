// lamina/report/html_report.hpp: the training report, one self-contained HTML file.
//
//   ReportInputs in;
//   in.title = "mnist_mlp";
//   in.facts = {{"seed", "42"}, {"epochs", "20"}};
//   in.data = &raw;                                  // MnistData as loaded: the exploration
//   in.model_summary = model.summary();
//   in.history = history;
//   const Tensor<float> p = model.predict(val.images.view());
//   in.images = val.images.view();                   // (N, 28, 28, 1) in [0, 1]
//   in.labels = val.labels;
//   in.probabilities = p.view();                     // (N, 10)
//   write_html_report("out/mnist_mlp/report.html", in);
//
// The page needs nothing but a browser: charts are inline SVG, digits are PNG
// images inside data: URIs, the style sheet is inline, and nothing is fetched
// (no fonts, no scripts, no URLs). Its sections, each present when its inputs
// are given:
//   1. Data: summary table, images per class (bar chart), pixel intensities
//      (histogram, log scale), sample digits, the mean digit of each class and
//      the data-quality warnings of explore().
//   2. Model: model.summary() as preformatted text.
//   3. Training: loss and accuracy per epoch (train and validation), and the
//      per-epoch table.
//   4. Evaluation: accuracy, top-k accuracy, macro F1; the confusion matrix as
//      a heat map with the counts; the classification report (as a table and in
//      scikit-learn's text layout).
//   5. Errors: the most confidently misclassified digits, with their true and
//      predicted labels and the confidence.
// A short inline script at the end checks, in the reader's browser, that every
// chart was drawn and every image decoded, and says so at the bottom of the page
// (ReportInputs::self_check turns it off). Everything the page shows is a
// deterministic function of the inputs: the same inputs give the same bytes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "lamina/core/error.hpp"
#include "lamina/core/file_io.hpp"
#include "lamina/core/format.hpp"
#include "lamina/core/tensor.hpp"
#include "lamina/data/mnist_data.hpp"
#include "lamina/metrics/classification.hpp"
#include "lamina/metrics/eda.hpp"
#include "lamina/model/history.hpp"
#include "lamina/report/escape.hpp"
#include "lamina/report/html_blocks.hpp"
#include "lamina/report/png.hpp"
#include "lamina/report/svg.hpp"

namespace lamina {

/// Everything the report shows. Plain data: fill what you have; sections
/// whose inputs are missing say so instead of appearing empty. Views must stay
/// valid until html_report() returns.
struct ReportInputs {
  std::string title = "Training report";
  /// Key facts shown under the title, in order (program, seed, epochs, threads,
  /// training time, ...).
  std::vector<std::pair<std::string, std::string>> facts;

  /// The training data as loaded (before scaling): explored for section 1 and
  /// the source of the sample digits. Optional.
  const MnistData* data = nullptr;
  /// A ready exploration of `data`; computed from `data` with eda_options when null.
  const EdaReport* eda = nullptr;
  EdaOptions eda_options;

  /// Model::summary() text.
  std::string model_summary;

  /// fit()'s per-epoch statistics.
  History history;

  /// The evaluated set (normally the validation split): its name in headings,
  /// the images (N, H, W) or (N, H, W, 1) with ink in [0, 1] as to_dataset makes
  /// them (only needed for the error gallery), the true labels (N,) and the
  /// model's class probabilities (N, C), e.g. from a model's predict().
  std::string evaluation_name = "validation";
  TensorView<const float> images;
  std::vector<std::int32_t> labels;
  TensorView<const float> probabilities;

  /// One name per class, or empty for "0", "1", ...
  std::vector<std::string> class_names;

  std::size_t samples_per_class = 10;  // columns of the sample-digit grid
  std::size_t max_errors = 24;         // digits in the error gallery
  int report_digits = 4;               // decimals in the classification report table
  bool self_check = true;              // the inline render check at the end of the page
};

namespace detail {

// ---- section 1: data ---------------------------------------------------------
inline std::string data_section(const ReportInputs& in, const EdaReport* eda, const std::vector<std::string>& names) {
  std::string s = "<section id=\"data\"><h2>1. Data</h2>";
  if (!eda) return s + missing("No data set was given (ReportInputs::data).") + "</section>";
  const EdaReport& e = *eda;
  const std::size_t positions = e.rows * e.cols;
  s += "<table class=\"kv\">";
  s += kv_row("source", escape_html(e.source.empty() ? std::string("(unnamed)") : e.source));
  s += kv_row("images", group_thousands(e.count));
  s += kv_row("image size", std::to_string(e.rows) + " &times; " + std::to_string(e.cols) + " pixels, 8-bit grey");
  s += kv_row("labels", e.labelled ? std::to_string(e.num_classes) + " classes" : std::string("none (unlabelled)"));
  if (e.labelled) {
    char ratio[32];
    std::snprintf(ratio, sizeof ratio, "%.3f", e.imbalance_ratio);
    s += kv_row("largest / smallest class", std::isfinite(e.imbalance_ratio) ? ratio : "a class has no samples");
  }
  s += kv_row("pixel mean \u00b1 std", fixed(e.pixels.mean, 2) + " &plusmn; " + fixed(e.pixels.std, 2) +
                                             " (of 255)");
  s += kv_row("pixel range", std::to_string(e.pixels.min) + " &ndash; " + std::to_string(e.pixels.max));
  s += kv_row("blank pixels (value 0)", percent(e.pixels.blank_share));
  s += kv_row("positions blank in every image",
              std::to_string(e.always_blank_positions) + " of " + std::to_string(positions) + " (" +
                  percent(e.always_blank_position_share) + ")");
  s += kv_row("constant positions", std::to_string(e.constant_positions.size()) + " of " + std::to_string(positions));
  s += kv_row("duplicate images", group_thousands(e.duplicates.duplicate_rows) + " (" +
                                      group_thousands(e.duplicates.conflicting_groups) + " with conflicting labels)");
  s += kv_row("blank images", group_thousands(e.blank_images));
  s += "</table>";

  s += "<div class=\"charts\">";
  if (e.labelled) {
    std::vector<double> counts(e.class_counts.begin(), e.class_counts.end());
    std::vector<std::string> labels(e.num_classes);
    for (std::size_t c = 0; c < e.num_classes; ++c) labels[c] = c < names.size() ? names[c] : std::to_string(c);
    ChartOptions o;
    o.title = "Images per class";
    o.x_label = "class";
    o.y_label = "images";
    s += bar_chart_svg(labels, counts, o);
  }
  {
    std::vector<double> bins(e.pixels.histogram.begin(), e.pixels.histogram.end());
    ChartOptions o;
    o.title = "Pixel intensities (log scale)";
    o.x_label = "pixel value";
    o.y_label = "pixels";
    o.log_y = true;
    o.color = "#55a868";
    s += histogram_svg(bins, 0, 1, o);
  }
  s += "</div>";

  // Sample digits: the first images of each class, in file order, one class a row.
  if (in.data && in.data->count > 0 && in.data->pixels.size() == in.data->count * in.data->image_size()) {
    const MnistData& d = *in.data;
    const std::size_t h = d.rows, w = d.cols, gap = 2, per_row = std::max<std::size_t>(1, in.samples_per_class);
    std::vector<std::vector<std::size_t>> rows;  // image indices of each grid row
    if (d.has_labels() && e.labelled) {
      rows.resize(e.num_classes);
      for (std::size_t i = 0; i < d.count; ++i) {
        const std::size_t label = static_cast<std::size_t>(d.labels[i]);
        if (label < rows.size() && rows[label].size() < per_row) rows[label].push_back(i);
      }
    } else {
      for (std::size_t i = 0; i < std::min(d.count, per_row * 4); ++i) {
        if (i % per_row == 0) rows.emplace_back();
        rows.back().push_back(i);
      }
    }
    const std::size_t grid_w = per_row * (w + gap) + gap, grid_h = rows.size() * (h + gap) + gap;
    std::vector<std::uint8_t> grid(grid_w * grid_h, 200);  // (grid_h, grid_w) grey separators
    for (std::size_t r = 0; r < rows.size(); ++r)
      for (std::size_t k = 0; k < per_row; ++k) {
        const std::uint8_t* image = k < rows[r].size() ? d.pixels.data() + rows[r][k] * d.image_size() : nullptr;
        for (std::size_t y = 0; y < h; ++y)
          for (std::size_t x = 0; x < w; ++x)
            grid[(gap + r * (h + gap) + y) * grid_w + gap + k * (w + gap) + x] =
                image ? paper_from_ink(image[y * w + x]) : 255;
      }
    s += "<h3>Sample digits</h3><figure>" +
         img_tag(encode_png(grid, grid_w, grid_h), grid_w, grid_h, 2.0, "sample digits", "digits") +
         "<figcaption>" +
         (d.has_labels() ? "The first " + std::to_string(per_row) + " images of each class in file order, one class a row."
                         : std::string("The first images in file order.")) +
         "</figcaption></figure>";
  }

  if (e.labelled && e.class_mean_images.size() > 0) {
    s += "<h3>Mean digit of each class</h3><div class=\"gallery\">";
    const std::size_t h = e.rows, w = e.cols;
    for (std::size_t c = 0; c < e.num_classes; ++c) {
      std::vector<std::uint8_t> image(h * w);  // (h, w)
      for (std::size_t p = 0; p < h * w; ++p) image[p] = paper_from_ink(e.class_mean_images[c * h * w + p]);
      const std::string name = c < names.size() ? names[c] : std::to_string(c);
      s += "<figure>" + img_tag(encode_png(image, w, h), w, h, 3.0, "mean digit of class " + name, "digits") +
           "<figcaption>" + escape_html(name) + " (" + group_thousands(e.class_counts[c]) + ")</figcaption></figure>";
    }
    s += "</div>";
  }

  s += "<h3>Data-quality checks</h3>";
  if (e.warnings.empty()) {
    s += "<p class=\"ok\">No problems found: no duplicate or blank images, no constant pixel positions, classes "
         "balanced within the threshold.</p>";
  } else {
    s += "<ul class=\"warnings\">";
    for (const auto& w : e.warnings) s += "<li>" + escape_html(w) + "</li>";
    s += "</ul>";
  }
  return s + "</section>";
}

// ---- section 2: model -------------------------------------------------------------
inline std::string model_section(const ReportInputs& in) {
  std::string s = "<section id=\"model\"><h2>2. Model</h2>";
  if (in.model_summary.empty()) return s + missing("No model summary was given (ReportInputs::model_summary).") + "</section>";
  return s + "<pre class=\"summary\">" + escape_html(in.model_summary) + "</pre></section>";
}

// ---- section 3: training --------------------------------------------------------------
inline std::string training_section(const ReportInputs& in) {
  std::string s = "<section id=\"training\"><h2>3. Training</h2>";
  const auto& epochs = in.history.epochs;
  if (epochs.empty()) return s + missing("No training history was given (ReportInputs::history).") + "</section>";
  const bool val = std::any_of(epochs.begin(), epochs.end(), [](const EpochStats& e) { return e.has_validation; });
  const double nan = std::numeric_limits<double>::quiet_NaN();
  ChartSeries train_loss{"train", {}, {}, "#1f77b4", false}, val_loss{in.evaluation_name, {}, {}, "#ff7f0e", true};
  ChartSeries train_acc = train_loss, val_acc = val_loss;
  for (const EpochStats& e : epochs) {
    const double x = static_cast<double>(e.epoch);
    train_loss.x.push_back(x);
    train_loss.y.push_back(e.train_loss);
    train_acc.x.push_back(x);
    train_acc.y.push_back(e.train_accuracy);
    val_loss.x.push_back(x);
    val_loss.y.push_back(e.has_validation ? e.val_loss : nan);
    val_acc.x.push_back(x);
    val_acc.y.push_back(e.has_validation ? e.val_accuracy : nan);
  }
  std::vector<ChartSeries> loss{train_loss}, accuracy{train_acc};
  if (val) {
    loss.push_back(val_loss);
    accuracy.push_back(val_acc);
  }
  ChartOptions o;
  o.x_label = "epoch";
  o.integer_x = true;
  o.title = "Loss per epoch";
  o.y_label = "cross-entropy";
  o.include_zero = true;
  s += "<div class=\"charts\">" + line_chart_svg(loss, o);
  o.title = "Accuracy per epoch";
  o.y_label = "accuracy";
  o.include_zero = false;
  s += line_chart_svg(accuracy, o) + "</div>";

  s += "<h3>Per epoch</h3><table class=\"grid\"><tr><th>epoch</th><th>loss</th><th>accuracy</th>";
  if (val) s += "<th>" + escape_html(in.evaluation_name) + " loss</th><th>" + escape_html(in.evaluation_name) + " accuracy</th>";
  s += "<th>learning rate</th><th>seconds</th><th>train images/s</th></tr>";
  for (const EpochStats& e : epochs) {
    char lr[32];
    std::snprintf(lr, sizeof lr, "%.3g", e.learning_rate);
    s += "<tr><td>" + std::to_string(e.epoch) + "</td><td>" + fixed(e.train_loss, 4) + "</td><td>" +
         fixed(e.train_accuracy, 4) + "</td>";
    if (val)
      s += "<td>" + fixed_or_dash(e.has_validation, e.val_loss, 4) + "</td><td>" +
           fixed_or_dash(e.has_validation, e.val_accuracy, 4) + "</td>";
    s += "<td>" + escape_html(lr) + "</td><td>" + fixed(e.seconds, 1) + "</td><td>" +
         group_thousands(static_cast<std::size_t>(std::max(0.0, std::round(e.train_images_per_second)))) + "</td></tr>";
  }
  return s + "</table></section>";
}

// ---- sections 4 and 5: evaluation and errors ---------------------------------------
struct EvaluationParts {
  std::string evaluation, errors;
};

inline EvaluationParts evaluation_sections(const ReportInputs& in, std::vector<std::string> names) {
  EvaluationParts out;
  const std::string set = escape_html(in.evaluation_name);
  out.evaluation = "<section id=\"evaluation\"><h2>4. Evaluation on the " + set + " set</h2>";
  out.errors = "<section id=\"errors\"><h2>5. Most confident errors</h2>";
  const TensorView<const float>& p = in.probabilities;
  if (p.data() == nullptr) {
    out.evaluation += missing("No predictions were given (ReportInputs::probabilities).") + "</section>";
    out.errors += missing("No predictions were given (ReportInputs::probabilities).") + "</section>";
    return out;
  }
  if (p.rank() != 2)
    throw ShapeError("html_report: probabilities must be (N, classes), got " + p.shape().to_string());
  const std::size_t n = p.dim(0), classes = p.dim(1);
  if (in.labels.size() != n)
    throw ArgumentError(concat("html_report: ", n, " rows of probabilities but ", in.labels.size(), " labels"));
  if (names.empty()) names = default_class_names(classes);
  if (names.size() != classes)
    throw ArgumentError(concat("html_report: ", names.size(), " class names for ", classes, " classes"));

  const std::vector<std::int32_t> predicted = argmax_rows<float>(p);
  const ConfusionMatrix cm(in.labels, predicted, classes);
  const ClassificationReport report = classification_report(cm, names);

  std::string& s = out.evaluation;
  s += "<div class=\"headline\"><div><b>" + percent(report.accuracy) + "</b>accuracy (" + group_thousands(cm.correct()) +
       " of " + group_thousands(n) + ")</div>";
  for (std::size_t k : {std::size_t{2}, std::size_t{3}})
    if (k < classes)
      s += "<div><b>" + percent(top_k_accuracy<float>(p, in.labels, k)) + "</b>top-" + std::to_string(k) +
           " accuracy</div>";
  s += "<div><b>" + fixed(report.macro_avg.f1, 4) + "</b>macro F1</div><div><b>" + group_thousands(n - cm.correct()) +
       "</b>misclassified</div></div>";

  // Heat map: the diagonal in blue by the share of the row (that class's
  // recall), errors in red by their count relative to the largest error, so
  // that the confusions stand out even when they are a small share of a row.
  static const int blue[3] = {0x2b, 0x6c, 0xb0}, red[3] = {0xc5, 0x30, 0x30};
  std::size_t largest_error = 0;
  for (std::size_t t = 0; t < classes; ++t)
    for (std::size_t q = 0; q < classes; ++q)
      if (t != q) largest_error = std::max(largest_error, cm(t, q));
  s += "<h3>Confusion matrix</h3><table class=\"cm\"><tr><th>true \\ predicted</th>";
  for (std::size_t q = 0; q < classes; ++q) s += "<th>" + escape_html(names[q]) + "</th>";
  s += "<th>total</th></tr>";
  for (std::size_t t = 0; t < classes; ++t) {
    const std::size_t row_total = cm.true_count(t);
    s += "<tr><th>" + escape_html(names[t]) + "</th>";
    for (std::size_t q = 0; q < classes; ++q) {
      const std::size_t v = cm(t, q);
      double amount;
      const int* colour;
      if (t == q) {
        colour = blue;
        amount = row_total ? static_cast<double>(v) / static_cast<double>(row_total) : 0;
      } else {
        colour = red;
        amount = largest_error ? 0.85 * static_cast<double>(v) / static_cast<double>(largest_error) : 0;
      }
      const bool dark = amount > 0.55;
      s += "<td" + std::string(v == 0 ? " class=\"zero\"" : "") + " style=\"background:" + blend(colour, amount) +
           (dark ? ";color:#fff" : "") + "\" title=\"true " + escape_html(names[t]) + ", predicted " +
           escape_html(names[q]) + ": " + std::to_string(v) + "\">" + std::to_string(v) + "</td>";
    }
    s += "<td class=\"total\">" + std::to_string(row_total) + "</td></tr>";
  }
  s += "<tr><th>total</th>";
  for (std::size_t q = 0; q < classes; ++q) s += "<td class=\"total\">" + std::to_string(cm.predicted_count(q)) + "</td>";
  s += "<td class=\"total\">" + std::to_string(cm.total()) + "</td></tr></table>";
  s += "<p style=\"font-size:12px;color:#555\">Rows: true class; columns: predicted class. Diagonal cells are "
       "shaded by the share of their row, the others by their count relative to the largest confusion.</p>";

  const int digits = std::min(std::max(in.report_digits, 0), 15);
  s += "<h3>Classification report</h3><table class=\"grid report\"><tr><th>class</th><th>precision</th>"
       "<th>recall</th><th>f1-score</th><th>support</th></tr>";
  for (std::size_t c = 0; c < classes; ++c)
    s += "<tr><td>" + escape_html(names[c]) + "</td><td>" + fixed(report.precision[c], digits) + "</td><td>" +
         fixed(report.recall[c], digits) + "</td><td>" + fixed(report.f1[c], digits) + "</td><td>" +
         std::to_string(report.support[c]) + "</td></tr>";
  s += "<tr class=\"avg\"><td>accuracy</td><td></td><td></td><td>" + fixed(report.accuracy, digits) + "</td><td>" +
       std::to_string(report.total_support) + "</td></tr>";
  s += "<tr><td>macro avg</td><td>" + fixed(report.macro_avg.precision, digits) + "</td><td>" +
       fixed(report.macro_avg.recall, digits) + "</td><td>" + fixed(report.macro_avg.f1, digits) + "</td><td>" +
       std::to_string(report.total_support) + "</td></tr>";
  s += "<tr><td>weighted avg</td><td>" + fixed(report.weighted_avg.precision, digits) + "</td><td>" +
       fixed(report.weighted_avg.recall, digits) + "</td><td>" + fixed(report.weighted_avg.f1, digits) + "</td><td>" +
       std::to_string(report.total_support) + "</td></tr></table>";
  s += "<details><summary>As text (scikit-learn's layout)</summary><pre class=\"report\">" +
       escape_html(report.to_string(digits)) + "</pre></details></section>";

  // The gallery needs the images.
  std::string& g = out.errors;
  const TensorView<const float>& x = in.images;
  if (x.data() == nullptr) {
    g += missing("No images were given (ReportInputs::images).") + "</section>";
    return out;
  }
  if (!(x.rank() == 3 || (x.rank() == 4 && x.dim(3) == 1)) || x.dim(0) != n)
    throw ShapeError(concat("html_report: images must be (N, H, W) or (N, H, W, 1) with N = ", n,
                            " (the rows of probabilities), got ", x.shape().to_string()));
  const std::size_t h = x.dim(1), w = x.dim(2);
  const std::vector<Misclassification> errors = most_confident_errors<float>(p, in.labels, in.max_errors);
  if (errors.empty()) {
    g += "<p class=\"ok\">Every " + set + " image is classified correctly.</p></section>";
    return out;
  }
  g += "<p>The " + std::to_string(errors.size()) + " misclassified " + set +
       " images the model was surest about, most confident first.</p><div class=\"gallery\">";
  for (const Misclassification& m : errors) {
    std::vector<std::uint8_t> image(h * w);  // (h, w)
    const float* src = x.data() + m.index * h * w;
    for (std::size_t q = 0; q < h * w; ++q) image[q] = paper_from_ink(255.0 * static_cast<double>(src[q]));
    const std::string& t = names[static_cast<std::size_t>(m.true_label)];
    const std::string& pr = names[static_cast<std::size_t>(m.predicted)];
    g += "<figure class=\"error\">" +
         img_tag(encode_png(image, w, h), w, h, 3.0, "true " + t + ", predicted " + pr, "digits") +
         "<figcaption>true <b>" + escape_html(t) + "</b> &rarr; predicted <b>" + escape_html(pr) + "</b><br>" +
         percent(m.confidence, 1) + " (true class " + percent(m.true_probability, 1) + ")<br>#" +
         std::to_string(m.index) + "</figcaption></figure>";
  }
  g += "</div></section>";
  return out;
}

}  // namespace detail

/// The report as one HTML document (UTF-8). Throws ShapeError or ArgumentError
/// when the evaluation inputs do not fit together (naming both sizes), and what
/// explore() throws for bad data.
inline std::string html_report(const ReportInputs& in) {
  EdaReport computed;
  const EdaReport* eda = in.eda;
  if (!eda && in.data) {
    computed = explore(*in.data, in.eda_options);
    eda = &computed;
  }
  std::vector<std::string> names = in.class_names;
  const std::size_t classes = in.probabilities.data() && in.probabilities.rank() == 2 ? in.probabilities.dim(1)
                              : eda                                                     ? eda->num_classes
                                                                                        : 0;
  if (names.empty()) names = detail::default_class_names(classes);

  std::string html;
  html.reserve(1 << 20);
  html += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
          "<meta name=\"generator\" content=\"lamina\"><title>" +
          escape_html(in.title) + "</title><style>" + detail::report_css() + "</style>";
  // Registered first, so that it also sees an image that fails to decode
  // (error events of images do not bubble: listen in the capture phase).
  if (in.self_check)
    html += "<script>window.laminaErrors = []; window.addEventListener('error', function (e) { "
            "window.laminaErrors.push(e.message || ('cannot load ' + (e.target && e.target.tagName))); }, true);"
            "</script>";
  html += "</head><body><main><header><h1>" + escape_html(in.title) + "</h1>";
  if (!in.facts.empty()) {
    html += "<table class=\"kv facts\">";
    for (const auto& [key, value] : in.facts) html += detail::kv_row(key, escape_html(value));
    html += "</table>";
  }
  html += "<nav><a href=\"#data\">Data</a><a href=\"#model\">Model</a><a href=\"#training\">Training</a>"
          "<a href=\"#evaluation\">Evaluation</a><a href=\"#errors\">Errors</a></nav></header>";
  html += detail::data_section(in, eda, names);
  html += detail::model_section(in);
  html += detail::training_section(in);
  const detail::EvaluationParts parts = detail::evaluation_sections(in, in.class_names);
  html += parts.evaluation + parts.errors;
  html += "<footer><p id=\"lamina-self-check\" data-status=\"" + std::string(in.self_check ? "pending" : "off") +
          "\">Written by lamina.</p></footer></main>";
  if (in.self_check) html += detail::self_check_script();
  html += "</body></html>\n";
  return html;
}

/// Writes html_report(in) to `path` (creating its directory), atomically (see
/// AtomicFileWriter): a reader sees the old page or the complete new one.
/// Throws Error naming the path when the file cannot be written.
inline void write_html_report(const std::filesystem::path& path, const ReportInputs& in) {
  const std::string html = html_report(in);
  std::error_code ec;
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
  if (ec) throw Error("write_html_report: cannot create " + path.parent_path().string() + ": " + ec.message());
  AtomicFileWriter file(path);
  file.write(html);
  file.commit();
}

}  // namespace lamina
