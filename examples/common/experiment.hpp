// The command line, data preparation and metrics.json shared by the MNIST
// example trainers (examples only, never installed). Each example's main() reads
// as the experiment itself; the plumbing lives here.
#pragma once

#include <lamina/lamina.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "json_writer.hpp"

namespace lamina_examples {

namespace fs = std::filesystem;

/// What a program is and its defaults.
struct ProgramInfo {
  std::string name;
  std::string description;
  std::size_t epochs;
  std::size_t batch_size;
  // The defaults are the settings of the README's rows, so that a run with no
  // options reproduces them; --lr-schedule none --no-augment is the plain
  // Keras-notebook run.
  std::string lr_schedule = "cosine";  // the default of --lr-schedule
  bool augment = true;                 // the default of --augment / --no-augment
};

struct ExperimentOptions {
  std::string train, train_labels, test, test_labels;
  double val_split = 0.1;
  std::size_t epochs = 0, batch_size = 0;
  std::uint64_t seed = 42;
  int threads = 0;  // 0: every core
  std::string out;
  std::string lr_schedule = "cosine";  // none, step, cosine
  bool augment = true;                 // random shifts and rotations of the training batches
  std::size_t limit = 0;             // use only the first N training images (0: all)
  bool quiet = false;
  std::string checkpoint;            // written after every --checkpoint-every epochs ("" : none)
  std::size_t checkpoint_every = 1;
  std::string resume;                // a checkpoint to resume from ("" : start afresh)
  double clip_norm = 0;              // gradient-norm clipping (0: off)
};

/// The default data directory: $LAMINA_DATA_DIR, else ../shared/data.
inline fs::path data_dir() {
  const char* dir = std::getenv("LAMINA_DATA_DIR");
  return dir && *dir ? fs::path(dir) : fs::path("../shared/data");
}

inline void print_usage(const ProgramInfo& info, std::ostream& out) {
  out << "usage: " << info.name << " [options]\n\n" << info.description << "\n\n"
      << "options:\n"
      << "  --train FILE         training data: a Kaggle CSV (label,pixel0..pixel783; .gz or plain)\n"
      << "                       or an IDX images file (default: $LAMINA_DATA_DIR/kaggle-digit-recognizer/train.csv.gz)\n"
      << "  --train-labels FILE  IDX labels for --train (default: found by the MNIST naming)\n"
      << "  --test FILE          optional test data (CSV or IDX); labelled data gives a test accuracy\n"
      << "  --test-labels FILE   IDX labels for --test (default: found by the MNIST naming, if present)\n"
      << "  --val-split F        stratified validation fraction (default 0.1)\n"
      << "  --epochs N           (default " << info.epochs << ")\n"
      << "  --batch-size N       (default " << info.batch_size << ")\n"
      << "  --seed N             seeds initialisation, split, shuffling, dropout and augmentation (default 42)\n"
      << "  --threads N          threads (default: all cores)\n"
      << "  --out DIR            where metrics.json goes (default out/" << info.name << ")\n"
      << "  --limit N            train on the first N images only (quick runs)\n";
  out << "  --lr-schedule S      none, step (x0.5 every 3 epochs) or cosine decay over the epochs (default "
      << info.lr_schedule << ")\n"
      << "  --augment            random shifts up to 2 pixels and rotations up to 10 degrees (default "
      << (info.augment ? "on" : "off") << ")\n"
      << "  --no-augment         train on the images as they are\n"
      << "                       (--lr-schedule none --no-augment is the plain Keras-notebook run)\n";
  out << "  --checkpoint FILE    write a checkpoint (weights, optimizer, random streams, epoch) to FILE\n"
      << "  --checkpoint-every N after every N epochs (default 1)\n"
      << "  --resume FILE        continue an interrupted run from its checkpoint (same command otherwise)\n"
      << "  --clip-norm X        scale gradients down to a global L2 norm of at most X (default off)\n";
  out << "  --quiet              no per-epoch output\n"
      << "\nThe MNIST data: see README.md (set LAMINA_DATA_DIR to the folder that holds\n"
      << "kaggle-digit-recognizer/ and mnist-idx/).\n";
}

/// Parses argv; prints usage and exits on --help; throws lamina::ArgumentError on a bad option.
inline ExperimentOptions parse_options(int argc, char** argv, const ProgramInfo& info) {
  ExperimentOptions o;
  o.epochs = info.epochs;
  o.batch_size = info.batch_size;
  o.out = "out/" + info.name;
  o.lr_schedule = info.lr_schedule;
  o.augment = info.augment;
  auto need = [&](int& i) -> std::string {
    if (i + 1 >= argc) throw lamina::ArgumentError(std::string(argv[i]) + " needs a value (see --help)");
    return argv[++i];
  };
  auto to_size = [](const std::string& flag, const std::string& v) {
    char* end = nullptr;
    errno = 0;
    const unsigned long long n = std::strtoull(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || errno || v[0] == '-')
      throw lamina::ArgumentError(flag + " expects a whole number, got '" + v + "'");
    return static_cast<std::size_t>(n);
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      print_usage(info, std::cout);
      std::exit(0);
    } else if (a == "--train") o.train = need(i);
    else if (a == "--train-labels") o.train_labels = need(i);
    else if (a == "--test") o.test = need(i);
    else if (a == "--test-labels") o.test_labels = need(i);
    else if (a == "--val-split") {
      const std::string v = need(i);
      char* end = nullptr;
      o.val_split = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !(o.val_split > 0.0 && o.val_split < 1.0))
        throw lamina::ArgumentError("--val-split expects a fraction between 0 and 1, got '" + v + "'");
    } else if (a == "--epochs") o.epochs = to_size(a, need(i));
    else if (a == "--batch-size") o.batch_size = to_size(a, need(i));
    else if (a == "--seed") o.seed = to_size(a, need(i));
    else if (a == "--threads") o.threads = static_cast<int>(to_size(a, need(i)));
    else if (a == "--out") o.out = need(i);
    else if (a == "--limit") o.limit = to_size(a, need(i));
    else if (a == "--quiet") o.quiet = true;
    else if (a == "--lr-schedule") {
      o.lr_schedule = need(i);
      if (o.lr_schedule != "none" && o.lr_schedule != "step" && o.lr_schedule != "cosine")
        throw lamina::ArgumentError("--lr-schedule expects none, step or cosine, got '" + o.lr_schedule + "'");
    } else if (a == "--augment") o.augment = true;
    else if (a == "--no-augment") o.augment = false;
    else if (a == "--checkpoint") o.checkpoint = need(i);
    else if (a == "--checkpoint-every") o.checkpoint_every = to_size(a, need(i));
    else if (a == "--resume") o.resume = need(i);
    else if (a == "--clip-norm") {
      const std::string v = need(i);
      char* end = nullptr;
      o.clip_norm = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !(o.clip_norm > 0) || !std::isfinite(o.clip_norm))
        throw lamina::ArgumentError("--clip-norm expects a positive number, got '" + v + "'");
    }
    else throw lamina::ArgumentError("unknown option '" + a + "' (see --help)");
  }
  if (o.epochs == 0) throw lamina::ArgumentError("--epochs must be at least 1");
  if (o.batch_size == 0) throw lamina::ArgumentError("--batch-size must be at least 1");
  if (o.threads < 0) throw lamina::ArgumentError("--threads must be at least 1");
  if (o.train.empty()) {
    o.train = (data_dir() / "kaggle-digit-recognizer" / "train.csv.gz").string();
    if (!fs::exists(o.train))
      throw lamina::ArgumentError(
          "no training data: " + o.train + " does not exist.\n"
          "Point LAMINA_DATA_DIR at a folder holding kaggle-digit-recognizer/train.csv.gz (the Kaggle\n"
          "'Digit Recognizer' train.csv, from https://www.kaggle.com/c/digit-recognizer/data, gzipped or not)\n"
          "or mnist-idx/ (the four files from http://yann.lecun.com/exdb/mnist/), or pass --train FILE.");
  }
  return o;
}

