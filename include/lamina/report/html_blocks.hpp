// lamina/report/html_blocks.hpp: the building blocks of the report page that
// do not depend on its sections: the inline style sheet, the self-check
// script, digit images as <img> tags, and small formatting helpers. The
// sections themselves are in html_report.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "lamina/metrics/classification.hpp"
#include "lamina/report/escape.hpp"
#include "lamina/report/png.hpp"
#include "lamina/report/svg.hpp"

namespace lamina {
namespace detail {

// Digits are drawn dark on white, like ink on paper: display = 255 - ink,
// with the ink (in pixel units, 0..255) rounded to an integer first.
inline std::uint8_t paper_from_ink(double ink) {
  const double v = std::min(255.0, std::max(0.0, std::isfinite(ink) ? ink : 0.0));
  return static_cast<std::uint8_t>(255 - std::lround(v));
}

inline std::string img_tag(const std::vector<std::uint8_t>& png, std::size_t width, std::size_t height, double scale,
                           const std::string& alt, const std::string& css_class) {
  return "<img class=\"" + css_class + "\" src=\"" + png_data_uri(png) + "\" width=\"" +
         format_tick(static_cast<double>(width) * scale, 0) + "\" height=\"" +
         format_tick(static_cast<double>(height) * scale, 0) + "\" alt=\"" + escape_html(alt) + "\">";
}

inline std::string percent(double share, int decimals = 2) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.*f%%", decimals, 100.0 * share);
  return buffer;
}

inline std::string fixed_or_dash(bool present, double value, int digits) {
  return present ? fixed(value, digits) : std::string("&ndash;");
}

// White blended towards `rgb` by `amount` in [0, 1], as a CSS colour.
inline std::string blend(const int rgb[3], double amount) {
  amount = std::min(1.0, std::max(0.0, amount));
  char buffer[16];
  int c[3];
  for (int k = 0; k < 3; ++k) c[k] = static_cast<int>(std::lround(255.0 + (rgb[k] - 255.0) * amount));
  std::snprintf(buffer, sizeof buffer, "#%02x%02x%02x", c[0], c[1], c[2]);
  return buffer;
}

inline const char* report_css() {
  return "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;margin:0;"
         "background:#f4f5f7;color:#222;line-height:1.4}"
         "main{max-width:1120px;margin:0 auto;padding:16px 24px 40px}"
         "h1{font-size:26px;margin:16px 0 4px}h2{font-size:20px;margin:0 0 12px}h3{font-size:15px;margin:18px 0 8px}"
         "nav a{margin-right:14px;color:#2b5797;text-decoration:none}"
         "section{background:#fff;border:1px solid #dfe2e6;border-radius:8px;padding:16px 24px;margin:16px 0}"
         "table{border-collapse:collapse;font-size:13px}th,td{padding:3px 10px}"
         "table.kv th{text-align:left;font-weight:500;color:#555}"
         "table.grid th{border-bottom:1px solid #ccc;text-align:right}table.grid td{text-align:right}"
         "table.grid tr.avg td,table.grid tr.avg th{border-top:1px solid #ccc}"
         "table.grid th:first-child,table.grid td:first-child{text-align:left}"
         "td.num,table.grid td{font-variant-numeric:tabular-nums}"
         ".charts{display:flex;flex-wrap:wrap;gap:16px}"
         "svg.chart{border:1px solid #eceef1;border-radius:4px;font-family:inherit}"
         "img.digits{image-rendering:pixelated;border:1px solid #ccc}"
         ".gallery{display:flex;flex-wrap:wrap;gap:12px}"
         "figure{margin:0;text-align:center;font-size:12px}figcaption{margin-top:2px}"
         "pre{background:#f3f4f6;padding:12px;overflow-x:auto;font-size:12px;line-height:1.3}"
         "table.cm td{width:46px;height:30px;text-align:center;font-variant-numeric:tabular-nums;"
         "border:1px solid #fff}table.cm th{padding:2px 6px}table.cm td.zero{color:#bbb}"
         "table.cm td.total{background:#f3f4f6;color:#333}"
         "ul.warnings li{color:#8a4b00;margin:3px 0}p.ok{color:#1e7a34}p.missing{color:#888;font-style:italic}"
         ".headline{display:flex;gap:28px;flex-wrap:wrap;margin-bottom:8px}"
         ".headline div{font-size:12px;color:#555}.headline b{display:block;font-size:22px;color:#222}"
         "#lamina-self-check{font-size:12px;color:#666}";
}

inline std::string missing(const std::string& what) { return "<p class=\"missing\">" + escape_html(what) + "</p>"; }

inline std::string kv_row(const std::string& key, const std::string& value_html) {
  return "<tr><th>" + escape_html(key) + "</th><td>" + value_html + "</td></tr>";
}

// Counts, in the reader's browser, the charts that were laid out and the
// images that decoded, plus any error event, and writes the result into
// #lamina-self-check (attributes for tools, a sentence for people).
inline const char* self_check_script() {
  return "<script>\n"
         "(function () {\n"
         "  function check() {\n"
         "    var charts = document.querySelectorAll('svg.chart'), drawn = 0;\n"
         "    for (var i = 0; i < charts.length; ++i) {\n"
         "      var box = charts[i].getBoundingClientRect();\n"
         "      if (box.width > 0 && box.height > 0 && charts[i].querySelector('path, rect, circle')) ++drawn;\n"
         "    }\n"
         "    var images = document.images, decoded = 0, broken = [];\n"
         "    for (var j = 0; j < images.length; ++j) {\n"
         "      if (images[j].complete && images[j].naturalWidth > 0) ++decoded; else broken.push(images[j].alt);\n"
         "    }\n"
         "    var errors = window.laminaErrors || [];\n"
         "    var out = document.getElementById('lamina-self-check');\n"
         "    out.setAttribute('data-charts', String(charts.length));\n"
         "    out.setAttribute('data-charts-drawn', String(drawn));\n"
         "    out.setAttribute('data-images', String(images.length));\n"
         "    out.setAttribute('data-images-decoded', String(decoded));\n"
         "    out.setAttribute('data-errors', String(errors.length));\n"
         "    var ok = drawn === charts.length && decoded === images.length && errors.length === 0;\n"
         "    out.setAttribute('data-status', ok ? 'ok' : 'problems');\n"
         "    out.textContent = 'Checked in this browser: ' + drawn + ' of ' + charts.length + ' charts drawn, ' +\n"
         "        decoded + ' of ' + images.length + ' images decoded' +\n"
         "        (broken.length ? ' (not decoded: ' + broken.join('; ') + ')' : '') +\n"
         "        (errors.length ? ', errors: ' + errors.join('; ') : '') + '.';\n"
         "  }\n"
         "  if (document.readyState === 'complete') check(); else window.addEventListener('load', check);\n"
         "})();\n"
         "</script>";
}

}  // namespace detail
}  // namespace lamina
