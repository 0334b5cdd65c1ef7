// lamina_vs_libtorch: lamina and LibTorch side by side, from one run.
//
// The same two networks in both libraries (lamina's from
// examples/common/reference_models.hpp, the definition every example, test and
// benchmark uses; LibTorch's written out below layer for layer):
//
//   cnn  [Conv 3x3 32 same ReLU -> BatchNorm] x2 -> MaxPool 2 -> Dropout 0.25
//        [Conv 3x3 64 same ReLU -> BatchNorm] x2 -> MaxPool 2 -> Dropout 0.25
//        Flatten -> Dense 256 ReLU -> BatchNorm -> Dropout 0.5 -> Dense 10
//   mlp  Flatten -> Dense 256 ReLU -> Dense 10
//
// BatchNorm momentum 0.99 in Keras's terms is 0.01 in torch's (the weight of
// the new batch statistic), epsilon 1e-3 in both. Adam lr 1e-3, eps 1e-7,
// softmax cross-entropy on the logits. lamina works in NHWC; LibTorch gets NCHW,
// its native layout (--channels-last switches its CNN to channels_last).
//
// What is timed (images per second, whole calls, wall clock):
//   train      one training step: forward in training mode, loss, backward,
//              Adam step (lamina: Sequential::train_step; LibTorch: gradients
//              set to none, forward, cross_entropy, backward, Adam::step, the
//              loss read back as lamina's train_step returns it)
//   inference  forward in eval mode to the logits (lamina: Sequential::forward
//              with Mode::eval; LibTorch: eval() and torch::InferenceMode)
// at batch 128 and 32 (train) and 1000 and 1 (inference), with the same number
// of threads on both sides: lamina::set_num_threads(N), torch::set_num_threads(N),
// at::set_num_interop_threads(1). Both libraries run on the same OpenMP
// runtime (libgomp), so neither keeps threads spinning against the other.
//
// How: for every case both models are built on the same synthetic batch
// (pixels uniform in [0, 1) and uniform labels from lamina::Rng; throughput
// does not depend on the values), warmed up, then measured in alternating
// rounds (lamina then LibTorch, LibTorch then lamina, ...), each round at least
// --seconds long. The table gives each side's median over the rounds and the
// ratio of the medians, so that machine noise (other processes, frequency
// changes) falls on both sides alike. Nothing is asserted about the figures;
// the program fails (exit status 1) only when something is wrong: the two
// definitions differ in parameter count or output shape, a loss is not finite,
// or an option is invalid.
#include <lamina/lamina.hpp>

#include "../../examples/common/reference_models.hpp"

#include <ATen/Parallel.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#ifndef LAMINA_COMPARE_LAMINA_VERSION
#define LAMINA_COMPARE_LAMINA_VERSION "unknown"
#endif
#ifndef LAMINA_COMPARE_BUILD_TYPE
#define LAMINA_COMPARE_BUILD_TYPE "unknown"
#endif

namespace {

using clock_type = std::chrono::steady_clock;

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

struct Options {
  int threads = 2;
  int rounds = 5;
  double seconds = 1.5;         // minimum length of one side's round
  double warmup_seconds = 0.5;  // minimum warm-up per side and case (and at least kWarmupCalls calls)
  int warmup_calls = 3;
  bool quick = false;
  bool channels_last = false;
  std::string models = "cnn,mlp";
  std::string phases = "train,inference";
  std::string csv_path, json_path;
  std::uint64_t seed = 20261124;
};

void print_usage(const char* argv0) {
  std::printf(
      "usage: %s [options]\n"
      "  --threads N        threads for both libraries (default 2)\n"
      "  --rounds R         alternating measurement rounds per case (default 5)\n"
      "  --seconds S        minimum length of one side's round, in seconds (default 1.5)\n"
      "  --warmup S         minimum warm-up per side and case, in seconds (default 0.5, and at least 3 calls)\n"
      "  --quick            smoke run: 1 warm-up call, 1 round of at least 0.05 s per side\n"
      "  --models LIST      cnn,mlp (default both)\n"
      "  --phases LIST      train,inference (default both)\n"
      "  --channels-last    LibTorch's CNN in channels_last memory format (default NCHW)\n"
      "  --seed N           seed of the synthetic data and of both models (default 20261124)\n"
      "  --csv FILE         also write the results as CSV (- for standard output)\n"
      "  --json FILE        also write the results as JSON (- for standard output)\n",
      argv0);
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) items.push_back(item);
  return items;
}

