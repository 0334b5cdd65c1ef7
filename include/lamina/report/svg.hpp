// lamina/report/svg.hpp: small, dependency-free SVG charts for the report.
//
//   line_chart_svg({{"train", epochs, loss, "#1f77b4"}, {"validation", epochs, val_loss, "#ff7f0e", true}},
//                  {"Loss per epoch", "epoch", "loss"});
//   bar_chart_svg({"0", "1", ...}, counts, {"Images per class", "class", "images"});
//   histogram_svg(histogram, 0, 1, {"Pixel intensities", "value", "pixels"});  // with log_y
//
// Each function returns one <svg> element (class "chart") meant to be inlined
// in an HTML page: axes with "nice" ticks (1, 2 or 5 times a power of ten),
// light grid lines, axis labels, a title and, for several series, a legend.
// Text is escaped; there is no script and no external reference (not even the
// xmlns URL, which HTML's parser does not need for inline SVG). Coordinates are
// written with two decimals, so the same data gives the same bytes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "lamina/core/error.hpp"
#include "lamina/report/escape.hpp"

namespace lamina {

/// One line of a line chart.
struct ChartSeries {
  std::string name;       // legend text
  std::vector<double> x;  // (points,)
  std::vector<double> y;  // (points,); a non-finite value leaves a gap in the line
  std::string color = "#1f77b4";
  bool dashed = false;    // a second cue besides colour, for readers who cannot tell the colours apart
};

struct ChartOptions {
  std::string title, x_label, y_label;
  int width = 520, height = 300;  // pixels
  bool include_zero = false;      // stretch the y axis to 0
  bool integer_x = false;         // x ticks on whole numbers only (epochs)
  bool log_y = false;             // bar and histogram charts: log10 y axis, for counts spanning decades
  std::string color = "#4c72b0";  // bars
  bool value_labels = true;       // bar charts: the value above each bar (when there is room)
};

/// Tick positions for an axis.
struct AxisTicks {
  double lo = 0, hi = 1;       // the axis range (the outer ticks)
  std::vector<double> values;  // lo, lo + step, ..., hi
  int decimals = 0;            // enough to tell neighbouring ticks apart
};

namespace detail {

// Heckbert's "nice numbers": the closest of 1, 2, 5, 10 times a power of ten.
inline double nice_number(double x, bool round) {
  const double exponent = std::floor(std::log10(x));
  const double fraction = x / std::pow(10.0, exponent);
  double nice;
  if (round)
    nice = fraction < 1.5 ? 1 : fraction < 3 ? 2 : fraction < 7 ? 5 : 10;
  else
    nice = fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10;
  return nice * std::pow(10.0, exponent);
}

inline std::string number(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.2f", v);
  return buffer;
}

inline std::string format_tick(double v, int decimals) {
  if (std::fabs(v) < 1e-12) v = 0;  // no "-0.00"
  char buffer[48];
  std::snprintf(buffer, sizeof buffer, "%.*f", decimals, v);
  return buffer;
}

// "1", "10", "100", "1k", ..., for log-axis decades.
inline std::string format_decade(int exponent) {
  if (exponent < 0) return format_tick(std::pow(10.0, exponent), -exponent);
  static const char* suffix[] = {"", "k", "M", "G", "T"};
  const int group = std::min(exponent / 3, 4);
  std::string digits = "1" + std::string(static_cast<std::size_t>(exponent - 3 * group), '0');
  return digits + suffix[group];
}

inline std::string format_value(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e15) return format_tick(v, 0);
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.3g", v);
  return buffer;
}

// Plot area and the common pieces of every chart.
struct ChartFrame {
  double width, height;
  double left = 64, right = 16, top = 44, bottom = 46;  // margins
  double x0() const { return left; }
  double x1() const { return width - right; }
  double y0() const { return height - bottom; }  // bottom of the plot area
  double y1() const { return top; }              // top of the plot area