/// Train, validation and (optional) test sets, ready for the model.
struct ExperimentData {
  lamina::MnistData raw;  // the training file as loaded, for the report's exploration
  lamina::Dataset<float> train, validation, test;
  bool has_test = false, test_labelled = false;
  std::string train_source, test_source;
  double load_seconds = 0;
};

inline lamina::MnistData load_file(const std::string& path, const std::string& labels) {
  return lamina::load_mnist(path, labels);
}

/// Loads --train (and --test), scales pixels to [0, 1], and splits the training
/// data stratified into train and validation with --seed.
inline ExperimentData load_experiment_data(const ExperimentOptions& o, std::ostream& log) {
  ExperimentData d;
  const auto start = std::chrono::steady_clock::now();
  d.raw = load_file(o.train, o.train_labels);
  const lamina::MnistData& raw = d.raw;
  if (!raw.has_labels())
    throw lamina::ArgumentError("--train " + o.train + " has no labels (a Kaggle test.csv cannot be trained on)");
  lamina::Dataset<float> all = lamina::to_dataset<float>(raw);
  if (o.limit && o.limit < all.size()) {
    std::vector<std::size_t> first(o.limit);
    for (std::size_t i = 0; i < o.limit; ++i) first[i] = i;
    all = lamina::subset(all, first);
  }
  const lamina::StratifiedSplit split = lamina::stratified_split(all.labels, o.val_split, o.seed);
  d.train = lamina::subset(all, split.train);
  d.validation = lamina::subset(all, split.validation);
  d.train_source = o.train;
  if (!o.test.empty()) {
    lamina::MnistData test_raw = load_file(o.test, o.test_labels);
    d.test = lamina::to_dataset<float>(test_raw);
    d.has_test = true;
    d.test_labelled = test_raw.has_labels();
    d.test_source = o.test;
  }
  d.load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  log << "Data: " << all.size() << " labelled images from " << o.train << " -> " << d.train.size()
      << " train / " << d.validation.size() << " validation (stratified, seed " << o.seed << ")";
  if (d.has_test)
    log << "; " << d.test.size() << (d.test_labelled ? " labelled" : " unlabelled") << " test images from " << o.test;
  log << " [" << std::fixed << std::setprecision(2) << d.load_seconds << "s]\n";
  return d;
}