// Parses the command line; throws std::invalid_argument naming the culprit.
Options parse_options(int argc, char** argv) {
  Options o;
  auto value = [&](int& i) -> std::string {
    if (i + 1 >= argc) throw std::invalid_argument(std::string(argv[i]) + " needs a value");
    return argv[++i];
  };
  auto number = [](const std::string& flag, const std::string& text) {
    std::size_t used = 0;
    double v = 0;
    try {
      v = std::stod(text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != text.size() || !std::isfinite(v))
      throw std::invalid_argument(flag + ": not a number: '" + text + "'");
    return v;
  };
  auto positive_int = [&](const std::string& flag, const std::string& text) {
    const double v = number(flag, text);
    if (v < 1 || v != std::floor(v) || v > 1e6) throw std::invalid_argument(flag + ": need a whole number >= 1, got " + text);
    return static_cast<int>(v);
  };
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--threads") {
      o.threads = positive_int(arg, value(i));
    } else if (arg == "--rounds") {
      o.rounds = positive_int(arg, value(i));
    } else if (arg == "--seconds") {
      o.seconds = number(arg, value(i));
      if (o.seconds < 0) throw std::invalid_argument("--seconds must be >= 0");
    } else if (arg == "--warmup") {
      o.warmup_seconds = number(arg, value(i));
      if (o.warmup_seconds < 0) throw std::invalid_argument("--warmup must be >= 0");
    } else if (arg == "--quick") {
      o.quick = true;
    } else if (arg == "--models") {
      o.models = value(i);
    } else if (arg == "--phases") {
      o.phases = value(i);
    } else if (arg == "--channels-last") {
      o.channels_last = true;
    } else if (arg == "--seed") {
      const std::string text = value(i);
      std::size_t used = 0;
      try {
        o.seed = std::stoull(text, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != text.size()) throw std::invalid_argument("--seed: not a whole number: '" + text + "'");
    } else if (arg == "--csv") {
      o.csv_path = value(i);
    } else if (arg == "--json") {
      o.json_path = value(i);
    } else if (arg == "--help" || arg == "-h") {
      print_usage(argv[0]);
      std::exit(0);
    } else {
      throw std::invalid_argument("unknown option '" + arg + "' (--help lists them)");
    }
  }
  if (o.quick) {
    o.rounds = 1;
    o.seconds = 0.05;
    o.warmup_seconds = 0;
    o.warmup_calls = 1;
  }
  for (const std::string& m : split_list(o.models))
    if (m != "cnn" && m != "mlp") throw std::invalid_argument("--models: unknown model '" + m + "' (cnn, mlp)");
  for (const std::string& p : split_list(o.phases))
    if (p != "train" && p != "inference")
      throw std::invalid_argument("--phases: unknown phase '" + p + "' (train, inference)");
  if (split_list(o.models).empty() || split_list(o.phases).empty())
    throw std::invalid_argument("--models and --phases need at least one entry");
  return o;
}

// ---------------------------------------------------------------------------
// The machine
// ---------------------------------------------------------------------------

std::string read_first_line(const char* path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// The three load averages of /proc/loadavg ("0.20 0.84 1.23"), or "n/a".
std::string load_average() {
  std::istringstream in(read_first_line("/proc/loadavg"));
  std::string a, b, c;
  if (!(in >> a >> b >> c)) return "n/a";
  return a + " " + b + " " + c;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  return "unknown";
}

std::string compiler() {
#if defined(__clang__)
  return std::string("Clang ") + __clang_version__;
#elif defined(__GNUC__)
  return std::string("GCC ") + __VERSION__;
#else
  return "unknown compiler";
#endif
}

// The BLAS libraries mapped into the process (LibTorch's Linear layers and its
// non-oneDNN convolutions call BLAS, so which one Debian's alternatives select
// matters as much as LibTorch itself), with a guess at what each is.
std::string loaded_blas() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  std::set<std::string> paths;
  while (std::getline(maps, line)) {
    const auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash);
    const std::string file = path.substr(path.rfind('/') + 1);
    if (file.find("blas") != std::string::npos || file.find("blis") != std::string::npos ||
        file.find("mkl_") != std::string::npos || file.find("atlas") != std::string::npos)
      paths.insert(path);
  }
  if (paths.empty()) return "none found in /proc/self/maps";
  std::string out;
  for (const std::string& p : paths) {
    std::string kind = "unknown";
    if (p.find("openblas") != std::string::npos) kind = "OpenBLAS";
    else if (p.find("blis") != std::string::npos) kind = "BLIS";
    else if (p.find("mkl") != std::string::npos) kind = "MKL";
    else if (p.find("atlas") != std::string::npos) kind = "ATLAS";
    else if (p.find("/blas/") != std::string::npos) kind = "reference BLAS from netlib, unoptimised";
    if (!out.empty()) out += "; ";
    out += p + " (" + kind + ")";
  }
  return out;
}