  std::string open(const std::string& title) const {
    const std::string w = format_tick(width, 0), h = format_tick(height, 0);
    std::string s = "<svg class=\"chart\" width=\"" + w + "\" height=\"" + h + "\" viewBox=\"0 0 " + w + " " + h +
                    "\" role=\"img\" aria-label=\"" + escape_html(title) + "\">";
    s += "<title>" + escape_html(title) + "</title>";
    s += "<rect x=\"0\" y=\"0\" width=\"" + w + "\" height=\"" + h + "\" fill=\"#ffffff\"/>";
    s += "<text x=\"" + number(left) + "\" y=\"20\" font-size=\"14\" font-weight=\"600\" fill=\"#222\">" +
         escape_html(title) + "</text>";
    return s;
  }
  std::string axis_labels(const std::string& x_label, const std::string& y_label) const {
    std::string s;
    s += "<text x=\"" + number((x0() + x1()) / 2) + "\" y=\"" + number(height - 8) +
         "\" font-size=\"12\" text-anchor=\"middle\" fill=\"#333\">" + escape_html(x_label) + "</text>";
    const double cy = (y0() + y1()) / 2;
    s += "<text x=\"14\" y=\"" + number(cy) + "\" font-size=\"12\" text-anchor=\"middle\" fill=\"#333\" "
         "transform=\"rotate(-90 14 " + number(cy) + ")\">" + escape_html(y_label) + "</text>";
    s += "<line x1=\"" + number(x0()) + "\" y1=\"" + number(y0()) + "\" x2=\"" + number(x1()) + "\" y2=\"" +
         number(y0()) + "\" stroke=\"#333\"/>";
    s += "<line x1=\"" + number(x0()) + "\" y1=\"" + number(y0()) + "\" x2=\"" + number(x0()) + "\" y2=\"" +
         number(y1()) + "\" stroke=\"#333\"/>";
    return s;
  }
  // A y tick at pixel height y: grid line, tick mark, label.
  std::string y_tick(double y, const std::string& label) const {
    return "<line x1=\"" + number(x0()) + "\" y1=\"" + number(y) + "\" x2=\"" + number(x1()) + "\" y2=\"" + number(y) +
           "\" stroke=\"#e5e5e5\"/><line x1=\"" + number(x0() - 4) + "\" y1=\"" + number(y) + "\" x2=\"" +
           number(x0()) + "\" y2=\"" + number(y) + "\" stroke=\"#333\"/><text x=\"" + number(x0() - 7) + "\" y=\"" +
           number(y + 4) + "\" font-size=\"11\" text-anchor=\"end\" fill=\"#333\">" + escape_html(label) + "</text>";
  }
  std::string x_tick(double x, const std::string& label) const {
    return "<line x1=\"" + number(x) + "\" y1=\"" + number(y0()) + "\" x2=\"" + number(x) + "\" y2=\"" +
           number(y0() + 4) + "\" stroke=\"#333\"/><text x=\"" + number(x) + "\" y=\"" + number(y0() + 16) +
           "\" font-size=\"11\" text-anchor=\"middle\" fill=\"#333\">" + escape_html(label) + "</text>";
  }
};

inline void check_chart_size(const ChartOptions& o, const char* what) {
  if (o.width < 160 || o.height < 120)
    throw ArgumentError(concat(what, ": a chart needs at least 160x120 pixels, got ", o.width, "x", o.height));
}

// Log-axis decades covering the positive values: [10^lo, 10^hi], with the
// smallest positive value strictly above the bottom, so that it gets a bar.
inline std::pair<int, int> log_decades(const std::vector<double>& values) {
  double smallest = std::numeric_limits<double>::infinity(), largest = 0;
  for (double v : values)
    if (std::isfinite(v) && v > 0) {
      smallest = std::min(smallest, v);
      largest = std::max(largest, v);
    }
  if (largest == 0) return {0, 1};
  int lo = static_cast<int>(std::floor(std::log10(smallest)));
  if (std::pow(10.0, lo) >= smallest) --lo;
  int hi = static_cast<int>(std::ceil(std::log10(largest)));
  if (hi <= lo) hi = lo + 1;
  return {lo, hi};
}

}  // namespace detail

