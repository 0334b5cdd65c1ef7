// mnist_predict: runs a saved model on MNIST images.
//
//   mnist_predict --model out/mnist_mlp/model.safetensors
//                 --input $LAMINA_DATA_DIR/kaggle-digit-recognizer/test.csv.gz --out submission.csv
//
// Unlabelled input (Kaggle's test.csv, plain or .gz) gives a Kaggle submission:
// "ImageId,Label", then one line per image, ImageId counting from 1, LF line
// ends, written atomically (the file is complete or not there). Labelled input
// (a train-style CSV, or IDX images with their labels) gives the accuracy, the
// confusion matrix and the per-class report instead; --out then also writes the
// predictions. Pixels are scaled to [0, 1] as the example trainers scale them.
//
// Run `mnist_predict --help` for the options.
#include <lamina/lamina.hpp>
#include <lamina/io/model_io.hpp>

#if __has_include(<lamina/metrics/classification.hpp>)
#include <lamina/metrics/classification.hpp>
#define MNIST_PREDICT_HAS_REPORT 1
#endif

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <string>
#include <vector>

namespace {

struct Options {
  std::string model, input, labels, out;
  std::size_t batch_size = 500;
  int threads = 0;  // 0: every core
};

void print_usage(std::ostream& out) {
  out << "usage: mnist_predict --model FILE --input FILE [--out FILE] [options]\n\n"
      << "Runs a model saved by lamina::save_model on MNIST images.\n"
      << "Unlabelled input (Kaggle's test.csv): writes a Kaggle submission (ImageId,Label) to --out.\n"
      << "Labelled input (a train-style CSV, or IDX images and labels): prints the accuracy, the\n"
      << "confusion matrix and the per-class precision, recall and F1; --out also writes the predictions.\n\n"
      << "options:\n"
      << "  --model FILE       the model (.safetensors, as written by lamina::save_model)\n"
      << "  --input FILE       images: a Kaggle CSV (with or without the label column; .gz or plain)\n"
      << "                     or an IDX images file\n"
      << "  --labels FILE      IDX labels for --input (default: found by the MNIST naming)\n"
      << "  --out FILE         where the submission goes (required for unlabelled input)\n"
      << "  --batch-size N     images per forward pass (default 500)\n"
      << "  --threads N        threads (default: all cores)\n"
      << "  --help             this text\n";
}

Options parse_options(int argc, char** argv) {
  Options o;
  auto need = [&](int& i) -> std::string {
    if (i + 1 >= argc) throw lamina::ArgumentError(std::string(argv[i]) + " needs a value (see --help)");
    return argv[++i];
  };
  auto to_count = [](const std::string& flag, const std::string& v) {
    char* end = nullptr;
    errno = 0;
    const unsigned long long n = std::strtoull(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || errno || v[0] == '-' || n == 0 || n > 1'000'000'000ULL)
      throw lamina::ArgumentError(flag + " expects a whole number of at least 1, got '" + v + "'");
    return static_cast<std::size_t>(n);
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      print_usage(std::cout);
      std::exit(0);
    } else if (a == "--model") o.model = need(i);
    else if (a == "--input") o.input = need(i);
    else if (a == "--labels") o.labels = need(i);
    else if (a == "--out") o.out = need(i);
    else if (a == "--batch-size") o.batch_size = to_count(a, need(i));
    else if (a == "--threads") o.threads = static_cast<int>(to_count(a, need(i)));
    else throw lamina::ArgumentError("unknown option '" + a + "' (see --help)");
  }
  if (o.model.empty()) throw lamina::ArgumentError("--model FILE is required (see --help)");
  if (o.input.empty()) throw lamina::ArgumentError("--input FILE is required (see --help)");
  return o;
}

// ImageId,Label lines; atomic, so a failed run never leaves half a submission.
void write_submission(const std::string& path, const std::vector<std::int32_t>& predicted) {
  lamina::AtomicFileWriter out(path);
  out.write("ImageId,Label\n");
  std::string line;
  for (std::size_t i = 0; i < predicted.size(); ++i) {
    line = std::to_string(i + 1);
    line += ',';
    line += std::to_string(predicted[i]);
    line += '\n';
    out.write(line);
  }
  out.commit();
}

void print_labelled_report(const std::vector<std::int32_t>& labels, const std::vector<std::int32_t>& predicted,
                           std::size_t classes) {
  std::size_t correct = 0;
  for (std::size_t i = 0; i < labels.size(); ++i) correct += labels[i] == predicted[i];
  std::cout << std::fixed << std::setprecision(2) << "accuracy: "
            << 100.0 * static_cast<double>(correct) / static_cast<double>(labels.size()) << "% (" << correct
            << " of " << labels.size() << ")\n\n";
#ifdef MNIST_PREDICT_HAS_REPORT
  const lamina::ConfusionMatrix cm(labels, predicted, classes);
  std::cout << "confusion matrix (rows: true class, columns: predicted class):\n" << cm.to_string() << "\n";
  std::cout << lamina::classification_report(cm).to_string(4);
#else
  // Per-class accuracy (recall) when the metrics header is not available.
  std::vector<std::size_t> support(classes, 0), hits(classes, 0);
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const auto c = static_cast<std::size_t>(labels[i]);
    if (c >= classes)
      throw lamina::ArgumentError("label " + std::to_string(labels[i]) + " of image " + std::to_string(i + 1) +
                                  " is outside the model's " + std::to_string(classes) + " classes");
    ++support[c];
    hits[c] += predicted[i] == labels[i];
  }
  std::cout << "class  accuracy  support\n";
  for (std::size_t c = 0; c < classes; ++c)
    std::cout << std::setw(5) << c << "  " << std::setw(7)
              << (support[c] ? 100.0 * static_cast<double>(hits[c]) / static_cast<double>(support[c]) : 0.0)
              << "%  " << std::setw(7) << support[c] << "\n";
#endif
}