// The line of at::get_parallel_info() naming ATen's parallel backend.
std::string torch_parallel_backend() {
  std::istringstream in(at::get_parallel_info());
  std::string line;
  while (std::getline(in, line))
    if (line.find("parallel backend") != std::string::npos) {
      const auto colon = line.find(':');
      return colon == std::string::npos ? line : line.substr(line.find_first_not_of(' ', colon + 1));
    }
  return "unknown";
}

// ---------------------------------------------------------------------------
// The two models in LibTorch
// ---------------------------------------------------------------------------

// Keras's initialisers, so that both sides start from the same kind of
// weights (throughput does not depend on them): glorot_uniform kernels and
// zero biases, he_normal for the Dense 256 layers as the reference models ask
// (torch's kaiming_normal_ is not truncated as Keras's he_normal is).
void init_glorot(torch::nn::Module& m) {
  torch::NoGradGuard no_grad;
  for (auto& p : m.named_parameters(false)) {
    if (p.key() == "weight") torch::nn::init::xavier_uniform_(p.value());
    if (p.key() == "bias") p.value().zero_();
  }
}

void init_he_normal(torch::nn::Linear& dense) {
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_normal_(dense->weight, 0.0, torch::kFanIn, torch::kReLU);
  dense->bias.zero_();
}

torch::nn::Conv2d torch_conv(std::int64_t in, std::int64_t out) {
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(in, out, 3).stride(1).padding(1));  // 3x3 "same"
  init_glorot(*conv);
  return conv;
}

// ReLU in place, as torchvision writes it: the fastest plain-API form (Keras
// and lamina fuse it into the Conv2D / Dense layer).
torch::nn::ReLU torch_relu() { return torch::nn::ReLU(torch::nn::ReLUOptions().inplace(true)); }

torch::nn::Sequential make_torch_cnn() {
  torch::nn::Sequential model;
  std::int64_t channels = 1;
  for (std::int64_t filters : {32, 64}) {
    for (int twice = 0; twice < 2; ++twice) {
      model->push_back(torch_conv(channels, filters));
      model->push_back(torch_relu());
      model->push_back(torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(filters).eps(1e-3).momentum(0.01)));
      channels = filters;
    }
    model->push_back(torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(2)));
    model->push_back(torch::nn::Dropout(0.25));
  }
  model->push_back(torch::nn::Flatten());  // (N, 64, 7, 7) -> (N, 3136)
  torch::nn::Linear hidden(64 * 7 * 7, 256);
  init_he_normal(hidden);
  model->push_back(hidden);
  model->push_back(torch_relu());
  model->push_back(torch::nn::BatchNorm1d(torch::nn::BatchNorm1dOptions(256).eps(1e-3).momentum(0.01)));
  model->push_back(torch::nn::Dropout(0.5));
  torch::nn::Linear logits(256, 10);
  init_glorot(*logits);
  model->push_back(logits);
  return model;
}

torch::nn::Sequential make_torch_mlp() {
  torch::nn::Sequential model;
  model->push_back(torch::nn::Flatten());  // (N, 1, 28, 28) -> (N, 784)
  torch::nn::Linear hidden(28 * 28, 256);
  init_he_normal(hidden);
  model->push_back(hidden);
  model->push_back(torch_relu());
  torch::nn::Linear logits(256, 10);
  init_glorot(*logits);
  model->push_back(logits);
  return model;
}

