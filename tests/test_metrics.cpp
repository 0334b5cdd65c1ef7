// Metrics: confusion matrix, classification report (numbers and the exact
// scikit-learn text layout), top-k accuracy and its tie rule. Every expected
// value below was computed by hand from the counts written next to it.
#include <lamina/core/tensor.hpp>
#include <lamina/metrics/classification.hpp>

#include <cmath>
#include <limits>

#include "support.hpp"

using namespace lamina;
using Catch::Matchers::Contains;

namespace {
// scikit-learn's documentation example: y_true = [0, 1, 2, 2, 2], y_pred = [0, 0, 2, 2, 1].
const std::vector<std::int32_t> doc_true{0, 1, 2, 2, 2};
const std::vector<std::int32_t> doc_pred{0, 0, 2, 2, 1};
}  // namespace

TEST_CASE("ConfusionMatrix counts (true, predicted) pairs") {
  const ConfusionMatrix cm(doc_true, doc_pred, 3);
  REQUIRE(cm.num_classes() == 3);
  // rows = true class, columns = predicted class
  const std::vector<std::size_t> expected{1, 0, 0,   // true 0: predicted 0
                                          1, 0, 0,   // true 1: predicted 0
                                          0, 1, 2};  // true 2: once 1, twice 2
  CHECK(cm.counts() == expected);
  CHECK(cm(2, 1) == 1);
  CHECK(cm.total() == 5);
  CHECK(cm.correct() == 3);
  CHECK(cm.accuracy() == 0.6);
  CHECK(cm.true_count(2) == 3);
  CHECK(cm.predicted_count(0) == 2);
  CHECK(cm.predicted_count(1) == 1);
  CHECK_THROWS_AS(cm(3, 0), ArgumentError);

  CHECK(cm.to_string() ==
        "true\\pred  0  1  2\n"
        "        0  1  0  0\n"
        "        1  1  0  0\n"
        "        2  0  1  2\n");
}

TEST_CASE("ConfusionMatrix::to_string aligns names and wide counts") {
  // true cat: 12 cat, 3 dog; true dog: 0 cat, 105 dog
  std::vector<std::int32_t> t, p;
  auto add = [&](int a, int b, int n) {
    for (int i = 0; i < n; ++i) {
      t.push_back(a);
      p.push_back(b);
    }
  };
  add(0, 0, 12);
  add(0, 1, 3);
  add(1, 1, 105);
  const ConfusionMatrix cm(t, p, 2);
  CHECK(cm.to_string({"cat", "dog"}) ==
        "true\\pred  cat  dog\n"
        "      cat   12    3\n"
        "      dog    0  105\n");
  CHECK_THROWS_WITH(cm.to_string({"cat"}), Contains("1 class names for 2 classes"));
}

TEST_CASE("ConfusionMatrix rejects bad input, naming the culprit") {
  CHECK_THROWS_WITH(ConfusionMatrix({}, {}, 3), Contains("empty"));
  CHECK_THROWS_AS(ConfusionMatrix({}, {}, 3), ArgumentError);
  CHECK_THROWS_WITH(ConfusionMatrix({0, 1}, {0}, 3), Contains("y_true has 2 labels but y_pred has 1"));
  CHECK_THROWS_WITH(ConfusionMatrix({0, 1, 2}, {0, 1, -1}, 3), Contains("y_pred[2] = -1 is outside 0..2"));
  CHECK_THROWS_WITH(ConfusionMatrix({0, 3, 2}, {0, 1, 1}, 3), Contains("y_true[1] = 3 is outside 0..2"));
  CHECK_THROWS_AS(ConfusionMatrix({0, 3, 2}, {0, 1, 1}, 3), ArgumentError);
  CHECK_THROWS_WITH(ConfusionMatrix({0}, {0}, 0), Contains("num_classes must be at least 1"));
}

