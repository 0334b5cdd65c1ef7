// The report in a real browser: headless Chromium loads the generated page
// from disk, the page's own inline check counts the charts that were laid out
// and the images that decoded, and --dump-dom hands the result back; Chromium's
// log (--enable-logging=stderr) must hold no console message at all, since the
// page logs nothing unless something failed. A deliberately broken page proves
// the harness notices failures, and screenshots are left next to the test's
// scratch files for people to look at.
//
// Needs Debian's `chromium` (or $LAMINA_CHROMIUM). Without it the test fails
// under CI and is skipped with a warning elsewhere.
#include <lamina/lamina.hpp>
#include <lamina/report/html_report.hpp>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "report_fixture.hpp"
#include "support.hpp"

using namespace lamina;
namespace fs = std::filesystem;

namespace {

std::string read_text(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream s;
  s << file.rdbuf();
  return s.str();
}

// $LAMINA_CHROMIUM, else the first Chromium or Chrome on $PATH; empty if none.
std::string find_chromium() {
  if (const char* env = std::getenv("LAMINA_CHROMIUM"); env && *env) return env;
  const char* path = std::getenv("PATH");
  if (!path) return {};
  std::stringstream dirs(path);
  std::string dir;
  std::vector<std::string> folders;
  while (std::getline(dirs, dir, ':'))
    if (!dir.empty()) folders.push_back(dir);
  for (const char* name : {"chromium", "chromium-browser", "google-chrome-stable", "google-chrome"})
    for (const auto& folder : folders) {
      const fs::path candidate = fs::path(folder) / name;
      if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
    }
  return {};
}

/// Chromium, or a reason to stop: FAIL under CI, skip with a warning elsewhere.
bool require_chromium(std::string& chromium) {
  chromium = find_chromium();
  if (!chromium.empty()) return true;
  if (std::getenv("CI") != nullptr)
    FAIL("headless Chromium is needed under CI: install Debian's chromium (scripts/install-deps.sh) "
         "or set LAMINA_CHROMIUM");
  WARN("skipping: chromium not found (apt-get install chromium, or set LAMINA_CHROMIUM)");
  return false;
}

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct BrowserRun {
  int status = -1;
  std::string out, err;
};

// Runs Chromium headless on `page` with a fresh profile, no network services,
// time-bound by timeout(1) so that a hung browser fails the test instead of
// hanging it. `mode` is "--dump-dom" or "--screenshot=FILE".
BrowserRun run_chromium(const std::string& chromium, const fs::path& page, const fs::path& work, const std::string& name,
                        const std::string& mode, const std::string& window = "1280,1024") {
  const fs::path profile = work / (name + "-profile"), out = work / (name + ".out"), err = work / (name + ".err");
  fs::remove_all(profile);
  const std::string command =
      "timeout 60 " + quote(chromium) +
      " --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking"
      " --disable-component-update --disable-sync --disable-extensions --hide-scrollbars"
      " --user-data-dir=" + quote(profile.string()) +
      " --enable-logging=stderr --v=0 --virtual-time-budget=5000 --window-size=" + window + " " + mode + " " +
      quote("file://" + fs::absolute(page).string()) + " > " + quote(out.string()) + " 2> " + quote(err.string()) +
      " < /dev/null";
  BrowserRun run;
  const int raw = std::system(command.c_str());
  run.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  run.out = read_text(out);
  run.err = read_text(err);
  fs::remove_all(profile);
  return run;
}

// The data-* attributes of the report's #lamina-self-check element in the DOM.
std::map<std::string, std::string> self_check(const std::string& dom) {
  std::map<std::string, std::string> attributes;
  const std::size_t at = dom.find("id=\"lamina-self-check\"");
  if (at == std::string::npos) return attributes;
  const std::size_t begin = dom.rfind('<', at), end = dom.find('>', at);
  const std::string tag = dom.substr(begin, end - begin);
  for (std::size_t p = tag.find(" data-"); p != std::string::npos; p = tag.find(" data-", p + 1)) {
    const std::size_t eq = tag.find("=\"", p), close = tag.find('"', eq + 2);
    attributes[tag.substr(p + 6, eq - p - 6)] = tag.substr(eq + 2, close - eq - 2);
  }
  const std::size_t text_end = dom.find('<', end);
  attributes["text"] = dom.substr(end + 1, text_end - end - 1);
  return attributes;
}

// Chromium's log lines that carry a console message or an uncaught exception.
std::vector<std::string> console_lines(const std::string& log) {
  std::vector<std::string> lines;
  std::stringstream s(log);
  std::string line;
  while (std::getline(s, line))
    if (line.find("CONSOLE") != std::string::npos || line.find("Uncaught") != std::string::npos)
      lines.push_back(line);
  return lines;
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

// Width and height from a PNG's IHDR, after checking the signature.
std::pair<std::uint32_t, std::uint32_t> png_size(const std::string& png) {
  REQUIRE(png.size() > 24);
  REQUIRE(png.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0);
  REQUIRE(png.compare(12, 4, "IHDR") == 0);
  auto be32 = [&](std::size_t at) {
    std::uint32_t v = 0;
    for (std::size_t k = 0; k < 4; ++k) v = (v << 8) | static_cast<unsigned char>(png[at + k]);
    return v;
  };
  return {be32(16), be32(20)};
}

// Renders `page`, checks it completely, and takes a screenshot `shot`.
void check_in_browser(const std::string& chromium, const fs::path& page, const fs::path& work, const std::string& name,
                      std::size_t charts, std::size_t images) {
  const BrowserRun dom = run_chromium(chromium, page, work, name, "--dump-dom");
  INFO("chromium log:\n" << dom.err);
  REQUIRE(dom.status == 0);
  const auto check = self_check(dom.out);
  INFO("self-check: " << (check.count("text") ? check.at("text") : std::string("(missing)")));
  REQUIRE(check.count("status"));
  CHECK(check.at("status") == "ok");
  CHECK(check.at("charts") == std::to_string(charts));
  CHECK(check.at("charts-drawn") == std::to_string(charts));
  CHECK(check.at("images") == std::to_string(images));
  CHECK(check.at("images-decoded") == std::to_string(images));
  CHECK(check.at("errors") == "0");
  CHECK(console_lines(dom.err).empty());
  // The DOM as the browser built it: the sections and the charts are there.
  CHECK(count(dom.out, "<section id=") == 5);
  CHECK(count(dom.out, "<svg class=\"chart\"") == charts);

  const fs::path shot = work / (name + ".png");
  fs::remove(shot);
  const BrowserRun screenshot =
      run_chromium(chromium, page, work, name + "-screenshot", "--screenshot=" + shot.string(), "1280,5200");
  INFO("chromium log:\n" << screenshot.err);
  REQUIRE(screenshot.status == 0);
  REQUIRE(fs::exists(shot));
  const auto [w, h] = png_size(read_text(shot));
  CHECK(w == 1280);
  CHECK(h == 5200);
  std::cout << "test_report_browser: screenshot of " << page.filename().string() << " in " << shot.string() << "\n";
}

}  // namespace

TEST_CASE("The synthetic report renders in headless Chromium: 4 charts, 17 images, no console message") {
  std::string chromium;
  if (!require_chromium(chromium)) return;
  const fs::path work = lamina_test::temp_dir("browser");
  const auto fixture = lamina_test::make_synthetic_report();
  const fs::path page = work / "report.html";
  write_html_report(page, fixture->inputs);
  // 1 sample grid + 10 mean digits + 6 errors.
  check_in_browser(chromium, page, work, "report", 4, 17);
}

TEST_CASE("The browser harness notices a broken image and a script error") {
  std::string chromium;
  if (!require_chromium(chromium)) return;
  const fs::path work = lamina_test::temp_dir("browser_negative");
  const auto fixture = lamina_test::make_synthetic_report();
  std::string html = html_report(fixture->inputs);
  // Corrupt the first image (its PNG signature) and add a failing script.
  const std::string png = "data:image/png;base64,iVBOR";
  const std::size_t at = html.find(png);
  REQUIRE(at != std::string::npos);
  html.replace(at, png.size(), "data:image/png;base64,AAAAA");
  html.insert(html.rfind("</body>"), "<script>notAFunction();</script>");
  const fs::path page = work / "broken.html";
  std::ofstream(page, std::ios::binary) << html;

  const BrowserRun dom = run_chromium(chromium, page, work, "broken", "--dump-dom");
  INFO("chromium log:\n" << dom.err);
  REQUIRE(dom.status == 0);
  const auto check = self_check(dom.out);
  REQUIRE(check.count("status"));
  CHECK(check.at("status") == "problems");
  CHECK(check.at("images-decoded") == "16");
  CHECK(check.at("errors") != "0");
  const auto lines = console_lines(dom.err);
  REQUIRE_FALSE(lines.empty());
  CHECK(lines.front().find("notAFunction") != std::string::npos);
}

TEST_CASE("A report of a real MNIST run renders in headless Chromium") {
  std::string chromium;
  if (!require_chromium(chromium)) return;
  if (!lamina_test::require_data("kaggle-digit-recognizer/train.csv.gz")) return;
  const MnistData raw = load_mnist(lamina_test::data_dir() / "kaggle-digit-recognizer" / "train.csv.gz");
  // A small, quick run: 6000 images, 3 epochs of the MLP baseline.
  const Dataset<float> all = to_dataset<float>(raw);
  std::vector<std::size_t> first(6000);
  for (std::size_t i = 0; i < first.size(); ++i) first[i] = i;
  const Dataset<float> some = subset(all, first);
  const StratifiedSplit split = stratified_split(some.labels, 1.0 / 6.0, 42);
  const Dataset<float> train = subset(some, split.train), validation = subset(some, split.validation);
  Sequential<float> model(Shape{28, 28, 1}, 42);
  model.add<Flatten>();
  model.add<Dense>(128, Init::he_normal);
  model.add<ReLU>();
  model.add<Dense>(10);
  model.compile(std::make_unique<Adam<float>>(1e-3));
  FitOptions<float> options;
  options.epochs = 3;
  options.batch_size = 64;
  options.shuffle_seed = 42;
  options.verbosity = Verbosity::quiet;
  const History history =
      fit(model, train.images.view(), train.labels, options, validation.images.view(), validation.labels);
  const Tensor<float> probabilities = model.predict(validation.images.view());

  ReportInputs in;
  in.title = "MLP on 6000 Kaggle MNIST images";
  in.facts = {{"train file", raw.source}, {"epochs", "3"}, {"seed", "42"}};
  in.data = &raw;
  in.model_summary = model.summary();
  in.history = history;
  in.images = validation.images.view();
  in.labels = validation.labels;
  in.probabilities = probabilities.view();
  const fs::path work = lamina_test::temp_dir("browser_mnist");
  const fs::path page = work / "report_mnist.html";
  write_html_report(page, in);
  const std::size_t errors =
      std::min<std::size_t>(in.max_errors, most_confident_errors(in.probabilities, in.labels, 1000).size());
  REQUIRE(errors > 0);
  check_in_browser(chromium, page, work, "report_mnist", 4, 1 + 10 + errors);
}