// Moves every 4-d parameter (the conv kernels) to channels_last.
void to_channels_last(torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  for (auto& p : model.parameters())
    if (p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
}

std::int64_t torch_parameter_count(torch::nn::Module& model) {
  std::int64_t n = 0;
  for (const auto& p : model.parameters()) n += p.numel();
  return n;
}

// Floating-point buffers only: BatchNorm's running mean and variance (torch's
// integer num_batches_tracked has no counterpart in lamina or Keras).
std::int64_t torch_float_buffer_count(torch::nn::Module& model) {
  std::int64_t n = 0;
  for (const auto& b : model.buffers())
    if (b.is_floating_point()) n += b.numel();
  return n;
}

// ---------------------------------------------------------------------------
// One case: a model, a phase and a batch size, on both sides
// ---------------------------------------------------------------------------

enum class Phase { train, inference };
const char* phase_name(Phase p) { return p == Phase::train ? "train" : "inference"; }

struct Case {
  std::string model;  // "cnn" or "mlp"
  Phase phase;
  std::size_t batch;
};

struct Result {
  Case c;
  std::vector<double> lamina, libtorch;  // images/s, one per round
  std::string load_before, load_after;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Calls `call` (one batch) until at least `seconds` have passed and at least
// `min_calls` calls were made; returns images per second.
double run_for(const std::function<void()>& call, std::size_t batch, double seconds, int min_calls) {
  const auto start = clock_type::now();
  double elapsed = 0;
  std::int64_t calls = 0;
  do {
    call();
    ++calls;
    elapsed = std::chrono::duration<double>(clock_type::now() - start).count();
  } while (elapsed < seconds || calls < min_calls);
  return static_cast<double>(batch) * static_cast<double>(calls) / elapsed;
}

// Throws when the two definitions disagree (a check that the comparison
// compares the same networks).
void check_same_network(const std::string& name, lamina::Sequential<float>& lm, torch::nn::Module& tm) {
  const auto lt = static_cast<std::int64_t>(lm.trainable_parameter_count());
  const auto lb = static_cast<std::int64_t>(lm.non_trainable_parameter_count());
  const std::int64_t tt = torch_parameter_count(tm), tb = torch_float_buffer_count(tm);
  if (lt != tt || lb != tb) {
    std::ostringstream msg;
    msg << name << ": the two definitions differ: lamina has " << lt << " trainable and " << lb
        << " non-trainable parameters, LibTorch " << tt << " and " << tb;
    throw std::runtime_error(msg.str());
  }
}

void check_finite(const std::string& what, double value) {
  if (!std::isfinite(value)) throw std::runtime_error(what + " is not finite (" + std::to_string(value) + ")");
}

Result measure(const Case& c, const Options& o) {
  Result r{c, {}, {}, load_average(), {}};
  const bool cnn = c.model == "cnn";
  const std::string label = c.model + " " + phase_name(c.phase) + " batch " + std::to_string(c.batch);

  // The batch: (N, 28, 28, 1) for lamina is (N, 1, 28, 28) for LibTorch, the
  // same bytes (one channel).
  lamina::Rng rng(o.seed + c.batch);
  lamina::Tensor<float> images(lamina::Shape{c.batch, 28, 28, 1});  // (N, 28, 28, 1)
  for (float& v : images) v = static_cast<float>(rng.uniform());
  std::vector<std::int32_t> labels(c.batch);  // (N)
  for (auto& l : labels) l = static_cast<std::int32_t>(rng.below(10));
  torch::Tensor x = torch::from_blob(images.data(), {static_cast<std::int64_t>(c.batch), 1, 28, 28}, torch::kFloat)
                        .clone();  // (N, 1, 28, 28)
  torch::Tensor y = torch::from_blob(labels.data(), {static_cast<std::int64_t>(c.batch)}, torch::kInt)
                        .to(torch::kLong);  // (N)

  // lamina
  lamina::Sequential<float> lm(lamina::Shape{28, 28, 1}, o.seed);
  if (cnn)
    lamina_examples::add_reference_cnn(lm);
  else
    lamina_examples::add_reference_mlp(lm);
  lm.compile(std::make_unique<lamina::Adam<float>>(1e-3, 0.9, 0.999, 1e-7));

  // LibTorch
  torch::manual_seed(o.seed);
  torch::nn::Sequential tm = cnn ? make_torch_cnn() : make_torch_mlp();
  if (cnn && o.channels_last) {
    to_channels_last(*tm);
    x = x.contiguous(torch::MemoryFormat::ChannelsLast);
  }
  torch::optim::Adam adam(tm->parameters(), torch::optim::AdamOptions(1e-3).betas({0.9, 0.999}).eps(1e-7));
  check_same_network(c.model, lm, *tm);

  double lamina_sink = 0, torch_sink = 0;
  std::function<void()> lamina_call, torch_call;
  if (c.phase == Phase::train) {
    lamina_call = [&] { lamina_sink += lm.train_step(images.view(), labels.data()).first; };
    tm->train();
    torch_call = [&] {
      for (auto& p : tm->parameters()) p.mutable_grad().reset();  // zero_grad(set_to_none=True)
      torch::Tensor logits = tm->forward(x);
      torch::Tensor loss = torch::nn::functional::cross_entropy(logits, y);
      loss.backward();
      adam.step();
      torch_sink += loss.item<double>();
    };
  } else {
    lamina_call = [&] {
      lamina::TensorView<const float> logits = lm.forward(images.view(), lamina::Mode::eval);
      lamina_sink += logits.data()[0];
    };
    tm->eval();
    torch_call = [&] {
      torch::InferenceMode inference;
      torch::Tensor logits = tm->forward(x);
      torch_sink += logits.data_ptr<float>()[0];
    };
  }

  // Output shapes: (N, 10) on both sides.
  {
    const lamina::Shape ls = lm.output_shape();
    torch::Tensor probe;
    {
      torch::InferenceMode inference;
      const bool was_training = tm->is_training();
      tm->eval();
      probe = tm->forward(x.narrow(0, 0, 1));
      tm->train(was_training);
    }
    if (ls.rank() != 1 || ls[0] != 10 || probe.dim() != 2 || probe.size(1) != 10)
      throw std::runtime_error(c.model + ": output shapes differ from (N, 10): lamina " + ls.to_string("N") +
                               ", LibTorch " + std::to_string(probe.dim()) + "-d");
  }

  // Warm-up (buffers sized, oneDNN primitives created, allocator caches filled).
  run_for(lamina_call, c.batch, o.warmup_seconds, o.warmup_calls);
  run_for(torch_call, c.batch, o.warmup_seconds, o.warmup_calls);

  for (int round = 0; round < o.rounds; ++round) {
    // Alternate who goes first, so a slow drift of the machine favours neither.
    if (round % 2 == 0) {
      r.lamina.push_back(run_for(lamina_call, c.batch, o.seconds, 1));
      r.libtorch.push_back(run_for(torch_call, c.batch, o.seconds, 1));
    } else {
      r.libtorch.push_back(run_for(torch_call, c.batch, o.seconds, 1));
      r.lamina.push_back(run_for(lamina_call, c.batch, o.seconds, 1));
    }
    std::fprintf(stderr, "  %-24s round %d/%d: lamina %10.1f img/s, libtorch %10.1f img/s\n", label.c_str(),
                 round + 1, o.rounds, r.lamina.back(), r.libtorch.back());
  }
  check_finite(label + ": lamina's loss or logits", lamina_sink);
  check_finite(label + ": LibTorch's loss or logits", torch_sink);
  r.load_after = load_average();
  return r;
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

struct RunInfo {
  std::string lamina_version = LAMINA_COMPARE_LAMINA_VERSION;
  std::string torch_version = TORCH_VERSION;
  std::string compiler_name = compiler();
  std::string build_type = LAMINA_COMPARE_BUILD_TYPE;
  std::string lamina_simd;
  std::string cpu = cpu_model();
  std::string blas;
  std::string torch_backend;
  std::string omp_wait_policy;
  bool onednn = false;
};

// OMP_WAIT_POLICY as the environment sets it. Both libraries run on the same
// libgomp, whose idle threads spin by default: on a machine where other
// processes want the cores too, spinning threads and threads waiting for a
// descheduled one dominate multi-threaded figures, and "passive" (sleep at
// once) measures better there (docs/performance.md).
std::string omp_wait_policy() {
  const char* value = std::getenv("OMP_WAIT_POLICY");
  return value ? value : "unset (libgomp default: spin, then sleep)";
}

// (max - min) / median, in percent: how much the rounds disagreed.
double spread_percent(const std::vector<double>& v) {
  const double m = median(v);
  if (m <= 0) return 0;
  return 100.0 * (*std::max_element(v.begin(), v.end()) - *std::min_element(v.begin(), v.end())) / m;
}

void print_table(const std::vector<Result>& results, const Options& o) {
  std::printf("\n%-5s %-9s %5s %7s %14s %14s %9s %9s %9s\n", "model", "phase", "batch", "threads", "lamina img/s",
              "libtorch img/s", "ratio", "spread L", "spread T");
  for (const Result& r : results) {
    const double l = median(r.lamina), t = median(r.libtorch);
    std::printf("%-5s %-9s %5zu %7d %14.1f %14.1f %8.2fx %8.0f%% %8.0f%%\n", r.c.model.c_str(), phase_name(r.c.phase),
                r.c.batch, o.threads, l, t, l / t, spread_percent(r.lamina), spread_percent(r.libtorch));
  }
  std::printf(
      "\nimg/s: median over %d round(s) of at least %.2f s per side; ratio = lamina / libtorch (> 1: lamina faster);\n"
      "spread L / T: (max - min) / median of lamina's / LibTorch's rounds.\n",
      o.rounds, o.seconds);
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (static_cast<unsigned char>(ch) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(ch)));
      out += buf;
    } else {
      out += ch;
    }
  }
  return out;
}