/// Ticks for data in [lo, hi]: about `target` of them, 1, 2 or 5 times a power
/// of ten apart, the outer ones enclosing the data. A degenerate range is
/// widened around its value. With `integer`, the step is at least 1.
inline AxisTicks nice_ticks(double lo, double hi, int target = 5, bool integer = false) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) throw ArgumentError("nice_ticks: the range must be finite");
  if (lo > hi) std::swap(lo, hi);
  if (hi - lo < 1e-12 * std::max(1.0, std::fabs(hi))) {
    const double pad = lo == 0 ? 1 : std::fabs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  target = std::max(target, 2);
  const double range = detail::nice_number(hi - lo, false);
  double step = detail::nice_number(range / (target - 1), true);
  if (integer) step = std::max(1.0, std::round(step));
  AxisTicks t;
  t.lo = std::floor(lo / step) * step;
  t.hi = std::ceil(hi / step) * step;
  const int count = static_cast<int>(std::lround((t.hi - t.lo) / step));
  for (int i = 0; i <= count; ++i) t.values.push_back(t.lo + step * i);
  t.decimals = std::max(0, -static_cast<int>(std::floor(std::log10(step) + 1e-9)));
  return t;
}

/// A line chart of one or more series over a shared x axis, with markers at
/// the points, a legend when there are two or more series, and gaps where y is
/// not finite. Throws ArgumentError when a series' x and y differ in length.
inline std::string line_chart_svg(const std::vector<ChartSeries>& series, const ChartOptions& options) {
  detail::check_chart_size(options, "line_chart_svg");
  double x_lo = std::numeric_limits<double>::infinity(), x_hi = -x_lo, y_lo = x_lo, y_hi = -x_lo;
  for (const ChartSeries& s : series) {
    if (s.x.size() != s.y.size())
      throw ArgumentError(detail::concat("line_chart_svg: series '", s.name, "' has ", s.x.size(), " x values and ",
                                         s.y.size(), " y values"));
    for (std::size_t i = 0; i < s.x.size(); ++i)
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) {
        x_lo = std::min(x_lo, s.x[i]);
        x_hi = std::max(x_hi, s.x[i]);
        y_lo = std::min(y_lo, s.y[i]);
        y_hi = std::max(y_hi, s.y[i]);
      }
  }
  detail::ChartFrame f{static_cast<double>(options.width), static_cast<double>(options.height)};
  std::string svg = f.open(options.title);
  const bool empty = !(x_lo <= x_hi);
  if (empty) {
    x_lo = 0, x_hi = 1, y_lo = 0, y_hi = 1;
  }
  if (options.include_zero) {
    y_lo = std::min(y_lo, 0.0);
    y_hi = std::max(y_hi, 0.0);
  }
  const AxisTicks xt = nice_ticks(x_lo, x_hi, 6, options.integer_x), yt = nice_ticks(y_lo, y_hi, 5);
  auto px = [&](double x) { return f.x0() + (x - xt.lo) / (xt.hi - xt.lo) * (f.x1() - f.x0()); };
  auto py = [&](double y) { return f.y0() - (y - yt.lo) / (yt.hi - yt.lo) * (f.y0() - f.y1()); };
  for (double v : yt.values) svg += f.y_tick(py(v), detail::format_tick(v, yt.decimals));
  for (double v : xt.values) svg += f.x_tick(px(v), detail::format_tick(v, xt.decimals));
  svg += f.axis_labels(options.x_label, options.y_label);
  if (empty)
    svg += "<text x=\"" + detail::number((f.x0() + f.x1()) / 2) + "\" y=\"" + detail::number((f.y0() + f.y1()) / 2) +
           "\" font-size=\"12\" text-anchor=\"middle\" fill=\"#888\">no data</text>";

  for (const ChartSeries& s : series) {
    const std::string color = escape_html(s.color);
    std::string d;
    bool pen_down = false;
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) {
        pen_down = false;
        continue;
      }
      d += (pen_down ? " L" : (d.empty() ? "M" : " M")) + detail::number(px(s.x[i])) + " " + detail::number(py(s.y[i]));
      pen_down = true;
    }
    svg += "<g class=\"series\" data-name=\"" + escape_html(s.name) + "\">";
    if (!d.empty())
      svg += "<path d=\"" + d + "\" fill=\"none\" stroke=\"" + color + "\" stroke-width=\"2\"" +
             (s.dashed ? " stroke-dasharray=\"6 4\"" : "") + "/>";
    if (s.x.size() <= 80)
      for (std::size_t i = 0; i < s.x.size(); ++i)
        if (std::isfinite(s.x[i]) && std::isfinite(s.y[i]))
          svg += "<circle cx=\"" + detail::number(px(s.x[i])) + "\" cy=\"" + detail::number(py(s.y[i])) +
                 "\" r=\"3\" fill=\"" + color + "\"/>";
    svg += "</g>";
  }

  if (series.size() >= 2) {
    // Legend in the top margin, right-aligned; text width estimated at 7 px a character.
    double x = f.x1();
    std::string legend;
    for (std::size_t k = series.size(); k-- > 0;) {
      const ChartSeries& s = series[k];
      const double text_width = 7.0 * static_cast<double>(s.name.size());
      x -= text_width;
      legend += "<text x=\"" + detail::number(x) + "\" y=\"" + detail::number(f.y1() - 12) +
                "\" font-size=\"12\" fill=\"#333\">" + escape_html(s.name) + "</text>";
      x -= 30;
      legend += "<line x1=\"" + detail::number(x) + "\" y1=\"" + detail::number(f.y1() - 16) + "\" x2=\"" +
                detail::number(x + 24) + "\" y2=\"" + detail::number(f.y1() - 16) + "\" stroke=\"" +
                escape_html(s.color) + "\" stroke-width=\"2\"" + (s.dashed ? " stroke-dasharray=\"6 4\"" : "") + "/>";
      x -= 14;
    }
    svg += "<g class=\"legend\">" + legend + "</g>";
  }
  return svg + "</svg>";
}

