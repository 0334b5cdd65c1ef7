// The HTML training report: structure (sections, charts, images), images that
// really are PNGs of the right size and content, escaping, no external
// references, determinism; and the helpers (base64, PNG, ticks, charts).
#include <lamina/lamina.hpp>
#include <lamina/report/html_report.hpp>

#if __has_include(<stb_image.h>)
#include <stb_image.h>  // the decoder half of libstb, to check our PNGs
#else
#include <stb/stb_image.h>
#endif

#include <fstream>
#include <sstream>

#include "report_fixture.hpp"
#include "support.hpp"

using namespace lamina;
using Catch::Matchers::Contains;

namespace {

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

// Values of every `attribute="..."` in the page.
std::vector<std::string> attribute_values(const std::string& html, const std::string& attribute) {
  std::vector<std::string> out;
  const std::string key = " " + attribute + "=\"";
  for (std::size_t at = html.find(key); at != std::string::npos; at = html.find(key, at + 1)) {
    const std::size_t begin = at + key.size(), end = html.find('"', begin);
    out.push_back(html.substr(begin, end - begin));
  }
  return out;
}

std::vector<std::uint8_t> base64_decode(const std::string& text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  REQUIRE(text.size() % 4 == 0);
  std::vector<std::uint8_t> out;
  bool valid = true;
  for (std::size_t i = 0; i < text.size(); i += 4) {
    int v[4];
    for (int k = 0; k < 4; ++k) v[k] = text[i + k] == '=' ? 0 : value(text[i + k]);
    for (int k = 0; k < 4; ++k) valid = valid && v[k] >= 0;
    if (!valid) break;
    const std::uint32_t bits = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
    out.push_back(static_cast<std::uint8_t>(bits >> 16));
    if (text[i + 2] != '=') out.push_back(static_cast<std::uint8_t>(bits >> 8));
    if (text[i + 3] != '=') out.push_back(static_cast<std::uint8_t>(bits));
  }
  REQUIRE(valid);  // only base64 characters
  return out;
}

struct PngInfo {
  std::uint32_t width = 0, height = 0;
  std::vector<std::uint8_t> grey;  // (height, width) decoded by stb_image
};

// Checks the signature and IHDR by hand, then decodes with stb_image.
PngInfo check_png(const std::vector<std::uint8_t>& png) {
  static const std::uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  REQUIRE(png.size() > 33);
  REQUIRE(std::equal(signature, signature + 8, png.begin()));
  REQUIRE(std::string(png.begin() + 12, png.begin() + 16) == "IHDR");
  auto be32 = [&](std::size_t at) {
    return (std::uint32_t{png[at]} << 24) | (std::uint32_t{png[at + 1]} << 16) | (std::uint32_t{png[at + 2]} << 8) |
           png[at + 3];
  };
  PngInfo info;
  info.width = be32(16);
  info.height = be32(20);
  int w = 0, h = 0, channels = 0;
  unsigned char* pixels =
      stbi_load_from_memory(png.data(), static_cast<int>(png.size()), &w, &h, &channels, /*desired=*/1);
  REQUIRE(pixels != nullptr);
  CHECK(static_cast<std::uint32_t>(w) == info.width);
  CHECK(static_cast<std::uint32_t>(h) == info.height);
  info.grey.assign(pixels, pixels + w * h);
  stbi_image_free(pixels);
  return info;
}

}  // namespace

TEST_CASE("base64 matches RFC 4648's test vectors") {
  auto b64 = [](const std::string& s) { return base64_encode(std::vector<std::uint8_t>(s.begin(), s.end())); };
  CHECK(b64("") == "");
  CHECK(b64("f") == "Zg==");
  CHECK(b64("fo") == "Zm8=");
  CHECK(b64("foo") == "Zm9v");
  CHECK(b64("foob") == "Zm9vYg==");
  CHECK(b64("fooba") == "Zm9vYmE=");
  CHECK(b64("foobar") == "Zm9vYmFy");
  CHECK(base64_encode({0xff, 0xfe, 0x00}) == "//4A");
}