std::string number_list(const std::vector<double>& v, const char* separator) {
  std::ostringstream out;
  out.precision(10);
  for (std::size_t i = 0; i < v.size(); ++i) out << (i ? separator : "") << v[i];
  return out.str();
}

// Writes to `path`, or to standard output for "-".
void write_output(const std::string& path, const std::string& text) {
  if (path == "-") {
    std::cout << text << std::flush;
    return;
  }
  std::ofstream out(path);
  out << text;
  out.close();
  if (!out) throw std::runtime_error("cannot write " + path);
}

std::string to_csv(const std::vector<Result>& results, const Options& o) {
  std::ostringstream out;
  out.precision(10);
  out << "model,phase,batch,threads,lamina_img_s,libtorch_img_s,ratio,lamina_rounds,libtorch_rounds,load_before,"
         "load_after\n";
  for (const Result& r : results) {
    const double l = median(r.lamina), t = median(r.libtorch);
    out << r.c.model << ',' << phase_name(r.c.phase) << ',' << r.c.batch << ',' << o.threads << ',' << l << ',' << t
        << ',' << l / t << ',' << number_list(r.lamina, ";") << ',' << number_list(r.libtorch, ";") << ','
        << r.load_before << ',' << r.load_after << '\n';
  }
  return out.str();
}