TEST_CASE("classification_report: hand-computed numbers of the scikit-learn example") {
  const ClassificationReport r = classification_report(doc_true, doc_pred, 3);
  // class 0: tp 1, predicted 2, actual 1; class 1: tp 0, predicted 1, actual 1;
  // class 2: tp 2, predicted 2, actual 3.
  CHECK(r.precision == std::vector<double>{0.5, 0.0, 1.0});
  CHECK(r.recall[0] == 1.0);
  CHECK(r.recall[1] == 0.0);
  CHECK(r.recall[2] == Approx(2.0 / 3.0));
  CHECK(r.f1[0] == Approx(2.0 / 3.0));  // 2*1 / (1 + 2)
  CHECK(r.f1[1] == 0.0);
  CHECK(r.f1[2] == Approx(0.8));        // 2*2 / (3 + 2)
  CHECK(r.support == std::vector<std::size_t>{1, 1, 3});
  CHECK(r.accuracy == 0.6);
  CHECK(r.total_support == 5);
  CHECK(r.macro_avg.precision == Approx(0.5));
  CHECK(r.macro_avg.recall == Approx((1.0 + 0.0 + 2.0 / 3.0) / 3.0));
  CHECK(r.macro_avg.f1 == Approx((2.0 / 3.0 + 0.0 + 0.8) / 3.0));
  CHECK(r.weighted_avg.precision == Approx((0.5 + 0.0 + 3.0) / 5.0));
  CHECK(r.weighted_avg.recall == Approx(0.6));
  CHECK(r.weighted_avg.f1 == Approx((2.0 / 3.0 + 0.0 + 3 * 0.8) / 5.0));
  CHECK(r.class_names == std::vector<std::string>{"0", "1", "2"});
}

TEST_CASE("ClassificationReport::to_string is scikit-learn's layout, character for character") {
  // print(classification_report(y_true, y_pred, target_names=['class 0', 'class 1', 'class 2']))
  // from scikit-learn's documentation.
  const ClassificationReport r = classification_report(doc_true, doc_pred, 3, {"class 0", "class 1", "class 2"});
  CHECK(r.to_string() ==
        "              precision    recall  f1-score   support\n"
        "\n"
        "     class 0       0.50      1.00      0.67         1\n"
        "     class 1       0.00      0.00      0.00         1\n"
        "     class 2       1.00      0.67      0.80         3\n"
        "\n"
        "    accuracy                           0.60         5\n"
        "   macro avg       0.50      0.56      0.49         5\n"
        "weighted avg       0.70      0.60      0.61         5\n");
}

TEST_CASE("Zero division gives 0 and digits is configurable") {
  // 4 classes; class 2 never occurs, class 3 occurs once and is never predicted.
  //   true 0 -> 0, 1;  true 1 -> 1, 1, 0;  true 3 -> 1
  const std::vector<std::int32_t> t{0, 0, 1, 1, 1, 3}, p{0, 1, 1, 1, 0, 1};
  const ClassificationReport r = classification_report(t, p, 4);
  // class 0: tp 1, predicted 2, actual 2 -> 0.5, 0.5, 0.5
  // class 1: tp 2, predicted 4, actual 3 -> 0.5, 2/3, 4/7
  // class 2: nothing -> 0, 0, 0 (support 0)
  // class 3: tp 0, predicted 0, actual 1 -> precision 0 (0/0), recall 0, f1 0
  // Element by element: GCC 12.2 with -mavx512f (our -march=native on AVX-512
  // machines) miscompiles a 4-element constant {x, x, 0, 0} into {x, x, x, x},
  // which broke std::vector<double>{0.5, 0.5, 0.0, 0.0} here.
  CHECK(r.precision[0] == 0.5);
  CHECK(r.precision[1] == 0.5);
  CHECK(r.precision[2] == 0.0);
  CHECK(r.precision[3] == 0.0);
  CHECK(r.f1[1] == Approx(4.0 / 7.0));
  CHECK(r.support == std::vector<std::size_t>{2, 3, 0, 1});
  // macro: P (0.5+0.5)/4 = 0.25, R (0.5+2/3)/4 = 0.291666.., F (0.5+4/7)/4 = 0.267857..
  // weighted: P (2*0.5+3*0.5)/6 = 0.416666.., R (1+2)/6 = 0.5, F (1+12/7)/6 = 0.452380..
  CHECK(r.to_string(4) ==
        "              precision    recall  f1-score   support\n"
        "\n"
        "           0     0.5000    0.5000    0.5000         2\n"
        "           1     0.5000    0.6667    0.5714         3\n"
        "           2     0.0000    0.0000    0.0000         0\n"
        "           3     0.0000    0.0000    0.0000         1\n"
        "\n"
        "    accuracy                         0.5000         6\n"
        "   macro avg     0.2500    0.2917    0.2679         6\n"
        "weighted avg     0.4167    0.5000    0.4524         6\n");
  CHECK_THROWS_AS(r.to_string(-1), ArgumentError);
}