TEST_CASE("encode_png writes a PNG that decodes to the same pixels") {
  std::vector<std::uint8_t> image(7 * 3);  // (3, 7)
  for (std::size_t i = 0; i < image.size(); ++i) image[i] = static_cast<std::uint8_t>(i * 12);
  const PngInfo info = check_png(encode_png(image, 7, 3));
  CHECK(info.width == 7);
  CHECK(info.height == 3);
  CHECK(info.grey == image);
  CHECK_THROWS_WITH(encode_png(image, 0, 3), Contains("empty"));
  CHECK_THROWS_WITH(encode_png(image, 7, 4), Contains("21 bytes for a 7x4x1 image, expected 28"));
  CHECK_THROWS_AS(encode_png(image, 7, 3, 5), ArgumentError);
}

TEST_CASE("escape_html escapes the five special characters") {
  CHECK(escape_html("a<b>&\"c'") == "a&lt;b&gt;&amp;&quot;c&#39;");
  CHECK(escape_html("plain") == "plain");
}

TEST_CASE("nice_ticks picks 1-2-5 steps that enclose the data") {
  const AxisTicks t = nice_ticks(0.03, 0.93, 5);
  CHECK(t.lo == 0.0);
  CHECK(t.hi == Approx(1.0));
  REQUIRE(t.values.size() == 6);
  CHECK(t.values[1] == Approx(0.2));
  CHECK(t.decimals == 1);
  const AxisTicks e = nice_ticks(1, 5, 6, /*integer=*/true);
  CHECK(e.values == std::vector<double>{1, 2, 3, 4, 5});
  CHECK(e.decimals == 0);
  const AxisTicks flat = nice_ticks(2, 2, 5);  // a single value is widened
  CHECK(flat.lo < 2);
  CHECK(flat.hi > 2);
  CHECK_THROWS_AS(nice_ticks(0, std::nan(""), 5), ArgumentError);
}

TEST_CASE("line_chart_svg draws axes, both series, a legend and gaps for NaN") {
  ChartOptions o;
  o.title = "Loss <per> epoch";
  o.x_label = "epoch";
  o.y_label = "loss";
  o.integer_x = true;
  const double nan = std::nan("");
  const std::string svg = line_chart_svg(
      {{"train", {1, 2, 3}, {1.0, 0.5, 0.25}, "#1f77b4"}, {"validation", {1, 2, 3}, {1.2, nan, 0.4}, "#ff7f0e", true}},
      o);
  CHECK(svg.rfind("<svg class=\"chart\"", 0) == 0);
  CHECK(svg.find("</svg>") == svg.size() - 6);
  CHECK_THAT(svg, Contains("Loss &lt;per&gt; epoch"));
  CHECK(count(svg, "<path") == 2);
  CHECK(count(svg, "<circle") == 5);      // the NaN point has no marker
  CHECK_THAT(svg, Contains(" M"));        // the validation line restarts after the gap
  CHECK_THAT(svg, Contains("class=\"legend\""));
  CHECK_THAT(svg, Contains(">validation</text>"));
  CHECK_THAT(svg, Contains("stroke-dasharray"));
  CHECK(count(svg, "http") == 0);
  CHECK_THROWS_AS(line_chart_svg({{"bad", {1, 2}, {1}, "#000"}}, o), ArgumentError);
}

TEST_CASE("bar_chart_svg and histogram_svg") {
  ChartOptions o;
  o.title = "counts";
  const std::string bars = bar_chart_svg({"a", "b", "c"}, {3, 0, 12}, o);
  CHECK(count(bars, "<rect") == 1 + 3);  // background + one per bar
  CHECK_THAT(bars, Contains(">12</text>"));
  CHECK_THROWS_AS(bar_chart_svg({"a"}, {-1}, o), ArgumentError);
  CHECK_THROWS_AS(bar_chart_svg({"a", "b"}, {1}, o), ArgumentError);

  std::vector<double> bins(256, 0);
  bins[0] = 1e6;
  bins[128] = 30;
  bins[255] = 2000;
  o.log_y = true;
  const std::string hist = histogram_svg(bins, 0, 1, o);
  CHECK(count(hist, "Z") == 3);  // three non-empty bins
  CHECK_THAT(hist, Contains(">1M</text>"));
  CHECK_THAT(hist, Contains(">1k</text>"));
  CHECK_THROWS_AS(histogram_svg({}, 0, 1, o), ArgumentError);
}