std::string to_json(const std::vector<Result>& results, const Options& o, const RunInfo& info) {
  std::ostringstream out;
  out.precision(10);
  out << "{\n  \"context\": {\n"
      << "    \"lamina_version\": \"" << json_escape(info.lamina_version) << "\",\n"
      << "    \"torch_version\": \"" << json_escape(info.torch_version) << "\",\n"
      << "    \"compiler\": \"" << json_escape(info.compiler_name) << "\",\n"
      << "    \"build_type\": \"" << json_escape(info.build_type) << "\",\n"
      << "    \"lamina_simd\": \"" << json_escape(info.lamina_simd) << "\",\n"
      << "    \"cpu\": \"" << json_escape(info.cpu) << "\",\n"
      << "    \"torch_blas\": \"" << json_escape(info.blas) << "\",\n"
      << "    \"torch_parallel_backend\": \"" << json_escape(info.torch_backend) << "\",\n"
      << "    \"omp_wait_policy\": \"" << json_escape(info.omp_wait_policy) << "\",\n"
      << "    \"torch_onednn\": " << (info.onednn ? "true" : "false") << ",\n"
      << "    \"torch_channels_last\": " << (o.channels_last ? "true" : "false") << ",\n"
      << "    \"threads\": " << o.threads << ",\n"
      << "    \"rounds\": " << o.rounds << ",\n"
      << "    \"seconds_per_round\": " << o.seconds << ",\n"
      << "    \"seed\": " << o.seed << "\n"
      << "  },\n  \"results\": [\n";
  for (std::size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    const double l = median(r.lamina), t = median(r.libtorch);
    out << "    {\"model\": \"" << r.c.model << "\", \"phase\": \"" << phase_name(r.c.phase) << "\", \"batch\": "
        << r.c.batch << ", \"threads\": " << o.threads << ", \"lamina_img_s\": " << l << ", \"libtorch_img_s\": " << t
        << ", \"ratio\": " << l / t << ", \"lamina_rounds\": [" << number_list(r.lamina, ", ")
        << "], \"libtorch_rounds\": [" << number_list(r.libtorch, ", ") << "], \"load_before\": \""
        << r.load_before << "\", \"load_after\": \"" << r.load_after << "\"}" << (i + 1 < results.size() ? "," : "")
        << "\n";
  }
  out << "  ]\n}\n";
  return out.str();
}