template <class T>
void run(const Options& o, const lamina::ModelFileInfo& info, const lamina::MnistData& raw) {
  using namespace lamina;
  const auto start = std::chrono::steady_clock::now();
  Sequential<T> model = load_model<T>(o.model);
  const Shape out_shape = model.output_shape();
  if (out_shape.rank() != 1)
    throw ArgumentError("the model in " + o.model + " outputs " + out_shape.to_string("N") +
                        ", not one score per class (N, classes)");
  const std::size_t classes = out_shape[0];

  const Dataset<T> data = to_dataset<T>(raw);
  // The model may take the image as (28, 28, 1), (28, 28) or (784,): the same
  // values in the same order, so a reshape is enough; anything else is an error.
  const Shape sample = model.input_shape();
  if (sample.size() != raw.image_size())
    throw ShapeError("the model in " + o.model + " takes samples of shape " + sample.to_string() + " (" +
                     std::to_string(sample.size()) + " values), but " + o.input + " holds " +
                     std::to_string(raw.rows) + "x" + std::to_string(raw.cols) + " images");
  const TensorView<const T> images = data.images.view().reshape(sample.prepend(data.size()));

  const auto predict_start = std::chrono::steady_clock::now();
  const std::vector<std::int32_t> predicted = model.predict_classes(images, o.batch_size);
  const double predict_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - predict_start).count();

  std::cout << "mnist_predict: " << data.size() << (raw.has_labels() ? " labelled" : " unlabelled")
            << " images from " << o.input << ", model " << o.model << " (" << info.dtype << ", "
            << model.size() << " layers, " << model.trainable_parameter_count() << " parameters), "
            << std::fixed << std::setprecision(0) << static_cast<double>(data.size()) / predict_seconds
            << " images/s on " << num_threads() << " thread(s)\n";

  if (raw.has_labels()) {
    print_labelled_report(raw.labels, predicted, classes);
  } else {
    std::vector<std::size_t> counts(classes, 0);
    for (std::int32_t p : predicted) ++counts[static_cast<std::size_t>(p)];
    std::cout << "predicted classes:";
    for (std::size_t c = 0; c < classes; ++c) std::cout << " " << c << ":" << counts[c];
    std::cout << "\n";
  }
  if (!o.out.empty()) {
    write_submission(o.out, predicted);
    std::cout << "wrote " << o.out << " (" << predicted.size() + 1 << " lines) in " << std::setprecision(2)
              << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() << "s\n";
  }
}

}  // namespace

int main(int argc, char** argv) try {
  const Options options = parse_options(argc, argv);
  if (options.threads > 0) lamina::set_num_threads(options.threads);
  // Cheap checks before the work: the output directory, then the model header.
  if (!options.out.empty()) {
    const std::filesystem::path out(options.out);
    const std::filesystem::path dir = out.has_parent_path() ? out.parent_path() : std::filesystem::path(".");
    if (!std::filesystem::is_directory(dir))
      throw lamina::ArgumentError("--out " + options.out + ": the directory " + dir.string() + " does not exist");
  }
  const lamina::ModelFileInfo info = lamina::read_model_info(options.model);
  const lamina::MnistData raw = lamina::load_mnist(options.input, options.labels);
  // Unlabelled input without --out would compute predictions only to drop them.
  if (!raw.has_labels() && options.out.empty())
    throw lamina::ArgumentError(options.input + " has no labels: pass --out FILE for the submission");
  if (info.dtype == "F64")
    run<double>(options, info, raw);
  else
    run<float>(options, info, raw);
  return 0;
} catch (const lamina::Error& e) {
  std::cerr << "mnist_predict: " << e.what() << "\n";
  return 1;
} catch (const std::exception& e) {
  std::cerr << "mnist_predict: unexpected error: " << e.what() << "\n";
  return 1;
}