TEST_CASE("The report has every section, 4 charts and one PNG per digit image") {
  const auto fixture = lamina_test::make_synthetic_report();
  const ReportInputs& in = fixture->inputs;
  const std::string html = html_report(in);

  CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK_THAT(html, Contains("<meta charset=\"utf-8\">"));
  for (const char* id : {"data", "model", "training", "evaluation", "errors"})
    CHECK(count(html, std::string("<section id=\"") + id + "\">") == 1);
  CHECK(count(html, "</section>") == 5);
  CHECK(count(html, "<p class=\"missing\">") == 0);

  // Charts: images per class, pixel histogram, loss, accuracy.
  CHECK(count(html, "<svg") == 4);
  CHECK(count(html, "</svg>") == 4);
  CHECK_THAT(html, Contains("aria-label=\"Images per class\""));
  CHECK_THAT(html, Contains("aria-label=\"Pixel intensities (log scale)\""));
  CHECK_THAT(html, Contains("aria-label=\"Loss per epoch\""));
  CHECK_THAT(html, Contains("aria-label=\"Accuracy per epoch\""));

  // Images: the sample grid, 10 mean digits, and the 6 misclassified digits.
  const std::size_t errors = fixture->wrong.size();
  REQUIRE(errors == 6);
  const std::vector<std::string> sources = attribute_values(html, "src");
  CHECK(count(html, "<img ") == 1 + 10 + errors);
  REQUIRE(sources.size() == 1 + 10 + errors);
  const std::string prefix = "data:image/png;base64,";
  std::vector<PngInfo> pngs;
  for (const std::string& src : sources) {
    REQUIRE(src.rfind(prefix, 0) == 0);
    pngs.push_back(check_png(base64_decode(src.substr(prefix.size()))));
  }
  // The grid: 10 columns and 10 rows of 28x28 digits with 2-pixel gaps.
  CHECK(pngs[0].width == 302);
  CHECK(pngs[0].height == 302);
  for (std::size_t i = 1; i < pngs.size(); ++i) {
    CHECK(pngs[i].width == 28);
    CHECK(pngs[i].height == 28);
  }
  // Mean digit of class 3, drawn ink-dark on white: 255 - round(mean).
  const EdaReport eda = explore(fixture->data);
  for (std::size_t p = 0; p < 784; p += 37)
    CHECK(pngs[1 + 3].grey[p] == 255 - static_cast<int>(std::lround(eda.class_mean_images[3 * 784 + p])));
  // The first error shown is the most confident wrong row; its pixels are its image.
  const auto worst = most_confident_errors(in.probabilities, in.labels, 1);
  REQUIRE(worst.size() == 1);
  const float* image = in.images.data() + worst[0].index * 784;
  for (std::size_t p = 0; p < 784; p += 13)
    CHECK(pngs[11].grey[p] == 255 - static_cast<int>(std::lround(255.0 * static_cast<double>(image[p]))));
  CHECK_THAT(html, Contains("#" + std::to_string(worst[0].index) + "</figcaption>"));

  // Nothing leaves the page: every src is a data: URI, every href an anchor.
  for (const std::string& value : attribute_values(html, "src")) CHECK(value.rfind("data:image/png;base64,", 0) == 0);
  const std::vector<std::string> links = attribute_values(html, "href");
  CHECK(links.size() == 5);
  for (const std::string& value : links) CHECK(value.rfind("#", 0) == 0);
  CHECK(count(html, "http") == 0);
  CHECK(count(html, "<link") == 0);
  CHECK(count(html, "url(") == 0);
  CHECK(count(html, "@import") == 0);
}