namespace detail {
/// The y axis of a bar chart or histogram: where a value goes, and the value
/// below which a bar is not drawn (the lowest decade on a log axis, 0 on a
/// linear one). Appends the axis ticks to `svg`.
struct YScale {
  std::function<double(double)> position;
  double floor;
};
inline YScale y_scale(const ChartFrame& f, const std::vector<double>& values, bool log_y, std::string& svg) {
  YScale y;
  if (log_y) {
    // Plain variables, not a structured binding: lambdas may capture a
    // binding only from C++20 on (clang rejects it in C++17).
    const auto decades = log_decades(values);
    const int lo = decades.first, hi = decades.second;
    y.position = [=](double v) {
      const double l = v > 0 ? std::log10(v) : lo;
      return f.y0() - (std::max(l, double(lo)) - lo) / (hi - lo) * (f.y0() - f.y1());
    };
    for (int e = lo; e <= hi; ++e) svg += f.y_tick(y.position(std::pow(10.0, e)), format_decade(e));
    y.floor = std::pow(10.0, lo);
  } else {
    double largest = 0;
    for (double v : values) largest = std::max(largest, v);
    const AxisTicks yt = nice_ticks(0, largest > 0 ? largest : 1, 5);
    y.position = [=](double v) { return f.y0() - (v - yt.lo) / (yt.hi - yt.lo) * (f.y0() - f.y1()); };
    for (double v : yt.values) svg += f.y_tick(y.position(v), format_tick(v, yt.decimals));
    y.floor = 0;
  }
  return y;
}
}  // namespace detail