/// The numbers an experiment reports.
struct ExperimentResults {
  lamina::History history;
  lamina::Evaluation validation, test;
  bool has_test_accuracy = false;
  double train_seconds = 0;
};

namespace detail {
inline void write_report_json(JsonWriter& j, const lamina::ConfusionMatrix& cm, const lamina::ClassificationReport& r) {
  j.key("confusion_matrix").begin_array();
  for (std::size_t t = 0; t < cm.num_classes(); ++t) {
    j.begin_array();
    for (std::size_t p = 0; p < cm.num_classes(); ++p) j.value(cm(t, p));
    j.end_array();
  }
  j.end_array();
  j.key("classification_report").begin_object();
  for (std::size_t c = 0; c < r.num_classes(); ++c) {
    j.key(r.class_names[c]).begin_object();
    j.field("precision", r.precision[c]).field("recall", r.recall[c]).field("f1-score", r.f1[c]);
    j.field("support", r.support[c]);
    j.end_object();
  }
  j.field("accuracy", r.accuracy);
  for (const auto& [name, avg] : {std::pair<const char*, lamina::ClassAverages>{"macro avg", r.macro_avg},
                                  std::pair<const char*, lamina::ClassAverages>{"weighted avg", r.weighted_avg}}) {
    j.key(name).begin_object();
    j.field("precision", avg.precision).field("recall", avg.recall).field("f1-score", avg.f1);
    j.field("support", r.total_support);
    j.end_object();
  }
  j.end_object();
}
}  // namespace detail