TEST_CASE("The report escapes every text and shows the evaluation") {
  const auto fixture = lamina_test::make_synthetic_report();
  const ReportInputs& in = fixture->inputs;
  const std::string html = html_report(in);
  CHECK_THAT(html, Contains("<title>Synthetic &lt;report&gt; &amp; &quot;quotes&quot;</title>"));
  CHECK_THAT(html, Contains("<h1>Synthetic &lt;report&gt; &amp; &quot;quotes&quot;</h1>"));
  CHECK_THAT(html, Contains("&lt;b&gt;not bold&lt;/b&gt;"));
  CHECK_THAT(html, Contains("synthetic digits &lt;seed 7&gt;"));
  CHECK(count(html, "<b>not bold</b>") == 0);
  CHECK_THAT(html, Contains("Model: &quot;sequential&quot;"));  // model.summary(), escaped
  CHECK_THAT(html, Contains("dense_1 (Dense)"));

  // Data-quality warnings: the conflicting duplicate of the fixture.
  CHECK_THAT(html, Contains("<ul class=\"warnings\">"));
  CHECK_THAT(html, Contains("rows 0 (label 0) and 100 (label 6)"));

  // The classification report, as a table and in scikit-learn's text layout.
  const std::vector<std::int32_t> predicted = argmax_rows<float>(in.probabilities);
  const ClassificationReport report = classification_report(in.labels, predicted, 10);
  CHECK_THAT(html, Contains("<pre class=\"report\">" + escape_html(report.to_string(4)) + "</pre>"));
  CHECK_THAT(html, Contains("<td>accuracy</td><td></td><td></td><td>" + detail::fixed(report.accuracy, 4)));
  // 34 of 40 right.
  CHECK_THAT(html, Contains("<b>85.00%</b>accuracy (34 of 40)"));
  // Confusion matrix: one cell per (true, predicted) pair plus totals.
  CHECK(count(html, "title=\"true ") == 100);
  const ConfusionMatrix cm(in.labels, predicted, 10);
  CHECK_THAT(html, Contains("title=\"true 3, predicted 4: " + std::to_string(cm(3, 4)) + "\""));
  CHECK_THAT(html, Contains("title=\"true 0, predicted 0: " + std::to_string(cm(0, 0)) + "\""));
  // The error gallery says true and predicted label and the confidence.
  CHECK(count(html, "<figure class=\"error\">") == 6);
  CHECK_THAT(html, Contains("&rarr; predicted <b>"));

  // The self-check script is there and fetches nothing.
  CHECK_THAT(html, Contains("id=\"lamina-self-check\" data-status=\"pending\""));
  CHECK(count(html, "<script") == 2);
  ReportInputs quiet = in;
  quiet.self_check = false;
  CHECK(count(html_report(quiet), "<script") == 0);
}

TEST_CASE("The report is deterministic and write_html_report writes it") {
  const auto fixture = lamina_test::make_synthetic_report();
  const std::string html = html_report(fixture->inputs);
  CHECK(html_report(fixture->inputs) == html);
  const auto dir = lamina_test::temp_dir("report");
  const auto path = dir / "sub" / "report.html";
  write_html_report(path, fixture->inputs);
  std::ifstream file(path, std::ios::binary);
  std::stringstream content;
  content << file.rdbuf();
  CHECK(content.str() == html);
}

TEST_CASE("Missing inputs leave notes, bad inputs are named") {
  const std::string empty = html_report(ReportInputs{});
  CHECK(count(empty, "<section id=") == 5);
  CHECK(count(empty, "<p class=\"missing\">") == 5);
  CHECK(count(empty, "<svg") == 0);
  CHECK(count(empty, "<img") == 0);

  const auto fixture = lamina_test::make_synthetic_report();
  ReportInputs in = fixture->inputs;
  in.labels.pop_back();
  CHECK_THROWS_WITH(html_report(in), Contains("40 rows of probabilities but 39 labels"));
  in = fixture->inputs;
  in.images = fixture->validation.images.view().slice(0, 39);
  CHECK_THROWS_WITH(html_report(in), Contains("(N, H, W) or (N, H, W, 1) with N = 40"));
  in = fixture->inputs;
  in.class_names = {"zero"};
  CHECK_THROWS_WITH(html_report(in), Contains("1 class names for 10 classes"));
  in = fixture->inputs;
  in.class_names = {"null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"};
  const std::string named = html_report(in);
  CHECK_THAT(named, Contains("title=\"true drei, predicted vier:"));
  CHECK_THAT(named, Contains(">fünf ("));  // the mean digit's caption
}