int run(int argc, char** argv) {
  const Options o = parse_options(argc, argv);

  // Threads first: the inter-op pool can only be sized before it starts.
  at::set_num_interop_threads(1);
  torch::set_num_threads(o.threads);
  lamina::set_num_threads(o.threads);

  RunInfo info;
  info.lamina_simd = std::string(xsimd::default_arch::name()) + ", " + std::to_string(xsimd::batch<float>::size) +
                     " floats";
  info.blas = loaded_blas();
  info.torch_backend = torch_parallel_backend();
  info.onednn = at::hasMKLDNN() && at::globalContext().userEnabledMkldnn();
  info.omp_wait_policy = omp_wait_policy();

  std::printf("lamina %s vs LibTorch %s, %d thread(s) each (LibTorch inter-op threads: 1)\n",
              info.lamina_version.c_str(), info.torch_version.c_str(), o.threads);
  std::printf("compiler: %s, build type %s; lamina SIMD: %s\n", info.compiler_name.c_str(), info.build_type.c_str(),
              info.lamina_simd.c_str());
  std::printf("LibTorch: oneDNN %s, parallel backend %s, memory format %s\n", info.onednn ? "on" : "off",
              info.torch_backend.c_str(), o.channels_last ? "channels_last (CNN)" : "NCHW");
  std::printf("LibTorch BLAS: %s\n", info.blas.c_str());
  if (info.blas.find("reference BLAS") != std::string::npos)
    std::printf(
        "warning: LibTorch's Linear layers (and its convolutions that do not go to oneDNN) run on the reference\n"
        "         BLAS here, which makes LibTorch much slower than it can be: install an optimised BLAS\n"
        "         (Debian: libopenblas0-openmp) for a fair comparison (docs/performance.md)\n");
  std::printf("OpenMP (libgomp, shared by both): OMP_WAIT_POLICY %s\n", info.omp_wait_policy.c_str());
  std::printf("CPU: %s; load average at start: %s\n", info.cpu.c_str(), load_average().c_str());
#if !defined(NDEBUG)
  std::printf("warning: assertions are on (not a Release build): the figures mean little\n");
#endif
  std::fflush(stdout);

  std::vector<Case> cases;
  const std::vector<std::string> models = split_list(o.models), phases = split_list(o.phases);
  for (const std::string& m : {std::string("cnn"), std::string("mlp")}) {
    if (std::find(models.begin(), models.end(), m) == models.end()) continue;
    for (Phase p : {Phase::train, Phase::inference}) {
      if (std::find(phases.begin(), phases.end(), phase_name(p)) == phases.end()) continue;
      for (std::size_t batch : p == Phase::train ? std::vector<std::size_t>{128, 32} : std::vector<std::size_t>{1000, 1})
        cases.push_back({m, p, batch});
    }
  }

  std::vector<Result> results;
  for (const Case& c : cases) results.push_back(measure(c, o));

  print_table(results, o);
  std::printf("load average at end: %s\n", load_average().c_str());
  std::fflush(stdout);
  if (!o.csv_path.empty()) write_output(o.csv_path, to_csv(results, o));
  if (!o.json_path.empty()) write_output(o.json_path, to_json(results, o, info));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", argv[0], e.what());
    return 1;
  }
}