/// A bar chart with one bar per category, the category names under the bars
/// and (with value_labels, when the bars are wide enough) each value above its
/// bar. Throws ArgumentError when labels and values differ in length, or a value
/// is negative or not finite.
inline std::string bar_chart_svg(const std::vector<std::string>& labels, const std::vector<double>& values,
                                 const ChartOptions& options) {
  detail::check_chart_size(options, "bar_chart_svg");
  if (labels.size() != values.size())
    throw ArgumentError(detail::concat("bar_chart_svg: ", labels.size(), " labels for ", values.size(), " values"));
  for (std::size_t i = 0; i < values.size(); ++i)
    if (!std::isfinite(values[i]) || values[i] < 0)
      throw ArgumentError(detail::concat("bar_chart_svg: value ", i, " ('", labels[i], "') is ", values[i],
                                         "; bars need finite values >= 0"));
  detail::ChartFrame f{static_cast<double>(options.width), static_cast<double>(options.height)};
  std::string svg = f.open(options.title);
  const detail::YScale y = detail::y_scale(f, values, options.log_y, svg);
  const auto& py = y.position;
  const double y_floor = y.floor;
  const std::size_t n = values.size();
  const double slot = n ? (f.x1() - f.x0()) / static_cast<double>(n) : 0;
  const double bar = slot * 0.72;
  svg += "<g class=\"bars\">";
  for (std::size_t i = 0; i < n; ++i) {
    const double cx = f.x0() + slot * (static_cast<double>(i) + 0.5);
    const double top = values[i] > y_floor ? py(values[i]) : f.y0();
    svg += "<rect x=\"" + detail::number(cx - bar / 2) + "\" y=\"" + detail::number(top) + "\" width=\"" +
           detail::number(bar) + "\" height=\"" + detail::number(f.y0() - top) + "\" fill=\"" +
           escape_html(options.color) + "\"><title>" + escape_html(labels[i]) + ": " +
           escape_html(detail::format_value(values[i])) + "</title></rect>";
    if (options.value_labels && slot >= 30)
      svg += "<text x=\"" + detail::number(cx) + "\" y=\"" + detail::number(top - 4) +
             "\" font-size=\"10\" text-anchor=\"middle\" fill=\"#333\">" +
             escape_html(detail::format_value(values[i])) + "</text>";
  }
  svg += "</g>";
  // Category labels, thinned out so that they do not overlap.
  const std::size_t every = slot >= 24 ? 1 : static_cast<std::size_t>(std::ceil(24.0 / std::max(slot, 1e-9)));
  for (std::size_t i = 0; i < n; i += every)
    svg += f.x_tick(f.x0() + slot * (static_cast<double>(i) + 0.5), labels[i]);
  svg += f.axis_labels(options.x_label, options.y_label);
  return svg + "</svg>";
}

/// A histogram of `counts` (bins,): bin i covers [x_start + i * bin_width,
/// x_start + (i + 1) * bin_width), drawn as adjacent bars over a numeric x axis.
/// Use options.log_y when one bin dwarfs the rest (MNIST's 0 pixels). Throws
/// ArgumentError for no bins, a bin width <= 0, or a count < 0 or not finite.
inline std::string histogram_svg(const std::vector<double>& counts, double x_start, double bin_width,
                                 const ChartOptions& options) {
  detail::check_chart_size(options, "histogram_svg");
  if (counts.empty()) throw ArgumentError("histogram_svg: no bins");
  if (!(bin_width > 0) || !std::isfinite(bin_width) || !std::isfinite(x_start))
    throw ArgumentError(detail::concat("histogram_svg: bin_width must be finite and > 0, got ", bin_width));
  for (std::size_t i = 0; i < counts.size(); ++i)
    if (!std::isfinite(counts[i]) || counts[i] < 0)
      throw ArgumentError(detail::concat("histogram_svg: count ", i, " is ", counts[i]));
  detail::ChartFrame f{static_cast<double>(options.width), static_cast<double>(options.height)};
  std::string svg = f.open(options.title);
  const double x_end = x_start + bin_width * static_cast<double>(counts.size());
  auto px = [&](double x) { return f.x0() + (x - x_start) / (x_end - x_start) * (f.x1() - f.x0()); };
  const detail::YScale y = detail::y_scale(f, counts, options.log_y, svg);
  const auto& py = y.position;
  const double y_floor = y.floor;
  // One path for all bins: 256 <rect>s would be four times the bytes.
  std::string d;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    if (!(counts[i] > y_floor)) continue;
    const double a = px(x_start + bin_width * static_cast<double>(i)),
                 b = px(x_start + bin_width * static_cast<double>(i + 1)), top = py(counts[i]);
    d += "M" + detail::number(a) + " " + detail::number(f.y0()) + "V" + detail::number(top) + "H" + detail::number(b) +
         "V" + detail::number(f.y0()) + "Z";
  }
  svg += "<path class=\"bins\" d=\"" + (d.empty() ? std::string("M0 0") : d) + "\" fill=\"" +
         escape_html(options.color) + "\"/>";
  const AxisTicks xt = nice_ticks(x_start, x_end, 6);
  for (double v : xt.values)
    if (v >= x_start - 1e-9 && v <= x_end + 1e-9) svg += f.x_tick(px(v), detail::format_tick(v, xt.decimals));
  svg += f.axis_labels(options.x_label, options.y_label);
  return svg + "</svg>";
}

}  // namespace lamina