/// Evaluates the trained model, prints the final accuracy line, the
/// classification report and the confusion matrix of the validation set, and
/// writes DIR/metrics.json and DIR/report.html.
template <class Model>
ExperimentResults finish_experiment(const std::string& program, const ExperimentOptions& o, Model& model,
                                    const ExperimentData& d, lamina::History history, double train_seconds,
                                    std::ostream& log) {
  ExperimentResults r;
  r.history = std::move(history);
  r.train_seconds = train_seconds;
  r.validation = model.evaluate(d.validation.images.view(), d.validation.labels);
  if (d.has_test && d.test_labelled) {
    r.test = model.evaluate(d.test.images.view(), d.test.labels);
    r.has_test_accuracy = true;
  }
  double images = 0, seconds = 0;
  for (const auto& e : r.history.epochs) {
    images += static_cast<double>(d.train.size());
    seconds += static_cast<double>(d.train.size()) / e.train_images_per_second;
  }
  const double images_per_second = seconds > 0 ? images / seconds : 0;

  // The validation set's confusion matrix and classification report.
  const lamina::Tensor<float> probabilities = model.predict(d.validation.images.view());  // (N, C)
  const std::vector<std::int32_t> predicted = lamina::argmax_rows<float>(probabilities.view());
  const std::size_t classes = probabilities.dim(1);
  const lamina::ConfusionMatrix confusion(d.validation.labels, predicted, classes);
  const lamina::ClassificationReport report = lamina::classification_report(confusion);

  log << "\nClassification report (validation):\n" << report.to_string(4)
      << "\nConfusion matrix (validation; rows = true class, columns = predicted):\n" << confusion.to_string();
  log << std::fixed << std::setprecision(2) << "\n" << program << ": validation accuracy "
      << 100.0 * r.validation.accuracy << "% (loss " << std::setprecision(4) << r.validation.loss << ")";
  if (r.has_test_accuracy)
    log << std::setprecision(2) << ", test accuracy " << 100.0 * r.test.accuracy << "% (loss "
        << std::setprecision(4) << r.test.loss << ")";
  log << std::setprecision(0) << ", " << images_per_second << " train images/s, " << std::setprecision(1)
      << train_seconds << "s training, " << lamina::num_threads() << " thread(s)\n";

  fs::create_directories(o.out);
  const fs::path path = fs::path(o.out) / "metrics.json";
  std::ofstream file(path);
  if (!file) throw lamina::Error("cannot write " + path.string());
  JsonWriter j(file);
  j.begin_object();
  j.field("program", program);
  j.field("train_file", d.train_source);
  if (d.has_test) j.field("test_file", d.test_source);
  j.field("train_images", d.train.size()).field("validation_images", d.validation.size());
  j.field("val_accuracy", r.validation.accuracy).field("val_loss", r.validation.loss);
  if (r.has_test_accuracy) j.field("test_accuracy", r.test.accuracy).field("test_loss", r.test.loss);
  j.field("train_images_per_second", images_per_second);
  j.field("train_seconds", train_seconds);
  j.field("seed", static_cast<unsigned long long>(o.seed)).field("threads", lamina::num_threads());
  j.field("epochs", o.epochs).field("batch_size", o.batch_size).field("val_split", o.val_split);
  j.field("lr_schedule", o.lr_schedule).field("augment", o.augment);
  j.field("parameters", model.trainable_parameter_count());
  j.key("history").begin_array();
  for (const auto& e : r.history.epochs) {
    j.begin_object();
    j.field("epoch", e.epoch).field("train_loss", e.train_loss).field("train_accuracy", e.train_accuracy);
    if (e.has_validation) j.field("val_loss", e.val_loss).field("val_accuracy", e.val_accuracy);
    j.field("seconds", e.seconds).field("train_images_per_second", e.train_images_per_second);
    j.field("learning_rate", e.learning_rate);
    j.end_object();
  }
  j.end_array();
  detail::write_report_json(j, confusion, report);
  j.end_object();
  file.close();
  log << "wrote " << path.string() << "\n";

  // The self-contained HTML report: data, model, curves, evaluation, errors.
  lamina::ReportInputs inputs;
  inputs.title = program + " on " + fs::path(d.train_source).filename().string();
  auto percent = [](double v) {
    std::ostringstream s;
    s << std::fixed << std::setprecision(2) << 100.0 * v << "%";
    return s.str();
  };
  inputs.facts = {{"program", program},
                  {"training data", d.train_source},
                  {"train / validation", std::to_string(d.train.size()) + " / " + std::to_string(d.validation.size())},
                  {"validation accuracy", percent(r.validation.accuracy)}};
  if (r.has_test_accuracy) inputs.facts.push_back({"test accuracy (" + d.test_source + ")", percent(r.test.accuracy)});
  inputs.facts.push_back({"epochs, batch size", std::to_string(o.epochs) + ", " + std::to_string(o.batch_size)});
  inputs.facts.push_back({"learning-rate schedule, augmentation", o.lr_schedule + ", " + (o.augment ? "on" : "off")});
  inputs.facts.push_back({"seed, threads", std::to_string(o.seed) + ", " + std::to_string(lamina::num_threads())});
  inputs.data = &d.raw;
  inputs.model_summary = model.summary();
  inputs.history = r.history;
  inputs.images = d.validation.images.view();
  inputs.labels = d.validation.labels;
  inputs.probabilities = probabilities.view();
  const fs::path report_path = fs::path(o.out) / "report.html";
  lamina::write_html_report(report_path, inputs);
  log << "wrote " << report_path.string() << "\n";
  return r;
}

/// fit() options from the command line: batches, seeds, the learning-rate
/// schedule (from the optimizer's initial rate) and augmentation.
template <class T>
lamina::FitOptions<T> fit_options(const ExperimentOptions& o, double initial_learning_rate) {
  lamina::FitOptions<T> f;
  f.epochs = o.epochs;
  f.batch_size = o.batch_size;
  f.shuffle_seed = o.seed;
  f.augment_seed = o.seed;
  if (o.quiet) f.verbosity = lamina::Verbosity::quiet;
  const auto schedule = lamina::LearningRateSchedule::from_name(o.lr_schedule, initial_learning_rate);
  const std::size_t epochs = o.epochs;
  f.on_epoch_begin = [schedule, epochs](std::size_t epoch, lamina::Model<T>& model) {
    model.optimizer()->set_learning_rate(schedule.at(epoch, epochs));
  };
  if (o.augment)
    f.augment = [](lamina::TensorView<T> batch, lamina::Rng& rng) { lamina::random_shift_rotate(batch, rng); };
  f.clip_gradient_norm = o.clip_norm;
  if (!o.checkpoint.empty()) {
    f.checkpoint_path = o.checkpoint;
    f.checkpoint_every = o.checkpoint_every;
  }
  f.resume_from = o.resume;
  return f;
}

}  // namespace lamina_examples