TEST_CASE("A class name longer than 'weighted avg' widens the first column") {
  // true {cat, long, long}, predicted {long, long, long}:
  // cat: tp 0, predicted 0, actual 1 -> 0, 0, 0; long: tp 2, predicted 3, actual 2 -> 2/3, 1, 0.8
  const ClassificationReport r = classification_report({0, 1, 1}, {1, 1, 1}, 2, {"cat", "a very long name"});
  CHECK(r.to_string() ==
        "                  precision    recall  f1-score   support\n"
        "\n"
        "             cat       0.00      0.00      0.00         1\n"
        "a very long name       0.67      1.00      0.80         2\n"
        "\n"
        "        accuracy                           0.67         3\n"
        "       macro avg       0.33      0.50      0.40         3\n"
        "    weighted avg       0.44      0.67      0.53         3\n");
  CHECK_THROWS_WITH(classification_report({0, 1}, {0, 1}, 2, {"a", "b", "c"}), Contains("3 class names for 2 classes"));
  CHECK_THROWS_AS(classification_report(ConfusionMatrix{}), ArgumentError);
}

TEST_CASE("top_k_accuracy ranks ties by the lower class index, like argmax_rows") {
  const std::vector<float> values{
      0.1f, 0.7f, 0.2f,   // label 2: one class ahead -> top-2
      0.5f, 0.5f, 0.0f,   // label 1: tied with class 0, which ranks first -> top-2
      0.5f, 0.5f, 0.0f,   // label 0: wins the tie -> top-1
      0.2f, 0.3f, 0.5f};  // label 0: last -> top-3
  const TensorView<const float> p(values.data(), Shape{4, 3});
  const std::vector<std::int32_t> labels{2, 1, 0, 0};
  CHECK(top_k_accuracy(p, labels, 1) == 0.25);
  CHECK(top_k_accuracy(p, labels, 2) == 0.75);
  CHECK(top_k_accuracy(p, labels, 3) == 1.0);
  // top-1 is the accuracy of argmax_rows, ties included.
  const ConfusionMatrix cm(labels, argmax_rows<float>(p), 3);
  CHECK(top_k_accuracy(p, labels, 1) == cm.accuracy());

  CHECK_THROWS_WITH(top_k_accuracy(p, labels, 0), Contains("k must be in 1..3"));
  CHECK_THROWS_WITH(top_k_accuracy(p, labels, 4), Contains("got 4"));
  CHECK_THROWS_WITH(top_k_accuracy(p, {0, 1, 2}, 1), Contains("4 rows of probabilities but 3 labels"));
  CHECK_THROWS_WITH(top_k_accuracy(p, {0, 1, 3, 0}, 1), Contains("label 3 of sample 2"));
  CHECK_THROWS_AS(top_k_accuracy(TensorView<const float>(values.data(), Shape{12}), labels, 1), ShapeError);
  std::vector<double> bad{0.5, std::numeric_limits<double>::quiet_NaN()};
  CHECK_THROWS_WITH(top_k_accuracy(TensorView<const double>(bad.data(), Shape{1, 2}), {0}, 1),
                    Contains("probability (0, 1) is not finite"));
}

TEST_CASE("most_confident_errors lists the misclassified rows, surest first") {
  const std::vector<float> values{
      0.1f, 0.7f, 0.2f,   // label 2, predicted 1 at 0.7
      0.5f, 0.5f, 0.0f,   // label 1, predicted 0 at 0.5
      0.9f, 0.1f, 0.0f,   // label 0, right
      0.2f, 0.3f, 0.5f};  // label 0, predicted 2 at 0.5
  const TensorView<const float> p(values.data(), Shape{4, 3});
  const auto errors = most_confident_errors(p, {2, 1, 0, 0}, 10);
  REQUIRE(errors.size() == 3);
  CHECK(errors[0].index == 0);
  CHECK(errors[0].true_label == 2);
  CHECK(errors[0].predicted == 1);
  CHECK(errors[0].confidence == Approx(0.7));
  CHECK(errors[0].true_probability == Approx(0.2));
  CHECK(errors[1].index == 1);  // 0.5 ties with row 3: row order
  CHECK(errors[2].index == 3);
  CHECK(most_confident_errors(p, {2, 1, 0, 0}, 2).size() == 2);
}
